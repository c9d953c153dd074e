use super::*;
use serde_json::json;

fn ds(desired: i32, ready: i32, updated: i32, observed: i64) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": AGENT_NAME, "generation": 2},
        "status": {"desiredNumberScheduled": desired, "numberReady": ready, "updatedNumberScheduled": updated,
                   "observedGeneration": observed, "currentNumberScheduled": desired, "numberMisscheduled": 0}
    }))
    .unwrap()
}

fn pod(node: &str, ready: bool, waiting: Option<&str>) -> Pod {
    let state = match waiting {
        Some(reason) => json!({"waiting": {"reason": reason, "message": "details"}}),
        None => json!({"running": {}}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": format!("agent-{node}")},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Running", "containerStatuses": [{"name": "agent", "ready": ready, "restartCount": 1,
                   "image": "i", "imageID": "", "state": state}]}
    }))
    .unwrap()
}

#[test]
fn observe_reports_each_phase_from_daemonset_and_pods() {
    let cases = [
        (None, vec![], phase::DEPLOYING),
        (Some(ds(2, 2, 2, 2)), vec![pod("a", true, None), pod("b", true, None)], phase::READY),
        (Some(ds(2, 2, 1, 2)), vec![pod("a", true, None), pod("b", true, None)], phase::DEPLOYING),
        (Some(ds(2, 1, 2, 2)), vec![pod("a", true, None), pod("b", false, None)], phase::PARTIALLY_READY),
        (Some(ds(1, 0, 1, 2)), vec![pod("a", false, Some("ContainerCreating"))], phase::DEPLOYING),
        (Some(ds(1, 0, 1, 2)), vec![pod("a", false, Some("ImagePullBackOff"))], phase::DEGRADED),
        (Some(ds(1, 0, 0, 1)), vec![pod("a", false, Some("CrashLoopBackOff"))], phase::DEGRADED),
        (Some(ds(0, 0, 0, 2)), vec![], phase::DEGRADED),
    ];
    for (i, (d, pods, want)) in cases.into_iter().enumerate() {
        let seen = observe(d.as_ref(), &pods);
        assert_eq!(seen.phase, want, "case {i}: {seen:?}");
    }
}

#[test]
fn observe_lists_every_node_with_its_pod_state() {
    let seen = observe(Some(&ds(2, 1, 2, 2)), &[pod("a", true, None), pod("b", false, Some("CrashLoopBackOff"))]);
    assert_eq!((seen.agents.ready_nodes, seen.agents.total_nodes), (1, 2));
    let b = &seen.agents.node_statuses["b"];
    assert!(!b.ready);
    assert_eq!(b.message.as_deref(), Some("CrashLoopBackOff: details"));
    assert_eq!(b.pod_status.as_ref().unwrap().restart_count, Some(1));
    assert_eq!(seen.message, "1 of 2 agents ready");
}

#[test]
fn check_owner_refuses_other_owners_and_unmarked_agents() {
    assert!(check_owner(Some("ops/prod"), "ops/prod").is_ok());
    let other = check_owner(Some("ops/other"), "ops/prod").unwrap_err();
    assert!(other.to_string().contains("RemoteCluster ops/other"), "{other}");
    let unmarked = check_owner(None, "ops/prod").unwrap_err();
    assert_eq!(unmarked.reason(), "AgentOwnedByAnother");
    assert!(unmarked.to_string().contains("delete it"), "{unmarked}");
}
