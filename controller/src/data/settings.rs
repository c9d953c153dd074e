//! A mapping's copy settings, resolved from `dataSyncConfig` and the source RemoteCluster's defaults; a bad value is
//! a permanent failure naming the field.

use std::time::Duration;

use dr_syncer_api::common::VerificationMode;
use dr_syncer_api::constants::{ANNOTATION_APPROVE_DELETIONS, ANNOTATION_SAMPLE_PERCENT, ANNOTATION_VERIFICATION_MODE};
use dr_syncer_api::namespace_mapping::RetryConfig;
use dr_syncer_api::namespace_mapping::{
    DEFAULT_DATA_SYNC_TIMEOUT, DEFAULT_KEY_ROTATION_INTERVAL, DEFAULT_MAX_DELETE_PERCENT, DataSyncConfig,
};
use dr_syncer_api::remote_cluster::{AgentRetryConfig, DEFAULT_SAMPLE_PERCENT};
use jiff::SignedDuration;
use kube::ResourceExt;

use super::failure::Failure;
use super::manager::DataRequest;
use super::pods;

/// Settings of a mapping's copies.
pub(super) struct Settings {
    pub(super) config: DataSyncConfig,
    pub(super) verify: VerificationMode,
    pub(super) sample_percent: u8,
    pub(super) timeout: Duration,
    pub(super) interval: SignedDuration,
    pub(super) options: Vec<String>,
    /// The deletion guard of each copy (`None`: off, for `maxDeletePercent: 100` or approved deletions).
    pub(super) max_delete_percent: Option<u8>,
    /// The mapping carries the approve-deletions annotation (removed once a run succeeded).
    pub(super) deletions_approved: bool,
}

pub(super) fn settings(request: &DataRequest) -> Result<Settings, Failure> {
    let config = request.mapping.spec.pvc_config.as_ref().and_then(|p| p.data_sync_config.clone()).unwrap_or_default();
    let pvc_sync = request.source_rc.spec.pvc_sync.clone().unwrap_or_default();
    let verify = config.verification_mode.or(pvc_sync.default_verification_mode).unwrap_or_default();
    let sample = config.sample_percent.or(pvc_sync.default_sample_percent).unwrap_or(DEFAULT_SAMPLE_PERCENT);
    let duration = |text: Option<&String>, default: &str, field: &str| {
        humantime::parse_duration(text.map_or(default, String::as_str))
            .map_err(|e| Failure::permanent("InvalidDataSyncConfig", format!("dataSyncConfig.{field}: {e}")))
    };
    let timeout = duration(config.timeout.as_ref(), DEFAULT_DATA_SYNC_TIMEOUT, "timeout")?;
    let interval =
        duration(config.key_rotation_interval.as_ref(), DEFAULT_KEY_ROTATION_INTERVAL, "keyRotationInterval")?;
    let options = pods::rsync_options(&config, verify).map_err(|m| Failure::permanent("InvalidDataSyncConfig", m))?;
    let deletions_approved = request.mapping.annotations().contains_key(ANNOTATION_APPROVE_DELETIONS);
    let guard = config.max_delete_percent.unwrap_or(DEFAULT_MAX_DELETE_PERCENT).clamp(0, 100) as u8;
    let max_delete_percent = (guard < 100 && !deletions_approved).then_some(guard);
    Ok(Settings {
        max_delete_percent,
        deletions_approved,
        config,
        verify,
        sample_percent: sample.clamp(1, 100) as u8,
        timeout,
        interval: SignedDuration::try_from(interval).unwrap_or(SignedDuration::from_hours(24)),
        options,
    })
}

