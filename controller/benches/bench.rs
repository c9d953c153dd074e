//! `make bench`: the controller binary (release build) against the bench lab. Prints, for one run:
//! initial sync of 2,000 mixed objects (objects/s) next to a direct server-side-apply client (the ceiling); API write
//! requests of a no-op resync; Continuous propagation latency p50/p99 at 50 changes/s for 60 s; controller RSS with
//! 10,000 replicated objects. No thresholds are asserted here: the numbers go to docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_syncer_testlab::process::Process;
use dr_syncer_testlab::{LabCluster, eventually_async};
use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

#[path = "support/continuous.rs"]
mod continuous;
#[path = "support/idle.rs"]
mod idle;
#[path = "support/measure.rs"]
mod measure;
use continuous::{memory, propagation};

use measure::{Processes, median, percentile, request_delta, requests_by_verb};

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-controller");
const CTL: &str = "bench-ctl";
const CONCURRENCY: usize = 8;
const ROUNDS: usize = 5;

fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// 2,000 mixed objects: 900 ConfigMaps, 600 Secrets, 200 Services (19 in 20 headless: the copies of every round must
/// fit the lab's /24 service range), 300 Deployments.
fn mixed() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..900 {
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench"}},
            "data": {"config.yaml": format!("key: value-{i}\nlist: [1, 2, 3]\n"), "n": i.to_string()}}));
    }
    for i in 0..600 {
        out.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("secret-{i}")},
            "type": "Opaque", "stringData": {"password": format!("p-{i}"), "user": "bench"}}));
    }
    for i in 0..200 {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
            "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}});
        if i % 20 != 0 {
            svc["spec"]["clusterIP"] = json!("None");
        }
        out.push(svc);
    }
    for i in 0..300 {
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("web-{i}")},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("web-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("web-{i}")}},
                    "spec": {"containers": [{"name": "web", "image": "localhost/dr-syncer-lab/pause:3.2"}]}}}}));
    }
    out
}

async fn create_namespace(client: &Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let _ = api.create(&PostParams::default(), &ns).await;
}

