//! An idle installation: what a controller with nothing to do asks of the API servers. Four RemoteClusters (one with
//! agents that never get ready — the bench lab has no nodes — and two unreachable), three ClusterMappings (two
//! failing) and 50 Scheduled NamespaceMappings whose next sync is months away; after their first syncs, requests
//! are counted over one minute on the controller's cluster (also the DR cluster) and the source cluster, together
//! with the changes those requests made to the controller's objects (a server-side apply that changes nothing is a
//! request, not a write: the object and its resourceVersion stay as they were).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dr_syncer_testlab::process::Process;
use dr_syncer_testlab::{LabCluster, eventually_async};
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::json;

use super::{apply_one, create_namespace, resource};

/// Control namespace of the idle installation.
const IDLE: &str = "bench-idle";
/// Mappings in it.
pub const MAPPINGS: usize = 50;
/// How long requests are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The controller's health interval (its default).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(60);

/// Requests served by one API server: `(verb, resource/subresource)` → count.
pub type Requests = BTreeMap<(String, String), f64>;

/// Every request the API server has served so far, by verb and resource.
pub async fn requests(client: &Client) -> Requests {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    let label = |line: &str, name: &str| -> String {
        line.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string()
    };
    let mut out = Requests::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let (verb, res, sub) = (label(line, "verb"), label(line, "resource"), label(line, "subresource"));
        let what = if sub.is_empty() { res } else { format!("{res}/{sub}") };
        let count = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry((verb, what)).or_insert(0.0) += count;
    }
    out
}

/// `after - before`, zero counts left out.
pub fn delta(before: &Requests, after: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n >= 1.0)
        .collect()
}

/// Whether `verb` changes something.
pub fn is_write(verb: &str) -> bool {
    ["POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"].contains(&verb)
}

