//! The nested configuration blocks of a NamespaceMapping spec.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::VerificationMode;
use crate::validation::DURATION_PATTERN;

/// Default full-sync interval of Continuous mode.
pub const DEFAULT_BACKGROUND_SYNC_INTERVAL: &str = "1h";
/// Default number of retries of a failed sync.
pub const DEFAULT_MAX_RETRIES: i32 = 5;
/// Default wait before the first retry.
pub const DEFAULT_INITIAL_BACKOFF: &str = "5s";
/// Default longest wait between retries.
pub const DEFAULT_MAX_BACKOFF: &str = "5m";
/// Default growth of the wait between retries, in percent.
pub const DEFAULT_BACKOFF_MULTIPLIER: i32 = 200;
/// Default number of PVC data copies of one mapping at once.
pub const DEFAULT_CONCURRENT_SYNCS: i32 = 2;
/// Default time limit of one PVC data copy.
pub const DEFAULT_DATA_SYNC_TIMEOUT: &str = "30m";
/// Default share of a DR volume's files one copy may delete before the deletion guard stops it.
pub const DEFAULT_MAX_DELETE_PERCENT: i32 = 50;
/// Default lifetime of a mapping's SSH client key before it is rotated.
pub const DEFAULT_KEY_ROTATION_INTERVAL: &str = "24h";
/// Default wait for pods to drain in RecreateWithPodDrain.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "5m";
/// Default wait for a forced deletion in ForceUpdate.
pub const DEFAULT_FORCE_DELETE_TIMEOUT: &str = "2m";

/// Settings of Continuous mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousConfig {
    /// Watch the source namespace and sync each change as it happens. When false, Continuous mode only runs the
    /// periodic full sync. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub watch_resources: Option<bool>,
    /// Time between full syncs in Continuous mode, for example `30m` or `1h30m`. Default: 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_BACKGROUND_SYNC_INTERVAL), regex(pattern = DURATION_PATTERN))]
    pub background_sync_interval: Option<String>,
}

/// Retries of a failed sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// Retries before giving up until the next scheduled sync. Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_MAX_RETRIES), range(min = 0, max = 100))]
    pub max_retries: Option<i32>,
    /// Wait before the first retry, for example `5s`. Default: 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_INITIAL_BACKOFF), regex(pattern = DURATION_PATTERN))]
    pub initial_backoff: Option<String>,
    /// Longest wait between retries, for example `5m`. Default: 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_MAX_BACKOFF), regex(pattern = DURATION_PATTERN))]
    pub max_backoff: Option<String>,
    /// Growth of the wait after each failure, in percent: 200 doubles it. Default: 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_BACKOFF_MULTIPLIER), range(min = 100, max = 1000))]
    pub backoff_multiplier: Option<i32>,
}

/// How PersistentVolumeClaims are replicated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcConfig {
    /// Also replicate the PersistentVolume bound to each PVC and keep the DR PVC bound to it (for storage that both
    /// clusters can attach). Per PVC: label `dr-syncer.io/sync-pv`. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub sync_persistent_volumes: Option<bool>,
    /// Storage classes to swap for the DR cluster; the first entry whose `from` matches wins. Per PVC: label
    /// `dr-syncer.io/storage-class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_mappings: Option<Vec<StorageClassMapping>>,
    /// Access modes to swap for the DR cluster. Per PVC: label `dr-syncer.io/access-mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode_mappings: Option<Vec<AccessModeMapping>>,
    /// Keep `selector`, `dataSource` and `dataSourceRef` of source PVCs. `volumeMode` is always kept. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub preserve_volume_attributes: Option<bool>,
    /// Copy the data inside each PVC to its DR copy with rsync over SSH. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub sync_data: Option<bool>,
    /// Settings of the data copy, when `syncData` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sync_config: Option<DataSyncConfig>,
}

/// A storage class swap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassMapping {
    /// Storage class in the source cluster.
    #[schemars(length(min = 1, max = 253))]
    pub from: String,
    /// Storage class to use in the DR cluster.
    #[schemars(length(min = 1, max = 253))]
    pub to: String,
}

