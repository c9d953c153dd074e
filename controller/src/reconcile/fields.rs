//! Fields accepted from manifests written for earlier versions (and the Go operator) that dr-syncer no longer uses,
//! because something else does their job now. Setting one is not an error, but the object says so: condition
//! [`FIELDS_SUPPORTED`] False with reason [`UNSUPPORTED_FIELD`], naming each field and what replaces it, and a
//! Warning event when it turns False. Pure.

use dr_syncer_api::cluster_mapping::ClusterMappingSpec;
use dr_syncer_api::common::{Condition, Time};
use dr_syncer_api::remote_cluster::RemoteClusterSpec;

use super::conditions::{self, Desired, FALSE, TRUE};

/// Condition: every field set on the object is one dr-syncer uses.
pub const FIELDS_SUPPORTED: &str = "FieldsSupported";
/// Reason of [`FIELDS_SUPPORTED`] False (and of its event).
pub const UNSUPPORTED_FIELD: &str = "UnsupportedField";

/// A field that is set but not used, and what does its job instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The field's path in the object.
    pub field: &'static str,
    /// What replaces it.
    pub instead: &'static str,
}

/// The unused fields a RemoteCluster sets.
pub fn of_remote_cluster(spec: &RemoteClusterSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    let Some(pvc) = spec.pvc_sync.as_ref() else { return out };
    if pvc.ssh.as_ref().is_some_and(|s| s.key_secret_ref.is_some()) {
        out.push(Unsupported {
            field: "spec.pvcSync.ssh.keySecretRef",
            instead: "each agent makes its own host key, which clients pin per node (docs/agent.md, Host keys)",
        });
    }
    if pvc.health_check.is_some() {
        out.push(Unsupported {
            field: "spec.pvcSync.healthCheck",
            instead: "the agents' readiness probes (status.pvcSync) and a ClusterMapping's agent check \
                      (verifyConnectivity, connectivityTimeoutSeconds)",
        });
    }
    if pvc.rsync_daemon_set.is_some() {
        out.push(Unsupported {
            field: "spec.pvcSync.rsyncDaemonSet",
            instead: "a short-lived rsync pod per copy (docs/data-sync.md)",
        });
    }
    out
}

/// The unused fields a ClusterMapping sets.
pub fn of_cluster_mapping(spec: &ClusterMappingSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    if spec.ssh_key_secret_ref.is_some() {
        out.push(Unsupported {
            field: "spec.sshKeySecretRef",
            instead: "each NamespaceMapping's SSH certificate authority, held in the controller's memory, and a key \
                      per copy (docs/security.md)",
        });
    }
    out
}

/// Sets [`FIELDS_SUPPORTED`] from `unsupported`.
pub fn set_condition(conds: &mut Vec<Condition>, unsupported: &[Unsupported], generation: Option<i64>, now: &Time) {
    let desired = if unsupported.is_empty() {
        Desired {
            type_: FIELDS_SUPPORTED,
            status: TRUE,
            reason: "AllSupported",
            message: "every field set is in use".into(),
        }
    } else {
        let list: Vec<String> = unsupported.iter().map(|u| format!("{} is ignored: {}", u.field, u.instead)).collect();
        Desired { type_: FIELDS_SUPPORTED, status: FALSE, reason: UNSUPPORTED_FIELD, message: list.join("; ") }
    };
    conditions::set(conds, desired, generation, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_syncer_api::cluster_mapping::SshKeySecretRef;
    use dr_syncer_api::remote_cluster::{AgentHealthCheck, AgentSshSpec, NamespacedSecretRef, PvcSyncSpec};

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_000).unwrap())
    }

    #[test]
    fn set_condition_names_each_unused_field_and_what_replaces_it() {
        let mut spec: RemoteClusterSpec = serde_json::from_value(serde_json::json!({
            "kubeconfigSecretRef": {"name": "k", "namespace": "n"}}))
        .unwrap();
        assert!(of_remote_cluster(&spec).is_empty());
        spec.pvc_sync = Some(PvcSyncSpec {
            ssh: Some(AgentSshSpec {
                key_secret_ref: Some(NamespacedSecretRef { name: "s".into(), namespace: "n".into() }),
                ..Default::default()
            }),
            health_check: Some(AgentHealthCheck::default()),
            ..Default::default()
        });
        let found = of_remote_cluster(&spec);
        let fields: Vec<_> = found.iter().map(|u| u.field).collect();
        assert_eq!(fields, ["spec.pvcSync.ssh.keySecretRef", "spec.pvcSync.healthCheck"]);
        let mut conds = Vec::new();
        set_condition(&mut conds, &found, Some(2), &now());
        let c = &conds[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (FIELDS_SUPPORTED, FALSE, UNSUPPORTED_FIELD)
        );
        assert!(c.message.contains("keySecretRef is ignored: each agent makes its own host key"), "{}", c.message);
        set_condition(&mut conds, &[], Some(3), &now());
        assert_eq!(conds[0].status, TRUE);

        let mut cm: ClusterMappingSpec = serde_json::from_value(serde_json::json!({
            "sourceCluster": "a", "targetCluster": "b"}))
        .unwrap();
        assert!(of_cluster_mapping(&cm).is_empty());
        cm.ssh_key_secret_ref = Some(SshKeySecretRef { name: "k".into(), ..Default::default() });
        assert_eq!(of_cluster_mapping(&cm)[0].field, "spec.sshKeySecretRef");
    }
}
