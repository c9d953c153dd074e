//! The DR namespace: created when missing, labelled like the source per `namespaceConfig`, never taken from
//! another mapping. The source namespace is only read.

use dr_syncer_api::constants as c;
use kube::api::{Api, DynamicObject};
use serde_json::{Map, Value, json};

use super::Job;
use crate::sync::api::{self, CallError};
use crate::sync::discovery::api_resource;
use crate::sync::object;
use crate::sync::ownership::{Owner, stamp_hash};
use crate::sync::plan::{Action, decide};
use crate::sync::report::{Category, SyncFailure};

/// Labels every namespace carries by itself; never copied.
const OWN_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What happened to the DR namespace.
#[derive(Debug, Default)]
pub struct NamespaceOutcome {
    /// It was created by this sync.
    pub created: bool,
}

fn failure(category: Category, reason: &str, message: String) -> SyncFailure {
    SyncFailure { category, reason: reason.to_string(), message }
}

fn from_call(err: CallError) -> SyncFailure {
    failure(err.category, &err.reason, err.to_string())
}

/// Makes sure the DR namespace exists and carries the source's labels and annotations as configured.
pub async fn ensure(job: &Job) -> Result<NamespaceOutcome, SyncFailure> {
    let resource = api_resource("", "v1", "Namespace", "namespaces");
    let source_api: Api<DynamicObject> = Api::all_with(job.source.client.clone(), &resource);
    let dest_api: Api<DynamicObject> = Api::all_with(job.destination.client.clone(), &resource);
    let src_ns = &job.marks.source_namespace;
    let dst_ns = &job.destination_namespace;
    let what = format!("get namespace {src_ns} in source cluster {}", job.source.name);
    let Some(source) = api::get_opt(&source_api, src_ns, job.timeout, &what).await.map_err(from_call)? else {
        return Err(failure(
            Category::ResourceNotFound,
            "SourceNamespaceNotFound",
            format!("namespace {src_ns} does not exist in source cluster {}; nothing is pruned", job.source.name),
        ));
    };
    let what = format!("get namespace {dst_ns} in DR cluster {}", job.destination.name);
    let existing = api::get_opt(&dest_api, dst_ns, job.timeout, &what).await.map_err(from_call)?;
    if let Some(ns) = &existing
        && ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
    {
        return Err(failure(
            Category::Other,
            "DestinationNamespaceTerminating",
            format!("namespace {dst_ns} in DR cluster {} is being deleted", job.destination.name),
        ));
    }
    let config = job.spec.namespace_config.clone().unwrap_or_default();
    match existing.as_ref().map(|ns| job.marks.owner_of(ns)) {
        None if !config.create_namespace.unwrap_or(true) => {
            return Err(failure(
                Category::ResourceNotFound,
                "DestinationNamespaceNotFound",
                format!(
                    "namespace {dst_ns} does not exist in DR cluster {} and namespaceConfig.createNamespace is false",
                    job.destination.name
                ),
            ));
        }
        Some(Owner::OtherMapping(other)) => {
            return Err(failure(
                Category::Other,
                "DestinationOwnedByAnotherMapping",
                format!(
                    "namespace {dst_ns} in DR cluster {} is managed by NamespaceMapping {other}",
                    job.destination.name
                ),
            ));
        }
        // A namespace someone else created: objects are written into it, the namespace itself is left alone.
        Some(Owner::Unmanaged) => return Ok(NamespaceOutcome::default()),
        None | Some(Owner::Ours) => {}
    }
    let mut desired = desired_namespace(
        &source,
        dst_ns,
        config.preserve_labels.unwrap_or(true),
        config.preserve_annotations.unwrap_or(true),
    );
    job.marks.apply(&mut desired, object::uid(&source));
    if object::label(&desired, c::LABEL_MANAGED_BY).is_none() {
        object::set_label(&mut desired, c::LABEL_MANAGED_BY, c::MANAGED_BY_VALUE);
    }
    let hash = stamp_hash(&mut desired);
    let action = decide(&desired, &hash, existing.as_ref(), &job.marks, false);
    if matches!(action, Action::Create | Action::Update) {
        let what = format!("apply namespace {dst_ns} in DR cluster {}", job.destination.name);
        api::apply(&dest_api, dst_ns, &desired, job.timeout, &what).await.map_err(from_call)?;
    }
    Ok(NamespaceOutcome { created: action == Action::Create })
}

fn desired_namespace(source: &Value, name: &str, labels: bool, annotations: bool) -> Value {
    let pick = |key: &str, keep: bool| -> Map<String, Value> {
        if !keep {
            return Map::new();
        }
        let mut map =
            source.pointer(&format!("/metadata/{key}")).and_then(Value::as_object).cloned().unwrap_or_default();
        map.retain(|k, _| {
            k != OWN_NAME_LABEL
                && !k.starts_with(c::KEY_PREFIX)
                && !crate::sync::sanitize::STRIPPED_ANNOTATIONS.contains(&k.as_str())
        });
        map
    };
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": pick("labels", labels), "annotations": pick("annotations", annotations)}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_namespace_copies_user_metadata_but_not_own_name_or_dr_syncer_keys() {
        let source = json!({"metadata": {"name": "shop",
            "labels": {"team": "a", "kubernetes.io/metadata.name": "shop", "dr-syncer.io/x": "1"},
            "annotations": {"owner": "b", "kubectl.kubernetes.io/last-applied-configuration": "{}"}}});
        let ns = desired_namespace(&source, "shop-dr", true, true);
        assert_eq!(ns["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(ns["metadata"]["annotations"], json!({"owner": "b"}));
        let bare = desired_namespace(&source, "shop-dr", false, false);
        assert_eq!(bare["metadata"]["labels"], json!({}));
        assert_eq!(bare["metadata"]["name"], json!("shop-dr"));
    }
}
