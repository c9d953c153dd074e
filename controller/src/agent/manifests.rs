//! The objects of a source cluster's agent, planned from its RemoteCluster (pure; unit- and snapshot-tested): the
//! namespace, a service account that may read only the policy Secret, the DaemonSet running `dr-syncer-agent
//! bastion` (non-root, read-only root filesystem, no privileges, no hostPath, no hostNetwork unless asked; each
//! agent makes its own host key in memory) on a hostPort, and — when asked — a NodePort or LoadBalancer Service
//! instead of the hostPort.

use std::collections::BTreeMap;

use dr_syncer_api::agent::{
    AGENT_BINARY, AGENT_METRICS_PORT, AGENT_NAME, AGENT_NAMESPACE, AGENT_POLICY_SECRET, AGENT_USER_ID,
    BASTION_CONTAINER_PORT, ENV_NODE_NAME, LABEL_APP,
};
use dr_syncer_api::constants::LABEL_REMOTE_CLUSTER;
use dr_syncer_api::remote_cluster::{AgentServiceType, DEFAULT_AGENT_SSH_PORT, PvcSyncSpec};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{Value, json};

use crate::error::Error;

/// Annotation on every agent object: the RemoteCluster (`namespace/name` in the controller's cluster) that owns
/// it. Another RemoteCluster pointing at the same cluster is refused instead of taking the agents over.
pub const ANNOTATION_AGENT_OWNER: &str = "dr-syncer.io/agent-owner";

/// What the agent objects are planned from.
#[derive(Clone, Debug)]
pub struct AgentInput<'a> {
    /// `namespace/name` of the RemoteCluster.
    pub owner: String,
    /// Name of the RemoteCluster (label value).
    pub remote_cluster: &'a str,
    /// Its `spec.pvcSync`.
    pub spec: &'a PvcSyncSpec,
    /// Image to run when the spec names none.
    pub default_image: &'a str,
}

/// The planned objects, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentPlan {
    /// The agent namespace.
    pub namespace: Namespace,
    /// The agent's service account.
    pub service_account: ServiceAccount,
    /// Read access to the policy Secret only.
    pub role: Role,
    /// Binds [`AgentPlan::role`] to the service account.
    pub role_binding: RoleBinding,
    /// The bastions.
    pub daemon_set: DaemonSet,
    /// The Service, when `ssh.service` is set.
    pub service: Option<Service>,
    /// The image the DaemonSet runs.
    pub image: String,
}

/// Labels on every agent object.
pub fn labels(remote_cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_APP.to_string(), AGENT_NAME.to_string()),
        ("app.kubernetes.io/name".to_string(), AGENT_NAME.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "dr-syncer".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "dr-syncer".to_string()),
        (LABEL_REMOTE_CLUSTER.to_string(), remote_cluster.to_string()),
    ])
}

/// The image the agents run: `spec.image` parts over the default reference.
pub fn image(spec: &PvcSyncSpec, default_image: &str) -> String {
    let (default_repo, default_tag) = split_image(default_image);
    let custom = spec.image.as_ref();
    let repo = custom.and_then(|i| i.repository.clone()).unwrap_or(default_repo.to_string());
    let tag = custom.and_then(|i| i.tag.clone()).unwrap_or(default_tag.to_string());
    if tag.is_empty() { repo } else { format!("{repo}:{tag}") }
}

fn split_image(reference: &str) -> (&str, &str) {
    // A colon after the last slash separates the tag (a colon before it belongs to a registry port).
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, ""),
    }
}

