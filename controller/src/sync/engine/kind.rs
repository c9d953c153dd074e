//! Syncing the objects of one kind.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::immutable::{self, Handled, Refused};
use super::{Job, Rules};
use crate::sync::api::{self, CallError};
use crate::sync::discovery::api_resource;
use crate::sync::immutable::Chosen;
use crate::sync::kinds::SelectedKind;
use crate::sync::object;
use crate::sync::ownership::{Owner, stamp_hash};
use crate::sync::plan::{Action, decide, should_prune};
use crate::sync::report::{Category, ObjectProblem, SyncReport};
use crate::sync::sanitize::sanitize;
use crate::sync::transform::transform;

/// What one kind's sync needs.
pub struct KindContext<'a> {
    /// The sync.
    pub job: &'a Job,
    /// Compiled rules.
    pub rules: &'a Rules,
    /// The kind.
    pub selected: &'a SelectedKind,
    /// The API version used on both clusters.
    pub version: &'a str,
    /// Storage classes the DR cluster has (`None` when unknown).
    pub storage_classes: Option<&'a BTreeSet<String>>,
}

/// A write the plan asks for.
pub(super) struct Write {
    name: String,
    desired: Value,
    /// The DR object exists and was not written by dr-syncer: replace it whole (so fields only it has go), then
    /// own it with server-side apply.
    adopt: bool,
    /// What to do when the DR API server refuses the write as an immutable-field change.
    handling: Chosen,
}

/// The result of one write.
pub(super) enum Written {
    /// Written; with a note when it took more than an apply (recreated, partially applied).
    Applied(Option<String>),
    /// Left as it is (immutable-field change under NoChange).
    Immutable(ObjectProblem),
    /// The write failed; the error says why and whether a retry may help.
    Failed(CallError),
}

/// Writes one planned object: replace when adopting, server-side apply, and the immutable-field handling when the
/// apply is refused as such.
pub(super) async fn write_one(
    ctx: &KindContext<'_>,
    dest: &Api<DynamicObject>,
    kind: &str,
    w: &Write,
    existing: Option<&Value>,
) -> Written {
    let job = ctx.job;
    let what = format!("apply {kind} {}/{} on DR cluster {}", job.destination_namespace, w.name, job.destination.name);
    if w.adopt
        && let Err(e) = api::replace(dest, &w.name, &w.desired, job.timeout, &what).await
    {
        return Written::Failed(e);
    }
    let error = match api::apply(dest, &w.name, &w.desired, job.timeout, &what).await {
        Ok(()) => return Written::Applied(None),
        Err(e) if e.reason == "Invalid" => e,
        Err(e) => return Written::Failed(e),
    };
    // Refused as invalid, yet valid as a new object: the change touches a field that cannot change in place.
    match api::valid_as_new(dest, &w.desired, job.timeout, &what).await {
        Ok(true) => {}
        Ok(false) => return Written::Failed(error),
        Err(e) => return Written::Failed(e),
    }
    let refused = Refused { name: &w.name, desired: &w.desired, existing, chosen: w.handling, error };
    match immutable::handle(ctx, dest, kind, refused).await {
        Handled::Applied(note) => Written::Applied(Some(note)),
        Handled::Left(problem) => Written::Immutable(problem),
        Handled::Failed(e) => Written::Failed(e),
    }
}

/// Records the result of one write.
pub(super) fn record(report: &mut SyncReport, kind: &str, name: &str, written: Written) {
    match written {
        Written::Applied(note) => {
            report.counts(kind).applied += 1;
            if let Some(note) = note {
                tracing::info!(kind, name, note = %note, "immutable-field change applied");
                report.warnings.push(ObjectProblem {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    reason: "ImmutableFieldChangeApplied".into(),
                    message: note,
                    category: Category::Other,
                });
            }
        }
        Written::Immutable(problem) => report.immutable(problem),
        Written::Failed(err) => report.fail(problem(kind, name, &err)),
    }
}

