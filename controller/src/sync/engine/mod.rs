//! The sync engine: one full sync of one source namespace into its DR namespace.
//!
//! select → sanitize → transform → mark and hash → plan → server-side apply → prune → report. A failing object is
//! recorded and the rest go on; a kind whose source or DR listing fails is not pruned; a sync never writes to the
//! source cluster.

mod immutable;
pub mod incremental;
mod kind;
mod namespace;
mod volumes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_syncer_api::namespace_mapping::NamespaceMappingSpec;
use futures::{StreamExt, stream};
use kube::Client;
use kube::core::Selector;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::immutable::ImmutablePolicy;
use super::kinds::{self, Catalog, SelectedKind};
use super::ownership::Marks;
use super::report::{Category, ObjectProblem, SyncFailure, SyncReport};
use super::select::{Selection, compile_exclusions};
use super::transform::{IngressOptions, Options, PvcOptions};

/// Kinds synced side by side in a full sync (their writes share the job's concurrency).
const KINDS_IN_FLIGHT: usize = 2;

/// One cluster as the engine sees it.
#[derive(Clone)]
pub struct Endpoint {
    /// RemoteCluster name (for messages and marks).
    pub name: String,
    /// Client for the cluster.
    pub client: Client,
    /// What the cluster serves.
    pub catalog: Arc<Catalog>,
}

/// Everything one sync needs.
pub struct Job {
    /// Mapping identity and source.
    pub marks: Marks,
    /// Source cluster.
    pub source: Endpoint,
    /// DR cluster.
    pub destination: Endpoint,
    /// DR namespace.
    pub destination_namespace: String,
    /// The mapping's spec.
    pub spec: NamespaceMappingSpec,
    /// Timeout of each API call.
    pub timeout: Duration,
    /// Objects written or deleted concurrently.
    pub concurrency: usize,
    /// Cancelled when the mapping is paused or deleted, or the controller stops.
    pub cancel: CancellationToken,
}

/// Runs one sync to completion (or cancellation) and reports what it did.
pub async fn run(job: Job) -> SyncReport {
    let started = Instant::now();
    let mut report = SyncReport { destination_namespace: job.destination_namespace.clone(), ..SyncReport::default() };
    if let Err(failure) = run_inner(&job, &mut report).await {
        report.failure = Some(failure);
    }
    report.duration = started.elapsed();
    report
}

async fn run_inner(job: &Job, report: &mut SyncReport) -> Result<(), SyncFailure> {
    let rules = Rules::from_spec(job)?;
    let resolution = kinds::resolve(
        job.spec.resource_types.as_deref(),
        job.spec.namespace_scoped_resources.as_deref(),
        &job.source.catalog,
    );
    for entry in &resolution.unknown {
        report.type_problems.push(type_problem(
            entry,
            "UnknownResourceType",
            format!("source cluster {} serves no resource type {entry:?}", job.source.name),
        ));
    }
    for (entry, why) in &resolution.refused {
        report.type_problems.push(type_problem(
            entry,
            "ResourceTypeNotReplicable",
            format!("{entry:?} is not replicated: {why}"),
        ));
    }
    let outcome = namespace::ensure(job).await?;
    report.namespace_created = outcome.created;
    let storage_classes = if resolution.kinds.iter().any(is_pvc) { volumes::storage_classes(job).await } else { None };
    let mut versioned = Vec::new();
    for selected in &resolution.kinds {
        let Some(version) = version_for(job, selected, report) else { continue };
        report.resolved.push(format!("{}/{version}", selected.qualified()));
        versioned.push((selected, version));
    }
    let contexts: Vec<kind::KindContext<'_>> = versioned
        .iter()
        .map(|(selected, version)| kind::KindContext {
            job,
            rules: &rules,
            selected,
            version,
            storage_classes: storage_classes.as_ref(),
        })
        .collect();
    // Kinds overlap: the next kind is listed and starts writing while the previous one finishes its last writes.
    // One pool of permits keeps the writes of all kinds together within the job's concurrency.
    let permits = Semaphore::new(job.concurrency.max(1));
    // Futures are lazy: collected first (a stream closure here would make the sync's future !Send).
    let parts: Vec<_> = contexts.iter().map(|ctx| sync_kind(ctx, &permits)).collect();
    let mut kinds = stream::iter(parts).buffered(KINDS_IN_FLIGHT);
    while let Some(part) = kinds.next().await {
        report.absorb(part);
    }
    if job.cancel.is_cancelled() {
        return Err(SyncFailure {
            category: Category::Other,
            reason: "Cancelled".into(),
            message: "the sync was stopped (mapping paused or deleted, or controller shutting down)".into(),
        });
    }
    Ok(())
}

