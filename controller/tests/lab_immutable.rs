//! Immutable-field changes on real API servers, per `immutableResourceConfig`: NoChange leaves the DR object and
//! says so per object; the per-object label overrides the default; Recreate, PartialUpdate, RecreateWithPodDrain and
//! ForceUpdate (past a finalizer) apply the change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, WAIT, apply, get};
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const LABEL: &str = "dr-syncer.io/immutable-handling";

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
    eventually_async("the DR pod of db running", WAIT, || async {
        let list = pods.list(&kube::api::ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let phases: Vec<_> = list.items.iter().map(|p| p.status.as_ref().and_then(|s| s.phase.clone())).collect();
        if phases == [Some("Running".to_string())] { Ok(()) } else { Err(format!("{phases:?}")) }
    })
    .await;
    assert!(web_before["spec"]["clusterIP"].as_str().is_some_and(|ip| ip != "None"));

    // The DR copy of the locked ConfigMap gets a finalizer nobody removes: only ForceUpdate gets past it.
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
    let s = trigger(&env, "im", &spec, "2").await;

    let entry = s.resource_status.iter().find(|r| r.name == "web").expect("a status entry for web");
    assert!(entry.error.as_deref().is_some_and(|e| e.starts_with("ImmutableFieldChanged")), "{entry:?}");
    let web = get(&env.dr_client, "v1", "Service", &dst, "web").await.unwrap();
    assert_eq!(web["metadata"]["uid"], web_before["metadata"]["uid"], "NoChange leaves the DR object");
    let synced = s.conditions.iter().find(|c| c.type_ == "Synced").unwrap();
    assert_eq!(synced.reason, "ImmutableFieldChanged", "{synced:?}");
    let counts = s.resource_counts.iter().find(|k| k.kind == "Service").unwrap();
    assert_eq!(counts.immutable, 1, "{counts:?}");

    let api = get(&env.dr_client, "v1", "Service", &dst, "api").await.unwrap();
    assert_ne!(api["spec"]["clusterIP"], "None", "PartialUpdate keeps the immutable clusterIP");
    assert_eq!(api["spec"]["ports"].as_array().unwrap().len(), 2, "and applies the rest: {api}");

    let db = get(&env.dr_client, "apps/v1", "StatefulSet", &dst, "db").await;
    let db = db.unwrap_or_else(|| panic!("the DR StatefulSet db is recreated: {:?}", s.resource_status));
    assert_eq!(db["spec"]["serviceName"], "db-b", "RecreateWithPodDrain applied the change");
    let locked = get(&env.dr_client, "v1", "ConfigMap", &dst, "locked").await.unwrap();
    assert_eq!(locked["data"]["v"], "2", "ForceUpdate got past the finalizer");

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
