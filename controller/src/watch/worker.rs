//! The watch-driven sync of one Continuous mapping: subscribes to the shared source watches of its kinds, gathers
//! changes for a short debounce, and syncs each changed object on its own (never while a full sync of the mapping
//! runs). Changes that fail on a network error are retried with backoff; a watch that resumes after a failure asks
//! for a full sync, so nothing missed in between is lost. The queue of changes is bounded (`--watch-queue-length`):
//! when changes arrive faster than they are synced, the ones that do not fit are dropped and a full sync is asked
//! for instead, so memory stays bounded and nothing is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dr_syncer_api::NamespaceMapping;
use dr_syncer_api::namespace_mapping::CoveredNamespace;
use futures::{StreamExt, stream};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::hub::{Change, Delivery, Inbox, Interest, Subscription, WatchHub, WatchKey};
use crate::mapping::spec::Namespaces;
use crate::reconcile::Context;
use crate::sync::discovery::api_resource;
use crate::sync::engine::incremental::NamespaceSync;
use crate::sync::engine::{Endpoint, Job};
use crate::sync::kinds::{self, SelectedKind};
use crate::sync::report::{Category, SyncReport};

/// How long changes are gathered after the first one before they are synced.
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// Longest wait before a change that failed on a network error is tried again.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What the worker asks of its mapping's reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Run a full sync: a watch resumed after a failure, or the selected namespaces changed.
    FullSync(&'static str),
    /// Changes were synced; fold this into status.
    Progress(Progress),
}

/// The state of the watch-driven sync, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// When a source change was last synced.
    pub last_event: Option<jiff::Timestamp>,
    /// The last problem (reason, message), cleared by the next clean batch.
    pub problem: Option<(String, String)>,
}

/// Everything a worker needs; built by the reconciler.
pub struct WorkerPlan {
    /// The mapping.
    pub mapping: Arc<NamespaceMapping>,
    /// Source cluster.
    pub source: Endpoint,
    /// Identity of the source client (watches are shared per identity).
    pub source_identity: String,
    /// DR cluster.
    pub destination: Endpoint,
    /// The mapping's namespaces.
    pub namespaces: Namespaces,
    /// Namespaces covered now (selector mappings: as of the last full sync).
    pub covered: Vec<CoveredNamespace>,
    /// Held by full syncs of the mapping; a batch of changes waits for it.
    pub sync_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where the worker reports.
    pub report: Arc<dyn Fn(Request) + Send + Sync>,
}

/// A running worker; dropping it stops it.
#[derive(Debug)]
pub struct Worker {
    /// What it was started from; a different fingerprint means it must be restarted.
    pub fingerprint: String,
    cancel: CancellationToken,
    covered: Arc<RwLock<BTreeMap<String, String>>>,
}

impl Worker {
    /// Updates the covered namespaces (after a full sync of a selector mapping).
    pub fn set_covered(&self, list: &[CoveredNamespace]) {
        let mut map = self.covered.write().unwrap_or_else(|p| p.into_inner());
        *map = list.iter().map(|c| (c.source.clone(), c.destination.clone())).collect();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts the worker of `plan` in the background.
pub fn start(ctx: &Context, hub: &WatchHub, plan: WorkerPlan, fingerprint: String) -> Worker {
    let cancel = CancellationToken::new();
    let covered: BTreeMap<String, String> =
        plan.covered.iter().map(|c| (c.source.clone(), c.destination.clone())).collect();
    let covered = Arc::new(RwLock::new(covered));
    let worker = Worker { fingerprint, cancel: cancel.clone(), covered: covered.clone() };
    tokio::spawn(run(ctx.clone(), hub.clone(), plan, cancel, covered));
    worker
}

/// Keeps the worker gauge right however the task ends.
struct Counted(crate::reconcile::metrics::ControllerMetrics);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.worker_delta(-1);
    }
}

type Pending = HashMap<(WatchKey, String, String), Instant>;

