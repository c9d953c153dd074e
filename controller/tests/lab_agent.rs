//! The agents in a real source cluster: enabling `pvcSync` on a RemoteCluster installs the bastion DaemonSet
//! (non-root, read-only, no host access), each agent with a host key of its own made in memory (the shared key
//! Secrets of earlier versions are removed); the real OpenSSH client pins the key the controller reads from the
//! agent's log, and a restarted agent has a new one; the bastion follows its policy Secret through the API (a key added there authenticates, a
//! forward is allowed only to a listed address, refusals are logged with the key's fingerprint); a second
//! RemoteCluster cannot take the agents over; disabling `pvcSync` removes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Env, data, remote_cluster};
use dr_syncer_api::agent::{
    AGENT_NAME, AGENT_NAMESPACE, AGENT_POLICY_SECRET, POLICY_AUTHORIZED_KEY, policy_targets_key,
};
use dr_syncer_api::constants::LABEL_KEY_TYPE;
use dr_syncer_api::remote_cluster::PvcSyncStatus;
use dr_syncer_testlab::eventually_async;
use dr_syncer_wire::keys;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

async fn pvc_sync_status(env: &Env, name: &str) -> Option<PvcSyncStatus> {
    env.remote_clusters().get(name).await.ok()?.status?.pvc_sync
}

async fn enable(env: &Env, name: &str, enabled: bool) {
    let mut rc = remote_cluster(name, "source-kubeconfig");
    rc["spec"]["pvcSync"] = json!({"enabled": enabled});
    env.apply_ctl(&rc).await;
}

/// When our field manager last wrote each agent object (its managed-fields time moves with every write, even one
/// that changes nothing on some API server versions).
async fn our_writes(env: &Env) -> Vec<Option<String>> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    async fn written<K>(client: &kube::Client) -> Option<String>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object = Api::<K>::namespaced(client.clone(), AGENT_NAMESPACE).get(AGENT_NAME).await.unwrap();
        let ours = dr_syncer_api::constants::FIELD_MANAGER_DATA;
        let entries = object.meta().managed_fields.clone().unwrap_or_default();
        entries.into_iter().find(|m| m.manager.as_deref() == Some(ours)).and_then(|m| m.time).map(|t| format!("{t:?}"))
    }
    let c = &env.source_client;
    vec![
        written::<ServiceAccount>(c).await,
        written::<Role>(c).await,
        written::<RoleBinding>(c).await,
        written::<DaemonSet>(c).await,
    ]
}

