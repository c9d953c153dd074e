//! The short-lived objects of one PVC copy, planned without I/O: the source rsync pod (the volume read-only,
//! `dr-syncer-agent serve` with a host key made for this copy) and the DR copy Job (the real rsync and OpenSSH
//! client, jumping through the source agent, every host key pinned), plus the Secret each one reads.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use dr_syncer_api::agent::{AGENT_BINARY, RSYNC_POD_PORT};
use dr_syncer_api::common::VerificationMode;
use dr_syncer_api::constants::{
    LABEL_DATA_ROLE, LABEL_MANAGED_BY, LABEL_MAPPING, LABEL_MAPPING_NAMESPACE, LABEL_PVC_NAME, LABEL_SYNC_ID,
    MANAGED_BY_VALUE,
};
use dr_syncer_api::namespace_mapping::DataSyncConfig;
use dr_syncer_wire::address::Host;
use dr_syncer_wire::rsync_args::check_client_option;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::json;

use crate::sync::ownership::label_value;

/// `dr-syncer.io/data-role` of source rsync pods.
pub const ROLE_SOURCE: &str = "source-rsync";
/// `dr-syncer.io/data-role` of DR copy Jobs and their pods.
pub const ROLE_COPY: &str = "copy";
/// rsync filter rule leaving out extended attributes of the `security.` namespace.
pub const SECURITY_XATTRS_FILTER: &str = "--filter=-x security.*";
/// Where both pods mount the volume.
pub const VOLUME_PATH: &str = "/data";
/// SSH user name the clients present (the servers ignore it; keys decide).
pub const SSH_USER: &str = "dr-syncer";
/// Host alias of the source agent in the copy pod's known_hosts.
pub const AGENT_ALIAS: &str = "dr-syncer-agent";
/// Host alias of the source rsync pod in the copy pod's known_hosts.
pub const POD_ALIAS: &str = "dr-syncer-rsync-pod";
/// rsync's directory for partly sent files, kept out of the way of `--delete`.
pub const PARTIAL_DIR: &str = ".dr-syncer-partial";
/// Where the copy program writes its final report: the container's termination message, which only the program
/// writes (the log also carries what rsync, ssh and the remote sender print).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Name of the copy Job's container.
pub const COPY_CONTAINER: &str = "copy";
const SERVE_DIR: &str = "/etc/dr-syncer/serve";
const SSH_DIR: &str = "/etc/dr-syncer/ssh";

/// What one copy's objects are made from.
#[derive(Clone, Debug)]
pub struct CopyInput {
    /// Namespace and name of the NamespaceMapping.
    pub mapping: (String, String),
    /// Random id of this copy (label `dr-syncer.io/sync-id`).
    pub sync_id: String,
    /// PVC name, the same in both clusters.
    pub pvc: String,
    /// Source namespace.
    pub source_namespace: String,
    /// DR namespace.
    pub destination_namespace: String,
    /// Node the source PVC is attached to, if any.
    pub node: Option<String>,
    /// The agent image (agent, rsync, OpenSSH client).
    pub image: String,
    /// Time limit of the copy.
    pub timeout: Duration,
    /// rsync options from [`rsync_options`].
    pub options: Vec<String>,
    /// Verification after the copy.
    pub verify: VerificationMode,
    /// Percent of files checked in sample mode.
    pub sample_percent: u8,
    /// Device files, FIFOs and sockets are copied and setgid bits kept (the copy pod gets MKNOD and FSETID).
    pub special_files: bool,
    /// The deletion guard (`--max-delete-percent`), if on.
    pub max_delete_percent: Option<u8>,
}

fn dns_part(text: &str, max: usize) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(max).collect();
    cleaned.trim_matches('-').to_ascii_lowercase()
}

