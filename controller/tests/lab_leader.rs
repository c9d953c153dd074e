//! Leader election against a real API server: replicas that start at the same moment on a Lease nobody holds yet
//! end with exactly one leader, and the one that acquired keeps it (no replica believes it leads and then finds the
//! Lease taken, which would make it exit and restart right after an install). The interleaving that caused that is
//! replayed step by step by `a_late_apply_…`; the start-together rounds are the same property under real timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use dr_syncer_controller::leader::{Election, ElectionConfig, Role, RoleCell, field_manager, identity};
use dr_syncer_testlab::{LabCluster, TestNamespace, eventually_async};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio_util::sync::CancellationToken;

const REPLICAS: usize = 3;
const ROUNDS: usize = 4;
const DURATION: Duration = Duration::from_secs(4);
const GRACE: Duration = Duration::from_secs(1);
/// Longest wait for the Lease to be taken and renewed once.
const WAIT: Duration = Duration::from_secs(30);

/// What one replica saw in a round: whether it acquired, and why it lost the Lease afterwards (if it did).
#[derive(Debug)]
struct Seen {
    identity: String,
    acquired: bool,
    lost: Option<String>,
}

fn config(namespace: &str, lease: &str, identity: &str) -> ElectionConfig {
    ElectionConfig {
        lease_name: lease.to_string(),
        namespace: namespace.to_string(),
        identity: identity.to_string(),
        duration: DURATION,
        grace: GRACE,
        api_timeout: Duration::from_secs(5),
    }
}

async fn replica(client: kube::Client, namespace: String, lease: String, stop: CancellationToken) -> Seen {
    let identity = identity("replica");
    let cfg = config(&namespace, &lease, &identity);
    let role = RoleCell::with_gauge(Role::Standby, prometheus::IntGauge::new("leader", "test").unwrap());
    let mut election = Election::start(client, cfg, role, &stop).await.unwrap();
    let acquired = election.acquired(&stop).await.unwrap();
    let lost = if acquired { election.lost(&stop).await } else { None };
    election.release(Duration::from_secs(3)).await;
    Seen { identity, acquired, lost }
}

#[tokio::test]
async fn a_late_apply_of_a_taken_lease_conflicts_when_another_replica_holds_it() {
    // The interleaving that made two replicas lead at once: B saw the Lease free, A took it, and then B applied
    // its own holderIdentity. Under one shared field manager that apply succeeded; it must conflict.
    let cluster = LabCluster::shared("source");
    let ns = TestNamespace::create(&cluster, "lab-leader").await;
    let client = cluster.client().await;
    let stop = CancellationToken::new();
    let a = identity("replica-a");
    let role = RoleCell::with_gauge(Role::Standby, prometheus::IntGauge::new("leader", "test").unwrap());
    let mut election = Election::start(client.clone(), config(ns.name(), "late", &a), role, &stop).await.unwrap();
    assert!(election.acquired(&stop).await.unwrap());

    let b = identity("replica-b");
    let leases: Api<Lease> = Api::namespaced(client, ns.name());
    let late = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "spec": {"holderIdentity": b, "leaseDurationSeconds": DURATION.as_secs()},
    });
    let params = PatchParams::apply(&field_manager(&b));
    let err = leases.patch("late", &params, &Patch::Apply(&late)).await.expect_err("the late apply must conflict");
    assert!(matches!(&err, kube::Error::Api(e) if e.code == 409), "{err}");
    let held = leases.get("late").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(held.as_deref(), Some(a.as_str()));
    stop.cancel();
    election.release(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn replicas_starting_together_elect_one_leader_that_keeps_the_lease() {
    let cluster = LabCluster::shared("source");
    let ns = TestNamespace::create(&cluster, "lab-leader").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client().await, ns.name());
    for round in 0..ROUNDS {
        let lease = format!("race-{round}");
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for _ in 0..REPLICAS {
            let client = cluster.client().await;
            tasks.push(tokio::spawn(replica(client, ns.name().to_string(), lease.clone(), stop.clone())));
        }
        // Every replica tries the free Lease at once; a replica that lost that race to a late apply would find the
        // Lease naming another holder at its watchdog's next read. Wait until the holder has renewed its hold once
        // after acquiring it (a full renewal cycle: every start-up attempt is long over, and the leader's watchdog
        // has read the Lease since).
        let holder = eventually_async("the holder renewing the Lease once", WAIT, || async {
            let spec =
                leases.get_opt(&lease).await.map_err(|e| e.to_string())?.and_then(|l| l.spec).unwrap_or_default();
            match (spec.holder_identity, spec.acquire_time, spec.renew_time) {
                (Some(holder), Some(acquired), Some(renewed)) if renewed.0 > acquired.0 => Ok(holder),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        stop.cancel();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        let leaders: Vec<&Seen> = seen.iter().filter(|s| s.acquired).collect();
        assert_eq!(leaders.len(), 1, "round {round}: exactly one replica leads: {seen:?}");
        assert_eq!(leaders[0].identity, holder, "round {round}: the leader is the Lease's holder: {seen:?}");
        assert!(leaders[0].lost.is_none(), "round {round}: the leader kept the Lease: {seen:?}");
        eprintln!("round {round}: {} leads", leaders[0].identity);
    }
}
