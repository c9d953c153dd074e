//! One copy of one PVC, start to end: the source rsync pod and its Secret, the agent's target entry, the DR copy Job
//! and its Secret, following the Job's log for progress, and the cleanup of all of it whatever happened.

use std::net::SocketAddr;
use std::time::Duration;

use dr_syncer_api::agent::{AGENT_NAME, AGENT_NAMESPACE, RSYNC_POD_PORT};
use dr_syncer_api::constants::LABEL_DATA_ROLE;
use dr_syncer_wire::address::Host;
use dr_syncer_wire::progress::Report;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};

use super::failure::{Failure, Totals, classify};
use super::keys::StoredKey;
use super::pod_report::{self, pod_reason, pod_result, read_progress};
use super::pods::{self, CopyInput, ROLE_COPY, ROLE_SOURCE};
use super::policy::{self, Edit};
use crate::agent::host_keys;
use crate::error::with_timeout;

/// Longest wait for a pod of the copy to start.
const START_WAIT: Duration = Duration::from_secs(180);
/// How often pod state is polled while waiting.
const POLL: Duration = Duration::from_secs(1);

/// How the DR cluster reaches the source agents.
#[derive(Clone, Debug)]
pub struct AgentAccess {
    /// hostPort of the agents (`pvcSync.ssh.port`).
    pub port: u16,
    /// Whether the agents are reached through their Service instead of the node's address.
    pub service: bool,
}

/// Everything one copy needs besides its [`CopyInput`].
pub struct CopyContext<'a> {
    /// Client of the source cluster.
    pub source: &'a kube::Client,
    /// Client of the DR cluster.
    pub destination: &'a kube::Client,
    /// The source agents.
    pub agent: &'a AgentAccess,
    /// Identity of the mapping in the agents' policy.
    pub mapping_id: &'a str,
    /// The mapping's certificate authority (current generation), which signs this copy's certificate.
    pub authority: &'a StoredKey,
    /// Time allowed for each API request.
    pub api_timeout: Duration,
    /// Cancelled to stop the copy (its objects are still cleaned up); it then fails with reason [`STOPPED`].
    pub stop: tokio_util::sync::CancellationToken,
}

/// Reason of a copy stopped through [`CopyContext::stop`].
pub const STOPPED: &str = "Stopped";

/// Runs one copy; `progress` sees each progress report while it runs.
pub async fn copy(ctx: &CopyContext<'_>, mut input: CopyInput, progress: impl Fn(&Report)) -> Result<Totals, Failure> {
    let t = ctx.api_timeout;
    let source_pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.source.clone(), &input.source_namespace);
    let what = format!("PVC {}/{}", input.source_namespace, input.pvc);
    let Some(pvc) = with_timeout(format!("get {what}"), t, source_pvcs.get_opt(&input.pvc)).await? else {
        return Err(Failure::permanent("SourcePvcMissing", format!("{what} does not exist in the source cluster")));
    };
    if pvc.status.and_then(|s| s.phase).as_deref() != Some("Bound") {
        return Err(Failure::transient("SourcePvcNotBound", format!("{what} is not bound yet")));
    }
    let dr_pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.destination.clone(), &input.destination_namespace);
    let dr_what = format!("PVC {}/{} in the DR cluster", input.destination_namespace, input.pvc);
    if with_timeout(format!("get {dr_what}"), t, dr_pvcs.get_opt(&input.pvc)).await?.is_none() {
        return Err(Failure::transient("DestinationPvcMissing", format!("{dr_what} does not exist yet")));
    }
    input.node = attached_node(ctx.source, &input, t).await?;
    // Check the agent's address before anything is created, when the node is known already (the rsync pod is
    // pinned to it, so the address is used as it is).
    let known_agent = match &input.node {
        Some(node) => Some(agent_address(ctx.source, ctx.agent, node, t).await?),
        None => None,
    };
    let mut cleanup = Cleanup::default();
    let result = tokio::select! {
        result = run(ctx, &input, known_agent, &mut cleanup, &progress) => result,
        () = ctx.stop.cancelled() => Err(Failure::transient(STOPPED, format!("the copy of {what} was stopped"))),
    };
    cleanup.run(ctx, &input).await;
    result
}

/// Objects to remove when the copy ends.
#[derive(Default)]
struct Cleanup {
    source_pod: bool,
    target: Option<(String, SocketAddr)>,
    job: bool,
}

