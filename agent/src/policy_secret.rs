//! The bastion's policy in a cluster: one Secret the controller writes (`authorized.json` plus one
//! `targets.<node>.json` per node), watched through the API so a new rsync pod or a rotated key is in force within
//! a second — a mounted Secret volume is refreshed only every minute or so. Only this node's targets are read. A
//! version that does not parse leaves the previous policy in force (logged and counted); a deleted Secret refuses
//! everyone.

use std::collections::BTreeMap;
use std::sync::Arc;

use dr_syncer_api::agent::{POLICY_AUTHORIZED_KEY, policy_targets_key};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::DefaultBackoff};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::error::Error;
use crate::metrics::AgentMetrics;
use dr_syncer_wire::policy::{AuthorizedSet, Policy, TargetSet};

/// Parses the policy of `node` (of every node with [`Nodes::All`]) from a Secret's data; missing keys mean
/// "nobody" and "nowhere". Also returns the raw bytes it was built from, to skip reloads of identical content.
pub fn policy_from_data(data: &BTreeMap<String, ByteString>, nodes: &Nodes) -> Result<(Policy, Vec<u8>), Error> {
    let authorized_raw = data.get(POLICY_AUTHORIZED_KEY).map(|b| b.0.clone()).unwrap_or_default();
    let authorized: AuthorizedSet = parse_or_default(&authorized_raw, POLICY_AUTHORIZED_KEY)?;
    let mut raw = authorized_raw;
    let mut targets = TargetSet::default();
    let keys: Vec<String> = match nodes {
        Nodes::One(node) => vec![policy_targets_key(node)],
        Nodes::All => data.keys().filter(|k| k.starts_with("targets.") && k.ends_with(".json")).cloned().collect(),
    };
    for key in keys {
        let text = data.get(&key).map(|b| b.0.clone()).unwrap_or_default();
        let set: TargetSet = parse_or_default(&text, &key)?;
        for (mapping, addresses) in set.targets {
            targets.targets.entry(mapping).or_default().extend(addresses);
        }
        raw.push(0);
        raw.extend(text);
    }
    Ok((Policy::new(&authorized, &targets)?, raw))
}

/// Whose rsync pods a bastion may relay to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nodes {
    /// Only those on this node (the agent is reached on its node's hostPort).
    One(String),
    /// Those on every node (the agents are behind a Service, so any of them may be asked).
    All,
}

fn parse_or_default<T: serde::de::DeserializeOwned + Default>(raw: &[u8], what: &str) -> Result<T, Error> {
    if raw.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(raw)
        .map_err(|e| Error::from(dr_syncer_wire::Error::Policy { what: what.to_string(), message: e.to_string() }))
}

/// Where the policy Secret is and which node's targets to read.
#[derive(Clone, Debug)]
pub struct PolicySecret {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Whose targets to read.
    pub nodes: Nodes,
}

/// Watches the policy Secret until `stop`, publishing each changed, valid policy on `sender`. Watch errors are
/// retried with kube-runtime's backoff; the last good policy stays in force meanwhile.
pub async fn watch_secret(
    client: kube::Client,
    source: PolicySecret,
    sender: watch::Sender<Arc<Policy>>,
    metrics: AgentMetrics,
    stop: CancellationToken,
) {
    let api: Api<Secret> = Api::namespaced(client, &source.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
    let mut events = watcher::watcher(api, config).backoff(DefaultBackoff::default()).boxed();
    let mut last: Option<Vec<u8>> = None;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.next() => event,
        };
        let secret = match event {
            None => return,
            Some(Err(e)) => {
                warn!(error = %e, secret = %source.name, "policy watch failed; retrying, the current policy stays");
                continue;
            }
            Some(Ok(Event::Apply(secret) | Event::InitApply(secret))) => Some(secret),
            Some(Ok(Event::Delete(_))) => None,
            Some(Ok(Event::Init | Event::InitDone)) => continue,
        };
        let loaded = match &secret {
            Some(secret) => policy_from_data(&secret.data.clone().unwrap_or_default(), &source.nodes),
            None => Ok((Policy::default(), Vec::new())),
        };
        match loaded {
            Ok((_, raw)) if last.as_ref() == Some(&raw) => {}
            Ok((policy, raw)) => {
                if secret.is_none() {
                    warn!(secret = %source.name, "policy Secret deleted; refusing every key");
                }
                info!(keys = policy.key_count(), nodes = ?source.nodes, "policy reloaded");
                metrics.reloads.with_label_values(&["ok"]).inc();
                sender.send_replace(Arc::new(policy));
                last = Some(raw);
            }
            Err(e) => {
                metrics.reloads.with_label_values(&["error"]).inc();
                error!(error = %e, reason = e.reason(), "policy not reloaded; the previous one stays in force");
                last = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        entries.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn policy_from_data_reads_only_this_nodes_targets_when_several_nodes_are_listed() {
        let key = dr_syncer_wire::keys::generate("m").unwrap().public_openssh;
        let authorized = format!(r#"{{"mappings":{{"m":{{"keys":[{{"publicKey":"{key}"}}]}}}}}}"#);
        let d = data(&[
            (POLICY_AUTHORIZED_KEY, &authorized),
            ("targets.node-a.json", r#"{"targets":{"m":["10.0.0.5:2022"]}}"#),
            ("targets.node-b.json", r#"{"targets":{"m":["10.0.1.9:2022"]}}"#),
        ]);
        let (policy, _) = policy_from_data(&d, &Nodes::One("node-a".into())).unwrap();
        let public = dr_syncer_wire::keys::public_from_openssh(&key, "k").unwrap();
        let who = policy.identify(&public, jiff::Timestamp::now()).unwrap();
        assert!(policy.target(&who, "10.0.0.5", 2022).is_ok());
        assert!(policy.target(&who, "10.0.1.9", 2022).is_err(), "another node's pod");
        let (all, _) = policy_from_data(&d, &Nodes::All).unwrap();
        assert!(all.target(&who, "10.0.0.5", 2022).is_ok());
        assert!(all.target(&who, "10.0.1.9", 2022).is_ok(), "behind a Service every node's pods are reachable");
    }

    #[test]
    fn policy_from_data_refuses_everyone_when_keys_are_missing() {
        let (policy, _) = policy_from_data(&BTreeMap::new(), &Nodes::One("node-a".into())).unwrap();
        assert_eq!(policy.key_count(), 0);
    }

    #[test]
    fn policy_from_data_fails_whole_when_one_document_is_malformed() {
        let d = data(&[(POLICY_AUTHORIZED_KEY, "{}"), ("targets.node-a.json", "{not json")]);
        let err = policy_from_data(&d, &Nodes::One("node-a".into())).unwrap_err();
        assert_eq!(err.reason(), "InvalidPolicy");
        assert!(err.to_string().contains("targets.node-a.json"), "{err}");
    }
}
