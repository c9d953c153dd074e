//! Outages on real API servers, with a Continuous mapping: the DR API server down for 60 s while the source
//! changes, and the source API server down for 60 s with a full sync attempted meanwhile. The controller keeps
//! running, the mapping says RemoteUnreachable, nothing is pruned on a failed listing, and DR converges after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Env, apply, delete, remote_cluster};
use dr_syncer_testlab::{EphemeralCluster, eventually_async, unique_name};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const OUTAGE: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(120);

fn config_map(name: &str, value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

/// `name → data.v` of the ConfigMaps we created (not kube-root-ca.crt) in a namespace.
async fn contents(client: &Client, ns: &str) -> Result<BTreeMap<String, String>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|cm| {
            let v = cm.data.as_ref()?.get("v")?.clone();
            Some((cm.metadata.name?, v))
        })
        .collect())
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
}

async fn converge(what: &str, source: &Client, src_ns: &str, dr: &Client, dst_ns: &str) {
    eventually_async(what, CONVERGE, || async {
        let (want, got) = (contents(source, src_ns).await?, contents(dr, dst_ns).await?);
        if want == got {
            Ok(())
        } else {
            Err(format!("source {} objects, DR {} objects; DR {got:?}", want.len(), got.len()))
        }
    })
    .await;
}

fn mapping(src_ns: &str, dst_ns: &str, source: &str, destination: &str) -> serde_json::Value {
    json!({"sourceNamespace": src_ns, "destinationNamespace": dst_ns, "sourceCluster": source, "destinationCluster": destination,
           "replicationMode": "Continuous", "resourceTypes": ["configmaps"],
           "retryConfig": {"maxRetries": 20, "initialBackoff": "2s", "maxBackoff": "10s"}})
}

async fn unreachable_shown(env: &Env, name: &str) {
    env.wait_mapping(name, "a RemoteUnreachable condition", |s| {
        let hit = s.conditions.iter().find(|c| c.reason == "RemoteUnreachable" && c.status == "False");
        hit.map(|c| c.type_.clone()).ok_or_else(|| "not yet".to_string())
    })
    .await;
}

#[tokio::test]
async fn destination_outage_converges_with_changes_made_during_it() {
    let env = Env::start("outd").await;
    let dr2 = EphemeralCluster::start("outd");
    let dr2_client = dr2.cluster().client().await;
    env.kubeconfig_secret("dr2-kubeconfig", &dr2.cluster().kubeconfig_yaml()).await;
    env.apply_ctl(&remote_cluster("dr2", "dr2-kubeconfig")).await;
    let src_ns = unique_name("outd-src");
    create_namespace(&env.source_client, &src_ns).await;
    for i in 0..20 {
        apply(&env.source_client, &src_ns, &config_map(&format!("cm-{i}"), "1")).await;
    }
    env.mapping("m", mapping(&src_ns, "copy", "source", "dr2")).await;
    converge("initial sync", &env.source_client, &src_ns, &dr2_client, "copy").await;

    dr2.stop();
    let stopped = Instant::now();
    for i in 0..5 {
        apply(&env.source_client, &src_ns, &config_map(&format!("cm-{i}"), "2")).await;
        apply(&env.source_client, &src_ns, &config_map(&format!("new-{i}"), "1")).await;
        delete(&env.source_client, "v1", "ConfigMap", &src_ns, &format!("cm-{}", 10 + i)).await;
    }
    unreachable_shown(&env, "m").await;
    // The outage lasts its full minute (the scenario, not a wait for state).
    tokio::time::sleep_until((stopped + OUTAGE).into()).await;
    assert!(env.metrics().contains("dr_syncer_continuous_workers 1"), "the controller still runs its worker");
    dr2.restart();
    converge("DR after the outage", &env.source_client, &src_ns, &dr2_client, "copy").await;
    let _ = Api::<Namespace>::all(env.source_client.clone()).delete(&src_ns, &Default::default()).await;
}

#[tokio::test]
async fn source_outage_prunes_nothing_and_converges() {
    let env = Env::start("outs").await;
    let src = EphemeralCluster::start("outs");
    let src_client = src.cluster().client().await;
    env.kubeconfig_secret("src2-kubeconfig", &src.cluster().kubeconfig_yaml()).await;
    env.apply_ctl(&remote_cluster("src2", "src2-kubeconfig")).await;
    create_namespace(&src_client, "app").await;
    for i in 0..20 {
        apply(&src_client, "app", &config_map(&format!("cm-{i}"), "1")).await;
    }
    let dst = unique_name("outs-dst");
    let _g = dr_syncer_testlab::TestNamespace::guard(&env.dr, &dst);
    env.mapping("m", mapping("app", &dst, "src2", "dr")).await;
    converge("initial sync", &src_client, "app", &env.dr_client, &dst).await;
    // The DR objects are written before the sync's status: wait for the status too.
    let synced = env
        .wait_mapping("m", "the initial sync recorded", |s| {
            s.last_sync_time.clone().ok_or("no lastSyncTime yet".to_string())
        })
        .await
        .0;

    src.stop();
    let stopped = Instant::now();
    // A full sync during the outage fails as a whole: its listings fail, so nothing is pruned.
    env.sync_now("m").await;
    env.wait_mapping("m", "a failed sync after the outage began", |s| match &s.last_sync_time {
        Some(t) if t.0 > synced || s.retry_status.is_some() => Ok(()),
        _ => Err("not yet".into()),
    })
    .await;
    unreachable_shown(&env, "m").await;
    tokio::time::sleep_until((stopped + OUTAGE).into()).await;
    assert_eq!(contents(&env.dr_client, &dst).await.unwrap().len(), 20, "nothing pruned during the outage");
    src.restart();
    apply(&src_client, "app", &config_map("cm-0", "after")).await;
    converge("DR after the outage", &src_client, "app", &env.dr_client, &dst).await;
    let text = env.metrics();
    assert!(text.lines().any(|l| l.starts_with("dr_syncer_watch_restarts_total{") && !l.ends_with(" 0")), "{text}");
}