impl Cleanup {
    async fn run(&self, ctx: &CopyContext<'_>, input: &CopyInput) {
        let t = ctx.api_timeout;
        let background = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        if self.job {
            let name = pods::object_name(ROLE_COPY, input);
            let jobs: Api<Job> = Api::namespaced(ctx.destination.clone(), &input.destination_namespace);
            let secrets: Api<Secret> = Api::namespaced(ctx.destination.clone(), &input.destination_namespace);
            let _ = tokio::time::timeout(t, jobs.delete(&name, &background)).await;
            let _ = tokio::time::timeout(t, secrets.delete(&name, &DeleteParams::default())).await;
        }
        if let Some((node, address)) = &self.target {
            let edit = Edit::RemoveTarget { node: node.clone(), mapping: ctx.mapping_id.into(), address: *address };
            if let Err(failure) = policy::edit(ctx.source, &edit, t).await {
                tracing::warn!(pvc = %input.pvc, reason = failure.reason, message = %failure.message, "cannot remove the agent target");
            }
        }
        if self.source_pod {
            let name = pods::object_name(ROLE_SOURCE, input);
            let pods: Api<Pod> = Api::namespaced(ctx.source.clone(), &input.source_namespace);
            let secrets: Api<Secret> = Api::namespaced(ctx.source.clone(), &input.source_namespace);
            let _ = tokio::time::timeout(t, pods.delete(&name, &DeleteParams::default().grace_period(0))).await;
            let _ = tokio::time::timeout(t, secrets.delete(&name, &DeleteParams::default())).await;
        }
    }
}

async fn run(
    ctx: &CopyContext<'_>,
    input: &CopyInput,
    known_agent: Option<(Host, u16)>,
    cleanup: &mut Cleanup,
    progress: &impl Fn(&Report),
) -> Result<Totals, Failure> {
    let t = ctx.api_timeout;
    let post = PostParams::default();
    // The credential of this copy only: a key made now, certified below for the rsync pod's address alone.
    let copy_key = dr_syncer_wire::keys::generate(&format!("dr-syncer-copy:{}:{}", ctx.mapping_id, input.sync_id))
        .map_err(|e| Failure::transient("KeyError", e.to_string()))?;
    // Source rsync pod; it makes its host key itself, in memory, and logs only the public half.
    let pods_api: Api<Pod> = Api::namespaced(ctx.source.clone(), &input.source_namespace);
    let pod = pods::source_pod(input, input.timeout + START_WAIT);
    let pod_name = pod.name_any();
    let created = with_timeout(format!("create Pod {pod_name}"), t, pods_api.create(&post, &pod)).await?;
    cleanup.source_pod = true;
    let pod_uid = created.uid().unwrap_or_default();
    let secret = pods::source_secret(input, &pod_uid, &format!("{}\n", copy_key.public_openssh));
    let secrets: Api<Secret> = Api::namespaced(ctx.source.clone(), &input.source_namespace);
    with_timeout(format!("create Secret {pod_name}"), t, secrets.create(&post, &secret)).await?;
    let running = wait_ready(&pods_api, &pod_name, t).await?;
    // The pod that answers must be the one created here (a tenant of the namespace may replace it by name).
    let (node, ip) = pod_report::ours(&running, &pod_uid, None)?;
    let pod_host_key = pod_report::read_host_key(&pods_api, &pod_name, t).await?;
    let address = SocketAddr::new(ip, RSYNC_POD_PORT);
    let agent = match known_agent {
        Some(agent) if input.node.as_deref() == Some(node.as_str()) => agent,
        _ => agent_address(ctx.source, ctx.agent, &node, t).await?,
    };
    policy::edit(ctx.source, &Edit::AddTarget { node: node.clone(), mapping: ctx.mapping_id.into(), address }, t)
        .await?;
    let node_name = node.clone();
    cleanup.target = Some((node, address));
    // Still ours, at that address, now that the agent relays to it (its host key was read from our pod's log).
    let current = with_timeout(format!("get Pod {pod_name}"), t, pods_api.get(&pod_name)).await?;
    pod_report::ours(&current, &pod_uid, Some(ip))?;

    // DR copy Job.
    let jobs: Api<Job> = Api::namespaced(ctx.destination.clone(), &input.destination_namespace);
    let job = pods::copy_job(input);
    let job_name = job.name_any();
    let config = pods::ssh_config(ip, (&agent.0, agent.1));
    // The host key of the agent on the pod's node (of every agent, when a Service picks one), from its own log.
    let agent_keys = host_keys::read(ctx.source, (!ctx.agent.service).then_some(node_name.as_str()), t).await?;
    let agent_keys: Vec<&str> = agent_keys.iter().map(|k| k.key.as_str()).collect();
    let known = pods::known_hosts(&agent_keys, &pod_host_key)
        .map_err(|e| Failure::permanent("InvalidHostKey", e.to_string()))?;
    let created = with_timeout(format!("create Job {job_name}"), t, jobs.create(&post, &job)).await?;
    cleanup.job = true;
    let certificate = certify(ctx.authority, &copy_key, input, address)?;
    let credential = (copy_key.private_openssh.as_str(), certificate.as_str());
    let secret = pods::copy_secret(input, &created.uid().unwrap_or_default(), &config, &known, credential);
    let dr_secrets: Api<Secret> = Api::namespaced(ctx.destination.clone(), &input.destination_namespace);
    with_timeout(format!("create Secret {job_name}"), t, dr_secrets.create(&post, &secret)).await?;
    let dr_pods: Api<Pod> = Api::namespaced(ctx.destination.clone(), &input.destination_namespace);
    let job_uid = created.uid().unwrap_or_default();
    let follow = follow_job(&dr_pods, &job_name, &job_uid, t, progress);
    match tokio::time::timeout(input.timeout, follow).await {
        Ok(result) => result,
        Err(_) => Err(Failure::transient(
            "Timeout",
            format!("the copy did not finish within {}", humantime::format_duration(input.timeout)),
        )),
    }
}

