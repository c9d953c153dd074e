//! The controller's error type.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything that can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable Kubernetes client configuration (in-cluster or kubeconfig).
    #[error("cannot load Kubernetes client configuration: {message}")]
    Config {
        /// What was wrong.
        message: String,
    },
    /// The Kubernetes client could not be built from its configuration.
    #[error("cannot create a Kubernetes client")]
    Client(#[source] kube::Error),
    /// A Kubernetes API request failed.
    #[error("Kubernetes API request failed: {what}")]
    Api {
        /// The request, for example `get CustomResourceDefinition remoteclusters.dr-syncer.io`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A Kubernetes API request did not answer in time.
    #[error("{what} did not answer within {after:?}")]
    Timeout {
        /// The request.
        what: String,
        /// The time allowed.
        after: Duration,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP server stopped with an error.
    #[error("HTTP server on {addr} failed")]
    Serve {
        /// The server's address.
        addr: SocketAddr,
        /// The server error.
        #[source]
        source: std::io::Error,
    },
    /// A listen address could not be parsed.
    #[error("invalid listen address {value:?}: use host:port or :port")]
    Address {
        /// The rejected text.
        value: String,
    },
    /// A metric could not be created or registered.
    #[error("cannot register metrics")]
    Metrics(#[source] prometheus::Error),
    /// The finalizer helper of a reconciler failed.
    #[error("finalizer of {name} failed: {message}")]
    Finalizer {
        /// The object.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A mapping's cleanup of its DR objects has not finished; its finalizer stays until it has.
    #[error("cleanup of NamespaceMapping {mapping} has not finished: {message}")]
    Cleanup {
        /// The mapping, as `namespace/name`.
        mapping: String,
        /// What is left and why.
        message: String,
    },
    /// An object lacks a part a reconciler needs (its namespace, say), or shared state is unusable.
    #[error("object has no {what}")]
    Incomplete {
        /// The missing part.
        what: &'static str,
    },
    /// Leader election failed (the Lease cannot be used, or its manager stopped).
    #[error("leader election: {message}")]
    Leadership {
        /// What went wrong.
        message: String,
    },
    /// The source cluster already runs agents installed for another RemoteCluster.
    #[error(
        "the agents in this cluster belong to RemoteCluster {owner}; only one RemoteCluster per cluster may enable pvcSync"
    )]
    AgentOwnedByAnother {
        /// Who installed them (`RemoteCluster namespace/name`, or what is known).
        owner: String,
    },
    /// An SSH key could not be generated, read or parsed.
    #[error("SSH key {what}: {source}")]
    Key {
        /// Which key.
        what: String,
        /// What was wrong with it.
        #[source]
        source: dr_syncer_wire::Error,
    },
    /// Logging could not be set up.
    #[error("cannot set up logging: {message}")]
    Logging {
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The error with every cause behind it (`a: b: c`), for logs: the API server's own words are at the end.
    pub fn chain(&self) -> String {
        chain(self)
    }

    /// A short CamelCase reason for events, conditions and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config { .. } => "ConfigError",
            Error::Client(_) => "ClientError",
            Error::Api { .. } => "ApiError",
            Error::Timeout { .. } => "Timeout",
            Error::Bind { .. } => "BindError",
            Error::Serve { .. } => "ServeError",
            Error::Address { .. } => "InvalidAddress",
            Error::Metrics(_) => "MetricsError",
            Error::Logging { .. } => "LoggingError",
            Error::Finalizer { .. } => "FinalizerError",
            Error::Incomplete { .. } => "IncompleteObject",
            Error::Cleanup { .. } => "CleanupIncomplete",
            Error::Leadership { .. } => "LeaderElectionError",
            Error::AgentOwnedByAnother { .. } => "AgentOwnedByAnother",
            Error::Key { .. } => "InvalidKey",
        }
    }
}

/// `error` with every cause behind it (`a: b: c`).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Runs `fut` with a deadline, turning both a timeout and an API error into [`Error`].
pub async fn with_timeout<T>(
    what: impl Into<String>,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    let what = what.into();
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Api { what, source }),
        Err(_) => Err(Error::Timeout { what, after }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn with_timeout_reports_timeout_when_future_is_slow() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), kube::Error>(())
        };
        let err = with_timeout("get thing", Duration::from_millis(10), slow).await.unwrap_err();
        assert_eq!(err.reason(), "Timeout");
        assert!(err.to_string().contains("get thing"));
    }

    #[test]
    fn reasons_are_camel_case_without_spaces() {
        let errors = [
            Error::Config { message: "x".into() },
            Error::Address { value: "x".into() },
            Error::Logging { message: "x".into() },
            Error::Timeout { what: "x".into(), after: Duration::from_secs(1) },
        ];
        for e in errors {
            let r = e.reason();
            assert!(r.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && !r.contains(' '), "{r}");
        }
    }
}
