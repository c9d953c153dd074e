//! NamespaceMapping reconciler: validates the mapping, resolves its clusters, refuses unsafe destinations, decides
//! when to sync, runs syncs in the background and folds their results into status.

pub mod cleanup;
pub mod continuous;
pub mod decide;
pub mod outcome;
pub mod resolve;
pub mod spec;
pub mod state;
pub mod task;

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod outcome_tests;

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_api::common::Time;
use dr_syncer_api::constants::{ANNOTATION_SYNC_NOW, ANNOTATION_TRIGGER_SYNC, FINALIZER_NAMESPACE_MAPPING};
use dr_syncer_api::namespace_mapping::{NamespaceMappingPhase, NamespaceMappingStatus, ReplicationMode};
use dr_syncer_api::{ClusterMapping, NamespaceMapping, RemoteCluster};
use futures::StreamExt;
use futures::channel::mpsc::Sender;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use self::decide::{Inputs, decide};
use self::outcome::{READY, after_sync};
use self::spec::{ClusterRefs, Invalid, Namespaces};
use self::state::States;
use crate::error::{Error, with_timeout as call};
use crate::reconcile::conditions::{self, Desired, FALSE, TRUE};
use crate::reconcile::events::Severity;
use crate::reconcile::{Context, backoff};
use crate::watch::hub::WatchHub;

/// Wake-ups queued for the reconciler at most; more are dropped (the mapping is looked at again anyway within
/// its requeue time), so a burst cannot grow memory without bound.
const WAKE_QUEUE: usize = 1024;

/// Asks the reconciler to look at `object` soon; a full queue drops the request (see [`WAKE_QUEUE`]).
pub fn wake(sender: &Sender<ObjectRef<NamespaceMapping>>, object: ObjectRef<NamespaceMapping>) {
    if sender.clone().try_send(object).is_err() {
        tracing::debug!("wake-up queue full or closed; the mapping is looked at on its requeue");
    }
}
/// Longest time between reconciles of a mapping that is waiting for something.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// State of the NamespaceMapping controller.
pub struct MappingController {
    ctx: Context,
    states: States,
    wake: Sender<ObjectRef<NamespaceMapping>>,
    store: Store<NamespaceMapping>,
    hub: WatchHub,
}

fn key_of(nm: &NamespaceMapping) -> String {
    format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any())
}

async fn reconcile(nm: Arc<NamespaceMapping>, mc: Arc<MappingController>) -> Result<Action, Error> {
    let ns = nm.namespace().ok_or(Error::Incomplete { what: "namespace" })?;
    let api: Api<NamespaceMapping> = Api::namespaced(mc.ctx.client.clone(), &ns);
    let name = key_of(&nm);
    // Cleanup deletes or releases every DR object of the mapping: allow it more time than a reconcile.
    let factor = if nm.meta().deletion_timestamp.is_some() { 60 } else { 6 };
    let deadline = mc.ctx.settings.api_timeout * factor;
    let run = finalizer(&api, FINALIZER_NAMESPACE_MAPPING, nm, |event| async {
        match event {
            FinalizerEvent::Apply(nm) => apply(nm, &mc).await,
            FinalizerEvent::Cleanup(nm) => on_delete(&nm, &mc).await,
        }
    });
    match tokio::time::timeout(deadline, run).await {
        Ok(result) => result.map_err(|e| Error::Finalizer { name, message: crate::error::chain(&e) }),
        Err(_) => Err(Error::Timeout { what: format!("reconcile of NamespaceMapping {name}"), after: deadline }),
    }
}

async fn on_delete(nm: &NamespaceMapping, mc: &MappingController) -> Result<Action, Error> {
    let (ns, name) = (nm.namespace().unwrap_or_default(), nm.name_any());
    cancel_running(mc, &key_of(nm));
    cleanup::on_delete(mc, nm).await?;
    mc.states.remove(&key_of(nm));
    mc.ctx.metrics.forget_mapping(&ns, &name);
    mc.ctx.data.forget(&mc.ctx, &ns, &name, true);
    tracing::info!(mapping = %key_of(nm), policy = ?nm.spec.cleanup(), "mapping deleted; DR objects cleaned up");
    Ok(Action::await_change())
}

