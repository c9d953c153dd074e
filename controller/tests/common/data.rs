//! Helpers of the PVC data tests: the source agents, volumes whose host-path directories the test fills and
//! compares directly, mappings that copy data, the OpenSSH client against the bastion, and what copies leave behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dr_syncer_api::agent::{AGENT_NAME, AGENT_NAMESPACE, AGENT_POLICY_SECRET, LABEL_APP};
use dr_syncer_api::constants::LABEL_DATA_ROLE;
use dr_syncer_api::namespace_mapping::{PvcDataPhase, PvcDataStatus};
use dr_syncer_controller::agent::host_keys;
use dr_syncer_testlab::eventually_async;
use dr_syncer_wire::keys;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::{Env, apply, remote_cluster};

/// Long waits: pods start, images load, copies run.
pub const DATA_WAIT: Duration = Duration::from_secs(240);

/// The source cluster's agents as the tests reach them.
pub struct Agents {
    /// The agents' public host key, as pinned by clients.
    pub host_public: String,
    /// Name and InternalIP of the source node.
    pub node: (String, String),
}

/// Removes agents a crashed earlier run left behind (they would belong to a control namespace that is gone).
pub async fn remove_leftover_agents(source: &Client) {
    let ds: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let _ = ds.delete(AGENT_NAME, &DeleteParams::default()).await;
    let secrets: Api<Secret> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let _ = secrets.delete(AGENT_POLICY_SECRET, &DeleteParams::default()).await;
}

/// Enables `pvcSync` on RemoteCluster `source` (with `extra` merged into it) and waits for Ready agents.
pub async fn enable_agents(env: &Env, extra: Value) -> Agents {
    enable_agents_with(env, "source-kubeconfig", extra).await
}

/// [`enable_agents`] with the source kubeconfig in Secret `kubeconfig_secret`.
pub async fn enable_agents_with(env: &Env, kubeconfig_secret: &str, extra: Value) -> Agents {
    remove_leftover_agents(&env.source_client).await;
    let mut rc = remote_cluster("source", kubeconfig_secret);
    let mut pvc_sync = json!({"enabled": true});
    if let (Some(target), Some(add)) = (pvc_sync.as_object_mut(), extra.as_object()) {
        target.extend(add.clone());
    }
    rc["spec"]["pvcSync"] = pvc_sync;
    env.apply_ctl(&rc).await;
    eventually_async("agents Ready", DATA_WAIT, || async {
        let rc = env.remote_clusters().get("source").await.map_err(|e| e.to_string())?;
        let phase = rc.status.and_then(|s| s.pvc_sync).and_then(|p| p.phase);
        if phase.as_deref() == Some("Ready") { Ok(()) } else { Err(format!("{phase:?}")) }
    })
    .await;
    let node = node_ip(&env.source_client).await;
    Agents { host_public: agent_host_key(&env.source_client, &node.0).await, node }
}

