//! PVC data replication end to end on the two-node lab: the controller copies a volume tree (hard links, symlinks,
//! a sparse file, xattrs, owners, modes, a large file, hostile file names) from a source PVC to its DR PVC with the
//! real rsync and OpenSSH client through the source agent; the copy is byte- and attribute-identical, an
//! incremental change converges, a rotation of the mapping's certificate authority in the middle of a copy does not
//! break it, the copy's own credential reaches nothing but its rsync pod and opens nothing once the copy ended, no
//! long-lived key is left in the DR namespace, and deleting the mapping revokes the authority.
//! The ClusterMapping's SSH handshake with the source agent, from a pod in the DR cluster, succeeds with the pinned
//! host key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::data::{self, DATA_WAIT};
use common::{Env, remote_cluster};
use dr_syncer_api::agent::{AGENT_NAMESPACE, AGENT_POLICY_SECRET, POLICY_AUTHORIZED_KEY, policy_targets_key};
use dr_syncer_api::constants::{ANNOTATION_APPROVE_DELETIONS, ANNOTATION_ROTATE_SSH_KEY};
use dr_syncer_api::namespace_mapping::PvcDataPhase;
use dr_syncer_testlab::{TestNamespace, eventually_async, process::promtool_check, tree, unique_name};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

/// Changes the agents' target document of `node` with `change` (the other mappings' entries stay), retried when the
/// controller wrote the Secret in between.
async fn edit_targets(
    policy: &Api<Secret>,
    node: &str,
    change: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) {
    let key = policy_targets_key(node);
    eventually_async("the targets edited", DATA_WAIT, || async {
        let secret = policy.get(AGENT_POLICY_SECRET).await.map_err(|e| e.to_string())?;
        let data = secret.data.clone().unwrap_or_default();
        let text = data.get(&key).map(|b| b.0.clone()).unwrap_or_else(|| b"{}".to_vec());
        let mut document: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        if document.get("targets").is_none() {
            document["targets"] = json!({});
        }
        change(document["targets"].as_object_mut().ok_or("targets is no object")?);
        let patch = json!({"metadata": {"resourceVersion": secret.metadata.resource_version},
                           "stringData": {key.clone(): document.to_string()}});
        policy
            .patch(AGENT_POLICY_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await;
}

/// The credential of the copy running in DR namespace `namespace`, taken from its Job's Secret: the key written to
/// `dir` (with its certificate beside it, where OpenSSH finds it) and its rsync pod's address.
async fn copy_credential(env: &Env, namespace: &str, dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let secrets: Api<Secret> = Api::namespaced(env.dr_client.clone(), namespace);
    let params = kube::api::ListParams::default().labels("dr-syncer.io/data-role=copy");
    let data = eventually_async("the copy Job's Secret", DATA_WAIT, || async {
        let list = secrets.list(&params).await.map_err(|e| e.to_string())?;
        let data = list.items.into_iter().find_map(|s| s.data).ok_or("no copy Secret yet")?;
        if data.contains_key("id_ed25519-cert.pub") { Ok(data) } else { Err(format!("{:?}", data.keys())) }
    })
    .await;
    let text = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    let key = data::identity_file(dir, "copy-key", &text("id_ed25519"));
    std::fs::write(dir.join("copy-key-cert.pub"), text("id_ed25519-cert.pub")).unwrap();
    // The rsync pod's address is the first HostName of the copy's ssh configuration.
    let config = text("config");
    let pod_ip = config.lines().find_map(|l| l.trim().strip_prefix("HostName ")).unwrap().to_string();
    (key, format!("{pod_ip}:2022"))
}

fn write_random(path: &std::path::Path, mib: usize) {
    let mut bytes = vec![0u8; mib << 20];
    rand::fill(&mut bytes[..]);
    std::fs::write(path, bytes).unwrap();
}

/// A check cancelled while its probe pod exists (as a ClusterMapping's time budget does) still deletes the pod; and
/// a deleted ClusterMapping's metric series goes with it.
async fn probe_pods_never_outlive_a_cancelled_check(env: &Env) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.dr_client.clone(), AGENT_NAMESPACE);
    let selector = format!(
        "dr-syncer.io/data-role=agent-probe,dr-syncer.io/mapping=hasty,dr-syncer.io/mapping-namespace={}",
        env.ctl.name()
    );
    let params = kube::api::ListParams::default().labels(&selector);
    let access = dr_syncer_controller::data::run::AgentAccess { port: 2222, service: false };
    let image = dr_syncer_testlab::images::try_image("agent").unwrap();
    let check = dr_syncer_controller::agent::probe::Check {
        source: &env.source_client,
        target: &env.dr_client,
        access: &access,
        image: &image,
        mapping: (env.ctl.name(), "hasty"),
        timeout: Duration::from_secs(10),
    };
    let cache = dr_syncer_controller::agent::probe::ProbeCache::default();
    let pod_exists = eventually_async("the probe pod created", DATA_WAIT, || async {
        let n = pods.list(&params).await.map_err(|e| e.to_string())?.items.len();
        if n > 0 { Ok(()) } else { Err("no probe pod yet".to_string()) }
    });
    tokio::select! {
        result = dr_syncer_controller::agent::probe::check(&check, &cache) => panic!("the check ended first: {result:?}"),
        () = pod_exists => {}
    }
    eventually_async("no probe pod left", Duration::from_secs(60), || async {
        let left = pods.list(&params).await.map_err(|e| e.to_string())?.items;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", left.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>()))
        }
    })
    .await;

    env.apply_ctl(&json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping",
        "metadata": {"name": "pair-hasty"}, "spec": {"sourceCluster": "source", "targetCluster": "dr",
        "verifyConnectivity": false}}))
        .await;
    let series = || {
        env.metrics()
            .lines()
            .any(|l| l.starts_with("dr_syncer_cluster_mapping_connected{") && l.contains("name=\"pair-hasty\""))
    };
    eventually_async("pair-hasty's series exported", DATA_WAIT, || async {
        if series() { Ok(()) } else { Err("not yet".to_string()) }
    })
    .await;
    env.cluster_mappings().delete("pair-hasty", &DeleteParams::default()).await.unwrap();
    eventually_async("pair-hasty's series removed", DATA_WAIT, || async {
        if series() { Err("still exported".to_string()) } else { Ok(()) }
    })
    .await;
}

