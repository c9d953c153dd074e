use serde_json::json;

use super::super::{Options, transform};
use super::*;

fn opts(scale_to_zero: bool) -> Options {
    Options { source_namespace: "a".into(), destination_namespace: "a".into(), scale_to_zero, ..Options::default() }
}

fn deployment(replicas: Option<i64>, label: Option<&str>) -> Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}});
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    if let Some(l) = label {
        d["metadata"]["labels"] = json!({ c::LABEL_SCALE_OVERRIDE: l });
    }
    d
}

#[test]
fn replicated_set_sets_replicas_per_override_table() {
    // (source replicas, label, scaleToZero) -> (DR replicas, warnings)
    let cases = [
        (Some(3), None, true, 0, 0),
        (Some(3), None, false, 3, 0),
        (None, None, true, 0, 0),
        (Some(3), Some("2"), true, 2, 0),
        (Some(3), Some("0"), false, 0, 0),
        (Some(3), Some("true"), true, 3, 0),
        (Some(3), Some("many"), true, 0, 1),
        (Some(3), Some("-1"), false, 3, 1),
    ];
    for (src, label, stz, want, warnings) in cases {
        let d = deployment(src, label);
        let out = transform("apps", d.clone(), &d, None, &opts(stz));
        assert_eq!(out.object["spec"]["replicas"], json!(want), "{src:?} {label:?} {stz}");
        assert_eq!(out.warnings.len(), warnings, "{src:?} {label:?}");
        let original = src.unwrap_or(1).to_string();
        assert_eq!(object::annotation(&out.object, c::ANNOTATION_ORIGINAL_REPLICAS), Some(original.as_str()));
        assert_eq!(out.original_replicas, Some(src.unwrap_or(1) as i32));
    }
}

#[test]
fn daemon_set_is_parked_with_unmatchable_node_selector_when_scaled_to_zero() {
    let ds = json!({"kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"template": {"metadata": {"creationTimestamp": null}, "spec": {"nodeSelector": {"disk": "ssd"}}}}});
    let out = transform("apps", ds.clone(), &ds, None, &opts(true));
    assert_eq!(
        out.object["spec"]["template"]["spec"]["nodeSelector"],
        json!({"disk": "ssd", "dr-syncer.io/parked": "true"})
    );
    assert_eq!(object::annotation(&out.object, c::ANNOTATION_ORIGINAL_NODE_SELECTOR), Some(r#"{"disk":"ssd"}"#));
    assert!(out.object["spec"]["template"]["metadata"].get("creationTimestamp").is_none());
    let active = transform("apps", ds.clone(), &ds, None, &opts(false));
    assert_eq!(active.object["spec"]["template"]["spec"]["nodeSelector"], json!({"disk": "ssd"}));
}

#[test]
fn cron_job_is_suspended_and_job_gets_zero_parallelism_when_parked() {
    let cj = json!({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"schedule": "* * * * *"}});
    let out = transform("batch", cj.clone(), &cj, None, &opts(true));
    assert_eq!(out.object["spec"]["suspend"], json!(true));
    assert_eq!(object::annotation(&out.object, c::ANNOTATION_ORIGINAL_SUSPEND), Some("false"));

    let job = json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {
        "parallelism": 2,
        "selector": {"matchLabels": {"controller-uid": "x"}},
        "template": {"metadata": {"labels": {"controller-uid": "x", "job-name": "j", "app": "m"}}}}});
    let out = transform("batch", job.clone(), &job, None, &opts(true));
    assert_eq!(out.object["spec"]["parallelism"], json!(0));
    assert!(out.object["spec"].get("selector").is_none());
    assert_eq!(out.object["spec"]["template"]["metadata"]["labels"], json!({"app": "m"}));
    assert_eq!(object::annotation(&out.object, c::ANNOTATION_ORIGINAL_PARALLELISM), Some("2"));
}

#[test]
fn service_account_drops_token_secret_references_when_copied() {
    let sa = json!({"kind": "ServiceAccount", "metadata": {"name": "app"},
        "secrets": [{"name": "app-token-abcde"}, {"name": "pull-secret"}]});
    let out = transform("", sa.clone(), &sa, None, &opts(true));
    assert_eq!(out.object["secrets"], json!([{"name": "pull-secret"}]));
    let only_token =
        json!({"kind": "ServiceAccount", "metadata": {"name": "app"}, "secrets": [{"name": "app-token-x"}]});
    assert!(transform("", only_token.clone(), &only_token, None, &opts(true)).object.get("secrets").is_none());
}
