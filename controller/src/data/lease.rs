//! A Lease per source PVC, in the mapping's namespace of the controller's cluster, so two controllers (or two
//! mappings naming the same PVC) never copy the same PVC at once. [`kube_lease_manager`] takes, renews and hands
//! back the Lease, as it does for leader election; a holder that vanished loses it when its hold expires.

use std::time::Duration;

use dr_syncer_api::constants::FIELD_MANAGER_DATA;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::failure::Failure;

/// How long a hold lasts without renewal, in seconds.
pub const HOLD_SECONDS: u64 = 60;
/// The holder renews this long before its hold expires, in seconds.
pub const GRACE_SECONDS: u64 = 15;

/// Name of the Lease of a source PVC (`cluster/namespace/pvc`).
pub fn name(cluster: &str, namespace: &str, pvc: &str) -> String {
    format!("dr-syncer-pvc-{}", super::short_hash(&format!("{cluster}/{namespace}/{pvc}")))
}

/// Field manager of this process's PVC Leases: one per process, so a second controller's apply of a held Lease
/// conflicts instead of silently taking it over.
pub fn field_manager(identity: &str) -> String {
    format!("{FIELD_MANAGER_DATA}-{identity}").chars().take(128).collect()
}

/// A held Lease, renewed in the background until [`Held::release`].
pub struct Held {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

/// Takes the Lease `name` in `namespace` for `identity` within `timeout`, or says who holds it.
pub async fn acquire(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    what: &str,
    timeout: Duration,
) -> Result<Held, Failure> {
    let building = LeaseManagerBuilder::new(client.clone(), name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(HOLD_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager(field_manager(identity))
        .build();
    let manager = match tokio::time::timeout(timeout, building).await {
        Ok(Ok(manager)) => manager,
        Ok(Err(error)) => return Err(Failure::transient("LeaseError", format!("Lease {name} of {what}: {error}"))),
        Err(_) => {
            return Err(Failure::transient("Timeout", format!("Lease {name} of {what}: no answer in {timeout:?}")));
        }
    };
    let (mut state, task) = manager.watch().await;
    let taken = matches!(tokio::time::timeout(timeout, state.wait_for(|held| *held)).await, Ok(Ok(_)));
    if taken {
        return Ok(Held { state, task });
    }
    // Not ours: stop trying (the watcher ends when the receiver is gone) and name the holder.
    drop(state);
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let holder = match tokio::time::timeout(timeout, api.get_opt(name)).await {
        Ok(Ok(Some(lease))) => lease.spec.and_then(|s| s.holder_identity).unwrap_or_default(),
        _ => String::new(),
    };
    Err(Failure::transient("PvcLocked", format!("{what} is being copied by {holder:?} (Lease {name})")))
}

impl Held {
    /// Resolves when the Lease is no longer held (it could not be renewed, or someone else took it).
    pub async fn lost(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(|held| !*held).await;
    }

    /// Whether the Lease is no longer held.
    pub fn is_lost(&self) -> bool {
        !*self.state.borrow()
    }

    /// Stops renewing and hands the Lease back.
    pub async fn release(self, timeout: Duration) {
        drop(self.state);
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}
