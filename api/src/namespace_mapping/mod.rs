//! NamespaceMapping: what to replicate from a source namespace (or every namespace matching a selector) to the DR
//! cluster, and when.

mod config;
mod data_status;
mod status;

pub use config::*;
pub use data_status::*;
pub use status::*;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::LabelSelector;
use crate::validation::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, cron_pattern};

/// Schedule used by Scheduled mappings that set none and whose source RemoteCluster sets no `defaultSchedule`.
pub const DEFAULT_SCHEDULE: &str = "*/5 * * * *";

/// Desired state of a NamespaceMapping: which namespaces and kinds are replicated, how they are
/// adapted for the DR cluster, and when syncs run.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "NamespaceMapping",
    plural = "namespacemappings",
    namespaced,
    status = "NamespaceMappingStatus",
    shortname = "nsm",
    shortname = "drnm",
    category = "dr-syncer",
    doc = "Replicates the objects of one source namespace (or of every source namespace matching `namespaceSelector`) from the source cluster to the DR cluster: Deployments and StatefulSets parked at zero replicas, Services and PVCs adapted to the DR cluster, and optionally the data inside PVCs.",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceNamespace","description":"Source namespace (empty when namespaceSelector is used)"}"#,
    printcolumn = r#"{"name":"Destination","type":"string","jsonPath":".spec.destinationNamespace","description":"DR namespace (empty means the source name)"}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".spec.namespaceSelector.matchLabels","description":"Labels selecting source namespaces","priority":1}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.replicationMode","description":"Scheduled, Continuous or Manual"}"#,
    printcolumn = r#"{"name":"Cluster Mapping","type":"string","jsonPath":".spec.clusterMappingRef.name","priority":1}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncTime","description":"When the last sync finished"}"#,
    printcolumn = r#"{"name":"Next Sync","type":"string","jsonPath":".status.nextSyncTime","description":"When the next scheduled sync starts (UTC; a date column would show a future time as <invalid>)"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMappingSpec {
    /// Stop writing to the DR cluster; deletion of the mapping is still handled. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub paused: Option<bool>,

    /// When to sync: `Scheduled` (on `schedule`), `Continuous` (on every source change, plus a periodic full sync) or
    /// `Manual` (only when triggered). Default: Scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Scheduled"))]
    pub replication_mode: Option<ReplicationMode>,

    /// Cron schedule of Scheduled mode: five fields (minute hour day-of-month month day-of-week) with ranges, lists,
    /// steps and names, or a macro such as `@hourly`. Times are UTC. Default: the source RemoteCluster's
    /// `defaultSchedule`, else `*/5 * * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = cron_pattern()))]
    pub schedule: Option<String>,

    /// Settings of Continuous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<ContinuousConfig>,

    /// Retries of a failed sync before waiting for the next scheduled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<RetryConfig>,

    /// Accepted for compatibility with manifests written for the Go operator; ignored (dr-syncer generates and
    /// rotates the keys of short-lived rsync pods itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_pod_key_secret_ref: Option<crate::remote_cluster::NamespacedSecretRef>,

    /// Source RemoteCluster, in this namespace, when `clusterMappingRef` is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub source_cluster: Option<String>,

    /// DR RemoteCluster, in this namespace, when `clusterMappingRef` is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub destination_cluster: Option<String>,

    /// The ClusterMapping that names the source and DR clusters. Takes precedence over `sourceCluster` and
    /// `destinationCluster`. Set this or both of those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mapping_ref: Option<ClusterMappingRef>,

    /// The source namespace to replicate. Set exactly one of `sourceNamespace` and `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub source_namespace: Option<String>,

    /// The DR namespace `sourceNamespace` is replicated to. Default: the source namespace's name. Not allowed with
    /// `namespaceSelector` (use `destinationNamespaceRule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub destination_namespace: Option<String>,

    /// Replicate every source namespace whose labels match this selector; namespaces that gain the labels are picked
    /// up and those that lose them are cleaned up per the cleanup policy. Set exactly one of `sourceNamespace` and
    /// `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// How the DR namespace of each namespace selected by `namespaceSelector` is named, for example suffix `-dr`
    /// turns `shop` into `shop-dr`. Default: the source namespace's name. Only with `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace_rule: Option<DestinationNamespaceRule>,

    /// Kinds to replicate, by kind or plural, any case (`Deployment`, `deployments`, `configmaps`). `*` means every
    /// kind dr-syncer knows to be safe to copy. Default: ConfigMaps, Secrets, Deployments, Services, Ingresses and
    /// PersistentVolumeClaims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub resource_types: Option<Vec<String>>,

    /// Park Deployments and StatefulSets at 0 replicas in DR, keeping the source count in the
    /// `dr-syncer.io/original-replicas` annotation. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub scale_to_zero: Option<bool>,

    /// Custom resources to replicate, as `plural.group` (for example `widgets.example.com`); `*` means every
    /// namespaced custom resource. The preferred served version is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$")))]
    pub namespace_scoped_resources: Option<Vec<String>>,

    /// How PersistentVolumeClaims, and optionally their data, are replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_config: Option<PvcConfig>,

    /// What to do when a source change touches a field the DR object cannot change in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_resource_config: Option<ImmutableResourceConfig>,

    /// Also replicate the CustomResourceDefinitions of the replicated custom kinds (only those; one labelled
    /// `dr-syncer.io/ignore: "true"` is left out), written to DR before their objects. Needs get, create and patch
    /// on customresourcedefinitions for the DR cluster's identity. Default: false.
    #[serde(default, rename = "syncCRDs", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub sync_crds: Option<bool>,

    /// How each class of failure is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling: Option<FailureHandling>,

    /// How Ingresses are adapted for the DR cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_config: Option<IngressConfig>,

    /// How the DR namespace is created and labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_config: Option<NamespaceConfig>,

    /// Only replicate source objects whose labels match this selector (applied to every kind). Objects that stop
    /// matching are pruned from the DR namespace like deleted ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,

    /// Objects never replicated, by kind and name. Names accept `*` and `?` globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_resources: Option<Vec<ResourceExclusion>>,

    /// How Services are adapted for the DR cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_config: Option<ServiceConfig>,

    /// Replicate Helm release Secrets (type `helm.sh/release.v1`), so that `helm` in the DR cluster sees the releases.
    /// Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub include_helm_release_secrets: Option<bool>,

    /// Take over DR objects of the same kind and name that dr-syncer did not create. When false, such objects are
    /// left untouched and reported as conflicts. Objects another mapping manages are never taken over. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub adopt_existing_objects: Option<bool>,

    /// Delay each scheduled sync by up to this duration (for example `30s`), so that many mappings on the same
    /// schedule do not all start at once. The delay is fixed per mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub schedule_jitter: Option<String>,

    /// What happens to the DR objects when the mapping is deleted, or when a namespace stops matching
    /// `namespaceSelector`: `Retain` keeps them and removes dr-syncer's ownership labels and annotations, `Delete`
    /// deletes exactly the objects dr-syncer created (and the DR namespace, only if dr-syncer created it).
    /// Default: Retain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Retain"))]
    pub cleanup_policy: Option<CleanupPolicy>,
    /// GitOps-friendly manual trigger: any new value starts one sync, in every replication mode. The handled value
    /// is echoed in `status.lastHandledTrigger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub sync_trigger: Option<String>,
}

