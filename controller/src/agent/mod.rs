//! The PVC data-sync agents of source clusters: planning their objects, installing and upgrading them through a
//! RemoteCluster's client, and reporting their state.

pub mod covers;
pub mod finalizer;
pub mod host_keys;
pub mod install;
pub mod manifests;
pub mod probe;
pub mod status;

use std::time::Duration;

use dr_syncer_api::RemoteCluster;
use kube::{Client, ResourceExt};

use crate::error::Error;
use status::AgentOutcome;

/// `namespace/name` of a RemoteCluster: the owner mark on its agents.
pub fn owner(rc: &RemoteCluster) -> String {
    format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any())
}

/// Whether `rc` asks for agents.
pub fn enabled(rc: &RemoteCluster) -> bool {
    rc.spec.pvc_sync.as_ref().and_then(|p| p.enabled).unwrap_or(false)
}

/// Installs, upgrades or removes the agents of `rc` in its cluster (`remote`), as its spec asks, and reads back
/// how they run. `local` is the controller's own cluster; `scope` the one namespace the controller watches, if
/// any. With `apply` false (nothing changed since the last install, which is recent) the objects are only read,
/// so agents that take long to get ready are watched without a write every few seconds.
pub async fn reconcile(
    local: &Client,
    remote: &Client,
    rc: &RemoteCluster,
    (default_image, scope, apply): (&str, Option<&str>, bool),
    timeout: Duration,
) -> AgentOutcome {
    let owner = owner(rc);
    if !enabled(rc) {
        // Only a RemoteCluster whose status shows agents has anything to remove; the others make no calls.
        if rc.status.as_ref().is_none_or(|s| s.pvc_sync.is_none()) {
            return AgentOutcome::Disabled;
        }
        return match install::uninstall(remote, &owner, timeout).await {
            Ok(_) => AgentOutcome::Removed,
            Err(e) => failed(&e),
        };
    }
    if !apply {
        return match read_only(remote, rc, default_image, timeout).await {
            Ok(outcome) => outcome,
            Err(e) => failed(&e),
        };
    }
    match install_and_read(local, remote, rc, &owner, (default_image, scope), timeout).await {
        Ok(outcome) => outcome,
        Err(e) => failed(&e),
    }
}

/// How the installed agents run, without writing anything.
async fn read_only(
    remote: &Client,
    rc: &RemoteCluster,
    default_image: &str,
    timeout: Duration,
) -> Result<AgentOutcome, Error> {
    let spec = rc.spec.pvc_sync.clone().unwrap_or_default();
    let observed = install::read(remote, timeout).await?;
    Ok(AgentOutcome::Installed { observed, image: manifests::image(&spec, default_image) })
}

async fn install_and_read(
    local: &Client,
    remote: &Client,
    rc: &RemoteCluster,
    owner: &str,
    (default_image, scope): (&str, Option<&str>),
    timeout: Duration,
) -> Result<AgentOutcome, Error> {
    // Agents make their own host keys now; the shared one of an earlier version goes.
    host_keys::remove_legacy(local, rc, timeout).await?;
    let spec = rc.spec.pvc_sync.clone().unwrap_or_default();
    let name = rc.name_any();
    let input = manifests::AgentInput { owner: owner.to_string(), remote_cluster: &name, spec: &spec, default_image };
    let plan = manifests::plan(&input)?;
    install::install(remote, &plan, owner, timeout).await?;
    host_keys::rotate_if_asked(local, remote, rc, timeout).await?;
    // Keys of deleted mappings (or ones that stopped copying data) are revoked even if the controller missed it.
    if let Err(failure) = crate::data::policy::revoke_stale(local, remote, scope, timeout).await {
        tracing::warn!(remote_cluster = %owner, reason = failure.reason, message = %failure.message, "stale agent keys not revoked yet");
    }
    let observed = install::read(remote, timeout).await?;
    Ok(AgentOutcome::Installed { observed, image: plan.image.clone() })
}

fn failed(e: &Error) -> AgentOutcome {
    tracing::warn!(error = %e, reason = e.reason(), "agents not installed");
    AgentOutcome::Failed { reason: e.reason().to_string(), message: e.to_string() }
}