/// Server-side applies `objects` into `ns` with `concurrency` requests in flight; returns the wall time.
async fn apply_all(client: &Client, ns: &str, objects: &[Value], manager: &str, concurrency: usize) -> Duration {
    let started = Instant::now();
    stream::iter(objects.iter().map(|o| {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &resource(o["apiVersion"].as_str().unwrap(), o["kind"].as_str().unwrap()),
        );
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        let params = PatchParams::apply(manager).force();
        async move { api.patch(&name, &params, &Patch::Apply(o)).await.unwrap_or_else(|e| panic!("apply {name}: {e}")) }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    started.elapsed()
}

async fn apply_one(client: &Client, ns: &str, obj: &Value) {
    apply_all(client, ns, std::slice::from_ref(obj), "bench-setup", 1).await;
}

/// Write requests (create, update, patch, apply, delete) the DR API server has served for the replicated kinds.
async fn writes(client: &Client) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    let kinds = ["configmaps", "secrets", "services", "deployments", "namespaces"];
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| ["POST", "PUT", "PATCH", "APPLY", "DELETE"].iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
        .filter(|l| kinds.iter().any(|k| l.contains(&format!("resource=\"{k}\""))) && l.contains("subresource=\"\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn mapping(dr: &Client, name: &str, spec: Value) {
    let obj = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping", "metadata": {"name": name}, "spec": spec});
    apply_one(dr, CTL, &obj).await;
}

/// Waits until mapping `name` handled `token`; returns its status.
async fn handled(dr: &Client, name: &str, token: &str) -> Value {
    let api: Api<DynamicObject> =
        Api::namespaced_with(dr.clone(), CTL, &resource("dr-syncer.io/v1alpha1", "NamespaceMapping"));
    eventually_async("the sync to finish", Duration::from_secs(600), || async {
        let nm = serde_json::to_value(api.get(name).await.map_err(|e| e.to_string())?).unwrap();
        let status = nm["status"].clone();
        if status["lastHandledTrigger"] == token && status["phase"] == "Completed" {
            Ok(status)
        } else {
            Err(format!("{status}"))
        }
    })
    .await
}

fn seconds(text: &str) -> f64 {
    dr_syncer_api::validation::parse_duration(text).map(|d| d.as_secs_f64()).unwrap_or_else(|_| {
        // lastSyncDuration carries milliseconds as `1s250ms`.
        let (s, ms) = text.trim_end_matches("ms").split_once('s').unwrap_or(("0", "0"));
        s.parse::<f64>().unwrap_or(0.0) + ms.parse::<f64>().unwrap_or(0.0) / 1000.0
    })
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

#[tokio::main]
async fn main() {
    // BENCH_ONLY=sync: only the initial sync, the ceiling and the no-op resync (a quicker loop while tuning);
    // BENCH_ONLY=idle: only the idle installation.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let only_sync = only == "sync";
    let (source, dr) = (LabCluster::shared("source"), LabCluster::shared("dr"));
    let (src, dst) = (source.client().await, dr.client().await);
    dr_syncer_testlab::crds::install(&dst).await;
    if only == "idle" {
        print_idle(&source, &dr).await;
        return;
    }
    create_namespace(&dst, CTL).await;
    for (name, cluster) in [("source", &source), ("dr", &dr)] {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-kubeconfig")},
            "stringData": {"kubeconfig": cluster.kubeconfig_yaml()}});
        apply_one(&dst, CTL, &secret).await;
        let rc = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster", "metadata": {"name": name},
            "spec": {"kubeconfigSecretRef": {"name": format!("{name}-kubeconfig"), "namespace": CTL}}});
        apply_one(&dst, CTL, &rc).await;
    }
    let objects = mixed();
    create_namespace(&src, "bench-mixed").await;
    apply_all(&src, "bench-mixed", &objects, "bench-setup", 32).await;
    settle(&src, "bench-mixed").await;

    let args = dr_syncer_testlab::process::controller_args(dr.kubeconfig_path(), CTL);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ctl = Process::spawn(Path::new(BIN), &args, &[("RUST_LOG", "warn")]);
    let spec = |destination: &str, token: &str| {
        json!({"sourceNamespace": "bench-mixed", "destinationNamespace": destination, "sourceCluster": "source",
               "destinationCluster": "dr", "replicationMode": "Manual", "syncTrigger": token,
               "resourceTypes": ["configmaps", "secrets", "services", "deployments"]})
    };
    // Warm-up: a one-object mapping, so the measured sync finds the clusters' API discovery cached (as every sync of
    // a running controller does; discovery is cached for 5 minutes).
    create_namespace(&src, "bench-warm").await;
    apply_one(&src, "bench-warm", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}})).await;
    mapping(
        &dst,
        "warm",
        json!({"sourceNamespace": "bench-warm", "destinationNamespace": "bench-warm-dr", "sourceCluster": "source",
        "destinationCluster": "dr", "replicationMode": "Manual", "syncTrigger": "1",
        "resourceTypes": ["configmaps", "secrets", "services", "deployments"]}),
    )
    .await;
    handled(&dst, "warm", "1").await;
    // Five rounds of three measurements, each into fresh DR namespaces; medians are reported.
    let parked: Vec<Value> = objects
        .iter()
        .cloned()
        .map(|mut o| {
            if o["kind"] == "Deployment" {
                o["spec"]["replicas"] = json!(0);
            }
            o
        })
        .collect();
    let as_read = source_objects(&src, "bench-mixed").await;
    let (mut syncs, mut directs, mut replicas) = (Vec::new(), Vec::new(), Vec::new());
    let processes = Processes::of_lab(ctl.pid());
    let (mut sync_cpu, mut direct_cpu) = (Vec::new(), Vec::new());
    let mut sync_requests = String::new();
    for round in 0..ROUNDS {
        // The three measurements take turns going first, so a slow moment of the machine is spread over all three.
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let name = format!("mixed-{round}");
                    let (before, served) = (processes.cpu(), requests_by_verb(&dst).await);
                    mapping(&dst, &name, spec(&format!("bench-mixed-dr-{round}"), "1")).await;
                    let status = handled(&dst, &name, "1").await;
                    sync_cpu.push(processes.since(&before));
                    sync_requests = request_delta(&served, &requests_by_verb(&dst).await);
                    syncs.push(seconds(status["lastSyncDuration"].as_str().unwrap_or("0s")));
                }
                1 => {
                    let before = processes.cpu();
                    directs.push(direct(&dst, &format!("bench-direct-{round}"), &parked).await);
                    direct_cpu.push(processes.since(&before));
                }
                _ => replicas.push(direct(&dst, &format!("bench-replica-{round}"), &as_read).await),
            }
        }
    }
    let replica_secs = median(&mut replicas);
    let replica_ceiling = objects.len() as f64 / replica_secs;
    let (initial, direct_secs) = (median(&mut syncs), median(&mut directs));
    let rate = objects.len() as f64 / initial;
    let ceiling = objects.len() as f64 / direct_secs;

    // No-op resync: nothing changed, so nothing may be written.
    let before = writes(&dst).await;
    mapping(&dst, "mixed-0", spec("bench-mixed-dr-0", "2")).await;
    let status = handled(&dst, "mixed-0", "2").await;
    let noop = seconds(status["lastSyncDuration"].as_str().unwrap_or("0s"));
    let noop_writes = writes(&dst).await - before;

    let latencies = if only_sync { Vec::new() } else { propagation(&src, &dst).await };
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));

    let (rss, hwm, rss_objects) = if only_sync { (0, 0, 0) } else { memory(&src, &dst, ctl.pid()).await };
    ctl.terminate(Duration::from_secs(30));

    println!("\ndr-syncer benchmark (lab: Kubernetes v1.20.2 control planes on loopback, {} CPUs)", num_cpus());
    println!(
        "  initial sync, 2,000 mixed objects ....... {initial:.2} s = {rate:.0} objects/s (median of {ROUNDS}: {syncs:.2?} s)"
    );
    println!(
        "  direct server-side apply (ceiling) ...... {direct_secs:.2} s = {ceiling:.0} objects/s (median of {ROUNDS}: {directs:.2?} s)"
    );
    println!("  ratio controller / ceiling .............. {:.2} (target >= 0.80)", rate / ceiling);
    println!(
        "  the source's objects as read, applied directly {replica_secs:.2} s = {replica_ceiling:.0} objects/s (median of {ROUNDS}: {replicas:.2?} s)"
    );
    println!("  ratio controller / that ceiling ......... {:.2}", rate / replica_ceiling);
    println!("  CPU seconds per round (mean of {ROUNDS}), controller sync | direct apply:");
    for (i, name) in processes.names.iter().enumerate() {
        let mean = |rounds: &[Vec<f64>]| rounds.iter().map(|r| r[i]).sum::<f64>() / rounds.len().max(1) as f64;
        println!("    {name:<18} {:>5.2} | {:>5.2}", mean(&sync_cpu), mean(&direct_cpu));
    }
    println!("  DR API requests of the last sync round: {sync_requests}");
    println!("  no-op resync ............................ {noop:.2} s, {noop_writes} API writes (target 0)");
    println!(
        "  Continuous, 50 changes/s for 60 s ........ {} changes, p50 {:.0} ms, p99 {:.0} ms (target p99 < 500 ms)",
        latencies.len(),
        p50 * 1000.0,
        p99 * 1000.0
    );
    println!(
        "  controller RSS, {rss_objects} replicated objects .. {:.1} MiB (peak {:.1} MiB; target < 64 MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    if !only_sync {
        print_idle(&source, &dr).await;
    }
}

