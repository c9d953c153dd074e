//! The ClusterMapping's check of the data path, from the DR cluster: a short-lived pod there runs
//! `dr-syncer-agent probe`, an SSH handshake with the agent of every source node at the address the copy Jobs use,
//! each agent's own host key pinned (read from its log, as the copies do). Results are kept for [`RECHECK`] unless
//! the agents change, so a healthy pairing starts one pod per interval, not one per verification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_syncer_api::agent::{AGENT_BINARY, AGENT_NAME, AGENT_NAMESPACE, AGENT_USER_ID, LABEL_APP};
use dr_syncer_api::cluster_mapping::{ConnectionDetail, ConnectionStatus};
use dr_syncer_api::constants::{
    LABEL_DATA_ROLE, LABEL_MANAGED_BY, LABEL_MAPPING, LABEL_MAPPING_NAMESPACE, MANAGED_BY_VALUE,
};
use dr_syncer_wire::probe::{KnownKey, ProbeResult, Target};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::json;

use crate::data::run::{AgentAccess, agent_address};
use crate::error::with_timeout;
use crate::sync::ownership::label_value;

/// How long a successful check is reused while the agents stay the same.
pub const RECHECK: Duration = Duration::from_secs(600);
/// `dr-syncer.io/data-role` of probe pods.
pub const ROLE_PROBE: &str = "agent-probe";
/// Time allowed for each handshake inside the probe pod.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A check result: when, for which agents (their addresses and key), and what.
type Cached = (Instant, String, ConnectionStatus);

/// Recent check results per ClusterMapping.
#[derive(Clone, Default)]
pub struct ProbeCache(Arc<Mutex<HashMap<String, Cached>>>);

impl ProbeCache {
    fn get(&self, key: &str, signature: &str) -> Option<ConnectionStatus> {
        let map = self.0.lock().ok()?;
        let (at, sig, status) = map.get(key)?;
        (sig == signature && at.elapsed() < RECHECK && all_connected(status)).then(|| status.clone())
    }

    fn put(&self, key: &str, signature: String, status: &ConnectionStatus) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key.to_string(), (Instant::now(), signature, status.clone()));
        }
    }
}

/// Whether `status` shows every source agent reachable (and at least one agent).
pub fn all_connected(status: &ConnectionStatus) -> bool {
    status.total_source_agents > 0 && status.connected_agents == status.total_source_agents
}

/// The probe pod (pure): the agent image as user 65532, nothing mounted, no token, handshakes with `targets`, each
/// accepting the `known` keys for its node.
pub fn probe_pod(name: &str, mapping: (&str, &str), image: &str, known: &[KnownKey], targets: &[Target]) -> Pod {
    let mut args = vec!["probe".to_string(), "--timeout".into(), humantime::format_duration(HANDSHAKE).to_string()];
    for key in known {
        args.push("--host-key".into());
        args.push(key.to_arg());
    }
    for target in targets {
        args.push("--target".into());
        args.push(target.to_arg());
    }
    let labels = json!({LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_DATA_ROLE: ROLE_PROBE,
        LABEL_MAPPING: label_value(mapping.1), LABEL_MAPPING_NAMESPACE: label_value(mapping.0)});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": name, "namespace": AGENT_NAMESPACE, "labels": labels},
    "spec": {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": 120,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": true, "runAsUser": AGENT_USER_ID, "runAsGroup": AGENT_USER_ID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": [AGENT_BINARY], "args": args,
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                "privileged": false, "capabilities": {"drop": ["ALL"]}}}],
    }});
    serde_json::from_value(pod).unwrap_or_default()
}

/// Folds the probe's result lines into the status (pure): one detail per node, in node order; a node without a
/// result (address unknown, probe ended early) is not connected, with `missing`'s reason.
pub fn fold(
    nodes: &[String],
    results: &[ProbeResult],
    missing: &HashMap<String, String>,
    target_node: &str,
) -> ConnectionStatus {
    let details: Vec<ConnectionDetail> = nodes
        .iter()
        .map(|node| {
            let found = results.iter().find(|r| &r.node == node);
            let error = match found {
                Some(r) if r.connected => None,
                Some(r) => Some(r.error.clone().unwrap_or_else(|| "handshake failed".into())),
                None => Some(missing.get(node).cloned().unwrap_or_else(|| "the probe reported nothing".into())),
            };
            ConnectionDetail {
                source_node: node.clone(),
                target_node: target_node.to_string(),
                connected: error.is_none(),
                error,
            }
        })
        .collect();
    ConnectionStatus {
        total_source_agents: details.len() as i32,
        connected_agents: details.iter().filter(|d| d.connected).count() as i32,
        connection_details: details,
    }
}

