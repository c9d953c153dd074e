//! ClusterMapping reconciler: checks that both RemoteClusters exist and answer, and reports the pairing's phase.

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_api::cluster_mapping::{ClusterMappingPhase, ClusterMappingStatus, ConnectionStatus};
use dr_syncer_api::common::Time;
use dr_syncer_api::{ClusterMapping, RemoteCluster};
use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
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
/// Condition: every source agent completed an SSH handshake with its pinned host key.
pub const AGENTS_CONNECTED: &str = "AgentsConnected";

/// Result of the agent handshakes: `None` when not checked (no `verifyConnectivity`, or no agents asked for).
pub type AgentsResult = Option<Result<ConnectionStatus, String>>;

/// Result of checking one side.
pub type SideResult = Result<String, (String, String)>;

/// The status after a verification. Pure.
pub fn plan_status(
    previous: &ClusterMappingStatus,
    (source, target): (&SideResult, &SideResult),
    agents: &AgentsResult,
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
    let agents_side = agents_side(agents);
    match &agents_side {
        None => {
            s.conditions.retain(|c| c.type_ != AGENTS_CONNECTED);
            s.connection_status = None;
        }
        Some(side) => {
            let desired = match side {
                Ok(message) => {
                    Desired { type_: AGENTS_CONNECTED, status: TRUE, reason: "Connected", message: message.clone() }
                }
                Err((reason, message)) => {
                    Desired { type_: AGENTS_CONNECTED, status: FALSE, reason, message: message.clone() }
                }
            };
            conditions::set(&mut s.conditions, desired, generation, now);
            s.connection_status = agents.as_ref().and_then(|a| a.as_ref().ok().cloned());
        }
    }
    let sides: Vec<&SideResult> = [Some(source), Some(target), agents_side.as_ref()].into_iter().flatten().collect();
    let connected = sides.iter().all(|r| r.is_ok());
    let failing: Vec<&str> = sides.iter().filter_map(|r| r.as_ref().err()).map(|(_, m)| m.as_str()).collect();
    let message = if connected {
        if agents_side.is_some() {
            "both clusters answer; every source agent completed an SSH handshake"
        } else {
            "both clusters answer"
        }
        .to_string()
    } else {
        failing.join("; ")
    };
    let reason = sides.iter().find_map(|r| r.as_ref().err().map(|(r, _)| r.as_str())).unwrap_or("Connected");
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

/// The agent handshakes as one more side: per-node errors folded into one message. Pure.
fn agents_side(agents: &AgentsResult) -> Option<SideResult> {
    let result = agents.as_ref()?;
    Some(match result {
        Err(message) => Err(("AgentCheckFailed".into(), format!("source agents not checked: {message}"))),
        Ok(status) if crate::agent::probe::all_connected(status) => {
            Ok(format!("{} source agent(s) completed an SSH handshake", status.connected_agents))
        }
        Ok(status) if status.total_source_agents == 0 => {
            Err(("NoAgents".into(), "no source agent runs (is pvcSync enabled and are the agents Ready?)".into()))
        }
        Ok(status) => {
            let failed: Vec<String> = status
                .connection_details
                .iter()
                .filter(|d| !d.connected)
                .map(|d| format!("{}: {}", d.source_node, d.error.clone().unwrap_or_default()))
                .collect();
            Err(("AgentUnreachable".into(), format!("source agents unreachable: {}", failed.join("; "))))
        }
    })
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

/// Checks the source agents from the target cluster when the mapping verifies connectivity and the source cluster
/// has agents.
async fn check_agents(ctx: &Context, ns: &str, cm: &ClusterMapping) -> AgentsResult {
    if !cm.spec.verifies_connectivity() {
        return None;
    }
    let t = ctx.settings.api_timeout;
    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), ns);
    let rc = call("get the source RemoteCluster", t, api.get_opt(&cm.spec.source_cluster)).await.ok().flatten()?;
    if !crate::agent::enabled(&rc) {
        return None;
    }
    let check = async {
        let target = call("get the target RemoteCluster", t, api.get(&cm.spec.target_cluster)).await;
        let target = target.map_err(|e| e.to_string())?;
        let source_conn = ctx.registry.connect(&ctx.client, &rc, t).await.map_err(|e| e.to_string())?;
        let target_conn = ctx.registry.connect(&ctx.client, &target, t).await.map_err(|e| e.to_string())?;
        let pvc_sync = rc.spec.pvc_sync.clone().unwrap_or_default();
        let ssh = pvc_sync.ssh.clone().unwrap_or_default();
        let access = crate::data::run::AgentAccess {
            port: ssh.port.unwrap_or(dr_syncer_api::remote_cluster::DEFAULT_AGENT_SSH_PORT) as u16,
            service: ssh.service.is_some(),
        };
        let image = crate::agent::manifests::image(&pvc_sync, &ctx.settings.agent_image);
        let name = cm.name_any();
        let check = crate::agent::probe::Check {
            source: &source_conn.client,
            target: &target_conn.client,
            access: &access,
            image: &image,
            mapping: (ns, &name),
            timeout: t,
        };
        crate::agent::probe::check(&check, &ctx.probes).await
    };
    let budget = Duration::from_secs(cm.spec.connectivity_timeout_seconds.unwrap_or(60).max(1) as u64);
    Some(tokio::time::timeout(budget, check).await.unwrap_or_else(|_| Err(format!("checks took over {budget:?}"))))
}