/// The host key the agent on `node` logged, as the controller reads it (waits for a running agent).
pub async fn agent_host_key(source: &Client, node: &str) -> String {
    eventually_async("agent host key", DATA_WAIT, || async {
        let keys = host_keys::read(source, Some(node), Duration::from_secs(10)).await.map_err(|f| f.message)?;
        match keys.as_slice() {
            [one] => Ok(one.key.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Name and InternalIP of the (only) node of a lab cluster.
pub async fn node_ip(client: &Client) -> (String, String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.list(&ListParams::default()).await.unwrap().items.remove(0);
    let ip = node.status.unwrap().addresses.unwrap().into_iter().find(|a| a.type_ == "InternalIP").unwrap().address;
    (node.metadata.name.unwrap(), ip)
}

/// The agent pods (one per node).
pub async fn agent_pods(source: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    pods.list(&ListParams::default().labels(&format!("{LABEL_APP}={AGENT_NAME}"))).await.unwrap().items
}

/// Creates PVC `name` of `size` in `namespace` and returns the host directory of its bound volume.
pub async fn source_volume(client: &Client, namespace: &str, name: &str, size: &str) -> PathBuf {
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
    apply(client, namespace, &pvc).await;
    volume_path(client, namespace, name).await
}

/// The host directory of the volume bound to PVC `namespace/name` (lab host-path volumes), once bound.
pub async fn volume_path(client: &Client, namespace: &str, name: &str) -> PathBuf {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let volume = eventually_async("PVC bound", DATA_WAIT, || async {
        let pvc = pvcs.get_opt(name).await.map_err(|e| e.to_string())?.ok_or("no PVC yet")?;
        let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        match pvc.spec.and_then(|s| s.volume_name) {
            Some(volume) if bound => Ok(volume),
            _ => Err("not bound".to_string()),
        }
    })
    .await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let path = pvs.get(&volume).await.unwrap().spec.unwrap().host_path.unwrap().path;
    std::fs::create_dir_all(&path).unwrap();
    PathBuf::from(path)
}

/// A Manual mapping copying the PVCs (only) of `source` to `destination`, with `data_config` as its
/// `dataSyncConfig` and quick retries.
pub fn data_mapping(source: &str, destination: &str, data_config: Value) -> Value {
    json!({"replicationMode": "Manual", "clusterMappingRef": {"name": "pair"},
           "sourceNamespace": source, "destinationNamespace": destination,
           "resourceTypes": ["persistentvolumeclaims"],
           "retryConfig": {"maxRetries": 12, "initialBackoff": "2s", "maxBackoff": "10s"},
           "pvcConfig": {"syncData": true, "dataSyncConfig": data_config}})
}

/// Waits until PVC `pvc` of mapping `mapping` satisfies `check`; returns its status.
pub async fn wait_pvc(
    env: &Env,
    mapping: &str,
    pvc: &str,
    what: &str,
    check: impl Fn(&PvcDataStatus) -> bool,
) -> PvcDataStatus {
    let api = env.mappings();
    eventually_async(what, DATA_WAIT, || async {
        let nm = api.get(mapping).await.map_err(|e| e.to_string())?;
        let data = nm.status.and_then(|s| s.data_sync).ok_or("no status.dataSync")?;
        let entry = data.pvcs.iter().find(|p| p.name == pvc).cloned().ok_or("PVC not in status")?;
        if check(&entry) { Ok(entry) } else { Err(serde_json::to_string(&entry).unwrap_or_default()) }
    })
    .await
}

/// `t` rounded down to the second: status times are written with second precision.
pub fn floor_second(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap()
}

/// Waits for a successful copy of `pvc` that started at or after `after`.
pub async fn wait_copied(env: &Env, mapping: &str, pvc: &str, after: jiff::Timestamp) -> PvcDataStatus {
    let after = floor_second(after);
    wait_pvc(env, mapping, pvc, "a successful copy", |p| {
        p.phase == PvcDataPhase::Succeeded && p.last_start_time.as_ref().is_some_and(|t| t.0 >= after)
    })
    .await
}

/// Copy pods, Jobs and Secrets (anything with the data-role label) still in `namespace`.
pub async fn copy_objects(client: &Client, namespace: &str) -> Vec<String> {
    let params = ListParams::default().labels(LABEL_DATA_ROLE);
    let mut names = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    names.extend(
        pods.list(&params).await.unwrap().items.into_iter().map(|p| format!("pod/{}", p.metadata.name.unwrap())),
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    names.extend(
        jobs.list(&params).await.unwrap().items.into_iter().map(|j| format!("job/{}", j.metadata.name.unwrap())),
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = secrets.list(&params).await.unwrap().items;
    names.extend(list.into_iter().map(|s| format!("secret/{}", s.metadata.name.unwrap())));
    names
}

/// Waits until neither namespace holds copy objects and the agent policy lists no target of any mapping.
pub async fn wait_clean(env: &Env, source_ns: &str, destination_ns: &str) {
    eventually_async("copy objects and agent targets removed", DATA_WAIT, || async {
        let mut left = copy_objects(&env.source_client, source_ns).await;
        left.extend(copy_objects(&env.dr_client, destination_ns).await);
        let targets = policy_text(&env.source_client, "targets.").await;
        if left.is_empty() && !targets.contains("2022") { Ok(()) } else { Err(format!("{left:?} {targets}")) }
    })
    .await;
}

/// The agent policy's documents whose key starts with `prefix`, concatenated.
pub async fn policy_text(source: &Client, prefix: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let Some(secret) = secrets.get_opt(AGENT_POLICY_SECRET).await.unwrap() else { return String::new() };
    let data = secret.data.unwrap_or_default();
    data.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| String::from_utf8_lossy(&v.0).to_string()).collect()
}

/// A private key in OpenSSH format as an ssh identity file in `dir`.
pub fn identity_file(dir: &Path, name: &str, private_openssh: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, private_openssh.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

/// Runs the OpenSSH client against the bastion at `ip`:2222 with identity `key` and a known_hosts pinning
/// `host_public`; returns (exit code, stdout, stderr).
pub fn ssh(
    dir: &Path,
    ip: &str,
    key: &Path,
    host_public: &str,
    options: &[&str],
    command: &[&str],
) -> (i32, String, String) {
    let known = dir.join("known_hosts");
    std::fs::write(&known, format!("[{ip}]:2222 {host_public}\n")).unwrap();
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-p", "2222", "-i"])
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "ConnectTimeout=10", "-o"])
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(options)
        .arg(format!("dr-syncer@{ip}"))
        .args(command)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A fresh client key written to `dir` (for keys the agents must refuse).
pub fn stranger_key(dir: &Path, name: &str) -> PathBuf {
    let key = keys::generate(name).unwrap();
    identity_file(dir, name, &key.private_openssh)
}
