//! The data-sync manager: one background run per mapping at a time (a request while one runs is queued and
//! coalesced), per-source-cluster slots, the mapping's certificate authority, and its `status.dataSync`, written by its own field
//! manager so it never races the reconciler's status writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dr_syncer_api::constants::FIELD_MANAGER_DATA;
use dr_syncer_api::namespace_mapping::{CoveredNamespace, DataSyncStatus};
use dr_syncer_api::remote_cluster::DEFAULT_GLOBAL_CONCURRENCY_LIMIT;
use dr_syncer_api::{NamespaceMapping, RemoteCluster};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::keys::StoredKey;
use super::metrics::DataMetrics;
use crate::error::Error;
use crate::reconcile::Context;

/// How often a running data sync writes its status at most.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// What a data sync of a mapping needs, resolved by the mapping's resource sync.
#[derive(Clone)]
pub struct DataRequest {
    /// The mapping.
    pub mapping: Arc<NamespaceMapping>,
    /// The source RemoteCluster (its agents relay the copies).
    pub source_rc: RemoteCluster,
    /// Client of the source cluster.
    pub source: kube::Client,
    /// Client of the DR cluster.
    pub destination: kube::Client,
    /// Source namespaces and their DR namespaces.
    pub namespaces: Vec<CoveredNamespace>,
    /// Started by a trigger (sync-now): PVCs that failed permanently are tried again.
    pub forced: bool,
    /// Rotate the mapping's key first (annotation `dr-syncer.io/rotate-ssh-key`).
    pub rotate: bool,
}

impl DataRequest {
    /// `namespace/name` of the mapping; also its identity in the agents' policy.
    pub fn key(&self) -> String {
        format!("{}/{}", self.mapping.namespace().unwrap_or_default(), self.mapping.name_any())
    }
}

/// Longest wait for a deleted mapping's cancelled copies to end before its idle PVC Leases are removed.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Per-mapping state shared by its run and its copies.
#[derive(Default)]
pub struct MappingData {
    /// The status being built.
    pub status: Mutex<DataSyncStatus>,
    /// Status changed since the last write.
    pub dirty: AtomicBool,
    /// Copies running.
    pub in_flight: AtomicUsize,
    /// The mapping's SSH certificate authority, made by this process and kept only in its memory (a new process
    /// makes a new generation); its lock serializes key decisions.
    pub authority: tokio::sync::Mutex<Option<StoredKey>>,
    /// PVCs that failed permanently → the mapping generation they failed at.
    pub permanent: Mutex<HashMap<(String, String), i64>>,
    run: Mutex<RunState>,
    /// The newest request: where the mapping's copies go, for cleaning up after it.
    last: Mutex<Option<DataRequest>>,
    /// Cancelled when the mapping is deleted.
    pub cancel: CancellationToken,
}

#[derive(Default)]
struct RunState {
    running: bool,
    pending: Option<DataRequest>,
}

impl MappingData {
    /// Changes the status and marks it for writing.
    pub fn update(&self, f: impl FnOnce(&mut DataSyncStatus)) {
        if let Ok(mut status) = self.status.lock() {
            f(&mut status);
            self.dirty.store(true, Ordering::SeqCst);
        }
    }

    /// A copy of the status.
    pub fn snapshot(&self) -> DataSyncStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The process-wide copy slots: each source cluster's `globalConcurrencyLimit`, the limit in force (the smallest)
/// and the semaphore holding it.
type ProcessSlots = (HashMap<String, usize>, usize, Arc<Semaphore>);

/// Copy slots per source cluster: its limit and the semaphore holding them.
type Slots = HashMap<String, (usize, Arc<Semaphore>)>;

/// Runs PVC data syncs in the background.
#[derive(Clone)]
pub struct DataSync {
    /// This process's identity in the PVC Leases.
    pub identity: String,
    /// The data-sync metrics (copies running and queued, bytes, failures by reason, PVC age).
    pub metrics: DataMetrics,
    mappings: Arc<Mutex<HashMap<String, Arc<MappingData>>>>,
    /// Per source cluster (`pvcSync.concurrency`).
    per_cluster: Arc<Mutex<Slots>>,
    /// Across every cluster (`pvcSync.globalConcurrencyLimit`): each cluster's setting, and the slots of the
    /// smallest.
    process: Arc<Mutex<ProcessSlots>>,
}

impl DataSync {
    /// A manager registering its metrics in `registry`; `identity` names this process in PVC Leases.
    pub fn new(registry: &prometheus::Registry, identity: String) -> Result<DataSync, Error> {
        Ok(DataSync {
            identity,
            metrics: DataMetrics::register(registry)?,
            mappings: Arc::default(),
            per_cluster: Arc::default(),
            process: Arc::new(Mutex::new((HashMap::new(), 0, Arc::new(Semaphore::new(1))))),
        })
    }