/// Writes `status` when it differs from `previous` and remembers it.
async fn write(
    mc: &MappingController,
    nm: &NamespaceMapping,
    previous: &NamespaceMappingStatus,
    status: &NamespaceMappingStatus,
) -> Result<(), Error> {
    // status.dataSync belongs to the data-sync field manager: never written (or taken over) from here.
    let strip = |s: &NamespaceMappingStatus| NamespaceMappingStatus { data_sync: None, ..s.clone() };
    if strip(status) != strip(previous) {
        let api: Api<NamespaceMapping> = Api::namespaced(mc.ctx.client.clone(), &nm.namespace().unwrap_or_default());
        crate::reconcile::status::apply(&api, nm, &strip(status), mc.ctx.settings.api_timeout).await?;
    }
    mc.states.with(&key_of(nm), |s| s.status = Some(status.clone()));
    Ok(())
}

/// Sets Ready to False with `why`, publishes an event when the reason is new, and writes status.
async fn not_ready(
    mc: &MappingController,
    nm: &NamespaceMapping,
    previous: &NamespaceMappingStatus,
    mut status: NamespaceMappingStatus,
    why: &Invalid,
    observe: bool,
) -> Result<(), Error> {
    let generation = nm.meta().generation;
    continuous::stop(mc, &key_of(nm));
    let before = conditions::get(&status.conditions, READY).map(|c| (c.status.clone(), c.reason.clone()));
    let desired = Desired { type_: READY, status: FALSE, reason: why.reason, message: why.message.clone() };
    conditions::set(&mut status.conditions, desired, generation, &conditions::now());
    if observe {
        status.observed_generation = generation;
    }
    if before != Some((FALSE.to_string(), why.reason.to_string())) {
        let severity = if why.reason == "Paused" { Severity::Normal } else { Severity::Warning };
        mc.ctx.events.publish(&nm.object_ref(&()), severity, why.reason, "Reconcile", &why.message).await;
        tracing::warn!(mapping = %key_of(nm), reason = why.reason, message = %why.message, "mapping not ready");
    }
    write(mc, nm, previous, &status).await
}

/// A paused mapping keeps a sync request (`sync-now`, `trigger-sync`) for when it is resumed; says so once per request
/// with a Normal event `SyncRequestHeld`, so whoever asked sees it was received.
async fn report_held_request(mc: &MappingController, nm: &NamespaceMapping) {
    let annotations = nm.annotations();
    let request: Vec<&str> = [ANNOTATION_SYNC_NOW, ANNOTATION_TRIGGER_SYNC]
        .iter()
        .filter_map(|a| annotations.get(*a).map(|v| v.as_str()))
        .collect();
    if request.is_empty() {
        return;
    }
    let request = request.join(",");
    let new = mc.states.with(&key_of(nm), |s| {
        let new = s.held_request.as_deref() != Some(request.as_str());
        s.held_request = Some(request.clone());
        new
    });
    if new {
        let note = "a sync was requested while spec.paused is true; it runs when the mapping is resumed";
        mc.ctx.events.publish(&nm.object_ref(&()), Severity::Normal, "SyncRequestHeld", "Sync", note).await;
        tracing::info!(mapping = %key_of(nm), "sync request held while paused");
    }
}

fn cancel_running(mc: &MappingController, key: &str) {
    mc.states.with(key, |s| {
        if let Some(r) = &s.running {
            r.cancel.cancel();
        }
    });
}

async fn apply(nm: Arc<NamespaceMapping>, mc: &MappingController) -> Result<Action, Error> {
    let key = key_of(&nm);
    let generation = nm.meta().generation;
    let cached = nm.status.clone().unwrap_or_default();
    let (remembered, finished) = mc.states.with(&key, |s| (s.status.clone(), s.finished.clone()));
    let previous = remembered.unwrap_or(cached);
    let mut status = match &finished {
        Some(done) => after_sync(&previous, done, &nm.spec, generation),
        None => previous.clone(),
    };
    if status.phase.is_none() {
        status.phase = Some(NamespaceMappingPhase::Pending);
    }
    let result = apply_inner(&nm, mc, &previous, status, finished.is_some()).await;
    if result.is_ok() && finished.is_some() {
        mc.states.with(&key, |s| s.finished = None);
    }
    result
}

