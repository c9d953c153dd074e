//! Continuous mode on real API servers: watched changes and deletes propagate without a trigger, a burst beyond the
//! change queue resyncs instead of losing changes, and the propagation histogram fills. (Watch sharing and leaks are
//! checked in `lab_watch_leak`, a binary of its own so that only its watches are counted.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Env, WAIT, apply, delete, get, metric};
use dr_syncer_testlab::{TestNamespace, eventually, eventually_async};
use serde_json::{Value, json};

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

fn continuous(source_ns: &str, dest_ns: &str, kinds: &[&str]) -> Value {
    json!({"sourceNamespace": source_ns, "destinationNamespace": dest_ns, "clusterMappingRef": {"name": "pair"},
           "replicationMode": "Continuous", "resourceTypes": kinds,
           "continuous": {"backgroundSyncInterval": "1h"}, "cleanupPolicy": "Delete"})
}

async fn dr_value(env: &Env, ns: &str, name: &str) -> Option<String> {
    get(&env.dr_client, "v1", "ConfigMap", ns, name).await.and_then(|o| o["data"]["v"].as_str().map(str::to_string))
}

#[tokio::test]
async fn continuous_mapping_propagates_changes_and_deletes_without_trigger() {
    let env = Env::start("cont").await;
    let src = TestNamespace::create(&env.source, "cont-src").await;
    let dst = format!("{}-dr", src.name());
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &config_map("a", "1")).await;
    env.mapping("live", continuous(src.name(), &dst, &["configmaps"])).await;
    env.wait_synced_after("live", None).await;
    assert_eq!(dr_value(&env, &dst, "a").await.as_deref(), Some("1"));

    // A change, a new object and a delete, none triggered: the watch carries them.
    apply(&env.source_client, src.name(), &config_map("a", "2")).await;
    apply(&env.source_client, src.name(), &config_map("b", "new")).await;
    eventually_async("the change and the new object in DR", WAIT, || async {
        match (dr_value(&env, &dst, "a").await, dr_value(&env, &dst, "b").await) {
            (Some(a), Some(b)) if a == "2" && b == "new" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    delete(&env.source_client, "v1", "ConfigMap", src.name(), "b").await;
    eventually_async("the deleted object pruned from DR", WAIT, || async {
        match dr_value(&env, &dst, "b").await {
            None => Ok(()),
            Some(v) => Err(v),
        }
    })
    .await;
    let status = env
        .wait_mapping("live", "lastWatchEvent and Watching=True", |s| {
            let watching = s.conditions.iter().find(|c| c.type_ == "Watching");
            match (&s.last_watch_event, watching) {
                (Some(_), Some(c)) if c.status == "True" => Ok(s.clone()),
                _ => Err("not yet".into()),
            }
        })
        .await;
    assert!(status.last_sync_time.is_some());
    let text = env.metrics();
    assert!(metric(&text, "dr_syncer_propagation_seconds_count") >= 2.0, "{text}");
    assert_eq!(metric(&text, "dr_syncer_watches"), 1.0, "{text}");
    assert_eq!(metric(&text, "dr_syncer_continuous_workers"), 1.0, "{text}");

    // Turning Continuous off stops the watch.
    let mut spec = continuous(src.name(), &dst, &["configmaps"]);
    spec["replicationMode"] = json!("Manual");
    env.mapping("live", spec).await;
    eventually("the watch stopped", WAIT, || {
        let text = env.metrics();
        let (w, k) = (metric(&text, "dr_syncer_watches"), metric(&text, "dr_syncer_continuous_workers"));
        if w == 0.0 && k == 0.0 { Ok(()) } else { Err(format!("watches {w}, workers {k}")) }
    })
    .await;
}

/// A queue of two changes: creating 120 objects at once overflows it; the dropped changes are not lost, because the
/// mapping resyncs everything instead (the background sync is an hour away, so only that resync can bring them).
#[tokio::test]
async fn changes_beyond_a_full_queue_are_resynced_when_they_arrive_faster_than_they_sync() {
    let env = Env::start_tuned("flood", |s| s.watch_queue = 2).await;
    let src = TestNamespace::create(&env.source, "flood-src").await;
    let dst = format!("{}-dr", src.name());
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    env.mapping("flood", continuous(src.name(), &dst, &["configmaps"])).await;
    env.wait_synced_after("flood", None).await;
    eventually("the watch running", WAIT, || {
        let workers = metric(&env.metrics(), "dr_syncer_continuous_workers");
        if workers == 1.0 { Ok(()) } else { Err(format!("workers {workers}")) }
    })
    .await;
    const N: usize = 120;
    let objects: Vec<Value> = (0..N).map(|i| config_map(&format!("f-{i}"), &i.to_string())).collect();
    futures::future::join_all(objects.iter().map(|o| apply(&env.source_client, src.name(), o))).await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(env.dr_client.clone(), &dst);
    eventually_async("every flooded object in DR", Duration::from_secs(90), || async {
        let list = cms.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let have =
            list.items.iter().filter(|c| c.metadata.name.as_deref().is_some_and(|n| n.starts_with("f-"))).count();
        if have == N { Ok(()) } else { Err(format!("{have} of {N}")) }
    })
    .await;
    let overflows = metric(&env.metrics(), "dr_syncer_watch_queue_overflows_total");
    assert!(overflows >= 1.0, "the queue overflowed (else this test proves nothing): {overflows}");
}
