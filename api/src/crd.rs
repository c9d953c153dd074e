//! The CustomResourceDefinitions of the dr-syncer API, as installed in clusters and written by `crdgen`.
//!
//! The schemas come from the Rust types. Rules that relate two fields are added here as OpenAPI `oneOf`/`anyOf`/`not`
//! clauses, which every Kubernetes version enforces. CEL `x-kubernetes-validations` are deliberately not used: API
//! servers before 1.25 publish an OpenAPI document without that field, so `kubectl apply` and Helm refuse such CRDs
//! there. The controller re-checks these rules and reports a violation as an `InvalidSpec` condition.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::{ClusterMapping, NamespaceMapping, RemoteCluster};

/// Every dr-syncer CRD, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![remote_cluster(), cluster_mapping(), namespace_mapping()]
}

/// Names (`<plural>.<group>`) of every dr-syncer CRD.
pub fn names() -> Vec<String> {
    vec![
        RemoteCluster::crd_name().to_string(),
        ClusterMapping::crd_name().to_string(),
        NamespaceMapping::crd_name().to_string(),
    ]
}

/// The file `crdgen` writes a CRD to: `<group>_<plural>.yaml`, as the Go operator named them.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// The RemoteCluster CRD.
pub fn remote_cluster() -> CustomResourceDefinition {
    finish(RemoteCluster::crd())
}

/// The ClusterMapping CRD.
pub fn cluster_mapping() -> CustomResourceDefinition {
    finish(ClusterMapping::crd())
}

/// The NamespaceMapping CRD, with the rules between its namespace and cluster fields.
pub fn namespace_mapping() -> CustomResourceDefinition {
    let mut crd = finish(NamespaceMapping::crd());
    if let Some(spec) = spec_schema(&mut crd) {
        // Each rule is an `anyOf` whose failing branch names the offending field, so the API server's message
        // points at it (for example `"spec.sourceNamespace" must not validate the schema (not)`).
        spec.all_of = Some(vec![
            // A source namespace is chosen one way or the other...
            any_of(vec![required(&["sourceNamespace"]), required(&["namespaceSelector"])]),
            // ...but not both, and a selector has no single destination namespace.
            any_of(vec![
                not(required(&["namespaceSelector"])),
                forbidden(&["sourceNamespace", "destinationNamespace"]),
            ]),
            // A naming rule only applies to selected namespaces.
            any_of(vec![required(&["namespaceSelector"]), forbidden(&["destinationNamespaceRule"])]),
            // Clusters come from a ClusterMapping, or both are named directly.
            any_of(vec![required(&["clusterMappingRef"]), required(&["sourceCluster", "destinationCluster"])]),
        ]);
    }
    crd
}

/// Drops `nullable: true`, which kube-derive adds to every `Option` field: dr-syncer never writes nulls, and Kubernetes
/// before 1.22 publishes nullable fields without a type, so `kubectl explain` would show them as `<>`. Under
/// `status`, every object and list is nullable instead: when a status write (server-side apply) drops a field the
/// writer set before, the API server may leave `null` where the emptied object was (kubernetes/kubernetes#117447),
/// and a non-nullable schema would then refuse that write and every one after it.
fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            strip_nullable(root);
            if let Some(status) = root.properties.as_mut().and_then(|p| p.get_mut("status")) {
                each_child(status, &mut nullable_containers);
            }
        }
    }
    crd
}

