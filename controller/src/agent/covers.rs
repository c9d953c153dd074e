//! Whether an agent object in the source cluster already is what the plan says, so that the periodic check of the
//! agents writes nothing when nothing changed. A server-side apply that changes nothing is not free: some API
//! server versions (1.20 among them) still rewrite the object to move its managed-fields time, which wakes every
//! watcher of it. Comparing first costs one read.
//!
//! Every planned object carries the hash of its plan (annotation `dr-syncer.io/agent-plan-hash`), so a changed plan
//! always shows (also a field the plan no longer sets), and a field changed by hand shows as a value that differs.

use serde_json::Value;
use sha2::{Digest, Sha256};

use dr_syncer_api::constants::ANNOTATION_AGENT_PLAN_HASH;

/// Whether `live` holds every field of `desired` with the same value (pure). Fields the API server added (defaults,
/// status, metadata it manages) do not matter; an empty map or list in `desired` matches a missing one in `live`
/// (the API server drops them), as does a zero value (`false`, `0`, `""`: omitted when empty), and `null` in
/// `desired` sets nothing. Lists must match item by item.
pub fn covers(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (_, Value::Null) => true,
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => covers(lv, dv),
            None => is_empty(dv),
        }),
        (Value::Array(l), Value::Array(d)) => l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| covers(lv, dv)),
        (Value::Null, d) => is_empty(d),
        (l, d) => l == d,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
    }
}

/// `object` with the hash of its content in annotation [`ANNOTATION_AGENT_PLAN_HASH`] (pure).
pub fn stamp(mut object: Value) -> Value {
    let hash = hex::encode(&Sha256::digest(object.to_string().as_bytes())[..8]);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION_AGENT_PLAN_HASH.to_string(), Value::String(hash));
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn covers_compares_only_what_the_plan_sets() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}, "annotations": {}},
            "spec": {"replicas": null, "hostNetwork": false, "priority": 0, "ports": [{"name": "ssh", "port": 22}], "tolerations": [], "selector": {}}});
        let cases = [
            (
                "the same",
                json!({"metadata": {"name": "a", "labels": {"x": "1"}},
                "spec": {"ports": [{"name": "ssh", "port": 22}]}}),
                true,
            ),
            (
                "with what the server added",
                json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}},
                "spec": {"ports": [{"name": "ssh", "port": 22, "protocol": "TCP"}], "replicas": 3},
                "status": {"ready": 1}}),
                true,
            ),
            (
                "a value changed by hand",
                json!({"metadata": {"name": "a", "labels": {"x": "2"}},
                "spec": {"ports": [{"name": "ssh", "port": 22}]}}),
                false,
            ),
            (
                "a planned field removed",
                json!({"metadata": {"name": "a"},
                "spec": {"ports": [{"name": "ssh", "port": 22}]}}),
                false,
            ),
            (
                "a list item added",
                json!({"metadata": {"name": "a", "labels": {"x": "1"}},
                "spec": {"ports": [{"name": "ssh", "port": 22}, {"name": "x", "port": 1}]}}),
                false,
            ),
            (
                "a zero value the server omits",
                json!({"metadata": {"name": "a", "labels": {"x": "1"}},
                "spec": {"ports": [{"name": "ssh", "port": 22}]}}),
                true,
            ),
            (
                "an empty list filled",
                json!({"metadata": {"name": "a", "labels": {"x": "1"}},
                "spec": {"ports": [{"name": "ssh", "port": 22}], "tolerations": [{"key": "k"}]}}),
                false,
            ),
        ];
        for (what, live, want) in cases {
            assert_eq!(covers(&live, &desired), want, "{what}");
        }
    }

    #[test]
    fn stamp_changes_with_the_content_and_covers_tells_the_plans_apart() {
        let a = stamp(json!({"metadata": {"name": "a"}, "spec": {"image": "agent:1"}}));
        let b = stamp(json!({"metadata": {"name": "a"}, "spec": {"image": "agent:2"}}));
        let hash = |v: &Value| v["metadata"]["annotations"][ANNOTATION_AGENT_PLAN_HASH].clone();
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&stamp(json!({"metadata": {"name": "a"}, "spec": {"image": "agent:1"}}))));
        assert!(covers(&a, &a) && !covers(&a, &b));
    }
}