pub(super) fn problem(kind: &str, name: &str, err: &CallError) -> ObjectProblem {
    ObjectProblem {
        kind: kind.to_string(),
        name: name.to_string(),
        reason: err.reason.clone(),
        message: err.message.clone(),
        category: err.category,
    }
}

/// Both listings of one kind: the selected source objects and the DR objects by name.
pub struct Listed {
    sources: Vec<Value>,
    existing: Vec<Value>,
}

/// Lists the kind in the source and DR namespaces (at once); a failed listing is returned as the kind's problem.
pub async fn list(ctx: &KindContext<'_>) -> Result<Listed, ObjectProblem> {
    let job = ctx.job;
    let kind = ctx.selected.qualified();
    let resource = api_resource(&ctx.selected.group, ctx.version, &ctx.selected.kind, &ctx.selected.plural);
    let source_api: Api<DynamicObject> =
        Api::namespaced_with(job.source.client.clone(), &job.marks.source_namespace, &resource);
    let dest_api: Api<DynamicObject> =
        Api::namespaced_with(job.destination.client.clone(), &job.destination_namespace, &resource);
    let source_what = format!("list {kind} in {} on source cluster {}", job.marks.source_namespace, job.source.name);
    let dest_what = format!("list {kind} in {} on DR cluster {}", job.destination_namespace, job.destination.name);
    let (sources, existing) = tokio::join!(
        api::list_all(&source_api, &resource, ctx.rules.label_selector.as_deref(), job.timeout, &source_what),
        api::list_all(&dest_api, &resource, None, job.timeout, &dest_what)
    );
    match (sources, existing) {
        (Ok(sources), Ok(existing)) => Ok(Listed { sources, existing }),
        (Err(err), _) | (_, Err(err)) => Err(problem(&kind, "*", &err)),
    }
}

/// Syncs every selected source object of the kind, then prunes. Returns the selected source objects of
/// PersistentVolumeClaims (empty for other kinds) when the kind was synced completely (both listings succeeded), for
/// the PersistentVolume step. A failed listing is reported and nothing of the kind is written or pruned.
pub async fn sync(
    ctx: &KindContext<'_>,
    listed: Result<Listed, ObjectProblem>,
    permits: &Semaphore,
    report: &mut SyncReport,
) -> Option<Vec<Value>> {
    let job = ctx.job;
    let kind = ctx.selected.qualified();
    let resource = api_resource(&ctx.selected.group, ctx.version, &ctx.selected.kind, &ctx.selected.plural);
    let dest_api: Api<DynamicObject> =
        Api::namespaced_with(job.destination.client.clone(), &job.destination_namespace, &resource);
    report.counts(&kind);
    let Listed { sources, existing } = match listed {
        Ok(listed) => listed,
        Err(p) => {
            report.fail(p);
            return None;
        }
    };
    let existing: BTreeMap<String, Value> = existing.into_iter().map(|o| (object::name(&o).to_string(), o)).collect();

    // Planned lazily as the apply stream has room, each source object dropped once planned: only the writes in
    // flight hold desired objects (memory stays flat for large namespaces, and the stream never drains between
    // batches).
    let keep_sources = ctx.selected.group.is_empty() && ctx.selected.kind == "PersistentVolumeClaim";
    let mut wanted = BTreeSet::new();
    let mut selected = Vec::new();
    let shared = std::sync::Mutex::new(&mut *report);
    let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
    let writes = sources.into_iter().filter_map(|source| {
        if ctx.rules.selection.skip(&source, &ctx.selected.plural).is_some() || job.cancel.is_cancelled() {
            return None;
        }
        let name = object::name(&source).to_string();
        wanted.insert(name.clone());
        let write = plan_object(ctx, &kind, &source, existing.get(&name), &mut lock());
        if keep_sources {
            selected.push(source);
        }
        write
    });
    stream::iter(writes)
        .map(|w| {
            let (api, kind, existing) = (&dest_api, &kind, &existing);
            async move {
                // Never closed: without a permit (impossible) the write simply goes ahead.
                let _permit = permits.acquire().await.ok();
                let written = write_one(ctx, api, kind, &w, existing.get(&w.name)).await;
                (w.name, written)
            }
        })
        .buffer_unordered(job.concurrency.max(1))
        .for_each(|(name, written)| {
            record(&mut lock(), &kind, &name, written);
            futures::future::ready(())
        })
        .await;
    if job.cancel.is_cancelled() {
        return None;
    }

    // Collected first: a lazy iterator over `existing` held across the awaits below would make the future !Send.
    let targets: Vec<(String, String)> = existing
        .values()
        .filter(|e| should_prune(e, &job.marks, &wanted))
        .map(|e| (object::name(e).to_string(), object::uid(e).to_string()))
        .collect();
    let prunes = targets.into_iter().map(|(name, uid)| {
        let api = &dest_api;
        let what = format!("delete {kind} {}/{name} on DR cluster {}", job.destination_namespace, job.destination.name);
        async move {
            let _permit = permits.acquire().await.ok();
            (name.clone(), api::delete(api, &name, &uid, job.timeout, &what).await)
        }
    });
    let pruned = stream::iter(prunes).buffer_unordered(job.concurrency.max(1)).collect::<Vec<_>>().await;
    for (name, result) in pruned {
        match result {
            Ok(()) => report.counts(&kind).pruned += 1,
            Err(err) => report.fail(problem(&kind, &name, &err)),
        }
    }
    Some(selected)
}

