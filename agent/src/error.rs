//! Errors of the agent, each with a short reason used in logs and metric labels.

use std::path::PathBuf;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the agent needs could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A key is not a valid OpenSSH key.
    #[error("invalid SSH key {what}: {source}")]
    Key {
        /// Which key.
        what: String,
        /// What the key parser said.
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    /// A public key line with control characters (a line break inside).
    #[error("SSH key {what} contains control characters")]
    KeyText {
        /// Which key.
        what: String,
    },
    /// A key of an algorithm other than Ed25519.
    #[error("SSH key {what} is {algorithm}; only ssh-ed25519 is accepted")]
    KeyAlgorithm {
        /// Which key.
        what: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// A policy document (authorized keys or targets) is malformed.
    #[error("invalid {what}: {message}")]
    Policy {
        /// Which document.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// The listener could not be opened or failed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The SSH server stopped with an error.
    #[error("SSH server failed: {source}")]
    Server {
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short CamelCase reason for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Read { .. } => "ReadFailed",
            Error::Key { .. } | Error::KeyText { .. } => "InvalidKey",
            Error::KeyAlgorithm { .. } => "UnsupportedKeyAlgorithm",
            Error::Policy { .. } => "InvalidPolicy",
            Error::Listen { .. } => "ListenFailed",
            Error::Server { .. } => "ServerFailed",
        }
    }
}
