//! ClusterMapping: a source RemoteCluster paired with the DR RemoteCluster it replicates to.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, Time, conditions_list};
use crate::validation::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, SECRET_KEY_PATTERN};

/// Default time allowed for the connectivity checks of one ClusterMapping, in seconds.
pub const DEFAULT_CONNECTIVITY_TIMEOUT_SECONDS: i32 = 60;
/// Default key of the public key in `sshKeySecretRef`.
pub const DEFAULT_PUBLIC_KEY_KEY: &str = "id_rsa.pub";
/// Default key of the private key in `sshKeySecretRef`.
pub const DEFAULT_PRIVATE_KEY_KEY: &str = "id_rsa";

/// Desired state of a ClusterMapping: the two clusters it pairs and how their connectivity is checked.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "ClusterMapping",
    plural = "clustermappings",
    namespaced,
    status = "ClusterMappingStatus",
    shortname = "drcm",
    category = "dr-syncer",
    doc = "Pairs a source RemoteCluster with the DR (target) RemoteCluster it replicates to, and checks that both are reachable. NamespaceMappings name a ClusterMapping instead of repeating both clusters.",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceCluster","description":"Source RemoteCluster"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetCluster","description":"DR RemoteCluster"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Pending, Connecting, Connected or Failed"}"#,
    printcolumn = r#"{"name":"Connected Agents","type":"integer","jsonPath":".status.connectionStatus.connectedAgents","description":"Target agents that reached a source agent","priority":1}"#,
    printcolumn = r#"{"name":"Last Verified","type":"date","jsonPath":".status.lastVerified","description":"When both clusters were last verified"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingSpec {
    /// Stop verifying this pairing; NamespaceMappings that use it keep their last state. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub paused: Option<bool>,

    /// Name of the source RemoteCluster, in this namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub source_cluster: String,

    /// Name of the DR (target) RemoteCluster, in this namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub target_cluster: String,

    /// Accepted from earlier manifests and ignored (condition FieldsSupported False, reason UnsupportedField): each
    /// NamespaceMapping has an SSH certificate authority held in the controller's memory and every copy a key of
    /// its own, so no key pair is kept in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret_ref: Option<SshKeySecretRef>,

    /// Check that the DR cluster can reach the source cluster's agents over SSH. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub verify_connectivity: Option<bool>,

    /// Time allowed for all connectivity checks of this pairing, in seconds. Default: 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_CONNECTIVITY_TIMEOUT_SECONDS), range(min = 1, max = 3600))]
    pub connectivity_timeout_seconds: Option<i32>,
}

impl ClusterMappingSpec {
    /// `paused` with its documented default.
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }

    /// `verifyConnectivity` with its documented default.
    pub fn verifies_connectivity(&self) -> bool {
        self.verify_connectivity.unwrap_or(true)
    }
}

/// A Secret holding an SSH key pair.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshKeySecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret. Default: the ClusterMapping's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// Key of the public key in the Secret. Default: `id_rsa.pub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_PUBLIC_KEY_KEY), regex(pattern = SECRET_KEY_PATTERN))]
    pub public_key_key: Option<String>,
    /// Key of the private key in the Secret. Default: `id_rsa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_PRIVATE_KEY_KEY), regex(pattern = SECRET_KEY_PATTERN))]
    pub private_key_key: Option<String>,
}

/// Lifecycle of a ClusterMapping's verification.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum ClusterMappingPhase {
    /// Not verified yet, or waiting to retry.
    #[default]
    Pending,
    /// Verification is running.
    Connecting,
    /// Both clusters (and, when checked, the agents) are reachable.
    Connected,
    /// The last verification failed; see conditions and message.
    Failed,
}

/// Observed state of a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Connecting, Connected or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterMappingPhase>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When both clusters were last verified successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Time>,
    /// When verification was last attempted. Like `lastVerified` and `consecutiveFailures`, written when the outcome
    /// changes and otherwise at most once per health-check interval, so it may lag behind by up to one interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// SSH reachability of the source cluster's PVC data-sync agents from the target cluster (with
    /// `verifyConnectivity` and the source RemoteCluster's `pvcSync.enabled`): a handshake with each agent from a
    /// short-lived pod in the target cluster, the agents' host key pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_status: Option<ConnectionStatus>,
    /// SourceReachable, TargetReachable, AgentsConnected and Ready, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list)]
    pub conditions: Vec<Condition>,
    /// Failed verifications in a row; reset to 0 by a success. Brought up to date at most once per health-check
    /// interval while the failure stays the same (the retries back off meanwhile: 1 s, 2 s, 4 s … 5 minutes).
    #[serde(default)]
    pub consecutive_failures: i32,
}

/// Agent-to-agent SSH reachability.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// Agents found on the source cluster.
    #[serde(default)]
    pub total_source_agents: i32,
    /// Source agents that completed an SSH handshake with their pinned host key.
    #[serde(default)]
    pub connected_agents: i32,
    /// One entry per checked pair of nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection_details: Vec<ConnectionDetail>,
}

/// Result of one target-node to source-node check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionDetail {
    /// Source node whose agent was contacted.
    pub source_node: String,
    /// Target node the check ran from (the node of the probe pod).
    pub target_node: String,
    /// The SSH handshake succeeded with the pinned host key.
    pub connected: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