/// An access mode swap.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessModeMapping {
    /// Access mode in the source cluster: ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod.
    #[schemars(extend("enum" = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]))]
    pub from: String,
    /// Access mode to use in the DR cluster.
    #[schemars(extend("enum" = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]))]
    pub to: String,
}

/// Settings of the PVC data copy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSyncConfig {
    /// Most PVCs of this mapping copied at once. Default: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_CONCURRENT_SYNCS), range(min = 1, max = 64))]
    pub concurrent_syncs: Option<i32>,
    /// Paths inside each volume not to copy, relative to its root (rsync `--exclude` patterns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 4096)))]
    pub exclude_paths: Option<Vec<String>>,
    /// Extra rsync options; only options on dr-syncer's allow-list are accepted (see the data-path docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = "^--?[A-Za-z0-9][-A-Za-z0-9]*(=[^\\s]*)?$")))]
    pub rsync_options: Option<Vec<String>>,
    /// Bandwidth limit of each copy in KiB/s (rsync `--bwlimit`); 0 means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub bandwidth_limit: Option<i32>,
    /// Time limit of one copy, for example `30m` or `2h`. Default: 30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_DATA_SYNC_TIMEOUT), regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Data check after each copy: `none`, `sample` or `full`. Per PVC: annotation `dr-syncer.io/verification-mode`.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "none"))]
    pub verification_mode: Option<VerificationMode>,
    /// Percentage of files checked in `sample` mode. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10), range(min = 1, max = 100))]
    pub sample_percent: Option<i32>,
    /// How long the mapping's SSH certificate authority (which signs each copy's own credential) is used before a
    /// new one replaces it, for example `24h`; a new controller process also makes a new one. The previous one
    /// stays accepted while copies it certified run (at most `timeout`), so a running copy is never cut. Rotate
    /// at once with the annotation `dr-syncer.io/rotate-ssh-key`. Default: 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_KEY_ROTATION_INTERVAL), regex(pattern = DURATION_PATTERN))]
    pub key_rotation_interval: Option<String>,
    /// Deletion guard: a copy that would delete more than this percentage of the files in a DR volume (the source
    /// lost them: a wipe, ransomware, a mistake) deletes none of them; new and changed files are still copied. The
    /// PVC's copy fails with reason `MassDeletion` (status, Warning event, metric). Approve the deletions with the
    /// annotation `dr-syncer.io/approve-deletions` on this mapping (removed once a data sync run succeeded). 100
    /// turns the guard off. Default: 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_MAX_DELETE_PERCENT), range(min = 0, max = 100))]
    pub max_delete_percent: Option<i32>,
    /// Copy device files, FIFOs and sockets, and keep the setgid bit on files of any group. The copy pod then gets
    /// the MKNOD and FSETID capabilities. Off by default: a volume of an application rarely needs them, and a
    /// device file planted in the source would otherwise appear in DR. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub special_files: Option<bool>,
}

/// How a change to a field that cannot be updated in place is applied.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum ImmutableHandling {
    /// Leave the DR object as it is and report the difference in status.
    #[default]
    NoChange,
    /// Delete the DR object and create it again.
    Recreate,
    /// Scale the DR workload down, wait for its pods to go, then recreate it.
    RecreateWithPodDrain,
    /// Apply every field that can change and leave the immutable ones.
    PartialUpdate,
    /// Delete the DR object with no grace period, then create it again once it is gone (another controller's
    /// finalizer is never removed; dr-syncer waits for it up to forceDeleteTimeout).
    ForceUpdate,
}