/// What a check needs.
pub struct Check<'a> {
    /// Client of the source cluster (its agents).
    pub source: &'a Client,
    /// Client of the target (DR) cluster, where the probe pod runs.
    pub target: &'a Client,
    /// How the agents are reached.
    pub access: &'a AgentAccess,
    /// The agent image.
    pub image: &'a str,
    /// Namespace and name of the ClusterMapping.
    pub mapping: (&'a str, &'a str),
    /// Time allowed for each API request.
    pub timeout: Duration,
}

/// Checks the agent of every source node that runs one, from a pod in the target cluster; reuses a recent
/// successful result while the agents and their key are unchanged.
pub async fn check(c: &Check<'_>, cache: &ProbeCache) -> Result<ConnectionStatus, String> {
    let t = c.timeout;
    let agents: Api<Pod> = Api::namespaced(c.source.clone(), AGENT_NAMESPACE);
    let params = ListParams::default().labels(&format!("{LABEL_APP}={AGENT_NAME}"));
    let list = with_timeout("list agent pods", t, agents.list(&params)).await.map_err(|e| e.to_string())?;
    let mut nodes: Vec<String> = list.items.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    let agents: Vec<Pod> = list.items.into_iter().filter(super::host_keys::serving).collect();
    nodes.sort();
    nodes.dedup();
    let mut targets: Vec<Target> = Vec::new();
    let mut missing = HashMap::new();
    for node in &nodes {
        match agent_address(c.source, c.access, node, t).await {
            Ok((host, port)) => targets.push(Target { node: node.clone(), host, port }),
            Err(failure) => {
                missing.insert(node.clone(), failure.message);
            }
        }
    }
    let key = format!("{}/{}", c.mapping.0, c.mapping.1);
    // The agents' keys change only with their pods and containers, so those stand for the keys here.
    let identities: Vec<String> = agents.iter().map(super::host_keys::identity).collect();
    let signature = format!("{identities:?}|{targets:?}");
    if let Some(status) = cache.get(&key, &signature) {
        return Ok(status);
    }
    let mut known = Vec::new();
    for read in super::host_keys::keys_of(c.source, &agents, t).await {
        match read {
            // Behind a Service any agent may answer a target; otherwise only the node's own.
            Ok(k) => known.push(KnownKey {
                node: (!c.access.service).then(|| k.node.clone()),
                key: dr_syncer_wire::keys::public_from_openssh(&k.key, "agent host key").map_err(|e| e.to_string())?,
            }),
            Err(failure) => {
                tracing::warn!(reason = failure.reason, message = %failure.message, "agent host key not read");
            }
        }
    }
    targets.retain(|target| {
        let pinned = known.iter().any(|k| k.node.as_deref().is_none_or(|n| n == target.node));
        if !pinned {
            let why = format!("the agent on node {} is not running or logged no host key", target.node);
            missing.insert(target.node.clone(), why);
        }
        pinned
    });
    let (results, target_node) =
        if targets.is_empty() { (Vec::new(), String::new()) } else { run_pod(c, &targets, &known).await? };
    let status = fold(&nodes, &results, &missing, &target_node);
    cache.put(&key, signature, &status);
    Ok(status)
}

/// Labels selecting the probe pods of one ClusterMapping.
fn selector(mapping: (&str, &str)) -> String {
    format!(
        "{LABEL_DATA_ROLE}={ROLE_PROBE},{LABEL_MAPPING}={},{LABEL_MAPPING_NAMESPACE}={}",
        label_value(mapping.1),
        label_value(mapping.0)
    )
}

/// Deletes a probe pod when dropped, also when the check is cancelled midway (its time budget ran out).
struct PodGuard {
    pods: Api<Pod>,
    name: String,
    timeout: Duration,
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        let (pods, name, t) = (self.pods.clone(), std::mem::take(&mut self.name), self.timeout);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(t, pods.delete(&name, &DeleteParams::default().grace_period(0))).await;
            });
        }
    }
}

