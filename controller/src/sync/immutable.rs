//! Immutable fields: recognising the API server's refusal, choosing the handling per object, and the PartialUpdate
//! merge that keeps the DR object's immutable fields. Pure.

use std::time::Duration;

use dr_syncer_api::constants::{KEY_PREFIX, LABEL_IMMUTABLE_HANDLING};
use dr_syncer_api::namespace_mapping::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_FORCE_DELETE_TIMEOUT, ImmutableHandling, ImmutableResourceConfig,
};
use dr_syncer_api::validation::parse_duration;
use serde_json::Value;

use super::object;

/// Built-in kinds (core group, plural) whose DR object holds the replicated data: deleting it deletes the data.
const DATA_KINDS: &[&str] = &["persistentvolumeclaims", "persistentvolumes"];

/// What [`ImmutablePolicy::handling_for`] chose for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The handling to use.
    pub handling: ImmutableHandling,
    /// A handling that deletes the DR object came from the default or a label for a claim or volume, and NoChange
    /// is used instead: only a per-type override naming the type may delete them.
    pub data_kept: bool,
}

fn deletes(handling: ImmutableHandling) -> bool {
    matches!(
        handling,
        ImmutableHandling::Recreate | ImmutableHandling::RecreateWithPodDrain | ImmutableHandling::ForceUpdate
    )
}

/// The handling settings of one mapping, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImmutablePolicy {
    /// Handling when nothing more specific applies.
    pub default: ImmutableHandling,
    /// Per resource type, keyed `plural.group` (core kinds: plural).
    pub overrides: Vec<(String, ImmutableHandling)>,
    /// Longest wait for a workload's pods to go (RecreateWithPodDrain) and for a deletion to finish (Recreate).
    pub drain_timeout: Duration,
    /// Longest wait for a forced deletion (ForceUpdate).
    pub force_delete_timeout: Duration,
}

impl ImmutablePolicy {
    /// Compiles `immutableResourceConfig`; unparsable durations (the CRD schema refuses them) fall back to defaults.
    pub fn from_config(config: Option<&ImmutableResourceConfig>) -> ImmutablePolicy {
        let c = config.cloned().unwrap_or_default();
        let dur = |v: Option<String>, d: &str| {
            parse_duration(v.as_deref().unwrap_or(d)).or_else(|_| parse_duration(d)).unwrap_or(Duration::from_secs(60))
        };
        ImmutablePolicy {
            default: c.default_handling.unwrap_or_default(),
            overrides: c.resource_overrides.unwrap_or_default().into_iter().collect(),
            drain_timeout: dur(c.drain_timeout, DEFAULT_DRAIN_TIMEOUT),
            force_delete_timeout: dur(c.force_delete_timeout, DEFAULT_FORCE_DELETE_TIMEOUT),
        }
    }

    /// The handling of one source object: its `dr-syncer.io/immutable-handling` label, else the override of its
    /// resource type, else the default. An unknown label value is reported by the caller and the type's handling
    /// used. PersistentVolumeClaims and PersistentVolumes are deleted (Recreate, RecreateWithPodDrain, ForceUpdate)
    /// only when an override names their type; otherwise they get NoChange ([`Chosen::data_kept`]).
    pub fn handling_for(&self, plural: &str, group: &str, source: &Value) -> (Chosen, Option<String>) {
        let qualified = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
        let override_ = self
            .overrides
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(&qualified) || (group.is_empty() && key == plural))
            .map(|(_, h)| *h);
        let by_type = override_.unwrap_or(self.default);
        let (handling, warning) = match object::label(source, LABEL_IMMUTABLE_HANDLING) {
            None => (by_type, None),
            Some(text) => match serde_json::from_value::<ImmutableHandling>(Value::String(text.to_string())) {
                Ok(h) => (h, None),
                Err(_) => (
                    by_type,
                    Some(format!(
                        "label {LABEL_IMMUTABLE_HANDLING}={text:?} is not one of NoChange, Recreate, \
                         RecreateWithPodDrain, PartialUpdate, ForceUpdate; the resource type's handling is used"
                    )),
                ),
            },
        };
        let data = group.is_empty() && DATA_KINDS.contains(&plural);
        if data && deletes(handling) && override_ != Some(handling) {
            return (Chosen { handling: ImmutableHandling::NoChange, data_kept: true }, warning);
        }
        (Chosen { handling, data_kept: false }, warning)
    }
}