/// Slack on both ends of a copy certificate's validity, for clocks of the clusters that differ a little.
const CLOCK_SKEW: i64 = 300;

/// The copy's certificate: `copy_key` certified by the mapping's authority for `address` only, valid for the copy's
/// time limit (plus the pod start wait and clock slack).
fn certify(
    authority: &StoredKey,
    copy_key: &dr_syncer_wire::keys::KeyPair,
    input: &CopyInput,
    address: SocketAddr,
) -> Result<String, Failure> {
    let fail = |e: dr_syncer_wire::Error| Failure::transient("KeyError", e.to_string());
    let ca = dr_syncer_wire::keys::private_from_openssh(&authority.private_openssh, "certificate authority")
        .map_err(fail)?;
    let public = dr_syncer_wire::keys::public_from_openssh(&copy_key.public_openssh, "copy key").map_err(fail)?;
    let now = jiff::Timestamp::now().as_second();
    let lasts = i64::try_from((input.timeout + START_WAIT).as_secs()).unwrap_or(i64::MAX / 2);
    let validity = ((now - CLOCK_SKEW).max(0) as u64, now.saturating_add(lasts + CLOCK_SKEW) as u64);
    let key_id = format!("{}/{}:{}:{}", input.mapping.0, input.mapping.1, input.pvc, input.sync_id);
    dr_syncer_wire::keys::certify(&ca, &public, &key_id, &[address.to_string()], validity).map_err(fail)
}

/// The node the PVC is attached to: that of a running or starting pod (not ours) that mounts it.
async fn attached_node(client: &kube::Client, input: &CopyInput, t: Duration) -> Result<Option<String>, Failure> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &input.source_namespace);
    let list = with_timeout("list source pods", t, api.list(&ListParams::default())).await?;
    Ok(list.items.iter().find_map(|pod| {
        let ours = pod.labels().contains_key(LABEL_DATA_ROLE);
        let active = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running" | "Pending"));
        let spec = pod.spec.as_ref()?;
        let mounts = spec
            .volumes
            .iter()
            .flatten()
            .any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == input.pvc));
        (!ours && active && mounts).then(|| spec.node_name.clone()).flatten()
    }))
}

/// Waits until the source pod is ready, or explains why it is not.
async fn wait_ready(api: &Api<Pod>, name: &str, t: Duration) -> Result<Pod, Failure> {
    let deadline = tokio::time::Instant::now() + START_WAIT;
    let mut why = String::from("not scheduled yet");
    while tokio::time::Instant::now() < deadline {
        if let Some(pod) = with_timeout(format!("get Pod {name}"), t, api.get_opt(name)).await? {
            let status = pod.status.clone().unwrap_or_default();
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(pod);
            }
            if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
                return Err(Failure::transient("SourcePodFailed", format!("pod {name} ended: {}", pod_reason(&pod))));
            }
            why = pod_reason(&pod);
        }
        tokio::time::sleep(POLL).await;
    }
    Err(Failure::transient("SourcePodNotReady", format!("pod {name} not ready after {START_WAIT:?}: {why}")))
}