/// A PVC's own verification settings, from annotations on the source PVC (pure): `dr-syncer.io/verification-mode`
/// (`none`, `sample` or `full`) over `mode`, `dr-syncer.io/sample-percent` (1–100) over `percent`. A value that
/// does not parse is ignored, with the reason to log.
pub(super) fn pvc_verification(
    annotations: &std::collections::BTreeMap<String, String>,
    (mode, percent): (VerificationMode, u8),
) -> (VerificationMode, u8, Vec<String>) {
    let mut problems = Vec::new();
    let mode = match annotations.get(ANNOTATION_VERIFICATION_MODE).map(String::as_str) {
        None => mode,
        Some("none") => VerificationMode::None,
        Some("sample") => VerificationMode::Sample,
        Some("full") => VerificationMode::Full,
        Some(other) => {
            problems.push(format!("{ANNOTATION_VERIFICATION_MODE}={other:?} is not none, sample or full; ignored"));
            mode
        }
    };
    let percent = match annotations.get(ANNOTATION_SAMPLE_PERCENT).map(|v| (v, v.trim().parse::<u8>())) {
        None => percent,
        Some((_, Ok(p))) if (1..=100).contains(&p) => p,
        Some((text, _)) => {
            problems.push(format!("{ANNOTATION_SAMPLE_PERCENT}={text:?} is not a whole number from 1 to 100; ignored"));
            percent
        }
    };
    (mode, percent, problems)
}

/// The retries of a mapping's PVC copies (pure): each field of the mapping's `retryConfig`, else of the source
/// cluster's `pvcSync.retryConfig` (`initialDelay`, `maxDelay`), else the default.
pub(super) fn copy_retries(mapping: Option<&RetryConfig>, cluster: Option<&AgentRetryConfig>) -> RetryConfig {
    let (mapping, cluster) = (mapping.cloned().unwrap_or_default(), cluster.cloned().unwrap_or_default());
    RetryConfig {
        max_retries: mapping.max_retries.or(cluster.max_retries),
        initial_backoff: mapping.initial_backoff.or(cluster.initial_delay),
        max_backoff: mapping.max_backoff.or(cluster.max_delay),
        backoff_multiplier: mapping.backoff_multiplier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_retries_take_the_mappings_fields_then_the_clusters() {
        let cluster =
            AgentRetryConfig { max_retries: Some(2), initial_delay: Some("1s".into()), max_delay: Some("9s".into()) };
        let mapping = RetryConfig { max_retries: Some(7), ..Default::default() };
        let got = copy_retries(Some(&mapping), Some(&cluster));
        assert_eq!(
            (got.max_retries, got.initial_backoff.as_deref(), got.max_backoff.as_deref()),
            (Some(7), Some("1s"), Some("9s"))
        );
        assert_eq!(copy_retries(None, None), RetryConfig::default());
        assert_eq!(copy_retries(None, Some(&cluster)).max_retries, Some(2));
    }

    #[test]
    fn pvc_verification_takes_the_pvcs_annotations_and_ignores_bad_ones() {
        use VerificationMode::{Full, None as Off, Sample};
        type Case<'a> = (&'a [(&'a str, &'a str)], (VerificationMode, u8), usize);
        let cases: [Case; 6] = [
            (&[], (Off, 10), 0),
            (&[(ANNOTATION_VERIFICATION_MODE, "sample"), (ANNOTATION_SAMPLE_PERCENT, "25")], (Sample, 25), 0),
            (&[(ANNOTATION_SAMPLE_PERCENT, "100")], (Off, 100), 0),
            (&[(ANNOTATION_VERIFICATION_MODE, "full")], (Full, 10), 0),
            (&[(ANNOTATION_VERIFICATION_MODE, "maybe"), (ANNOTATION_SAMPLE_PERCENT, "0")], (Off, 10), 2),
            (&[(ANNOTATION_SAMPLE_PERCENT, "12.5")], (Off, 10), 1),
        ];
        for (annotations, want, problems) in cases {
            let map = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let (mode, percent, found) = pvc_verification(&map, (Off, 10));
            assert_eq!(((mode, percent), found.len()), (want, problems), "{annotations:?}");
        }
    }
}