/// The finalizers of `existing` without dr-syncer's own (`dr-syncer.io/…`), or `None` when it carries none of
/// dr-syncer's (nothing to remove). ForceUpdate removes only these: another controller's finalizer (for example
/// `kubernetes.io/pvc-protection`) guards something dr-syncer does not own.
pub fn own_finalizers_removed(existing: &Value) -> Option<Vec<String>> {
    let finalizers: Vec<String> = existing
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let own = |f: &String| f.starts_with(KEY_PREFIX);
    finalizers.iter().any(own).then(|| finalizers.iter().filter(|f| !own(f)).cloned().collect())
}

/// How a workload is scaled down before it is recreated, or `None` when the kind runs no pods of its own.
pub fn drain_patch(group: &str, kind: &str) -> Option<Value> {
    match (group, kind) {
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") => Some(serde_json::json!({"spec": {"replicas": 0}})),
        ("batch", "Job") => Some(serde_json::json!({"spec": {"parallelism": 0}})),
        _ => None,
    }
}

/// Spec fields that the API server refuses to change in place, per kind. `Except` lists the only fields of `spec`
/// that may change.
enum Frozen {
    /// These paths of the object keep the DR cluster's values.
    Paths(&'static [&'static str]),
    /// Every field of `spec` but these keeps the DR cluster's value.
    SpecExcept(&'static [&'static str]),
}

fn frozen(group: &str, kind: &str, existing: &Value) -> Option<Frozen> {
    Some(match (group, kind) {
        ("", "Service") => Frozen::Paths(&["/spec/clusterIP", "/spec/clusterIPs", "/spec/ipFamilies"]),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => Frozen::Paths(&["/spec/selector"]),
        ("apps", "StatefulSet") => Frozen::SpecExcept(&[
            "replicas",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
        ]),
        ("batch", "Job") => {
            Frozen::Paths(&["/spec/selector", "/spec/template", "/spec/completions", "/spec/completionMode"])
        }
        ("", "PersistentVolumeClaim") => Frozen::SpecExcept(&["resources"]),
        ("", "ConfigMap" | "Secret") if existing.get("immutable") == Some(&Value::Bool(true)) => {
            Frozen::Paths(&["/data", "/binaryData", "/stringData", "/immutable", "/type"])
        }
        _ => return None,
    })
}

/// PartialUpdate: `desired` with the immutable fields taken from the DR object, or `None` when dr-syncer does not
/// know which fields of the kind are immutable.
pub fn keep_immutable(group: &str, kind: &str, desired: &Value, existing: &Value) -> Option<Value> {
    let mut out = desired.clone();
    match frozen(group, kind, existing)? {
        Frozen::Paths(paths) => {
            for path in paths {
                copy_path(&mut out, existing, path);
            }
        }
        Frozen::SpecExcept(allowed) => {
            let mut spec = existing.get("spec").cloned().unwrap_or(Value::Object(Default::default()));
            if let (Some(spec_map), Some(wanted)) =
                (spec.as_object_mut(), desired.get("spec").and_then(Value::as_object))
            {
                for key in allowed {
                    match wanted.get(*key) {
                        Some(v) => spec_map.insert((*key).to_string(), v.clone()),
                        None => spec_map.remove(*key),
                    };
                }
            }
            if let Some(map) = out.as_object_mut() {
                map.insert("spec".into(), spec);
            }
        }
    }
    Some(out)
}