    fn data(&self, key: &str) -> Arc<MappingData> {
        match self.mappings.lock() {
            Ok(mut map) => map.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// The copy slots a copy from `rc` takes, in order: the cluster's own (`pvcSync.concurrency`, default its
    /// `globalConcurrencyLimit`) and the process's (`globalConcurrencyLimit`, the smallest any source cluster sets,
    /// default 4). A changed limit makes new slots (running copies keep theirs).
    pub fn slots(&self, rc: &RemoteCluster) -> [Arc<Semaphore>; 2] {
        let pvc_sync = rc.spec.pvc_sync.clone().unwrap_or_default();
        let global = pvc_sync.global_concurrency_limit.unwrap_or(DEFAULT_GLOBAL_CONCURRENCY_LIMIT).max(1) as usize;
        let own = pvc_sync.concurrency.map_or(global, |c| c.max(1) as usize);
        let key = format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any());
        let cluster = match self.per_cluster.lock() {
            Ok(mut map) => {
                let entry = map.entry(key.clone()).or_insert_with(|| (own, Arc::new(Semaphore::new(own))));
                if entry.0 != own {
                    *entry = (own, Arc::new(Semaphore::new(own)));
                }
                entry.1.clone()
            }
            Err(_) => Arc::new(Semaphore::new(own)),
        };
        let process = match self.process.lock() {
            Ok(mut state) => {
                state.0.insert(key, global);
                let limit = state.0.values().copied().min().unwrap_or(global);
                if state.1 != limit {
                    (state.1, state.2) = (limit, Arc::new(Semaphore::new(limit)));
                }
                state.2.clone()
            }
            Err(_) => Arc::new(Semaphore::new(global)),
        };
        [cluster, process]
    }

    /// Starts a data sync of the mapping, or queues it behind the running one (the newest request wins).
    pub fn request(&self, ctx: &Context, request: DataRequest) {
        let data = self.data(&request.key());
        if let Ok(mut last) = data.last.lock() {
            *last = Some(request.clone());
        }
        {
            let Ok(mut run) = data.run.lock() else { return };
            if run.running {
                if request.rotate {
                    let (ctx, data, request) = (ctx.clone(), data.clone(), request.clone());
                    tokio::spawn(async move { super::rotation::rotate_now(&ctx, &data, &request).await });
                }
                let rotate = run.pending.as_ref().is_some_and(|p| p.rotate);
                let forced = request.forced || run.pending.as_ref().is_some_and(|p| p.forced);
                run.pending = Some(DataRequest { rotate, forced, ..request.clone() });
                return;
            }
            run.running = true;
        }
        let (ctx, manager) = (ctx.clone(), self.clone());
        tokio::spawn(async move {
            let mut request = request;
            loop {
                let (c, m, d, r) = (ctx.clone(), manager.clone(), data.clone(), request.clone());
                let run = crate::contain::contain(async move { super::task::run(&c, &m, &d, &r).await });
                if let Err(message) = run.await {
                    let failure = super::failure::Failure::transient(crate::contain::PANICKED, message);
                    super::task::report_failure(&ctx, &data, &request, &failure).await;
                }
                let Ok(mut run) = data.run.lock() else { return };
                match run.pending.take() {
                    Some(next) if !data.cancel.is_cancelled() => request = next,
                    _ => {
                        run.running = false;
                        return;
                    }
                }
            }
        });
    }

    /// Whether a data sync of the mapping runs (or is queued) in this process.
    pub fn is_running(&self, namespace: &str, name: &str) -> bool {
        let key = format!("{namespace}/{name}");
        let data = self.mappings.lock().ok().and_then(|m| m.get(&key).cloned());
        data.is_some_and(|d| d.run.lock().is_ok_and(|r| r.running))
    }

    /// Stops the mapping's copies and forgets it — the mapping was deleted (`deleted`) or no longer copies data.
    /// In the background, its keys are revoked at the agents, the objects of its copies and its key Secrets are
    /// deleted, and (when it still exists) its `status.dataSync` is removed.
    pub fn forget(&self, ctx: &Context, namespace: &str, name: &str, deleted: bool) {
        let key = format!("{namespace}/{name}");
        let Some(data) = self.mappings.lock().ok().and_then(|mut m| m.remove(&key)) else { return };
        data.cancel.cancel();
        self.metrics.forget_mapping((namespace, name));
        let Some(last) = data.last.lock().ok().and_then(|mut l| l.take()) else { return };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            // After any key write in progress: none starts once the mapping is cancelled (see `ensure_key`).
            let _keys = data.authority.lock().await;
            let (ns, name) = (last.mapping.namespace().unwrap_or_default(), last.mapping.name_any());
            let scope = super::sweep::Scope {
                source: &last.source,
                destination: &last.destination,
                mapping: (&ns, &name),
                timeout: ctx.settings.sync_api_timeout,
            };
            let pairs: Vec<(String, String)> =
                last.namespaces.iter().map(|c| (c.source.clone(), c.destination.clone())).collect();
            if let Err(failure) = super::sweep::mapping(&scope, &pairs).await {
                tracing::warn!(mapping = %key, reason = failure.reason, message = %failure.message,
                    "could not remove everything data sync made for the mapping; the RemoteCluster's agent check revokes its keys later");
            }
            // Its PVCs' Leases, once nobody holds them: its cancelled copies hand them back as they end.
            let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
            while data.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            let cluster = last.source_rc.name_any();
            let leases: Vec<String> =
                data.snapshot().pvcs.iter().map(|p| super::lease::name(&cluster, &p.namespace, &p.name)).collect();
            super::lease::remove_idle(&ctx.client, &ns, &leases, ctx.settings.sync_api_timeout).await;
            if !deleted && let Err(error) = clear_status(&ctx, &last.mapping).await {
                tracing::debug!(mapping = %key, %error, "status.dataSync not removed");
            }
        });
    }
}

