//! The client for the cluster holding the dr-syncer resources.

use std::path::Path;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::Error;

/// Builds a client from `kubeconfig` (and `context`) when given, else from the in-cluster configuration or the
/// default kubeconfig lookup ($KUBECONFIG, ~/.kube/config).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client, Error> {
    let options = KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config { message: format!("{}: {e}", path.display()) })?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Config { message: e.to_string() })?
        }
        None if context.is_some() => {
            kube::Config::from_kubeconfig(&options).await.map_err(|e| Error::Config { message: e.to_string() })?
        }
        None => kube::Config::infer().await.map_err(|e| Error::Config { message: e.to_string() })?,
    };
    tracing::info!(server = %config.cluster_url, "using Kubernetes API server");
    Client::try_from(config).map_err(Error::Client)
}
