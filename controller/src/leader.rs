//! Leader election: with several replicas, only the holder of a coordination.k8s.io Lease runs the reconcilers.
//!
//! [`kube_lease_manager`] acquires and renews the Lease. On top of it a watchdog reads the Lease itself: the leader
//! steps down (the process exits, and Kubernetes restarts it as a standby) as soon as the Lease names someone else,
//! or when it cannot confirm its own unexpired hold for `duration - grace`, which is before any other replica may
//! take the Lease over. Exiting is the only way to stop every background sync at once.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, with_timeout};
use crate::reconcile::backoff;

/// First wait before retrying a failed start of the election.
const START_RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failed start of the election.
const START_RETRY_MAX: Duration = Duration::from_secs(30);

/// Settings of leader election.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Lease name.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (pod name plus a random suffix).
    pub identity: String,
    /// How long a hold lasts without renewal; a standby takes over at most this long after the leader vanished.
    pub duration: Duration,
    /// The leader renews this long before its hold expires.
    pub grace: Duration,
    /// Time allowed for each Lease read of the watchdog.
    pub api_timeout: Duration,
}

/// What this replica currently is, for `/readyz` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Leader election is off: this replica always runs the reconcilers.
    Single,
    /// Waiting for the Lease.
    Standby,
    /// Holds the Lease and runs the reconcilers.
    Leader,
}

/// Shared view of this replica's [`Role`], mirrored into the `dr_syncer_leader` gauge.
#[derive(Clone)]
pub struct RoleCell(Arc<RwLock<Role>>, prometheus::IntGauge);

impl RoleCell {
    /// A cell starting in `role` that keeps `gauge` at 1 while this replica runs the reconcilers, else 0.
    pub fn with_gauge(role: Role, gauge: prometheus::IntGauge) -> Self {
        gauge.set(i64::from(role != Role::Standby));
        RoleCell(Arc::new(RwLock::new(role)), gauge)
    }

    /// The current role.
    pub fn get(&self) -> Role {
        self.0.read().map(|r| r.clone()).unwrap_or(Role::Standby)
    }

    /// Marks this replica standby again (it is handing its Lease back).
    pub fn set_standby(&self) {
        self.set(Role::Standby);
    }

    fn set(&self, role: Role) {
        self.1.set(i64::from(role != Role::Standby));
        if let Ok(mut r) = self.0.write() {
            *r = role;
        }
    }
}

/// The watchdog's reading of the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The Lease names us and has not expired.
    Ours,
    /// The Lease names another holder (or none).
    Lost(String),
    /// The Lease names us but its last renewal is older than its duration.
    Expired,
}