/// State of the ClusterMapping controller.
pub struct State {
    ctx: Context,
    store: Store<ClusterMapping>,
    /// Failures in a row per ClusterMapping, ahead of `status.consecutiveFailures` (written once per interval).
    failures: std::sync::Mutex<std::collections::HashMap<(String, String), i32>>,
}

async fn reconcile(cm: Arc<ClusterMapping>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    // A deleted ClusterMapping's series goes with it (a stale 0 would keep an alert firing).
    let known: std::collections::HashSet<(String, String)> =
        state.store.state().iter().map(|c| (c.namespace().unwrap_or_default(), c.name_any())).collect();
    ctx.metrics.retain_mappings(|ns, name| known.contains(&(ns.to_string(), name.to_string())));
    let ns = cm.namespace().ok_or(Error::Incomplete { what: "namespace" })?;
    let key = (ns.clone(), cm.name_any());
    let counted = {
        let mut failures = state.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|k, _| known.contains(k));
        failures.get(&key).copied().unwrap_or_default()
    };
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
        check_side(ctx, &ns, &cm.spec.source_cluster, false),
        check_side(ctx, &ns, &cm.spec.target_cluster, same)
    );
    let agents = if source.is_ok() && target.is_ok() { check_agents(ctx, &ns, &cm).await } else { None };
    let now = conditions::now();
    // Failures since the last status write count too: the backoff grows with every one of them.
    let counted =
        ClusterMappingStatus { consecutive_failures: previous.consecutive_failures.max(counted), ..previous.clone() };
    let mut status = plan_status(&counted, (&source, &target), &agents, generation, &now);
    let unsupported = super::fields::of_cluster_mapping(&cm.spec);
    super::fields::set_condition(&mut status.conditions, &unsupported, generation, &now);
    state.failures.lock().unwrap_or_else(|p| p.into_inner()).insert(key, status.consecutive_failures);
    let interval = ctx.settings.health_interval;
    if super::heartbeat::cluster_mapping_write_due(&previous, &status, interval, &now) {
        super::status::apply(&api, &cm, &status, ctx.settings.api_timeout).await?;
    }
    let was_unsupported = conditions::get(&previous.conditions, super::fields::FIELDS_SUPPORTED)
        .is_some_and(|c| c.status == conditions::FALSE);
    if !unsupported.is_empty() && !was_unsupported {
        let message = conditions::get(&status.conditions, super::fields::FIELDS_SUPPORTED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let reference = cm.object_ref(&());
        ctx.events.publish(&reference, Severity::Warning, super::fields::UNSUPPORTED_FIELD, "Verify", &message).await;
    }
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

fn error_policy(cm: Arc<ClusterMapping>, error: &Error, state: Arc<State>) -> Action {
    let ctx = &state.ctx;
    tracing::warn!(cluster_mapping = %cm.name_any(), error = %error.chain(), "reconcile failed");
    ctx.metrics.reconcile_error("clustermapping", error.reason());
    Action::requeue(backoff::jittered(Duration::from_secs(2), 2, backoff::MAX_BACKOFF))
}

/// Runs the ClusterMapping controller until `shutdown` resolves. Changes to RemoteClusters re-verify the mappings
/// that name them.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (store, changes) = super::changes::primary::<ClusterMapping>(ctx.watched());
    let controller = Controller::for_stream(changes, store.clone());
    ctx.caches.track("clustermappings", store.clone());
    let state_store = store.clone();
    let rcs = super::changes::related::<RemoteCluster>(ctx.watched());
    controller
        .watches_stream(rcs, move |rc: RemoteCluster| {
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
        .run(reconcile, error_policy, Arc::new(State { ctx, store: state_store, failures: Default::default() }))
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
        let s1 = plan_status(&ClusterMappingStatus::default(), (&up, &down), &None, Some(1), &now());
        assert_eq!((s1.phase, s1.consecutive_failures), (Some(ClusterMappingPhase::Failed), 1));
        assert_eq!(conditions::get(&s1.conditions, READY).unwrap().reason, "RemoteClusterNotFound");
        let s2 = plan_status(&s1, (&up, &down), &None, Some(1), &now());
        assert_eq!(s2.consecutive_failures, 2);
        let s3 = plan_status(&s2, (&up, &up), &None, Some(1), &now());
        assert_eq!((s3.phase, s3.consecutive_failures), (Some(ClusterMappingPhase::Connected), 0));
        assert_eq!(s3.last_verified, Some(now()));
    }

    #[test]
    fn plan_status_needs_every_agent_when_agents_are_checked() {
        use dr_syncer_api::cluster_mapping::ConnectionDetail;
        let up: SideResult = Ok("fine".into());
        let node = |name: &str, error: Option<&str>| ConnectionDetail {
            source_node: name.into(),
            target_node: "dr".into(),
            connected: error.is_none(),
            error: error.map(String::from),
        };
        let status = |details: Vec<ConnectionDetail>| ConnectionStatus {
            total_source_agents: details.len() as i32,
            connected_agents: details.iter().filter(|d| d.connected).count() as i32,
            connection_details: details,
        };
        let cases: [(AgentsResult, ClusterMappingPhase, &str); 5] = [
            (None, ClusterMappingPhase::Connected, "Connected"),
            (Some(Ok(status(vec![node("a", None), node("b", None)]))), ClusterMappingPhase::Connected, "Connected"),
            (
                Some(Ok(status(vec![node("a", None), node("b", Some("refused"))]))),
                ClusterMappingPhase::Failed,
                "AgentUnreachable",
            ),
            (Some(Ok(status(vec![]))), ClusterMappingPhase::Failed, "NoAgents"),
            (Some(Err("no client".into())), ClusterMappingPhase::Failed, "AgentCheckFailed"),
        ];
        for (agents, phase, reason) in cases {
            let s = plan_status(&ClusterMappingStatus::default(), (&up, &up), &agents, Some(1), &now());
            assert_eq!(s.phase, Some(phase), "{agents:?}");
            assert_eq!(conditions::get(&s.conditions, READY).unwrap().reason, reason, "{agents:?}");
            assert_eq!(conditions::get(&s.conditions, AGENTS_CONNECTED).is_some(), agents.is_some());
            if reason == "AgentUnreachable" {
                assert!(s.message.unwrap().contains("b: refused"));
            }
        }
    }

    #[test]
    fn plan_paused_keeps_phase_and_sets_condition() {
        let prev = ClusterMappingStatus { phase: Some(ClusterMappingPhase::Connected), ..Default::default() };
        let s = plan_paused(&prev, Some(2), &now());
        assert_eq!(s.phase, Some(ClusterMappingPhase::Connected));
        assert!(conditions::is_true(&s.conditions, PAUSED));
    }
}
