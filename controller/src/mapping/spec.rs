//! Checks of a NamespaceMapping spec that the CRD schema cannot express, and what they resolve to. Pure.

use std::time::Duration;

use dr_syncer_api::namespace_mapping::{
    DEFAULT_BACKGROUND_SYNC_INTERVAL, DEFAULT_SCHEDULE, DestinationNamespaceRule, NamespaceMappingSpec, ReplicationMode,
};
use dr_syncer_api::validation::{parse_cron, parse_duration};
use kube::core::Selector;

use super::decide::{Cadence, fixed_jitter};
use crate::sync::engine::label_selector;
use crate::sync::select::compile_exclusions;

/// Why a spec cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Short CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, for users.
    pub message: String,
}

fn invalid(reason: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { reason, message: message.into() }
}

/// Which clusters a spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterRefs {
    /// Through a ClusterMapping (`namespace`, `name`).
    ClusterMapping(String, String),
    /// Directly: source and destination RemoteCluster names.
    Direct(String, String),
}

/// A spec that passed the checks.
#[derive(Clone, Debug)]
pub struct Validated {
    /// Which source namespaces are replicated, and where.
    pub namespaces: Namespaces,
    /// The clusters.
    pub clusters: ClusterRefs,
}

/// The source namespaces of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub enum Namespaces {
    /// `sourceNamespace` into `destinationNamespace`.
    One {
        /// Source namespace.
        source: String,
        /// DR namespace.
        destination: String,
    },
    /// Every source namespace matching `namespaceSelector`, named per `destinationNamespaceRule`.
    Selected {
        /// The selector as a label-selector string.
        selector: String,
        /// The naming rule.
        rule: DestinationNamespaceRule,
    },
}

impl Namespaces {
    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Namespaces::One { source, destination } => format!("{source} to {destination}"),
            Namespaces::Selected { selector, .. } => format!("the namespaces matching {selector:?}"),
        }
    }
}

fn namespaces(spec: &NamespaceMappingSpec) -> Result<Namespaces, Invalid> {
    match (&spec.source_namespace, &spec.namespace_selector) {
        (Some(_), Some(_)) => Err(invalid("InvalidSpec", "set sourceNamespace or namespaceSelector, not both")),
        (None, None) => Err(invalid("SourceNamespaceMissing", "set sourceNamespace (or namespaceSelector)")),
        (Some(source), None) => {
            if spec.destination_namespace_rule.is_some() {
                return Err(invalid("InvalidSpec", "destinationNamespaceRule is only allowed with namespaceSelector"));
            }
            let destination = spec.destination_namespace.clone().unwrap_or_else(|| source.clone());
            Ok(Namespaces::One { source: source.clone(), destination })
        }
        (None, Some(selector)) => {
            if spec.destination_namespace.is_some() {
                return Err(invalid(
                    "InvalidSpec",
                    "destinationNamespace is not allowed with namespaceSelector; use destinationNamespaceRule",
                ));
            }
            let parsed = Selector::try_from(selector.clone())
                .map_err(|e| invalid("InvalidNamespaceSelector", format!("namespaceSelector: {e}")))?;
            let text = parsed.to_string();
            if text.is_empty() {
                return Err(invalid(
                    "InvalidNamespaceSelector",
                    "namespaceSelector selects every namespace; give at least one label or expression",
                ));
            }
            Ok(Namespaces::Selected {
                selector: text,
                rule: spec.destination_namespace_rule.clone().unwrap_or_default(),
            })
        }
    }
}

/// The mapping with its source cluster's defaults filled in (pure): `resourceTypes` from the RemoteCluster's
/// `defaultResourceTypes` when the mapping names none (and without either, the built-in default kinds apply).
pub fn with_cluster_defaults(
    mapping: &std::sync::Arc<dr_syncer_api::NamespaceMapping>,
    source: &dr_syncer_api::RemoteCluster,
) -> std::sync::Arc<dr_syncer_api::NamespaceMapping> {
    let named = mapping.spec.resource_types.as_ref().is_some_and(|t| !t.is_empty());
    match (&source.spec.default_resource_types, named) {
        (Some(defaults), false) if !defaults.is_empty() => {
            let mut filled = (**mapping).clone();
            filled.spec.resource_types = Some(defaults.clone());
            std::sync::Arc::new(filled)
        }
        _ => mapping.clone(),
    }
}

