//! A RemoteCluster that installed agents carries a finalizer, so deleting it removes them from its cluster. The
//! finalizer is added before the first install and removed once the agents are gone — or given up, with a Warning
//! event naming what was left, when the cluster can no longer be reached (its kubeconfig Secret deleted, say by the
//! same namespace deletion, or the cluster unreachable for [`GIVE_UP_AFTER`]), so a RemoteCluster never hangs in
//! deletion forever.

use std::time::Duration;

use dr_syncer_api::RemoteCluster;
use dr_syncer_api::agent::AGENT_NAMESPACE;
use dr_syncer_api::constants::FINALIZER_REMOTE_CLUSTER;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{install, owner};
use crate::clusters::registry::ClusterError;
use crate::error::{Error, with_timeout};
use crate::reconcile::context::Context;
use crate::reconcile::events::Severity;

/// How long a deleted RemoteCluster keeps trying to remove its agents from an unreachable cluster.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Whether `rc` carries the agents finalizer.
pub fn has(rc: &RemoteCluster) -> bool {
    rc.finalizers().iter().any(|f| f == FINALIZER_REMOTE_CLUSTER)
}

/// What follows an attempt to remove a deleted RemoteCluster's agents (pure).
#[derive(Debug, PartialEq, Eq)]
pub enum OnDelete {
    /// They are gone: release the finalizer.
    Done,
    /// Keep trying later.
    Retry(String),
    /// Release the finalizer and leave them, with a warning.
    GiveUp(String),
}

/// Decides from the attempt — `Err((permanent, why))` when it failed — and how long the RemoteCluster has been
/// deleted.
pub fn on_delete(attempt: Result<(), (bool, String)>, deleted_for: Duration) -> OnDelete {
    match attempt {
        Ok(()) => OnDelete::Done,
        Err((true, why)) => OnDelete::GiveUp(why),
        Err((false, why)) if deleted_for >= GIVE_UP_AFTER => OnDelete::GiveUp(why),
        Err((false, why)) => OnDelete::Retry(why),
    }
}

async fn set(ctx: &Context, rc: &RemoteCluster, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> =
        rc.finalizers().iter().filter(|f| *f != FINALIZER_REMOTE_CLUSTER).cloned().collect();
    if present {
        finalizers.push(FINALIZER_REMOTE_CLUSTER.to_string());
    }
    // The resourceVersion makes this a compare-and-swap over the whole list.
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": rc.resource_version()}});
    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &rc.namespace().unwrap_or_default());
    let what = format!("update finalizers of RemoteCluster {}", owner(rc));
    let (name, params, patch) = (rc.name_any(), PatchParams::default(), Patch::Merge(&patch));
    with_timeout(what, ctx.settings.api_timeout, api.patch(&name, &params, &patch)).await.map(|_| ())
}

/// Adds the finalizer before agents are installed.
pub async fn ensure(ctx: &Context, rc: &RemoteCluster) -> Result<(), Error> {
    if has(rc) { Ok(()) } else { set(ctx, rc, true).await }
}

/// Removes the finalizer once nothing is left to remove.
pub async fn release(ctx: &Context, rc: &RemoteCluster) -> Result<(), Error> {
    if has(rc) { set(ctx, rc, false).await } else { Ok(()) }
}

/// Handles a deleted RemoteCluster that carries the finalizer. `Ok(true)` when it was released.
pub async fn finalize(ctx: &Context, rc: &RemoteCluster) -> Result<bool, Error> {
    let timeout = ctx.settings.api_timeout;
    let attempt = match ctx.registry.connect(&ctx.client, rc, timeout).await {
        Ok(conn) => {
            install::uninstall(&conn.client, &owner(rc), timeout).await.map(|_| ()).map_err(|e| (false, e.to_string()))
        }
        // Without the kubeconfig Secret nothing will bring the connection back.
        Err(e) => Err((
            matches!(e, ClusterError::SecretNotFound { .. } | ClusterError::SecretKeyMissing { .. }),
            e.to_string(),
        )),
    };
    let deleted_for = rc
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| Duration::from_secs(jiff::Timestamp::now().duration_since(t.0).as_secs().max(0).unsigned_abs()))
        .unwrap_or_default();
    match on_delete(attempt, deleted_for) {
        OnDelete::Done => tracing::info!(remote_cluster = %owner(rc), "RemoteCluster deleted; its agents were removed"),
        OnDelete::Retry(why) => {
            tracing::warn!(remote_cluster = %owner(rc), %why, "cannot remove the agents yet; retrying");
            return Ok(false);
        }
        OnDelete::GiveUp(why) => {
            let note = format!(
                "cannot reach the cluster to remove its agents ({why}); remove them by hand: \
                 kubectl -n {AGENT_NAMESPACE} delete daemonset,secret,serviceaccount,role,rolebinding,service \
                 -l dr-syncer.io/remote-cluster={}",
                rc.name_any()
            );
            ctx.events.publish(&rc.object_ref(&()), Severity::Warning, "AgentsLeftBehind", "Cleanup", &note).await;
            tracing::warn!(remote_cluster = %owner(rc), %note, "agents left behind");
        }
    }
    release(ctx, rc).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_delete_gives_up_only_when_the_cluster_cannot_come_back() {
        let s = Duration::from_secs;
        assert_eq!(on_delete(Ok(()), s(0)), OnDelete::Done);
        assert_eq!(on_delete(Err((false, "refused".into())), s(30)), OnDelete::Retry("refused".into()));
        assert_eq!(on_delete(Err((false, "refused".into())), GIVE_UP_AFTER), OnDelete::GiveUp("refused".into()));
        assert_eq!(on_delete(Err((true, "Secret gone".into())), s(0)), OnDelete::GiveUp("Secret gone".into()));
    }
}
