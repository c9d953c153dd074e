//! RemoteCluster reconciler: reads the kubeconfig Secret, builds (or reuses) the client, checks that the cluster
//! answers, and reports it in conditions, `health` and `lastSyncTime`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dr_syncer_api::common::Time;
use dr_syncer_api::remote_cluster::RemoteClusterStatus;
use dr_syncer_api::{RemoteCluster, validation};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use super::backoff;
use super::conditions::{self, Desired, FALSE, TRUE, UNKNOWN};
use super::context::Context;
use super::events::Severity;
use crate::agent::{self, status::AgentOutcome};
use crate::clusters::{self, registry};
use crate::error::Error;

/// Condition: the kubeconfig Secret and key exist.
pub const KUBECONFIG_AVAILABLE: &str = "KubeconfigAvailable";
/// Condition: the kubeconfig is usable.
pub const KUBECONFIG_VALID: &str = "KubeconfigValid";
/// Condition: the API server answered.
pub const CLUSTER_AVAILABLE: &str = "ClusterAvailable";
/// Condition: `defaultSchedule` is a valid cron expression (or unset).
pub const SCHEDULE_VALID: &str = "ScheduleValid";
/// How soon agents that are not ready yet are looked at again.
const AGENT_RECHECK: Duration = Duration::from_secs(5);
/// `status.health` values.
pub const HEALTHY: &str = "Healthy";
/// `status.health` when the cluster cannot be used.
pub const UNHEALTHY: &str = "Unhealthy";

/// What one reconcile found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kubeconfig Secret or key is missing or unreadable.
    SecretUnavailable {
        /// Short CamelCase reason, for the condition and the event.
        reason: String,
        /// What is wrong, for the condition message.
        message: String,
    },
    /// The kubeconfig is unusable.
    KubeconfigInvalid {
        /// Short CamelCase reason, for the condition and the event.
        reason: String,
        /// What is wrong, for the condition message.
        message: String,
    },
    /// The client was built and the API server probed.
    Probed {
        /// API server URL.
        server: String,
        /// The kubeconfig asked to skip TLS verification.
        insecure_requested: bool,
        /// The server's version, or why the probe failed.
        result: Result<String, (String, String)>,
    },
}

impl Outcome {
    /// Whether the cluster is usable.
    pub fn healthy(&self) -> bool {
        matches!(self, Outcome::Probed { result: Ok(_), .. })
    }
}

/// The status after a reconcile. Pure. `lastSyncTime` (the heartbeat) moves only when the last one is at least
/// [`super::heartbeat::SHARE`] of `heartbeat` old, so a cluster looked at more often (agents rolling out) writes no more.
pub fn plan_status(
    previous: &RemoteClusterStatus,
    outcome: &Outcome,
    agents: Option<&AgentOutcome>,
    schedule_problem: Option<String>,
    (generation, heartbeat): (Option<i64>, Duration),
    now: &Time,
) -> RemoteClusterStatus {
    let mut status = previous.clone();
    if let Some(agents) = agents {
        agent::status::fold(&mut status.pvc_sync, &mut status.conditions, agents, generation, now);
    }
    let conds = &mut status.conditions;
    let mut set = |type_, status, reason: &str, message: String| {
        conditions::set(conds, Desired { type_, status, reason, message }, generation, now)
    };
    match outcome {
        Outcome::SecretUnavailable { reason, message } => {
            set(KUBECONFIG_AVAILABLE, FALSE, reason, message.clone());
            set(KUBECONFIG_VALID, UNKNOWN, "SecretUnavailable", "the kubeconfig Secret cannot be read".into());
            set(CLUSTER_AVAILABLE, UNKNOWN, "NoClient", "no client without a kubeconfig".into());
        }
        Outcome::KubeconfigInvalid { reason, message } => {
            set(KUBECONFIG_AVAILABLE, TRUE, "SecretFound", "the kubeconfig Secret and key exist".into());
            set(KUBECONFIG_VALID, FALSE, reason, message.clone());
            set(CLUSTER_AVAILABLE, UNKNOWN, "NoClient", "no client without a valid kubeconfig".into());
        }
        Outcome::Probed { server, insecure_requested, result } => {
            set(KUBECONFIG_AVAILABLE, TRUE, "SecretFound", "the kubeconfig Secret and key exist".into());
            if *insecure_requested {
                set(
                    KUBECONFIG_VALID,
                    TRUE,
                    "InsecureSkipTLSVerifyIgnored",
                    "the kubeconfig sets insecure-skip-tls-verify; dr-syncer verifies the server certificate anyway: add certificate-authority-data".into(),
                );
            } else {
                set(KUBECONFIG_VALID, TRUE, "Valid", format!("kubeconfig for {server}"));
            }
            match result {
                Ok(version) => {
                    set(CLUSTER_AVAILABLE, TRUE, "Reachable", format!("{server} answers (Kubernetes {version})"))
                }
                Err((reason, message)) => set(CLUSTER_AVAILABLE, FALSE, reason, message.clone()),
            }
        }
    }
    match schedule_problem {
        Some(message) => set(SCHEDULE_VALID, FALSE, "InvalidSchedule", message),
        None => set(SCHEDULE_VALID, TRUE, "Valid", "defaultSchedule is unset or valid".into()),
    }
    status.health = Some(if outcome.healthy() { HEALTHY } else { UNHEALTHY }.to_string());
    if outcome.healthy() && super::heartbeat::due(previous.last_sync_time.as_ref(), heartbeat, now) {
        status.last_sync_time = Some(now.clone());
    }
    status.observed_generation = generation;
    status
}