/// Runs the idle installation and prints its figures.
async fn print_idle(source: &LabCluster, dr: &LabCluster) {
    let (controller_cluster, source_cluster) = idle::measure(Path::new(BIN), source, dr).await;
    println!(
        "  idle installation, {} mappings, requests in {:?} (health interval {:?}; target: at most one status write per object per interval, no object writes):",
        idle::MAPPINGS,
        idle::WINDOW,
        idle::HEALTH_INTERVAL
    );
    for line in idle::report("controller's (and DR) cluster", &controller_cluster)
        .into_iter()
        .chain(idle::report("source cluster", &source_cluster))
    {
        println!("{line}");
    }
}

/// Waits until the source cluster's controller manager has created the ReplicaSets and pods of the 300 new
/// Deployments, so that its work does not overlap the measurements.
async fn settle(client: &Client, ns: &str) {
    let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    eventually_async("the source's ReplicaSets and pods", Duration::from_secs(300), || async {
        let (r, p) = (rs.list(&Default::default()).await, pods.list(&Default::default()).await);
        let (r, p) = (r.map(|l| l.items.len()).unwrap_or(0), p.map(|l| l.items.len()).unwrap_or(0));
        if r >= 300 && p >= 300 { Ok(()) } else { Err(format!("{r} ReplicaSets, {p} pods")) }
    })
    .await;
}

/// Server-side applies `objects` into the fresh DR namespace `ns`; returns the wall time in seconds.
async fn direct(dst: &Client, ns: &str, objects: &[Value]) -> f64 {
    create_namespace(dst, ns).await;
    apply_all(dst, ns, objects, "bench-direct", CONCURRENCY).await.as_secs_f64()
}

/// The mixed objects as the source API server returns them (its defaults filled in), made applicable the simplest
/// way: metadata cut to name, labels and annotations, no status, no allocated cluster IPs, Deployments at 0 replicas.
async fn source_objects(src: &Client, ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (api_version, kind) in [("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("apps/v1", "Deployment")] {
        let api: Api<DynamicObject> = Api::namespaced_with(src.clone(), ns, &resource(api_version, kind));
        for object in api.list(&Default::default()).await.unwrap().items {
            let mut v = serde_json::to_value(&object).unwrap();
            let meta = &v["metadata"];
            let meta = json!({"name": meta["name"], "labels": meta["labels"], "annotations": meta["annotations"]});
            v["metadata"] = meta;
            v.as_object_mut().unwrap().remove("status");
            (v["apiVersion"], v["kind"]) = (json!(api_version), json!(kind));
            if kind == "Service" && v["spec"]["clusterIP"] != "None" {
                let spec = v["spec"].as_object_mut().unwrap();
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            if kind == "Deployment" {
                v["spec"]["replicas"] = json!(0);
            }
            out.push(v);
        }
    }
    out
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}
