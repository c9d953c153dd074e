//! Applying a change the DR API server refused because it touches an immutable field, per the object's handling:
//! leave it (NoChange), apply what can change (PartialUpdate), or delete and create it again (Recreate, after
//! scaling the workload down and waiting for its pods in RecreateWithPodDrain, with no grace period in ForceUpdate).
//! Claims and volumes are deleted only when an override names their type ([`Chosen::data_kept`]); other
//! controllers' finalizers are never removed.

use std::time::{Duration, Instant};

use dr_syncer_api::constants::LABEL_IMMUTABLE_HANDLING;
use dr_syncer_api::namespace_mapping::ImmutableHandling;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::Selector;
use serde_json::Value;

use super::kind::KindContext;
use crate::sync::api::{self, CallError, call};
use crate::sync::immutable::{Chosen, drain_patch, keep_immutable, own_finalizers_removed};
use crate::sync::object;
use crate::sync::report::{Category, ObjectProblem};

/// How often a deletion or a drain is checked.
const POLL: Duration = Duration::from_millis(250);

/// A write the DR API server refused as an immutable-field change.
pub struct Refused<'a> {
    /// Object name.
    pub name: &'a str,
    /// The desired DR object (with marks and content hash).
    pub desired: &'a Value,
    /// The DR object as listed before the write.
    pub existing: Option<&'a Value>,
    /// The handling chosen for the object.
    pub chosen: Chosen,
    /// The refusal.
    pub error: CallError,
}

/// What became of the refused write.
pub enum Handled {
    /// The change is in the DR cluster (recreated or partially applied); the note says how.
    Applied(String),
    /// NoChange: the DR object was left as it is.
    Left(ObjectProblem),
    /// The handling failed.
    Failed(CallError),
}

fn error(what: &str, reason: &str, category: Category, message: String) -> CallError {
    CallError { what: what.to_string(), reason: reason.to_string(), category, message }
}

/// Handles one refused write.
pub async fn handle(ctx: &KindContext<'_>, dest: &Api<DynamicObject>, kind: &str, r: Refused<'_>) -> Handled {
    let job = ctx.job;
    let (group, plain_kind) = (ctx.selected.group.as_str(), ctx.selected.kind.as_str());
    let what = format!("apply {kind} {}/{} on DR cluster {}", job.destination_namespace, r.name, job.destination.name);
    let handling = r.chosen.handling;
    if r.chosen.data_kept {
        return Handled::Left(ObjectProblem {
            kind: kind.to_string(),
            name: r.name.to_string(),
            reason: "VolumeKept".into(),
            message: format!(
                "{}; the DR object is left as it is: deleting a {kind} to apply an immutable-field change deletes the \
                 data replicated into it, so dr-syncer does so only when immutableResourceConfig.resourceOverrides \
                 names its type (for example persistentvolumeclaims: Recreate), never by the default handling or a \
                 label",
                r.error.message
            ),
            category: Category::Other,
        });
    }
    let existing = match (handling, r.existing) {
        (ImmutableHandling::NoChange, _) | (_, None) => {
            return Handled::Left(ObjectProblem {
                kind: kind.to_string(),
                name: r.name.to_string(),
                reason: "ImmutableFieldChanged".into(),
                message: format!(
                    "{}; the DR object is left as it is (immutableResourceConfig NoChange). Choose Recreate, \
                     RecreateWithPodDrain, PartialUpdate or ForceUpdate, per type or with label \
                     {LABEL_IMMUTABLE_HANDLING} on the source object, to apply the change",
                    r.error.message
                ),
                category: Category::Other,
            });
        }
        (_, Some(existing)) => existing,
    };
    if handling == ImmutableHandling::PartialUpdate {
        let Some(partial) = keep_immutable(group, plain_kind, r.desired, existing) else {
            let message = format!(
                "{}; PartialUpdate does not know which fields of {kind} are immutable, use Recreate",
                r.error.message
            );
            return Handled::Failed(error(&what, "ImmutableFieldChanged", Category::ValidationFailure, message));
        };
        return match api::apply(dest, r.name, &partial, job.timeout, &what).await {
            Ok(()) => Handled::Applied("immutable fields kept from the DR object (PartialUpdate)".into()),
            Err(e) => Handled::Failed(e),
        };
    }
    let policy = &ctx.rules.immutable;
    if handling == ImmutableHandling::RecreateWithPodDrain
        && let Some(patch) = drain_patch(group, plain_kind)
        && let Err(e) = drain(ctx, dest, r.name, existing, &patch, policy.drain_timeout).await
    {
        return Handled::Failed(e);
    }
    let force = handling == ImmutableHandling::ForceUpdate;
    let wait = if force { policy.force_delete_timeout } else { policy.drain_timeout };
    if let Err(e) = delete_and_wait(ctx, dest, r.name, existing, force, wait).await {
        return Handled::Failed(e);
    }
    match api::apply(dest, r.name, r.desired, job.timeout, &what).await {
        Ok(()) => Handled::Applied(format!("recreated to apply an immutable-field change ({handling:?})")),
        Err(e) => Handled::Failed(e),
    }
}

