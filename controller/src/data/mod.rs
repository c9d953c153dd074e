//! PVC data replication (`pvcConfig.syncData`): after a mapping's resource sync created the DR PVCs, each PVC's
//! data is copied with rsync over SSH through the source cluster's agents. Copies run in the background, outside
//! the reconcile loop, bounded per mapping (`concurrentSyncs`) and per source cluster (`globalConcurrencyLimit`).

pub mod failure;
pub mod keys;
pub mod lease;
pub mod manager;
pub mod metrics;
mod pod_report;
pub mod pods;
pub mod policy;
mod pvc_task;
mod rotation;
pub mod run;
mod settings;
pub mod sweep;
mod task;

pub use manager::{DataRequest, DataSync};

/// A stable 16-hex-digit digest of `text`, for object names derived from long or arbitrary strings.
pub fn short_hash(text: &str) -> String {
    crate::sync::ownership::sha256_hex(text.as_bytes())[..16].to_string()
}