/// Calls `f` on each schema right below `s`: its properties (fields: `true`), its list item and map value schemas
/// (not fields: `false`).
fn each_child(s: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps, bool)) {
    for child in s.properties.iter_mut().flat_map(|p| p.values_mut()) {
        f(child, true);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = s.items.as_mut() {
        f(item, false);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = s.additional_properties.as_mut() {
        f(extra, false);
    }
}

/// Marks the field `s` (when `field`) and every field below it nullable where it is an object or a list. List items
/// and map values are not fields: the API server refuses nullable items in map-type lists.
fn nullable_containers(s: &mut JSONSchemaProps, field: bool) {
    if field && matches!(s.type_.as_deref(), Some("object" | "array")) {
        s.nullable = Some(true);
    }
    each_child(s, &mut nullable_containers);
}

fn strip_nullable(s: &mut JSONSchemaProps) {
    s.nullable = None;
    each_child(s, &mut |child, _| strip_nullable(child));
}

fn spec_schema(crd: &mut CustomResourceDefinition) -> Option<&mut JSONSchemaProps> {
    crd.spec.versions.first_mut()?.schema.as_mut()?.open_api_v3_schema.as_mut()?.properties.as_mut()?.get_mut("spec")
}

fn schema(build: impl FnOnce(&mut JSONSchemaProps)) -> JSONSchemaProps {
    let mut s = JSONSchemaProps::default();
    build(&mut s);
    s
}

fn any_of(branches: Vec<JSONSchemaProps>) -> JSONSchemaProps {
    schema(|s| s.any_of = Some(branches))
}

fn not(inner: JSONSchemaProps) -> JSONSchemaProps {
    schema(|s| s.not = Some(Box::new(inner)))
}

/// Matches only objects where none of `fields` is set: each field must not match the empty schema, which every
/// value matches.
fn forbidden(fields: &[&str]) -> JSONSchemaProps {
    schema(|s| {
        s.properties = Some(fields.iter().map(|f| (f.to_string(), not(JSONSchemaProps::default()))).collect());
    })
}

fn required(fields: &[&str]) -> JSONSchemaProps {
    schema(|s| s.required = Some(fields.iter().map(|f| f.to_string()).collect()))
}

/// Renders CRDs as one YAML document each, with a header naming the generator.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    let body = serde_saphyr::to_string(crd)?;
    Ok(format!(
        "# Generated by `make crds` (crdgen) from the Rust types in api/src. Do not edit; `make verify` checks it.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status write that empties an object may leave `null` there (server-side apply); status objects and lists
    /// accept it, spec fields stay non-nullable.
    #[test]
    fn status_objects_and_lists_are_nullable_and_spec_fields_are_not() {
        for crd in all() {
            let root = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
            let props = root.properties.unwrap();
            let status = props["status"].properties.clone().unwrap();
            for (name, field) in &status {
                let container = matches!(field.type_.as_deref(), Some("object" | "array"));
                assert_eq!(field.nullable == Some(true), container, "status.{name} of {:?}", crd.metadata.name);
            }
            let spec = serde_json::to_string(&props["spec"]).unwrap();
            assert!(!spec.contains("nullable"), "spec of {:?}", crd.metadata.name);
        }
        // No list item or map value anywhere is nullable (the API server refuses that in map-type lists).
        fn nullable_inside(s: &mut JSONSchemaProps) -> bool {
            let mut found = false;
            each_child(s, &mut |child, field| found |= (!field && child.nullable.is_some()) || nullable_inside(child));
            found
        }
        for crd in all() {
            let mut root = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
            assert!(!nullable_inside(&mut root), "a nullable list item in {:?}", crd.metadata.name);
        }
        let nm = all().into_iter().find(|c| c.spec.names.kind == "NamespaceMapping").unwrap();
        let status =
            nm.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap().properties.unwrap()["status"]
                .clone();
        assert_eq!(status.properties.unwrap()["retryStatus"].nullable, Some(true));
    }

    #[test]
    fn crds_have_expected_names_when_generated() {
        let names: Vec<_> = all().iter().map(|c| c.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, names_vec());
        assert_eq!(names, super::names());
    }

    fn names_vec() -> Vec<String> {
        ["remoteclusters.dr-syncer.io", "clustermappings.dr-syncer.io", "namespacemappings.dr-syncer.io"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn short_names_avoid_builtin_names() {
        // Short names of built-in kinds on any recent Kubernetes.
        let builtin = [
            "cm", "rc", "ns", "no", "po", "pv", "pvc", "sa", "svc", "ep", "ev", "limits", "quota", "cs", "deploy",
            "ds", "rs", "sts", "hpa", "cj", "ing", "netpol", "pdb", "psp", "sc", "crd", "crds", "csr", "pc",
            "ingclass",
        ];
        for crd in all() {
            let names = &crd.spec.names;
            assert_eq!(names.categories.as_deref(), Some(&["dr-syncer".to_string()][..]));
            for short in names.short_names.iter().flatten() {
                assert!(!builtin.contains(&short.as_str()), "{short} collides with a built-in short name");
            }
        }
    }

    #[test]
    fn every_crd_has_status_subresource_and_age_column() {
        for crd in all() {
            let version = &crd.spec.versions[0];
            assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
            let columns = version.additional_printer_columns.as_ref().unwrap();
            assert!(columns.iter().any(|c| c.name == "Age" && c.type_ == "date"));
            for c in columns.iter().filter(|c| c.name.contains("Sync") || c.name.contains("Verified")) {
                // kubectl prints a future time in a date column as `<invalid>`: times ahead are strings.
                let ahead = c.json_path.contains("next");
                if ahead {
                    assert_eq!(c.type_, "string", "{} is a future time: a date column shows <invalid>", c.name);
                } else if c.json_path.contains("Time") || c.json_path.contains("lastVerified") {
                    assert_eq!(c.type_, "date", "{} should be date-typed", c.name);
                }
            }
        }
    }
}