/// Checks a spec; `mapping_namespace` resolves a ClusterMapping reference without a namespace.
pub fn validate(spec: &NamespaceMappingSpec, mapping_namespace: &str) -> Result<Validated, Invalid> {
    let namespaces = namespaces(spec)?;
    let clusters = match (&spec.cluster_mapping_ref, &spec.source_cluster, &spec.destination_cluster) {
        (Some(r), _, _) => ClusterRefs::ClusterMapping(
            r.namespace.clone().unwrap_or_else(|| mapping_namespace.to_string()),
            r.name.clone(),
        ),
        (None, Some(s), Some(d)) => ClusterRefs::Direct(s.clone(), d.clone()),
        _ => {
            return Err(invalid(
                "ClustersNotSpecified",
                "set clusterMappingRef, or both sourceCluster and destinationCluster",
            ));
        }
    };
    if let Some(s) = &spec.schedule {
        parse_cron(s).map_err(|e| invalid("InvalidSchedule", format!("schedule: {e}")))?;
    }
    if let Some(j) = &spec.schedule_jitter {
        parse_duration(j).map_err(|e| invalid("InvalidScheduleJitter", format!("scheduleJitter: {e}")))?;
    }
    if let Some(i) = spec.continuous.as_ref().and_then(|c| c.background_sync_interval.as_deref()) {
        let d = parse_duration(i)
            .map_err(|e| invalid("InvalidInterval", format!("continuous.backgroundSyncInterval: {e}")))?;
        if d < Duration::from_secs(10) {
            return Err(invalid("InvalidInterval", "continuous.backgroundSyncInterval must be at least 10s"));
        }
    }
    compile_exclusions(spec.exclude_resources.as_deref().unwrap_or_default())
        .map_err(|e| invalid("InvalidExclusion", e.to_string()))?;
    label_selector(spec).map_err(|m| invalid("InvalidLabelSelector", m))?;
    Ok(Validated { namespaces, clusters })
}

