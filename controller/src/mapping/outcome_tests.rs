//! Tests of the status after a sync.

use std::time::Duration;

use dr_syncer_api::namespace_mapping::{
    FailureHandling, FailureMode, KindCounts, NamespaceMappingPhase, NamespaceMappingSpec, NamespaceMappingStatus,
    RetryConfig,
};
use jiff::Timestamp;

use super::decide::{STALLED, SyncReason};
use super::outcome::*;
use crate::reconcile::conditions;
use crate::sync::report::{Category, ObjectProblem, SyncFailure, SyncReport};

fn finished(report: SyncReport, reason: SyncReason) -> Finished {
    Finished {
        report,
        reason,
        started: "2026-01-01T10:00:00Z".parse().unwrap(),
        finished: "2026-01-01T10:00:02Z".parse::<Timestamp>().unwrap(),
    }
}

fn ok_report() -> SyncReport {
    let mut r = SyncReport {
        destination_namespace: "shop".into(),
        duration: Duration::from_millis(1500),
        ..SyncReport::default()
    };
    r.kinds.insert(
        "ConfigMap".into(),
        KindCounts { kind: "ConfigMap".into(), applied: 2, unchanged: 1, ..KindCounts::default() },
    );
    r.scales.push(("web".into(), 3));
    r
}

fn failed_report(category: Category) -> SyncReport {
    SyncReport {
        failure: Some(SyncFailure { category, reason: "Unreachable".into(), message: "down".into() }),
        ..SyncReport::default()
    }
}

#[test]
fn after_sync_records_counts_and_recovery_point_when_successful() {
    let spec = NamespaceMappingSpec::default();
    let s = after_sync(
        &NamespaceMappingStatus::default(),
        &finished(ok_report(), SyncReason::SpecTrigger("t".into())),
        &spec,
        Some(1),
    );
    assert_eq!(s.phase, Some(NamespaceMappingPhase::Completed));
    assert_eq!(s.last_successful_sync_time, s.last_sync_time);
    assert_eq!(s.last_handled_trigger.as_deref(), Some("t"));
    assert_eq!(s.resource_counts[0].applied, 2);
    assert_eq!(s.deployment_scales[0].original_replicas, 3);
    assert_eq!(s.sync_stats.as_ref().map(|x| x.successful_syncs), Some(3));
    assert_eq!(s.last_sync_duration.as_deref(), Some("1s500ms"));
    assert!(conditions::is_true(&s.conditions, SYNCED));
    assert!(s.retry_status.is_none());
}

#[test]
fn after_sync_lists_failed_objects_and_keeps_recovery_point_when_partial() {
    let mut report = ok_report();
    report.fail(ObjectProblem {
        kind: "Service".into(),
        name: "bad".into(),
        reason: "Invalid".into(),
        message: "rejected".into(),
        category: Category::ValidationFailure,
    });
    let prev = NamespaceMappingStatus { last_successful_sync_time: None, ..Default::default() };
    let s = after_sync(&prev, &finished(report, SyncReason::Scheduled), &NamespaceMappingSpec::default(), Some(1));
    assert_eq!(s.phase, Some(NamespaceMappingPhase::Completed));
    assert!(s.last_successful_sync_time.is_none());
    assert_eq!(s.resource_status[0].error.as_deref(), Some("Invalid: rejected"));
    let synced = conditions::get(&s.conditions, SYNCED).unwrap();
    assert_eq!((synced.status.as_str(), synced.reason.as_str()), ("False", "ObjectsFailed"));
    assert!(s.retry_status.is_none(), "validation failures wait for the next sync by default");
}

#[test]
fn after_sync_schedules_retries_then_stops_per_failure_mode() {
    let spec = NamespaceMappingSpec {
        retry_config: Some(RetryConfig {
            max_retries: Some(2),
            initial_backoff: Some("10s".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let first = after_sync(
        &NamespaceMappingStatus::default(),
        &finished(failed_report(Category::NetworkError), SyncReason::Scheduled),
        &spec,
        Some(1),
    );
    assert_eq!(first.phase, Some(NamespaceMappingPhase::Failed));
    let retry = first.retry_status.clone().unwrap();
    assert_eq!((retry.retries_remaining, retry.backoff_duration.as_str()), (1, "10s"));
    let second =
        after_sync(&first, &finished(failed_report(Category::NetworkError), SyncReason::Retry), &spec, Some(1));
    assert_eq!(second.retry_status.as_ref().map(|r| r.backoff_duration.as_str()), Some("20s"));
    let third =
        after_sync(&second, &finished(failed_report(Category::NetworkError), SyncReason::Retry), &spec, Some(1));
    assert!(third.retry_status.is_none(), "RetryAndWait: out of retries, wait for the schedule");
    assert!(!conditions::is_true(&third.conditions, STALLED));

    let fail_fast = NamespaceMappingSpec {
        failure_handling: Some(FailureHandling { network_error: Some(FailureMode::FailFast), ..Default::default() }),
        ..Default::default()
    };
    let s = after_sync(
        &NamespaceMappingStatus::default(),
        &finished(failed_report(Category::NetworkError), SyncReason::Scheduled),
        &fail_fast,
        Some(4),
    );
    assert!(s.retry_status.is_none());
    let stalled = conditions::get(&s.conditions, STALLED).unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str(), stalled.observed_generation),
        ("True", "FailFast", Some(4))
    );
}

#[test]
fn retry_policy_grows_waits_up_to_max() {
    let p = RetryPolicy::from_config(Some(&RetryConfig {
        initial_backoff: Some("5s".into()),
        max_backoff: Some("30s".into()),
        backoff_multiplier: Some(300),
        ..Default::default()
    }));
    let waits: Vec<u64> = (1..=4).map(|a| p.wait(a).as_secs()).collect();
    assert_eq!(waits, vec![5, 15, 30, 30]);
    assert_eq!(result_label(&ok_report()), "success");
    assert_eq!(result_label(&failed_report(Category::Other)), "failed");
}