/// Name of an object of `role` for this copy: a DNS label of at most 63 characters.
pub fn object_name(role: &str, input: &CopyInput) -> String {
    let short = if role == ROLE_SOURCE { "src" } else { "copy" };
    format!("dr-syncer-{short}-{}-{}", dns_part(&input.pvc, 30), dns_part(&input.sync_id, 12))
}

/// Labels of every object of this copy, for listing and garbage collection (names too long for a label value are
/// hashed, as for every other dr-syncer label).
pub fn labels(role: &str, input: &CopyInput) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (LABEL_MAPPING.to_string(), label_value(&input.mapping.1)),
        (LABEL_MAPPING_NAMESPACE.to_string(), label_value(&input.mapping.0)),
        (LABEL_PVC_NAME.to_string(), label_value(&input.pvc)),
        (LABEL_SYNC_ID.to_string(), label_value(&input.sync_id)),
        (LABEL_DATA_ROLE.to_string(), role.to_string()),
    ])
}

/// Label selector of the copy objects of mapping `(namespace, name)`: of one PVC, or of all its PVCs.
pub fn selector(mapping: (&str, &str), pvc: Option<&str>) -> String {
    let mut selector = format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_MAPPING}={},{LABEL_MAPPING_NAMESPACE}={},{LABEL_DATA_ROLE}",
        label_value(mapping.1),
        label_value(mapping.0)
    );
    if let Some(pvc) = pvc {
        selector.push_str(&format!(",{LABEL_PVC_NAME}={}", label_value(pvc)));
    }
    selector
}

/// The rsync options of a mapping's copies: archive without device and special files unless `specialFiles` (so
/// `-rlptgo`, plus `-D` when asked), hard links, ACLs, xattrs except the `security.*` namespace (file capabilities,
/// SELinux labels: the DR cluster's own, never the source's), sparse files and numeric owners, deletion of what the
/// source no longer has, resumable partial files, the excludes, the bandwidth limit, `--checksum` for full
/// verification, then the extra options if all are on the allow-list.
pub fn rsync_options(config: &DataSyncConfig, verify: VerificationMode) -> Result<Vec<String>, String> {
    let archive = if config.special_files.unwrap_or(false) { "-rlptgoDHAXS" } else { "-rlptgoHAXS" };
    let mut options = vec![
        archive.to_string(),
        SECURITY_XATTRS_FILTER.to_string(),
        "--numeric-ids".to_string(),
        "--delete".to_string(),
        format!("--partial-dir={PARTIAL_DIR}"),
        "--timeout=300".to_string(),
    ];
    for path in config.exclude_paths.iter().flatten() {
        if path.contains(['\n', '\r']) {
            return Err(format!("excludePaths entry {path:?} contains a line break"));
        }
        options.push(format!("--exclude={path}"));
    }
    if let Some(limit) = config.bandwidth_limit.filter(|l| *l > 0) {
        options.push(format!("--bwlimit={limit}"));
    }
    if verify == VerificationMode::Full {
        options.push("--checksum".to_string());
    }
    for extra in config.rsync_options.iter().flatten() {
        check_client_option(extra).map_err(|refusal| format!("rsyncOptions: {refusal}"))?;
        options.push(extra.clone());
    }
    Ok(options)
}

fn restricted(capabilities: &[&str]) -> serde_json::Value {
    json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "privileged": false,
           "capabilities": {"drop": ["ALL"], "add": capabilities}})
}