#[tokio::test]
async fn pvc_data_is_copied_through_the_agent_verified_rotated_and_revoked() {
    let env = Env::start("lab-data").await;
    let agents = data::enable_agents(&env, json!({})).await;
    // The ClusterMapping checks the source agents with a real SSH handshake, their host key pinned.
    env.apply_ctl(
        &json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "metadata": {"name": "pair"},
        "spec": {"sourceCluster": "source", "targetCluster": "dr", "verifyConnectivity": true}}),
    )
    .await;
    let connection = eventually_async("agents handshake", DATA_WAIT, || async {
        let cm = env.cluster_mappings().get("pair").await.map_err(|e| e.to_string())?;
        let status = cm.status.unwrap_or_default();
        let agents_ok = status.conditions.iter().any(|c| c.type_ == "AgentsConnected" && c.status == "True");
        match status.connection_status {
            Some(c) if agents_ok && c.connected_agents == 1 => Ok(c),
            other => Err(format!("{other:?} {:?}", status.conditions)),
        }
    })
    .await;
    probe_pods_never_outlive_a_cancelled_check(&env).await;
    let dr_node = data::node_ip(&env.dr_client).await.0;
    let detail = &connection.connection_details[0];
    assert_eq!((&detail.source_node, &detail.target_node), (&agents.node.0, &dr_node), "checked from the DR node");
    let src = TestNamespace::create(&env.source, "lab-data-src").await;
    let dst = unique_name("lab-data-dst");
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    let volume = data::source_volume(&env.source_client, src.name(), "data", "1Gi").await;
    tree::build(&volume);
    // A second PVC, with a name that is not a plain DNS label.
    let other = data::source_volume(&env.source_client, src.name(), "logs.v2-archive", "64Mi").await;
    std::fs::write(other.join("app.log"), "line 1\n").unwrap();

    env.mapping("m", data::data_mapping(src.name(), &dst, json!({"verificationMode": "full", "concurrentSyncs": 2})))
        .await;
    let t0 = jiff::Timestamp::now();
    env.sync_now("m").await;
    let first = data::wait_copied(&env, "m", "data", t0).await;
    data::wait_copied(&env, "m", "logs.v2-archive", t0).await;
    let dest = data::volume_path(&env.dr_client, &dst, "data").await;
    tree::assert_same(&volume, &dest);
    let dest_other = data::volume_path(&env.dr_client, &dst, "logs.v2-archive").await;
    assert_eq!(std::fs::read_to_string(dest_other.join("app.log")).unwrap(), "line 1\n");
    assert!(first.bytes_transferred > 32 << 20 && first.files_transferred >= 200, "{first:?}");
    assert!(first.last_duration.is_some() && first.last_error.is_none() && first.attempts == 1, "{first:?}");

    // Status names the key by fingerprint only; no private key anywhere in status, events or logs of the copy.
    let nm = env.mappings().get("m").await.unwrap();
    let status_json = serde_json::to_string(&nm.status).unwrap();
    assert!(!status_json.contains("PRIVATE KEY"), "private key in status");
    let key_status = nm.status.unwrap().data_sync.unwrap().key.unwrap();
    assert_eq!(key_status.generation, 1);
    assert!(key_status.fingerprint.starts_with("SHA256:") && key_status.next_rotation.is_some(), "{key_status:?}");
    let first_fingerprint = key_status.fingerprint.clone();
    assert!(env.event_reasons("m").await.iter().any(|r| r == "DataSynced"));
    let metrics = env.metrics();
    let rpo = metrics
        .lines()
        .find(|l| l.starts_with("dr_syncer_data_last_successful_sync_timestamp_seconds") && l.contains("pvc=\"data\""));
    assert!(rpo.is_some(), "no RPO series:\n{metrics}");
    assert!(metrics.contains("dr_syncer_data_bytes_transferred_total"), "{metrics}");
    promtool_check(&metrics).unwrap();
    data::wait_clean(&env, src.name(), &dst).await;

    // Nothing a tenant of the DR namespace could read holds a key of the mapping between copies.
    let dr_secrets: Api<Secret> = Api::namespaced(env.dr_client.clone(), &dst);
    assert!(dr_secrets.get_opt("dr-syncer-ssh-m").await.unwrap().is_none(), "no long-lived key in the DR namespace");
    let dir = std::env::temp_dir().join(unique_name("lab-data-ssh"));
    std::fs::create_dir_all(&dir).unwrap();
    let (node, ip) = agents.node.clone();
    let agent_pod = data::agent_pods(&env.source_client).await.remove(0);
    let agent_ip = agent_pod.status.unwrap().pod_ip.unwrap();
    let foreign = format!("{agent_ip}:2022");
    let policy: Api<Secret> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    let stranger = data::stranger_key(&dir, "stranger");
    let (code, _, err) = data::ssh(&dir, &ip, &stranger, &agents.host_public, &["-W", &foreign], &[]);
    assert!(code == 255 && err.contains("Permission denied (publickey)"), "{code}: {err}");

    // An incremental change (edits, deletes, renames, new files) converges; a PVC deleted in the source leaves
    // status.dataSync and takes its recovery-point series with it.
    tree::change(&volume);
    common::delete(&env.source_client, "v1", "PersistentVolumeClaim", src.name(), "logs.v2-archive").await;
    let t1 = jiff::Timestamp::now();
    env.sync_now("m").await;
    let second = data::wait_copied(&env, "m", "data", t1).await;
    tree::assert_same(&volume, &dest);
    assert!(second.bytes_transferred < first.bytes_transferred, "incremental sends less: {second:?}");
    let pvcs = env.mappings().get("m").await.unwrap().status.unwrap().data_sync.unwrap().pvcs;
    assert_eq!(pvcs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["data"]);
    assert!(!env.metrics().contains("pvc=\"logs.v2-archive\""), "series of the deleted PVC removed");

    // A rotation in the middle of a slow copy: the copy finishes with the key it started with, then that key is
    // retired and refused.
    write_random(&volume.join("slow.bin"), 48);
    env.mapping(
        "m",
        data::data_mapping(
            src.name(),
            &dst,
            json!({"verificationMode": "sample", "samplePercent": 100, "bandwidthLimit": 6000}),
        ),
    )
    .await;
    let t2 = jiff::Timestamp::now();
    env.sync_now("m").await;
    data::wait_pvc(&env, "m", "data", "copy under way", |p| {
        p.phase == PvcDataPhase::Running && p.progress.as_ref().is_some_and(|g| g.bytes > 0)
    })
    .await;
    // The running copy's credential (from its Job's Secret) reaches its own rsync pod and nothing else: no shell,
    // not another mapping's target, not the Kubernetes Service, not the API server.
    let (credential, own) = copy_credential(&env, &dst, &dir).await;
    let (code, out, err) = data::ssh(&dir, &ip, &credential, &agents.host_public, &["-W", &own], &[]);
    assert!(out.starts_with("SSH-2.0-"), "the copy's credential reaches its pod: {code} {err}");
    // Another mapping's target next to the running copy's own (which must stay).
    let someone_else = format!("{}/someone-else", env.ctl.name());
    edit_targets(&policy, &node, |t| {
        t.insert(someone_else.clone(), json!([foreign.clone()]));
    })
    .await;
    let (code, _, err) = data::ssh(&dir, &ip, &credential, &agents.host_public, &[], &["sh", "-c", "id"]);
    assert!(code == 255 && !err.contains("Permission denied"), "a shell is refused after authentication: {code} {err}");
    for target in [foreign.as_str(), "10.96.0.1:443", "10.250.0.1:6443"] {
        let (code, out, err) = data::ssh(&dir, &ip, &credential, &agents.host_public, &["-W", target], &[]);
        assert!(code == 255 && err.contains("administratively prohibited") && out.is_empty(), "{target}: {code} {err}");
    }
    edit_targets(&policy, &node, |t| {
        t.remove(&someone_else);
    })
    .await;

    let patch = json!({"metadata": {"annotations": {ANNOTATION_ROTATE_SSH_KEY: "now"}}});
    env.mappings().patch("m", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let rotated = data::wait_copied(&env, "m", "data", t2).await;
    assert_eq!(rotated.attempts, 1, "the rotation did not break the copy: {rotated:?}");
    tree::assert_same(&volume, &dest);
    let key_status = eventually_async("generation 2, old authority dropped", DATA_WAIT, || async {
        let nm = env.mappings().get("m").await.map_err(|e| e.to_string())?;
        let key = nm.status.and_then(|s| s.data_sync).and_then(|d| d.key).ok_or("no key status")?;
        if key.generation == 2 && key.retiring.is_empty() { Ok(key) } else { Err(format!("{key:?}")) }
    })
    .await;
    assert!(env.event_reasons("m").await.iter().any(|r| r == "ClientKeyRotated"));
    assert_ne!(key_status.fingerprint, first_fingerprint, "a new authority");
    // The copy ended: its credential opens nothing any more (its authority was retired with the copy).
    let (code, _, err) = data::ssh(&dir, &ip, &credential, &agents.host_public, &["-W", &own], &[]);
    assert!(code == 255 && err.contains("Permission denied (publickey)"), "the ended copy's credential: {code} {err}");
    data::wait_clean(&env, src.name(), &dst).await;

    deletion_guard_holds_back_a_wipe_until_approved(&env).await;

    // Deleting the mapping revokes its authority at the agents; the DR data stays.
    env.mappings().delete("m", &DeleteParams::default()).await.unwrap();
    let id = format!("{}/m", env.ctl.name());
    eventually_async("authority revoked", DATA_WAIT, || async {
        let authorized = data::policy_text(&env.source_client, POLICY_AUTHORIZED_KEY).await;
        if !authorized.contains(&id) { Ok(()) } else { Err(authorized) }
    })
    .await;
    // The PVC Leases of the deleted mappings go with them.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.dr_client.clone(), env.ctl.name());
    eventually_async("PVC Leases removed", DATA_WAIT, || async {
        let list = leases.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let left: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|l| l.metadata.name)
            .filter(|n| n.starts_with("dr-syncer-pvc-"))
            .collect();
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    tree::assert_same(&volume, &dest);
    let _ = std::fs::remove_dir_all(&dir);

    // Turning pvcSync off removes the agents.
    let mut rc = remote_cluster("source", "source-kubeconfig");
    rc["spec"]["pvcSync"] = json!({"enabled": false});
    env.apply_ctl(&rc).await;
    eventually_async("agents removed", Duration::from_secs(120), || async {
        let rc = env.remote_clusters().get("source").await.map_err(|e| e.to_string())?;
        if rc.status.and_then(|s| s.pvc_sync).is_none() { Ok(()) } else { Err("still there".to_string()) }
    })
    .await;
}

/// The deletion guard end to end: 80 % of a volume's files deleted in the source leave the DR volume intact (new
/// files still arrive), the PVC's copy fails with the permanent reason `MassDeletion` (status, event, metric), and
/// the approval annotation lets the deletions through once, then is removed.
async fn deletion_guard_holds_back_a_wipe_until_approved(env: &Env) {
    let src = TestNamespace::create(&env.source, "lab-guard-src").await;
    let dst = unique_name("lab-guard-dst");
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    let volume = data::source_volume(&env.source_client, src.name(), "records", "64Mi").await;
    for i in 0..50 {
        std::fs::write(volume.join(format!("r{i:02}")), format!("record {i}\n")).unwrap();
    }
    env.mapping("guard", data::data_mapping(src.name(), &dst, json!({}))).await;
    let t0 = jiff::Timestamp::now();
    env.sync_now("guard").await;
    data::wait_copied(env, "guard", "records", t0).await;
    let dest = data::volume_path(&env.dr_client, &dst, "records").await;
    let count = || std::fs::read_dir(&dest).unwrap().count();
    assert_eq!(count(), 50);

    for i in 0..40 {
        std::fs::remove_file(volume.join(format!("r{i:02}"))).unwrap();
    }
    std::fs::write(volume.join("new"), "new\n").unwrap();
    let t1 = data::floor_second(jiff::Timestamp::now());
    env.sync_now("guard").await;
    let held = data::wait_pvc(env, "guard", "records", "MassDeletion", |p| {
        p.last_error.as_ref().is_some_and(|e| e.reason == "MassDeletion" && e.time.as_ref().is_some_and(|t| t.0 >= t1))
    })
    .await;
    let error = held.last_error.unwrap();
    assert!(error.permanent && error.message.contains("approve"), "{error:?}");
    assert_eq!(count(), 51, "no file deleted in DR, the new one copied");
    assert!(env.event_reasons("guard").await.iter().any(|r| r == "MassDeletion"));
    let metrics = env.metrics();
    assert!(
        metrics.lines().any(|l| l.starts_with("dr_syncer_data_sync_failures_total") && l.contains("MassDeletion")),
        "{metrics}"
    );

    let t2 = jiff::Timestamp::now();
    let approve = json!({"metadata": {"annotations": {ANNOTATION_APPROVE_DELETIONS: "ops-ticket-42"}}});
    env.mappings().patch("guard", &PatchParams::default(), &Patch::Merge(&approve)).await.unwrap();
    data::wait_copied(env, "guard", "records", t2).await;
    assert_eq!(count(), 11, "the approved deletions went through");
    eventually_async("approval used up", DATA_WAIT, || async {
        let nm = env.mappings().get("guard").await.map_err(|e| e.to_string())?;
        let kept = nm.metadata.annotations.unwrap_or_default().contains_key(ANNOTATION_APPROVE_DELETIONS);
        if kept { Err("annotation still there".to_string()) } else { Ok(()) }
    })
    .await;
    env.mappings().delete("guard", &DeleteParams::default()).await.unwrap();
}
