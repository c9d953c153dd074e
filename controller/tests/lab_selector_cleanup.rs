//! Label-selected namespaces and cleanup on real API servers: namespaces matching `namespaceSelector` are replicated
//! under the naming rule and picked up as they gain the label; a namespace that loses it is cleaned up per
//! `cleanupPolicy`; deleting a mapping deletes exactly its objects (Delete) or releases them (Retain); a cleanup that
//! cannot reach the DR cluster is visible and keeps the finalizer until it can.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, WAIT, apply, get};
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": "1"}})
}

async fn label_namespace(env: &Env, ns: &str, value: Option<&str>) {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(env.source_client.clone());
    let patch = json!({"metadata": {"labels": {"dr-test-tier": value}}});
    api.patch(ns, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn exists(env: &Env, ns: &str, name: &str) -> Option<Value> {
    get(&env.dr_client, "v1", "ConfigMap", ns, name).await
}

#[tokio::test]
async fn selector_mapping_follows_labels_and_cleans_up_namespaces_that_leave() {
    let env = Env::start("sel").await;
    let tier = unique_name("tier");
    let a = TestNamespace::create(&env.source, "sel-a").await;
    let b = TestNamespace::create(&env.source, "sel-b").await;
    let (a_dr, b_dr) = (format!("{}-dr", a.name()), format!("{}-dr", b.name()));
    let _guards = (TestNamespace::guard(&env.dr, &a_dr), TestNamespace::guard(&env.dr, &b_dr));
    for ns in [a.name(), b.name()] {
        apply(&env.source_client, ns, &config_map("cfg")).await;
    }
    label_namespace(&env, a.name(), Some(&tier)).await;
    env.mapping(
        "tiered",
        json!({"namespaceSelector": {"matchLabels": {"dr-test-tier": tier}}, "destinationNamespaceRule": {"suffix": "-dr"},
               "clusterMappingRef": {"name": "pair"}, "replicationMode": "Continuous", "resourceTypes": ["configmaps"],
               "cleanupPolicy": "Delete"}),
    )
    .await;
    let s = env.wait_synced_after("tiered", None).await;
    assert_eq!(s.covered_namespaces.len(), 1, "{:?}", s.covered_namespaces);
    assert_eq!(s.covered_namespaces[0].destination, a_dr);
    assert!(exists(&env, &a_dr, "cfg").await.is_some());

    // b gains the label: picked up without a trigger (Continuous watches namespaces).
    label_namespace(&env, b.name(), Some(&tier)).await;
    env.wait_mapping("tiered", "both namespaces covered", |s| {
        if s.covered_namespaces.len() == 2 { Ok(()) } else { Err(format!("{:?}", s.covered_namespaces)) }
    })
    .await;
    eventually_async("b replicated", WAIT, || async {
        exists(&env, &b_dr, "cfg").await.map(|_| ()).ok_or("missing".to_string())
    })
    .await;

    // a loses the label: cleaned up per Delete (its DR namespace was created by dr-syncer, so it goes too).
    label_namespace(&env, a.name(), None).await;
    env.wait_mapping("tiered", "a no longer covered", |s| {
        if s.covered_namespaces.len() == 1 && s.covered_namespaces[0].destination == b_dr {
            Ok(())
        } else {
            Err(format!("{:?}", s.covered_namespaces))
        }
    })
    .await;
    eventually_async("a's DR copy deleted", WAIT, || async {
        match exists(&env, &a_dr, "cfg").await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    let ns = get(&env.dr_client, "v1", "Namespace", "", &a_dr).await;
    assert!(
        ns.is_none_or(|n| n["metadata"]["deletionTimestamp"].is_string()),
        "namespace created by dr-syncer deleted"
    );
    assert!(env.event_reasons("tiered").await.iter().any(|r| r == "NamespaceCleanedUp"));
}

#[tokio::test]
async fn deleting_mapping_deletes_or_releases_exactly_its_objects() {
    let env = Env::start("clean").await;
    let src = TestNamespace::create(&env.source, "clean-src").await;
    apply(&env.source_client, src.name(), &config_map("ours")).await;
    // Delete: a DR namespace created by the user holds one object of ours and one of the user's.
    let del_dst = TestNamespace::create(&env.dr, "clean-del").await;
    apply(&env.dr_client, del_dst.name(), &config_map("users")).await;
    let retain_dst = unique_name("clean-ret");
    let _g = TestNamespace::guard(&env.dr, &retain_dst);
    for (name, dst, policy) in [("del", del_dst.name(), "Delete"), ("ret", retain_dst.as_str(), "Retain")] {
        env.mapping(
            name,
            json!({"sourceNamespace": src.name(), "destinationNamespace": dst, "clusterMappingRef": {"name": "pair"},
                   "replicationMode": "Manual", "syncTrigger": "1", "resourceTypes": ["configmaps"], "cleanupPolicy": policy}),
        )
        .await;
        env.wait_synced_after(name, None).await;
    }
    assert!(exists(&env, del_dst.name(), "ours").await.is_some());
    env.mappings().delete("del", &Default::default()).await.unwrap();
    env.mappings().delete("ret", &Default::default()).await.unwrap();
    eventually_async("both mappings gone", WAIT, || async {
        let left = env.mappings().list(&Default::default()).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    assert!(exists(&env, del_dst.name(), "ours").await.is_none(), "Delete removes the objects it created");
    assert!(exists(&env, del_dst.name(), "users").await.is_some(), "and nothing else");
    let ns = get(&env.dr_client, "v1", "Namespace", "", del_dst.name()).await.unwrap();
    assert!(ns["metadata"]["deletionTimestamp"].is_null(), "a namespace dr-syncer did not create stays");
    let kept = exists(&env, &retain_dst, "ours").await.expect("Retain keeps the object");
    assert!(kept["metadata"]["labels"]["dr-syncer.io/managed-by"].is_null(), "marks removed: {kept}");
    assert!(kept["metadata"]["annotations"]["dr-syncer.io/content-hash"].is_null(), "marks removed: {kept}");
    let ns = get(&env.dr_client, "v1", "Namespace", "", &retain_dst).await.unwrap();
    assert!(ns["metadata"]["labels"]["dr-syncer.io/mapping"].is_null(), "namespace released: {ns}");
}

#[tokio::test]
async fn cleanup_that_cannot_reach_dr_is_visible_and_keeps_the_mapping_until_it_can() {
    let env = Env::start("stuck").await;
    let src = TestNamespace::create(&env.source, "stuck-src").await;
    apply(&env.source_client, src.name(), &config_map("ours")).await;
    let dst = unique_name("stuck-dst");
    let _g = TestNamespace::guard(&env.dr, &dst);
    env.mapping(
        "stuck",
        json!({"sourceNamespace": src.name(), "destinationNamespace": dst, "sourceCluster": "source", "destinationCluster": "dr",
               "replicationMode": "Manual", "syncTrigger": "1", "resourceTypes": ["configmaps"], "cleanupPolicy": "Delete"}),
    )
    .await;
    env.wait_synced_after("stuck", None).await;
    // The DR cluster's kubeconfig now points nowhere: cleanup cannot run.
    let broken = env.dr.kubeconfig_yaml().replace("https://127.0.0.1:", "https://127.0.0.1:1");
    env.kubeconfig_secret("dr-kubeconfig", &broken).await;
    env.mappings().delete("stuck", &Default::default()).await.unwrap();
    env.wait_mapping("stuck", "Cleanup=False with a pending entry", |s| {
        let c = s.conditions.iter().find(|c| c.type_ == "Cleanup");
        match c {
            Some(c) if c.status == "False" && c.reason == "CleanupPending" && !s.pending_cleanups.is_empty() => Ok(()),
            _ => Err("not yet".into()),
        }
    })
    .await;
    assert!(env.event_reasons("stuck").await.iter().any(|r| r == "CleanupPending"));
    assert!(exists(&env, &dst, "ours").await.is_some(), "nothing deleted yet");
    env.kubeconfig_secret("dr-kubeconfig", &env.dr.kubeconfig_yaml()).await;
    eventually_async("cleanup finished and mapping gone", WAIT, || async {
        let gone = env.mappings().get_opt("stuck").await.map_err(|e| e.to_string())?.is_none();
        let deleted = exists(&env, &dst, "ours").await.is_none();
        if gone && deleted { Ok(()) } else { Err(format!("gone={gone} deleted={deleted}")) }
    })
    .await;
}

#[tokio::test]
async fn cleanup_runs_when_the_source_cluster_is_gone() {
    let env = Env::start("gone").await;
    let src = TestNamespace::create(&env.source, "gone-src").await;
    apply(&env.source_client, src.name(), &config_map("ours")).await;
    let dst = unique_name("gone-dst");
    let _g = TestNamespace::guard(&env.dr, &dst);
    env.mapping(
        "gone",
        json!({"sourceNamespace": src.name(), "destinationNamespace": dst, "sourceCluster": "source", "destinationCluster": "dr",
               "replicationMode": "Manual", "syncTrigger": "1", "resourceTypes": ["configmaps"], "cleanupPolicy": "Delete"}),
    )
    .await;
    env.wait_synced_after("gone", None).await;
    assert!(exists(&env, &dst, "ours").await.is_some());
    // The source RemoteCluster disappears (the source cluster was lost); the mapping is deleted afterwards.
    env.remote_clusters().delete("source", &Default::default()).await.unwrap();
    env.mappings().delete("gone", &Default::default()).await.unwrap();
    eventually_async("cleanup done without the source", WAIT, || async {
        let gone = env.mappings().get_opt("gone").await.map_err(|e| e.to_string())?.is_none();
        let deleted = exists(&env, &dst, "ours").await.is_none();
        if gone && deleted { Ok(()) } else { Err(format!("gone={gone} deleted={deleted}")) }
    })
    .await;
}