/// Scales the workload to zero and waits until none of its pods is left.
async fn drain(
    ctx: &KindContext<'_>,
    dest: &Api<DynamicObject>,
    name: &str,
    existing: &Value,
    patch: &Value,
    timeout: Duration,
) -> Result<(), CallError> {
    let job = ctx.job;
    let what = format!("scale down {}/{name} on DR cluster {}", job.destination_namespace, job.destination.name);
    call(|| what.clone(), job.timeout, dest.patch(name, &PatchParams::default(), &Patch::Merge(patch))).await?;
    let selector = existing
        .pointer("/spec/selector")
        .cloned()
        .and_then(|s| serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>(s).ok())
        .and_then(|s| Selector::try_from(s).ok())
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty());
    let Some(selector) = selector else { return Ok(()) };
    let pods: Api<Pod> = Api::namespaced(job.destination.client.clone(), &job.destination_namespace);
    let deadline = Instant::now() + timeout;
    let what = format!("list pods of {name} in {} on DR cluster {}", job.destination_namespace, job.destination.name);
    loop {
        let list = call(|| what.clone(), job.timeout, pods.list(&ListParams::default().labels(&selector))).await?;
        if list.items.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline || job.cancel.is_cancelled() {
            let message = format!(
                "{} pods of {name} still run after {timeout:?} (immutableResourceConfig.drainTimeout); the object is \
                 scaled down and will be recreated by a later sync",
                list.items.len()
            );
            return Err(error(&what, "DrainTimeout", Category::Other, message));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes `existing` (by uid) and waits until it is gone; `force` skips the grace period and removes the finalizers
/// dr-syncer put there (never another controller's, such as `kubernetes.io/pvc-protection`).
async fn delete_and_wait(
    ctx: &KindContext<'_>,
    dest: &Api<DynamicObject>,
    name: &str,
    existing: &Value,
    force: bool,
    timeout: Duration,
) -> Result<(), CallError> {
    let job = ctx.job;
    let uid = object::uid(existing);
    let what = format!("delete {}/{name} on DR cluster {}", job.destination_namespace, job.destination.name);
    api::delete_with_grace(dest, name, uid, force.then_some(0), job.timeout, &what).await?;
    if force && let Some(kept) = own_finalizers_removed(existing) {
        let patch = serde_json::json!({"metadata": {"finalizers": kept, "uid": uid}});
        let what = format!("remove dr-syncer's finalizers of {}/{name}", job.destination_namespace);
        api::merge_patch_if_present(dest, name, &patch, job.timeout, &what).await?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        match api::get_opt(dest, name, job.timeout, &what).await? {
            Some(obj) if object::uid(&obj) == uid => {}
            _ => return Ok(()),
        }
        if Instant::now() >= deadline || job.cancel.is_cancelled() {
            let message = format!(
                "the DR object is still there {timeout:?} after its deletion (finalizers?); it will be created again \
                 once it is gone"
            );
            return Err(error(&what, "DeleteTimeout", Category::Other, message));
        }
        tokio::time::sleep(POLL).await;
    }
}
