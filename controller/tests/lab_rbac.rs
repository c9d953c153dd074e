//! The example permissions in docs/examples (rbac-source.yaml, rbac-dr.yaml) are enough, and the only ones given:
//! the RemoteClusters use tokens of service accounts bound to exactly those roles, and the agents install, the
//! ClusterMapping's agent check connects, the default kinds are replicated and a PVC's data is copied. The
//! examples grant no wildcard and no write in the source cluster beyond dr-syncer's own objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::data::{self, DATA_WAIT};
use common::{Env, remote_cluster};
use dr_syncer_testlab::manifests::{Applier, parse};
use dr_syncer_testlab::{LabCluster, TestNamespace, eventually_async, unique_name};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use kube::config::{AuthInfo, Kubeconfig};
use serde_json::{Value, json};

/// Namespace and name of the service account the examples bind.
const IDENTITY: (&str, &str) = ("dr-syncer-access", "dr-syncer");

fn example(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples").join(name);
    parse(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn rules(docs: &[Value]) -> Vec<(String, Value)> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|d| {
            let kind = d["kind"].as_str().unwrap().to_string();
            d["rules"].as_array().unwrap().iter().map(move |r| (kind.clone(), r.clone()))
        })
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn examples_grant_no_wildcard_and_no_source_writes_but_dr_syncer_objects() {
    for file in ["rbac-source.yaml", "rbac-dr.yaml"] {
        for (_, rule) in rules(&example(file)) {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(!strings(&rule[field]).contains(&"*"), "{file}: wildcard in {rule}");
            }
            assert!(!strings(&rule["verbs"]).iter().any(|v| ["escalate", "bind", "impersonate"].contains(v)), "{rule}");
        }
    }
    // Cluster-wide in the source: reads, plus creating and deleting the rsync pods and their Secrets; nothing is
    // ever updated or patched there outside namespace dr-syncer.
    for (kind, rule) in rules(&example("rbac-source.yaml")) {
        let writes: Vec<&str> =
            strings(&rule["verbs"]).into_iter().filter(|v| !["get", "list", "watch"].contains(v)).collect();
        if kind == "ClusterRole" && !writes.is_empty() {
            let resources = strings(&rule["resources"]);
            assert!(resources.iter().all(|r| ["pods", "secrets"].contains(r)), "{rule}");
            assert!(writes.iter().all(|v| ["create", "delete", "deletecollection"].contains(v)), "{rule}");
        }
    }
}

/// Applies an example file to `cluster` and returns a kubeconfig with a token of its service account.
async fn restricted_kubeconfig(cluster: &LabCluster, file: &str) -> String {
    let client = cluster.client().await;
    let applier = Applier::new(client.clone()).await;
    for doc in example(file) {
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        applier.apply(&namespace, &doc).await.unwrap_or_else(|e| panic!("apply {doc}: {e}"));
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client, IDENTITY.0);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(7200), ..Default::default() },
        ..Default::default()
    };
    let token = eventually_async("a token", DATA_WAIT, || async {
        let made = accounts.create_token_request(IDENTITY.1, &PostParams::default(), &request).await;
        made.map_err(|e| e.to_string())?.status.map(|s| s.token).ok_or_else(|| "no token".to_string())
    })
    .await;
    let mut config = Kubeconfig::from_yaml(&cluster.kubeconfig_yaml()).unwrap();
    for user in &mut config.auth_infos {
        user.auth_info = Some(AuthInfo { token: Some(token.clone().into()), ..Default::default() });
    }
    serde_json::to_string(&config).unwrap()
}

