//! A sync running in the background: connects, runs the engine, publishes events and metrics, hands the result to
//! the reconciler and wakes it.

use std::sync::Arc;

use dr_syncer_api::{NamespaceMapping, RemoteCluster};
use futures::channel::mpsc::Sender;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use std::collections::BTreeSet;

use dr_syncer_api::namespace_mapping::CoveredNamespace;
use kube::api::{Api, DynamicObject};

use super::cleanup;
use super::decide::SyncReason;
use super::outcome::{Finished, result_label};
use super::spec::Namespaces;
use super::state::{Running, States};
use crate::clusters::Connection;
use crate::reconcile::Context;
use crate::reconcile::events::Severity;
use crate::sync::api::CallError;
use crate::sync::discovery::api_resource;
use crate::sync::engine::{self, Endpoint, Job};
use crate::sync::kinds::{self, Catalog};
use crate::sync::report::{Category, SyncFailure, SyncReport};
use dr_syncer_api::namespace_mapping::NamespaceMappingSpec;

/// Object-level events published per sync at most; the status lists more.
pub const MAX_OBJECT_EVENTS: usize = 20;

/// What a sync needs, resolved by the reconciler.
pub struct Plan {
    /// The mapping.
    pub mapping: Arc<NamespaceMapping>,
    /// Source cluster and its client.
    pub source: (RemoteCluster, Connection),
    /// DR cluster and its client.
    pub destination: (RemoteCluster, Connection),
    /// Which namespaces are replicated.
    pub namespaces: Namespaces,
    /// The namespaces the previous sync covered (from status), for cleanup of those no longer covered.
    pub covered_before: Vec<CoveredNamespace>,
    /// Why it runs.
    pub reason: SyncReason,
    /// Held while the sync runs, so that watched changes are not applied under it.
    pub sync_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Starts the sync in the background and records it as running.
pub fn spawn(ctx: &Context, states: &States, wake: Sender<ObjectRef<NamespaceMapping>>, plan: Plan) -> Running {
    let running = Running {
        cancel: tokio_util::sync::CancellationToken::new(),
        reason: plan.reason.clone(),
        started: Timestamp::now(),
    };
    let key = format!("{}/{}", plan.mapping.namespace().unwrap_or_default(), plan.mapping.name_any());
    states.with(&key, |s| s.running = Some(running.clone()));
    let (ctx, states, token) = (ctx.clone(), states.clone(), running.clone());
    tokio::spawn(async move {
        let plan = std::sync::Arc::new(plan);
        let object = ObjectRef::from_obj(&*plan.mapping);
        let (ns, name) = (plan.mapping.namespace().unwrap_or_default(), plan.mapping.name_any());
        ctx.metrics.set_running(&ns, &name, true);
        let held = plan.sync_lock.clone().lock_owned().await;
        // A panic in the sync is reported on the mapping, which then goes on as after any failed sync.
        let (c, p, t) = (ctx.clone(), plan.clone(), token.clone());
        let report = match crate::contain::contain(async move { execute(&c, &p, &t).await }).await {
            Ok(report) => report,
            Err(message) => failed(crate::contain::PANICKED, Category::Other, message, ""),
        };
        drop(held);
        let finished =
            Finished { report, reason: token.reason.clone(), started: token.started, finished: Timestamp::now() };
        ctx.metrics.set_running(&ns, &name, false);
        if !token.cancel.is_cancelled() || finished.report.failure.is_none() {
            publish(&ctx, &plan.mapping, &finished).await;
        }
        if !token.cancel.is_cancelled() {
            request_data_sync(&ctx, &plan, &finished);
        }
        let label = result_label(&finished.report);
        tracing::info!(mapping = %key, result = label, duration = ?finished.report.duration, "sync finished");
        states.with(&key, |s| {
            s.running = None;
            s.finished = Some(finished);
        });
        super::wake(&wake, object);
    });
    running
}

/// After a resource sync that created the DR PVCs, copies their data when `pvcConfig.syncData` is on.
fn request_data_sync(ctx: &Context, plan: &Plan, finished: &Finished) {
    let sync_data = plan.mapping.spec.pvc_config.as_ref().and_then(|p| p.sync_data).unwrap_or(false);
    if !sync_data {
        // Copied data before? Revoke the mapping's keys and remove what its copies made (no-op otherwise).
        let (ns, name) = (plan.mapping.namespace().unwrap_or_default(), plan.mapping.name_any());
        ctx.data.forget(ctx, &ns, &name, false);
        return;
    }
    let Some(covered) = finished.report.covered.clone() else { return };
    if !sync_data || finished.report.failure.is_some() {
        return;
    }
    let rotate = plan.mapping.annotations().contains_key(dr_syncer_api::constants::ANNOTATION_ROTATE_SSH_KEY);
    let request = crate::data::DataRequest {
        mapping: plan.mapping.clone(),
        source_rc: plan.source.0.clone(),
        source: plan.source.1.client.clone(),
        destination: plan.destination.1.client.clone(),
        namespaces: covered,
        forced: matches!(finished.reason, SyncReason::SyncNow | SyncReason::SpecTrigger(_)),
        rotate,
    };
    ctx.data.request(ctx, request);
}

async fn execute(ctx: &Context, plan: &Plan, running: &Running) -> SyncReport {
    let started = std::time::Instant::now();
    let mut report = execute_inner(ctx, plan, running).await;
    report.duration = started.elapsed();
    report
}

fn failed(reason: &str, category: Category, message: String, destination: &str) -> SyncReport {
    let failure = SyncFailure { category, reason: reason.into(), message };
    SyncReport { failure: Some(failure), destination_namespace: destination.to_string(), ..SyncReport::default() }
}

async fn execute_inner(ctx: &Context, plan: &Plan, running: &Running) -> SyncReport {
    let timeout = ctx.settings.sync_api_timeout;
    let (src_rc, src) = &plan.source;
    let (dst_rc, dst) = &plan.destination;
    let single = match &plan.namespaces {
        Namespaces::One { destination, .. } => destination.clone(),
        Namespaces::Selected { .. } => String::new(),
    };
    let mut catalogs =
        tokio::join!(ctx.registry.catalog(src_rc, src, timeout), ctx.registry.catalog(dst_rc, dst, timeout));
    if let (Ok(s), Ok(d)) = &catalogs
        && catalogs_look_stale(&plan.mapping.spec, s, d)
    {
        // A cached catalog may predate a CRD installed since; look again before reporting unknown kinds.
        ctx.registry.invalidate_catalog(src_rc);
        ctx.registry.invalidate_catalog(dst_rc);
        catalogs = tokio::join!(ctx.registry.catalog(src_rc, src, timeout), ctx.registry.catalog(dst_rc, dst, timeout));
    }
    let (source_catalog, mut destination_catalog) = match catalogs {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return failed("DiscoveryFailed", Category::NetworkError, e.to_string(), &single),
    };
    // syncCRDs: the definitions of the custom kinds replicated here go first, so their objects have a home in DR.
    let mut crd_problems = Vec::new();
    if plan.mapping.spec.syncs_crds() {
        let spec = &plan.mapping.spec;
        let resolution =
            kinds::resolve(spec.resource_types.as_deref(), spec.namespace_scoped_resources.as_deref(), &source_catalog);
        let outcome = crate::sync::crds::sync(&src.client, &dst.client, &resolution.kinds, timeout).await;
        let new_in_dr = resolution.kinds.iter().any(|k| destination_catalog.get(&k.group, &k.kind).is_none());
        if !outcome.applied.is_empty() && new_in_dr {
            ctx.registry.invalidate_catalog(dst_rc);
            match ctx.registry.catalog(dst_rc, dst, timeout).await {
                Ok(catalog) => destination_catalog = catalog,
                Err(e) => return failed("DiscoveryFailed", Category::NetworkError, e.to_string(), &single),
            }
        }
        crd_problems = outcome.problems;
    }
    let pairs = match source_namespaces(ctx, plan).await {
        Ok(pairs) => pairs,
        Err(e) => return failed("NamespaceListFailed", e.category, e.to_string(), &single),
    };
    let mut merged = SyncReport { destination_namespace: single.clone(), ..SyncReport::default() };
    for pair in &pairs {
        let job = Job {
            marks: cleanup::marks_of(&plan.mapping, &src_rc.name_any(), &pair.source),
            source: Endpoint { name: src_rc.name_any(), client: src.client.clone(), catalog: source_catalog.clone() },
            destination: Endpoint {
                name: dst_rc.name_any(),
                client: dst.client.clone(),
                catalog: destination_catalog.clone(),
            },
            destination_namespace: pair.destination.clone(),
            spec: plan.mapping.spec.clone(),
            timeout,
            concurrency: ctx.settings.sync_concurrency,
            cancel: running.cancel.clone(),
        };
        let report = engine::run(job).await;
        if single.is_empty() {
            merged.merge(report);
        } else {
            merged = report;
        }
        if running.cancel.is_cancelled() {
            return merged;
        }
    }
    merged.type_problems.extend(crd_problems);
    merged.covered = Some(pairs.clone());
    // Namespaces covered before (status, or marked as created by this mapping) and not any more: cleanup.
    let marks = cleanup::marks_of(&plan.mapping, &src_rc.name_any(), "");
    let mut stale: BTreeSet<String> = plan.covered_before.iter().map(|c| c.destination.clone()).collect();
    match cleanup::marked_namespaces(ctx, &marks, dst).await {
        Ok(found) => stale.extend(found),
        Err(e) => {
            tracing::warn!(mapping = %marks.mapping_ref(), error = %e, "cannot list the DR namespaces this mapping created")
        }
    }
    for pair in &pairs {
        stale.remove(&pair.destination);
    }
    let (done, pending) =
        cleanup::namespaces(ctx, &marks, &plan.destination, plan.mapping.spec.cleanup(), &stale).await;
    merged.cleaned_up = done.into_iter().map(|(ns, r)| (ns, r.deleted + r.released)).collect();
    merged.pending_cleanups = pending;
    merged
}

/// The source namespaces of the sync and their DR namespaces. For a selector, the namespaces that match now
/// (a failed listing fails the sync: nothing is pruned or cleaned up on a partial view).
async fn source_namespaces(ctx: &Context, plan: &Plan) -> Result<Vec<CoveredNamespace>, CallError> {
    let (selector, rule) = match &plan.namespaces {
        Namespaces::One { source, destination } => {
            return Ok(vec![CoveredNamespace { source: source.clone(), destination: destination.clone() }]);
        }
        Namespaces::Selected { selector, rule } => (selector, rule),
    };
    let resource = api_resource("", "v1", "Namespace", "namespaces");
    let all: Api<DynamicObject> = Api::all_with(plan.source.1.client.clone(), &resource);
    let what = format!("list the namespaces matching {selector:?} on source cluster {}", plan.source.0.name_any());
    let listed =
        crate::sync::api::list_all(&all, &resource, Some(selector), ctx.settings.sync_api_timeout, &what).await?;
    let mut pairs: Vec<CoveredNamespace> = listed
        .iter()
        .filter(|ns| ns.pointer("/status/phase").and_then(serde_json::Value::as_str) != Some("Terminating"))
        .map(|ns| {
            let source = crate::sync::object::name(ns).to_string();
            CoveredNamespace { destination: rule.apply(&source), source }
        })
        .filter(|c| c.destination.len() <= 63)
        .collect();
    pairs.sort();
    Ok(pairs)
}

/// Whether the mapping names a kind the source catalog lacks, or that the DR catalog lacks.
fn catalogs_look_stale(spec: &NamespaceMappingSpec, source: &Catalog, destination: &Catalog) -> bool {
    let resolution = kinds::resolve(spec.resource_types.as_deref(), spec.namespace_scoped_resources.as_deref(), source);
    !resolution.unknown.is_empty() || resolution.kinds.iter().any(|k| destination.get(&k.group, &k.kind).is_none())
}

/// Events and metrics of a finished sync.
async fn publish(ctx: &Context, mapping: &NamespaceMapping, done: &Finished) {
    let (ns, name) = (mapping.namespace().unwrap_or_default(), mapping.name_any());
    let report = &done.report;
    let result = result_label(report);
    let kinds: Vec<_> = report.kinds.values().cloned().collect();
    ctx.metrics.record_sync(&ns, &name, result, report.duration.as_secs_f64(), &kinds);
    if report.succeeded() {
        ctx.metrics.set_last_success(&ns, &name, done.finished.as_millisecond() as f64 / 1000.0);
    }
    let reference = mapping.object_ref(&());
    let problems = report.type_problems.iter().chain(&report.errors).chain(&report.conflicts).chain(&report.immutable);
    let problems = problems.chain(&report.warnings);
    let total = problems.clone().count();
    for p in problems.take(MAX_OBJECT_EVENTS) {
        let note = format!("{}/{}: {}", p.kind, p.name, p.message);
        ctx.events.publish(&reference, Severity::Warning, &p.reason, "SyncObject", &note).await;
    }
    for (ns, n) in &report.cleaned_up {
        let note = format!(
            "{ns} is no longer covered: cleaned up per cleanupPolicy {:?} ({n} objects)",
            mapping.spec.cleanup()
        );
        ctx.events.publish(&reference, Severity::Normal, "NamespaceCleanedUp", "Cleanup", &note).await;
    }
    for p in &report.pending_cleanups {
        let note = format!("{} is no longer covered but its cleanup has not finished: {}", p.destination, p.message);
        ctx.events.publish(&reference, Severity::Warning, "CleanupPending", "Cleanup", &note).await;
    }
    let t = report.totals();
    let mut summary = format!(
        "{} ({}): {} applied, {} unchanged, {} pruned, {} failed, {} conflicts, {} immutable in {:.1}s",
        report.destination_namespace,
        done.reason.describe(),
        t.applied,
        t.unchanged,
        t.pruned,
        t.failed,
        t.conflicts,
        t.immutable,
        report.duration.as_secs_f64()
    );
    if total > MAX_OBJECT_EVENTS {
        summary.push_str(&format!("; {} more problems are listed in status.resourceStatus", total - MAX_OBJECT_EVENTS));
    }
    match (&report.failure, result) {
        (Some(f), _) => {
            let note = format!("{}: {}", f.reason, f.message);
            ctx.events.publish(&reference, Severity::Warning, "SyncFailed", "Sync", &note).await;
        }
        (None, "success") => ctx.events.publish(&reference, Severity::Normal, "SyncSucceeded", "Sync", &summary).await,
        (None, _) => ctx.events.publish(&reference, Severity::Warning, "SyncPartiallyFailed", "Sync", &summary).await,
    }
}