/// Handling of immutable-field changes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmutableResourceConfig {
    /// NoChange, Recreate, RecreateWithPodDrain, PartialUpdate or ForceUpdate. Per object: label
    /// `dr-syncer.io/immutable-handling`. Default: NoChange. PersistentVolumeClaims and PersistentVolumes are
    /// never deleted by this default or the label (deleting the DR claim deletes its data): they are left as they
    /// are (reason VolumeKept) unless resourceOverrides names their type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "NoChange"))]
    pub default_handling: Option<ImmutableHandling>,
    /// Handling per resource type, keyed `plural.group` (for example `statefulsets.apps`; core kinds by plural,
    /// such as `services`). The only way to let a change delete and recreate DR claims or volumes:
    /// `persistentvolumeclaims: Recreate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_overrides: Option<BTreeMap<String, ImmutableHandling>>,
    /// Longest wait for pods to go in RecreateWithPodDrain. Default: 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_DRAIN_TIMEOUT), regex(pattern = DURATION_PATTERN))]
    pub drain_timeout: Option<String>,
    /// Longest wait for a forced deletion in ForceUpdate. Default: 2m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_FORCE_DELETE_TIMEOUT), regex(pattern = DURATION_PATTERN))]
    pub force_delete_timeout: Option<String>,
}

/// What to do after a class of failure.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum FailureMode {
    /// Retry with backoff; when retries run out, wait for the next scheduled sync.
    #[default]
    RetryAndWait,
    /// Retry with backoff; when retries run out, mark the mapping Failed and run no scheduled sync until its spec
    /// changes or a sync is triggered.
    RetryOnly,
    /// Do not retry; try again at the next scheduled sync.
    WaitForNextSync,
    /// Do not retry; mark the mapping Failed and run no scheduled sync until its spec changes or a sync is triggered.
    FailFast,
}

/// How each class of failure is handled.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureHandling {
    /// Failures not covered below. Default: RetryAndWait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "RetryAndWait"))]
    pub default_mode: Option<FailureMode>,
    /// A mapped storage class does not exist in the DR cluster. Default: WaitForNextSync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "WaitForNextSync"))]
    pub storage_class_not_found: Option<FailureMode>,
    /// A listed resource type, a referenced RemoteCluster or ClusterMapping, or the source namespace does not exist.
    /// The kinds that do exist are still replicated. Default: WaitForNextSync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "WaitForNextSync"))]
    pub resource_not_found: Option<FailureMode>,
    /// The DR API server rejects an object as invalid; the other objects are still replicated.
    /// Default: WaitForNextSync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "WaitForNextSync"))]
    pub validation_failure: Option<FailureMode>,
    /// A cluster cannot be reached. Default: RetryAndWait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "RetryAndWait"))]
    pub network_error: Option<FailureMode>,
}

/// How Ingresses are adapted for the DR cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressConfig {
    /// Keep the source Ingress's annotations (controller settings, certificate issuers). Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub preserve_annotations: Option<bool>,
    /// Keep the `tls` section. Default: true.
    #[serde(default, rename = "preserveTLS", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub preserve_tls: Option<bool>,
    /// Keep `defaultBackend` and resource backends (backends that point at objects other than Services). Service
    /// backends of rules are always kept: `networking.k8s.io/v1` requires one per path. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub preserve_backends: Option<bool>,
    /// IngressClass of the DR copies (`spec.ingressClassName`), for DR clusters whose ingress controller differs.
    /// Unset keeps the source's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::validation::DNS_SUBDOMAIN_PATTERN))]
    pub ingress_class_name: Option<String>,
}

/// How Services are adapted for the DR cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Keep every nodePort, also those the source cluster assigned automatically (they may collide in the DR
    /// cluster). When false, only nodePorts set explicitly by a user are kept. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub preserve_node_ports: Option<bool>,
}

/// A kind and name pattern of objects that are never replicated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceExclusion {
    /// Kind or plural resource name, case-insensitive (`Secret`, `secrets`), or `*` for every kind.
    #[schemars(length(min = 1, max = 253))]
    pub kind: String,
    /// Object name; `*` matches any run of characters and `?` one character. Default: `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
}

/// How the DR namespace is created and labelled.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceConfig {
    /// Create the DR namespace when it does not exist. When false, a missing namespace is an error. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub create_namespace: Option<bool>,
    /// Copy the source namespace's labels to the DR namespace. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub preserve_labels: Option<bool>,
    /// Copy the source namespace's annotations to the DR namespace. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub preserve_annotations: Option<bool>,
}
