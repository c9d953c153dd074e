//! A Lease per source PVC, in the mapping's namespace of the controller's cluster, so two controllers (or two
//! mappings naming the same PVC) never copy the same PVC at once. Held for one copy and renewed while it runs; a
//! holder that vanished loses it when its hold expires.

use std::time::Duration;

use dr_syncer_api::constants::{FIELD_MANAGER_DATA, LABEL_MANAGED_BY, MANAGED_BY_VALUE};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use super::failure::Failure;
use crate::error::with_timeout;

/// How long a hold lasts without renewal.
pub const HOLD: Duration = Duration::from_secs(60);

/// Name of the Lease of a source PVC (`cluster/namespace/pvc`).
pub fn name(cluster: &str, namespace: &str, pvc: &str) -> String {
    format!("dr-syncer-pvc-{}", super::short_hash(&format!("{cluster}/{namespace}/{pvc}")))
}

/// Whether `lease` may be taken by `identity` at `now`.
pub fn free_for(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let renewed = spec.renew_time.map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    let hold = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed.saturating_add(jiff::SignedDuration::from_secs(hold)).is_ok_and(|end| now > end)
}

/// A held Lease; renewed in the background until [`Held::release`].
pub struct Held {
    api: Api<Lease>,
    name: String,
    stop: CancellationToken,
}

fn body(name: &str, identity: &str, holder_of: &str, now: Timestamp) -> Lease {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string());
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("dr-syncer.io/pvc".to_string(), holder_of.to_string());
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some(identity.into()),
            lease_duration_seconds: Some(HOLD.as_secs() as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Takes the Lease `name` for `identity`, or says who holds it.
pub async fn acquire(
    api: Api<Lease>,
    name: &str,
    identity: &str,
    what: &str,
    timeout: Duration,
) -> Result<Held, Failure> {
    let now = Timestamp::now();
    let params = PostParams { field_manager: Some(FIELD_MANAGER_DATA.into()), ..Default::default() };
    match with_timeout(format!("get Lease {name}"), timeout, api.get_opt(name)).await? {
        None => {
            with_timeout(
                format!("create Lease {name}"),
                timeout,
                api.create(&params, &body(name, identity, what, now)),
            )
            .await
            .map_err(|_| Failure::transient("PvcLocked", format!("Lease {name} of {what} was taken meanwhile")))?;
        }
        Some(current) if free_for(&current, identity, now) => {
            let mut next = body(name, identity, what, now);
            next.metadata.resource_version = current.metadata.resource_version.clone();
            with_timeout(format!("take Lease {name}"), timeout, api.replace(name, &params, &next))
                .await
                .map_err(|_| Failure::transient("PvcLocked", format!("Lease {name} of {what} was taken meanwhile")))?;
        }
        Some(current) => {
            let holder = current.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            return Err(Failure::transient("PvcLocked", format!("{what} is being copied by {holder} (Lease {name})")));
        }
    }
    let stop = CancellationToken::new();
    tokio::spawn(renew(api.clone(), name.to_string(), identity.to_string(), what.to_string(), timeout, stop.clone()));
    Ok(Held { api, name: name.to_string(), stop })
}

async fn renew(
    api: Api<Lease>,
    name: String,
    identity: String,
    what: String,
    timeout: Duration,
    stop: CancellationToken,
) {
    let params = PostParams { field_manager: Some(FIELD_MANAGER_DATA.into()), ..Default::default() };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HOLD / 3) => {}
        }
        let current = match tokio::time::timeout(timeout, api.get_opt(&name)).await {
            Ok(Ok(Some(current))) => current,
            _ => continue,
        };
        if current.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(identity.as_str()) {
            tracing::warn!(lease = %name, pvc = %what, "the PVC's Lease was taken by someone else");
            return;
        }
        let mut next = current.clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        let _ = tokio::time::timeout(timeout, api.replace(&name, &params, &next)).await;
    }
}

impl Held {
    /// Stops renewing and deletes the Lease.
    pub async fn release(self, timeout: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(timeout, self.api.delete(&self.name, &DeleteParams::default())).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn free_for_allows_the_holder_and_expired_holds_when_checked() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let held = body("l", "a", "pvc", now);
        let cases = [("a", now, true), ("b", now, false), ("b", now + jiff::SignedDuration::from_secs(61), true)];
        for (who, at, expected) in cases {
            assert_eq!(free_for(&held, who, at), expected, "{who} {at}");
        }
        assert!(free_for(&Lease::default(), "b", now));
    }
}
