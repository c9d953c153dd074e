//! Storage-side steps: the DR cluster's storage classes, and PersistentVolumes replicated with their claims.

use std::collections::BTreeSet;

use dr_syncer_api::constants as c;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::Job;
use crate::sync::api::{self, CallError};
use crate::sync::discovery::api_resource;
use crate::sync::object;
use crate::sync::ownership::stamp_hash;
use crate::sync::plan::{Action, decide};
use crate::sync::report::{ObjectProblem, SyncReport};
use crate::sync::transform::{PvcOptions, persistent_volume};

const PV_KIND: &str = "PersistentVolume";

/// Names of the DR cluster's storage classes; `None` (check skipped, logged) when they cannot be listed.
pub async fn storage_classes(job: &Job) -> Option<BTreeSet<String>> {
    let resource = api_resource("storage.k8s.io", "v1", "StorageClass", "storageclasses");
    let dest: Api<DynamicObject> = Api::all_with(job.destination.client.clone(), &resource);
    let what = format!("list storage classes of DR cluster {}", job.destination.name);
    match api::list_all(&dest, &resource, None, job.timeout, &what).await {
        Ok(items) => Some(items.iter().map(|o| object::name(o).to_string()).collect()),
        Err(err) => {
            tracing::warn!(error = %err, "cannot check PVC storage classes against the DR cluster");
            None
        }
    }
}

fn problem(name: &str, err: &CallError) -> ObjectProblem {
    ObjectProblem {
        kind: PV_KIND.into(),
        name: name.to_string(),
        reason: err.reason.clone(),
        message: err.message.clone(),
        category: err.category,
    }
}

/// Replicates the PersistentVolumes bound to the selected claims that ask for it, and prunes the DR volumes this
/// mapping created for claims that no longer do. DR volumes always get reclaim policy Retain.
pub async fn sync(job: &Job, opts: &PvcOptions, claims: &[Value], report: &mut SyncReport) {
    let resource = api_resource("", "v1", PV_KIND, "persistentvolumes");
    let source_api: Api<DynamicObject> = Api::all_with(job.source.client.clone(), &resource);
    let dest_api: Api<DynamicObject> = Api::all_with(job.destination.client.clone(), &resource);
    let mut wanted = BTreeSet::new();
    for claim in claims.iter().filter(|c| opts.syncs_volume_of(c)) {
        let Some(volume) = claim.pointer("/spec/volumeName").and_then(Value::as_str) else { continue };
        wanted.insert(volume.to_string());
        let what = format!("get PersistentVolume {volume} on source cluster {}", job.source.name);
        let source = match api::get_opt(&source_api, volume, job.timeout, &what).await {
            Ok(Some(pv)) => pv,
            Ok(None) => continue,
            Err(err) => {
                report.fail(problem(volume, &err));
                continue;
            }
        };
        let mut desired = persistent_volume(&source, claim, &job.destination_namespace, opts);
        if let Some(map) = desired.as_object_mut() {
            map.insert("apiVersion".into(), "v1".into());
            map.insert("kind".into(), PV_KIND.into());
        }
        job.marks.apply(&mut desired, object::uid(&source));
        let hash = stamp_hash(&mut desired);
        let what = format!("get PersistentVolume {volume} on DR cluster {}", job.destination.name);
        let existing = match api::get_opt(&dest_api, volume, job.timeout, &what).await {
            Ok(e) => e,
            Err(err) => {
                report.fail(problem(volume, &err));
                continue;
            }
        };
        match decide(&desired, &hash, existing.as_ref(), &job.marks, job.spec.adopts_existing_objects()) {
            Action::Unchanged => report.counts(PV_KIND).unchanged += 1,
            Action::Conflict(message) => report.conflict(ObjectProblem {
                kind: PV_KIND.into(),
                name: volume.to_string(),
                reason: "Conflict".into(),
                message,
                category: crate::sync::report::Category::Other,
            }),
            Action::Create | Action::Update => {
                let what = format!("apply PersistentVolume {volume} on DR cluster {}", job.destination.name);
                match api::apply(&dest_api, volume, &desired, job.timeout, &what).await {
                    Ok(()) => report.counts(PV_KIND).applied += 1,
                    Err(err) => report.fail(problem(volume, &err)),
                }
            }
        }
    }
    let what = format!("list PersistentVolumes of this mapping on DR cluster {}", job.destination.name);
    let ours = match api::list_all(&dest_api, &resource, Some(&job.marks.selector()), job.timeout, &what).await {
        Ok(items) => items,
        Err(err) => {
            report.fail(problem("*", &err));
            return;
        }
    };
    for pv in ours.iter().filter(|pv| {
        pv.pointer("/spec/claimRef/namespace").and_then(Value::as_str) == Some(job.destination_namespace.as_str())
            && !wanted.contains(object::name(pv))
            && object::label(pv, c::LABEL_DR_MANAGED_BY) == Some(c::MANAGED_BY_VALUE)
    }) {
        let name = object::name(pv);
        let what = format!("delete PersistentVolume {name} on DR cluster {}", job.destination.name);
        match api::delete(&dest_api, name, object::uid(pv), job.timeout, &what).await {
            Ok(()) => report.counts(PV_KIND).pruned += 1,
            Err(err) => report.fail(problem(name, &err)),
        }
    }
}
