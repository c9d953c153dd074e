//! The reconciler's side of Continuous mode: starts, restarts and stops a mapping's watch-driven sync, and folds
//! its progress into status (`lastWatchEvent`, condition Watching).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_syncer_api::NamespaceMapping;
use dr_syncer_api::common::Time;
use dr_syncer_api::namespace_mapping::{NamespaceMappingStatus, ReplicationMode};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::decide::SyncReason;
use super::resolve::Resolved;
use super::spec::{Namespaces, Validated};
use super::{MappingController, key_of};
use crate::reconcile::conditions::{self, Desired, FALSE, TRUE};
use crate::sync::engine::Endpoint;
use crate::watch::worker::{self, Request, WorkerPlan};

/// Condition: the watch-driven sync of a Continuous mapping runs and its last changes were synced.
pub const WATCHING: &str = "Watching";
/// Least time between two status updates caused by watched changes.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Whether the mapping wants a watch-driven sync.
pub fn wanted(nm: &NamespaceMapping) -> bool {
    nm.spec.mode() == ReplicationMode::Continuous
        && nm.spec.continuous.as_ref().and_then(|c| c.watch_resources).unwrap_or(true)
}

/// Stops the mapping's watch-driven sync, if any.
pub fn stop(mc: &MappingController, key: &str) {
    let stopped = mc.states.with(key, |s| s.watcher.take());
    if stopped.is_some() {
        tracing::info!(mapping = %key, "stopped watching the source");
    }
}

/// Starts the watch-driven sync when the mapping wants one and it is not running with the same settings, stops it
/// when not wanted, and folds its progress into `status`.
pub async fn reconcile(
    mc: &MappingController,
    nm: &Arc<NamespaceMapping>,
    resolved: &Resolved,
    validated: &Validated,
    status: &mut NamespaceMappingStatus,
) {
    let key = key_of(nm);
    if !wanted(nm) {
        stop(mc, &key);
        status.conditions.retain(|c| c.type_ != WATCHING);
        return;
    }
    let generation = nm.meta().generation;
    let fingerprint = format!(
        "{}|{}|{}",
        generation.unwrap_or_default(),
        resolved.source.1.identity,
        resolved.destination.1.identity
    );
    let current = mc.states.with(&key, |s| s.watcher.as_ref().map(|w| w.fingerprint.clone()));
    if current.as_deref() != Some(fingerprint.as_str()) {
        stop(mc, &key);
        match start(mc, nm, resolved, validated, status, fingerprint).await {
            Ok(()) => tracing::info!(mapping = %key, "watch-driven sync started"),
            Err(message) => {
                let desired = Desired { type_: WATCHING, status: FALSE, reason: "RemoteUnreachable", message };
                conditions::set(&mut status.conditions, desired, generation, &conditions::now());
                return;
            }
        }
    }
    let (progress, watcher) = mc.states.with(&key, |s| (s.progress.clone(), s.watcher.clone()));
    if let Some(w) = watcher
        && matches!(validated.namespaces, Namespaces::Selected { .. })
    {
        w.set_covered(&status.covered_namespaces);
    }
    if let Some(at) = progress.last_event {
        status.last_watch_event = Some(Time(at));
        // Changes synced cleanly on top of a clean full sync: DR is current as of that batch (the recovery point).
        let synced = conditions::get(&status.conditions, super::outcome::SYNCED).is_some_and(|c| c.status == TRUE);
        let newer = status.last_successful_sync_time.as_ref().is_none_or(|t| t.0 < at);
        if progress.problem.is_none() && synced && newer {
            status.last_successful_sync_time = Some(Time(at));
            let (ns, name) = (nm.namespace().unwrap_or_default(), nm.name_any());
            mc.ctx.metrics.set_last_success(&ns, &name, at.as_millisecond() as f64 / 1000.0);
        }
    }
    let desired = match &progress.problem {
        Some((reason, message)) => Desired { type_: WATCHING, status: FALSE, reason, message: message.clone() },
        None => Desired {
            type_: WATCHING,
            status: TRUE,
            reason: "Watching",
            message: "source changes are synced as they happen".into(),
        },
    };
    conditions::set(&mut status.conditions, desired, generation, &conditions::now());
}

async fn start(
    mc: &MappingController,
    nm: &Arc<NamespaceMapping>,
    resolved: &Resolved,
    validated: &Validated,
    status: &NamespaceMappingStatus,
    fingerprint: String,
) -> Result<(), String> {
    let ctx = &mc.ctx;
    let timeout = ctx.settings.sync_api_timeout;
    let ((src_rc, src), (dst_rc, dst)) = (&resolved.source, &resolved.destination);
    let (source_catalog, destination_catalog) =
        match tokio::join!(ctx.registry.catalog(src_rc, src, timeout), ctx.registry.catalog(dst_rc, dst, timeout)) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => return Err(format!("cannot start watching: {e}")),
        };
    let key = key_of(nm);
    let plan = WorkerPlan {
        mapping: super::spec::with_cluster_defaults(nm, src_rc),
        source: Endpoint { name: src_rc.name_any(), client: src.client.clone(), catalog: source_catalog },
        source_identity: src.identity.clone(),
        destination: Endpoint { name: dst_rc.name_any(), client: dst.client.clone(), catalog: destination_catalog },
        namespaces: validated.namespaces.clone(),
        covered: status.covered_namespaces.clone(),
        sync_lock: mc.states.with(&key, |s| s.sync_lock.clone()),
        report: reporter(mc, nm),
    };
    let worker = worker::start(ctx, &mc.hub, plan, fingerprint);
    mc.states.with(&key, |s| {
        s.progress = Default::default();
        s.watcher = Some(Arc::new(worker));
    });
    Ok(())
}

/// The callback a worker reports through: records the request in the mapping's state and wakes the reconciler
/// (at once for full syncs, at most every few seconds for progress).
fn reporter(mc: &MappingController, nm: &NamespaceMapping) -> Arc<dyn Fn(Request) + Send + Sync> {
    let (states, wake, key) = (mc.states.clone(), mc.wake.clone(), key_of(nm));
    let object = ObjectRef::from_obj(nm);
    let last_wake = Arc::new(Mutex::new(Instant::now() - STATUS_EVERY));
    let scheduled = Arc::new(AtomicBool::new(false));
    Arc::new(move |request: Request| {
        let urgent = match request {
            Request::FullSync(why) => {
                states.with(&key, |s| s.requested = Some(SyncReason::Watch(why)));
                true
            }
            Request::Progress(p) => {
                states.with(&key, |s| {
                    if p.last_event.is_some() {
                        s.progress.last_event = p.last_event;
                    }
                    s.progress.problem = p.problem;
                });
                false
            }
        };
        let mut last = last_wake.lock().unwrap_or_else(|p| p.into_inner());
        if urgent || last.elapsed() >= STATUS_EVERY {
            *last = Instant::now();
            super::wake(&wake, object.clone());
        } else if !scheduled.swap(true, Ordering::SeqCst) {
            let (wake, object, scheduled, last_wake) =
                (wake.clone(), object.clone(), scheduled.clone(), last_wake.clone());
            let wait = STATUS_EVERY.saturating_sub(last.elapsed());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                scheduled.store(false, Ordering::SeqCst);
                *last_wake.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                super::wake(&wake, object);
            });
        }
    })
}
