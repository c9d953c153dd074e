//! Observed state of a NamespaceMapping.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, Time, conditions_list};
use crate::validation::DURATION_PATTERN;

/// Lifecycle of a NamespaceMapping's syncs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum NamespaceMappingPhase {
    /// Not synced yet.
    #[default]
    Pending,
    /// A sync is in progress.
    Running,
    /// The last sync finished; see `syncStats` for objects that failed.
    Completed,
    /// The last sync could not run or failed as a whole; see conditions and `lastError`.
    Failed,
}

/// Sync state of one object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum ObjectSyncState {
    /// Waiting to be synced.
    #[default]
    Pending,
    /// Being synced.
    InProgress,
    /// In sync.
    Synced,
    /// The last attempt failed.
    Failed,
}

/// Observed state of a NamespaceMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMappingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NamespaceMappingPhase>,
    /// When the last sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// When the next scheduled sync starts (Scheduled mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// When a source change was last handled (Continuous mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_watch_event: Option<Time>,
    /// Totals of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_stats: Option<SyncStats>,
    /// Source replica counts of the Deployments and StatefulSets parked in DR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_scales: Vec<DeploymentScale>,
    /// Retry state after a failed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_status: Option<RetryStatus>,
    /// The most recent error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Ready and Synced, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list)]
    pub conditions: Vec<Condition>,
    /// Objects whose last sync did not succeed (bounded list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_status: Vec<ResourceStatus>,
    /// Errors of the last sync by category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_categories: Vec<ErrorCategory>,
    /// When the last sync started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    /// How long the last sync took, for example `2.5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// When the last sync that replicated every object without error finished: the recovery point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<Time>,
    /// The DR namespace the last sync wrote to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    /// The `spec.syncTrigger` value the last triggered sync handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_trigger: Option<String>,
    /// Objects of the last sync by kind: written, already up to date, pruned, failed and refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_counts: Vec<KindCounts>,
    /// The source namespaces this mapping replicates and their DR namespaces: the one of `sourceNamespace`, or
    /// every namespace currently matching `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covered_namespaces: Vec<CoveredNamespace>,
    /// DR namespaces whose cleanup (per `cleanupPolicy`) has not finished, with the reason; see the Cleanup
    /// condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_cleanups: Vec<PendingCleanup>,
    /// Kinds named in `resourceTypes` or `namespaceScopedResources` and the API version each is replicated with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_resource_types: Vec<String>,
    /// PVC data copies (`pvcConfig.syncData`): the client key and each PVC's last copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sync: Option<super::DataSyncStatus>,
}

/// A source namespace a mapping replicates, and where to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoveredNamespace {
    /// The source namespace.
    pub source: String,
    /// Its DR namespace.
    pub destination: String,
}

/// A DR namespace whose cleanup has not finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCleanup {
    /// The DR namespace.
    pub destination: String,
    /// Why the cleanup has not finished.
    pub message: String,
}

/// What the last sync did with the objects of one kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindCounts {
    /// Kind, qualified with its API group for kinds outside the core group (`Deployment.apps`).
    pub kind: String,
    /// Objects written to the DR cluster (created or changed).
    #[serde(default)]
    pub applied: i32,
    /// Objects already up to date in the DR cluster, not written.
    #[serde(default)]
    pub unchanged: i32,
    /// DR objects deleted because their source object is gone or no longer selected.
    #[serde(default)]
    pub pruned: i32,
    /// Objects the DR cluster refused or that could not be transformed.
    #[serde(default)]
    pub failed: i32,
    /// DR objects left untouched because dr-syncer does not manage them.
    #[serde(default)]
    pub conflicts: i32,
    /// DR objects left as they are because the source changed a field they cannot change in place
    /// (`immutableResourceConfig` NoChange).
    #[serde(default)]
    pub immutable: i32,
}

/// Totals of one sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Source objects considered.
    #[schemars(range(min = 0))]
    pub total_resources: i32,
    /// Objects in sync after the run (written or already unchanged).
    #[schemars(range(min = 0))]
    pub successful_syncs: i32,
    /// Objects that failed.
    #[schemars(range(min = 0))]
    pub failed_syncs: i32,
    /// Wall time of the sync, for example `2s150ms`.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub last_sync_duration: String,
}

/// The source replica count of a parked workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentScale {
    /// Name of the Deployment or StatefulSet.
    pub name: String,
    /// Replicas in the source cluster.
    pub original_replicas: i32,
    /// When it was last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
}

/// Retry state after a failed sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// When the next retry starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// Retries left before waiting for the next scheduled sync.
    #[schemars(range(min = 0))]
    pub retries_remaining: i32,
    /// Current wait between retries, for example `20s`.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub backoff_duration: String,
}

/// The most recent error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// When it went wrong.
    pub time: Time,
    /// The object involved, as `Kind/name`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// Sync state of one object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// Namespace of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pending, InProgress, Synced or Failed.
    pub status: ObjectSyncState,
    /// When it was last attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors of one category.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCategory {
    /// The error's reason, for example `Conflict` or `Invalid`.
    #[schemars(length(min = 1))]
    pub category: String,
    /// How many objects hit it in the last sync.
    #[schemars(range(min = 0))]
    pub count: i32,
    /// When it last happened.
    pub last_occurred: Time,
}
