use super::*;
use dr_syncer_api::remote_cluster::{AgentDeployment, AgentServiceSpec, AgentSshSpec, ImageSpec};

fn input(spec: &PvcSyncSpec) -> AgentInput<'_> {
    AgentInput {
        owner: "dr-syncer/prod".into(),
        remote_cluster: "prod",
        spec,
        default_image: "localhost:5000/dr-syncer/agent:0.1.0-abc",
    }
}

fn pod(plan: &AgentPlan) -> Value {
    serde_json::to_value(&plan.daemon_set).unwrap()["spec"]["template"]["spec"].clone()
}

#[test]
fn plan_runs_unprivileged_non_root_read_only_without_host_access_by_default() {
    let spec = PvcSyncSpec { enabled: Some(true), ..Default::default() };
    let plan = plan(&input(&spec)).unwrap();
    let pod = pod(&plan);
    assert_eq!(pod["hostNetwork"], json!(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(pod["securityContext"]["runAsUser"], json!(AGENT_USER_ID));
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], json!(true));
    assert_eq!(c["securityContext"]["privileged"], json!(false));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], json!(false));
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    for v in pod["volumes"].as_array().into_iter().flatten() {
        assert!(v.get("hostPath").is_none(), "no hostPath: {v}");
    }
    assert_eq!(c["ports"][0]["hostPort"], json!(DEFAULT_AGENT_SSH_PORT));
    assert_eq!(c["image"], json!("localhost:5000/dr-syncer/agent:0.1.0-abc"));
    assert!(c["args"].as_array().unwrap().contains(&json!("--policy-secret=dr-syncer/dr-syncer-agent-policy")));
    assert!(plan.service.is_none());
    let rules = serde_json::to_value(&plan.role).unwrap()["rules"].clone();
    assert_eq!(
        rules,
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [AGENT_POLICY_SECRET],
                              "verbs": ["get", "list", "watch"]}])
    );
}

#[test]
fn plan_uses_a_service_and_reaches_every_node_when_a_service_is_asked_for() {
    let spec = PvcSyncSpec {
        ssh: Some(AgentSshSpec {
            port: Some(2022),
            service: Some(AgentServiceSpec {
                type_: AgentServiceType::NodePort,
                node_port: Some(30222),
                annotations: Some(BTreeMap::from([("lb".into(), "internal".into())])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let plan = plan(&input(&spec)).unwrap();
    let c = &pod(&plan)["containers"][0];
    assert!(c["ports"][0].get("hostPort").is_none());
    assert!(c["args"].as_array().unwrap().contains(&json!("--all-nodes")));
    let svc = serde_json::to_value(plan.service.unwrap()).unwrap();
    assert_eq!(svc["spec"]["type"], json!("NodePort"));
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"name": "ssh", "port": 2022, "targetPort": "ssh", "protocol": "TCP", "nodePort": 30222})
    );
    assert_eq!(svc["metadata"]["annotations"]["lb"], json!("internal"));
}

#[test]
fn plan_applies_deployment_settings_and_image_override_when_given() {
    let spec = PvcSyncSpec {
        image: Some(ImageSpec { repository: Some("registry/agent".into()), tag: None, pull_policy: None }),
        deployment: Some(AgentDeployment {
            node_selector: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
            labels: Some(BTreeMap::from([("team".into(), "sre".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let plan = plan(&input(&spec)).unwrap();
    let ds = serde_json::to_value(&plan.daemon_set).unwrap();
    assert_eq!(plan.image, "registry/agent:0.1.0-abc");
    assert_eq!(ds["spec"]["template"]["spec"]["nodeSelector"], json!({"disk": "ssd"}));
    assert_eq!(ds["spec"]["template"]["metadata"]["labels"]["team"], json!("sre"));
    assert_eq!(ds["metadata"]["annotations"][ANNOTATION_AGENT_OWNER], json!("dr-syncer/prod"));
}

#[test]
fn image_splits_tag_from_registry_port_when_reference_has_both() {
    let cases = [
        ("localhost:5000/agent:1.2", None, None, "localhost:5000/agent:1.2"),
        ("localhost:5000/agent", None, Some("9"), "localhost:5000/agent:9"),
        ("agent:1", Some("other/agent"), None, "other/agent:1"),
    ];
    for (default, repo, tag, want) in cases {
        let spec = PvcSyncSpec {
            image: Some(ImageSpec { repository: repo.map(Into::into), tag: tag.map(Into::into), pull_policy: None }),
            ..Default::default()
        };
        assert_eq!(image(&spec, default), want, "{default}");
    }
}

#[test]
fn plan_has_each_agent_make_its_own_host_key_when_planned() {
    let spec = PvcSyncSpec { enabled: Some(true), ..Default::default() };
    let plan = plan(&input(&spec)).unwrap();
    let pod = pod(&plan);
    let args = pod["containers"][0]["args"].as_array().unwrap();
    assert!(args.contains(&json!("--generate-host-key")), "{args:?}");
    assert!(!args.iter().any(|a| a.as_str().unwrap().starts_with("--host-key")), "{args:?}");
    assert!(pod["volumes"].as_array().is_none_or(|v| v.is_empty()), "no key volume: {}", pod["volumes"]);
    let role = serde_json::to_string(&plan.role).unwrap();
    assert!(!role.contains("host-key"), "{role}");
}
