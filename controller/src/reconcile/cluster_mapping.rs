//! ClusterMapping reconciler: checks that both RemoteClusters exist and answer, and reports the pairing's phase.

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_api::cluster_mapping::{ClusterMappingPhase, ClusterMappingStatus};
use dr_syncer_api::common::Time;
use dr_syncer_api::{ClusterMapping, RemoteCluster};
use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::backoff;
use super::conditions::{self, Desired, FALSE, TRUE};
use super::context::Context;
use super::events::Severity;
use crate::clusters;
use crate::error::{Error, with_timeout as call};

/// Condition: the source cluster answers.
pub const SOURCE_REACHABLE: &str = "SourceReachable";
/// Condition: the target cluster answers.
pub const TARGET_REACHABLE: &str = "TargetReachable";
/// Condition: the pairing is usable.
pub const READY: &str = "Ready";
/// Condition: verification is paused.
pub const PAUSED: &str = "Paused";

/// Result of checking one side.
pub type SideResult = Result<String, (String, String)>;

/// The status after a verification. Pure.
pub fn plan_status(
    previous: &ClusterMappingStatus,
    source: &SideResult,
    target: &SideResult,
    generation: Option<i64>,
    now: &Time,
) -> ClusterMappingStatus {
    let mut s = previous.clone();
    for (type_, side) in [(SOURCE_REACHABLE, source), (TARGET_REACHABLE, target)] {
        let desired = match side {
            Ok(message) => Desired { type_, status: TRUE, reason: "Reachable", message: message.clone() },
            Err((reason, message)) => Desired { type_, status: FALSE, reason, message: message.clone() },
        };
        conditions::set(&mut s.conditions, desired, generation, now);
    }
    let connected = source.is_ok() && target.is_ok();
    let failing: Vec<&str> =
        [source, target].into_iter().filter_map(|r| r.as_ref().err()).map(|(_, m)| m.as_str()).collect();
    let message = if connected { "both clusters answer".to_string() } else { failing.join("; ") };
    let reason = match (source, target) {
        (Ok(_), Ok(_)) => "Connected",
        (Err((r, _)), _) | (_, Err((r, _))) => r.as_str(),
    };
    let ready =
        Desired { type_: READY, status: if connected { TRUE } else { FALSE }, reason, message: message.clone() };
    conditions::set(&mut s.conditions, ready, generation, now);
    conditions::set(
        &mut s.conditions,
        Desired { type_: PAUSED, status: FALSE, reason: "Active", message: "verification runs".into() },
        generation,
        now,
    );
    s.phase = Some(if connected { ClusterMappingPhase::Connected } else { ClusterMappingPhase::Failed });
    s.message = Some(message);
    s.last_attempt_time = Some(now.clone());
    if connected {
        s.last_verified = Some(now.clone());
        s.consecutive_failures = 0;
    } else {
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
    }
    s.observed_generation = generation;
    s
}

/// The status of a paused mapping: its last state, with the Paused condition. Pure.
pub fn plan_paused(previous: &ClusterMappingStatus, generation: Option<i64>, now: &Time) -> ClusterMappingStatus {
    let mut s = previous.clone();
    let paused = Desired {
        type_: PAUSED,
        status: TRUE,
        reason: "Paused",
        message: "spec.paused is true; clusters are not verified".into(),
    };
    conditions::set(&mut s.conditions, paused, generation, now);
    s.observed_generation = generation;
    s
}

async fn check_side(ctx: &Context, ns: &str, name: &str, same_as_other: bool) -> SideResult {
    if same_as_other {
        return Err(("SameCluster".into(), format!("sourceCluster and targetCluster are both {name:?}")));
    }
    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), ns);
    let rc = match call(format!("get RemoteCluster {ns}/{name}"), ctx.settings.api_timeout, api.get_opt(name)).await {
        Ok(Some(rc)) => rc,
        Ok(None) => return Err(("RemoteClusterNotFound".into(), format!("RemoteCluster {ns}/{name} does not exist"))),
        Err(e) => return Err((e.reason().into(), e.to_string())),
    };
    let conn = ctx
        .registry
        .connect(&ctx.client, &rc, ctx.settings.api_timeout)
        .await
        .map_err(|e| (e.reason().to_string(), format!("RemoteCluster {name}: {e}")))?;
    clusters::probe(&conn, ctx.settings.api_timeout)
        .await
        .map(|v| format!("RemoteCluster {name} answers (Kubernetes {v})"))
        .map_err(|(r, m)| (r, format!("RemoteCluster {name}: {m}")))
}