/// The source rsync pod: on the PVC's node when it is attached (tolerating that node's taints), the volume
/// read-only, root with only `DAC_READ_SEARCH` (to read every file), no service account token, its host key made
/// in memory at start.
pub fn source_pod(input: &CopyInput, deadline: Duration) -> Pod {
    let name = object_name(ROLE_SOURCE, input);
    let mut spec = json!({
        "restartPolicy": "Never",
        "activeDeadlineSeconds": deadline.as_secs().max(60),
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "serve",
            "image": input.image,
            "imagePullPolicy": "IfNotPresent",
            "command": [AGENT_BINARY, "serve", "--listen", format!("0.0.0.0:{RSYNC_POD_PORT}"),
                        "--generate-host-key",
                        "--authorized-keys", format!("{SERVE_DIR}/authorized_keys"), "--root", VOLUME_PATH],
            "ports": [{"name": "ssh", "containerPort": RSYNC_POD_PORT, "protocol": "TCP"}],
            "readinessProbe": {"tcpSocket": {"port": RSYNC_POD_PORT}, "periodSeconds": 1},
            "securityContext": restricted(&["DAC_READ_SEARCH"]),
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "512Mi"}},
            "volumeMounts": [{"name": "data", "mountPath": VOLUME_PATH, "readOnly": true},
                             {"name": "serve", "mountPath": SERVE_DIR, "readOnly": true}],
        }],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": input.pvc, "readOnly": true}},
                    {"name": "serve", "secret": {"secretName": name, "defaultMode": 0o400}}],
    });
    if let Some(node) = &input.node {
        spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
        spec["tolerations"] = json!([{"operator": "Exists"}]);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": input.source_namespace, "labels": labels(ROLE_SOURCE, input)},
        "spec": spec});
    serde_json::from_value(pod).unwrap_or_default()
}

/// The Secret of the source rsync pod (same name): the mapping's public keys, owned by the pod. The pod's host key is
/// in no Secret: the pod makes it in memory.
pub fn source_secret(input: &CopyInput, pod_uid: &str, authorized_keys: &str) -> Secret {
    let name = object_name(ROLE_SOURCE, input);
    owned_secret(
        &name,
        &input.source_namespace,
        labels(ROLE_SOURCE, input),
        ("v1", "Pod", pod_uid),
        [("authorized_keys", authorized_keys)],
    )
}

fn owned_secret<const N: usize>(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: (&str, &str, &str),
    data: [(&str, &str); N],
) -> Secret {
    let data: BTreeMap<String, ByteString> =
        data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
            "ownerReferences": [{"apiVersion": owner.0, "kind": owner.1, "name": name, "uid": owner.2}]}});
    let mut secret: Secret = serde_json::from_value(secret).unwrap_or_default();
    secret.data = Some(data);
    secret
}

/// The copy pod's OpenSSH configuration: the source pod by address, reached through the agent, both pinned by
/// alias in known_hosts, the mapping key only, no prompts. Only parsed values ([`IpAddr`], [`Host`]) are written,
/// never text read from a cluster, so no value can end a line and start a directive.
pub fn ssh_config(pod_ip: IpAddr, agent: (&Host, u16)) -> String {
    format!(
        "Host source\n  HostName {pod_ip}\n  Port {RSYNC_POD_PORT}\n  HostKeyAlias {POD_ALIAS}\n  ProxyJump agent\n\
         Host agent\n  HostName {}\n  Port {}\n  HostKeyAlias {AGENT_ALIAS}\n\
         Host *\n  User {SSH_USER}\n  IdentityFile {SSH_DIR}/id_ed25519\n  CertificateFile {SSH_DIR}/id_ed25519-cert.pub\n  IdentitiesOnly yes\n  BatchMode yes\n  \
         StrictHostKeyChecking yes\n  UserKnownHostsFile {SSH_DIR}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
         UpdateHostKeys no\n  ConnectTimeout 15\n  ServerAliveInterval 15\n  ServerAliveCountMax 4\n  \
         Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com\n  LogLevel ERROR\n",
        agent.0, agent.1
    )
}

/// known_hosts pinning the agent's host key (each agent that may answer, when a Service picks one) and the source
/// pod's (public `authorized_keys`-style lines). Each key is parsed and written back without its comment, so a
/// malformed line is refused, never pasted.
pub fn known_hosts(agent_host_keys: &[&str], pod_host_key: &str) -> Result<String, dr_syncer_wire::Error> {
    let mut text = String::new();
    for key in agent_host_keys {
        text.push_str(&format!("{AGENT_ALIAS} {}\n", key_only(key, "an agent's host key")?));
    }
    let pod = key_only(pod_host_key, "the rsync pod's host key")?;
    Ok(format!("{text}{POD_ALIAS} {pod}\n"))
}

