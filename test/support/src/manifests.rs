//! Loading YAML manifests and server-side applying them, whatever their kind.

use std::path::Path;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

/// Field manager of objects applied by tests.
pub const TEST_FIELD_MANAGER: &str = "dr-syncer-tests";

/// Every non-empty document of a (multi-document) YAML file.
pub fn load(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every non-empty document of a YAML string.
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Applies manifests of any kind the cluster serves.
pub struct Applier {
    client: Client,
    discovery: Discovery,
}

impl Applier {
    /// Discovers the cluster's kinds (run again with [`Applier::new`] after installing CRDs).
    pub async fn new(client: Client) -> Applier {
        let discovery = Discovery::new(client.clone()).run().await.expect("API discovery");
        Applier { client, discovery }
    }

    /// Server-side applies `manifest`, into `namespace` when the kind is namespaced (overriding any namespace in the
    /// manifest). Returns the API server's error unchanged, so tests can inspect rejections.
    pub async fn apply(&self, namespace: &str, manifest: &Value) -> Result<DynamicObject, kube::Error> {
        let mut obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest is a Kubernetes object");
        let types = obj.types.clone().expect("manifest has apiVersion and kind");
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = kube::core::GroupVersionKind::gvk(&group, &version, &types.kind);
        let (resource, caps) =
            self.discovery.resolve_gvk(&gvk).unwrap_or_else(|| panic!("cluster does not serve {gvk:?}"));
        let name = obj.name_any();
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            obj.metadata.namespace = Some(namespace.to_string());
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        api.patch(&name, &PatchParams::apply(TEST_FIELD_MANAGER).force(), &Patch::Apply(&obj)).await
    }
}

/// A value in an expected document meaning "this key must not be present".
pub const ABSENT: &str = "<absent>";

/// True when every field of `expected` is present with the same value in `actual` (extra fields in `actual`, such as
/// server defaults, are allowed). On mismatch, returns the JSON path of the first difference.
pub fn is_subset(expected: &Value, actual: &Value) -> Result<(), String> {
    fn walk(path: &str, e: &Value, a: &Value) -> Result<(), String> {
        match (e, a) {
            (Value::Object(em), Value::Object(am)) => {
                for (k, ev) in em {
                    if ev.as_str() == Some(ABSENT) {
                        if am.contains_key(k) {
                            return Err(format!("{path}.{k} is present, expected it absent"));
                        }
                        continue;
                    }
                    let av = am.get(k).ok_or_else(|| format!("{path}.{k} is missing"))?;
                    walk(&format!("{path}.{k}"), ev, av)?;
                }
                Ok(())
            }
            (Value::Array(ea), Value::Array(aa)) => {
                if ea.len() != aa.len() {
                    return Err(format!("{path} has {} items, expected {}", aa.len(), ea.len()));
                }
                for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                    walk(&format!("{path}[{i}]"), ev, av)?;
                }
                Ok(())
            }
            (Value::Number(en), Value::Number(an)) if en.as_f64() == an.as_f64() => Ok(()),
            _ if e == a => Ok(()),
            _ => Err(format!("{path} is {a}, expected {e}")),
        }
    }
    walk("", expected, actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn is_subset_reports_first_difference() {
        let actual = json!({"a": {"b": false, "c": [1, 2], "d": "x"}});
        assert!(is_subset(&json!({"a": {"b": false, "c": [1, 2]}}), &actual).is_ok());
        assert_eq!(is_subset(&json!({"a": {"b": true}}), &actual).unwrap_err(), ".a.b is false, expected true");
        assert_eq!(is_subset(&json!({"a": {"z": 1}}), &actual).unwrap_err(), ".a.z is missing");
    }

    #[test]
    fn parse_skips_empty_documents() {
        let docs = parse("# comment only\n---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2})]);
    }
}