#[tokio::test]
async fn the_data_path_works_when_the_remote_clusters_hold_only_the_example_permissions() {
    let env = Env::start("lab-rbac").await;
    let source_config = restricted_kubeconfig(&env.source, "rbac-source.yaml").await;
    let dr_config = restricted_kubeconfig(&env.dr, "rbac-dr.yaml").await;
    env.kubeconfig_secret("source-restricted", &source_config).await;
    env.kubeconfig_secret("dr-restricted", &dr_config).await;
    env.apply_ctl(&remote_cluster("dr", "dr-restricted")).await;
    let agents = data::enable_agents_with(&env, "source-restricted", json!({})).await;
    for name in ["source", "dr"] {
        eventually_async("RemoteCluster healthy with its restricted identity", DATA_WAIT, || async {
            let rc = env.remote_clusters().get(name).await.map_err(|e| e.to_string())?;
            let conditions = rc.status.map(|s| s.conditions).unwrap_or_default();
            let bad: Vec<_> = conditions.iter().filter(|c| c.status != "True").collect();
            if bad.is_empty() && !conditions.is_empty() { Ok(()) } else { Err(format!("{name}: {bad:?}")) }
        })
        .await;
    }
    env.apply_ctl(
        &json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "metadata": {"name": "pair"},
        "spec": {"sourceCluster": "source", "targetCluster": "dr", "verifyConnectivity": true}}),
    )
    .await;
    eventually_async("agents handshake", DATA_WAIT, || async {
        let cm = env.cluster_mappings().get("pair").await.map_err(|e| e.to_string())?;
        let status = cm.status.unwrap_or_default();
        let connected = status.connection_status.as_ref().is_some_and(|c| c.connected_agents == 1);
        if connected { Ok(()) } else { Err(format!("{:?} {:?}", status.connection_status, status.conditions)) }
    })
    .await;

    // The default kinds and a PVC with data, replicated by a mapping that names no resourceTypes.
    let src = TestNamespace::create(&env.source, "lab-rbac-src").await;
    let dst = unique_name("lab-rbac-dst");
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    let labels = json!({"app": "web"});
    for object in [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"t": "x"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": labels, "ports": [{"port": 80, "protocol": "TCP"}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [{"name": "c", "image": "registry.invalid/web:1"}]}}}}),
    ] {
        common::apply(&env.source_client, src.name(), &object).await;
    }
    let volume = data::source_volume(&env.source_client, src.name(), "data", "64Mi").await;
    std::fs::write(volume.join("state.db"), "replicated with least privilege\n").unwrap();
    env.mapping(
        "m",
        json!({"replicationMode": "Manual", "clusterMappingRef": {"name": "pair"},
               "sourceNamespace": src.name(), "destinationNamespace": dst,
               "retryConfig": {"maxRetries": 12, "initialBackoff": "2s", "maxBackoff": "10s"},
               "pvcConfig": {"syncData": true}}),
    )
    .await;
    let t0 = jiff::Timestamp::now();
    env.sync_now("m").await;
    data::wait_copied(&env, "m", "data", t0).await;
    let dest = data::volume_path(&env.dr_client, &dst, "data").await;
    assert_eq!(std::fs::read_to_string(dest.join("state.db")).unwrap(), "replicated with least privilege\n");
    for (api_version, kind, name) in [
        ("v1", "ConfigMap", "settings"),
        ("v1", "Secret", "token"),
        ("v1", "Service", "web"),
        ("apps/v1", "Deployment", "web"),
    ] {
        let found = common::get(&env.dr_client, api_version, kind, &dst, name).await;
        assert!(found.is_some(), "{kind} {name} not replicated");
    }
    // Every object of the default kinds went through: nothing was refused for lack of a permission.
    let status = env.wait_synced_after("m", None).await;
    let synced = status.conditions.iter().find(|c| c.type_ == "Synced").map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(synced, Some(("True".to_string(), "Synced".to_string())), "{:?}", status.resource_status);
    let deployment = common::get(&env.dr_client, "apps/v1", "Deployment", &dst, "web").await.unwrap();
    assert_eq!(deployment["spec"]["replicas"], json!(0), "parked at zero");
    data::wait_clean(&env, src.name(), &dst).await;
    let _ = agents;
}