/// Writes `status.dataSync` of the mapping with the data field manager.
pub async fn write_status(ctx: &Context, mapping: &NamespaceMapping, status: &DataSyncStatus) -> Result<(), Error> {
    apply_status(ctx, mapping, serde_json::json!({"dataSync": status})).await
}

/// Removes `status.dataSync` (the data field manager applies a status without it).
async fn clear_status(ctx: &Context, mapping: &NamespaceMapping) -> Result<(), Error> {
    apply_status(ctx, mapping, serde_json::json!({})).await
}

async fn apply_status(ctx: &Context, mapping: &NamespaceMapping, status: serde_json::Value) -> Result<(), Error> {
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &mapping.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": dr_syncer_api::constants::API_VERSION,
        "kind": "NamespaceMapping",
        "metadata": {"name": mapping.name_any()},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER_DATA).force();
    let what = format!("update status.dataSync of NamespaceMapping {}", mapping.name_any());
    let (name, patch) = (mapping.name_any(), Patch::Apply(&body));
    let patch = api.patch_status(&name, &params, &patch);
    crate::error::with_timeout(what, ctx.settings.api_timeout, patch).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(name: &str, concurrency: Option<i32>, global: Option<i32>) -> RemoteCluster {
        let mut rc: RemoteCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster",
            "metadata": {"name": name, "namespace": "ops"},
            "spec": {"kubeconfigSecretRef": {"name": "k", "namespace": "ops"}}}))
        .unwrap();
        rc.spec.pvc_sync = Some(dr_syncer_api::remote_cluster::PvcSyncSpec {
            concurrency,
            global_concurrency_limit: global,
            ..Default::default()
        });
        rc
    }

    #[test]
    fn slots_limit_each_cluster_by_concurrency_and_the_process_by_the_smallest_global_limit() {
        let sync = DataSync::new(&prometheus::Registry::new(), "t".into()).unwrap();
        let [cluster, process] = sync.slots(&rc("a", Some(1), Some(3)));
        assert_eq!((cluster.available_permits(), process.available_permits()), (1, 3));
        let [cluster, process] = sync.slots(&rc("b", None, Some(2)));
        assert_eq!(
            (cluster.available_permits(), process.available_permits()),
            (2, 2),
            "b: its global limit, the smallest"
        );
        let [_, again] = sync.slots(&rc("a", Some(1), Some(3)));
        assert!(Arc::ptr_eq(&again, &process), "one process-wide pool");
        let [cluster, process] = sync.slots(&rc("c", None, None));
        assert_eq!(
            (cluster.available_permits(), process.available_permits()),
            (4, 2),
            "defaults: 4, the smallest stays"
        );
    }
}