/// State of the RemoteCluster controller.
pub struct State {
    ctx: Context,
    store: Store<RemoteCluster>,
    failures: Mutex<HashMap<String, u32>>,
    /// Per RemoteCluster: the generation whose agents were last applied, and when (a restart applies again).
    installs: Mutex<HashMap<String, (Option<i64>, std::time::Instant)>>,
}

impl State {
    /// Whether the agents of `key` must be applied: never applied by this process, a new spec generation, or the
    /// last apply is a health interval old (so objects changed by hand are put back).
    fn install_due(&self, key: &str, generation: Option<i64>, interval: Duration) -> bool {
        let Ok(map) = self.installs.lock() else { return true };
        map.get(key).is_none_or(|(g, at)| *g != generation || at.elapsed() >= interval)
    }

    fn installed(&self, key: &str, generation: Option<i64>) {
        if let Ok(mut map) = self.installs.lock() {
            map.insert(key.to_string(), (generation, std::time::Instant::now()));
        }
    }
}

async fn reconcile(rc: Arc<RemoteCluster>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let ns = rc.namespace().ok_or(Error::Incomplete { what: "namespace" })?;
    let key = registry::key(&rc);
    sweep(&state);
    if rc.meta().deletion_timestamp.is_some() {
        if agent::finalizer::has(&rc) && !agent::finalizer::finalize(ctx, &rc).await? {
            return Ok(Action::requeue(AGENT_RECHECK * 2));
        }
        return Ok(Action::await_change());
    }
    if agent::enabled(&rc) {
        // Before anything is installed, so deleting the RemoteCluster always removes it again.
        agent::finalizer::ensure(ctx, &rc).await?;
    }
    let mut agents = None;
    let outcome = match ctx.registry.connect(&ctx.client, &rc, ctx.settings.api_timeout).await {
        Err(e) if e.is_unavailable() => {
            Outcome::SecretUnavailable { reason: e.reason().into(), message: e.to_string() }
        }
        Err(e) => Outcome::KubeconfigInvalid { reason: e.reason().into(), message: e.to_string() },
        Ok(conn) => {
            let result = clusters::probe(&conn, ctx.settings.api_timeout).await;
            if result.is_ok() {
                let (image, timeout) = (ctx.settings.agent_image.as_str(), ctx.settings.api_timeout);
                let scope = ctx.settings.namespace.as_deref();
                let asked = rc.annotations().contains_key(dr_syncer_api::constants::ANNOTATION_ROTATE_SSH_KEY);
                let apply = asked || state.install_due(&key, rc.meta().generation, ctx.settings.health_interval);
                let outcome = agent::reconcile(&ctx.client, &conn.client, &rc, (image, scope, apply), timeout).await;
                if apply && !matches!(outcome, AgentOutcome::Failed { .. }) {
                    state.installed(&key, rc.meta().generation);
                }
                agents = Some(outcome);
            }
            Outcome::Probed { server: conn.server.clone(), insecure_requested: conn.insecure_requested, result }
        }
    };
    let schedule_problem = rc
        .spec
        .default_schedule
        .as_deref()
        .and_then(|s| validation::parse_cron(s).err().map(|e| format!("defaultSchedule: {e}")));
    let previous = rc.status.clone().unwrap_or_default();
    if matches!(agents, Some(AgentOutcome::Removed | AgentOutcome::Disabled)) {
        agent::finalizer::release(ctx, &rc).await?;
    }
    let at = (rc.meta().generation, ctx.settings.health_interval);
    let now = conditions::now();
    let mut status = plan_status(&previous, &outcome, agents.as_ref(), schedule_problem, at, &now);
    super::fields::set_condition(&mut status.conditions, &super::fields::of_remote_cluster(&rc.spec), at.0, &now);
    if status != previous {
        let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &ns);
        super::status::apply(&api, &rc, &status, ctx.settings.api_timeout).await?;
    }
    ctx.metrics.set_cluster_healthy(&ns, &rc.name_any(), Some(outcome.healthy()));
    publish_transitions(ctx, &rc, &previous, &status).await;
    let failures = {
        let mut map = state.failures.lock().map_err(|_| Error::Incomplete { what: "lock" })?;
        if outcome.healthy() {
            map.remove(&key);
            0
        } else {
            let n = map.entry(key).or_insert(0);
            *n += 1;
            *n
        }
    };
    if failures == 0 {
        // Agents rolling out or failing are looked at again soon; their cluster is not watched.
        let unsettled = agents.as_ref().is_some_and(AgentOutcome::unsettled);
        let next =
            if unsettled { AGENT_RECHECK.min(ctx.settings.health_interval) } else { ctx.settings.health_interval };
        return Ok(Action::requeue(next));
    }
    Ok(Action::requeue(backoff::jittered(ctx.settings.base_backoff, failures, backoff::MAX_BACKOFF)))
}

