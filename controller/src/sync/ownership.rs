//! Who owns a DR object: the ownership marks dr-syncer writes and reads, and the content hash that lets it skip
//! writes of unchanged objects.

use dr_syncer_api::constants as c;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::object;

/// Bumped when the transforms change in a way that must rewrite every DR object once.
pub const TRANSFORM_VERSION: &str = "1";

/// The NamespaceMapping a sync runs for, and where it copies from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Marks {
    /// Namespace of the NamespaceMapping.
    pub mapping_namespace: String,
    /// Name of the NamespaceMapping.
    pub mapping_name: String,
    /// Name of the source RemoteCluster.
    pub source_cluster: String,
    /// Source namespace.
    pub source_namespace: String,
}

/// Who a DR object belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Written by this mapping.
    Ours,
    /// Written by another NamespaceMapping (`namespace/name`).
    OtherMapping(String),
    /// Not written by dr-syncer.
    Unmanaged,
}

/// A label-safe form of a name: the name itself when it is a valid label value, else a stable hash of it.
pub fn label_value(name: &str) -> String {
    let valid = name.len() <= 63
        && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        && name.chars().next().is_none_or(|ch| ch.is_ascii_alphanumeric())
        && name.chars().last().is_none_or(|ch| ch.is_ascii_alphanumeric());
    if valid { name.to_string() } else { format!("h-{}", &sha256_hex(name.as_bytes())[..40]) }
}

impl Marks {
    /// `namespace/name` of the mapping.
    pub fn mapping_ref(&self) -> String {
        format!("{}/{}", self.mapping_namespace, self.mapping_name)
    }

    /// The label selector matching every DR object of this mapping.
    pub fn selector(&self) -> String {
        format!(
            "{}={},{}={},{}={}",
            c::LABEL_DR_MANAGED_BY,
            c::MANAGED_BY_VALUE,
            c::LABEL_MAPPING,
            label_value(&self.mapping_name),
            c::LABEL_MAPPING_NAMESPACE,
            self.mapping_namespace
        )
    }

    /// Writes the ownership labels and annotations onto a DR object.
    pub fn apply(&self, obj: &mut Value, source_uid: &str) {
        object::set_label(obj, c::LABEL_DR_MANAGED_BY, c::MANAGED_BY_VALUE);
        object::set_label(obj, c::LABEL_MAPPING, &label_value(&self.mapping_name));
        object::set_label(obj, c::LABEL_MAPPING_NAMESPACE, &self.mapping_namespace);
        object::set_label(obj, c::LABEL_SOURCE_CLUSTER, &label_value(&self.source_cluster));
        object::set_annotation(obj, c::ANNOTATION_MAPPING, &self.mapping_ref());
        object::set_annotation(obj, c::ANNOTATION_SOURCE_NAMESPACE, &self.source_namespace);
        if !source_uid.is_empty() {
            object::set_annotation(obj, c::ANNOTATION_SOURCE_UID, source_uid);
        }
    }

    /// Who owns an existing DR object.
    pub fn owner_of(&self, obj: &Value) -> Owner {
        if object::label(obj, c::LABEL_DR_MANAGED_BY) != Some(c::MANAGED_BY_VALUE) {
            return Owner::Unmanaged;
        }
        let name = object::label(obj, c::LABEL_MAPPING).unwrap_or_default();
        let namespace = object::label(obj, c::LABEL_MAPPING_NAMESPACE).unwrap_or_default();
        if name == label_value(&self.mapping_name) && namespace == self.mapping_namespace {
            Owner::Ours
        } else {
            let full = object::annotation(obj, c::ANNOTATION_MAPPING).map(str::to_string);
            Owner::OtherMapping(full.unwrap_or_else(|| format!("{namespace}/{name}")))
        }
    }
}

/// Stamps the content hash of a desired object into its annotations and returns it. The hash covers everything
/// dr-syncer writes except the hash itself, in a canonical form (object keys sorted).
pub fn stamp_hash(obj: &mut Value) -> String {
    object::remove_annotation(obj, c::ANNOTATION_CONTENT_HASH);
    let mut canonical = String::from(TRANSFORM_VERSION);
    canonical.push(':');
    write_canonical(obj, &mut canonical);
    let hash = sha256_hex(canonical.as_bytes())[..32].to_string();
    object::set_annotation(obj, c::ANNOTATION_CONTENT_HASH, &hash);
    hash
}

/// The content hash recorded on an existing DR object.
pub fn recorded_hash(obj: &Value) -> Option<&str> {
    object::annotation(obj, c::ANNOTATION_CONTENT_HASH)
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The SHA-256 digest of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn marks() -> Marks {
        Marks {
            mapping_namespace: "dr-system".into(),
            mapping_name: "shop".into(),
            source_cluster: "prod".into(),
            source_namespace: "shop".into(),
        }
    }

    #[test]
    fn label_value_hashes_names_that_are_not_valid_label_values() {
        assert_eq!(label_value("shop"), "shop");
        let long = "a".repeat(64);
        let hashed = label_value(&long);
        assert!(hashed.starts_with("h-") && hashed.len() == 42, "{hashed}");
        assert_eq!(hashed, label_value(&long));
    }

    #[test]
    fn owner_of_distinguishes_ours_others_and_unmanaged() {
        let m = marks();
        let mut obj = json!({"metadata": {"name": "x"}});
        assert_eq!(m.owner_of(&obj), Owner::Unmanaged);
        m.apply(&mut obj, "uid-1");
        assert_eq!(m.owner_of(&obj), Owner::Ours);
        let other = Marks { mapping_name: "other".into(), ..marks() };
        assert_eq!(other.owner_of(&obj), Owner::OtherMapping("dr-system/shop".into()));
    }

    #[test]
    fn stamp_hash_ignores_key_order_and_previous_hash() {
        let mut a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}, "metadata": {"annotations": {"k": "v"}}});
        let mut b = json!({"metadata": {"annotations": {"k": "v"}}, "a": {"x": "s", "y": [1, 2]}, "b": 1});
        let ha = stamp_hash(&mut a);
        assert_eq!(ha, stamp_hash(&mut b));
        assert_eq!(ha, stamp_hash(&mut a), "restamping must give the same hash");
        assert_eq!(recorded_hash(&a), Some(ha.as_str()));
        let mut c = json!({"b": 2, "a": {"y": [1, 2], "x": "s"}, "metadata": {"annotations": {"k": "v"}}});
        assert_ne!(ha, stamp_hash(&mut c));
    }
}
