//! A mapping's copy settings, resolved from `dataSyncConfig` and the source RemoteCluster's defaults; a bad value is
//! a permanent failure naming the field.

use std::time::Duration;

use dr_syncer_api::common::VerificationMode;
use dr_syncer_api::constants::ANNOTATION_APPROVE_DELETIONS;
use dr_syncer_api::namespace_mapping::{
    DEFAULT_DATA_SYNC_TIMEOUT, DEFAULT_KEY_ROTATION_INTERVAL, DEFAULT_MAX_DELETE_PERCENT, DataSyncConfig,
};
use dr_syncer_api::remote_cluster::DEFAULT_SAMPLE_PERCENT;
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
