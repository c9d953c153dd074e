//! The per-PVC Lease of data copies against a real API server: while one controller holds it, another is refused
//! with the holder named, and once it is handed back the other one gets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use dr_syncer_controller::data::lease;
use dr_syncer_testlab::{LabCluster, TestNamespace};

#[tokio::test]
async fn a_second_controller_is_refused_the_pvc_until_the_first_hands_it_back() {
    let cluster = LabCluster::shared("source");
    let ns = TestNamespace::create(&cluster, "lab-pvc-lease").await;
    let client = cluster.client().await;
    let name = lease::name("source", "shop", "data");
    let timeout = Duration::from_secs(5);

    let first = lease::acquire(&client, ns.name(), &name, "controller-a", "shop/data", timeout).await.unwrap();
    let refused = lease::acquire(&client, ns.name(), &name, "controller-b", "shop/data", timeout).await.err().unwrap();
    assert_eq!((refused.reason, refused.permanent), ("PvcLocked", false));
    assert!(refused.message.contains("controller-a"), "{}", refused.message);

    first.release(timeout).await;
    let second = lease::acquire(&client, ns.name(), &name, "controller-b", "shop/data", timeout).await.unwrap();
    second.release(timeout).await;
}
