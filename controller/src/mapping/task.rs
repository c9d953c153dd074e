//! A sync running in the background: connects, runs the engine, publishes events and metrics, hands the result to
//! the reconciler and wakes it.

use std::sync::Arc;

use dr_syncer_api::{NamespaceMapping, RemoteCluster};
use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::decide::SyncReason;
use super::outcome::{Finished, result_label};
use super::state::{Running, States};
use crate::clusters::Connection;
use crate::reconcile::Context;
use crate::reconcile::events::Severity;
use crate::sync::engine::{self, Endpoint, Job};
use crate::sync::kinds::{self, Catalog};
use crate::sync::ownership::Marks;
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
    /// Source namespace.
    pub source_namespace: String,
    /// DR namespace.
    pub destination_namespace: String,
    /// Why it runs.
    pub reason: SyncReason,
}

/// Starts the sync in the background and records it as running.
pub fn spawn(
    ctx: &Context,
    states: &States,
    wake: UnboundedSender<ObjectRef<NamespaceMapping>>,
    plan: Plan,
) -> Running {
    let running = Running {
        cancel: tokio_util::sync::CancellationToken::new(),
        reason: plan.reason.clone(),
        started: Timestamp::now(),
    };
    let key = format!("{}/{}", plan.mapping.namespace().unwrap_or_default(), plan.mapping.name_any());
    states.with(&key, |s| s.running = Some(running.clone()));
    let (ctx, states, token) = (ctx.clone(), states.clone(), running.clone());
    tokio::spawn(async move {
        let object = ObjectRef::from_obj(&*plan.mapping);
        let (ns, name) = (plan.mapping.namespace().unwrap_or_default(), plan.mapping.name_any());
        ctx.metrics.set_running(&ns, &name, true);
        let report = execute(&ctx, &plan, &token).await;
        let finished =
            Finished { report, reason: token.reason.clone(), started: token.started, finished: Timestamp::now() };
        ctx.metrics.set_running(&ns, &name, false);
        if !token.cancel.is_cancelled() || finished.report.failure.is_none() {
            publish(&ctx, &plan.mapping, &finished).await;
        }
        let label = result_label(&finished.report);
        tracing::info!(mapping = %key, result = label, duration = ?finished.report.duration, "sync finished");
        states.with(&key, |s| {
            s.running = None;
            s.finished = Some(finished);
        });
        let _ = wake.unbounded_send(object);
    });
    running
}

async fn execute(ctx: &Context, plan: &Plan, running: &Running) -> SyncReport {
    let timeout = ctx.settings.sync_api_timeout;
    let (src_rc, src) = &plan.source;
    let (dst_rc, dst) = &plan.destination;
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
    let (source_catalog, destination_catalog) = match catalogs {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            let failure = SyncFailure {
                category: Category::NetworkError,
                reason: "DiscoveryFailed".into(),
                message: e.to_string(),
            };
            return SyncReport {
                failure: Some(failure),
                destination_namespace: plan.destination_namespace.clone(),
                ..SyncReport::default()
            };
        }
    };
    let job = Job {
        marks: Marks {
            mapping_namespace: plan.mapping.namespace().unwrap_or_default(),
            mapping_name: plan.mapping.name_any(),
            source_cluster: src_rc.name_any(),
            source_namespace: plan.source_namespace.clone(),
        },
        source: Endpoint { name: src_rc.name_any(), client: src.client.clone(), catalog: source_catalog },
        destination: Endpoint { name: dst_rc.name_any(), client: dst.client.clone(), catalog: destination_catalog },
        destination_namespace: plan.destination_namespace.clone(),
        spec: plan.mapping.spec.clone(),
        timeout,
        concurrency: ctx.settings.sync_concurrency,
        cancel: running.cancel.clone(),
    };
    engine::run(job).await
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
