//! Bad input and refusals against the lab: each gets a condition with a reason and an event, and nothing is written
//! that should not be; one bad object never stops the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, apply, get, has_event, plain_config_map as cm};
use dr_syncer_api::NamespaceMappingStatus;
use dr_syncer_api::common::find_condition;
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use serde_json::json;

fn reason(s: &NamespaceMappingStatus, t: &str) -> (String, String) {
    find_condition(&s.conditions, t).map(|c| (c.status.clone(), c.reason.clone())).unwrap_or_default()
}

fn wants(
    t: &'static str,
    status: &'static str,
    why: &'static str,
) -> impl Fn(&NamespaceMappingStatus) -> Result<(), String> {
    move |s| {
        let got = reason(s, t);
        if (got.0.as_str(), got.1.as_str()) == (status, why) { Ok(()) } else { Err(format!("{t}={got:?}")) }
    }
}

#[tokio::test]
async fn mapping_reports_unknown_kind_and_still_syncs_known_ones() {
    let env = Env::start("unknown").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let dst = unique_name("dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &cm("a")).await;
    env.mapping(
        "m",
        json!({"clusterMappingRef": {"name": "pair"}, "sourceNamespace": src.name(),
        "destinationNamespace": dst, "resourceTypes": ["ConfigMap", "Frobnicator"]}),
    )
    .await;
    let s = env.wait_synced_after("m", None).await;
    assert_eq!(reason(&s, "Synced"), ("False".into(), "UnknownResourceType".into()));
    assert!(s.resource_status.iter().any(|r| r.name == "Frobnicator"), "{:?}", s.resource_status);
    assert!(get(&env.dr_client, "v1", "ConfigMap", &dst, "a").await.is_some(), "known kinds still sync");
    assert!(s.next_sync_time.is_some() || s.retry_status.is_some(), "Scheduled mode publishes the next sync");
    has_event(&env, "m", "UnknownResourceType").await;
}

#[tokio::test]
async fn mapping_waits_for_missing_remote_cluster_then_syncs() {
    let env = Env::start("missing").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let dst = unique_name("dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &cm("a")).await;
    env.mapping(
        "m",
        json!({"sourceCluster": "later", "destinationCluster": "dr", "sourceNamespace": src.name(),
        "destinationNamespace": dst, "resourceTypes": ["configmaps"]}),
    )
    .await;
    env.wait_mapping("m", "RemoteClusterNotFound", wants("Ready", "False", "RemoteClusterNotFound")).await;
    has_event(&env, "m", "RemoteClusterNotFound").await;
    assert!(get(&env.dr_client, "v1", "Namespace", "", &dst).await.is_none(), "nothing written");
    env.apply_ctl(&common::remote_cluster("later", "source-kubeconfig")).await;
    let s = env.wait_synced_after("m", None).await;
    assert_eq!(reason(&s, "Synced").0, "True");
    let ns = get(&env.dr_client, "v1", "Namespace", "", &dst).await.expect("DR namespace created");
    assert_eq!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"], "dr-syncer", "{ns}");
}

#[tokio::test]
async fn mapping_refuses_same_namespace_and_destination_owned_by_another() {
    let env = Env::start("refuse").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let dst = unique_name("dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &cm("a")).await;
    env.mapping(
        "same",
        json!({"sourceCluster": "source", "destinationCluster": "source", "sourceNamespace": src.name()}),
    )
    .await;
    env.wait_mapping("same", "SameNamespace", wants("Ready", "False", "SameNamespace")).await;
    has_event(&env, "same", "SameNamespace").await;

    env.mapping(
        "first",
        json!({"clusterMappingRef": {"name": "pair"}, "sourceNamespace": src.name(),
        "destinationNamespace": dst, "resourceTypes": ["configmaps"]}),
    )
    .await;
    env.wait_synced_after("first", None).await;
    env.mapping(
        "second",
        json!({"sourceCluster": "source", "destinationCluster": "dr", "sourceNamespace": src.name(),
        "destinationNamespace": dst, "resourceTypes": ["configmaps"]}),
    )
    .await;
    env.wait_mapping("second", "refusal", wants("Ready", "False", "DestinationOwnedByAnotherMapping")).await;
    has_event(&env, "second", "DestinationOwnedByAnotherMapping").await;
    let a = get(&env.dr_client, "v1", "ConfigMap", &dst, "a").await.unwrap();
    assert_eq!(a["metadata"]["labels"]["dr-syncer.io/mapping"], "first");
    let second = env.mappings().get("second").await.unwrap().status.unwrap_or_default();
    assert!(second.last_sync_time.is_none(), "the refused mapping never synced");
}

#[tokio::test]
async fn rejected_object_fails_alone_while_the_rest_sync() {
    let env = Env::start("reject").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let blocker = TestNamespace::create(&env.dr, "blk").await;
    let dst = unique_name("dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    let port = 30000 + (rand_port() % 2000);
    let svc = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP", "nodePort": port}]}})
    };
    // The DR cluster already uses the nodePort, so it rejects the copy.
    apply(&env.dr_client, blocker.name(), &svc("holder")).await;
    apply(&env.source_client, src.name(), &svc("web")).await;
    apply(&env.source_client, src.name(), &cm("a")).await;
    env.mapping(
        "m",
        json!({"clusterMappingRef": {"name": "pair"}, "sourceNamespace": src.name(),
        "destinationNamespace": dst, "resourceTypes": ["configmaps", "services"]}),
    )
    .await;
    let s = env.wait_synced_after("m", None).await;
    assert_eq!(reason(&s, "Synced"), ("False".into(), "ObjectsFailed".into()));
    let failed = s.resource_status.iter().find(|r| r.name == "web").expect("web listed as failed");
    assert!(failed.error.as_deref().unwrap_or_default().contains("Invalid"), "{failed:?}");
    assert!(get(&env.dr_client, "v1", "ConfigMap", &dst, "a").await.is_some());
    assert!(s.last_successful_sync_time.is_none());
    assert_eq!(s.phase, Some(dr_syncer_api::namespace_mapping::NamespaceMappingPhase::Completed));
    has_event(&env, "m", "Invalid").await;
    has_event(&env, "m", "SyncPartiallyFailed").await;
    assert!(env.metrics().contains("result=\"partial\""));
}

fn rand_port() -> u32 {
    let name = unique_name("p");
    u32::from_str_radix(&name[2..6], 16).unwrap()
}

#[tokio::test]
async fn conflicting_dr_object_is_left_alone_until_adoption_is_allowed() {
    let env = Env::start("conflict").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let dst = TestNamespace::create(&env.dr, "dst").await;
    apply(&env.source_client, src.name(), &cm("shared")).await;
    apply(
        &env.dr_client,
        dst.name(),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"mine": "x"}}),
    )
    .await;
    let spec = |adopt: bool| {
        json!({"replicationMode": "Manual", "clusterMappingRef": {"name": "pair"}, "sourceNamespace": src.name(),
            "destinationNamespace": dst.name(), "resourceTypes": ["configmaps"], "adoptExistingObjects": adopt,
            "syncTrigger": format!("adopt-{adopt}")})
    };
    env.mapping("m", spec(false)).await;
    let s = env
        .wait_mapping("m", "conflict", |s| {
            if s.last_handled_trigger.as_deref() == Some("adopt-false") { Ok(s.clone()) } else { Err("no".into()) }
        })
        .await;
    assert_eq!(reason(&s, "Synced"), ("False".into(), "ObjectsConflict".into()));
    let dr = get(&env.dr_client, "v1", "ConfigMap", dst.name(), "shared").await.unwrap();
    assert_eq!(dr["data"], json!({"mine": "x"}), "unmanaged object untouched");
    env.mapping("m", spec(true)).await;
    let s = env
        .wait_mapping("m", "adoption", |s| {
            if s.last_handled_trigger.as_deref() == Some("adopt-true") { Ok(s.clone()) } else { Err("no".into()) }
        })
        .await;
    assert_eq!(reason(&s, "Synced").0, "True");
    let dr = get(&env.dr_client, "v1", "ConfigMap", dst.name(), "shared").await.unwrap();
    assert_eq!(dr["data"], json!({"k": "v"}));
}

