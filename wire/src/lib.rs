//! The formats the dr-syncer controller and its agents share, and nothing else: SSH keys and certificates, the
//! bastion's policy (authorized keys and targets), node addresses as they may appear in a command line, the rsync
//! options a copy may pass, the probe's arguments and result lines, and the copy's progress and report lines. Both
//! binaries depend on this crate; the controller does not link the agent (its SSH server, its HTTP server).

pub mod address;
pub mod error;
pub mod keys;
pub mod policy;
pub mod probe;
pub mod progress;
pub mod rsync_args;

pub use error::Error;
