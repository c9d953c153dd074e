//! The controller's writes to a source cluster's agent policy Secret: each mapping's authorized keys
//! (`authorized.json`) and the rsync pods each mapping may reach on each node (`targets.<node>.json`). Every change
//! is a read-modify-write with the Secret's resourceVersion, retried on conflict, so concurrent copies of several
//! mappings never lose each other's entries. The edits themselves are pure functions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use dr_syncer_api::NamespaceMapping;
use dr_syncer_api::agent::{
    AGENT_NAMESPACE, AGENT_POLICY_SECRET, POLICY_AUTHORIZED_KEY, policy_targets_key, policy_targets_node,
};
use dr_syncer_wire::policy::{AuthorizedKey, AuthorizedSet, MappingKeys, TargetSet};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};

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
    /// Keep, on every node, only those of `mapping`'s targets that are in `keep` (empty: remove them all) — for
    /// entries a crashed controller left behind.
    RetainTargets {
        /// Mapping identity.
        mapping: String,
        /// Addresses of the mapping's rsync pods that still run.
        keep: Vec<SocketAddr>,
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
        Edit::RetainTargets { mapping, keep } => {
            let keys: Vec<String> = data.keys().filter(|k| policy_targets_node(k).is_some()).cloned().collect();
            let mut changed = false;
            for key in keys {
                let mut set: TargetSet = parse(data, &key)?;
                let before = set.clone();
                if let Some(list) = set.targets.get_mut(mapping) {
                    list.retain(|a| keep.contains(a));
                    if list.is_empty() {
                        set.targets.remove(mapping);
                    }
                }
                changed |= store(data, &key, &set, set != before)?;
            }
            Ok(changed)
        }
    }
}

/// Mappings named in the policy (keys or targets) that may no longer copy: not in `live` and, when the controller
/// sees only one namespace (`scope`), in that namespace — entries of mappings it cannot see are not its to judge.
pub fn stale_mappings(
    data: &BTreeMap<String, ByteString>,
    live: &BTreeSet<String>,
    scope: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut named: BTreeSet<String> =
        parse::<AuthorizedSet>(data, POLICY_AUTHORIZED_KEY)?.mappings.into_keys().collect();
    for key in data.keys().filter(|k| policy_targets_node(k).is_some()) {
        named.extend(parse::<TargetSet>(data, key)?.targets.into_keys());
    }
    let visible = |id: &str| scope.is_none_or(|ns| id.split_once('/').is_some_and(|(n, _)| n == ns));
    Ok(named.into_iter().filter(|id| !live.contains(id) && visible(id)).collect())
}

/// Revokes, in the policy of the source cluster behind `remote`, the keys and targets of mappings that no longer
/// exist or no longer copy data (see [`stale_mappings`]); `local` is the controller's cluster. Returns them.
pub async fn revoke_stale(
    local: &kube::Client,
    remote: &kube::Client,
    scope: Option<&str>,
    timeout: Duration,
) -> Result<Vec<String>, Failure> {
    let mappings: Api<NamespaceMapping> = match scope {
        Some(ns) => Api::namespaced(local.clone(), ns),
        None => Api::all(local.clone()),
    };
    let list = with_timeout("list NamespaceMappings", timeout, mappings.list(&ListParams::default())).await?;
    let live: BTreeSet<String> = list
        .items
        .iter()
        .filter(|m| m.spec.pvc_config.as_ref().and_then(|p| p.sync_data).unwrap_or(false))
        .map(|m| format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any()))
        .collect();
    let api: Api<Secret> = Api::namespaced(remote.clone(), AGENT_NAMESPACE);
    let Some(secret) = with_timeout("get the agent policy", timeout, api.get_opt(AGENT_POLICY_SECRET)).await? else {
        return Ok(Vec::new());
    };
    let stale = stale_mappings(&secret.data.unwrap_or_default(), &live, scope)
        .map_err(|m| Failure::permanent("InvalidAgentPolicy", m))?;
    for mapping in &stale {
        edit(remote, &Edit::Keys { mapping: mapping.clone(), keys: Vec::new() }, timeout).await?;
        edit(remote, &Edit::RetainTargets { mapping: mapping.clone(), keep: Vec::new() }, timeout).await?;
        tracing::info!(%mapping, "revoked the agent keys of a mapping that no longer copies data");
    }
    Ok(stale)
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
        AuthorizedKey { public_key: text.into(), not_after: None, certificate_authority: true }
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
    fn retain_targets_keeps_only_listed_addresses_of_one_mapping_on_every_node() {
        let mut data = BTreeMap::new();
        let (live, stale, other): (SocketAddr, SocketAddr, SocketAddr) =
            ("10.97.0.5:2022".parse().unwrap(), "10.97.1.9:2022".parse().unwrap(), "10.97.0.7:2022".parse().unwrap());
        for (node, mapping, address) in [("n1", "ops/a", live), ("n2", "ops/a", stale), ("n2", "ops/b", other)] {
            let add = Edit::AddTarget { node: node.into(), mapping: mapping.into(), address };
            assert!(apply_edit(&mut data, &add).unwrap());
        }
        let retain = Edit::RetainTargets { mapping: "ops/a".into(), keep: vec![live] };
        assert!(apply_edit(&mut data, &retain).unwrap());
        assert!(!apply_edit(&mut data, &retain).unwrap(), "nothing more to remove");
        let n1: TargetSet = serde_json::from_slice(&data["targets.n1.json"].0).unwrap();
        let n2: TargetSet = serde_json::from_slice(&data["targets.n2.json"].0).unwrap();
        assert_eq!(n1.targets["ops/a"], [live]);
        assert_eq!(n2.targets.keys().collect::<Vec<_>>(), ["ops/b"], "the other mapping is untouched");
        let none = Edit::RetainTargets { mapping: "ops/a".into(), keep: vec![] };
        assert!(apply_edit(&mut data, &none).unwrap());
        let n1: TargetSet = serde_json::from_slice(&data["targets.n1.json"].0).unwrap();
        assert!(n1.targets.is_empty());
    }

    #[test]
    fn stale_mappings_are_those_not_live_within_the_scope() {
        let mut data = BTreeMap::new();
        for mapping in ["ops/live", "ops/gone", "other/gone"] {
            apply_edit(&mut data, &Edit::Keys { mapping: mapping.into(), keys: vec![key("ssh-ed25519 AAAA")] })
                .unwrap();
        }
        let address: SocketAddr = "10.97.0.5:2022".parse().unwrap();
        apply_edit(&mut data, &Edit::AddTarget { node: "n".into(), mapping: "ops/target-only".into(), address })
            .unwrap();
        let live = BTreeSet::from(["ops/live".to_string()]);
        let cases: [(Option<&str>, &[&str]); 3] = [
            (None, &["ops/gone", "ops/target-only", "other/gone"]),
            (Some("ops"), &["ops/gone", "ops/target-only"]),
            (Some("elsewhere"), &[]),
        ];
        for (scope, expected) in cases {
            assert_eq!(stale_mappings(&data, &live, scope).unwrap(), expected, "scope {scope:?}");
        }
    }

    #[test]
    fn apply_edit_refuses_when_the_document_is_corrupt() {
        let mut data = BTreeMap::from([(POLICY_AUTHORIZED_KEY.to_string(), ByteString(b"{not json".to_vec()))]);
        let edit = Edit::Keys { mapping: "m".into(), keys: vec![key("k")] };
        assert!(apply_edit(&mut data, &edit).is_err());
    }
}
