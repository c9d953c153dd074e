//! Observed state of a RemoteCluster.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, Time, conditions_list};

/// Observed state of a RemoteCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary: Healthy (the API server answers), Unhealthy (it does not, or the kubeconfig is unusable) or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Unknown", "Healthy", "Unhealthy"]))]
    pub health: Option<String>,
    /// When the cluster last answered a connectivity check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// KubeconfigAvailable, KubeconfigValid, ClusterAvailable, ScheduleValid, FieldsSupported and (with
    /// pvcSync.enabled) AgentsReady, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list)]
    pub conditions: Vec<Condition>,
    /// State of the PVC data-sync agents on this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_sync: Option<PvcSyncStatus>,
}

/// State of the PVC data-sync agents on one cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncStatus {
    /// Deploying, Ready, PartiallyReady, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Agents by node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<AgentStatus>,
    /// When the agents were last deployed or upgraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment_time: Option<Time>,
    /// The agent image deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_image: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Agents by node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Nodes with a ready agent.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Nodes that should run an agent.
    #[serde(default)]
    pub total_nodes: i32,
    /// Per-node detail, keyed by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_statuses: BTreeMap<String, AgentNodeStatus>,
}

/// The agent on one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentNodeStatus {
    /// The agent pod is ready.
    #[serde(default)]
    pub ready: bool,
    /// The agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_status: Option<AgentPodStatus>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An agent pod's state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPodStatus {
    /// Pod phase.
    pub phase: String,
    /// The pod is ready.
    pub ready: bool,
    /// Container restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// When the pod last changed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}
