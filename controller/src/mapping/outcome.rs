//! The NamespaceMapping status after a sync: counts, errors, conditions and retry state. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_api::common::Time;
use dr_syncer_api::namespace_mapping::{
    DEFAULT_BACKOFF_MULTIPLIER, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_RETRIES,
};
use dr_syncer_api::namespace_mapping::{
    DeploymentScale, ErrorCategory, FailureMode, LastError, NamespaceMappingPhase, NamespaceMappingSpec,
    NamespaceMappingStatus, ObjectSyncState, ResourceStatus, RetryConfig, RetryStatus, SyncStats,
};
use dr_syncer_api::validation::{format_duration, parse_duration};
use jiff::{SignedDuration, Timestamp};

use super::decide::{STALLED, SyncReason};
use crate::reconcile::conditions::{self, Desired, FALSE, TRUE};
use crate::sync::report::{Category, MAX_OBJECT_ERRORS, SyncReport};

/// Condition: the last sync replicated every selected object.
pub const SYNCED: &str = "Synced";
/// Condition: the mapping is valid, its clusters resolve and it is not paused.
pub const READY: &str = "Ready";

/// A finished sync, as the reconciler folds it into status.
#[derive(Clone, Debug)]
pub struct Finished {
    /// What the sync did.
    pub report: SyncReport,
    /// Why it ran.
    pub reason: SyncReason,
    /// When it started.
    pub started: Timestamp,
    /// When it finished.
    pub finished: Timestamp,
}

/// Result label of a sync for metrics and events: success, partial or failed.
pub fn result_label(report: &SyncReport) -> &'static str {
    if report.failure.is_some() {
        "failed"
    } else if report.succeeded() {
        "success"
    } else {
        "partial"
    }
}

/// The retry policy of a spec, with documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries before giving up.
    pub max_retries: i32,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Growth per failure, in percent.
    pub multiplier: i32,
}

impl RetryPolicy {
    /// The policy of `config`; unparsable durations fall back to the defaults (the CRD schema rejects them anyway).
    pub fn from_config(config: Option<&RetryConfig>) -> RetryPolicy {
        let c = config.cloned().unwrap_or_default();
        let dur = |v: Option<String>, d: &str| {
            parse_duration(v.as_deref().unwrap_or(d)).or_else(|_| parse_duration(d)).unwrap_or(Duration::from_secs(5))
        };
        RetryPolicy {
            max_retries: c.max_retries.unwrap_or(DEFAULT_MAX_RETRIES).max(0),
            initial: dur(c.initial_backoff, DEFAULT_INITIAL_BACKOFF),
            max: dur(c.max_backoff, DEFAULT_MAX_BACKOFF),
            multiplier: c.backoff_multiplier.unwrap_or(DEFAULT_BACKOFF_MULTIPLIER).max(100),
        }
    }

