//! `syncCRDs`: the CustomResourceDefinitions of the custom kinds a mapping replicates are written to the DR cluster
//! before their objects, so the custom resources are in DR at failover time. Only the definitions of kinds the
//! mapping replicates are copied (never every CRD of the cluster), a definition labelled `dr-syncer.io/ignore` is
//! left out, and the copy is server-side applied with the sync's field manager.

use std::time::{Duration, Instant};

use dr_syncer_api::constants::LABEL_IGNORE;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::api::{CallError, call};
use super::kinds::SelectedKind;
use super::report::{Category, ObjectProblem};
use dr_syncer_api::constants::FIELD_MANAGER_SYNC;

/// How long a new definition may take to be served by the DR API server.
const ESTABLISH_WAIT: Duration = Duration::from_secs(30);
/// Annotations never copied with a definition.
const DROPPED_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// What was done.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Definitions written to the DR cluster.
    pub applied: Vec<String>,
    /// Definitions that could not be copied, as type problems of the sync.
    pub problems: Vec<ObjectProblem>,
}

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// The DR copy of a source definition (pure): name, labels, annotations (minus client bookkeeping) and spec; no
/// status, uid or resourceVersion. `None` when the definition is labelled to be ignored.
pub fn desired(source: &Value) -> Option<Value> {
    let meta = &source["metadata"];
    if meta["labels"].get(LABEL_IGNORE).is_some_and(|v| v == "true") {
        return None;
    }
    let mut annotations = meta["annotations"].as_object().cloned().unwrap_or_default();
    for drop in DROPPED_ANNOTATIONS {
        annotations.remove(*drop);
    }
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": meta["name"], "labels": meta["labels"].as_object().cloned().unwrap_or_default(),
                     "annotations": annotations},
        "spec": source["spec"],
    }))
}

fn problem(name: &str, reason: &str, message: String) -> ObjectProblem {
    ObjectProblem {
        kind: "CustomResourceDefinition".into(),
        name: name.to_string(),
        reason: reason.into(),
        message,
        category: Category::Other,
    }
}

/// Copies the definitions of `kinds` that are custom resources from `source` to `destination` and waits until the
/// DR API server serves the new ones. Built-in kinds have no definition and are skipped.
pub async fn sync(
    source: &kube::Client,
    destination: &kube::Client,
    kinds: &[SelectedKind],
    timeout: Duration,
) -> Outcome {
    let mut out = Outcome::default();
    let (from, to): (Api<DynamicObject>, Api<DynamicObject>) =
        (Api::all_with(source.clone(), &crd_resource()), Api::all_with(destination.clone(), &crd_resource()));
    for kind in kinds.iter().filter(|k| !k.group.is_empty()) {
        let name = format!("{}.{}", kind.plural, kind.group);
        let found = call(|| format!("get CustomResourceDefinition {name} on the source"), timeout, from.get_opt(&name));
        let definition = match found.await {
            Ok(Some(obj)) => serde_json::to_value(obj).unwrap_or_default(),
            Ok(None) => continue, // a built-in or aggregated kind: nothing to copy
            Err(e) => {
                out.problems.push(problem(&name, &e.reason, e.message));
                continue;
            }
        };
        let Some(wanted) = desired(&definition) else { continue };
        let params = PatchParams::apply(FIELD_MANAGER_SYNC).force();
        let what = || format!("apply CustomResourceDefinition {name} on the DR cluster");
        match call(what, timeout, to.patch(&name, &params, &Patch::Apply(&wanted))).await {
            Ok(_) => out.applied.push(name),
            Err(e) => out.problems.push(problem(&name, &e.reason, e.message)),
        }
    }
    for name in out.applied.clone() {
        if let Err(e) = established(&to, &name, timeout).await {
            out.problems.push(problem(&name, &e.reason, e.message));
        }
    }
    out
}

/// Waits until the DR API server reports the definition `Established` (it serves the kind).
async fn established(api: &Api<DynamicObject>, name: &str, timeout: Duration) -> Result<(), CallError> {
    let deadline = Instant::now() + ESTABLISH_WAIT;
    loop {
        let obj =
            call(|| format!("get CustomResourceDefinition {name} on the DR cluster"), timeout, api.get(name)).await?;
        let conditions = obj.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CallError {
                what: format!("wait for CustomResourceDefinition {name}"),
                reason: "CrdNotEstablished".into(),
                category: Category::Other,
                message: format!("the DR API server does not serve {name} after {ESTABLISH_WAIT:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_keeps_the_definition_and_drops_cluster_state() {
        let source = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.lab.test", "uid": "u", "resourceVersion": "7", "labels": {"team": "a"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "n"}},
            "spec": {"group": "lab.test", "scope": "Namespaced"},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        let out = desired(&source).unwrap();
        assert_eq!(
            out["metadata"],
            json!({"name": "widgets.lab.test", "labels": {"team": "a"}, "annotations": {"note": "n"}})
        );
        assert_eq!(out["spec"], source["spec"]);
        assert!(out.get("status").is_none());
        let mut ignored = source.clone();
        ignored["metadata"]["labels"][LABEL_IGNORE] = json!("true");
        assert_eq!(desired(&ignored), None);
    }
}
