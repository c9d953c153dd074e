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
    /// A key or policy document in one of the shared formats cannot be used.
    #[error(transparent)]
    Format(#[from] dr_syncer_wire::Error),
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
            Error::Format(e) => e.reason(),
            Error::Listen { .. } => "ListenFailed",
            Error::Server { .. } => "ServerFailed",
        }
    }
}
