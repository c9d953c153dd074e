//! The controller's writes to a source cluster's agent policy Secret: each mapping's authorized keys
//! (`authorized.json`) and the rsync pods each mapping may reach on each node (`targets.<node>.json`). Every change
//! is a read-modify-write with the Secret's resourceVersion, retried on conflict, so concurrent copies of several
//! mappings never lose each other's entries. The edits themselves are pure functions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use dr_syncer_agent::policy::{AuthorizedKey, AuthorizedSet, MappingKeys, TargetSet};
use dr_syncer_api::agent::{AGENT_NAMESPACE, AGENT_POLICY_SECRET, POLICY_AUTHORIZED_KEY, policy_targets_key};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::failure::Failure;
use crate::error::with_timeout;

/// Attempts of one edit before giving up on conflicts.
const ATTEMPTS: usize = 8;

/// One change to the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Replace `mapping`'s keys (empty: remove the mapping).
    Keys {
        /// Mapping identity.
        mapping: String,
        /// Its keys, current first.
        keys: Vec<AuthorizedKey>,
    },
    /// Let `mapping` reach `address` via the agent of `node`.
    AddTarget {
        /// Node whose agent relays.
        node: String,
        /// Mapping identity.
        mapping: String,
        /// The rsync pod's address.
        address: SocketAddr,
    },
    /// Take that back.
    RemoveTarget {
        /// Node whose agent relays.
        node: String,
        /// Mapping identity.
        mapping: String,
        /// The rsync pod's address.
        address: SocketAddr,
    },
}

/// Applies `edit` to a policy Secret's data. Returns whether anything changed; an unparsable document is an error
/// (it is never overwritten blindly).
pub fn apply_edit(data: &mut BTreeMap<String, ByteString>, edit: &Edit) -> Result<bool, String> {
    match edit {
        Edit::Keys { mapping, keys } => {
            let mut set: AuthorizedSet = parse(data, POLICY_AUTHORIZED_KEY)?;
            let before = set.clone();
            if keys.is_empty() {
                set.mappings.remove(mapping);
            } else {
                set.mappings.insert(mapping.clone(), MappingKeys { keys: keys.clone() });
            }
            store(data, POLICY_AUTHORIZED_KEY, &set, set != before)
        }
        Edit::AddTarget { node, mapping, address } | Edit::RemoveTarget { node, mapping, address } => {
            let key = policy_targets_key(node);
            let mut set: TargetSet = parse(data, &key)?;
            let before = set.clone();
            let list = set.targets.entry(mapping.clone()).or_default();
            list.retain(|a| a != address);
            if matches!(edit, Edit::AddTarget { .. }) {
                list.push(*address);
            }
            if list.is_empty() {
                set.targets.remove(mapping);
            }
            store(data, &key, &set, set != before)
        }
    }
}

fn parse<T: serde::de::DeserializeOwned + Default>(
    data: &BTreeMap<String, ByteString>,
    key: &str,
) -> Result<T, String> {
    match data.get(key) {
        Some(bytes) if !bytes.0.is_empty() => {
            serde_json::from_slice(&bytes.0).map_err(|e| format!("{key} of the agent policy is not valid: {e}"))
        }
        _ => Ok(T::default()),
    }
}

fn store<T: serde::Serialize>(
    data: &mut BTreeMap<String, ByteString>,
    key: &str,
    value: &T,
    changed: bool,
) -> Result<bool, String> {
    if changed {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
        data.insert(key.to_string(), ByteString(bytes));
    }
    Ok(changed)
}

/// Applies `edit` to the agent policy Secret of the source cluster behind `client`.
pub async fn edit(client: &kube::Client, edit: &Edit, timeout: Duration) -> Result<(), Failure> {
    let api: Api<Secret> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let what = format!("Secret {AGENT_NAMESPACE}/{AGENT_POLICY_SECRET}");
    for _ in 0..ATTEMPTS {
        let Some(mut secret) = with_timeout(format!("get {what}"), timeout, api.get_opt(AGENT_POLICY_SECRET)).await?
        else {
            return Err(Failure::transient(
                "AgentsNotInstalled",
                format!("{what} does not exist in the source cluster: are the agents installed (pvcSync.enabled)?"),
            ));
        };
        let mut data = secret.data.take().unwrap_or_default();
        let changed = apply_edit(&mut data, edit).map_err(|m| Failure::permanent("InvalidAgentPolicy", m))?;
        if !changed {
            return Ok(());
        }
        secret.data = Some(data);
        let post = PostParams::default();
        let replaced = api.replace(AGENT_POLICY_SECRET, &post, &secret);
        match tokio::time::timeout(timeout, replaced).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => continue,
            Ok(Err(source)) => return Err(crate::error::Error::Api { what: format!("replace {what}"), source }.into()),
            Err(_) => return Err(Failure::transient("Timeout", format!("replace {what} took over {timeout:?}"))),
        }
    }
    Err(Failure::transient("Conflict", format!("{what} kept changing under {ATTEMPTS} attempts")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(text: &str) -> AuthorizedKey {
        AuthorizedKey { public_key: text.into(), not_after: None }
    }

    #[test]
    fn edits_touch_only_their_mapping_when_several_share_the_secret() {
        let mut data = BTreeMap::new();
        let a = Edit::Keys { mapping: "ops/a".into(), keys: vec![key("ssh-ed25519 AAAA a")] };
        let b = Edit::Keys { mapping: "ops/b".into(), keys: vec![key("ssh-ed25519 AAAA b")] };
        assert!(apply_edit(&mut data, &a).unwrap());
        assert!(apply_edit(&mut data, &b).unwrap());
        assert!(!apply_edit(&mut data, &b).unwrap(), "same content is no change");
        let address: SocketAddr = "10.97.0.5:2022".parse().unwrap();
        let add = Edit::AddTarget { node: "n1".into(), mapping: "ops/a".into(), address };
        assert!(apply_edit(&mut data, &add).unwrap());
        assert!(!apply_edit(&mut data, &add).unwrap(), "added once");
        let set: AuthorizedSet = serde_json::from_slice(&data[POLICY_AUTHORIZED_KEY].0).unwrap();
        assert_eq!(set.mappings.len(), 2);
        let remove = Edit::RemoveTarget { node: "n1".into(), mapping: "ops/a".into(), address };
        assert!(apply_edit(&mut data, &remove).unwrap());
        let targets: TargetSet = serde_json::from_slice(&data["targets.n1.json"].0).unwrap();
        assert!(targets.targets.is_empty());
        let drop_a = Edit::Keys { mapping: "ops/a".into(), keys: vec![] };
        assert!(apply_edit(&mut data, &drop_a).unwrap());
        let set: AuthorizedSet = serde_json::from_slice(&data[POLICY_AUTHORIZED_KEY].0).unwrap();
        assert_eq!(set.mappings.keys().collect::<Vec<_>>(), ["ops/b"]);
    }

    #[test]
    fn apply_edit_refuses_when_the_document_is_corrupt() {
        let mut data = BTreeMap::from([(POLICY_AUTHORIZED_KEY.to_string(), ByteString(b"{not json".to_vec()))]);
        let edit = Edit::Keys { mapping: "m".into(), keys: vec![key("k")] };
        assert!(apply_edit(&mut data, &edit).is_err());
    }
}
