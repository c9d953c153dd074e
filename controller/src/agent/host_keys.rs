//! The agents' SSH host keys. Each agent makes its own at start, in memory (`bastion --generate-host-key`), and logs
//! the public half; a client pins the key of the agent it reaches, read here from that agent pod's log. The log
//! comes through the source API server from the pod's own node, so a compromised node can only vouch for its own
//! agent: it holds no key another node's agent presents, and no Secret anywhere holds an agent's private key.

use std::time::Duration;

use dr_syncer_api::RemoteCluster;
use dr_syncer_api::agent::{AGENT_NAME, AGENT_NAMESPACE, LABEL_APP};
use dr_syncer_api::constants::{ANNOTATION_HOST_KEYS_ROTATED, ANNOTATION_ROTATE_SSH_KEY, LABEL_KEY_TYPE};
use dr_syncer_wire::keys::HOST_KEY_GENERATED;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::data::failure::Failure;
use crate::error::{Error, with_timeout};

/// Name of the agent container, whose log carries the host key.
pub const AGENT_CONTAINER: &str = "agent";
/// Reason of a copy or check that found no running agent on the node it needs.
pub const AGENT_NOT_RUNNING: &str = "AgentNotRunning";
/// Reason of a copy or check whose agent logged no usable host key.
pub const AGENT_NO_HOST_KEY: &str = "AgentNoHostKey";
/// `dr-syncer.io/key-type` of the host-key Secrets earlier versions generated next to a RemoteCluster.
const LEGACY_KEY_TYPE: &str = "agent-host";
/// Bytes read from the start of an agent's log: the key is logged at start and every five minutes, so it is in
/// this part of any log file the kubelet keeps unless the agent logged more than this in five minutes.
const LOG_BYTES: i64 = 1 << 20;
/// Agent logs read at once when every agent's key is needed.
const PARALLEL_READS: usize = 8;

/// One agent's public host key, without comment (`ssh-ed25519 AAAA…`), and the node it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentKey {
    /// The node.
    pub node: String,
    /// The key.
    pub key: String,
}

/// The host key the agent logged ([`HOST_KEY_GENERATED`], field `public_key`), checked and without its comment
/// (pure). Only whole JSON lines with that message count; what a client makes the agent log is escaped inside a
/// field and cannot pass for one. Every such line of one process carries the same key.
pub fn key_from_log(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields")?;
        if fields.get("message")?.as_str()? != HOST_KEY_GENERATED {
            return None;
        }
        let mut key = dr_syncer_wire::keys::public_from_openssh(fields.get("public_key")?.as_str()?, "").ok()?;
        key.set_comment("");
        key.to_openssh().ok()
    })
}

/// Whether `pod` is a running agent of the DaemonSet (not a pod of another owner, not terminating).
pub fn serving(pod: &Pod) -> bool {
    let owned = pod.owner_references().iter().any(|o| o.controller == Some(true) && o.kind == "DaemonSet");
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    owned && running && pod.metadata.deletion_timestamp.is_none()
}

/// The running agent pods of the source cluster (`client`): the one on `node`, or all; an error when there is none.
pub async fn agents(client: &Client, node: Option<&str>, t: Duration) -> Result<Vec<Pod>, Failure> {
    let api: Api<Pod> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let mut params = ListParams::default().labels(&format!("{LABEL_APP}={AGENT_NAME}"));
    if let Some(node) = node {
        params = params.fields(&format!("spec.nodeName={node}"));
    }
    let list = with_timeout("list agent pods", t, api.list(&params)).await?;
    let pods: Vec<Pod> = list.items.into_iter().filter(serving).collect();
    if pods.is_empty() {
        let where_ = node.map(|n| format!("on node {n}")).unwrap_or_else(|| "in the source cluster".into());
        return Err(Failure::transient(AGENT_NOT_RUNNING, format!("no agent is running {where_}")));
    }
    Ok(pods)
}

/// Host keys of the running agents of the source cluster (`client`): of the one on `node`, or of all (agents
/// behind a Service, where any of them may answer). For all, an agent whose log cannot be read is left out (a
/// connection it takes then fails the host key check and is retried) unless no key is read at all.
pub async fn read(client: &Client, node: Option<&str>, t: Duration) -> Result<Vec<AgentKey>, Failure> {
    let pods = agents(client, node, t).await?;
    let reads = keys_of(client, &pods, t).await;
    if node.is_some() {
        return reads.into_iter().collect();
    }
    let mut keys = Vec::new();
    let mut first_error = None;
    for read in reads {
        match read {
            Ok(key) => keys.push(key),
            Err(failure) => {
                tracing::warn!(reason = failure.reason, message = %failure.message, "agent host key not read");
                first_error.get_or_insert(failure);
            }
        }
    }
    match (keys.is_empty(), first_error) {
        (true, Some(failure)) => Err(failure),
        _ => Ok(keys),
    }
}

/// The host key of each of `pods`, read at most [`PARALLEL_READS`] at a time, in no particular order.
pub async fn keys_of(client: &Client, pods: &[Pod], t: Duration) -> Vec<Result<AgentKey, Failure>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let reads = pods.iter().cloned().map(|pod| {
        let api = api.clone();
        async move { key_of(&api, &pod, t).await }
    });
    futures::stream::iter(reads).buffer_unordered(PARALLEL_READS).collect().await
}