#[tokio::test]
async fn paused_mapping_writes_nothing_and_scheduled_mapping_publishes_next_sync() {
    let env = Env::start("paused").await;
    let src = TestNamespace::create(&env.source, "src").await;
    let dst = unique_name("dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &cm("a")).await;
    let spec = |paused: bool| {
        json!({"paused": paused, "schedule": "* * * * *", "scheduleJitter": "2s", "clusterMappingRef": {"name": "pair"},
            "sourceNamespace": src.name(), "destinationNamespace": dst, "resourceTypes": ["configmaps"]})
    };
    env.mapping("m", spec(true)).await;
    env.wait_mapping("m", "Paused", wants("Ready", "False", "Paused")).await;
    env.sync_now("m").await;
    // The controller has seen the request (the event says it is held) and wrote nothing: no namespace in DR, and the
    // annotation stays for when the mapping is resumed.
    common::has_event(&env, "m", "SyncRequestHeld").await;
    assert!(get(&env.dr_client, "v1", "Namespace", "", &dst).await.is_none(), "a paused mapping wrote to DR");
    let annotations = env.mappings().get("m").await.unwrap().metadata.annotations.unwrap_or_default();
    assert!(annotations.contains_key("dr-syncer.io/sync-now"), "the held request is kept: {annotations:?}");
    env.mapping("m", spec(false)).await;
    let first = env.wait_synced_after("m", None).await;
    // The held request was handled by that sync.
    eventually_async("the sync-now annotation handled", common::WAIT, || async {
        let nm = env.mappings().get("m").await.map_err(|e| e.to_string())?;
        let held = nm.metadata.annotations.unwrap_or_default().contains_key("dr-syncer.io/sync-now");
        if held { Err("still annotated".to_string()) } else { Ok(()) }
    })
    .await;
    let next =
        env.wait_mapping("m", "nextSyncTime", |s| s.next_sync_time.clone().ok_or_else(|| "none".to_string())).await;
    let until = next.0.duration_since(jiff::Timestamp::now());
    assert!(until <= jiff::SignedDuration::from_secs(63), "next sync within a minute plus jitter: {until:?}");
    // The schedule fires again on its own.
    let last = first.last_sync_time.unwrap().0;
    eventually_async("a scheduled sync", std::time::Duration::from_secs(90), || async {
        let s = env.mappings().get("m").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        match s.last_sync_time {
            Some(t) if t.0 > last => Ok(()),
            _ => Err("not yet".into()),
        }
    })
    .await;
}

/// A status write is no reason to look again: a failing ClusterMapping backs off (1 s, 2 s, 4 s, … with ±20 %
/// jitter) instead of re-checking itself at every write of its own status, and a healthy RemoteCluster writes its
/// heartbeat once per health interval (5 s here).
#[tokio::test]
async fn own_status_writes_wake_nothing_so_failures_back_off_and_heartbeats_keep_their_interval() {
    let env = Env::start("quiet").await;
    env.apply_ctl(
        &json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "metadata": {"name": "broken"},
        "spec": {"sourceCluster": "nowhere", "targetCluster": "dr", "verifyConnectivity": false}}),
    )
    .await;
    let failures = || async {
        let cm = env.cluster_mappings().get("broken").await.map_err(|e| e.to_string())?;
        Ok::<i32, String>(cm.status.map(|s| s.consecutive_failures).unwrap_or_default())
    };
    let at_least = |n: i32| {
        move || async move {
            let got = failures().await?;
            if got >= n { Ok(std::time::Instant::now()) } else { Err(format!("{got} failures")) }
        }
    };
    let first = eventually_async("the first failure", common::WAIT, at_least(1)).await;
    let fourth = eventually_async("the fourth failure", common::WAIT, at_least(4)).await;
    // Three backoffs (1 s + 2 s + 4 s, with jitter down to 80 %: 5.6 s) at the least lie between them.
    assert!(fourth - first >= std::time::Duration::from_millis(5_000), "{:?}", fourth - first);

    let heartbeat = || async {
        let rc = env.remote_clusters().get("source").await.map_err(|e| e.to_string())?;
        rc.status.and_then(|s| s.last_sync_time).map(|t| t.0).ok_or_else(|| "no heartbeat yet".to_string())
    };
    let seen = eventually_async("a heartbeat", common::WAIT, heartbeat).await;
    let next = |after: jiff::Timestamp| {
        move || async move {
            let t = heartbeat().await?;
            if t > after { Ok((t, std::time::Instant::now())) } else { Err(format!("still {t}")) }
        }
    };
    let (second, _) = eventually_async("the next heartbeat", common::WAIT, next(seen)).await;
    let (third, _) = eventually_async("another heartbeat", common::WAIT, next(second)).await;
    let gap = third.duration_since(second);
    assert!(gap >= jiff::SignedDuration::from_secs(4), "heartbeats {gap:?} apart");
}