async fn apply_inner(
    nm: &Arc<NamespaceMapping>,
    mc: &MappingController,
    previous: &NamespaceMappingStatus,
    mut status: NamespaceMappingStatus,
    folded: bool,
) -> Result<Action, Error> {
    let ctx = &mc.ctx;
    let key = key_of(nm);
    let ns = nm.namespace().unwrap_or_default();
    let generation = nm.meta().generation;
    let validated = match spec::validate(&nm.spec, &ns) {
        Ok(v) => v,
        Err(why) => {
            cancel_running(mc, &key);
            not_ready(mc, nm, previous, status, &why, true).await?;
            return Ok(Action::await_change());
        }
    };
    if nm.spec.is_paused() {
        cancel_running(mc, &key);
        report_held_request(mc, nm).await;
        let why =
            Invalid { reason: "Paused", message: "spec.paused is true; nothing is written to the DR cluster".into() };
        status.next_sync_time = None;
        not_ready(mc, nm, previous, status, &why, true).await?;
        return Ok(Action::await_change());
    }
    let resolved = match resolve::clusters(ctx, &validated.clusters, &ns).await {
        Ok(r) => {
            mc.states.with(&key, |s| s.resolve_failures = 0);
            r
        }
        Err(why) => {
            not_ready(mc, nm, previous, status, &why, false).await?;
            let failures = mc.states.with(&key, |s| {
                s.resolve_failures = s.resolve_failures.saturating_add(1);
                s.resolve_failures
            });
            return Ok(Action::requeue(backoff::jittered(Duration::from_secs(5), failures, backoff::MAX_BACKOFF)));
        }
    };
    let refused = match &validated.namespaces {
        Namespaces::One { source, destination } => match resolve::same_namespace(&resolved, source, destination) {
            Err(why) => Some(why),
            Ok(()) => resolve::destination_owner(ctx, &mc.store, nm, &resolved, destination).await.err(),
        },
        // The rule maps every name the same way: refuse when it maps a namespace onto itself in the same cluster.
        Namespaces::Selected { rule, .. } => resolve::same_namespace(&resolved, "ns", &rule.apply("ns")).err(),
    };
    let described = validated.namespaces.describe();
    if let Some(why) = refused {
        cancel_running(mc, &key);
        not_ready(mc, nm, previous, status, &why, false).await?;
        return Ok(Action::requeue(ctx.settings.health_interval));
    }
    let cadence = match spec::cadence(
        &nm.spec,
        resolved.source.0.spec.default_schedule.as_deref(),
        &nm.uid().unwrap_or_default(),
    ) {
        Ok(c) => c,
        Err(why) => {
            not_ready(mc, nm, previous, status, &why, true).await?;
            return Ok(Action::await_change());
        }
    };
    let now = conditions::now();
    let ready = Desired { type_: READY, status: TRUE, reason: "Ready", message: format!("replicating {described}") };
    conditions::set(&mut status.conditions, ready, generation, &now);
    continuous::reconcile(mc, nm, &resolved, &validated, &mut status).await;
    // A sync that finished after this reconcile read the state is not in `status` yet (its phase still says
    // Running): deciding now would start it again as interrupted. The task wakes the mapping to fold it in.
    let busy = mc.states.with(&key, |s| s.running.is_some() || (s.finished.is_some() && !folded));
    if busy {
        write(mc, nm, previous, &status).await?;
        return Ok(Action::requeue(MAX_WAIT));
    }
    let annotations = nm.annotations();
    let (handled, requested) = mc.states.with(&key, |s| (s.handled_sync_now_version.clone(), s.requested.clone()));
    // A key rotation request also starts a sync: the data sync that follows rotates the key first; so does an
    // approval of deletions the guard held back.
    let sync_now = (annotations.contains_key(ANNOTATION_SYNC_NOW)
        || annotations.contains_key(ANNOTATION_TRIGGER_SYNC)
        || annotations.contains_key(dr_syncer_api::constants::ANNOTATION_ROTATE_SSH_KEY)
        || annotations.contains_key(dr_syncer_api::constants::ANNOTATION_APPROVE_DELETIONS))
        && handled != nm.resource_version();
    let decision = decide(&Inputs {
        mode: nm.spec.mode(),
        generation,
        status: &status,
        sync_now,
        spec_trigger: nm.spec.sync_trigger.as_deref(),
        cadence: &cadence,
        requested,
        data_running: mc.ctx.data.is_running(&nm.namespace().unwrap_or_default(), &nm.name_any()),
        now: now.0,
    });
    status.next_sync_time = decision.next_sync_time.map(Time);
    let Some(reason) = decision.start else {
        if nm.spec.mode() == ReplicationMode::Manual {
            status.observed_generation = generation;
        }
        write(mc, nm, previous, &status).await?;
        return Ok(Action::requeue(decision.wake_after.unwrap_or(MAX_WAIT).min(MAX_WAIT)));
    };
    if sync_now {
        remove_sync_now(mc, nm).await?;
    }
    mc.states.with(&key, |s| s.requested = None);
    status.phase = Some(NamespaceMappingPhase::Running);
    status.last_sync_start_time = Some(now.clone());
    status.observed_generation = generation;
    status.next_sync_time = None;
    write(mc, nm, previous, &status).await?;
    ctx.events
        .publish(
            &nm.object_ref(&()),
            Severity::Normal,
            "SyncStarted",
            "Sync",
            &format!("sync of {described}: {}", reason.describe()),
        )
        .await;
    tracing::info!(mapping = %key, reason = %reason.describe(), "sync started");
    let plan = task::Plan {
        mapping: spec::with_cluster_defaults(nm, &resolved.source.0),
        source: resolved.source,
        destination: resolved.destination,
        namespaces: validated.namespaces.clone(),
        covered_before: status.covered_namespaces.clone(),
        sync_lock: mc.states.with(&key, |s| s.sync_lock.clone()),
        reason,
    };
    task::spawn(ctx, &mc.states, mc.wake.clone(), plan);
    Ok(Action::requeue(MAX_WAIT))
}

