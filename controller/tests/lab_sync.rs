//! The reconcilers and the sync engine against the lab's `source` and `dr` clusters: RemoteCluster and
//! ClusterMapping health, triggers, refusals, failures that do not stop the rest, prune, conflicts and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, WAIT, apply, get};
use dr_syncer_api::cluster_mapping::ClusterMappingPhase;
use dr_syncer_api::common::find_condition;
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use serde_json::json;

fn condition(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], t: &str) -> (String, String) {
    find_condition(conditions, t).map(|c| (c.status.clone(), c.reason.clone())).unwrap_or_default()
}

fn cm(name: &str, data: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": data}})
}

#[tokio::test]
async fn remote_cluster_reports_health_and_bad_kubeconfig_secrets() {
    let env = Env::start("rc").await;
    let rcs = env.remote_clusters();
    eventually_async("source to be Healthy", WAIT, || async {
        let s = rcs.get("source").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let ok = s.health.as_deref() == Some("Healthy") && s.last_sync_time.is_some();
        if ok && condition(&s.conditions, "ClusterAvailable").0 == "True" { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;

    // Missing Secret, then the Secret appears: the client is built from it.
    env.apply_ctl(&common::remote_cluster("late", "late-kubeconfig")).await;
    let wait_reason = |name: &'static str, cond: &'static str, want: (&'static str, &'static str)| {
        let rcs = rcs.clone();
        async move {
            eventually_async(&format!("{name} {cond}={want:?}"), WAIT, || async {
                let s = rcs.get(name).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
                let got = condition(&s.conditions, cond);
                if (got.0.as_str(), got.1.as_str()) == want { Ok(s) } else { Err(format!("{got:?}")) }
            })
            .await
        }
    };
    let s = wait_reason("late", "KubeconfigAvailable", ("False", "SecretNotFound")).await;
    assert_eq!(s.health.as_deref(), Some("Unhealthy"));
    env.kubeconfig_secret("late-kubeconfig", &env.source.kubeconfig_yaml()).await;
    wait_reason("late", "ClusterAvailable", ("True", "Reachable")).await;

    // An exec plugin is refused; a kubeconfig that disables TLS verification is flagged.
    let exec = "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n\
                clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n\
                users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws}}}]\n";
    env.kubeconfig_secret("exec-kubeconfig", exec).await;
    env.apply_ctl(&common::remote_cluster("exec", "exec-kubeconfig")).await;
    wait_reason("exec", "KubeconfigValid", ("False", "ExecPluginNotAllowed")).await;
    let insecure: String = env
        .source
        .kubeconfig_yaml()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("certificate-authority-data:") {
                "    insecure-skip-tls-verify: true"
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    env.kubeconfig_secret("insecure-kubeconfig", &insecure).await;
    env.apply_ctl(&common::remote_cluster("insecure", "insecure-kubeconfig")).await;
    wait_reason("insecure", "KubeconfigValid", ("True", "InsecureSkipTLSVerifyIgnored")).await;
    wait_reason("insecure", "ClusterAvailable", ("False", "Unreachable")).await;

    let events = eventually_async("events on the failing RemoteCluster", WAIT, || async {
        let reasons = env.event_reasons("exec").await;
        if reasons.iter().any(|r| r == "ExecPluginNotAllowed") { Ok(reasons) } else { Err(format!("{reasons:?}")) }
    })
    .await;
    assert!(!events.is_empty());
    assert!(env.metrics().contains("dr_syncer_remote_cluster_healthy{name=\"source\""));
}

#[tokio::test]
async fn cluster_mapping_connects_and_fails_for_missing_cluster() {
    let env = Env::start("cm").await;
    let cms = env.cluster_mappings();
    eventually_async("pair to connect", WAIT, || async {
        let s = cms.get("pair").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.phase == Some(ClusterMappingPhase::Connected) && s.consecutive_failures == 0 && s.last_verified.is_some() {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    env.apply_ctl(
        &json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "metadata": {"name": "broken"},
        "spec": {"sourceCluster": "source", "targetCluster": "nowhere"}}),
    )
    .await;
    let s = eventually_async("broken to fail twice", WAIT, || async {
        let s = cms.get("broken").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.phase == Some(ClusterMappingPhase::Failed) && s.consecutive_failures >= 2 {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(condition(&s.conditions, "TargetReachable"), ("False".into(), "RemoteClusterNotFound".into()));
    assert_eq!(condition(&s.conditions, "SourceReachable").0, "True");
    // The missing cluster appears: the failure count resets.
    env.apply_ctl(&common::remote_cluster("nowhere", "dr-kubeconfig")).await;
    eventually_async("broken to connect", WAIT, || async {
        let s = cms.get("broken").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if s.phase == Some(ClusterMappingPhase::Connected) && s.consecutive_failures == 0 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn manual_mapping_syncs_only_when_triggered_and_prunes() {
    let env = Env::start("manual").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let dst_name = unique_name("dst");
    let _dst = TestNamespace::guard(&env.dr, &dst_name);
    apply(&env.source_client, src.name(), &cm("a", "1")).await;
    apply(&env.source_client, src.name(), &cm("b", "1")).await;
    env.mapping(
        "m",
        json!({"replicationMode": "Manual", "clusterMappingRef": {"name": "pair"},
        "sourceNamespace": src.name(), "destinationNamespace": dst_name, "resourceTypes": ["configmaps"]}),
    )
    .await;
    env.wait_mapping("m", "Ready", |s| {
        if condition(&s.conditions, "Ready").0 == "True" { Ok(()) } else { Err("not ready".into()) }
    })
    .await;
    assert!(
        env.mappings().get("m").await.unwrap().status.unwrap().last_sync_time.is_none(),
        "Manual: no sync by itself"
    );

    let source_version = |name: &'static str| {
        let client = env.source_client.clone();
        let ns = src.name().to_string();
        async move { get(&client, "v1", "ConfigMap", &ns, name).await.unwrap()["metadata"]["resourceVersion"].clone() }
    };
    let source_before = source_version("a").await;
    env.sync_now("m").await;
    let s = env.wait_synced_after("m", None).await;
    assert_eq!(source_version("a").await, source_before, "the source cluster is never written");
    assert_eq!(condition(&s.conditions, "Synced"), ("True".into(), "Synced".into()));
    let counts = s.resource_counts.iter().find(|k| k.kind == "ConfigMap").unwrap();
    assert_eq!(counts.applied, 2);
    assert!(s.last_successful_sync_time.is_some());
    let nm = env.mappings().get("m").await.unwrap();
    assert!(!nm.metadata.annotations.unwrap_or_default().contains_key("dr-syncer.io/sync-now"), "annotation removed");
    let a = get(&env.dr_client, "v1", "ConfigMap", &dst_name, "a").await.expect("a replicated");
    let rv = a["metadata"]["resourceVersion"].clone();
    assert_eq!(a["metadata"]["labels"]["dr-syncer.io/managed-by"], "dr-syncer");
    assert_eq!(a["metadata"]["labels"]["dr-syncer.io/mapping"], "m");
    assert!(a["metadata"]["annotations"]["dr-syncer.io/content-hash"].is_string());
    assert!(a["metadata"]["annotations"]["dr-syncer.io/source-uid"].is_string());

    // Delete b in the source; trigger through the spec token: b is pruned, a is not rewritten.
    common::delete(&env.source_client, "v1", "ConfigMap", src.name(), "b").await;
    let first = s.last_sync_time.clone().unwrap().0;
    env.mapping("m", json!({"replicationMode": "Manual", "clusterMappingRef": {"name": "pair"},
        "sourceNamespace": src.name(), "destinationNamespace": dst_name, "resourceTypes": ["configmaps"], "syncTrigger": "run-2"}))
    .await;
    let s = env
        .wait_mapping("m", "trigger handled", |s| {
            if s.last_handled_trigger.as_deref() == Some("run-2") { Ok(s.clone()) } else { Err("not yet".into()) }
        })
        .await;
    assert!(s.last_sync_time.clone().unwrap().0 >= first);
    let counts = s.resource_counts.iter().find(|k| k.kind == "ConfigMap").unwrap();
    assert_eq!((counts.pruned, counts.unchanged, counts.applied), (1, 1, 0), "{counts:?}");
    assert!(get(&env.dr_client, "v1", "ConfigMap", &dst_name, "b").await.is_none());
    let a = get(&env.dr_client, "v1", "ConfigMap", &dst_name, "a").await.unwrap();
    assert_eq!(a["metadata"]["resourceVersion"], rv, "unchanged object not written");
    let reasons = env.event_reasons("m").await;
    assert!(reasons.iter().any(|r| r == "SyncStarted") && reasons.iter().any(|r| r == "SyncSucceeded"), "{reasons:?}");
    let metrics = env.metrics();
    assert!(metrics.contains("dr_syncer_last_successful_sync_timestamp_seconds{mapping=\"m\""), "{metrics}");

    if let Err(e) = dr_syncer_testlab::process::promtool_check(&metrics) {
        panic!("promtool check metrics failed:\n{e}\n{metrics}");
    }

    // The Go operator's trigger annotation works too, and is removed once handled.
    let before = s.last_sync_time.clone().unwrap().0;
    let patch = json!({"metadata": {"annotations": {"dr-syncer.io/trigger-sync": "legacy"}}});
    env.mappings().patch("m", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    eventually_async("legacy trigger handled", WAIT, || async {
        let nm = env.mappings().get("m").await.map_err(|e| e.to_string())?;
        let annotated = nm.metadata.annotations.unwrap_or_default().contains_key("dr-syncer.io/trigger-sync");
        // Times have whole seconds, so count the successful syncs: sync-now, syncTrigger, and this one.
        let syncs = env.metrics().lines().any(|l| {
            l.starts_with("dr_syncer_syncs_total{")
                && l.contains("mapping=\"m\"")
                && l.contains("success")
                && l.ends_with(" 3")
        });
        match nm.status.and_then(|s| s.last_sync_time) {
            Some(t) if t.0 >= before && !annotated && syncs => Ok(()),
            other => Err(format!(
                "annotated={annotated} three syncs={syncs} last sync {other:?} {}",
                env.metrics().lines().filter(|l| l.contains("syncs_total{")).collect::<Vec<_>>().join(";")
            )),
        }
    })
    .await;

    // Deleting the mapping removes its finalizer and its metric series; DR objects stay.
    env.mappings().delete("m", &Default::default()).await.unwrap();
    eventually_async("mapping gone", WAIT, || async {
        match env.mappings().get_opt("m").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    })
    .await;
    assert!(!env.metrics().contains("mapping=\"m\""));
    assert!(get(&env.dr_client, "v1", "ConfigMap", &dst_name, "a").await.is_some());
}