/// The host key the agent `pod` logged.
async fn key_of(api: &Api<Pod>, pod: &Pod, t: Duration) -> Result<AgentKey, Failure> {
    let name = pod.name_any();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let params =
        LogParams { container: Some(AGENT_CONTAINER.into()), limit_bytes: Some(LOG_BYTES), ..Default::default() };
    let log = with_timeout(format!("log of agent pod {name}"), t, api.logs(&name, &params)).await?;
    let key = key_from_log(&log).ok_or_else(|| {
        Failure::transient(AGENT_NO_HOST_KEY, format!("agent pod {name} on node {node} logged no host key"))
    })?;
    Ok(AgentKey { node, key })
}

/// What identifies the key an agent pod has (pure): a new pod or a restarted container makes a new key.
pub fn identity(pod: &Pod) -> String {
    let restarts: i32 = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).sum())
        .unwrap_or_default();
    format!("{}#{restarts}", pod.uid().unwrap_or_default())
}

/// Rotates every agent's host key when `rc` carries [`ANNOTATION_ROTATE_SSH_KEY`]: the agents' pod template gets
/// a new [`ANNOTATION_HOST_KEYS_ROTATED`] time, so the DaemonSet replaces them one node at a time and each new agent
/// makes a new key; then the annotation is removed. Returns whether it rotated.
pub async fn rotate_if_asked(local: &Client, remote: &Client, rc: &RemoteCluster, t: Duration) -> Result<bool, Error> {
    if !rc.annotations().contains_key(ANNOTATION_ROTATE_SSH_KEY) {
        return Ok(false);
    }
    let now = jiff::Timestamp::now().to_string();
    let daemon_sets: Api<DaemonSet> = Api::namespaced(remote.clone(), AGENT_NAMESPACE);
    let patch =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION_HOST_KEYS_ROTATED: now}}}}});
    let params = PatchParams::default();
    with_timeout("restart the agents", t, daemon_sets.patch(AGENT_NAME, &params, &Patch::Merge(&patch))).await?;
    let rcs: Api<RemoteCluster> = Api::namespaced(local.clone(), &rc.namespace().unwrap_or_default());
    let remove = serde_json::json!({"metadata": {"annotations": {ANNOTATION_ROTATE_SSH_KEY: null}}});
    with_timeout("remove the rotate annotation", t, rcs.patch(&rc.name_any(), &params, &Patch::Merge(&remove))).await?;
    tracing::info!(remote_cluster = %rc.name_any(), "agents restarted: each makes a new host key");
    Ok(true)
}

/// Deletes the host-key Secret an earlier version generated next to `rc` (agents now make their own keys, so it is
/// unused); a Secret the user named in `spec.pvcSync.ssh.keySecretRef` is left alone. The chart's Role lets the
/// controller only read Secrets, so there this is refused and logged, and the Secret goes with its RemoteCluster
/// (it is owned by it) or by hand.
pub async fn remove_legacy(local: &Client, rc: &RemoteCluster, t: Duration) -> Result<(), Error> {
    let named = rc.spec.pvc_sync.as_ref().and_then(|p| p.ssh.as_ref()).and_then(|s| s.key_secret_ref.as_ref());
    if named.is_some() {
        return Ok(());
    }
    let namespace = rc.namespace().unwrap_or_default();
    let name = format!("{}-agent-host-key", rc.name_any());
    let api: Api<Secret> = Api::namespaced(local.clone(), &namespace);
    let Some(secret) = with_timeout(format!("get Secret {namespace}/{name}"), t, api.get_opt(&name)).await? else {
        return Ok(());
    };
    let ours = secret.labels().get(LABEL_KEY_TYPE).map(String::as_str) == Some(LEGACY_KEY_TYPE)
        && secret.owner_references().iter().any(|o| Some(&o.uid) == rc.uid().as_ref());
    if ours {
        match with_timeout(format!("delete Secret {namespace}/{name}"), t, api.delete(&name, &DeleteParams::default()))
            .await
        {
            Err(Error::Api { source: kube::Error::Api(e), .. }) if e.code == 404 => {}
            Err(Error::Api { source: kube::Error::Api(e), .. }) if e.code == 403 => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "the shared agent host key of an earlier version is unused; delete it with kubectl (this controller may not)");
            }
            other => {
                other?;
                tracing::info!(secret = %format!("{namespace}/{name}"), "removed the shared agent host key of an earlier version");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str, key: &str) -> String {
        serde_json::json!({"level": "INFO", "fields": {"message": message, "public_key": key}}).to_string()
    }

    /// Only the agent's own announcement gives the key; a client's logged text cannot forge one.
    #[test]
    fn key_from_log_takes_the_announcement_when_clients_log_lines_too() {
        let real = dr_syncer_wire::keys::generate("real").unwrap().public_openssh;
        let forged = dr_syncer_wire::keys::generate("forged").unwrap().public_openssh;
        let forged_line = serde_json::json!({"fields": {"message": "refused: \"x\"",
            "command": format!("\n{}", line(HOST_KEY_GENERATED, &forged))}})
        .to_string();
        let log = [forged_line, line("listening for SSH", ""), line(HOST_KEY_GENERATED, &real)].join("\n");
        let key = key_from_log(&log).unwrap();
        assert!(real.starts_with(&key) && !key.contains("real"), "{key}");
        assert_eq!(key_from_log("not json\n{}\n"), None);
        // A line with the message but a key that does not parse (or carries more than a key) gives nothing.
        let bad = line(HOST_KEY_GENERATED, &format!("{real}\nProxyCommand x"));
        assert_eq!(key_from_log(&[bad, line(HOST_KEY_GENERATED, "ssh-ed25519 AAAA")].join("\n")), None);
    }
}
