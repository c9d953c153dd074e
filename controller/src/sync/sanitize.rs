//! Sanitizing: what of a source object is never copied to the DR cluster.

use serde_json::{Map, Value};

/// Annotations never copied: client bookkeeping and controller-written state of the source cluster.
pub const STRIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "kubernetes.io/change-cause",
    "control-plane.alpha.kubernetes.io/leader",
];

/// Metadata fields copied; everything else in `metadata` (uid, resourceVersion, generation, timestamps,
/// managedFields, ownerReferences, finalizers, selfLink, generateName) is dropped.
const KEPT_METADATA: &[&str] = &["name", "labels", "annotations"];

/// Copies what replication keeps of a source object: apiVersion, kind, name, labels, annotations (minus
/// [`STRIPPED_ANNOTATIONS`]) and every top-level field except `status`. `namespace` is set to the destination
/// (or left out for cluster-scoped objects when `None`).
pub fn sanitize(source: &Value, destination_namespace: Option<&str>) -> Value {
    let mut out = Map::new();
    if let Some(map) = source.as_object() {
        for (key, value) in map {
            match key.as_str() {
                "status" => {}
                "metadata" => {
                    out.insert(key.clone(), sanitize_metadata(value, destination_namespace));
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Value::Object(out)
}

fn sanitize_metadata(meta: &Value, destination_namespace: Option<&str>) -> Value {
    let mut out = Map::new();
    for key in KEPT_METADATA {
        if let Some(value) = meta.get(*key) {
            out.insert(key.to_string(), value.clone());
        }
    }
    if let Some(annotations) = out.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.retain(|k, _| !STRIPPED_ANNOTATIONS.contains(&k.as_str()));
    }
    for key in ["labels", "annotations"] {
        if out.get(key).and_then(Value::as_object).is_some_and(Map::is_empty) || out.get(key) == Some(&Value::Null) {
            out.remove(key);
        }
    }
    if let Some(ns) = destination_namespace {
        out.insert("namespace".into(), Value::String(ns.to_string()));
    }
    Value::Object(out)
}

/// Sanitizes an embedded object template (pod template, volume claim template): drops its `status` and the
/// `metadata.creationTimestamp: null` the API server writes.
pub fn sanitize_template(template: &mut Value) {
    if let Some(map) = template.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("creationTimestamp");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sanitize_strips_server_fields_and_status_when_copying() {
        let source = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "cfg", "namespace": "shop", "uid": "u", "resourceVersion": "9", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z", "deletionTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{}], "ownerReferences": [{}], "finalizers": ["x"], "selfLink": "/x",
                "generateName": "cfg-", "labels": {"app": "shop"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}
            },
            "data": {"k": "v"},
            "status": {"x": 1}
        });
        let out = sanitize(&source, Some("shop-dr"));
        assert_eq!(
            out,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "shop-dr", "labels": {"app": "shop"}, "annotations": {"team": "a"}},
                "data": {"k": "v"}
            })
        );
    }

    #[test]
    fn sanitize_drops_empty_maps_when_only_stripped_annotations_remain() {
        let source = json!({"metadata": {"name": "a", "labels": {},
            "annotations": {"deployment.kubernetes.io/revision": "4"}}});
        assert_eq!(sanitize(&source, None), json!({"metadata": {"name": "a"}}));
    }
}
