//! Errors of the reconcilers.

use std::time::Duration;

/// What can make a reconcile fail (and be retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A request to the controller's own API server failed.
    #[error("{what} failed")]
    Api {
        /// The request.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A request to the controller's own API server did not answer in time.
    #[error("{what} did not answer within {after:?}")]
    Timeout {
        /// The request.
        what: String,
        /// The time allowed.
        after: Duration,
    },
    /// The finalizer helper failed.
    #[error("finalizer of {name} failed: {message}")]
    Finalizer {
        /// The object.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// An object lacks a namespace or name the reconciler needs.
    #[error("object has no {what}")]
    Incomplete {
        /// The missing part.
        what: &'static str,
    },
}

impl ReconcileError {
    /// A short CamelCase reason for events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Api { .. } => "ApiError",
            ReconcileError::Timeout { .. } => "Timeout",
            ReconcileError::Finalizer { .. } => "FinalizerError",
            ReconcileError::Incomplete { .. } => "IncompleteObject",
        }
    }
}

/// Runs a call to the controller's API server with a deadline.
pub async fn call<T>(
    what: impl Into<String>,
    after: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ReconcileError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ReconcileError::Api { what: what.into(), source }),
        Err(_) => Err(ReconcileError::Timeout { what: what.into(), after }),
    }
}