fn key_only(line: &str, what: &str) -> Result<String, dr_syncer_wire::Error> {
    let mut key = dr_syncer_wire::keys::public_from_openssh(line, what)?;
    key.set_comment("");
    key.to_openssh().map_err(|source| dr_syncer_wire::Error::Key { what: what.to_string(), source })
}

/// The DR copy Job: one pod, no retries of its own (the controller retries), root with the capabilities that
/// restoring owners, modes and times needs, the volume read-write, its time limit the copy timeout.
pub fn copy_job(input: &CopyInput) -> Job {
    let name = object_name(ROLE_COPY, input);
    let verify = match input.verify {
        VerificationMode::None => "none",
        VerificationMode::Sample => "sample",
        VerificationMode::Full => "full",
    };
    let mut args = vec![
        "copy".to_string(),
        "--ssh-config".into(),
        format!("{SSH_DIR}/config"),
        "--destination".into(),
        VOLUME_PATH.into(),
        "--verify".into(),
        verify.into(),
        "--sample-percent".into(),
        input.sample_percent.clamp(1, 100).to_string(),
        "--result-file".into(),
        TERMINATION_LOG.into(),
    ];
    if let Some(percent) = input.max_delete_percent {
        args.extend(["--max-delete-percent".to_string(), percent.to_string()]);
    }
    args.push("--".into());
    args.extend(input.options.iter().cloned());
    let labels = labels(ROLE_COPY, input);
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"name": name, "namespace": input.destination_namespace, "labels": labels},
    "spec": {
        "backoffLimit": 0,
        "activeDeadlineSeconds": input.timeout.as_secs().max(60),
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "terminationGracePeriodSeconds": 5,
                "securityContext": {"runAsUser": 0, "runAsGroup": 0, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": COPY_CONTAINER,
                    "image": input.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [AGENT_BINARY],
                    "args": args,
                    "terminationMessagePath": TERMINATION_LOG,
                    "terminationMessagePolicy": "File",
                    "env": [{"name": "HOME", "value": "/tmp"}],
                    "securityContext": restricted(copy_capabilities(input.special_files)),
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": VOLUME_PATH},
                                     {"name": "ssh", "mountPath": SSH_DIR, "readOnly": true},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": input.pvc}},
                    {"name": "ssh", "secret": {"secretName": name, "defaultMode": 0o400}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                ],
            },
        },
    }});
    serde_json::from_value(job).unwrap_or_default()
}

/// Capabilities of the copy pod: owners, modes and times of any file (CHOWN, DAC_OVERRIDE, FOWNER); with
/// `specialFiles` also device files (MKNOD) and setgid bits of any group (FSETID).
pub fn copy_capabilities(special_files: bool) -> &'static [&'static str] {
    if special_files {
        &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"]
    } else {
        &["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    }
}

/// The copy Job's Secret (same name), owned by the Job: ssh configuration, known_hosts, and the credential of this
/// copy only — a key made for it and its certificate (`credential`: private key, certificate), which the agents
/// accept for this copy's rsync pod alone and only until the copy's time limit; the Job's deletion takes it.
pub fn copy_secret(
    input: &CopyInput,
    job_uid: &str,
    config: &str,
    known_hosts: &str,
    credential: (&str, &str),
) -> Secret {
    let name = object_name(ROLE_COPY, input);
    owned_secret(
        &name,
        &input.destination_namespace,
        labels(ROLE_COPY, input),
        ("batch/v1", "Job", job_uid),
        [
            ("config", config),
            ("known_hosts", known_hosts),
            ("id_ed25519", credential.0),
            ("id_ed25519-cert.pub", credential.1),
        ],
    )
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
