//! Small helpers over objects held as JSON values.

use serde_json::{Map, Value};

/// `metadata.name`, or `""`.
pub fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// `metadata.uid`, or `""`.
pub fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}

/// `kind`, or `""`.
pub fn kind(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or_default()
}

/// A label's value.
pub fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str)
}

/// An annotation's value.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations").and_then(|l| l.get(key)).and_then(Value::as_str)
}

/// The object map at `path` (JSON-pointer-like list of keys), created when missing. `None` when something on the
/// way is not an object.
pub fn map_at<'a>(obj: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = obj;
    for key in path {
        let map = cur.as_object_mut()?;
        cur = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    cur.as_object_mut()
}

/// Sets a label.
pub fn set_label(obj: &mut Value, key: &str, value: &str) {
    if let Some(m) = map_at(obj, &["metadata", "labels"]) {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Sets an annotation.
pub fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    if let Some(m) = map_at(obj, &["metadata", "annotations"]) {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Removes an annotation.
pub fn remove_annotation(obj: &mut Value, key: &str) {
    if let Some(m) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        m.remove(key);
    }
}

/// Removes the value at a JSON pointer; returns it.
pub fn remove(obj: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, key) = pointer.rsplit_once('/')?;
    let parent = if parent.is_empty() { Some(&mut *obj) } else { obj.pointer_mut(parent) };
    parent?.as_object_mut()?.remove(key)
}

/// Removes `metadata.labels` / `metadata.annotations` when they are empty.
pub fn drop_empty_metadata_maps(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["labels", "annotations"] {
            if meta.get(key).and_then(Value::as_object).is_some_and(Map::is_empty) {
                meta.remove(key);
            }
        }
    }
}

/// Visits every string in the value, depth first, letting `f` replace it.
pub fn rewrite_strings(value: &mut Value, f: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::String(s) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_strings(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_strings(v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn map_at_creates_missing_levels_when_absent() {
        let mut obj = json!({"metadata": {"name": "a"}});
        set_label(&mut obj, "x", "1");
        set_annotation(&mut obj, "y", "2");
        assert_eq!(label(&obj, "x"), Some("1"));
        assert_eq!(annotation(&obj, "y"), Some("2"));
        remove_annotation(&mut obj, "y");
        drop_empty_metadata_maps(&mut obj);
        assert!(obj.pointer("/metadata/annotations").is_none());
    }

    #[test]
    fn remove_returns_value_when_present() {
        let mut obj = json!({"spec": {"a": 1, "b": 2}, "status": {}});
        assert_eq!(remove(&mut obj, "/spec/a"), Some(json!(1)));
        assert_eq!(remove(&mut obj, "/status"), Some(json!({})));
        assert_eq!(remove(&mut obj, "/nope/x"), None);
        assert_eq!(obj, json!({"spec": {"b": 2}}));
    }
}
