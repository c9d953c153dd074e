//! Types shared by more than one dr-syncer kind.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

/// Schema `extend` for a `conditions` list: a map keyed by `type`, so server-side apply merges conditions one by one.
pub(crate) fn conditions_list(schema: &mut schemars::Schema) {
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
}

/// Schema transform for enum types: drops the type's own description so the field's description (what
/// `kubectl explain` shows) is not replaced by it when the field is optional.
pub(crate) fn field_docs_only(schema: &mut schemars::Schema) {
    schema.remove("description");
}

/// Data-integrity check after a PVC data copy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = crate::common::field_docs_only)]
pub enum VerificationMode {
    /// Trust rsync's size and modification-time comparison.
    #[default]
    None,
    /// Checksum a random sample of files on both sides after the copy.
    Sample,
    /// Compare every file by checksum (`rsync --checksum`).
    Full,
}

/// When the kubelet pulls an image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::common::field_docs_only)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

/// Extract the condition of `type_` from a list of conditions.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_mode_serializes_lowercase() {
        let json =
            serde_json::to_string(&[VerificationMode::None, VerificationMode::Sample, VerificationMode::Full]).unwrap();
        assert_eq!(json, r#"["none","sample","full"]"#);
    }
}