/// Plans the agent objects of one RemoteCluster.
pub fn plan(input: &AgentInput<'_>) -> Result<AgentPlan, Error> {
    let labels = labels(input.remote_cluster);
    let meta = |name: &str| {
        json!({"name": name, "namespace": AGENT_NAMESPACE, "labels": labels,
               "annotations": {ANNOTATION_AGENT_OWNER: input.owner}})
    };
    let spec = input.spec;
    let deployment = spec.deployment.clone().unwrap_or_default();
    let service = spec.ssh.as_ref().and_then(|s| s.service.clone());
    let port = spec.ssh.as_ref().and_then(|s| s.port).unwrap_or(DEFAULT_AGENT_SSH_PORT);
    let image = image(spec, input.default_image);
    let pull_policy = spec
        .image
        .as_ref()
        .and_then(|i| i.pull_policy)
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .unwrap_or(json!("IfNotPresent"));

    let mut args = vec![
        "bastion".to_string(),
        format!("--listen=0.0.0.0:{BASTION_CONTAINER_PORT}"),
        "--generate-host-key".to_string(),
        format!("--policy-secret={AGENT_NAMESPACE}/{AGENT_POLICY_SECRET}"),
        format!("--metrics-bind-address=0.0.0.0:{AGENT_METRICS_PORT}"),
    ];
    if service.is_some() {
        args.push("--all-nodes".into());
    }
    let mut ssh_port = json!({"name": "ssh", "containerPort": BASTION_CONTAINER_PORT, "protocol": "TCP"});
    if service.is_none() {
        ssh_port["hostPort"] = json!(port);
    }
    let mut env = vec![json!({"name": ENV_NODE_NAME, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})];
    for e in deployment.extra_env.clone().unwrap_or_default() {
        env.push(to_value(&e)?);
    }
    let resources = match &deployment.resources {
        Some(r) => to_value(r)?,
        None => json!({"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}),
    };
    let mut pod_labels = deployment.labels.clone().unwrap_or_default();
    pod_labels.extend(labels.clone());
    let pod_annotations = deployment.annotations.clone().unwrap_or_default();
    let tolerations = deployment.tolerations.clone().map(|t| to_value(&t)).transpose()?;
    let probe = json!({"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 3});

    let daemon_set = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(AGENT_NAME),
        "spec": {
            "selector": {"matchLabels": {LABEL_APP: AGENT_NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": {
                    "serviceAccountName": AGENT_NAME,
                    "hostNetwork": deployment.host_network.unwrap_or(false),
                    "nodeSelector": deployment.node_selector.clone().unwrap_or_default(),
                    "tolerations": tolerations.unwrap_or(json!([])),
                    "priorityClassName": deployment.priority_class_name.clone(),
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": AGENT_USER_ID, "runAsGroup": AGENT_USER_ID,
                        "fsGroup": AGENT_USER_ID, "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": super::host_keys::AGENT_CONTAINER,
                        "image": image,
                        "imagePullPolicy": pull_policy,
                        "command": [AGENT_BINARY],
                        "args": args,
                        "env": env,
                        "ports": [ssh_port,
                                  {"name": "metrics", "containerPort": AGENT_METRICS_PORT, "protocol": "TCP"}],
                        "readinessProbe": probe,
                        "livenessProbe": probe,
                        "resources": resources,
                        "securityContext": {
                            "privileged": deployment.privileged.unwrap_or(false),
                            "allowPrivilegeEscalation": deployment.privileged.unwrap_or(false),
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    });
    let service = service.map(|s| {
        let mut port_spec = json!({"name": "ssh", "port": port, "targetPort": "ssh", "protocol": "TCP"});
        if let (AgentServiceType::NodePort, Some(node_port)) = (s.type_, s.node_port) {
            port_spec["nodePort"] = json!(node_port);
        }
        let mut metadata = meta(AGENT_NAME);
        if let Some(a) = metadata["annotations"].as_object_mut() {
            for (k, v) in s.annotations.clone().unwrap_or_default() {
                a.insert(k, json!(v));
            }
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata,
               "spec": {"type": s.type_, "selector": {LABEL_APP: AGENT_NAME}, "ports": [port_spec]}})
    });
    Ok(AgentPlan {
        namespace: typed(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": AGENT_NAMESPACE, "labels": labels}}))?,
        service_account: stamped(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(AGENT_NAME)}))?,
        role: stamped(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(AGENT_NAME),
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [AGENT_POLICY_SECRET],
                       "verbs": ["get", "list", "watch"]}]}),
        )?,
        role_binding: stamped(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(AGENT_NAME),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AGENT_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT_NAME, "namespace": AGENT_NAMESPACE}]}))?,
        daemon_set: stamped(daemon_set)?,
        service: service.map(stamped).transpose()?,
        image,
    })
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Config { message: format!("agent settings: {e}") })
}

/// The typed object, its plan hash stamped on it (see [`super::covers`]).
fn stamped<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Error> {
    typed(super::covers::stamp(value))
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::Config { message: format!("agent manifest: {e}") })
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;
