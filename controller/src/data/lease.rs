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

/// Whether `lease` is held now (a holder whose hold has not expired at `now`, in seconds since the epoch) (pure).
pub fn held_at(lease: &Lease, now: i64) -> bool {
    let Some(spec) = lease.spec.as_ref() else { return false };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return false;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0.as_second());
    let lasts = i64::from(spec.lease_duration_seconds.unwrap_or(HOLD_SECONDS as i32));
    renewed.is_some_and(|at| at + lasts > now)
}

/// Deletes the Leases `names` in `namespace` that nobody holds (a PVC left its mapping, or the mapping went): a held
/// one stays with its holder, and one taken between the read and the deletion is kept (resourceVersion
/// precondition). Failures are logged; a Lease left behind is harmless and removed by a later pass.
pub async fn remove_idle(client: &kube::Client, namespace: &str, names: &[String], timeout: Duration) {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    for name in names {
        let lease = match tokio::time::timeout(timeout, api.get_opt(name)).await {
            Ok(Ok(Some(lease))) => lease,
            Ok(Ok(None)) => continue,
            _ => {
                tracing::debug!(lease = %name, "PVC Lease not read; left for a later pass");
                continue;
            }
        };
        if held_at(&lease, jiff::Timestamp::now().as_second()) {
            continue;
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: lease.metadata.resource_version.clone(),
                uid: lease.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        match tokio::time::timeout(timeout, api.delete(name, &params)).await {
            Ok(Ok(_)) => tracing::debug!(lease = %name, "PVC Lease removed"),
            other => tracing::debug!(lease = %name, outcome = ?other.map(|r| r.map(|_| ())), "PVC Lease kept"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    #[test]
    fn held_at_is_true_only_for_a_holder_within_its_hold() {
        let at = |s: i64| Some(MicroTime(jiff::Timestamp::from_second(s).unwrap()));
        let lease = |holder: Option<&str>, renewed: Option<MicroTime>| Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renewed,
                lease_duration_seconds: Some(60),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cases = [
            (lease(Some("ctl-a"), at(1_000)), 1_030, true),
            (lease(Some("ctl-a"), at(1_000)), 1_060, false),
            (lease(None, at(1_000)), 1_010, false),
            (lease(Some(""), at(1_000)), 1_010, false),
            (lease(Some("ctl-a"), None), 1_010, false),
            (Lease::default(), 0, false),
        ];
        for (lease, now, want) in cases {
            assert_eq!(held_at(&lease, now), want, "{lease:?} at {now}");
        }
    }
}
