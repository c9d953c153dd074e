//! Garbage collection of copy objects. A copy cleans up after itself, but a controller that dies mid-copy leaves
//! its source rsync pod, the DR Job, their Secrets and the agent's target entry behind. They are found by their
//! labels ([`pods::selector`]) and removed: per PVC once its Lease is held (nobody else can be copying it then),
//! targets of pods that no longer run when a mapping's run starts, and everything of a mapping when it is deleted
//! or stops copying data.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dr_syncer_api::agent::RSYNC_POD_PORT;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};
use kube::{Client, ResourceExt};

use super::failure::Failure;
use super::pods;
use super::policy::{self, Edit};
use crate::error::with_timeout;

/// Which mapping's objects, and the clients and time limit to remove them with.
pub struct Scope<'a> {
    /// Client of the source cluster.
    pub source: &'a Client,
    /// Client of the DR cluster.
    pub destination: &'a Client,
    /// Namespace and name of the NamespaceMapping.
    pub mapping: (&'a str, &'a str),
    /// Time allowed for each API request.
    pub timeout: Duration,
}

impl Scope<'_> {
    /// Identity of the mapping in the agents' policy.
    fn mapping_id(&self) -> String {
        format!("{}/{}", self.mapping.0, self.mapping.1)
    }
}

/// What was removed (for the log).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Source rsync pods deleted.
    pub pods: usize,
    /// DR copy Jobs deleted.
    pub jobs: usize,
}

/// Addresses of the rsync pods in `pods` (their agent targets), with the node each runs on.
fn targets(pods: &[Pod]) -> Vec<(String, SocketAddr)> {
    pods.iter()
        .filter_map(|pod| {
            let node = pod.spec.as_ref()?.node_name.clone()?;
            let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            Some((node, SocketAddr::new(ip, RSYNC_POD_PORT)))
        })
        .collect()
}

fn ignore_missing(result: Result<(), crate::error::Error>) -> Result<(), Failure> {
    match result {
        Err(crate::error::Error::Api { source: kube::Error::Api(e), .. }) if e.code == 404 => Ok(()),
        other => other.map_err(Failure::from),
    }
}

/// Deletes the copy objects matching `selector` in `source_ns` (pods, Secrets) and `destination_ns` (Jobs with
/// their pods, Secrets), and the agent targets of the deleted pods.
async fn sweep(scope: &Scope<'_>, source_ns: &str, destination_ns: &str, selector: &str) -> Result<Swept, Failure> {
    let t = scope.timeout;
    let params = ListParams::default().labels(selector);
    let source_pods: Api<Pod> = Api::namespaced(scope.source.clone(), source_ns);
    let found = with_timeout(format!("list copy pods in {source_ns}"), t, source_pods.list(&params)).await?.items;
    let now = DeleteParams::default().grace_period(0);
    for pod in &found {
        let name = pod.name_any();
        ignore_missing(
            with_timeout(format!("delete Pod {name}"), t, source_pods.delete(&name, &now)).await.map(|_| ()),
        )?;
    }
    let jobs: Api<Job> = Api::namespaced(scope.destination.clone(), destination_ns);
    let found_jobs = with_timeout(format!("list copy Jobs in {destination_ns}"), t, jobs.list(&params)).await?.items;
    let background = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    for job in &found_jobs {
        let name = job.name_any();
        ignore_missing(
            with_timeout(format!("delete Job {name}"), t, jobs.delete(&name, &background)).await.map(|_| ()),
        )?;
    }
    for (client, ns) in [(scope.source, source_ns), (scope.destination, destination_ns)] {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let what = format!("delete copy Secrets in {ns}");
        let plain = DeleteParams::default();
        let deleted = secrets.delete_collection(&plain, &params);
        ignore_missing(with_timeout(what, t, deleted).await.map(|_| ()))?;
    }
    for (node, address) in targets(&found) {
        policy::edit(scope.source, &Edit::RemoveTarget { node, mapping: scope.mapping_id(), address }, t).await?;
    }
    Ok(Swept { pods: found.len(), jobs: found_jobs.len() })
}

