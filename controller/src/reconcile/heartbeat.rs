//! Heartbeat fields (`lastSyncTime` of a RemoteCluster; `lastAttemptTime`, `lastVerified` and `consecutiveFailures`
//! of a ClusterMapping) say that a check still runs. They alone never justify a status write more than once per
//! health interval, however often the object is looked at (agents rolling out, a failure backing off).

use std::time::Duration;

use dr_syncer_api::cluster_mapping::ClusterMappingStatus;
use dr_syncer_api::common::Time;

/// Share of the health interval after which a heartbeat is written again (a requeue comes a little early or late).
pub const SHARE: f64 = 0.9;

/// Whether a heartbeat last written at `last` is due again at `now` (never written: due). Pure.
pub fn due(last: Option<&Time>, interval: Duration, now: &Time) -> bool {
    last.is_none_or(|last| {
        let age = now.0.as_millisecond().saturating_sub(last.0.as_millisecond());
        age >= i64::try_from(interval.mul_f64(SHARE).as_millis()).unwrap_or(i64::MAX)
    })
}

/// Whether a ClusterMapping's `status` must be written over `previous`: something beyond its heartbeat fields
/// changed (phase, message, a condition, the agents' state), or the heartbeat is due. Pure.
pub fn cluster_mapping_write_due(
    previous: &ClusterMappingStatus,
    status: &ClusterMappingStatus,
    interval: Duration,
    now: &Time,
) -> bool {
    let beyond = |s: &ClusterMappingStatus| ClusterMappingStatus {
        last_attempt_time: None,
        last_verified: None,
        consecutive_failures: 0,
        ..s.clone()
    };
    beyond(previous) != beyond(status) || due(previous.last_attempt_time.as_ref(), interval, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_syncer_api::cluster_mapping::ClusterMappingPhase;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn due_once_ninety_percent_of_the_interval_has_passed() {
        for (last, now, want) in [(None, 0, true), (Some(0), 10, false), (Some(0), 53, false), (Some(0), 54, true)] {
            assert_eq!(due(last.map(at).as_ref(), MINUTE, &at(now)), want, "last {last:?}, now {now}");
        }
    }

    #[test]
    fn cluster_mapping_write_due_only_when_more_than_the_heartbeat_changed_or_an_interval_passed() {
        let failed = |failures: i32, attempt: i64| ClusterMappingStatus {
            phase: Some(ClusterMappingPhase::Failed),
            message: Some("RemoteCluster nowhere does not exist".into()),
            consecutive_failures: failures,
            last_attempt_time: Some(at(attempt)),
            ..Default::default()
        };
        let previous = failed(3, 0);
        // Another failure with the same message, 8 s later: only the heartbeat moved.
        assert!(!cluster_mapping_write_due(&previous, &failed(4, 8), MINUTE, &at(8)));
        // The same, once the interval has passed.
        assert!(cluster_mapping_write_due(&previous, &failed(9, 60), MINUTE, &at(60)));
        // A new message is written at once.
        let mut other = failed(4, 8);
        other.message = Some("RemoteCluster dr: connection refused".into());
        assert!(cluster_mapping_write_due(&previous, &other, MINUTE, &at(8)));
        // Recovery is written at once.
        let connected = ClusterMappingStatus {
            phase: Some(ClusterMappingPhase::Connected),
            last_verified: Some(at(8)),
            ..failed(0, 8)
        };
        assert!(cluster_mapping_write_due(&previous, &connected, MINUTE, &at(8)));
    }
}
