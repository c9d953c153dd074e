//! Source watches are shared per kind and stop with the mappings that need them: no leak over 100 mapping
//! lifecycles. Checked from outside the controller's own gauges: the source API server's count of running watches
//! (this binary runs alone, so every watch it adds is ours) and the number of live tasks on the test's runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Env, WAIT, metric};
use dr_syncer_testlab::{TestNamespace, eventually, eventually_async};
use serde_json::{Value, json};

/// Live tasks allowed above the count before any mapping existed (connection pools, event publishing).
const TASK_SLACK: usize = 10;

fn continuous(source_ns: &str, dest_ns: &str, kinds: &[&str]) -> Value {
    json!({"sourceNamespace": source_ns, "destinationNamespace": dest_ns, "clusterMappingRef": {"name": "pair"},
           "replicationMode": "Continuous", "resourceTypes": kinds,
           "continuous": {"backgroundSyncInterval": "1h"}, "cleanupPolicy": "Delete"})
}

/// Cluster-wide watches of ConfigMaps, Secrets and Services the source API server is serving now, from its own
/// metrics (`apiserver_longrunning_requests`, called `apiserver_longrunning_gauge` before Kubernetes 1.23).
async fn server_watches(env: &Env) -> Result<f64, String> {
    let req = http::Request::get("/metrics").body(Vec::new()).map_err(|e| e.to_string())?;
    let text = env.source_client.request_text(req).await.map_err(|e| e.to_string())?;
    let ours = |l: &&str| {
        (l.starts_with("apiserver_longrunning_gauge{") || l.starts_with("apiserver_longrunning_requests{"))
            && l.contains("verb=\"WATCH\"")
            && l.contains("scope=\"cluster\"")
            && l.contains("group=\"\"")
            && ["configmaps", "secrets", "services"].iter().any(|r| l.contains(&format!("resource=\"{r}\"")))
    };
    let lines: Vec<&str> = text.lines().filter(ours).collect();
    if lines.is_empty() {
        return Err("the API server reports no long-running request gauge".into());
    }
    Ok(lines.iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
}

/// The others' watches, robust to one of them being renewed at the moment of reading (a watch that ends and starts
/// again is missing for a few milliseconds): the highest of a few readings.
async fn steady_server_watches(env: &Env) -> f64 {
    let mut highest = 0.0f64;
    for _ in 0..5 {
        highest = highest.max(server_watches(env).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    highest
}

async fn wait_server_watches(env: &Env, what: &str, want: f64) {
    eventually_async(what, WAIT, || async {
        let now = server_watches(env).await?;
        if now == want { Ok(()) } else { Err(format!("{now} watches, want {want}")) }
    })
    .await;
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::test]
async fn watches_are_shared_per_kind_and_do_not_leak_over_100_mapping_lifecycles() {
    let env = Env::start("leak").await;
    // Before any mapping: what the API server serves to others (the controller manager), and our task count.
    let baseline = steady_server_watches(&env).await;
    let tasks_before = alive_tasks();
    let a = TestNamespace::create(&env.source, "leak-a").await;
    let b = TestNamespace::create(&env.source, "leak-b").await;
    let _guards = (
        TestNamespace::guard(&env.dr, &format!("{}-x", a.name())),
        TestNamespace::guard(&env.dr, &format!("{}-x", b.name())),
    );
    env.mapping("one", continuous(a.name(), &format!("{}-x", a.name()), &["configmaps", "secrets"])).await;
    env.mapping("two", continuous(b.name(), &format!("{}-x", b.name()), &["configmaps"])).await;
    eventually("two mappings sharing the ConfigMap watch: 2 watches, 2 workers", WAIT, || {
        let text = env.metrics();
        let (w, k) = (metric(&text, "dr_syncer_watches"), metric(&text, "dr_syncer_continuous_workers"));
        if w == 2.0 && k == 2.0 { Ok(()) } else { Err(format!("watches {w}, workers {k}")) }
    })
    .await;
    wait_server_watches(&env, "the API server serving two more watches (one per kind)", baseline + 2.0).await;
    env.mappings().delete("one", &Default::default()).await.unwrap();
    env.mappings().delete("two", &Default::default()).await.unwrap();

    // 100 lifecycles (create, change kinds, delete), ten at a time.
    let ns = TestNamespace::create(&env.source, "leak-c").await;
    let mut peak = 0.0f64;
    for round in 0..10 {
        let names: Vec<String> = (0..10).map(|i| format!("cycle-{round}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let kinds: &[&str] = if i % 2 == 0 { &["configmaps"] } else { &["secrets", "services"] };
            env.mapping(name, continuous(ns.name(), &format!("{}-{i}", ns.name()), kinds)).await;
        }
        for (i, name) in names.iter().enumerate() {
            let kinds: &[&str] = if i % 2 == 0 { &["services"] } else { &["configmaps"] };
            env.mapping(name, continuous(ns.name(), &format!("{}-{i}", ns.name()), kinds)).await;
        }
        peak = peak.max(metric(&env.metrics(), "dr_syncer_continuous_workers"));
        for name in &names {
            env.mappings().delete(name, &Default::default()).await.unwrap();
        }
    }
    eventually_async("every mapping gone", Duration::from_secs(120), || async {
        let left = env.mappings().list(&Default::default()).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} mappings left")) }
    })
    .await;
    eventually("no watch and no worker left", WAIT, || {
        let text = env.metrics();
        let (w, k) = (metric(&text, "dr_syncer_watches"), metric(&text, "dr_syncer_continuous_workers"));
        if w == 0.0 && k == 0.0 { Ok(()) } else { Err(format!("watches {w}, workers {k}")) }
    })
    .await;
    assert!(peak >= 1.0, "workers ran during the cycles (peak {peak})");
    wait_server_watches(&env, "the API server serving none of our watches", baseline).await;
    eventually("the tasks of the mappings gone", WAIT, || {
        let now = alive_tasks();
        if now <= tasks_before + TASK_SLACK { Ok(()) } else { Err(format!("{now} live tasks, {tasks_before} before")) }
    })
    .await;
    for i in 0..10 {
        let _ = TestNamespace::guard(&env.dr, &format!("{}-{i}", ns.name()));
    }
}
