//! Installs, upgrades and removes a source cluster's agents through its RemoteCluster's client, with server-side
//! apply under the data-sync field manager, and reads back how they run.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_api::agent::{AGENT_HOST_KEY_SECRET, AGENT_NAME, AGENT_NAMESPACE, AGENT_POLICY_SECRET, LABEL_APP};
use dr_syncer_api::constants::FIELD_MANAGER_DATA;
use dr_syncer_api::remote_cluster::{AgentNodeStatus, AgentPodStatus, AgentStatus};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::manifests::{ANNOTATION_AGENT_OWNER, AgentPlan};
use crate::error::{Error, with_timeout};

/// `status.pvcSync.phase` values.
pub mod phase {
    /// Pods are being created or updated.
    pub const DEPLOYING: &str = "Deploying";
    /// Every scheduled agent is ready.
    pub const READY: &str = "Ready";
    /// Some agents are ready, some not.
    pub const PARTIALLY_READY: &str = "PartiallyReady";
    /// No agent is ready.
    pub const DEGRADED: &str = "Degraded";
    /// The agents cannot be installed (see the message).
    pub const FAILED: &str = "Failed";
}

/// How the agents run, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// One of [`phase`].
    pub phase: &'static str,
    /// Per-node detail.
    pub agents: AgentStatus,
    /// Human-readable summary.
    pub message: String,
}

/// Folds the DaemonSet's and its pods' state into [`Observed`] (pure).
pub fn observe(ds: Option<&DaemonSet>, pods: &[Pod]) -> Observed {
    let status = ds.and_then(|d| d.status.clone()).unwrap_or_default();
    let rolled = ds.is_some_and(|d| status.observed_generation >= d.metadata.generation)
        && status.updated_number_scheduled.unwrap_or(0) >= status.desired_number_scheduled;
    let mut nodes = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        let st = pod.status.clone().unwrap_or_default();
        let container = st.container_statuses.as_ref().and_then(|c| c.first());
        let ready = container.is_some_and(|c| c.ready);
        let waiting = container.and_then(|c| c.state.as_ref()).and_then(|s| s.waiting.as_ref());
        nodes.insert(
            node,
            AgentNodeStatus {
                ready,
                pod_status: Some(AgentPodStatus {
                    phase: st.phase.clone().unwrap_or_default(),
                    ready,
                    restart_count: container.map(|c| c.restart_count),
                    last_transition_time: None,
                }),
                message: waiting.map(|w| {
                    format!("{}: {}", w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default())
                }),
            },
        );
    }
    let desired = status.desired_number_scheduled;
    let ready = status.number_ready;
    let failing = nodes.values().any(|n| n.message.as_deref().is_some_and(is_failure));
    let phase = if ds.is_none() || !rolled && !failing {
        phase::DEPLOYING
    } else if desired == 0 {
        phase::DEGRADED
    } else if ready >= desired && rolled {
        phase::READY
    } else if ready == 0 {
        if failing { phase::DEGRADED } else { phase::DEPLOYING }
    } else {
        phase::PARTIALLY_READY
    };
    let message = match (desired, ds.is_some()) {
        (0, true) => "no node runs an agent (check nodeSelector and tolerations)".to_string(),
        _ => format!("{ready} of {desired} agents ready"),
    };
    Observed { phase, agents: AgentStatus { ready_nodes: ready, total_nodes: desired, node_statuses: nodes }, message }
}

/// Waiting reasons that will not resolve by themselves.
fn is_failure(message: &str) -> bool {
    ["CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"]
        .iter()
        .any(|r| message.starts_with(r))
}

/// Whether agents marked `current` may be taken care of by `owner` (pure). A DaemonSet without the mark — the Go
/// operator's has the same name — is left alone too, with a message saying what to do.
pub fn check_owner(current: Option<&str>, owner: &str) -> Result<(), Error> {
    match current {
        Some(c) if c == owner => Ok(()),
        Some(c) => Err(Error::AgentOwnedByAnother { owner: format!("RemoteCluster {c}") }),
        None => Err(Error::AgentOwnedByAnother {
            owner: format!(
                "nobody this controller knows (DaemonSet {AGENT_NAMESPACE}/{AGENT_NAME} has no {ANNOTATION_AGENT_OWNER} \
                 mark, e.g. the Go operator's; delete it to let this RemoteCluster install its own)"
            ),
        }),
    }
}

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER_DATA).force()
}

/// Reads the live object of `obj`, then [`apply_unless_current`].
async fn apply<K>(client: &Client, obj: &K, timeout: Duration) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let (kind, name) = (K::kind(&K::DynamicType::default()).to_string(), obj.name_any());
    let live = with_timeout(format!("get {kind} {AGENT_NAMESPACE}/{name}"), timeout, api.get_opt(&name)).await?;
    apply_unless_current(client, obj, live.as_ref(), timeout).await
}

/// Server-side applies `obj` unless `live` (the object as read just before) already is as planned (see `covers`):
/// the periodic check of unchanged agents writes nothing.
async fn apply_unless_current<K>(client: &Client, obj: &K, live: Option<&K>, timeout: Duration) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    K::DynamicType: Default,
{
    let json = |v: &K| serde_json::to_value(v).unwrap_or_default();
    if live.is_some_and(|live| super::covers::covers(&json(live), &json(obj))) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let (kind, name) = (K::kind(&K::DynamicType::default()).to_string(), obj.name_any());
    let what = format!("apply {kind} {AGENT_NAMESPACE}/{name}");
    with_timeout(what, timeout, api.patch(&name, &ssa(), &Patch::Apply(obj))).await.map(|_| ())
}

