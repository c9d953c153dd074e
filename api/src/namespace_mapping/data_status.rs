//! Observed state of a NamespaceMapping's PVC data copies: its client key and each PVC's copy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Time;

/// PVC data copies of a mapping (`pvcConfig.syncData`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSyncStatus {
    /// The mapping's SSH certificate authority, which signs each copy's own short-lived credential: only its
    /// fingerprint, generation and rotation times (the private half lives only in the controller's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ClientKeyStatus>,
    /// Copies running now.
    #[serde(default)]
    pub in_flight: i32,
    /// Copies waiting for a free slot (per-mapping `concurrentSyncs` or the source cluster's
    /// `globalConcurrencyLimit`).
    #[serde(default)]
    pub queued: i32,
    /// One entry per replicated PVC whose data is copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pvcs: Vec<PvcDataStatus>,
}

/// The mapping's current SSH client key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientKeyStatus {
    /// Counts rotations (a new controller process also makes a new one): 1 for the first.
    pub generation: i64,
    /// SHA-256 fingerprint of the current key, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// When the current key was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    /// When the key is rotated next (`dataSyncConfig.keyRotationInterval` after `created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Time>,
    /// Previous authorities the source agents still accept until `notAfter`, so a copy started before a rotation
    /// finishes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringKey>,
}

/// A previous key in its overlap period.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiringKey {
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// Generation it had.
    pub generation: i64,
    /// After this time the source agents refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
}

/// Where one PVC's copy stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum PvcDataPhase {
    /// Not copied yet.
    #[default]
    Pending,
    /// Waiting for a free slot.
    Queued,
    /// Being copied.
    Running,
    /// The last copy finished (and passed verification).
    Succeeded,
    /// The last copy failed; see `lastError`. Retried with backoff unless the error is permanent.
    Failed,
}

/// Data copy state of one PVC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcDataStatus {
    /// Source namespace of the PVC.
    pub namespace: String,
    /// Name of the PVC (the same in both clusters).
    pub name: String,
    /// DR namespace the data is copied into.
    pub destination_namespace: String,
    /// Where the copy stands.
    pub phase: PvcDataPhase,
    /// End of the last successful copy: the data in the DR PVC is at least this recent at the source (RPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// Start of the current or last copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start_time: Option<Time>,
    /// How long the last finished copy took, for example `1m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration: Option<String>,
    /// Bytes sent by the last finished copy (rsync's total transferred file size).
    #[serde(default)]
    pub bytes_transferred: i64,
    /// Files sent by the last finished copy.
    #[serde(default)]
    pub files_transferred: i64,
    /// Progress of the running copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<DataProgress>,
    /// Attempts of the current copy so far (1 for the first).
    #[serde(default)]
    pub attempts: i32,
    /// When the next retry starts, after a transient failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<DataSyncError>,
}

/// Progress of a running copy, as rsync reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataProgress {
    /// Bytes handled so far.
    pub bytes: i64,
    /// Percent of the volume handled (rsync's estimate while it is still scanning).
    pub percent: i32,
    /// Current rate, for example `42.1MB/s`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rate: String,
    /// Files sent so far.
    #[serde(default)]
    pub files: i64,
}

/// A failed copy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSyncError {
    /// Short CamelCase reason, for example `NoSpace`, `AuthRefused`, `Network`, `Timeout`.
    pub reason: String,
    /// What happened, with rsync's or ssh's own words when there are some.
    pub message: String,
    /// Permanent errors are not retried until the mapping or the PVC changes, or a sync is triggered.
    #[serde(default)]
    pub permanent: bool,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}
