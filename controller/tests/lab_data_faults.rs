//! PVC data copies under faults, with the controller binary: the DR copy pod killed, the agent pod killed and the
//! controller SIGKILLed in the middle of a copy — each time the copy resumes and converges, and what the killed
//! controller left behind (rsync pod, Job, Secrets, agent target) is removed; a destination that fills up fails
//! with a clear permanent error instead of retrying forever; a source node reporting a hostile address is refused
//! before anything is created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Env;
use common::data::{self, DATA_WAIT};
use dr_syncer_api::agent::AGENT_NAMESPACE;
use dr_syncer_api::namespace_mapping::{PvcDataPhase, PvcDataStatus};
use dr_syncer_testlab::process::Process;
use dr_syncer_testlab::{TestNamespace, eventually_async, tree, unique_name};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-controller");

fn controller(env: &Env) -> Process {
    let mut args = dr_syncer_testlab::process::controller_args(env.dr.kubeconfig_path(), env.ctl.name());
    args.extend(["--agent-image".to_string(), dr_syncer_testlab::images::image("agent")]);
    Process::spawn(Path::new(BIN), &args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

fn write_random(path: &Path, mib: usize) {
    let mut bytes = vec![0u8; mib << 20];
    rand::fill(&mut bytes[..]);
    std::fs::write(path, bytes).unwrap();
}

/// A tmpfs mounted over a directory while it lives (a volume that fills up).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status();
        assert!(status.unwrap().success(), "mount tmpfs on {}", path.display());
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Starts a copy of `pvc` and waits until bytes flow; returns when the copy is under way.
async fn copy_under_way(env: &Env, pvc: &str) -> jiff::Timestamp {
    let t = jiff::Timestamp::now();
    env.sync_now("m").await;
    let since = data::floor_second(t);
    data::wait_pvc(env, "m", pvc, "copy under way", |p| {
        p.phase == PvcDataPhase::Running
            && p.last_start_time.as_ref().is_some_and(|s| s.0 >= since)
            && p.progress.as_ref().is_some_and(|g| g.bytes > 0)
    })
    .await;
    t
}

async fn running_pods(client: &kube::Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default().labels(selector)).await.unwrap().items
}

fn assert_resumed(status: &PvcDataStatus) {
    assert!(status.attempts >= 2, "the copy was retried: {status:?}");
}

#[tokio::test]
async fn copies_resume_after_kills_and_a_full_destination_fails_for_good() {
    let env = Env::start_with("lab-data-faults", false).await;
    let mut ctl = controller(&env);
    data::enable_agents(&env, json!({})).await;
    let src = TestNamespace::create(&env.source, "lab-faults-src").await;
    let dst = unique_name("lab-faults-dst");
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    // Content and attribute fidelity is lab_data's subject; here a few files and a large one that takes a while.
    let volume = data::source_volume(&env.source_client, src.name(), "data", "1Gi").await;
    for i in 0..20 {
        std::fs::write(volume.join(format!("small-{i}.txt")), format!("file {i}\n")).unwrap();
    }
    write_random(&volume.join("large-1.bin"), 64);
    let slow = json!({"bandwidthLimit": 8000, "concurrentSyncs": 1});
    env.mapping("m", data::data_mapping(src.name(), &dst, slow.clone())).await;

    // The DR copy pod dies mid-copy: the next attempt resumes from the partial file.
    let t = copy_under_way(&env, "data").await;
    let copy_pods = running_pods(&env.dr_client, &dst, "dr-syncer.io/data-role=copy").await;
    assert_eq!(copy_pods.len(), 1, "one copy pod");
    let dr_pods: Api<Pod> = Api::namespaced(env.dr_client.clone(), &dst);
    dr_pods
        .delete(&copy_pods[0].metadata.name.clone().unwrap(), &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let status = data::wait_copied(&env, "m", "data", t).await;
    assert_resumed(&status);
    let dest = data::volume_path(&env.dr_client, &dst, "data").await;
    tree::assert_equal(&volume, &dest);

    // The agent pod dies mid-copy: its DaemonSet brings it back and the copy goes through it again.
    write_random(&volume.join("large-2.bin"), 64);
    let t = copy_under_way(&env, "data").await;
    let agent = data::agent_pods(&env.source_client).await.remove(0);
    let agents: Api<Pod> = Api::namespaced(env.source_client.clone(), AGENT_NAMESPACE);
    agents.delete(&agent.metadata.name.clone().unwrap(), &DeleteParams::default().grace_period(0)).await.unwrap();
    let status = data::wait_copied(&env, "m", "data", t).await;
    assert_resumed(&status);
    tree::assert_equal(&volume, &dest);

    // The controller is SIGKILLed mid-copy: its objects stay behind until the next controller takes the PVC
    // (after the dead one's Lease runs out), sweeps them and copies.
    write_random(&volume.join("large-3.bin"), 64);
    let t = copy_under_way(&env, "data").await;
    ctl.signal("KILL");
    ctl.wait_exit(Duration::from_secs(10));
    let left = running_pods(&env.source_client, src.name(), "dr-syncer.io/data-role=source-rsync").await;
    assert_eq!(left.len(), 1, "the killed controller's rsync pod is still there");
    let old_pod = left[0].metadata.name.clone().unwrap();
    let mut ctl = controller(&env);
    let status = data::wait_copied(&env, "m", "data", t).await;
    tree::assert_equal(&volume, &dest);
    assert!(status.last_error.is_none(), "{status:?}");
    let source_pods: Api<Pod> = Api::namespaced(env.source_client.clone(), src.name());
    assert!(source_pods.get_opt(&old_pod).await.unwrap().is_none(), "the leftover rsync pod was removed");
    data::wait_clean(&env, src.name(), &dst).await;

    // A destination with no room: the copy fails once with NoSpace, marked permanent, and is not retried.
    let small = data::source_volume(&env.source_client, src.name(), "small", "64Mi").await;
    std::fs::write(small.join("seed"), "x").unwrap();
    env.mapping("m", data::data_mapping(src.name(), &dst, json!({}))).await;
    let t = jiff::Timestamp::now();
    env.sync_now("m").await;
    data::wait_copied(&env, "m", "small", t).await;
    let dr_small = data::volume_path(&env.dr_client, &dst, "small").await;
    let _disk = SmallDisk::mount(&dr_small, "1m");
    write_random(&small.join("too-big.bin"), 8);
    let t = data::floor_second(jiff::Timestamp::now());
    env.sync_now("m").await;
    let failed = data::wait_pvc(&env, "m", "small", "NoSpace", |p| {
        p.phase == PvcDataPhase::Failed
            && p.last_error.as_ref().is_some_and(|e| e.reason == "NoSpace" && e.time.as_ref().is_some_and(|x| x.0 >= t))
    })
    .await;
    let error = failed.last_error.clone().unwrap();
    assert!(error.permanent && failed.attempts == 1, "not retried: {failed:?}");
    assert!(error.message.contains("No space left on device"), "{}", error.message);
    eventually_async("NoSpace event", DATA_WAIT, || async {
        let reasons = env.event_reasons("m").await;
        if reasons.iter().any(|r| r == "NoSpace") { Ok(()) } else { Err(format!("{reasons:?}")) }
    })
    .await;
    hostile_node_address_is_refused_before_anything_runs(&env).await;
    ctl.terminate(Duration::from_secs(20));
}

/// A Node (no kubelet behind it) that reports an InternalIP carrying a second line with a ProxyCommand, as a
/// compromised source node's kubelet could: a PVC attached to it is refused with `InvalidNodeAddress` before any
/// copy object exists, so no ssh configuration with that text is ever written and nothing runs in DR.
async fn hostile_node_address_is_refused_before_anything_runs(env: &Env) {
    let nodes: Api<Node> = Api::all(env.source_client.clone());
    // Sorted after the lab's real node, which helpers find as the first one.
    let name = unique_name("zz-lab-hostile-node");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"unschedulable": true,
                 "taints": [{"key": "dr-syncer.io/test-hostile", "value": "true", "effect": "NoSchedule"}]}});
    nodes.create(&PostParams::default(), &serde_json::from_value(node).unwrap()).await.unwrap();
    let _node_guard = NodeGuard(env.source.kubeconfig_path().to_path_buf(), name.clone());
    let hostile = "10.0.0.1\n  ProxyCommand sh -c 'touch /data/pwned'";
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": hostile}]}});
    nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();

    let src = TestNamespace::create(&env.source, "lab-hostile-src").await;
    let dst = unique_name("lab-hostile-dst");
    let _dst_guard = TestNamespace::guard(&env.dr, &dst);
    data::source_volume(&env.source_client, src.name(), "data", "64Mi").await;
    // The application pod that "mounts" the PVC on that node; it stays Pending (no kubelet).
    let app = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
        "spec": {"nodeName": name, "containers": [{"name": "app", "image": "localhost/none:1"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}});
    common::apply(&env.source_client, src.name(), &app).await;
    env.mapping("hostile", data::data_mapping(src.name(), &dst, json!({}))).await;
    env.sync_now("hostile").await;
    let failed = data::wait_pvc(env, "hostile", "data", "InvalidNodeAddress", |p| {
        p.last_error.as_ref().is_some_and(|e| e.reason == "InvalidNodeAddress")
    })
    .await;
    let message = failed.last_error.unwrap().message;
    assert!(message.contains(&name) && message.contains("ProxyCommand"), "{message}");
    let mut left = data::copy_objects(&env.source_client, src.name()).await;
    left.extend(data::copy_objects(&env.dr_client, &dst).await);
    assert!(left.is_empty(), "nothing is created for a refused copy: {left:?}");
    let targets = data::policy_text(&env.source_client, "targets.").await;
    assert!(!targets.contains("ProxyCommand"), "{targets}");
    let mappings = env.mappings();
    mappings.delete("hostile", &DeleteParams::default()).await.unwrap();
}

/// Deletes a Node the test created (from a thread with its own runtime and client: the test's may be ending).
struct NodeGuard(PathBuf, String);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let (kubeconfig, name) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let client = dr_syncer_testlab::client_for(&kubeconfig).await;
                let nodes: Api<Node> = Api::all(client);
                let _ = nodes.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}
