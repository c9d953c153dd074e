use super::*;

fn served(group: &str, kind: &str, plural: &str, versions: &[&str]) -> ServedResource {
    ServedResource {
        group: group.into(),
        kind: kind.into(),
        plural: plural.into(),
        versions: versions.iter().map(|v| v.to_string()).collect(),
        replicable: true,
    }
}

fn catalog() -> Catalog {
    let mut resources: Vec<ServedResource> =
        BUILTIN_KINDS.iter().map(|b| served(b.group, b.kind, b.plural, &["v1"])).collect();
    resources.push(served("", "Pod", "pods", &["v1"]));
    resources.push(served("example.com", "Widget", "widgets", &["v1", "v1beta1"]));
    resources.push(served("snapshot.storage.k8s.io", "VolumeSnapshot", "volumesnapshots", &["v1"]));
    let mut ro = served("example.com", "Report", "reports", &["v1"]);
    ro.replicable = false;
    resources.push(ro);
    Catalog { resources }
}

fn names(r: &Resolution) -> Vec<String> {
    r.kinds.iter().map(SelectedKind::qualified).collect()
}

#[test]
fn resolve_accepts_kinds_and_plurals_case_insensitively_when_named() {
    let types: Vec<String> =
        ["configmaps", "DEPLOYMENT", "Secret", "ingresses.networking.k8s.io"].iter().map(|s| s.to_string()).collect();
    let r = resolve(Some(&types), None, &catalog());
    assert_eq!(names(&r), ["Secret", "ConfigMap", "Deployment.apps", "Ingress.networking.k8s.io"]);
    assert!(r.unknown.is_empty() && r.refused.is_empty());
}

#[test]
fn resolve_uses_go_defaults_when_no_types_are_named() {
    let r = resolve(None, None, &catalog());
    assert_eq!(
        names(&r),
        ["Secret", "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment.apps", "Ingress.networking.k8s.io"]
    );
}

#[test]
fn resolve_wildcard_covers_safe_builtins_but_not_jobs_when_star() {
    let r = resolve(Some(&["*".to_string()]), None, &catalog());
    let n = names(&r);
    assert_eq!(n.len(), BUILTIN_KINDS.len() - 1);
    assert!(!n.contains(&"Job.batch".to_string()));
    assert!(!n.contains(&"Pod".to_string()));
    let with_jobs = resolve(Some(&["*".to_string(), "jobs".to_string()]), None, &catalog());
    assert!(names(&with_jobs).contains(&"Job.batch".to_string()));
}

#[test]
fn resolve_reports_unknown_and_refused_entries_when_invalid() {
    let types: Vec<String> = ["gizmos", "pods", "configmap"].iter().map(|s| s.to_string()).collect();
    let r = resolve(Some(&types), Some(&["reports.example.com".to_string()]), &catalog());
    assert_eq!(r.unknown, ["gizmos"]);
    assert_eq!(r.refused.len(), 2);
    assert_eq!(names(&r), ["ConfigMap"]);
}

#[test]
fn resolve_custom_wildcard_skips_builtin_and_snapshot_groups_when_star() {
    let r = resolve(Some(&["configmaps".to_string()]), Some(&["*".to_string()]), &catalog());
    assert_eq!(names(&r), ["ConfigMap", "Widget.example.com"]);
}

#[test]
fn resolve_deduplicates_when_a_kind_is_named_twice() {
    let types: Vec<String> = ["Secret", "secrets", "*"].iter().map(|s| s.to_string()).collect();
    let r = resolve(Some(&types), None, &catalog());
    assert_eq!(r.kinds.iter().filter(|k| k.kind == "Secret").count(), 1);
}

#[test]
fn common_version_picks_sources_first_version_served_by_both_when_they_differ() {
    let src = served("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["v2", "v2beta2", "v1"]);
    let dst = served("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["v2beta2", "v1"]);
    assert_eq!(common_version(&src, Some(&dst)).as_deref(), Some("v2beta2"));
    let none = served("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["v3"]);
    assert_eq!(common_version(&src, Some(&none)), None);
    assert_eq!(common_version(&src, None), None);
}