/// The agents are checked every health interval (5 s here): while they are as planned nothing is written; a change
/// made by hand is put back.
async fn objects_are_written_only_when_they_differ_from_the_plan(env: &Env) {
    let heartbeat = || async {
        let rc = env.remote_clusters().get("source").await.map_err(|e| e.to_string())?;
        rc.status.and_then(|s| s.last_sync_time).map(|t| t.0).ok_or_else(|| "no heartbeat".to_string())
    };
    let before = our_writes(env).await;
    let start = heartbeat().await.unwrap();
    // Two heartbeats later the agents have been checked at least once more (a check is due every interval).
    let later = |after: jiff::Timestamp| {
        move || async move {
            let t = heartbeat().await?;
            if t > after { Ok(t) } else { Err(format!("still {t}")) }
        }
    };
    let first = eventually_async("the next heartbeat", WAIT, later(start)).await;
    eventually_async("another heartbeat", WAIT, later(first)).await;
    assert_eq!(our_writes(env).await, before, "agent objects written although nothing changed");
    // A rule widened by hand is put back at the next check.
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    let widened =
        json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "delete"]}]});
    roles.patch(AGENT_NAME, &PatchParams::default(), &Patch::Merge(&widened)).await.unwrap();
    eventually_async("the Role put back as planned", WAIT, || async {
        let role = roles.get(AGENT_NAME).await.map_err(|e| e.to_string())?;
        let rules = role.rules.unwrap_or_default();
        let verbs: Vec<String> = rules.iter().flat_map(|r| r.verbs.clone()).collect();
        let names: Vec<String> = rules.into_iter().flat_map(|r| r.resource_names.unwrap_or_default()).collect();
        if verbs == ["get", "list", "watch"] && names == [AGENT_POLICY_SECRET] {
            Ok(())
        } else {
            Err(format!("{verbs:?} {names:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn agents_install_with_host_keys_of_their_own_and_follow_their_policy_secret() {
    let env = Env::start("lab-agent").await;
    data::remove_leftover_agents(&env.source_client).await;
    // What an earlier version left: the shared host key, next to the RemoteCluster and in the source cluster.
    enable(&env, "source", false).await;
    let rc = env.remote_clusters().get("source").await.unwrap();
    let legacy = |namespace: &str, name: &str| {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some(namespace.into());
        secret.metadata.labels = Some([(LABEL_KEY_TYPE.to_string(), "agent-host".to_string())].into());
        secret.string_data = Some([("ssh_host_ed25519_key".to_string(), "old".to_string())].into());
        secret
    };
    let ctl_secrets: Api<Secret> = Api::namespaced(env.dr_client.clone(), env.ctl.name());
    let mut old = legacy(env.ctl.name(), "source-agent-host-key");
    old.metadata.owner_references = rc.controller_owner_ref(&()).map(|o| vec![o]);
    ctl_secrets.create(&PostParams::default(), &old).await.unwrap();
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NAMESPACE}});
    common::apply(&env.source_client, "", &namespace).await;
    let source_secrets: Api<Secret> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    let _ = source_secrets.delete("dr-syncer-agent-host-key", &DeleteParams::default()).await;
    let mut old = legacy(AGENT_NAMESPACE, "dr-syncer-agent-host-key");
    let owner = format!("{}/source", env.ctl.name());
    old.metadata.annotations = Some([("dr-syncer.io/agent-owner".to_string(), owner)].into());
    source_secrets.create(&PostParams::default(), &old).await.unwrap();
    enable(&env, "source", true).await;
    eventually_async("agents Ready", WAIT, || async {
        let s = pvc_sync_status(&env, "source").await.ok_or("no pvcSync status")?;
        if s.phase.as_deref() == Some("Ready") { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;

    // Each agent has its own key: no Secret holds one any more.
    eventually_async("shared host-key Secrets removed", WAIT, || async {
        let ctl = ctl_secrets.get_opt("source-agent-host-key").await.map_err(|e| e.to_string())?;
        let source = source_secrets.get_opt("dr-syncer-agent-host-key").await.map_err(|e| e.to_string())?;
        if ctl.is_none() && source.is_none() {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", ctl.map(|s| s.name_any()), source.map(|s| s.name_any())))
        }
    })
    .await;
    let rc = env.remote_clusters().get("source").await.unwrap();
    let ready = rc.status.unwrap().conditions.into_iter().find(|c| c.type_ == "AgentsReady").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Ready"));
    objects_are_written_only_when_they_differ_from_the_plan(&env).await;

    // The DaemonSet runs without privileges, as the plan says.
    let ds: Api<DaemonSet> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    let pod_spec = ds.get(AGENT_NAME).await.unwrap().spec.unwrap().template.spec.unwrap();
    assert_ne!(pod_spec.host_network, Some(true));
    let sc = pod_spec.containers[0].security_context.clone().unwrap();
    assert_eq!((sc.read_only_root_filesystem, sc.privileged), (Some(true), Some(false)));

    let dir = std::env::temp_dir().join(dr_syncer_testlab::unique_name("lab-agent-ssh"));
    std::fs::create_dir_all(&dir).unwrap();
    let (node, ip) = data::node_ip(&env.source_client).await;
    let host_public = data::agent_host_key(&env.source_client, &node).await;
    let client_key = keys::generate("lab-agent-client").unwrap();
    let id = data::identity_file(&dir, "id", &client_key.private_openssh);
    // A wrong pinned key is refused by the client; the right one gets as far as authentication.
    let other = keys::generate("impostor").unwrap();
    let (code, _, err) = data::ssh(&dir, &ip, &id, &other.public_openssh, &[], &["true"]);
    assert!(code == 255 && err.contains("Host key verification failed"), "{code}: {err}");
    let (code, _, err) = data::ssh(&dir, &ip, &id, &host_public, &[], &["true"]);
    assert!(code == 255 && err.contains("Permission denied (publickey)"), "{code}: {err}");

    // Authorize the key for mapping "m" with two targets on the agent pod's address: the rsync port (where nothing
    // listens) and the agent's own SSH port (listed, but not the rsync port).
    let pods: Api<Pod> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    let agent = pods.list(&ListParams::default().labels(&format!("app={AGENT_NAME}"))).await.unwrap().items.remove(0);
    let agent_ip = agent.status.clone().unwrap().pod_ip.unwrap();
    let policy: Api<Secret> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    let authorized = json!({"mappings": {"m": {"keys": [{"publicKey": client_key.public_openssh}]}}}).to_string();
    let (rsync_port, wrong_port) = (format!("{agent_ip}:2022"), format!("{agent_ip}:2222"));
    let targets = json!({"targets": {"m": [rsync_port, wrong_port]}}).to_string();
    let patch = json!({"stringData": {POLICY_AUTHORIZED_KEY: authorized, policy_targets_key(&node): targets}});
    policy.patch(AGENT_POLICY_SECRET, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    // The listed address on the rsync port is relayed to (the agent connects; nothing answers there); a listed
    // address on another port, and any address not listed, are refused after authentication.
    eventually_async("relay to the listed target", Duration::from_secs(30), || async {
        let (code, out, err) = data::ssh(&dir, &ip, &id, &host_public, &["-W", &rsync_port], &[]);
        if err.contains("open failed: connect failed") { Ok(()) } else { Err(format!("{code}: {out} {err}")) }
    })
    .await;
    for refused in [wrong_port.as_str(), "10.88.0.250:2022"] {
        let (code, _, err) = data::ssh(&dir, &ip, &id, &host_public, &["-W", refused], &[]);
        assert!(code == 255 && err.contains("administratively prohibited"), "{refused}: {code}: {err}");
    }
    let (code, _, err) = data::ssh(&dir, &ip, &id, &host_public, &[], &["true"]);
    assert_eq!(code, 255, "a session (exec) is refused: {err}");
    let log = pods.logs(&agent.metadata.name.clone().unwrap(), &LogParams::default()).await.unwrap();
    assert!(log.contains(&client_key.fingerprint) && log.contains("TargetNotAllowed"), "{log}");

    // A new agent pod makes a new key: the old one is refused, the one it logged is taken.
    pods.delete(&agent.name_any(), &DeleteParams::default().grace_period(0)).await.unwrap();
    let renewed = eventually_async("a new agent with a new key", WAIT, || async {
        let key = data::agent_host_key(&env.source_client, &node).await;
        if key != host_public { Ok(key) } else { Err("same key".to_string()) }
    })
    .await;
    let (code, _, err) = data::ssh(&dir, &ip, &id, &host_public, &["-W", &rsync_port], &[]);
    assert!(code == 255 && err.contains("Host key verification failed"), "{code}: {err}");
    eventually_async("relay by the new agent", Duration::from_secs(60), || async {
        let (code, out, err) = data::ssh(&dir, &ip, &id, &renewed, &["-W", &rsync_port], &[]);
        if err.contains("open failed: connect failed") { Ok(()) } else { Err(format!("{code}: {out} {err}")) }
    })
    .await;
    // Asked on the RemoteCluster, every agent is restarted with a new key, and the request is removed.
    let ask = json!({"metadata": {"annotations": {"dr-syncer.io/rotate-ssh-key": "now"}}});
    env.remote_clusters().patch("source", &PatchParams::default(), &Patch::Merge(&ask)).await.unwrap();
    let rotated = eventually_async("host keys rotated on request", WAIT, || async {
        let key = data::agent_host_key(&env.source_client, &node).await;
        if key != renewed { Ok(key) } else { Err("same key".to_string()) }
    })
    .await;
    eventually_async("the rotation request removed", WAIT, || async {
        let rc = env.remote_clusters().get("source").await.map_err(|e| e.to_string())?;
        if rc.annotations().contains_key("dr-syncer.io/rotate-ssh-key") { Err("still asked".into()) } else { Ok(()) }
    })
    .await;
    let (code, _, err) = data::ssh(&dir, &ip, &id, &renewed, &["-W", &rsync_port], &[]);
    assert!(code == 255 && err.contains("Host key verification failed"), "the key before rotation: {code}: {err}");
    let _ = rotated;

    // Another RemoteCluster for the same cluster cannot take the agents over.
    enable(&env, "source-b", true).await;
    let detail = eventually_async("source-b refused", WAIT, || async {
        let rc = env.remote_clusters().get("source-b").await.map_err(|e| e.to_string())?;
        let c = rc.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "AgentsReady"));
        match c {
            Some(c) if c.reason == "AgentOwnedByAnother" => Ok(c.message),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(detail.contains(&format!("{}/source", env.ctl.name())), "{detail}");
    let _ = std::fs::remove_dir_all(&dir);
    // Its finalizer does not hold its deletion: it removes only agents it owns, and owns none.
    env.remote_clusters().delete("source-b", &DeleteParams::default()).await.unwrap();
    eventually_async("source-b deleted", WAIT, || async {
        match env.remote_clusters().get_opt("source-b").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(rc) => Err(format!("still there: {:?}", rc.metadata.finalizers)),
        }
    })
    .await;
    assert!(ds.get_opt(AGENT_NAME).await.unwrap().is_some(), "source's agents stay");
    // Its health series went with it (a stale series would keep an alert firing).
    eventually_async("source-b's health series removed", WAIT, || async {
        let metrics = env.metrics();
        let stale = metrics
            .lines()
            .any(|l| l.starts_with("dr_syncer_remote_cluster_healthy{") && l.contains("name=\"source-b\""));
        if stale { Err("still exported".to_string()) } else { Ok(()) }
    })
    .await;

    // Turning pvcSync off removes the agents and their status.
    enable(&env, "source", false).await;
    eventually_async("agents removed", WAIT, || async {
        let gone = ds.get_opt(AGENT_NAME).await.map_err(|e| e.to_string())?.is_none();
        let cleared = pvc_sync_status(&env, "source").await.is_none();
        if gone && cleared { Ok(()) } else { Err(format!("DaemonSet gone: {gone}, status cleared: {cleared}")) }
    })
    .await;
    let rc = env.remote_clusters().get("source").await.unwrap();
    assert!(rc.metadata.finalizers.unwrap_or_default().is_empty(), "finalizer released once nothing is installed");

    // Deleting a RemoteCluster with agents removes them first.
    enable(&env, "source", true).await;
    eventually_async("agents back", WAIT, || async {
        let s = pvc_sync_status(&env, "source").await.ok_or("no pvcSync status")?;
        if s.phase.as_deref() == Some("Ready") { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    env.remote_clusters().delete("source", &DeleteParams::default()).await.unwrap();
    eventually_async("RemoteCluster and agents gone", WAIT, || async {
        let gone = ds.get_opt(AGENT_NAME).await.map_err(|e| e.to_string())?.is_none();
        let deleted = env.remote_clusters().get_opt("source").await.map_err(|e| e.to_string())?.is_none();
        if gone && deleted { Ok(()) } else { Err(format!("DaemonSet gone: {gone}, RemoteCluster deleted: {deleted}")) }
    })
    .await;
}