/// Events for conditions whose status or reason changed.
async fn publish_transitions(
    ctx: &Context,
    rc: &RemoteCluster,
    before: &RemoteClusterStatus,
    after: &RemoteClusterStatus,
) {
    let reference = rc.object_ref(&());
    for c in &after.conditions {
        let old = conditions::get(&before.conditions, &c.type_);
        if old.is_some_and(|o| o.status == c.status && o.reason == c.reason) {
            continue;
        }
        if c.status == UNKNOWN {
            continue;
        }
        let severity = if c.status == TRUE { Severity::Normal } else { Severity::Warning };
        if severity == Severity::Normal && old.is_none() && c.reason != "InsecureSkipTLSVerifyIgnored" {
            continue;
        }
        let severity = if c.reason == "InsecureSkipTLSVerifyIgnored" { Severity::Warning } else { severity };
        ctx.events.publish(&reference, severity, &c.reason, &c.type_, &c.message).await;
    }
}

/// Forgets clients and metric series of RemoteClusters that no longer exist.
fn sweep(state: &State) {
    let known: HashSet<String> = state.store.state().iter().map(|rc| registry::key(rc)).collect();
    state.ctx.registry.retain(&known);
    // A deleted RemoteCluster's health series goes with it (a stale 0 would keep an alert firing).
    state.ctx.metrics.retain_clusters(|ns, name| known.contains(&format!("{ns}/{name}")));
    if let Ok(mut failures) = state.failures.lock() {
        failures.retain(|k, _| known.contains(k));
    }
    if let Ok(mut installs) = state.installs.lock() {
        installs.retain(|k, _| known.contains(k));
    }
}

fn error_policy(rc: Arc<RemoteCluster>, error: &Error, state: Arc<State>) -> Action {
    tracing::warn!(remote_cluster = %registry::key(&rc), error = %error.chain(), "reconcile failed");
    state.ctx.metrics.reconcile_error("remotecluster", error.reason());
    Action::requeue(backoff::jittered(Duration::from_secs(2), 2, backoff::MAX_BACKOFF))
}