/// Builds the desired DR object and decides; records unchanged objects, conflicts and warnings.
pub(super) fn plan_object(
    ctx: &KindContext<'_>,
    kind: &str,
    source: &Value,
    existing: Option<&Value>,
    report: &mut SyncReport,
) -> Option<Write> {
    let job = ctx.job;
    let name = object::name(source).to_string();
    let sanitized = sanitize(source, Some(&job.destination_namespace));
    let out = transform(&ctx.selected.group, sanitized, source, existing, &ctx.rules.transform);
    for warning in out.warnings {
        report.warnings.push(ObjectProblem {
            kind: kind.to_string(),
            name: name.clone(),
            reason: "InvalidLabel".into(),
            message: warning,
            category: Category::ValidationFailure,
        });
    }
    if let Some(replicas) = out.original_replicas {
        let label =
            if ctx.selected.kind == "Deployment" { name.clone() } else { format!("{}/{name}", ctx.selected.kind) };
        report.scales.push((label, replicas));
    }
    let mut desired = out.object;
    if let (Some(classes), Some(class)) =
        (ctx.storage_classes, desired.pointer("/spec/storageClassName").and_then(Value::as_str))
        && ctx.selected.kind == "PersistentVolumeClaim"
        && !class.is_empty()
        && !classes.contains(class)
    {
        report.fail(ObjectProblem {
            kind: kind.to_string(),
            name,
            reason: "StorageClassNotFound".into(),
            message: format!(
                "storage class {class:?} does not exist in DR cluster {}; map it with pvcConfig.storageClassMappings",
                job.destination.name
            ),
            category: Category::StorageClassNotFound,
        });
        return None;
    }
    job.marks.apply(&mut desired, object::uid(source));
    let hash = stamp_hash(&mut desired);
    match decide(&desired, &hash, existing, &job.marks, job.spec.adopts_existing_objects()) {
        Action::Unchanged => {
            report.counts(kind).unchanged += 1;
            None
        }
        Action::Conflict(message) => {
            report.conflict(ObjectProblem {
                kind: kind.to_string(),
                name,
                reason: "Conflict".into(),
                message,
                category: Category::Other,
            });
            None
        }
        Action::Create | Action::Update => {
            let adopt = existing.is_some_and(|e| job.marks.owner_of(e) == Owner::Unmanaged);
            let (handling, warning) =
                ctx.rules.immutable.handling_for(&ctx.selected.plural, &ctx.selected.group, source);
            if let Some(message) = warning {
                report.warnings.push(ObjectProblem {
                    kind: kind.to_string(),
                    name: name.clone(),
                    reason: "InvalidLabel".into(),
                    message,
                    category: Category::ValidationFailure,
                });
            }
            Some(Write { name, desired, adopt, handling })
        }
    }
}
