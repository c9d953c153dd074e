//! PVC data-sync settings of a RemoteCluster: the SSH agent on its nodes and the limits of copies from it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{PullPolicy, VerificationMode};
use crate::validation::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, QUANTITY_PATTERN};

/// Default SSH port of the PVC-sync agent on each node.
pub const DEFAULT_AGENT_SSH_PORT: i32 = 2222;
/// Default number of PVC data copies dr-syncer runs at once across all mappings.
pub const DEFAULT_GLOBAL_CONCURRENCY_LIMIT: i32 = 4;
/// Default percentage of files checked in `sample` verification mode.
pub const DEFAULT_SAMPLE_PERCENT: i32 = 10;

/// PVC data replication settings for one cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncSpec {
    /// Run the PVC data-sync agent on this cluster's nodes and manage its SSH keys. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Agent container image. Default: the agent image matching the controller's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,

    /// SSH settings of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<AgentSshSpec>,

    /// Most PVC data copies that read from this cluster at once, over all mappings. Default: this cluster's
    /// globalConcurrencyLimit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: Option<i32>,

    /// Most PVC data copies the controller runs at once across every mapping and cluster. When source clusters
    /// set different values, the smallest applies. Default: 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_GLOBAL_CONCURRENCY_LIMIT), range(min = 1, max = 256))]
    pub global_concurrency_limit: Option<i32>,

    /// Retries of a failed PVC data copy from this cluster, for each field a mapping's retryConfig does not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<AgentRetryConfig>,

    /// How the agent pods are deployed on this cluster's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<AgentDeployment>,

    /// Accepted from earlier manifests and ignored (condition FieldsSupported False, reason UnsupportedField):
    /// the agents' readiness probes and a ClusterMapping's agent check (verifyConnectivity,
    /// connectivityTimeoutSeconds) check agent health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<AgentHealthCheck>,

    /// Data verification for copies from this cluster when neither the NamespaceMapping nor the PVC sets one:
    /// `none` (rsync's size and time check), `sample` (checksum a sample of files) or `full` (checksum every file).
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "none"))]
    pub default_verification_mode: Option<VerificationMode>,

    /// Percentage of files checked in `sample` mode when nothing more specific is set. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_SAMPLE_PERCENT), range(min = 1, max = 100))]
    pub default_sample_percent: Option<i32>,

    /// Accepted for compatibility with manifests written for the Go operator, whose DaemonSet rsync pool was never
    /// used; dr-syncer starts short-lived rsync pods per copy instead and ignores this block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_daemon_set: Option<RsyncDaemonSetSpec>,
}

/// A container image reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository, for example `registry.example.com/dr-syncer-agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub repository: Option<String>,
    /// Image tag. Use a versioned tag; `latest` is never assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// When the kubelet pulls the image: Always, IfNotPresent or Never. Default: IfNotPresent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "IfNotPresent"))]
    pub pull_policy: Option<PullPolicy>,
}

/// SSH settings of the PVC data-sync agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSshSpec {
    /// Port the agent's SSH server listens on, on every node (hostPort). Default: 2222.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_AGENT_SSH_PORT), range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Deprecated and ignored (condition FieldsSupported False, reason UnsupportedField): earlier versions gave all agents this one SSH
    /// host key. Each agent now makes its own in memory, which the controller reads from that agent's log and the
    /// clients pin, so no Secret holds an agent's private key and one node's key cannot pose as another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<NamespacedSecretRef>,
    /// Expose the agents through a Service instead of each node's hostPort, for DR clusters that cannot reach the
    /// source cluster's node addresses. Each agent then relays to the mapping's rsync pods on any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<AgentServiceSpec>,
}

/// A Service in front of the agents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentServiceSpec {
    /// `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub type_: AgentServiceType,
    /// Node port to use with type NodePort. Default: one assigned by the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<i32>,
    /// Annotations on the Service, for example a cloud load balancer's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// How the agent Service is exposed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum AgentServiceType {
    /// A port on every node.
    #[default]
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