async fn run(
    ctx: Context,
    hub: WatchHub,
    plan: WorkerPlan,
    cancel: CancellationToken,
    covered: Arc<RwLock<BTreeMap<String, String>>>,
) {
    ctx.metrics.worker_delta(1);
    let _counted = Counted(ctx.metrics.clone());
    let key = format!("{}/{}", plan.mapping.namespace().unwrap_or_default(), plan.mapping.name_any());
    let (inbox, rx) = Inbox::bounded(ctx.settings.watch_queue);
    let resolution = kinds::resolve(
        plan.mapping.spec.resource_types.as_deref(),
        plan.mapping.spec.namespace_scoped_resources.as_deref(),
        &plan.source.catalog,
    );
    let mut kinds: HashMap<WatchKey, SelectedKind> = HashMap::new();
    let mut subscriptions: Vec<Subscription> = Vec::new();
    let watched = covered.clone();
    let interest: Interest = match &plan.namespaces {
        Namespaces::One { source, .. } => {
            let source = source.clone();
            Arc::new(move |ns: &str| ns == source)
        }
        Namespaces::Selected { .. } => {
            Arc::new(move |ns: &str| watched.read().unwrap_or_else(|p| p.into_inner()).contains_key(ns))
        }
    };
    for selected in &resolution.kinds {
        let Some(served) = plan.source.catalog.get(&selected.group, &selected.kind) else { continue };
        let Some(version) =
            kinds::common_version(served, plan.destination.catalog.get(&selected.group, &selected.kind))
        else {
            continue;
        };
        let wkey = WatchKey {
            cluster: plan.source_identity.clone(),
            group: selected.group.clone(),
            version: version.clone(),
            plural: selected.plural.clone(),
        };
        let resource = api_resource(&selected.group, &version, &selected.kind, &selected.plural);
        subscriptions.push(hub.subscribe(
            wkey.clone(),
            &plan.source.client,
            &resource,
            interest.clone(),
            inbox.clone(),
        ));
        kinds.insert(wkey, selected.clone());
    }
    let namespace_watch = match (&plan.namespaces, &plan.mapping.spec.namespace_selector) {
        (Namespaces::Selected { .. }, Some(selector)) => {
            let wkey = WatchKey {
                cluster: plan.source_identity.clone(),
                group: String::new(),
                version: "v1".into(),
                plural: "namespaces".into(),
            };
            let resource = api_resource("", "v1", "Namespace", "namespaces");
            let all: Interest = Arc::new(|_| true);
            let sub = hub.subscribe(wkey.clone(), &plan.source.client, &resource, all, inbox.clone());
            Selector::try_from(selector.clone()).ok().map(|s| (wkey, s, sub))
        }
        _ => None,
    };
    tracing::info!(mapping = %key, kinds = kinds.len(), "watching the source for changes");
    let state = Loop { ctx, plan, kinds, covered, namespace_watch, syncs: HashMap::new(), key, inbox };
    state.run(rx, cancel).await;
    drop(subscriptions);
}

struct Loop {
    ctx: Context,
    plan: WorkerPlan,
    kinds: HashMap<WatchKey, SelectedKind>,
    covered: Arc<RwLock<BTreeMap<String, String>>>,
    namespace_watch: Option<(WatchKey, Selector, Subscription)>,
    syncs: HashMap<String, Arc<NamespaceSync>>,
    key: String,
    /// The subscriptions' inbox, for its overflow mark (the worker holds a sender, so `recv` never ends by itself:
    /// the worker stops when cancelled).
    inbox: Inbox,
}

