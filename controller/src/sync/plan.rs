//! Planning: what to do with one desired DR object given what the DR cluster holds. Pure.

use serde_json::Value;

use super::object;
use super::ownership::{Marks, Owner, recorded_hash};

/// Objects every namespace of a cluster gets automatically; dr-syncer may update them without
/// `adoptExistingObjects`.
const CLUSTER_PROVIDED: &[(&str, &str)] = &[("ServiceAccount", "default")];

/// What to do with one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The object does not exist in DR: create it.
    Create,
    /// The object exists, is ours (or may be taken over) and differs: update it.
    Update,
    /// The object exists, is ours and already has this content: do not write.
    Unchanged,
    /// The object exists and is not ours: leave it and report why.
    Conflict(String),
}

/// Decides what to do with a desired object (already carrying its content hash).
pub fn decide(desired: &Value, desired_hash: &str, existing: Option<&Value>, marks: &Marks, adopt: bool) -> Action {
    let Some(existing) = existing else { return Action::Create };
    match marks.owner_of(existing) {
        Owner::Ours if recorded_hash(existing) == Some(desired_hash) => Action::Unchanged,
        Owner::Ours => Action::Update,
        Owner::OtherMapping(other) => {
            Action::Conflict(format!("the DR object is managed by NamespaceMapping {other}; it is left untouched"))
        }
        Owner::Unmanaged if adopt || is_cluster_provided(desired) => Action::Update,
        Owner::Unmanaged => Action::Conflict(
            "the DR object exists and was not created by dr-syncer; it is left untouched (set adoptExistingObjects: \
             true to take it over)"
                .to_string(),
        ),
    }
}

fn is_cluster_provided(obj: &Value) -> bool {
    let (kind, name) = (object::kind(obj), object::name(obj));
    CLUSTER_PROVIDED.iter().any(|(k, n)| *k == kind && *n == name)
}

/// Whether a DR object this mapping manages should be pruned: it is ours and no selected source object has its name.
pub fn should_prune(existing: &Value, marks: &Marks, wanted: &std::collections::BTreeSet<String>) -> bool {
    marks.owner_of(existing) == Owner::Ours && !wanted.contains(object::name(existing))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::sync::ownership::stamp_hash;

    fn marks(name: &str) -> Marks {
        Marks {
            mapping_namespace: "dr".into(),
            mapping_name: name.into(),
            source_cluster: "prod".into(),
            source_namespace: "shop".into(),
        }
    }

    fn desired() -> (Value, String) {
        let mut obj = json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
        marks("m").apply(&mut obj, "uid");
        let hash = stamp_hash(&mut obj);
        (obj, hash)
    }

    #[test]
    fn decide_covers_every_ownership_case() {
        let (want, hash) = desired();
        let m = marks("m");
        let mut changed = want.clone();
        changed["metadata"]["annotations"]["dr-syncer.io/content-hash"] = json!("old");
        let mut other = json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}});
        marks("n").apply(&mut other, "uid");
        let unmanaged = json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}});

        assert_eq!(decide(&want, &hash, None, &m, false), Action::Create);
        assert_eq!(decide(&want, &hash, Some(&want), &m, false), Action::Unchanged);
        assert_eq!(decide(&want, &hash, Some(&changed), &m, false), Action::Update);
        assert!(matches!(decide(&want, &hash, Some(&other), &m, true), Action::Conflict(msg) if msg.contains("dr/n")));
        assert!(
            matches!(decide(&want, &hash, Some(&unmanaged), &m, false), Action::Conflict(msg) if msg.contains("adoptExistingObjects"))
        );
        assert_eq!(decide(&want, &hash, Some(&unmanaged), &m, true), Action::Update);
    }

    #[test]
    fn decide_updates_default_service_account_without_adoption() {
        let sa = json!({"kind": "ServiceAccount", "metadata": {"name": "default"}});
        let existing = json!({"kind": "ServiceAccount", "metadata": {"name": "default"}});
        assert_eq!(decide(&sa, "h", Some(&existing), &marks("m"), false), Action::Update);
    }

    #[test]
    fn should_prune_only_our_objects_without_source() {
        let (obj, _) = desired();
        let m = marks("m");
        let wanted: BTreeSet<String> = ["cfg".to_string()].into();
        assert!(!should_prune(&obj, &m, &wanted));
        assert!(should_prune(&obj, &m, &BTreeSet::new()));
        assert!(!should_prune(&obj, &marks("n"), &BTreeSet::new()));
        assert!(!should_prune(&json!({"metadata": {"name": "x"}}), &m, &BTreeSet::new()));
    }
}