    /// Wait before retry number `attempt` (1-based).
    pub fn wait(&self, attempt: i32) -> Duration {
        let factor = (f64::from(self.multiplier) / 100.0).powi(attempt.saturating_sub(1).clamp(0, 64));
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

fn set(
    status: &mut NamespaceMappingStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let desired = Desired { type_, status: if ok { TRUE } else { FALSE }, reason, message };
    conditions::set(&mut status.conditions, desired, generation, now);
}

/// Folds a finished sync into `previous`. Pure.
pub fn after_sync(
    previous: &NamespaceMappingStatus,
    done: &Finished,
    spec: &NamespaceMappingSpec,
    generation: Option<i64>,
) -> NamespaceMappingStatus {
    let report = &done.report;
    let now = Time(done.finished);
    let mut s = previous.clone();
    let totals = report.totals();
    let duration = format_duration(report.duration);
    s.phase =
        Some(if report.failure.is_some() { NamespaceMappingPhase::Failed } else { NamespaceMappingPhase::Completed });
    s.last_sync_start_time = Some(Time(done.started));
    s.last_sync_time = Some(now.clone());
    s.last_sync_duration = Some(duration.clone());
    s.next_sync_time = None;
    if report.succeeded() {
        s.last_successful_sync_time = Some(now.clone());
    }
    if !report.destination_namespace.is_empty() {
        s.destination_namespace = Some(report.destination_namespace.clone());
    }
    if let Some(covered) = &report.covered {
        s.covered_namespaces = covered.clone();
    }
    let cleaned: Vec<String> = report.cleaned_up.iter().map(|(ns, _)| ns.clone()).collect();
    if report.failure.is_none() {
        super::cleanup::fold(&mut s, &cleaned, report.pending_cleanups.clone(), generation);
    }
    if let SyncReason::SpecTrigger(token) = &done.reason {
        s.last_handled_trigger = Some(token.clone());
    }
    if report.failure.is_none() {
        s.resource_counts = report.kinds.values().cloned().collect();
        s.resolved_resource_types = report.resolved.clone();
        s.deployment_scales = report
            .scales
            .iter()
            .map(|(name, n)| DeploymentScale {
                name: name.clone(),
                original_replicas: *n,
                last_synced_at: Some(now.clone()),
            })
            .collect();
    }
    s.sync_stats = Some(SyncStats {
        total_resources: totals.applied + totals.unchanged + totals.failed + totals.conflicts + totals.immutable,
        successful_syncs: totals.applied + totals.unchanged,
        failed_syncs: totals.failed + totals.conflicts + totals.immutable,
        last_sync_duration: duration,
    });
    let problems = report.type_problems.iter().chain(&report.errors).chain(&report.conflicts).chain(&report.immutable);
    s.resource_status = problems
        .clone()
        .take(MAX_OBJECT_ERRORS)
        .map(|p| ResourceStatus {
            kind: p.kind.clone(),
            name: p.name.clone(),
            namespace: (!report.destination_namespace.is_empty()).then(|| report.destination_namespace.clone()),
            status: ObjectSyncState::Failed,
            last_sync_time: Some(now.clone()),
            error: Some(format!("{}: {}", p.reason, p.message)),
        })
        .collect();
    let mut categories: BTreeMap<String, i32> = BTreeMap::new();
    for p in problems.clone() {
        *categories.entry(p.reason.clone()).or_default() += 1;
    }
    if let Some(f) = &report.failure {
        *categories.entry(f.reason.clone()).or_default() += 1;
    }
    s.error_categories = categories
        .into_iter()
        .map(|(category, count)| ErrorCategory { category, count, last_occurred: now.clone() })
        .collect();
    let first_error = report
        .failure
        .as_ref()
        .map(|f| (f.message.clone(), None))
        .or_else(|| problems.clone().next().map(|p| (p.message.clone(), Some(format!("{}/{}", p.kind, p.name)))));
    if let Some((message, resource)) = first_error {
        s.last_error = Some(LastError { message, time: now.clone(), resource });
    }
    let (synced_reason, synced_message) = synced_condition(report);
    set(&mut s, SYNCED, report.succeeded(), &synced_reason, synced_message, generation, &now);
    apply_retry(&mut s, done, spec, generation, &now);
    s
}

fn synced_condition(report: &SyncReport) -> (String, String) {
    let t = report.totals();
    let counts = format!(
        "{} applied, {} unchanged, {} pruned, {} failed, {} conflicts, {} immutable in {}",
        t.applied,
        t.unchanged,
        t.pruned,
        t.failed,
        t.conflicts,
        t.immutable,
        format_duration(report.duration)
    );
    if let Some(f) = &report.failure {
        let reason = if f.category == Category::NetworkError { "RemoteUnreachable" } else { f.reason.as_str() };
        return (reason.to_string(), format!("{}: {}; {counts}", f.reason, f.message));
    }
    if let Some(p) = report.type_problems.first() {
        return (p.reason.clone(), format!("{}; {counts}", p.message));
    }
    if t.failed > 0 {
        if report.errors.first().is_some_and(|e| e.category == Category::NetworkError) {
            return ("RemoteUnreachable".into(), counts);
        }
        return ("ObjectsFailed".into(), counts);
    }
    if t.conflicts > 0 {
        return ("ObjectsConflict".into(), counts);
    }
    if t.immutable > 0 {
        return ("ImmutableFieldChanged".into(), counts);
    }
    ("Synced".into(), counts)
}

/// Sets `retryStatus` and the Stalled condition from the failure mode of the sync's failure class.
fn apply_retry(
    s: &mut NamespaceMappingStatus,
    done: &Finished,
    spec: &NamespaceMappingSpec,
    generation: Option<i64>,
    now: &Time,
) {
    let clear_stall = |s: &mut NamespaceMappingStatus| {
        set(s, STALLED, false, "NotStalled", "scheduled syncs run".into(), generation, now)
    };
    let Some(category) = done.report.category() else {
        s.retry_status = None;
        clear_stall(s);
        return;
    };
    let policy = RetryPolicy::from_config(spec.retry_config.as_ref());
    let mode = category.mode(spec.failure_handling.as_ref());
    let continuing = done.reason == SyncReason::Retry;
    let remaining = match (&s.retry_status, continuing) {
        (Some(r), true) => r.retries_remaining,
        _ => policy.max_retries,
    };
    let retries = matches!(mode, FailureMode::RetryAndWait | FailureMode::RetryOnly);
    if retries && remaining > 0 {
        let attempt = policy.max_retries - remaining + 1;
        let wait = policy.wait(attempt);
        let at = SignedDuration::try_from(wait).ok().and_then(|w| done.finished.checked_add(w).ok());
        s.retry_status = Some(RetryStatus {
            next_retry_time: at.map(Time),
            retries_remaining: remaining - 1,
            backoff_duration: format_duration(wait),
        });
        clear_stall(s);
        return;
    }
    s.retry_status = None;
    let stall_reason = match mode {
        FailureMode::FailFast => Some("FailFast"),
        FailureMode::RetryOnly => Some("RetriesExhausted"),
        _ => None,
    };
    match stall_reason {
        Some(reason) => {
            let message = format!(
                "{} failure with failureHandling {mode:?}: no scheduled sync until the spec changes or a sync is triggered",
                category.as_str()
            );
            set(s, STALLED, true, reason, message, generation, now);
            s.phase = Some(NamespaceMappingPhase::Failed);
        }
        None => clear_stall(s),
    }
}
