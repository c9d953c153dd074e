//! A mapping's copy settings, resolved from `dataSyncConfig` and the source RemoteCluster's defaults; a bad value is
//! a permanent failure naming the field.

use std::time::Duration;

use dr_syncer_api::common::VerificationMode;
use dr_syncer_api::namespace_mapping::{DEFAULT_DATA_SYNC_TIMEOUT, DEFAULT_KEY_ROTATION_INTERVAL, DataSyncConfig};
use dr_syncer_api::remote_cluster::DEFAULT_SAMPLE_PERCENT;
use jiff::SignedDuration;

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
    Ok(Settings {
        config,
        verify,
        sample_percent: sample.clamp(1, 100) as u8,
        timeout,
        interval: SignedDuration::try_from(interval).unwrap_or(SignedDuration::from_hours(24)),
        options,
    })
}