/// Counts the changes (watch events after the initial list) to `resources` in `namespace`, by kind, until dropped.
struct ChangeCounter {
    counts: std::sync::Arc<std::sync::Mutex<BTreeMap<String, f64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ChangeCounter {
    async fn start(client: &Client, namespace: &str, resources: &[(&str, &str)]) -> ChangeCounter {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        use kube::runtime::watcher::{self, Event};
        let counts = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let (listed_tx, mut listed) = tokio::sync::mpsc::channel(resources.len().max(1));
        let mut tasks = Vec::new();
        for (api_version, kind) in resources {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource(api_version, kind));
            let (counts, listed_tx, kind) = (counts.clone(), listed_tx.clone(), kind.to_string());
            tasks.push(tokio::spawn(async move {
                let mut events =
                    watcher::watcher(api, watcher::Config::default().timeout(20)).default_backoff().boxed();
                let mut initial = true;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(Event::InitDone) if initial => {
                            initial = false;
                            let _ = listed_tx.send(()).await;
                        }
                        Ok(Event::Apply(_) | Event::Delete(_)) if !initial => {
                            *counts.lock().unwrap().entry(kind.clone()).or_insert(0.0) += 1.0;
                        }
                        _ => {}
                    }
                }
            }));
        }
        for _ in resources {
            tokio::time::timeout(Duration::from_secs(60), listed.recv()).await.unwrap();
        }
        ChangeCounter { counts, tasks }
    }

    fn counts(&self) -> BTreeMap<String, f64> {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for ChangeCounter {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// What one API server served in the window.
pub struct Served {
    /// Writes and reads (WATCH requests that stay open are not counted again).
    pub writes: f64,
    /// Reads: GET, LIST and new WATCH requests.
    pub reads: f64,
    /// The writes by verb and resource, largest first.
    pub write_detail: Vec<((String, String), f64)>,
    /// The reads by verb and resource, largest first.
    pub read_detail: Vec<((String, String), f64)>,
    /// Changes made to the controller's objects (status included), by kind.
    pub changes: BTreeMap<String, f64>,
}

fn served(requests: &Requests, changes: BTreeMap<String, f64>) -> Served {
    let mut writes: Vec<_> = requests.iter().filter(|((v, _), _)| is_write(v)).map(|(k, n)| (k.clone(), *n)).collect();
    let mut reads: Vec<_> = requests.iter().filter(|((v, _), _)| !is_write(v)).map(|(k, n)| (k.clone(), *n)).collect();
    writes.sort_by(|a, b| b.1.total_cmp(&a.1));
    reads.sort_by(|a, b| b.1.total_cmp(&a.1));
    Served {
        // `+ 0.0`: an empty sum is -0.0, printed "-0".
        writes: writes.iter().map(|(_, n)| n).sum::<f64>() + 0.0,
        reads: reads.iter().map(|(_, n)| n).sum::<f64>() + 0.0,
        write_detail: writes,
        read_detail: reads,
        changes,
    }
}

/// Sets the installation up, runs a controller for it, and returns what the controller's cluster and the source
/// cluster served in [`WINDOW`].
pub async fn measure(bin: &Path, source: &LabCluster, dr: &LabCluster) -> (Served, Served) {
    let (src, dst) = (source.client().await, dr.client().await);
    create_namespace(&dst, IDLE).await;
    // The same kubeconfig with a server where nothing listens.
    let yaml = dr.kubeconfig_yaml();
    let server = yaml.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
    let unreachable = yaml.replace(&server, "https://127.0.0.1:1");
    for (name, kubeconfig, pvc_sync) in [
        ("source", source.kubeconfig_yaml(), true),
        ("dr", dr.kubeconfig_yaml(), false),
        ("gone-1", unreachable.clone(), false),
        ("gone-2", unreachable, false),
    ] {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-kubeconfig")},
            "stringData": {"kubeconfig": kubeconfig}});
        apply_one(&dst, IDLE, &secret).await;
        let rc = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster", "metadata": {"name": name},
            "spec": {"kubeconfigSecretRef": {"name": format!("{name}-kubeconfig"), "namespace": IDLE},
                     "pvcSync": {"enabled": pvc_sync}}});
        apply_one(&dst, IDLE, &rc).await;
    }
    for (name, from, to) in [("pair", "source", "dr"), ("broken-1", "gone-1", "dr"), ("broken-2", "source", "gone-2")] {
        let cm = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "metadata": {"name": name},
            "spec": {"sourceCluster": from, "targetCluster": to, "verifyConnectivity": false}});
        apply_one(&dst, IDLE, &cm).await;
    }
    create_namespace(&src, "bench-idle-src").await;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}});
    apply_one(&src, "bench-idle-src", &config).await;
    for i in 0..MAPPINGS {
        let nm = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping",
            "metadata": {"name": format!("idle-{i}")},
            "spec": {"clusterMappingRef": {"name": "pair"}, "sourceNamespace": "bench-idle-src",
                     "destinationNamespace": format!("bench-idle-dr-{i}"), "replicationMode": "Scheduled",
                     "schedule": "0 0 1 1 *", "resourceTypes": ["configmaps"]}});
        apply_one(&dst, IDLE, &nm).await;
    }
    let args = dr_syncer_testlab::process::controller_args(dr.kubeconfig_path(), IDLE);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ctl = Process::spawn(bin, &args, &[("RUST_LOG", "warn")]);
    let mappings: Api<DynamicObject> =
        Api::namespaced_with(dst.clone(), IDLE, &resource("dr-syncer.io/v1alpha1", "NamespaceMapping"));
    eventually_async("the first sync of every idle mapping", Duration::from_secs(600), || async {
        let list = mappings.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let synced = list.items.iter().filter(|m| m.data["status"]["lastSyncTime"].is_string()).count();
        if synced == MAPPINGS { Ok(()) } else { Err(format!("{synced} of {MAPPINGS} synced")) }
    })
    .await;
    settle(&dst).await;
    let ours = [
        ("dr-syncer.io/v1alpha1", "RemoteCluster"),
        ("dr-syncer.io/v1alpha1", "ClusterMapping"),
        ("dr-syncer.io/v1alpha1", "NamespaceMapping"),
    ];
    let dst_changes = ChangeCounter::start(&dst, IDLE, &ours).await;
    let agents = [
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("apps/v1", "DaemonSet"),
        ("v1", "Secret"),
        ("v1", "Service"),
    ];
    let src_changes = ChangeCounter::start(&src, dr_syncer_api::agent::AGENT_NAMESPACE, &agents).await;
    let (dst_before, src_before) = (requests(&dst).await, requests(&src).await);
    tokio::time::sleep(WINDOW).await;
    let (dst_after, src_after) = (requests(&dst).await, requests(&src).await);
    let changes = (dst_changes.counts(), src_changes.counts());
    ctl.terminate(Duration::from_secs(30));
    (served(&delta(&dst_before, &dst_after), changes.0), served(&delta(&src_before, &src_after), changes.1))
}

/// Waits until the DR cluster's own controllers are done with the 50 new namespaces (service accounts, their token
/// Secrets, root CA ConfigMaps): their writes are not the controller's and would hide its figures.
async fn settle(dst: &Client) {
    let theirs = |r: &Requests| -> f64 {
        r.iter()
            .filter(|((verb, what), _)| {
                verb == "POST" && ["serviceaccounts", "secrets", "configmaps"].contains(&what.as_str())
                    || verb == "PUT" && what == "serviceaccounts"
            })
            .map(|(_, n)| n)
            .sum()
    };
    let started = std::time::Instant::now();
    let mut last = theirs(&requests(dst).await);
    while started.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = theirs(&requests(dst).await);
        if now == last {
            return;
        }
        last = now;
    }
}

/// The report lines of one API server.
pub fn report(name: &str, s: &Served) -> Vec<String> {
    let top = |detail: &[((String, String), f64)]| {
        detail.iter().take(6).map(|((v, r), n)| format!("{v} {r} {n:.0}")).collect::<Vec<_>>().join(", ")
    };
    let changed: f64 = s.changes.values().sum::<f64>() + 0.0;
    let by_kind = s.changes.iter().map(|(k, n)| format!("{k} {n:.0}")).collect::<Vec<_>>().join(", ");
    vec![format!(
        "    {name}: {changed:.0} object changes/min ({by_kind}); {:.0} write requests/min ({}), {:.0} reads/min ({})",
        s.writes,
        top(&s.write_detail),
        s.reads,
        top(&s.read_detail)
    )]
}