impl NamespaceMappingSpec {
    /// `paused` with its documented default.
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }

    /// `replicationMode` with its documented default.
    pub fn mode(&self) -> ReplicationMode {
        self.replication_mode.unwrap_or_default()
    }

    /// `scaleToZero` with its documented default.
    pub fn scales_to_zero(&self) -> bool {
        self.scale_to_zero.unwrap_or(true)
    }

    /// `syncCRDs` with its documented default.
    pub fn syncs_crds(&self) -> bool {
        self.sync_crds.unwrap_or(false)
    }

    /// Whether Helm release Secrets are replicated (default false).
    pub fn includes_helm_release_secrets(&self) -> bool {
        self.include_helm_release_secrets.unwrap_or(false)
    }

    /// `cleanupPolicy` with its documented default.
    pub fn cleanup(&self) -> CleanupPolicy {
        self.cleanup_policy.unwrap_or_default()
    }

    /// Whether DR objects dr-syncer did not create are taken over (default false).
    pub fn adopts_existing_objects(&self) -> bool {
        self.adopt_existing_objects.unwrap_or(false)
    }
}

/// When a NamespaceMapping syncs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum ReplicationMode {
    /// On the cron `schedule`.
    #[default]
    Scheduled,
    /// On every source change, plus a full sync every `continuous.backgroundSyncInterval`.
    Continuous,
    /// Only when the `dr-syncer.io/sync-now` annotation is set.
    Manual,
}

/// What happens to DR objects that a mapping no longer covers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum CleanupPolicy {
    /// Keep the DR objects; remove dr-syncer's ownership labels and annotations from them.
    #[default]
    Retain,
    /// Delete the DR objects dr-syncer created, and the DR namespace if dr-syncer created it.
    Delete,
}

/// A reference to a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingRef {
    /// Name of the ClusterMapping.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the ClusterMapping. Default: the NamespaceMapping's namespace. Another namespace's
    /// ClusterMapping (and with it that namespace's RemoteClusters) is used only when it lists this mapping's
    /// namespace in its annotation `dr-syncer.io/allow-references-from`; otherwise the mapping is refused with
    /// reason ReferenceNotAllowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// How the DR namespace of a selected source namespace is named: `<prefix><source name><suffix>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationNamespaceRule {
    /// Text put before the source namespace's name, for example `dr-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30), regex(pattern = "^([a-z0-9][-a-z0-9]*)?$"))]
    pub prefix: Option<String>,
    /// Text put after the source namespace's name, for example `-dr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30), regex(pattern = "^([-a-z0-9]*[a-z0-9])?$"))]
    pub suffix: Option<String>,
}

impl DestinationNamespaceRule {
    /// The DR namespace name for `source`.
    pub fn apply(&self, source: &str) -> String {
        format!("{}{}{}", self.prefix.as_deref().unwrap_or(""), source, self.suffix.as_deref().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_rule_wraps_source_name_when_applied() {
        let rule = DestinationNamespaceRule { prefix: Some("dr-".into()), suffix: Some("-copy".into()) };
        assert_eq!(rule.apply("shop"), "dr-shop-copy");
        assert_eq!(DestinationNamespaceRule::default().apply("shop"), "shop");
    }

    #[test]
    fn spec_keeps_explicit_false_when_round_tripped() {
        let spec: NamespaceMappingSpec =
            serde_json::from_str(r#"{"scaleToZero": false, "syncCRDs": true, "sourceNamespace": "a"}"#).unwrap();
        assert!(!spec.scales_to_zero());
        assert!(spec.syncs_crds());
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["scaleToZero"], false);
        assert_eq!(back["syncCRDs"], true);
    }

    #[test]
    fn spec_uses_documented_defaults_when_fields_absent() {
        let spec = NamespaceMappingSpec::default();
        assert!(spec.scales_to_zero());
        assert!(!spec.is_paused());
        assert_eq!(spec.mode(), ReplicationMode::Scheduled);
        assert!(!spec.syncs_crds());
    }
}
