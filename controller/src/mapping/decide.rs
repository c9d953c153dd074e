//! When a NamespaceMapping syncs: a pure decision from its spec, status, triggers and the time.

use std::time::Duration;

use dr_syncer_api::namespace_mapping::{NamespaceMappingPhase, NamespaceMappingStatus, PvcDataPhase, ReplicationMode};
use jiff::{SignedDuration, Timestamp};

use crate::reconcile::conditions;

/// Condition: scheduled syncs and retries are stopped until the spec changes or a sync is triggered.
pub const STALLED: &str = "Stalled";

/// Why a sync starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncReason {
    /// The `dr-syncer.io/sync-now` (or `trigger-sync`) annotation.
    SyncNow,
    /// A new `spec.syncTrigger` value.
    SpecTrigger(String),
    /// The mapping is new or its spec changed.
    SpecChanged,
    /// A retry after a failed sync.
    Retry,
    /// The cron schedule (Scheduled mode).
    Scheduled,
    /// The periodic full sync (Continuous mode).
    Periodic,
    /// The status says a sync (or a PVC data copy) is running but none runs here: it was cut short (the controller
    /// restarted, or another replica took the lead), so it runs again.
    Interrupted,
    /// Asked for by the watch-driven sync of a Continuous mapping (the text says why).
    Watch(&'static str),
}

impl SyncReason {
    /// Short text for events and logs.
    pub fn describe(&self) -> String {
        match self {
            SyncReason::SyncNow => "triggered by the sync-now annotation".into(),
            SyncReason::SpecTrigger(v) => format!("triggered by spec.syncTrigger {v:?}"),
            SyncReason::SpecChanged => "the mapping is new or its spec changed".into(),
            SyncReason::Retry => "retrying the failed sync".into(),
            SyncReason::Scheduled => "scheduled".into(),
            SyncReason::Periodic => "periodic full sync".into(),
            SyncReason::Interrupted => "resuming a sync that was interrupted (restart or leader change)".into(),
            SyncReason::Watch(why) => (*why).to_string(),
        }
    }
}

/// How often a mapping runs on its own.
#[derive(Clone, Debug)]
pub enum Cadence {
    /// On a cron schedule, each run delayed by a fixed jitter.
    Cron {
        /// The schedule.
        schedule: Box<croner::Cron>,
        /// Fixed delay after each fire time.
        jitter: Duration,
    },
    /// Every interval after the last sync (Continuous mode's full sync).
    Every(Duration),
    /// Never (Manual mode).
    Never,
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The mapping's mode.
    pub mode: ReplicationMode,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Current status (the last one written).
    pub status: &'a NamespaceMappingStatus,
    /// A sync-now annotation is waiting to be handled.
    pub sync_now: bool,
    /// `spec.syncTrigger`.
    pub spec_trigger: Option<&'a str>,
    /// The mapping's own cadence.
    pub cadence: &'a Cadence,
    /// A full sync asked for by the watch-driven sync.
    pub requested: Option<SyncReason>,
    /// A PVC data sync of the mapping runs in this process.
    pub data_running: bool,
    /// The time the decision is made for (the caller's clock, so the decision is pure and testable).
    pub now: Timestamp,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Start a sync now, for this reason.
    pub start: Option<SyncReason>,
    /// `status.nextSyncTime` to publish (the next run of the cadence).
    pub next_sync_time: Option<Timestamp>,
    /// Reconcile again after this long (the next due run or retry).
    pub wake_after: Option<Duration>,
}

/// Next run of `cadence` after `after` (`last_sync` for intervals). `None` for Manual mode or an exhausted schedule.
pub fn next_run(cadence: &Cadence, after: Timestamp, last_sync: Option<Timestamp>) -> Option<Timestamp> {
    match cadence {
        Cadence::Never => None,
        Cadence::Every(interval) => {
            let base = last_sync.unwrap_or(after);
            let next = base.checked_add(SignedDuration::try_from(*interval).ok()?).ok()?;
            Some(next.max(after))
        }
        Cadence::Cron { schedule, jitter } => {
            let zoned = after.to_zoned(jiff::tz::TimeZone::UTC);
            let fire = schedule.find_next_occurrence(&zoned, false).ok()?.timestamp();
            fire.checked_add(SignedDuration::try_from(*jitter).ok()?).ok()
        }
    }
}

/// Whether scheduled syncs and retries are stopped for this generation.
pub fn stalled(status: &NamespaceMappingStatus, generation: Option<i64>) -> bool {
    conditions::get(&status.conditions, STALLED)
        .is_some_and(|c| c.status == conditions::TRUE && c.observed_generation == generation)
}

/// Whether `status.dataSync` shows PVC copies queued or running (which a restart cuts short).
fn data_unfinished(status: &NamespaceMappingStatus) -> bool {
    status.data_sync.as_ref().is_some_and(|d| {
        d.in_flight > 0 || d.pvcs.iter().any(|p| matches!(p.phase, PvcDataPhase::Running | PvcDataPhase::Queued))
    })
}

/// Decides whether to sync now (called only while no sync of the mapping runs in this process). Pure.
pub fn decide(input: &Inputs<'_>) -> Decision {
    let status = input.status;
    let now = input.now;
    let new_generation = status.observed_generation != input.generation;
    let new_trigger = input.spec_trigger.filter(|t| status.last_handled_trigger.as_deref() != Some(*t));
    let start = if input.sync_now {
        Some(SyncReason::SyncNow)
    } else if let Some(t) = new_trigger {
        Some(SyncReason::SpecTrigger(t.to_string()))
    } else if status.phase == Some(NamespaceMappingPhase::Running) || (data_unfinished(status) && !input.data_running) {
        Some(SyncReason::Interrupted)
    } else if let Some(requested) = &input.requested {
        Some(requested.clone())
    } else if new_generation && input.mode != ReplicationMode::Manual {
        Some(SyncReason::SpecChanged)
    } else {
        None
    };
    let last_sync = status.last_sync_time.as_ref().map(|t| t.0);
    let stopped = stalled(status, input.generation) && !new_generation;
    let next = match &status.next_sync_time {
        Some(t) if !new_generation => Some(t.0),
        _ => next_run(input.cadence, now, last_sync),
    };
    let retry_at = status.retry_status.as_ref().and_then(|r| r.next_retry_time.as_ref()).map(|t| t.0);
    if start.is_some() {
        return Decision { start, next_sync_time: next, wake_after: None };
    }
    if !stopped {
        if retry_at.is_some_and(|r| r <= now) {
            return Decision { start: Some(SyncReason::Retry), next_sync_time: next, wake_after: None };
        }
        if next.is_some_and(|n| n <= now) {
            let reason =
                if matches!(input.cadence, Cadence::Every(_)) { SyncReason::Periodic } else { SyncReason::Scheduled };
            return Decision { start: Some(reason), next_sync_time: None, wake_after: None };
        }
    }
    let due = if stopped { None } else { [next, retry_at].into_iter().flatten().min() };
    let next_sync_time = if stopped { None } else { next };
    let wake_after = due.map(|d| Duration::try_from(d.duration_since(now)).unwrap_or(Duration::ZERO));
    Decision { start: None, next_sync_time, wake_after }
}

/// A fixed delay in `[0, max)` derived from `seed` (the mapping's uid), so one mapping always uses the same jitter.
pub fn fixed_jitter(seed: &str, max: Duration) -> Duration {
    use sha2::{Digest, Sha256};
    let millis = max.as_millis();
    if millis == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let value = u128::from(u64::from_le_bytes(bytes)) % millis;
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}