/// Removes the sync-now annotations; remembers the version that carried them so a stale cache cannot re-trigger.
async fn remove_sync_now(mc: &MappingController, nm: &NamespaceMapping) -> Result<(), Error> {
    let api: Api<NamespaceMapping> = Api::namespaced(mc.ctx.client.clone(), &nm.namespace().unwrap_or_default());
    let patch =
        serde_json::json!({"metadata": {"annotations": {ANNOTATION_SYNC_NOW: null, ANNOTATION_TRIGGER_SYNC: null}}});
    let what = format!("remove the sync-now annotation of {}", key_of(nm));
    call(what, mc.ctx.settings.api_timeout, api.patch(&nm.name_any(), &PatchParams::default(), &Patch::Merge(&patch)))
        .await?;
    mc.states.with(&key_of(nm), |s| s.handled_sync_now_version = nm.resource_version());
    Ok(())
}

fn error_policy(nm: Arc<NamespaceMapping>, error: &Error, mc: Arc<MappingController>) -> Action {
    tracing::warn!(mapping = %key_of(&nm), error = %error.chain(), reason = error.reason(), "reconcile failed");
    mc.ctx.metrics.reconcile_error("namespacemapping", error.reason());
    Action::requeue(backoff::jittered(Duration::from_secs(2), 2, backoff::MAX_BACKOFF))
}

/// The mappings in `store` that name `cluster` (a RemoteCluster or ClusterMapping in `namespace`).
fn referencing(
    store: &Store<NamespaceMapping>,
    namespace: &str,
    cluster: &str,
    via_mapping: bool,
) -> Vec<ObjectRef<NamespaceMapping>> {
    store
        .state()
        .into_iter()
        .filter(|nm| {
            let own_ns = nm.namespace().unwrap_or_default();
            match spec::validate(&nm.spec, &own_ns).map(|v| v.clusters) {
                Ok(ClusterRefs::Direct(s, d)) => !via_mapping && own_ns == namespace && (s == cluster || d == cluster),
                Ok(ClusterRefs::ClusterMapping(cm_ns, cm)) => cm_ns == namespace && (!via_mapping || cm == cluster),
                Err(_) => false,
            }
        })
        .map(|nm| ObjectRef::from_obj(&*nm))
        .collect()
}

/// Runs the NamespaceMapping controller until `shutdown` resolves, then stops every sync in flight.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (wake, woken) = futures::channel::mpsc::channel(WAKE_QUEUE);
    let (store, changes) = crate::reconcile::changes::primary::<NamespaceMapping>(ctx.watched());
    let controller = Controller::for_stream(changes, store.clone());
    ctx.caches.track("namespacemappings", store.clone());
    let states = States::default();
    let (by_rc, by_cm) = (store.clone(), store.clone());
    let rcs = crate::reconcile::changes::related::<RemoteCluster>(ctx.watched());
    let cms = crate::reconcile::changes::related::<ClusterMapping>(ctx.watched());
    let hub = WatchHub::new(ctx.metrics.clone());
    let mc = Arc::new(MappingController { ctx: ctx.clone(), states: states.clone(), wake, store, hub });
    controller
        .watches_stream(rcs, move |rc: RemoteCluster| {
            referencing(&by_rc, &rc.namespace().unwrap_or_default(), &rc.name_any(), false)
        })
        .watches_stream(cms, move |cm: ClusterMapping| {
            referencing(&by_cm, &cm.namespace().unwrap_or_default(), &cm.name_any(), true)
        })
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, mc)
        .for_each(|_| async {})
        .await;
    states.cancel_all();
}
