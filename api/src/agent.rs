//! The contract between the controller and the agent it installs in a source cluster: object names, Secret keys,
//! ports and the policy document format. Both sides use these items, so a rename cannot split them.

/// Namespace of the agent in each source cluster (the Go operator's name).
pub const AGENT_NAMESPACE: &str = "dr-syncer";
/// Name of the agent's DaemonSet, ServiceAccount, Role and RoleBinding (the Go operator's name).
pub const AGENT_NAME: &str = "dr-syncer-agent";
/// Secret in [`AGENT_NAMESPACE`] where earlier versions kept the host key all agents shared; removed on upgrade
/// (each agent now makes its own).
pub const AGENT_HOST_KEY_SECRET: &str = "dr-syncer-agent-host-key";
/// Secret in [`AGENT_NAMESPACE`] the bastion watches: who may connect ([`POLICY_AUTHORIZED_KEY`]) and where to
/// ([`policy_targets_key`]).
pub const AGENT_POLICY_SECRET: &str = "dr-syncer-agent-policy";
/// Key of the JSON authorized set in [`AGENT_POLICY_SECRET`].
pub const POLICY_AUTHORIZED_KEY: &str = "authorized.json";
/// Label of agent pods (value [`AGENT_NAME`]); the DaemonSet selects on it.
pub const LABEL_APP: &str = "app";
/// Port the bastion listens on inside its pod.
pub const BASTION_CONTAINER_PORT: u16 = 2222;
/// Port an rsync pod's SSH server listens on.
pub const RSYNC_POD_PORT: u16 = 2022;
/// Port of the agent's `/metrics` and `/healthz`.
pub const AGENT_METRICS_PORT: u16 = 9090;
/// Path where the agent image keeps its binary.
pub const AGENT_BINARY: &str = "/usr/local/bin/dr-syncer-agent";
/// Environment variable naming the node an agent pod runs on (from the downward API).
pub const ENV_NODE_NAME: &str = "NODE_NAME";
/// User the agent's bastion runs as (non-root).
pub const AGENT_USER_ID: i64 = 65532;

const TARGETS_PREFIX: &str = "targets.";
const TARGETS_SUFFIX: &str = ".json";

/// Key of a node's JSON target set in [`AGENT_POLICY_SECRET`]: the rsync pods on `node` each mapping may reach.
pub fn policy_targets_key(node: &str) -> String {
    format!("{TARGETS_PREFIX}{node}{TARGETS_SUFFIX}")
}

/// The node whose target set `key` of [`AGENT_POLICY_SECRET`] is, if it is one.
pub fn policy_targets_node(key: &str) -> Option<&str> {
    key.strip_prefix(TARGETS_PREFIX)?.strip_suffix(TARGETS_SUFFIX).filter(|node| !node.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_key_is_a_valid_secret_key_when_node_is_a_dns_name() {
        let valid = regex::Regex::new(r"^[-._a-zA-Z0-9]+$").unwrap();
        for node in ["source-node", "ip-10-0-0-1.eu-west-1.compute.internal", "n"] {
            assert!(valid.is_match(&policy_targets_key(node)), "{node}");
            assert_eq!(policy_targets_node(&policy_targets_key(node)), Some(node));
        }
        for other in ["authorized.json", "targets..json", "targets.n.yaml"] {
            assert_eq!(policy_targets_node(other), None, "{other}");
        }
    }
}
