//! Cleanup of a DR namespace a mapping no longer covers (the mapping was deleted, or the source namespace stopped
//! matching `namespaceSelector`): per `cleanupPolicy`, delete exactly the objects the mapping created (and the
//! namespace if it created it), or keep them and remove the mapping's ownership marks. Needs only the DR cluster.

use std::time::Duration;

use dr_syncer_api::constants as c;
use dr_syncer_api::namespace_mapping::CleanupPolicy;
use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::{Map, Value};

use super::api::{self, CallError};
use super::discovery::api_resource;
use super::kinds::Catalog;
use super::object;
use super::ownership::{Marks, Owner};

/// Labels dr-syncer puts on DR objects to mark them as its own; removed under Retain.
pub const MARK_LABELS: &[&str] =
    &[c::LABEL_DR_MANAGED_BY, c::LABEL_MAPPING, c::LABEL_MAPPING_NAMESPACE, c::LABEL_SOURCE_CLUSTER];
/// Annotations dr-syncer puts on DR objects to mark them as its own; removed under Retain.
pub const MARK_ANNOTATIONS: &[&str] =
    &[c::ANNOTATION_MAPPING, c::ANNOTATION_SOURCE_NAMESPACE, c::ANNOTATION_SOURCE_UID, c::ANNOTATION_CONTENT_HASH];

/// One DR namespace to clean up.
pub struct Cleanup<'a> {
    /// The mapping (only its namespace and name are used).
    pub marks: &'a Marks,
    /// DR cluster client.
    pub client: Client,
    /// DR cluster name, for messages.
    pub cluster: &'a str,
    /// What the DR cluster serves.
    pub catalog: &'a Catalog,
    /// The DR namespace.
    pub namespace: &'a str,
    /// Retain or Delete.
    pub policy: CleanupPolicy,
    /// Timeout of each call.
    pub timeout: Duration,
    /// Calls at once.
    pub concurrency: usize,
}

/// What a cleanup did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Objects deleted (Delete).
    pub deleted: usize,
    /// Objects whose marks were removed (Retain).
    pub released: usize,
    /// The namespace was deleted (Delete, namespace created by dr-syncer).
    pub namespace_deleted: bool,
}

/// The merge patch that removes the ownership marks.
pub fn release_patch() -> Value {
    let nulls = |keys: &[&str]| keys.iter().map(|k| ((*k).to_string(), Value::Null)).collect::<Map<_, _>>();
    serde_json::json!({"metadata": {"labels": nulls(MARK_LABELS), "annotations": nulls(MARK_ANNOTATIONS)}})
}

