//! Keeps the bastion's policy current: re-reads the authorized set and the target file when they change (Secret and
//! ConfigMap volumes are updated in place by the kubelet) and publishes a new [`Policy`] as a whole. A file that does
//! not parse leaves the previous policy in force, with an error log and a counted failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::error::Error;
use crate::metrics::AgentMetrics;
use dr_syncer_wire::policy::{AuthorizedSet, Policy, TargetSet};

/// Where the bastion's policy comes from.
#[derive(Clone, Debug)]
pub struct PolicyFiles {
    /// JSON [`AuthorizedSet`].
    pub authorized: PathBuf,
    /// JSON [`TargetSet`].
    pub targets: PathBuf,
}

impl PolicyFiles {
    /// Reads and parses both files.
    pub fn load(&self) -> Result<(Policy, Vec<u8>), Error> {
        let authorized_text = read(&self.authorized)?;
        let targets_text = read(&self.targets)?;
        let authorized: AuthorizedSet = parse(&authorized_text, &self.authorized)?;
        let targets: TargetSet = parse(&targets_text, &self.targets)?;
        let fingerprint = [authorized_text, targets_text].concat();
        Ok((Policy::new(&authorized, &targets)?, fingerprint))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

fn parse<T: serde::de::DeserializeOwned>(text: &[u8], path: &Path) -> Result<T, Error> {
    serde_json::from_slice(text).map_err(|e| {
        Error::from(dr_syncer_wire::Error::Policy { what: path.display().to_string(), message: e.to_string() })
    })
}

/// Re-reads `files` every `every` until `stop`, publishing each changed, valid policy on `sender`.
pub async fn watch_files(
    files: PolicyFiles,
    mut last: Vec<u8>,
    sender: watch::Sender<Arc<Policy>>,
    metrics: AgentMetrics,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let files = files.clone();
        let loaded = match tokio::task::spawn_blocking(move || files.load()).await {
            Ok(loaded) => loaded,
            Err(join) => {
                error!(%join, "policy reload task failed");
                continue;
            }
        };
        match loaded {
            Ok((_, raw)) if raw == last => {}
            Ok((policy, raw)) => {
                info!(keys = policy.key_count(), "policy reloaded");
                metrics.reloads.with_label_values(&["ok"]).inc();
                sender.send_replace(Arc::new(policy));
                last = raw;
            }
            Err(e) => {
                // Counted and logged once per bad version, not once per poll.
                if !last.is_empty() {
                    metrics.reloads.with_label_values(&["error"]).inc();
                    error!(error = %e, reason = e.reason(), "policy not reloaded; the previous one stays in force");
                }
                last.clear();
            }
        }
    }
}