/// Judges a Lease read at `now` for `identity` (pure; unit-tested).
pub fn judge(lease: &Lease, identity: &str, now: jiff::Timestamp) -> Hold {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder != identity {
        return Hold::Lost(if holder.is_empty() { "nobody".to_string() } else { holder });
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    match spec.renew_time {
        Some(renewed) if renewed.0.as_second() + seconds > now.as_second() => Hold::Ours,
        _ => Hold::Expired,
    }
}

/// A running election: the Lease manager's task and its state channel.
pub struct Election {
    cfg: ElectionConfig,
    client: Client,
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, kube_lease_manager::LeaseManagerError>>,
    role: RoleCell,
}

impl Election {
    /// Starts competing for the Lease (created when missing). Reading or creating the Lease is retried with backoff
    /// (each attempt bounded by the API timeout), so a slow or briefly unreachable API server at start-up delays
    /// the replica instead of crashing it; `None` when `shutdown` came first.
    pub async fn start(
        client: Client,
        cfg: ElectionConfig,
        role: RoleCell,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let mut failures = 0u32;
        let manager = loop {
            let attempt = tokio::time::timeout(cfg.api_timeout, build_manager(&client, &cfg));
            let error = match attempt.await {
                Ok(Ok(manager)) => break manager,
                Ok(Err(e)) => format!("cannot use Lease {}: {e}", cfg.lease_name),
                Err(_) => format!("reading Lease {} took longer than {:?}", cfg.lease_name, cfg.api_timeout),
            };
            failures += 1;
            let wait = backoff::jittered(START_RETRY_BASE, failures, START_RETRY_MAX);
            tracing::warn!(%error, failures, retry_in = ?wait, "cannot start leader election yet");
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        };
        let (state, task) = manager.watch().await;
        role.set(Role::Standby);
        Some(Election { cfg, client, state, task, role })
    }

    /// Waits until this replica holds the Lease; `false` when `shutdown` came first.
    pub async fn acquired(&mut self, shutdown: &CancellationToken) -> Result<bool, Error> {
        loop {
            if *self.state.borrow_and_update() {
                self.role.set(Role::Leader);
                tracing::info!(lease = %self.cfg.lease_name, identity = %self.cfg.identity, "acquired leadership");
                return Ok(true);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                changed = self.state.changed() => changed.map_err(|_| Error::Leadership {
                    message: "the Lease manager stopped".into(),
                })?,
            }
        }
    }

    /// Resolves when leadership is lost (with the reason), or when `shutdown` is cancelled (`None`).
    pub async fn lost(&mut self, shutdown: &CancellationToken) -> Option<String> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let period = (self.cfg.grace / 2).max(Duration::from_secs(1));
        let allowed = self.cfg.duration.saturating_sub(self.cfg.grace).max(period);
        let mut confirmed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                changed = self.state.changed() => match changed {
                    Ok(()) if *self.state.borrow() => {}
                    Ok(()) => return Some("the Lease manager reports the Lease lost".into()),
                    Err(_) => return Some("the Lease manager stopped".into()),
                },
                _ = tokio::time::sleep(period) => {
                    let what = format!("get Lease {}", self.cfg.lease_name);
                    match with_timeout(what, self.cfg.api_timeout, api.get(&self.cfg.lease_name)).await {
                        Ok(lease) => match judge(&lease, &self.cfg.identity, jiff::Timestamp::now()) {
                            Hold::Ours => confirmed = Instant::now(),
                            Hold::Lost(holder) => return Some(format!("the Lease is now held by {holder}")),
                            Hold::Expired => return Some("our hold on the Lease expired".into()),
                        },
                        Err(e) => tracing::warn!(error = %e, "cannot confirm leadership"),
                    }
                    if confirmed.elapsed() > allowed {
                        return Some(format!("could not confirm the Lease for {:?}", confirmed.elapsed()));
                    }
                }
            }
        }
    }

    /// Gives the Lease up (so a standby takes over at once) and waits up to `within` for that.
    pub async fn release(self, within: Duration) {
        let Election { state, task, cfg, .. } = self;
        drop(state);
        match tokio::time::timeout(within, task).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %cfg.lease_name, "released the Lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the Lease; it expires by itself"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the Lease manager task failed"),
            Err(_) => tracing::warn!(?within, "releasing the Lease took too long; it expires by itself"),
        }
    }
}

/// The field manager of this replica's Lease writes. It must differ per replica: a free Lease is taken with a
/// server-side apply, and two replicas applying under one manager name would both succeed (the later silently
/// replacing the earlier holder) instead of one getting a conflict.
pub fn field_manager(identity: &str) -> String {
    format!("{}-{identity}", dr_syncer_api::constants::FIELD_MANAGER_LEADER)
}

async fn build_manager(
    client: &Client,
    cfg: &ElectionConfig,
) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), cfg.lease_name.clone())
        .with_namespace(cfg.namespace.clone())
        .with_identity(cfg.identity.clone())
        .with_duration(cfg.duration.as_secs().max(1))
        .with_grace(cfg.grace.as_secs().max(1))
        .with_field_manager(field_manager(&cfg.identity))
        .build()
        .await
}

/// This replica's identity: `base` (the pod name) plus a random suffix, so a restarted pod is a new holder.
pub fn identity(base: &str) -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    let suffix: String =
        (0..6).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])).collect();
    format!("{base}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed_at: i64, seconds: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(jiff::Timestamp::from_second(renewed_at).unwrap())),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn judge_reads_the_hold_for_each_lease_state() {
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let cases = [
            (lease(Some("me"), 990, 15), Hold::Ours),
            (lease(Some("me"), 980, 15), Hold::Expired),
            (lease(Some("other"), 999, 15), Hold::Lost("other".into())),
            (lease(None, 999, 15), Hold::Lost("nobody".into())),
            (Lease::default(), Hold::Lost("nobody".into())),
        ];
        for (l, want) in cases {
            assert_eq!(judge(&l, "me", now), want, "{l:?}");
        }
    }

    #[test]
    fn field_manager_differs_per_replica_when_identities_differ() {
        let (a, b) = (identity("pod-1"), identity("pod-2"));
        assert_ne!(field_manager(&a), field_manager(&b));
        assert!(field_manager(&a).starts_with("dr-syncer-leader-election-pod-1_"));
        // Field manager names are limited to 128 characters; pod names to 63.
        assert!(field_manager(&identity(&"p".repeat(63))).len() <= 128);
    }

    #[test]
    fn identity_adds_a_random_suffix_when_called_twice() {
        let (a, b) = (identity("pod-1"), identity("pod-1"));
        assert!(a.starts_with("pod-1_") && a.len() == "pod-1_".len() + 6, "{a}");
        assert_ne!(a, b);
    }
}