/// Cleans up one DR namespace. Stops at the first kind that cannot be listed or changed, so a retry finds the rest.
pub async fn run(job: &Cleanup<'_>) -> Result<CleanupReport, CallError> {
    let mut report = CleanupReport::default();
    let selector = job.marks.selector();
    let patch = release_patch();
    for served in job.catalog.resources.iter().filter(|r| r.replicable) {
        let Some(version) = served.versions.first() else { continue };
        let resource = api_resource(&served.group, version, &served.kind, &served.plural);
        let dest: Api<DynamicObject> = Api::namespaced_with(job.client.clone(), job.namespace, &resource);
        let what = format!("list {} in {} on DR cluster {}", served.kind, job.namespace, job.cluster);
        let ours: Vec<(String, String)> = api::list_all(&dest, &resource, Some(&selector), job.timeout, &what)
            .await?
            .iter()
            .filter(|o| job.marks.owner_of(o) == Owner::Ours)
            .map(|o| (object::name(o).to_string(), object::uid(o).to_string()))
            .collect();
        let results = stream::iter(ours.into_iter().map(|(name, uid)| {
            let (dest, patch) = (&dest, &patch);
            async move {
                let what = format!("clean up {} {}/{name} on DR cluster {}", served.kind, job.namespace, job.cluster);
                match job.policy {
                    CleanupPolicy::Delete => api::delete(dest, &name, &uid, job.timeout, &what).await,
                    CleanupPolicy::Retain => api::merge_patch_if_present(dest, &name, patch, job.timeout, &what).await,
                }
            }
        }))
        .buffer_unordered(job.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        for result in results {
            result?;
            match job.policy {
                CleanupPolicy::Delete => report.deleted += 1,
                CleanupPolicy::Retain => report.released += 1,
            }
        }
    }
    volumes(job, &selector, &patch, &mut report).await?;
    let resource = api_resource("", "v1", "Namespace", "namespaces");
    let namespaces: Api<DynamicObject> = Api::all_with(job.client.clone(), &resource);
    let what = format!("get namespace {} on DR cluster {}", job.namespace, job.cluster);
    if let Some(ns) = api::get_opt(&namespaces, job.namespace, job.timeout, &what).await?
        && job.marks.owner_of(&ns) == Owner::Ours
    {
        let what = format!("clean up namespace {} on DR cluster {}", job.namespace, job.cluster);
        match job.policy {
            CleanupPolicy::Delete => {
                api::delete(&namespaces, job.namespace, object::uid(&ns), job.timeout, &what).await?;
                report.namespace_deleted = true;
            }
            CleanupPolicy::Retain => {
                api::merge_patch_if_present(&namespaces, job.namespace, &patch, job.timeout, &what).await?
            }
        }
    }
    Ok(report)
}

/// PersistentVolumes the mapping replicated for claims of this namespace.
async fn volumes(
    job: &Cleanup<'_>,
    selector: &str,
    patch: &Value,
    report: &mut CleanupReport,
) -> Result<(), CallError> {
    let resource = api_resource("", "v1", "PersistentVolume", "persistentvolumes");
    let pvs: Api<DynamicObject> = Api::all_with(job.client.clone(), &resource);
    let what = format!("list PersistentVolumes on DR cluster {}", job.cluster);
    let ours: Vec<Value> = api::list_all(&pvs, &resource, Some(selector), job.timeout, &what)
        .await?
        .into_iter()
        .filter(|pv| {
            job.marks.owner_of(pv) == Owner::Ours
                && pv.pointer("/spec/claimRef/namespace").and_then(Value::as_str) == Some(job.namespace)
        })
        .collect();
    for pv in ours {
        let name = object::name(&pv);
        let what = format!("clean up PersistentVolume {name} on DR cluster {}", job.cluster);
        match job.policy {
            CleanupPolicy::Delete => {
                api::delete(&pvs, name, object::uid(&pv), job.timeout, &what).await?;
                report.deleted += 1;
            }
            CleanupPolicy::Retain => {
                api::merge_patch_if_present(&pvs, name, patch, job.timeout, &what).await?;
                report.released += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_patch_nulls_every_mark_and_nothing_else() {
        let patch = release_patch();
        let labels = patch["metadata"]["labels"].as_object().unwrap();
        let annotations = patch["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(labels.len(), MARK_LABELS.len());
        assert_eq!(annotations.len(), MARK_ANNOTATIONS.len());
        assert!(labels.values().chain(annotations.values()).all(Value::is_null));
        assert!(!annotations.contains_key(c::ANNOTATION_ORIGINAL_REPLICAS), "failover needs the original count");
    }

    #[test]
    fn release_patch_leaves_object_unowned_when_applied() {
        let marks = Marks {
            mapping_namespace: "ops".into(),
            mapping_name: "shop".into(),
            source_cluster: "prod".into(),
            source_namespace: "shop".into(),
        };
        let mut obj = serde_json::json!({"metadata": {"name": "x", "labels": {"app": "web"}}});
        marks.apply(&mut obj, "uid-1");
        assert_eq!(marks.owner_of(&obj), Owner::Ours);
        json_merge(&mut obj, &release_patch());
        assert_eq!(marks.owner_of(&obj), Owner::Unmanaged);
        assert_eq!(obj["metadata"]["labels"], serde_json::json!({"app": "web"}));
    }

    /// RFC 7386 merge, as the API server applies a merge patch.
    fn json_merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }
}