/// Lists and syncs one kind (and the PersistentVolumes of its claims) into a report of its own.
async fn sync_kind(ctx: &kind::KindContext<'_>, permits: &Semaphore) -> SyncReport {
    let mut part = SyncReport::default();
    if ctx.job.cancel.is_cancelled() {
        return part;
    }
    let listed = kind::list(ctx).await;
    let claims = kind::sync(ctx, listed, permits, &mut part).await;
    if is_pvc(ctx.selected)
        && let Some(claims) = claims
    {
        volumes::sync(ctx.job, &ctx.rules.transform.pvc, &claims, &mut part).await;
    }
    part
}

fn is_pvc(k: &SelectedKind) -> bool {
    k.group.is_empty() && k.kind == "PersistentVolumeClaim"
}

fn type_problem(entry: &str, reason: &str, message: String) -> ObjectProblem {
    ObjectProblem {
        kind: "ResourceType".into(),
        name: entry.to_string(),
        reason: reason.into(),
        message,
        category: Category::ResourceNotFound,
    }
}

pub(super) fn version_for(job: &Job, selected: &SelectedKind, report: &mut SyncReport) -> Option<String> {
    let source = job.source.catalog.get(&selected.group, &selected.kind)?;
    let version = kinds::common_version(source, job.destination.catalog.get(&selected.group, &selected.kind));
    if version.is_none() {
        report.type_problems.push(type_problem(
            &selected.qualified(),
            "NotServedByDestination",
            format!(
                "DR cluster {} serves {} in none of the source's versions ({}); install its CRD or API there",
                job.destination.name,
                selected.qualified(),
                source.versions.join(", ")
            ),
        ));
    }
    version
}

/// The mapping's selection and transform rules, compiled once per sync.
pub struct Rules {
    /// Object selection.
    pub selection: Selection,
    /// Server-side label selector.
    pub label_selector: Option<String>,
    /// Transform options.
    pub transform: Options,
    /// Handling of immutable-field changes.
    pub immutable: ImmutablePolicy,
}

impl Rules {
    /// Compiles the rules of a job; an invalid exclusion or label selector fails the sync.
    pub fn from_spec(job: &Job) -> Result<Rules, SyncFailure> {
        let invalid = |reason: &str, message: String| SyncFailure {
            category: Category::ValidationFailure,
            reason: reason.into(),
            message,
        };
        let spec = &job.spec;
        let exclusions = compile_exclusions(spec.exclude_resources.as_deref().unwrap_or_default())
            .map_err(|e| invalid("InvalidExclusion", e.to_string()))?;
        let label_selector = label_selector(spec).map_err(|m| invalid("InvalidLabelSelector", m))?;
        let ingress = spec.ingress_config.clone().unwrap_or_default();
        let pvc = spec.pvc_config.clone().unwrap_or_default();
        let pairs = |list: Option<Vec<(String, String)>>| list.unwrap_or_default().into_iter().rev().collect();
        Ok(Rules {
            immutable: ImmutablePolicy::from_config(spec.immutable_resource_config.as_ref()),
            selection: Selection { exclusions, include_helm_releases: spec.includes_helm_release_secrets() },
            label_selector,
            transform: Options {
                source_namespace: job.marks.source_namespace.clone(),
                destination_namespace: job.destination_namespace.clone(),
                scale_to_zero: spec.scales_to_zero(),
                preserve_node_ports: spec.service_config.as_ref().and_then(|s| s.preserve_node_ports).unwrap_or(false),
                ingress: IngressOptions {
                    preserve_annotations: ingress.preserve_annotations.unwrap_or(true),
                    preserve_tls: ingress.preserve_tls.unwrap_or(true),
                    preserve_backends: ingress.preserve_backends.unwrap_or(true),
                    class_name: ingress.ingress_class_name,
                },
                pvc: PvcOptions {
                    // Reversed before collecting so that the first entry for a `from` wins.
                    storage_classes: pairs(
                        pvc.storage_class_mappings.map(|v| v.into_iter().map(|m| (m.from, m.to)).collect()),
                    ),
                    access_modes: pairs(
                        pvc.access_mode_mappings.map(|v| v.into_iter().map(|m| (m.from, m.to)).collect()),
                    ),
                    sync_persistent_volumes: pvc.sync_persistent_volumes.unwrap_or(false),
                    preserve_volume_attributes: pvc.preserve_volume_attributes.unwrap_or(false),
                },
                rewrite: Default::default(),
            },
        })
    }
}

/// The mapping's `labelSelector` as a selector string, `None` when it selects everything.
pub fn label_selector(spec: &NamespaceMappingSpec) -> Result<Option<String>, String> {
    let Some(selector) = spec.label_selector.clone() else { return Ok(None) };
    let parsed = Selector::try_from(selector).map_err(|e| format!("labelSelector: {e}"))?;
    let text = parsed.to_string();
    Ok((!text.is_empty()).then_some(text))
}