impl Loop {
    async fn run(mut self, mut rx: Receiver<Delivery>, cancel: CancellationToken) {
        let mut retries: HashMap<(WatchKey, String, String), (Instant, u32, Instant)> = HashMap::new();
        loop {
            let next_retry = retries.values().map(|(_, _, due)| *due).min();
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                got = rx.recv() => match got { Some(g) => Some(g), None => return },
                _ = sleep_until(next_retry) => None,
            };
            let mut pending: Pending = HashMap::new();
            let mut full_sync: Option<&'static str> = None;
            if let Some(first) = first {
                self.take(first, &mut pending, &mut full_sync);
                let deadline = tokio::time::Instant::now() + DEBOUNCE;
                while let Ok(Some(more)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    self.take(more, &mut pending, &mut full_sync);
                }
            }
            let now = Instant::now();
            let due: Vec<_> = retries.iter().filter(|(_, (_, _, d))| *d <= now).map(|(k, _)| k.clone()).collect();
            for k in due {
                if let Some((seen, _, _)) = retries.get(&k) {
                    pending.entry(k).or_insert(*seen);
                }
            }
            if self.inbox.take_overflow() {
                self.ctx.metrics.watch_queue_overflowed();
                tracing::warn!(mapping = %self.key, capacity = self.ctx.settings.watch_queue,
                    "source changes arrived faster than they were synced; some were dropped, resyncing everything");
                full_sync = Some("source changes arrived faster than they were synced (the watch queue was full)");
            }
            if let Some(why) = full_sync {
                (self.plan.report)(Request::FullSync(why));
            }
            if pending.is_empty() {
                continue;
            }
            let failed = {
                let _held = self.plan.sync_lock.clone().lock_owned().await;
                if cancel.is_cancelled() {
                    return;
                }
                self.sync(pending).await
            };
            for (k, seen, ok) in failed {
                if ok {
                    retries.remove(&k);
                    continue;
                }
                let attempts = retries.get(&k).map(|(_, n, _)| n + 1).unwrap_or(1);
                let wait = Duration::from_secs(1).saturating_mul(2u32.saturating_pow(attempts.min(6))).min(MAX_RETRY);
                retries.insert(k, (seen, attempts, Instant::now() + wait));
            }
        }
    }

    /// Sorts one event into the pending changes or the requests.
    fn take(&mut self, (wkey, change, seen): Delivery, pending: &mut Pending, full: &mut Option<&'static str>) {
        match change {
            Change::Relisted => *full = Some("the source watch resumed after an interruption"),
            Change::Failed(message) => {
                let problem =
                    Some(("WatchFailed".to_string(), format!("source watch of {}: {message}", wkey.resource())));
                (self.plan.report)(Request::Progress(Progress { last_event: None, problem }));
            }
            Change::Upserted { namespace, name } | Change::Deleted { namespace, name } => {
                if let Some((nkey, selector, sub)) = &self.namespace_watch
                    && *nkey == wkey
                {
                    let matches = sub.store().and_then(|s| {
                        s.state().into_iter().find(|n| n.name_any() == name).map(|n| selector.matches(n.labels()))
                    });
                    let covered = self.covered.read().unwrap_or_else(|p| p.into_inner()).contains_key(&name);
                    if matches.unwrap_or(false) != covered {
                        *full = Some("the namespaces matching namespaceSelector changed");
                    }
                    return;
                }
                pending.entry((wkey, namespace, name)).or_insert(seen);
            }
        }
    }

    /// Syncs the pending changes; returns each with whether it is done (false: retry it).
    async fn sync(&mut self, pending: Pending) -> Vec<((WatchKey, String, String), Instant, bool)> {
        let mut work = Vec::new();
        for ((wkey, namespace, name), seen) in pending {
            let Some(selected) = self.kinds.get(&wkey).cloned() else { continue };
            let Some(sync) = self.namespace_sync(&namespace) else { continue };
            work.push((wkey, namespace, name, seen, selected, sync));
        }
        let (ns, mapping) = (self.plan.mapping.namespace().unwrap_or_default(), self.plan.mapping.name_any());
        let results = stream::iter(work.into_iter().map(|(wkey, namespace, name, seen, selected, sync)| async move {
            let mut report = SyncReport::default();
            sync.sync_object(&selected, &wkey.version, &name, &mut report).await;
            ((wkey, namespace, name), seen, report)
        }))
        .buffer_unordered(self.ctx.settings.sync_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        let mut merged = SyncReport::default();
        let mut out = Vec::new();
        for (k, seen, report) in results {
            let t = report.totals();
            if t.applied + t.pruned > 0 {
                self.ctx.metrics.observe_propagation(&ns, &mapping, seen.elapsed().as_secs_f64());
            }
            let network = report.errors.iter().any(|e| e.category == Category::NetworkError);
            out.push((k, seen, !network));
            let kinds: Vec<_> = report.kinds.values().cloned().collect();
            self.ctx.metrics.record_objects(&ns, &mapping, &kinds);
            merged.errors.extend(report.errors);
            merged.immutable.extend(report.immutable);
            merged.conflicts.extend(report.conflicts);
        }
        let problem = merged.errors.iter().chain(&merged.immutable).chain(&merged.conflicts).next().map(|p| {
            let reason = if p.category == Category::NetworkError { "RemoteUnreachable" } else { p.reason.as_str() };
            (reason.to_string(), format!("{}/{}: {}", p.kind, p.name, p.message))
        });
        for p in merged.errors.iter().take(5) {
            tracing::warn!(mapping = %self.key, kind = %p.kind, name = %p.name, reason = %p.reason, "change not synced: {}", p.message);
        }
        let progress = Progress { last_event: Some(jiff::Timestamp::now()), problem };
        (self.plan.report)(Request::Progress(progress));
        out
    }

    /// The single-object sync of a source namespace, built on first use.
    fn namespace_sync(&mut self, namespace: &str) -> Option<Arc<NamespaceSync>> {
        if let Some(s) = self.syncs.get(namespace) {
            return Some(s.clone());
        }
        let destination = match &self.plan.namespaces {
            Namespaces::One { source, destination } => (source == namespace).then(|| destination.clone())?,
            Namespaces::Selected { .. } => {
                self.covered.read().unwrap_or_else(|p| p.into_inner()).get(namespace).cloned()?
            }
        };
        let job = Job {
            marks: crate::mapping::cleanup::marks_of(&self.plan.mapping, &self.plan.source.name, namespace),
            source: self.plan.source.clone(),
            destination: self.plan.destination.clone(),
            destination_namespace: destination,
            spec: self.plan.mapping.spec.clone(),
            timeout: self.ctx.settings.sync_api_timeout,
            concurrency: 1,
            cancel: CancellationToken::new(),
        };
        let sync = Arc::new(NamespaceSync::new(job).ok()?);
        self.syncs.insert(namespace.to_string(), sync.clone());
        Some(sync)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
