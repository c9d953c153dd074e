//! Errors of reading the shared formats, each with a short reason used in logs, events and metric labels.

/// A key or policy document that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
}

impl Error {
    /// A short CamelCase reason for logs, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Key { .. } | Error::KeyText { .. } => "InvalidKey",
            Error::KeyAlgorithm { .. } => "UnsupportedKeyAlgorithm",
            Error::Policy { .. } => "InvalidPolicy",
        }
    }
}
