//! What every reconciler shares.

use std::time::Duration;

use kube::Client;

use super::events::Events;
use super::metrics::ControllerMetrics;
use crate::clusters::Registry;

/// Tunables of the reconcilers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time allowed for each request to the controller's own API server.
    pub api_timeout: Duration,
    /// Time allowed for each request of a sync to a remote cluster.
    pub sync_api_timeout: Duration,
    /// Time between health checks of RemoteClusters and ClusterMappings that are fine.
    pub health_interval: Duration,
    /// First retry delay of a failing reconcile (doubled per failure, capped at 5 minutes).
    pub base_backoff: Duration,
    /// Objects written or deleted at once by one sync.
    pub sync_concurrency: usize,
    /// Only reconcile dr-syncer resources in this namespace (`None`: every namespace).
    pub namespace: Option<String>,
    /// Image of the PVC data-sync agent.
    pub agent_image: String,
    /// Source changes a Continuous mapping queues at most; beyond that it drops them and resyncs everything.
    pub watch_queue: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api_timeout: Duration::from_secs(10),
            sync_api_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            sync_concurrency: 8,
            namespace: None,
            agent_image: crate::cli::DEFAULT_AGENT_IMAGE.to_string(),
            watch_queue: crate::cli::DEFAULT_WATCH_QUEUE as usize,
        }
    }
}

/// Shared state of the reconcilers.
#[derive(Clone)]
pub struct Context {
    /// Client of the cluster holding the dr-syncer resources.
    pub client: Client,
    /// Remote cluster clients.
    pub registry: Registry,
    /// Event publisher.
    pub events: Events,
    /// The controller's metrics (syncs, objects, watches, cluster health).
    pub metrics: ControllerMetrics,
    /// Timeouts, intervals and limits from the command line.
    pub settings: Settings,
    /// Initial-list state of every watch, for `/readyz`.
    pub caches: crate::caches::Caches,
    /// PVC data copies running in the background.
    pub data: crate::data::DataSync,
    /// Recent agent checks of ClusterMappings.
    pub probes: crate::agent::probe::ProbeCache,
}

impl Context {
    /// An API for dr-syncer resources of kind `K` in the watched namespace (or all namespaces).
    pub fn watched<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.settings.namespace {
            Some(ns) => kube::Api::namespaced(self.client.clone(), ns),
            None => kube::Api::all(self.client.clone()),
        }
    }
}