async fn reconcile(cm: Arc<ClusterMapping>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cm.namespace().ok_or(Error::Incomplete { what: "namespace" })?;
    let api: Api<ClusterMapping> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = cm.status.clone().unwrap_or_default();
    let generation = cm.meta().generation;
    if cm.spec.is_paused() {
        let status = plan_paused(&previous, generation, &conditions::now());
        if status != previous {
            super::status::apply(&api, &cm, &status, ctx.settings.api_timeout).await?;
        }
        return Ok(Action::await_change());
    }
    if previous.phase.is_none() || previous.phase == Some(ClusterMappingPhase::Pending) {
        let connecting = ClusterMappingStatus { phase: Some(ClusterMappingPhase::Connecting), ..previous.clone() };
        super::status::apply(&api, &cm, &connecting, ctx.settings.api_timeout).await?;
    }
    let same = cm.spec.source_cluster == cm.spec.target_cluster;
    let (source, target) = tokio::join!(
        check_side(&ctx, &ns, &cm.spec.source_cluster, false),
        check_side(&ctx, &ns, &cm.spec.target_cluster, same)
    );
    let status = plan_status(&previous, &source, &target, generation, &conditions::now());
    super::status::apply(&api, &cm, &status, ctx.settings.api_timeout).await?;
    let connected = status.phase == Some(ClusterMappingPhase::Connected);
    ctx.metrics.set_mapping_connected(&ns, &cm.name_any(), Some(connected));
    if previous.phase != status.phase {
        let (severity, reason) =
            if connected { (Severity::Normal, "Connected") } else { (Severity::Warning, "ConnectionFailed") };
        let note = status.message.clone().unwrap_or_default();
        ctx.events.publish(&cm.object_ref(&()), severity, reason, "Verify", &note).await;
    }
    if connected {
        return Ok(Action::requeue(ctx.settings.health_interval));
    }
    let failures = u32::try_from(status.consecutive_failures).unwrap_or(u32::MAX);
    Ok(Action::requeue(backoff::jittered(ctx.settings.base_backoff, failures, backoff::MAX_BACKOFF)))
}

fn error_policy(cm: Arc<ClusterMapping>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster_mapping = %cm.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_error("clustermapping", error.reason());
    Action::requeue(backoff::jittered(Duration::from_secs(2), 2, backoff::MAX_BACKOFF))
}

/// Runs the ClusterMapping controller until `shutdown` resolves. Changes to RemoteClusters re-verify the mappings
/// that name them.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let api: Api<ClusterMapping> = ctx.watched();
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    ctx.caches.track("clustermappings", store.clone());
    let rcs: Api<RemoteCluster> = ctx.watched();
    controller
        .watches(rcs, watcher::Config::default(), move |rc: RemoteCluster| {
            let (ns, name) = (rc.namespace().unwrap_or_default(), rc.name_any());
            store
                .state()
                .into_iter()
                .filter(|cm| {
                    cm.namespace().as_deref() == Some(ns.as_str())
                        && (cm.spec.source_cluster == name || cm.spec.target_cluster == name)
                })
                .map(|cm| ObjectRef::from_obj(&*cm))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_000).unwrap())
    }

    #[test]
    fn plan_status_counts_failures_and_resets_them_on_success() {
        let down: SideResult = Err(("RemoteClusterNotFound".into(), "gone".into()));
        let up: SideResult = Ok("fine".into());
        let s1 = plan_status(&ClusterMappingStatus::default(), &up, &down, Some(1), &now());
        assert_eq!((s1.phase, s1.consecutive_failures), (Some(ClusterMappingPhase::Failed), 1));
        assert_eq!(conditions::get(&s1.conditions, READY).unwrap().reason, "RemoteClusterNotFound");
        let s2 = plan_status(&s1, &up, &down, Some(1), &now());
        assert_eq!(s2.consecutive_failures, 2);
        let s3 = plan_status(&s2, &up, &up, Some(1), &now());
        assert_eq!((s3.phase, s3.consecutive_failures), (Some(ClusterMappingPhase::Connected), 0));
        assert_eq!(s3.last_verified, Some(now()));
    }

    #[test]
    fn plan_paused_keeps_phase_and_sets_condition() {
        let prev = ClusterMappingStatus { phase: Some(ClusterMappingPhase::Connected), ..Default::default() };
        let s = plan_paused(&prev, Some(2), &now());
        assert_eq!(s.phase, Some(ClusterMappingPhase::Connected));
        assert!(conditions::is_true(&s.conditions, PAUSED));
    }
}
