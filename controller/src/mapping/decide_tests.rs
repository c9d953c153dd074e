//! Tests of the sync decision.

use std::time::Duration;

use dr_syncer_api::common::Time;
use dr_syncer_api::namespace_mapping::{NamespaceMappingPhase, NamespaceMappingStatus, ReplicationMode, RetryStatus};
use jiff::Timestamp;

use super::decide::*;
use crate::reconcile::conditions::{self, Desired};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn every_5_min() -> Cadence {
    Cadence::Cron {
        schedule: Box::new(dr_syncer_api::validation::parse_cron("*/5 * * * *").unwrap()),
        jitter: Duration::ZERO,
    }
}

fn synced(generation: i64) -> NamespaceMappingStatus {
    NamespaceMappingStatus {
        observed_generation: Some(generation),
        last_sync_time: Some(Time(ts("2026-01-01T10:01:00Z"))),
        ..Default::default()
    }
}

fn input<'a>(status: &'a NamespaceMappingStatus, cadence: &'a Cadence, now: &str) -> Inputs<'a> {
    Inputs {
        mode: ReplicationMode::Scheduled,
        generation: Some(1),
        status,
        sync_now: false,
        spec_trigger: None,
        cadence,
        requested: None,
        data_running: false,
        now: ts(now),
    }
}

#[test]
fn decide_syncs_new_mapping_at_once_except_in_manual_mode() {
    let status = NamespaceMappingStatus::default();
    let cadence = every_5_min();
    let d = decide(&input(&status, &cadence, "2026-01-01T10:02:00Z"));
    assert_eq!(d.start, Some(SyncReason::SpecChanged));
    let manual = Inputs { mode: ReplicationMode::Manual, ..input(&status, &Cadence::Never, "2026-01-01T10:02:00Z") };
    let d = decide(&manual);
    assert_eq!((d.start, d.next_sync_time, d.wake_after), (None, None, None));
}

#[test]
fn decide_publishes_next_cron_time_and_sleeps_until_then() {
    let status = synced(1);
    let cadence = every_5_min();
    let d = decide(&input(&status, &cadence, "2026-01-01T10:02:00Z"));
    assert_eq!(d.start, None);
    assert_eq!(d.next_sync_time, Some(ts("2026-01-01T10:05:00Z")));
    assert_eq!(d.wake_after, Some(Duration::from_secs(180)));
}

#[test]
fn decide_starts_scheduled_sync_when_next_time_passed() {
    let mut status = synced(1);
    status.next_sync_time = Some(Time(ts("2026-01-01T10:05:00Z")));
    let cadence = every_5_min();
    assert_eq!(decide(&input(&status, &cadence, "2026-01-01T10:05:00Z")).start, Some(SyncReason::Scheduled));
    assert_eq!(decide(&input(&status, &cadence, "2026-01-01T10:04:59Z")).start, None);
}

#[test]
fn decide_applies_fixed_jitter_after_fire_time() {
    let status = synced(1);
    let cadence = Cadence::Cron {
        schedule: Box::new(dr_syncer_api::validation::parse_cron("@hourly").unwrap()),
        jitter: Duration::from_secs(42),
    };
    let d = decide(&input(&status, &cadence, "2026-01-01T10:02:00Z"));
    assert_eq!(d.next_sync_time, Some(ts("2026-01-01T11:00:42Z")));
}

#[test]
fn decide_prefers_triggers_in_every_mode() {
    let status = synced(1);
    let never = Cadence::Never;
    let base = Inputs { mode: ReplicationMode::Manual, ..input(&status, &never, "2026-01-01T10:02:00Z") };
    assert_eq!(decide(&Inputs { sync_now: true, ..base.clone() }).start, Some(SyncReason::SyncNow));
    let d = decide(&Inputs { spec_trigger: Some("t1"), ..base.clone() });
    assert_eq!(d.start, Some(SyncReason::SpecTrigger("t1".into())));
    let mut handled = synced(1);
    handled.last_handled_trigger = Some("t1".into());
    let again = Inputs { status: &handled, spec_trigger: Some("t1"), ..base };
    assert_eq!(decide(&again).start, None, "an already handled token does not sync again");
}

