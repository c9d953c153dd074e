//! What the controller remembers per NamespaceMapping between reconciles: the sync in flight, the sync that just
//! finished, and the status it last wrote (newer than a possibly stale watch cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dr_syncer_api::namespace_mapping::NamespaceMappingStatus;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::decide::SyncReason;
use super::outcome::Finished;
use crate::watch::worker::{Progress, Worker};

/// A sync in flight.
#[derive(Clone, Debug)]
pub struct Running {
    /// Stops the sync.
    pub cancel: CancellationToken,
    /// Why it runs.
    pub reason: SyncReason,
    /// When it started.
    pub started: Timestamp,
}

/// Per-mapping memory.
#[derive(Clone, Debug, Default)]
pub struct MappingState {
    /// The sync in flight.
    pub running: Option<Running>,
    /// A finished sync not yet folded into status.
    pub finished: Option<Finished>,
    /// The status last written.
    pub status: Option<NamespaceMappingStatus>,
    /// `resourceVersion` of the mapping when its sync-now annotation was handled: a cached copy at this version still
    /// shows the annotation and must not trigger again.
    pub handled_sync_now_version: Option<String>,
    /// The sync request (annotation values) last reported as held because the mapping is paused.
    pub held_request: Option<String>,
    /// Reconciles in a row that could not resolve the mapping's clusters.
    pub resolve_failures: u32,
    /// The watch-driven sync of a Continuous mapping.
    pub watcher: Option<Arc<Worker>>,
    /// A full sync asked for by the watch-driven sync.
    pub requested: Option<SyncReason>,
    /// State of the watch-driven sync, for status.
    pub progress: Progress,
    /// Held by a full sync while it runs; batches of watched changes wait for it.
    pub sync_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Memory of every mapping, keyed `namespace/name`.
#[derive(Clone, Default)]
pub struct States {
    inner: Arc<Mutex<HashMap<String, MappingState>>>,
}

impl States {
    /// Runs `f` on the state of `key` (created on first use).
    pub fn with<R>(&self, key: &str, f: impl FnOnce(&mut MappingState) -> R) -> R {
        match self.inner.lock() {
            Ok(mut map) => f(map.entry(key.to_string()).or_default()),
            Err(poisoned) => f(poisoned.into_inner().entry(key.to_string()).or_default()),
        }
    }

    /// Forgets a deleted mapping, cancelling its sync.
    pub fn remove(&self, key: &str) {
        let removed = match self.inner.lock() {
            Ok(mut map) => map.remove(key),
            Err(poisoned) => poisoned.into_inner().remove(key),
        };
        if let Some(running) = removed.and_then(|s| s.running) {
            running.cancel.cancel();
        }
    }

    /// Cancels every sync and stops every watch-driven sync (controller shutdown).
    pub fn cancel_all(&self) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for state in map.values_mut() {
            if let Some(running) = &state.running {
                running.cancel.cancel();
            }
            state.watcher = None;
        }
    }
}
