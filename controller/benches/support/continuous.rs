//! The Continuous-mode latency and the memory scenarios of the benchmark.

use super::*;

/// 50 changes/s for 60 s on 100 ConfigMaps of a Continuous mapping; each change's latency from the source write's
/// answer to its arrival in DR (seen by a watch).
pub(crate) async fn propagation(src: &Client, dst: &Client) -> Vec<f64> {
    create_namespace(src, "bench-live").await;
    let names: Vec<String> = (0..100).map(|i| format!("live-{i}")).collect();
    let cm = |name: &str, seq: u64| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"seq": seq.to_string()}});
    let initial: Vec<Value> = names.iter().map(|n| cm(n, 0)).collect();
    apply_all(src, "bench-live", &initial, "bench-setup", 16).await;
    mapping(dst, "live", json!({"sourceNamespace": "bench-live", "destinationNamespace": "bench-live-dr", "sourceCluster": "source",
        "destinationCluster": "dr", "replicationMode": "Continuous", "resourceTypes": ["configmaps"], "syncTrigger": "1"})).await;
    handled(dst, "live", "1").await;

    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(dst.clone(), "bench-live-dr");
    let seen = arrived.clone();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut events = std::pin::pin!(watcher(cms, watcher::Config::default()));
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(cm)) => {
                    if let Some(seq) = cm.data.as_ref().and_then(|d| d.get("seq")).and_then(|s| s.parse::<u64>().ok()) {
                        seen.lock().unwrap().entry(seq).or_insert_with(Instant::now);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    let _ = ready.await; // the bench's own DR watch is listening
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let api: Api<DynamicObject> = Api::namespaced_with(src.clone(), "bench-live", &resource("v1", "ConfigMap"));
    let mut inflight = Vec::new();
    for seq in 1..=3000u64 {
        tick.tick().await;
        let (api, sent) = (api.clone(), sent.clone());
        let name = names[(seq as usize) % names.len()].clone();
        let obj = cm(&name, seq);
        inflight.push(tokio::spawn(async move {
            api.patch(&name, &PatchParams::apply("bench-live").force(), &Patch::Apply(&obj)).await.unwrap();
            sent.lock().unwrap().insert(seq, Instant::now());
        }));
    }
    for t in inflight {
        let _ = t.await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && arrived.lock().unwrap().len() < 3000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch.abort();
    let (sent, arrived) = (sent.lock().unwrap().clone(), arrived.lock().unwrap().clone());
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(seq, at)| arrived.get(seq).map(|got| got.saturating_duration_since(*at).as_secs_f64()))
        .collect();
    // A value overwritten before it reached DR never arrives: it counts as the next value's arrival.
    let lost = sent.len() - latencies.len();
    if lost > 0 {
        println!("  ({lost} of {} values were overwritten before they reached DR; not counted)", sent.len());
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

/// Replicates 10,000 ConfigMaps (Continuous, so the watch caches are loaded) and reads the controller's RSS.
pub(crate) async fn memory(src: &Client, dst: &Client, pid: u32) -> (u64, u64, usize) {
    create_namespace(src, "bench-big").await;
    let objects: Vec<Value> = (0..10_000)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("big-{i}"), "labels": {"app": "bench"}},
            "data": {"value": format!("{i:08}")}}))
        .collect();
    apply_all(src, "bench-big", &objects, "bench-setup", 32).await;
    mapping(dst, "big", json!({"sourceNamespace": "bench-big", "destinationNamespace": "bench-big-dr", "sourceCluster": "source",
        "destinationCluster": "dr", "replicationMode": "Continuous", "resourceTypes": ["configmaps"], "syncTrigger": "1"})).await;
    handled(dst, "big", "1").await;
    // Resident memory after the sync, sampled for 10 s (freed memory goes back to the system within that time).
    let mut samples = Vec::new();
    for _ in 0..20 {
        samples.push(rss_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(dst.clone(), "bench-big-dr");
    let replicated = cms
        .list(&Default::default())
        .await
        .map(|l| l.items.iter().filter(|c| c.name_any().starts_with("big-")).count())
        .unwrap_or(0);
    (samples.last().copied().unwrap_or(0), rss_kib(pid, "VmHWM:"), replicated)
}
