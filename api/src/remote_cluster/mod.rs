//! RemoteCluster: a Kubernetes cluster dr-syncer reaches through a kubeconfig stored in a Secret.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, SECRET_KEY_PATTERN, cron_pattern};

mod agent;
mod status;

pub use agent::*;
pub use status::*;

/// Default key of the kubeconfig inside its Secret.
pub const DEFAULT_KUBECONFIG_KEY: &str = "kubeconfig";

/// Desired state of a RemoteCluster: how to reach it, and its PVC data-sync agent.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "RemoteCluster",
    plural = "remoteclusters",
    namespaced,
    status = "RemoteClusterStatus",
    shortname = "drrc",
    category = "dr-syncer",
    doc = "A cluster that dr-syncer replicates from (source) or to (DR target), reached with the kubeconfig in a Secret. The RemoteCluster lives in the cluster where the dr-syncer controller runs; its status reports whether the kubeconfig is present and valid and whether the cluster answers.",
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health","description":"Whether the cluster's API server answers with the kubeconfig"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncTime","description":"When the cluster last answered a connectivity check"}"#,
    printcolumn = r#"{"name":"PVC Sync","type":"string","jsonPath":".status.pvcSync.phase","description":"State of the PVC data-sync agents"}"#,
    printcolumn = r#"{"name":"Ready Agents","type":"integer","jsonPath":".status.pvcSync.agentStatus.readyNodes","description":"Nodes with a ready PVC data-sync agent"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterSpec {
    /// The Secret that holds the kubeconfig dr-syncer uses to reach this cluster. TLS verification is always on; a
    /// kubeconfig with `insecure-skip-tls-verify` is flagged in the status.
    pub kubeconfig_secret_ref: KubeconfigSecretRef,

    /// Cron schedule used by NamespaceMappings that name this cluster and set no `schedule` of their own, for example
    /// `*/15 * * * *` or `@hourly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = cron_pattern()))]
    pub default_schedule: Option<String>,

    /// Resource types replicated by NamespaceMappings whose source is this cluster and that set no `resourceTypes`
    /// of their own. Without either, the default kinds (ConfigMap, Secret, Deployment, Service, Ingress,
    /// PersistentVolumeClaim) are replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_resource_types: Option<Vec<String>>,

    /// PVC data replication: the SSH agent dr-syncer runs on this cluster's nodes, and its limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_sync: Option<PvcSyncSpec>,
}

/// Where the kubeconfig for a RemoteCluster is stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret: the RemoteCluster's own, or another whose Secret lists the RemoteCluster's
    /// namespace in its annotation `dr-syncer.io/allow-references-from` (else KubeconfigAvailable is False with
    /// reason ReferenceNotAllowed).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Key in the Secret's data that holds the kubeconfig. Default: `kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_KUBECONFIG_KEY), length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: Option<String>,
}

impl KubeconfigSecretRef {
    /// The data key to read, with the documented default applied.
    pub fn key_or_default(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_KUBECONFIG_KEY)
    }
}