/// A reference to a Secret by name and namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
}

/// Retries of a failed PVC data copy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRetryConfig {
    /// Retries before a copy is reported failed until the next scheduled sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_retries: Option<i32>,
    /// Wait before the first retry, for example `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validation::DURATION_PATTERN))]
    pub initial_delay: Option<String>,
    /// Longest wait between retries, for example `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validation::DURATION_PATTERN))]
    pub max_delay: Option<String>,
}

/// How agent pods are deployed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDeployment {
    /// Run agent pods in the node's network namespace. Only needed when pod hostPorts are not supported; the Go
    /// operator's default of true is not kept. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Node labels an agent pod's node must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<AgentToleration>>,
    /// CPU and memory requests and limits of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra annotations on agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Extra labels on agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// PriorityClass of agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Run the agent container privileged: every Linux capability, access to all of the node's devices, no seccomp or
    /// AppArmor confinement, and — as Kubernetes requires for privileged containers — privilege escalation allowed.
    /// The agent needs none of it (it only relays TCP); kept for manifests of the Go operator, whose default of true
    /// is not kept. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Extra environment variables of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_env: Option<Vec<AgentEnvVar>>,
}

/// A toleration of agent pods (string-valued fields, as the Go operator accepted them).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentToleration {
    /// Taint key the toleration matches; empty with operator Exists matches every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal`. Default: Equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Exists", "Equal"]))]
    pub operator: Option<String>,
    /// Taint value the toleration matches (operator Equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Taint effect matched: NoSchedule, PreferNoSchedule or NoExecute; empty matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]))]
    pub effect: Option<String>,
    /// Seconds a NoExecute taint is tolerated; a number or a numeric string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<IntOrString>,
}

/// Compute resources as quantity strings, for example `cpu: 100m`, `memory: 64Mi`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// Most of each resource the container may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantity_values)]
    pub limits: Option<BTreeMap<String, String>>,
    /// Resources reserved for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantity_values)]
    pub requests: Option<BTreeMap<String, String>>,
}

/// Schema transform: every value of the map must be a resource quantity.
fn quantity_values(schema: &mut schemars::Schema) {
    if let Some(values) = schema.get_mut("additionalProperties").and_then(|v| v.as_object_mut()) {
        values.insert("pattern".into(), QUANTITY_PATTERN.into());
    }
}

/// An environment variable of the agent container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEnvVar {
    /// Variable name.
    #[schemars(length(min = 1), regex(pattern = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"))]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value taken from a field of the agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<AgentEnvVarSource>,
}

/// Where an environment variable's value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEnvVarSource {
    /// A field of the pod, such as `spec.nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<AgentFieldRef>,
}

/// A field of the pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentFieldRef {
    /// Path of the field, for example `status.podIP`.
    #[schemars(length(min = 1))]
    pub field_path: String,
}

/// How agent health is checked.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentHealthCheck {
    /// Time between checks, for example `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validation::DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Time allowed for an SSH handshake with an agent, for example `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validation::DURATION_PATTERN))]
    pub ssh_timeout: Option<String>,
    /// Failed checks in a row before an agent is reported unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub retry_attempts: Option<i32>,
    /// Wait between failed checks, for example `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validation::DURATION_PATTERN))]
    pub retry_interval: Option<String>,
}

/// The Go operator's never-used DaemonSet rsync pool; accepted and ignored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RsyncDaemonSetSpec {
    /// Not supported: copies run in short-lived rsync pods per PVC, reached through the agents. Setting any field of
    /// this block makes condition `FieldsSupported` False (reason `UnsupportedField`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Not supported: the rsync pods run the agent image (`spec.pvcSync.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Not supported: the agents always run in namespace `dr-syncer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Not supported: each copy gets a credential of its own, no Secret holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_secret_name: Option<String>,
}
