//! Immutable-field changes on real API servers, per `immutableResourceConfig`, recognised by the API's structured
//! answer (a dry-run create of the refused object), not its words: NoChange leaves the DR object and says so per
//! object; the per-object label overrides the default; Recreate, PartialUpdate, RecreateWithPodDrain and ForceUpdate
//! apply the change — ForceUpdate without removing another controller's finalizer. A PersistentVolumeClaim is never
//! deleted by the default handling (`VolumeKept`), only when an override names its type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, WAIT, apply, get};
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const LABEL: &str = "dr-syncer.io/immutable-handling";
/// Server-side length of one watch request, below the lab client's 30 s read timeout: a quiet watch is renewed from
/// where it was instead of failing.
const WATCH_SECONDS: u32 = 20;

fn service(name: &str, headless: bool, extra_port: bool, handling: Option<&str>) -> Value {
    let mut ports = vec![json!({"name": "http", "port": 80, "protocol": "TCP"})];
    if extra_port {
        ports.push(json!({"name": "admin", "port": 9090, "protocol": "TCP"}));
    }
    let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {}},
        "spec": {"selector": {"app": name}, "ports": ports}});
    if headless {
        svc["spec"]["clusterIP"] = json!("None");
    }
    if let Some(h) = handling {
        svc["metadata"]["labels"][LABEL] = json!(h);
    }
    svc
}

fn stateful_set(service_name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": service_name, "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                {"name": "c", "image": "localhost/dr-syncer-lab/pause:3.2"}]}}}})
}

fn locked_config_map(value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "locked"}, "immutable": true, "data": {"v": value}})
}

/// Deletes a source object and creates it again from `obj`, once the deletion is complete.
async fn replace(env: &Env, ns: &str, api_version: &str, kind: &str, obj: &Value) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    common::delete(&env.source_client, api_version, kind, ns, &name).await;
    eventually_async("the source object gone", WAIT, || async {
        match get(&env.source_client, api_version, kind, ns, &name).await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    apply(&env.source_client, ns, obj).await;
}

/// Records, in arrival order, what tells a drain from a plain delete of the DR StatefulSet `db`: its replicas at
/// every change (`sts <uid> replicas <n>`), the start of its deletion (`sts <uid> deleting`) and each of its pods
/// gone (`pod <uid> gone`). Stops when dropped.
struct DrainRecorder {
    log: Log,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Watches `api` and appends what `describe` makes of each event to `log` (watch errors too; the watch resumes by
/// itself); signals `ready` once the initial list is done.
fn record<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
    log: Log,
    ready: tokio::sync::mpsc::Sender<()>,
    describe: fn(&kube::runtime::watcher::Event<K>) -> Vec<String>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event};
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config.timeout(WATCH_SECONDS)).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::InitDone) => {
                    let _ = ready.send(()).await;
                }
                Ok(event) => log.lock().unwrap().extend(describe(&event)),
                Err(e) => log.lock().unwrap().push(format!("watch error: {e}")),
            }
        }
    })
}

impl DrainRecorder {
    async fn start(client: &kube::Client, ns: &str) -> DrainRecorder {
        use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
        use kube::runtime::watcher::{Config, Event};
        let log: Log = std::sync::Arc::default();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(2);
        let sts_task = record(
            kube::Api::<StatefulSet>::namespaced(client.clone(), ns),
            Config::default().fields("metadata.name=db"),
            log.clone(),
            ready_tx.clone(),
            |event| {
                let (o, deleted) = match event {
                    Event::Apply(o) | Event::InitApply(o) => (o, false),
                    Event::Delete(o) => (o, true),
                    Event::Init | Event::InitDone => return vec![],
                };
                let uid = o.metadata.uid.clone().unwrap_or_default();
                let replicas = o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let mut lines = vec![format!("sts {uid} replicas {replicas}")];
                if deleted || o.metadata.deletion_timestamp.is_some() {
                    lines.push(format!("sts {uid} deleting"));
                }
                lines
            },
        );
        let pod_task = record(
            kube::Api::<Pod>::namespaced(client.clone(), ns),
            Config::default().labels("app=db"),
            log.clone(),
            ready_tx,
            |event| match event {
                Event::Delete(o) => vec![format!("pod {} gone", o.metadata.uid.clone().unwrap_or_default())],
                _ => vec![],
            },
        );
        // Both watches have listed: every later change is recorded.
        for _ in 0..2 {
            tokio::time::timeout(WAIT, ready_rx.recv()).await.expect("the drain watches list in time");
        }
        DrainRecorder { log, tasks: vec![sts_task, pod_task] }
    }

    /// Position of the first entry equal to `entry`.
    fn position(&self, entry: &str) -> Option<usize> {
        self.log.lock().unwrap().iter().position(|e| e == entry)
    }

    fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for DrainRecorder {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

async fn trigger(env: &Env, name: &str, spec: &Value, token: &str) -> dr_syncer_api::NamespaceMappingStatus {
    let mut spec = spec.clone();
    spec["syncTrigger"] = json!(token);
    env.mapping(name, spec).await;
    env.wait_mapping(name, "trigger handled", |s| {
        if s.last_handled_trigger.as_deref() == Some(token)
            && s.phase != Some(dr_syncer_api::namespace_mapping::NamespaceMappingPhase::Running)
        {
            Ok(s.clone())
        } else {
            Err("not yet".into())
        }
    })
    .await
}

#[tokio::test]
async fn immutable_changes_follow_the_chosen_handling() {
    let env = Env::start("immut").await;
    let src = TestNamespace::create(&env.source, "immut-src").await;
    let dst = unique_name("immut-dst");
    let _g = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &service("web", false, false, None)).await;
    apply(&env.source_client, src.name(), &service("api", false, false, None)).await;
    apply(&env.source_client, src.name(), &stateful_set("db-a")).await;
    apply(&env.source_client, src.name(), &locked_config_map("1")).await;
    let spec = json!({"sourceNamespace": src.name(), "destinationNamespace": dst, "clusterMappingRef": {"name": "pair"},
        "replicationMode": "Manual", "scaleToZero": false,
        "resourceTypes": ["services", "statefulsets", "configmaps"],
        "immutableResourceConfig": {"resourceOverrides": {"statefulsets.apps": "RecreateWithPodDrain", "configmaps": "ForceUpdate"},
            "drainTimeout": "3m", "forceDeleteTimeout": "30s"}});
    trigger(&env, "im", &spec, "1").await;
    let web_before = get(&env.dr_client, "v1", "Service", &dst, "web").await.unwrap();
    // The DR StatefulSet (not parked: scaleToZero false) runs its pod on the DR node; the drain below waits for it.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(env.dr_client.clone(), &dst);
    let db_pod = eventually_async("the DR pod of db running", WAIT, || async {
        let list = pods.list(&kube::api::ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let phases: Vec<_> = list.items.iter().map(|p| p.status.as_ref().and_then(|s| s.phase.clone())).collect();
        match list.items.first() {
            Some(p) if phases == [Some("Running".to_string())] => Ok(p.metadata.uid.clone().unwrap()),
            _ => Err(format!("{phases:?}")),
        }
    })
    .await;
    let db_before = get(&env.dr_client, "apps/v1", "StatefulSet", &dst, "db").await.unwrap();
    let db_before = db_before["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(web_before["spec"]["clusterIP"].as_str().is_some_and(|ip| ip != "None"));

    // The DR copy of the locked ConfigMap gets another controller's finalizer: ForceUpdate deletes at once but leaves
    // that finalizer to its owner.
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(env.dr_client.clone(), &dst);
    let fin = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    cms.patch("locked", &PatchParams::default(), &Patch::Merge(&fin)).await.unwrap();

    // web turns headless (NoChange by default), api turns headless with label PartialUpdate and gains a port,
    // db changes serviceName (drained and recreated), locked changes its data (forced).
    // The source cluster refuses these changes in place too: the source objects are deleted and created again.
    replace(&env, src.name(), "v1", "Service", &service("web", true, false, None)).await;
    replace(&env, src.name(), "v1", "Service", &service("api", true, true, Some("PartialUpdate"))).await;
    replace(&env, src.name(), "apps/v1", "StatefulSet", &stateful_set("db-b")).await;
    replace(&env, src.name(), "v1", "ConfigMap", &locked_config_map("2")).await;
    let drain = DrainRecorder::start(&env.dr_client, &dst).await;
    let s = trigger(&env, "im", &spec, "2").await;

    let entry = s.resource_status.iter().find(|r| r.name == "web").expect("a status entry for web");
    assert!(entry.error.as_deref().is_some_and(|e| e.starts_with("ImmutableFieldChanged")), "{entry:?}");
    let web = get(&env.dr_client, "v1", "Service", &dst, "web").await.unwrap();
    assert_eq!(web["metadata"]["uid"], web_before["metadata"]["uid"], "NoChange leaves the DR object");
    // The locked ConfigMap waits for its finalizer's owner (below): that failure comes first in Synced for now.
    let synced = s.conditions.iter().find(|c| c.type_ == "Synced").unwrap();
    assert_eq!(synced.reason, "ObjectsFailed", "{synced:?}");
    let counts = s.resource_counts.iter().find(|k| k.kind == "Service").unwrap();
    assert_eq!(counts.immutable, 1, "{counts:?}");

    let api = get(&env.dr_client, "v1", "Service", &dst, "api").await.unwrap();
    assert_ne!(api["spec"]["clusterIP"], "None", "PartialUpdate keeps the immutable clusterIP");
    assert_eq!(api["spec"]["ports"].as_array().unwrap().len(), 2, "and applies the rest: {api}");

    let db = get(&env.dr_client, "apps/v1", "StatefulSet", &dst, "db").await;
    let db = db.unwrap_or_else(|| panic!("the DR StatefulSet db is recreated: {:?}", s.resource_status));
    assert_eq!(db["spec"]["serviceName"], "db-b", "RecreateWithPodDrain applied the change");
    // A drain, not a plain delete (which removes the pod after, or while, the StatefulSet goes): the old StatefulSet
    // was scaled to zero, its pod was gone, and only then was the StatefulSet deleted.
    let scaled = drain.position(&format!("sts {db_before} replicas 0"));
    let pod_gone = drain.position(&format!("pod {db_pod} gone"));
    let deleting = drain.position(&format!("sts {db_before} deleting"));
    let order = (scaled, pod_gone, deleting);
    assert!(
        matches!(order, (Some(a), Some(b), Some(c)) if a < b && b < c),
        "scaled to 0, pod gone, then deleted: {order:?} in {:#?}",
        drain.entries()
    );
    let locked = get(&env.dr_client, "v1", "ConfigMap", &dst, "locked").await.unwrap();
    assert_eq!(locked["metadata"]["finalizers"], json!(["example.com/hold"]), "another controller's finalizer stays");
    assert!(locked["metadata"]["deletionTimestamp"].is_string(), "deleted, waiting for its finalizer: {locked}");
    let entry = s.resource_status.iter().find(|r| r.name == "locked").expect("a status entry for locked");
    assert!(entry.error.as_deref().is_some_and(|e| e.contains("DeleteTimeout")), "{entry:?}");
    // Its owner lets go: the next sync creates it anew with the change.
    let release = json!({"metadata": {"finalizers": null}});
    cms.patch("locked", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    let s = trigger(&env, "im", &spec, "2b").await;
    let locked = get(&env.dr_client, "v1", "ConfigMap", &dst, "locked").await.unwrap();
    assert_eq!(locked["data"]["v"], "2", "ForceUpdate applied the change once the finalizer went");
    let synced = s.conditions.iter().find(|c| c.type_ == "Synced").unwrap();
    assert_eq!(synced.reason, "ImmutableFieldChanged", "web is still left as it is: {synced:?}");

    // The per-object label switches web to Recreate: the next sync replaces it.
    let label = json!({"metadata": {"labels": {LABEL: "Recreate"}}});
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(env.source_client.clone(), src.name());
    services.patch("web", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    let s = trigger(&env, "im", &spec, "3").await;
    assert!(s.resource_status.iter().all(|r| r.name != "web"), "{:?}", s.resource_status);
    eventually_async("web recreated headless", WAIT, || async {
        let web = get(&env.dr_client, "v1", "Service", &dst, "web").await.ok_or("missing")?;
        if web["spec"]["clusterIP"] == "None" { Ok(()) } else { Err(format!("{}", web["spec"])) }
    })
    .await;
    assert!(env.event_reasons("im").await.iter().any(|r| r == "ImmutableFieldChangeApplied"));
}

fn claim(access_modes: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": access_modes, "resources": {"requests": {"storage": "8Mi"}}}})
}

/// The DR claim holds the replicated data: a change the API refuses in place never deletes it by the default handling
/// (even ForceUpdate) or a label; an override naming the type does.
#[tokio::test]
async fn a_claim_is_never_recreated_unless_an_override_names_its_type() {
    let env = Env::start("immut-pvc").await;
    let src = TestNamespace::create(&env.source, "immut-pvc-src").await;
    let dst = unique_name("immut-pvc-dst");
    let _g = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &claim(&["ReadWriteOnce"])).await;
    let mut spec = json!({"sourceNamespace": src.name(), "destinationNamespace": dst,
        "clusterMappingRef": {"name": "pair"}, "replicationMode": "Manual",
        "resourceTypes": ["persistentvolumeclaims"],
        "immutableResourceConfig": {"defaultHandling": "ForceUpdate", "forceDeleteTimeout": "30s"}});
    trigger(&env, "vol", &spec, "1").await;
    let before = get(&env.dr_client, "v1", "PersistentVolumeClaim", &dst, "data").await.unwrap();

    let mut labelled = claim(&["ReadWriteOnce", "ReadOnlyMany"]);
    labelled["metadata"]["labels"] = json!({LABEL: "Recreate"});
    replace(&env, src.name(), "v1", "PersistentVolumeClaim", &labelled).await;
    let s = trigger(&env, "vol", &spec, "2").await;
    let entry = s.resource_status.iter().find(|r| r.name == "data").expect("a status entry for the claim");
    assert!(entry.error.as_deref().is_some_and(|e| e.starts_with("VolumeKept")), "{entry:?}");
    let kept = get(&env.dr_client, "v1", "PersistentVolumeClaim", &dst, "data").await.unwrap();
    assert_eq!(kept["metadata"]["uid"], before["metadata"]["uid"], "the DR claim and its data stay");
    assert!(kept["metadata"]["deletionTimestamp"].is_null(), "{kept}");

    spec["immutableResourceConfig"]["resourceOverrides"] = json!({"persistentvolumeclaims": "Recreate"});
    trigger(&env, "vol", &spec, "3").await;
    eventually_async("the claim recreated as the override asks", WAIT, || async {
        let now = get(&env.dr_client, "v1", "PersistentVolumeClaim", &dst, "data").await.ok_or("missing")?;
        let modes = now["spec"]["accessModes"].as_array().map(Vec::len).unwrap_or(0);
        if now["metadata"]["uid"] != before["metadata"]["uid"] && modes == 2 { Ok(()) } else { Err(format!("{now}")) }
    })
    .await;
}
