//! dr-syncer agent: the SSH bastion a source cluster's nodes run for PVC data replication and the SSH server of the
//! short-lived rsync pods. The formats it shares with the controller (keys, policy, report lines) are in
//! `dr_syncer_wire`.

pub mod bastion;
pub mod copy;
pub mod error;
pub mod host_key;
pub mod listen;
pub mod metrics;
pub mod policy_secret;
pub mod probe;
pub mod reload;
pub mod sample;
pub mod serve;
pub mod ssh;
pub mod targets;
