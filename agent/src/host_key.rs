//! Host keys of the agent's SSH servers (the node bastion and the rsync pod's `serve`): loaded from a file, or made in
//! memory at start. A generated key never touches a disk or a Secret; its public half is logged (message
//! [`HOST_KEY_GENERATED`], field `public_key`) at start and again every [`ANNOUNCE_EVERY`], so a reader of the pod's
//! log — the controller, through the API server and the node's own kubelet — finds it even after the kubelet has
//! rotated the log file. Each node's bastion thus has its own key, and a client pins the key of the node it reaches.

use std::path::Path;
use std::time::Duration;

use russh::keys::PrivateKey;
use tokio_util::sync::CancellationToken;
use tracing::info;

use dr_syncer_wire::keys::{self, HOST_KEY_GENERATED};

use crate::error::Error;

/// How often a generated host key's public half is logged again. A reader finds it in the first part of any log
/// file the kubelet keeps unless the process logs more than that part in this time.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(300);

/// The server's host key: read from `path`, or generated (comment `comment`) and announced until `stop`.
pub fn load_or_generate(path: Option<&Path>, comment: &str, stop: &CancellationToken) -> Result<PrivateKey, Error> {
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
        let key = keys::private_from_openssh(&text, &path.display().to_string())?;
        info!(fingerprint = %keys::fingerprint(key.public_key()), "host key loaded");
        return Ok(key);
    }
    let pair = keys::generate(comment)?;
    let key = keys::private_from_openssh(&pair.private_openssh, "generated host key")?;
    announce(&pair.public_openssh, &pair.fingerprint);
    let (public, fingerprint, stop) = (pair.public_openssh.clone(), pair.fingerprint.clone(), stop.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ANNOUNCE_EVERY);
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => announce(&public, &fingerprint),
                () = stop.cancelled() => return,
            }
        }
    });
    Ok(key)
}

fn announce(public_key: &str, fingerprint: &str) {
    info!(public_key = %public_key, fingerprint = %fingerprint, "{HOST_KEY_GENERATED}");
}