/// Runs the RemoteCluster controller until `shutdown` resolves. Changes to Secrets re-reconcile the
/// RemoteClusters that reference them.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (store, changes) = super::changes::primary::<RemoteCluster>(ctx.watched());
    let controller = Controller::for_stream(changes, store.clone());
    ctx.caches.track("remoteclusters", store.clone());
    let by_secret = store.clone();
    // Only the Secrets' metadata is watched: a change (new resourceVersion) is all that matters here, and the
    // kubeconfigs themselves are read only for the RemoteClusters that name them.
    let secrets: Api<PartialObjectMeta<Secret>> = match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let secrets = watcher(secrets, watcher::Config::default()).default_backoff().applied_objects();
    let state = Arc::new(State { ctx, store, failures: Mutex::default(), installs: Mutex::default() });
    controller
        .watches_stream(secrets, move |secret: PartialObjectMeta<Secret>| {
            let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            by_secret
                .state()
                .into_iter()
                .filter(|rc| {
                    rc.spec.kubeconfig_secret_ref.namespace == ns && rc.spec.kubeconfig_secret_ref.name == name
                })
                .map(|rc| ObjectRef::from_obj(&*rc))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn now() -> Time {
        at(1_000)
    }

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn reason(s: &RemoteClusterStatus, t: &str) -> (String, String) {
        let c = conditions::get(&s.conditions, t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn plan_status_reports_each_failure_on_its_condition() {
        let prev = RemoteClusterStatus::default();
        let missing = Outcome::SecretUnavailable { reason: "SecretNotFound".into(), message: "m".into() };
        let s = plan_status(&prev, &missing, None, None, (Some(1), MINUTE), &now());
        assert_eq!(reason(&s, KUBECONFIG_AVAILABLE), ("False".into(), "SecretNotFound".into()));
        assert_eq!(s.health.as_deref(), Some(UNHEALTHY));
        assert!(s.last_sync_time.is_none());

        let invalid = Outcome::KubeconfigInvalid { reason: "ExecPluginNotAllowed".into(), message: "m".into() };
        let s = plan_status(&prev, &invalid, None, None, (Some(1), MINUTE), &now());
        assert_eq!(reason(&s, KUBECONFIG_VALID), ("False".into(), "ExecPluginNotAllowed".into()));

        let down = Outcome::Probed {
            server: "https://h".into(),
            insecure_requested: false,
            result: Err(("Unreachable".into(), "refused".into())),
        };
        let s = plan_status(&prev, &down, None, Some("bad".into()), (Some(1), MINUTE), &now());
        assert_eq!(reason(&s, CLUSTER_AVAILABLE), ("False".into(), "Unreachable".into()));
        assert_eq!(reason(&s, SCHEDULE_VALID), ("False".into(), "InvalidSchedule".into()));
    }

    #[test]
    fn plan_status_marks_healthy_and_flags_insecure_when_reachable() {
        let up = Outcome::Probed { server: "https://h".into(), insecure_requested: true, result: Ok("v1.20.2".into()) };
        let s = plan_status(&RemoteClusterStatus::default(), &up, None, None, (Some(3), MINUTE), &now());
        assert_eq!(s.health.as_deref(), Some(HEALTHY));
        assert_eq!(s.last_sync_time, Some(now()));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(reason(&s, KUBECONFIG_VALID), ("True".into(), "InsecureSkipTLSVerifyIgnored".into()));
        assert_eq!(reason(&s, CLUSTER_AVAILABLE), ("True".into(), "Reachable".into()));
    }

    /// The heartbeat moves once per health interval (from 90 % of it on), however often the cluster is looked at.
    #[test]
    fn plan_status_moves_the_heartbeat_once_per_health_interval() {
        let up = Outcome::Probed { server: "https://h".into(), insecure_requested: false, result: Ok("v".into()) };
        let first = plan_status(&RemoteClusterStatus::default(), &up, None, None, (Some(1), MINUTE), &at(1_000));
        let cases = [(1_005, 1_000), (1_053, 1_000), (1_054, 1_054), (1_120, 1_120)];
        for (now, want) in cases {
            let s = plan_status(&first, &up, None, None, (Some(1), MINUTE), &at(now));
            assert_eq!(s.last_sync_time, Some(at(want)), "at {now}");
        }
        let same = plan_status(&first, &up, None, None, (Some(1), MINUTE), &at(1_005));
        assert_eq!(same, first, "nothing to write 5 s later");
    }
}