#[test]
fn decide_retries_when_retry_time_passed_unless_stalled() {
    let mut status = synced(1);
    status.next_sync_time = Some(Time(ts("2026-01-01T11:00:00Z")));
    status.retry_status = Some(RetryStatus {
        next_retry_time: Some(Time(ts("2026-01-01T10:03:00Z"))),
        retries_remaining: 2,
        backoff_duration: "10s".into(),
    });
    let cadence = every_5_min();
    let early = decide(&input(&status, &cadence, "2026-01-01T10:02:00Z"));
    assert_eq!((early.start, early.wake_after), (None, Some(Duration::from_secs(60))));
    assert_eq!(decide(&input(&status, &cadence, "2026-01-01T10:03:00Z")).start, Some(SyncReason::Retry));

    let now = Time(ts("2026-01-01T10:00:00Z"));
    let stall = Desired { type_: STALLED, status: conditions::TRUE, reason: "FailFast", message: String::new() };
    conditions::set(&mut status.conditions, stall, Some(1), &now);
    let d = decide(&input(&status, &cadence, "2026-01-01T12:00:00Z"));
    assert_eq!((d.start, d.next_sync_time, d.wake_after), (None, None, None), "stalled: nothing until a change");
    let changed = Inputs { generation: Some(2), ..input(&status, &cadence, "2026-01-01T12:00:00Z") };
    assert_eq!(decide(&changed).start, Some(SyncReason::SpecChanged));
}

#[test]
fn decide_runs_periodic_sync_after_interval() {
    let status = synced(1);
    let cadence = Cadence::Every(Duration::from_secs(3600));
    let d = decide(&input(&status, &cadence, "2026-01-01T10:02:00Z"));
    assert_eq!(d.next_sync_time, Some(ts("2026-01-01T11:01:00Z")));
    let mut due = synced(1);
    due.next_sync_time = d.next_sync_time.map(Time);
    assert_eq!(decide(&input(&due, &cadence, "2026-01-01T11:01:00Z")).start, Some(SyncReason::Periodic));
}

#[test]
fn fixed_jitter_is_stable_and_bounded() {
    let max = Duration::from_secs(30);
    let a = fixed_jitter("uid-1", max);
    assert_eq!(a, fixed_jitter("uid-1", max));
    assert!(a < max);
    assert_eq!(fixed_jitter("uid-1", Duration::ZERO), Duration::ZERO);
}

#[test]
fn decide_resumes_sync_when_status_says_running_but_none_runs_here() {
    let status = NamespaceMappingStatus { phase: Some(NamespaceMappingPhase::Running), ..synced(1) };
    for mode in [ReplicationMode::Manual, ReplicationMode::Scheduled, ReplicationMode::Continuous] {
        let d = decide(&Inputs { mode, ..input(&status, &Cadence::Never, "2026-01-01T10:02:00Z") });
        assert_eq!(d.start, Some(SyncReason::Interrupted), "{mode:?}");
    }
}

#[test]
fn decide_resumes_data_sync_when_status_shows_copies_but_none_runs_here() {
    use dr_syncer_api::namespace_mapping::{DataSyncStatus, PvcDataPhase, PvcDataStatus};
    let with = |phase| NamespaceMappingStatus {
        data_sync: Some(DataSyncStatus {
            pvcs: vec![PvcDataStatus { phase, ..Default::default() }],
            ..Default::default()
        }),
        ..synced(1)
    };
    let cases = [
        (PvcDataPhase::Running, false, Some(SyncReason::Interrupted)),
        (PvcDataPhase::Queued, false, Some(SyncReason::Interrupted)),
        (PvcDataPhase::Running, true, None),
        (PvcDataPhase::Succeeded, false, None),
        (PvcDataPhase::Failed, false, None),
    ];
    for (phase, data_running, expected) in cases {
        let status = with(phase);
        let base = input(&status, &Cadence::Never, "2026-01-01T10:02:00Z");
        let d = decide(&Inputs { mode: ReplicationMode::Manual, data_running, ..base });
        assert_eq!(d.start, expected, "{phase:?} running here: {data_running}");
    }
}

#[test]
fn decide_starts_requested_full_sync_when_watch_asks() {
    let status = synced(1);
    let cadence = Cadence::Every(std::time::Duration::from_secs(3600));
    let mut inputs = input(&status, &cadence, "2026-01-01T10:02:00Z");
    inputs.mode = ReplicationMode::Continuous;
    assert_eq!(decide(&inputs).start, None);
    inputs.requested = Some(SyncReason::Watch("the source watch resumed after an interruption"));
    assert_eq!(decide(&inputs).start, Some(SyncReason::Watch("the source watch resumed after an interruption")));
}