/// The cadence of a validated spec: `default_schedule` is the source RemoteCluster's `defaultSchedule`.
pub fn cadence(spec: &NamespaceMappingSpec, default_schedule: Option<&str>, seed: &str) -> Result<Cadence, Invalid> {
    match spec.mode() {
        ReplicationMode::Manual => Ok(Cadence::Never),
        ReplicationMode::Continuous => {
            let text = spec
                .continuous
                .as_ref()
                .and_then(|c| c.background_sync_interval.clone())
                .unwrap_or_else(|| DEFAULT_BACKGROUND_SYNC_INTERVAL.to_string());
            parse_duration(&text).map(Cadence::Every).map_err(|e| invalid("InvalidInterval", e.to_string()))
        }
        ReplicationMode::Scheduled => {
            let text = spec.schedule.as_deref().or(default_schedule).unwrap_or(DEFAULT_SCHEDULE);
            let schedule = parse_cron(text).map_err(|e| invalid("InvalidSchedule", format!("schedule: {e}")))?;
            let max =
                spec.schedule_jitter.as_deref().map(parse_duration).transpose().ok().flatten().unwrap_or_default();
            Ok(Cadence::Cron { schedule: Box::new(schedule), jitter: fixed_jitter(seed, max) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> NamespaceMappingSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn with_cluster_defaults_fills_resource_types_only_when_the_mapping_names_none() {
        let rc = |defaults: Option<Vec<&str>>| -> dr_syncer_api::RemoteCluster {
            let mut spec = serde_json::json!({"kubeconfigSecretRef": {"name": "k", "namespace": "n"}});
            if let Some(d) = defaults {
                spec["defaultResourceTypes"] = serde_json::json!(d);
            }
            dr_syncer_api::RemoteCluster::new("src", serde_json::from_value(spec).unwrap())
        };
        let nm = |types: Option<Vec<&str>>| {
            let mut json =
                serde_json::json!({"sourceNamespace": "shop", "sourceCluster": "a", "destinationCluster": "b"});
            if let Some(t) = types {
                json["resourceTypes"] = serde_json::json!(t);
            }
            std::sync::Arc::new(dr_syncer_api::NamespaceMapping::new("m", spec(json)))
        };
        let types = |m: &dr_syncer_api::NamespaceMapping| m.spec.resource_types.clone();
        let cases = [
            (None, Some(vec!["secrets"]), Some(vec!["secrets".to_string()])),
            (Some(vec![]), Some(vec!["secrets"]), Some(vec!["secrets".to_string()])),
            (Some(vec!["configmaps"]), Some(vec!["secrets"]), Some(vec!["configmaps".to_string()])),
            (None, None, None),
            (None, Some(vec![]), None),
        ];
        for (own, defaults, want) in cases {
            let filled = with_cluster_defaults(&nm(own.clone()), &rc(defaults.clone()));
            assert_eq!(types(&filled), want, "{own:?} {defaults:?}");
        }
    }

    #[test]
    fn validate_resolves_defaults_when_spec_is_minimal() {
        let v = validate(
            &spec(serde_json::json!({"sourceNamespace": "shop", "sourceCluster": "a", "destinationCluster": "b"})),
            "ops",
        )
        .unwrap();
        assert_eq!(v.namespaces, Namespaces::One { source: "shop".into(), destination: "shop".into() });
        assert_eq!(v.clusters, ClusterRefs::Direct("a".into(), "b".into()));
        let v = validate(
            &spec(serde_json::json!({"sourceNamespace": "shop", "clusterMappingRef": {"name": "pair"}})),
            "ops",
        )
        .unwrap();
        assert_eq!(v.clusters, ClusterRefs::ClusterMapping("ops".into(), "pair".into()));
    }

    #[test]
    fn validate_rejects_spec_when_it_cannot_run() {
        let cases = [
            (serde_json::json!({"sourceCluster": "a", "destinationCluster": "b"}), "SourceNamespaceMissing"),
            (serde_json::json!({"sourceNamespace": "x", "sourceCluster": "a"}), "ClustersNotSpecified"),
            (
                serde_json::json!({"namespaceSelector": {}, "clusterMappingRef": {"name": "p"}}),
                "InvalidNamespaceSelector",
            ),
            (
                serde_json::json!({"namespaceSelector": {"matchLabels": {"a": "b"}}, "sourceNamespace": "x", "clusterMappingRef": {"name": "p"}}),
                "InvalidSpec",
            ),
            (
                serde_json::json!({"namespaceSelector": {"matchLabels": {"a": "b"}}, "destinationNamespace": "x", "clusterMappingRef": {"name": "p"}}),
                "InvalidSpec",
            ),
            (
                serde_json::json!({"sourceNamespace": "x", "clusterMappingRef": {"name": "p"}, "schedule": "61 * * * *"}),
                "InvalidSchedule",
            ),
            (
                serde_json::json!({"sourceNamespace": "x", "clusterMappingRef": {"name": "p"}, "excludeResources": [{"kind": "Secret", "name": "[a"}]}),
                "InvalidExclusion",
            ),
            (
                serde_json::json!({"sourceNamespace": "x", "clusterMappingRef": {"name": "p"}, "labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
                "InvalidLabelSelector",
            ),
            (
                serde_json::json!({"sourceNamespace": "x", "clusterMappingRef": {"name": "p"}, "continuous": {"backgroundSyncInterval": "1s"}}),
                "InvalidInterval",
            ),
        ];
        for (json, reason) in cases {
            let text = json.to_string();
            assert_eq!(validate(&spec(json), "ops").unwrap_err().reason, reason, "{text}");
        }
    }

    #[test]
    fn cadence_uses_remote_cluster_default_schedule_when_spec_has_none() {
        let s = spec(serde_json::json!({"sourceNamespace": "x"}));
        let Cadence::Cron { schedule, .. } = cadence(&s, Some("@hourly"), "uid").unwrap() else { panic!("cron") };
        let next = schedule
            .find_next_occurrence(
                &"2026-01-01T10:02:00Z".parse::<jiff::Timestamp>().unwrap().to_zoned(jiff::tz::TimeZone::UTC),
                false,
            )
            .unwrap();
        assert_eq!(next.timestamp().to_string(), "2026-01-01T11:00:00Z");
        let manual = spec(serde_json::json!({"sourceNamespace": "x", "replicationMode": "Manual"}));
        assert!(matches!(cadence(&manual, None, "uid").unwrap(), Cadence::Never));
    }
}