/// Runs the probe pod to its end; returns its result lines and the node it ran on. The pod is always deleted, and
/// probe pods of the same mapping that an interrupted check (or controller) left are deleted first.
async fn run_pod(c: &Check<'_>, targets: &[Target], known: &[KnownKey]) -> Result<(Vec<ProbeResult>, String), String> {
    let t = c.timeout;
    ensure_namespace(c.target, t).await?;
    let pods: Api<Pod> = Api::namespaced(c.target.clone(), AGENT_NAMESPACE);
    let params = ListParams::default().labels(&selector(c.mapping));
    if let Ok(left) = with_timeout("list leftover probe pods", t, pods.list(&params)).await {
        for pod in left.items {
            let name = pod.metadata.name.unwrap_or_default();
            let _ = tokio::time::timeout(t, pods.delete(&name, &DeleteParams::default().grace_period(0))).await;
        }
    }
    let suffix: u32 = rand::random();
    let hash = crate::data::short_hash(&format!("{}/{}", c.mapping.0, c.mapping.1));
    let name = format!("dr-syncer-probe-{}-{:08x}", &hash[..10], suffix);
    let pod = probe_pod(&name, c.mapping, c.image, known, targets);
    with_timeout(format!("create Pod {AGENT_NAMESPACE}/{name}"), t, pods.create(&PostParams::default(), &pod))
        .await
        .map_err(|e| format!("cannot start the probe pod in the target cluster: {e}"))?;
    let _guard = PodGuard { pods: pods.clone(), name: name.clone(), timeout: t };
    wait_and_read(&pods, &name, t).await
}

async fn wait_and_read(pods: &Api<Pod>, name: &str, t: Duration) -> Result<(Vec<ProbeResult>, String), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut why = String::from("not scheduled");
    loop {
        let pod = with_timeout(format!("get Pod {name}"), t, pods.get(name)).await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let params = LogParams { container: Some("probe".into()), ..Default::default() };
            let log = with_timeout(format!("logs of Pod {name}"), t, pods.logs(name, &params))
                .await
                .map_err(|e| e.to_string())?;
            return Ok((log.lines().filter_map(ProbeResult::from_line).collect(), node));
        }
        if let Some(waiting) =
            status.container_statuses.iter().flatten().find_map(|c| c.state.as_ref()?.waiting.as_ref())
        {
            why = format!(
                "{}: {}",
                waiting.reason.clone().unwrap_or_default(),
                waiting.message.clone().unwrap_or_default()
            );
        }
        if Instant::now() >= deadline {
            return Err(format!("the probe pod {AGENT_NAMESPACE}/{name} in the target cluster did not finish: {why}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn ensure_namespace(client: &Client, t: Duration) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let found = with_timeout("get the probe namespace", t, namespaces.get_opt(AGENT_NAMESPACE)).await;
    if found.map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": AGENT_NAMESPACE,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE}}}))
    .unwrap_or_default();
    match with_timeout("create the probe namespace", t, namespaces.create(&PostParams::default(), &ns)).await {
        Ok(_) => Ok(()),
        Err(crate::error::Error::Api { source: kube::Error::Api(e), .. }) if e.code == 409 => Ok(()),
        Err(e) => Err(format!("cannot create namespace {AGENT_NAMESPACE} in the target cluster: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn result(node: &str, error: Option<&str>) -> ProbeResult {
        ProbeResult {
            node: node.into(),
            address: "h:1".into(),
            connected: error.is_none(),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn fold_reports_every_node_and_explains_the_missing_ones() {
        let nodes = vec!["a".to_string(), "b".into(), "c".into()];
        let missing = HashMap::from([("c".to_string(), "node c has no address".to_string())]);
        let status = fold(&nodes, &[result("a", None), result("b", Some("refused"))], &missing, "dr-node");
        assert_eq!((status.total_source_agents, status.connected_agents), (3, 1));
        let errors: Vec<Option<&str>> = status.connection_details.iter().map(|d| d.error.as_deref()).collect();
        assert_eq!(errors, [None, Some("refused"), Some("node c has no address")]);
        assert!(status.connection_details.iter().all(|d| d.target_node == "dr-node"));
        assert!(!all_connected(&status));
        assert!(!all_connected(&fold(&[], &[], &HashMap::new(), "")), "no agents is not connected");
    }

    #[test]
    fn probe_pod_runs_unprivileged_without_token_and_names_every_target() {
        let host = dr_syncer_wire::address::Host::parse("10.0.0.1", false).unwrap();
        let targets = [Target { node: "n1".into(), host, port: 2222 }];
        let key = dr_syncer_wire::keys::generate("agent").unwrap();
        let public = dr_syncer_wire::keys::public_from_openssh(&key.public_openssh, "k").unwrap();
        let known = [KnownKey { node: Some("n1".into()), key: public }];
        let pod = probe_pod("p", ("ops", "pair"), "img:1", &known, &targets);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        let container = &spec.containers[0];
        let sc = container.security_context.clone().unwrap();
        assert_eq!((sc.read_only_root_filesystem, sc.allow_privilege_escalation), (Some(true), Some(false)));
        let args = container.args.clone().unwrap();
        assert!(args.windows(2).any(|w| w == ["--target", "n1=10.0.0.1:2222"]), "{args:?}");
        assert!(
            args.windows(2).any(|w| w[0] == "--host-key" && KnownKey::parse(&w[1]).unwrap() == known[0]),
            "{args:?}"
        );
    }
}