/// Sets `path` (a JSON pointer) of `out` to its value in `from`, or removes it when `from` lacks it.
fn copy_path(out: &mut Value, from: &Value, path: &str) {
    let Some((parent, key)) = path.rsplit_once('/') else { return };
    let value = from.pointer(path).cloned();
    let target = if parent.is_empty() { Some(&mut *out) } else { out.pointer_mut(parent) };
    match (target.and_then(Value::as_object_mut), value) {
        (Some(map), Some(v)) => {
            map.insert(key.to_string(), v);
        }
        (Some(map), None) => {
            map.remove(key);
        }
        (None, Some(v)) => {
            // The parent is missing in the desired object: build it.
            let mut current = &mut *out;
            for part in parent.split('/').filter(|p| !p.is_empty()) {
                let Some(map) = current.as_object_mut() else { return };
                current = map.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
            }
            if let Some(map) = current.as_object_mut() {
                map.insert(key.to_string(), v);
            }
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn handling_for_prefers_label_then_override_then_default() {
        let config = ImmutableResourceConfig {
            default_handling: Some(ImmutableHandling::Recreate),
            resource_overrides: Some(BTreeMap::from([
                ("statefulsets.apps".to_string(), ImmutableHandling::RecreateWithPodDrain),
                ("services".to_string(), ImmutableHandling::PartialUpdate),
            ])),
            ..ImmutableResourceConfig::default()
        };
        let policy = ImmutablePolicy::from_config(Some(&config));
        let plain = json!({"metadata": {"name": "x"}});
        let labelled = json!({"metadata": {"name": "x", "labels": {LABEL_IMMUTABLE_HANDLING: "ForceUpdate"}}});
        let bad = json!({"metadata": {"name": "x", "labels": {LABEL_IMMUTABLE_HANDLING: "Sometimes"}}});
        let cases = [
            ("statefulsets", "apps", &plain, ImmutableHandling::RecreateWithPodDrain, false),
            ("services", "", &plain, ImmutableHandling::PartialUpdate, false),
            ("deployments", "apps", &plain, ImmutableHandling::Recreate, false),
            ("services", "", &labelled, ImmutableHandling::ForceUpdate, false),
            ("services", "", &bad, ImmutableHandling::PartialUpdate, true),
        ];
        for (plural, group, obj, want, warned) in cases {
            let (got, warning) = policy.handling_for(plural, group, obj);
            assert_eq!((got.handling, warning.is_some()), (want, warned), "{plural}.{group}");
        }
        let none = ImmutablePolicy::from_config(None);
        assert_eq!(none.handling_for("services", "", &plain).0.handling, ImmutableHandling::NoChange);
        assert_eq!(none.drain_timeout, Duration::from_secs(300));
        assert_eq!(none.force_delete_timeout, Duration::from_secs(120));
    }

    /// Claims and volumes hold the replicated data: only an override naming their type may delete them.
    #[test]
    fn handling_for_keeps_claims_and_volumes_unless_their_type_is_named() {
        use ImmutableHandling::{ForceUpdate, NoChange, PartialUpdate, Recreate, RecreateWithPodDrain};
        let policy = |default: ImmutableHandling, overrides: &[(&str, ImmutableHandling)]| {
            ImmutablePolicy::from_config(Some(&ImmutableResourceConfig {
                default_handling: Some(default),
                resource_overrides: Some(overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
                ..ImmutableResourceConfig::default()
            }))
        };
        let plain = json!({"metadata": {"name": "d"}});
        let labelled = |h: &str| json!({"metadata": {"name": "d", "labels": {LABEL_IMMUTABLE_HANDLING: h}}});
        let cases = [
            // (default, overrides, plural, source, handling, data kept)
            (ForceUpdate, vec![], "persistentvolumeclaims", plain.clone(), NoChange, true),
            (Recreate, vec![], "persistentvolumes", plain.clone(), NoChange, true),
            (RecreateWithPodDrain, vec![], "persistentvolumeclaims", plain.clone(), NoChange, true),
            (NoChange, vec![], "persistentvolumeclaims", labelled("Recreate"), NoChange, true),
            (PartialUpdate, vec![], "persistentvolumeclaims", plain.clone(), PartialUpdate, false),
            (ForceUpdate, vec![], "persistentvolumeclaims", labelled("PartialUpdate"), PartialUpdate, false),
            (
                NoChange,
                vec![("persistentvolumeclaims", Recreate)],
                "persistentvolumeclaims",
                plain.clone(),
                Recreate,
                false,
            ),
            (
                NoChange,
                vec![("persistentvolumes", ForceUpdate)],
                "persistentvolumes",
                plain.clone(),
                ForceUpdate,
                false,
            ),
            (
                NoChange,
                vec![("persistentvolumeclaims", Recreate)],
                "persistentvolumeclaims",
                labelled("ForceUpdate"),
                NoChange,
                true,
            ),
            (ForceUpdate, vec![], "services", plain.clone(), ForceUpdate, false),
        ];
        for (default, overrides, plural, source, handling, kept) in cases {
            let (chosen, _) = policy(default, &overrides).handling_for(plural, "", &source);
            assert_eq!(chosen, Chosen { handling, data_kept: kept }, "{default:?} {overrides:?} {plural} {source}");
        }
    }

    #[test]
    fn keep_immutable_takes_frozen_fields_from_dr_object() {
        let existing = json!({"spec": {"selector": {"matchLabels": {"app": "old"}}, "replicas": 0}});
        let desired = json!({"spec": {"selector": {"matchLabels": {"app": "new"}}, "replicas": 0, "paused": true}});
        let out = keep_immutable("apps", "Deployment", &desired, &existing).unwrap();
        assert_eq!(out["spec"]["selector"]["matchLabels"]["app"], "old");
        assert_eq!(out["spec"]["paused"], true);

        let existing = json!({"spec": {"serviceName": "db", "replicas": 0, "volumeClaimTemplates": [{"a": 1}],
            "podManagementPolicy": "OrderedReady"}});
        let desired = json!({"spec": {"serviceName": "db", "replicas": 0, "volumeClaimTemplates": [{"a": 2}],
            "template": {"x": 1}}});
        let out = keep_immutable("apps", "StatefulSet", &desired, &existing).unwrap();
        assert_eq!(out["spec"]["volumeClaimTemplates"], json!([{"a": 1}]));
        assert_eq!(out["spec"]["template"], json!({"x": 1}));
        assert_eq!(out["spec"]["podManagementPolicy"], "OrderedReady");

        let existing = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": []}});
        let desired = json!({"spec": {"ports": [{"port": 80}]}});
        let out = keep_immutable("", "Service", &desired, &existing).unwrap();
        assert_eq!(out["spec"]["clusterIP"], "None");
        assert_eq!(out["spec"]["ports"], json!([{"port": 80}]));

        assert!(keep_immutable("", "Pod", &desired, &existing).is_none());
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        let out = keep_immutable("", "ConfigMap", &json!({"data": {"a": "2"}, "immutable": true}), &cm).unwrap();
        assert_eq!(out["data"]["a"], "1");
    }

    #[test]
    fn own_finalizers_removed_keeps_other_controllers_finalizers() {
        let with = |f: Value| json!({"metadata": {"name": "d", "finalizers": f}});
        assert_eq!(own_finalizers_removed(&with(json!(["kubernetes.io/pvc-protection"]))), None);
        assert_eq!(own_finalizers_removed(&json!({"metadata": {}})), None);
        let mixed = with(json!(["kubernetes.io/pvc-protection", "dr-syncer.io/x", "example.com/backup"]));
        let kept = vec!["kubernetes.io/pvc-protection".to_string(), "example.com/backup".to_string()];
        assert_eq!(own_finalizers_removed(&mixed), Some(kept));
    }

    #[test]
    fn drain_patch_scales_workloads_only() {
        assert_eq!(drain_patch("apps", "StatefulSet"), Some(json!({"spec": {"replicas": 0}})));
        assert_eq!(drain_patch("batch", "Job"), Some(json!({"spec": {"parallelism": 0}})));
        assert_eq!(drain_patch("", "Service"), None);
    }
}