/// Removes what earlier copies of one PVC left behind. Call it only while holding the PVC's Lease.
pub async fn pvc(scope: &Scope<'_>, source_ns: &str, destination_ns: &str, pvc: &str) -> Result<Swept, Failure> {
    let swept = sweep(scope, source_ns, destination_ns, &pods::selector(scope.mapping, Some(pvc))).await?;
    if swept != Swept::default() {
        tracing::info!(mapping = %scope.mapping_id(), pvc = %format!("{source_ns}/{pvc}"), pods = swept.pods, jobs = swept.jobs,
            "removed what an interrupted copy left behind");
    }
    Ok(swept)
}

/// Drops the mapping's agent targets whose rsync pod no longer runs in any of `source_namespaces`. Call it when no
/// copy of the mapping is starting in this process (at the start of a run).
pub async fn stale_targets(scope: &Scope<'_>, source_namespaces: &[String]) -> Result<(), Failure> {
    let selector = pods::selector(scope.mapping, None);
    let mut keep = Vec::new();
    for ns in source_namespaces {
        let api: Api<Pod> = Api::namespaced(scope.source.clone(), ns);
        let what = format!("list copy pods in {ns}");
        let list = with_timeout(what, scope.timeout, api.list(&ListParams::default().labels(&selector))).await?;
        keep.extend(targets(&list.items).into_iter().map(|(_, address)| address));
    }
    policy::edit(scope.source, &Edit::RetainTargets { mapping: scope.mapping_id(), keep }, scope.timeout).await
}

/// Name of the client-key Secret earlier versions kept in each DR namespace of a mapping.
fn legacy_key_secret_name(mapping: &str) -> String {
    let name = format!("dr-syncer-ssh-{mapping}");
    if name.len() <= 253 { name } else { format!("dr-syncer-ssh-{}", &crate::data::short_hash(mapping)) }
}

/// Deletes the client-key Secret an earlier version kept in DR namespace `namespace` for `mapping` (best effort:
/// its key is no longer in any agent's policy, so it opens nothing; this only stops it lying around).
pub(super) async fn legacy_key_secret(client: &kube::Client, namespace: &str, mapping: &str, t: std::time::Duration) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = legacy_key_secret_name(mapping);
    let deleted =
        with_timeout(format!("delete Secret {name}"), t, secrets.delete(&name, &DeleteParams::default())).await;
    if let Err(error) = ignore_missing(deleted.map(|_| ())) {
        tracing::warn!(%namespace, %name, reason = error.reason, "cannot delete an old client-key Secret");
    }
}

/// Removes everything data sync made for a mapping: copy objects in every `(source, DR)` namespace pair, its keys
/// and targets in the agents' policy (so its certificates are refused from now on), and client-key Secrets of
/// earlier versions.
pub async fn mapping(scope: &Scope<'_>, namespaces: &[(String, String)]) -> Result<(), Failure> {
    let id = scope.mapping_id();
    policy::edit(scope.source, &Edit::Keys { mapping: id.clone(), keys: Vec::new() }, scope.timeout).await?;
    policy::edit(scope.source, &Edit::RetainTargets { mapping: id.clone(), keep: Vec::new() }, scope.timeout).await?;
    let selector = pods::selector(scope.mapping, None);
    for (source_ns, destination_ns) in namespaces {
        sweep(scope, source_ns, destination_ns, &selector).await?;
        let secrets: Api<Secret> = Api::namespaced(scope.destination.clone(), destination_ns);
        let name = legacy_key_secret_name(scope.mapping.1);
        let plain = DeleteParams::default();
        let deleted = secrets.delete(&name, &plain);
        ignore_missing(with_timeout(format!("delete Secret {name}"), scope.timeout, deleted).await.map(|_| ()))?;
    }
    tracing::info!(mapping = %id, "data sync of the mapping removed: keys revoked, copy objects and key Secrets deleted");
    Ok(())
}
