//! dr-syncer agent: the SSH bastion a source cluster's nodes run for PVC data replication, the SSH server of the
//! short-lived rsync pods, and the key and command formats the controller shares with them.

pub mod address;
pub mod bastion;
pub mod copy;
pub mod error;
pub mod host_key;
pub mod keys;
pub mod listen;
pub mod metrics;
pub mod policy;
pub mod policy_secret;
pub mod probe;
pub mod progress;
pub mod reload;
pub mod rsync_args;
pub mod sample;
pub mod serve;
pub mod ssh;
pub mod targets;