/// Applies `plan` to the source cluster. Refuses when the agents there belong to another RemoteCluster.
pub async fn install(client: &Client, plan: &AgentPlan, owner: &str, timeout: Duration) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if with_timeout(format!("get namespace {AGENT_NAMESPACE}"), timeout, namespaces.get_opt(AGENT_NAMESPACE))
        .await?
        .is_none()
    {
        let params = PostParams::default();
        let created = namespaces.create(&params, &plan.namespace);
        match with_timeout(format!("create namespace {AGENT_NAMESPACE}"), timeout, created).await {
            Err(Error::Api { source: kube::Error::Api(e), .. }) if e.code == 409 => {}
            other => other.map(|_| ())?,
        }
    }
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let live_daemon_set = with_timeout("get agent DaemonSet", timeout, daemon_sets.get_opt(AGENT_NAME)).await?;
    if let Some(ds) = &live_daemon_set {
        check_owner(ds.annotations().get(ANNOTATION_AGENT_OWNER).map(String::as_str), owner)?;
    }
    apply(client, &plan.service_account, timeout).await?;
    apply(client, &plan.role, timeout).await?;
    apply(client, &plan.role_binding, timeout).await?;
    // The host key all agents shared in earlier versions; each agent makes its own now.
    delete_owned(&Api::<Secret>::namespaced(client.clone(), AGENT_NAMESPACE), AGENT_HOST_KEY_SECRET, owner, timeout)
        .await?;
    ensure_policy_secret(client, plan, timeout).await?;
    apply_unless_current(client, &plan.daemon_set, live_daemon_set.as_ref(), timeout).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    match &plan.service {
        Some(service) => apply(client, service, timeout).await?,
        None => {
            delete_owned(&services, AGENT_NAME, owner, timeout).await?;
        }
    }
    Ok(())
}

/// Creates the (empty) policy Secret if missing; its content is the data-sync orchestrator's, never reset here.
async fn ensure_policy_secret(client: &Client, plan: &AgentPlan, timeout: Duration) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    if with_timeout("get agent policy Secret", timeout, api.get_opt(AGENT_POLICY_SECRET)).await?.is_some() {
        return Ok(());
    }
    let mut secret =
        Secret { metadata: plan.service_account.metadata.clone(), type_: Some("Opaque".into()), ..Default::default() };
    secret.metadata.name = Some(AGENT_POLICY_SECRET.into());
    match with_timeout("create agent policy Secret", timeout, api.create(&PostParams::default(), &secret)).await {
        Err(Error::Api { source: kube::Error::Api(e), .. }) if e.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Reads how the agents run.
pub async fn read(client: &Client, timeout: Duration) -> Result<Observed, Error> {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let ds = with_timeout("get agent DaemonSet", timeout, daemon_sets.get_opt(AGENT_NAME)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let params = ListParams::default().labels(&format!("{LABEL_APP}={AGENT_NAME}"));
    let pods = with_timeout("list agent pods", timeout, pods.list(&params)).await?;
    Ok(observe(ds.as_ref(), &pods.items))
}

async fn delete_owned<K>(api: &Api<K>, name: &str, owner: &str, timeout: Duration) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let what = format!("{} {AGENT_NAMESPACE}/{name}", K::kind(&K::DynamicType::default()));
    let Some(obj) = with_timeout(format!("get {what}"), timeout, api.get_opt(name)).await? else { return Ok(false) };
    if obj.annotations().get(ANNOTATION_AGENT_OWNER).map(String::as_str) != Some(owner) {
        return Ok(false);
    }
    match with_timeout(format!("delete {what}"), timeout, api.delete(name, &DeleteParams::default())).await {
        Err(Error::Api { source: kube::Error::Api(e), .. }) if e.code == 404 => Ok(false),
        other => other.map(|_| true),
    }
}

/// Removes the agents `owner` installed (never the namespace, which may hold other things). Returns whether
/// anything was deleted.
pub async fn uninstall(client: &Client, owner: &str, timeout: Duration) -> Result<bool, Error> {
    let ns = Client::clone;
    let mut any = false;
    any |= delete_owned(&Api::<DaemonSet>::namespaced(ns(client), AGENT_NAMESPACE), AGENT_NAME, owner, timeout).await?;
    any |= delete_owned(&Api::<Service>::namespaced(ns(client), AGENT_NAMESPACE), AGENT_NAME, owner, timeout).await?;
    any |=
        delete_owned(&Api::<RoleBinding>::namespaced(ns(client), AGENT_NAMESPACE), AGENT_NAME, owner, timeout).await?;
    any |= delete_owned(&Api::<Role>::namespaced(ns(client), AGENT_NAMESPACE), AGENT_NAME, owner, timeout).await?;
    let accounts = Api::<ServiceAccount>::namespaced(ns(client), AGENT_NAMESPACE);
    any |= delete_owned(&accounts, AGENT_NAME, owner, timeout).await?;
    let secrets = Api::<Secret>::namespaced(ns(client), AGENT_NAMESPACE);
    any |= delete_owned(&secrets, AGENT_HOST_KEY_SECRET, owner, timeout).await?;
    any |= delete_owned(&secrets, AGENT_POLICY_SECRET, owner, timeout).await?;
    Ok(any)
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