/// How the DR cluster reaches the agent relaying to `node`: its node address and hostPort, or the agents' Service.
/// Every address is parsed ([`Host`]): a Node or Service may report anything, and the value ends up in the copy
/// pod's ssh configuration and the probe's command line.
pub(crate) async fn agent_address(
    client: &kube::Client,
    agent: &AgentAccess,
    node: &str,
    t: Duration,
) -> Result<(Host, u16), Failure> {
    let nodes: Api<Node> = Api::all(client.clone());
    if agent.service {
        let services: Api<Service> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
        let service = with_timeout("get the agents' Service", t, services.get(AGENT_NAME)).await?;
        let spec = service.spec.clone().unwrap_or_default();
        let port = spec.ports.iter().flatten().next().cloned().unwrap_or_default();
        let ingress =
            service.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).and_then(|i| i.into_iter().next());
        if let Some(ingress) = ingress {
            let host = match (ingress.ip, ingress.hostname) {
                (Some(ip), _) => Some(Host::parse(&ip, false)),
                (None, Some(name)) => Some(Host::parse(&name, true)),
                (None, None) => None,
            };
            if let Some(host) = host {
                let host = host.map_err(|e| {
                    Failure::transient(INVALID_SERVICE_ADDRESS, format!("the agents' Service load balancer: {e}"))
                })?;
                return Ok((host, port.port as u16));
            }
        }
        if let Some(node_port) = port.node_port {
            let node = with_timeout(format!("get Node {node}"), t, nodes.get(node)).await?;
            return Ok((node_address(&node)?, node_port as u16));
        }
        return Err(Failure::transient("AgentUnreachable", "the agents' Service has no address yet"));
    }
    let node = with_timeout(format!("get Node {node}"), t, nodes.get(node)).await?;
    Ok((node_address(&node)?, agent.port))
}

/// Reason of a copy or check refused because a Node reports an address that is not an IP address.
pub const INVALID_NODE_ADDRESS: &str = "InvalidNodeAddress";
/// Reason of a copy or check refused because the agents' Service reports an unusable load-balancer address.
pub const INVALID_SERVICE_ADDRESS: &str = "InvalidServiceAddress";

/// The node's InternalIP, else its ExternalIP, which must be an IP address (names are never taken from a Node).
fn node_address(node: &Node) -> Result<Host, Failure> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.clone()).unwrap_or_default();
    let address = ["InternalIP", "ExternalIP"]
        .iter()
        .find_map(|kind| addresses.iter().find(|a| a.type_ == *kind).map(|a| a.address.clone()))
        .ok_or_else(|| Failure::transient("AgentUnreachable", format!("node {} has no address", node.name_any())))?;
    Host::parse(&address, false).map_err(|e| {
        Failure::transient(INVALID_NODE_ADDRESS, format!("node {} reports an unusable address: {e}", node.name_any()))
    })
}

/// Follows the Job's pod (found by the Job's UID, not its name) until it ends: progress from its log, the result
/// from the copy container's termination message ([`pod_result`]).
async fn follow_job(
    api: &Api<Pod>,
    job: &str,
    job_uid: &str,
    t: Duration,
    progress: &impl Fn(&Report),
) -> Result<Totals, Failure> {
    let selector = ListParams::default().labels(&format!("controller-uid={job_uid}"));
    let deadline = tokio::time::Instant::now() + START_WAIT;
    let pod_name = loop {
        let list = with_timeout(format!("list pods of Job {job}"), t, api.list(&selector)).await?;
        let owned = list.items.iter().find(|pod| {
            pod.owner_references().iter().any(|o| o.controller == Some(true) && o.kind == "Job" && o.uid == job_uid)
        });
        if let Some(pod) = owned {
            let status = pod.status.clone().unwrap_or_default();
            let started = status
                .container_statuses
                .iter()
                .flatten()
                .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some()));
            if started {
                break pod.name_any();
            }
            if tokio::time::Instant::now() >= deadline {
                let why = pod_reason(pod);
                return Err(Failure::transient("CopyPodNotStarted", format!("copy pod not started: {why}")));
            }
        } else if tokio::time::Instant::now() >= deadline {
            return Err(Failure::transient("CopyPodNotStarted", format!("Job {job} made no pod")));
        }
        tokio::time::sleep(POLL).await;
    };
    let params = LogParams { follow: true, container: Some(pods::COPY_CONTAINER.into()), ..Default::default() };
    // Follow the log; if it breaks while the pod still runs, follow it again. The copy's timeout bounds this.
    loop {
        if let Ok(Ok(stream)) = tokio::time::timeout(t, api.log_stream(&pod_name, &params)).await {
            read_progress(stream, progress).await;
        }
        let pod = with_timeout(format!("get Pod {pod_name}"), t, api.get_opt(&pod_name)).await?;
        let phase = pod.as_ref().and_then(|p| p.status.as_ref().and_then(|s| s.phase.clone()));
        match pod {
            None => return classify(None, "the pod was deleted"),
            Some(pod) if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) => return pod_result(&pod),
            Some(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
}
