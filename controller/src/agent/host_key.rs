//! The agents' SSH host key of each RemoteCluster. The authoritative copy lives in the controller's cluster — the
//! Secret `spec.pvcSync.ssh.keySecretRef` names, or one generated next to the RemoteCluster (owned by it, so it goes
//! with it) — and is copied into the source cluster for the agents. Clients pin the public half read from here,
//! never from the source cluster.

use std::collections::BTreeMap;

use dr_syncer_agent::keys::{self, KeyPair};
use dr_syncer_api::RemoteCluster;
use dr_syncer_api::agent::HOST_KEY_SECRET_KEY;
use dr_syncer_api::constants::{LABEL_KEY_TYPE, LABEL_REMOTE_CLUSTER};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

use crate::error::{Error, with_timeout};

/// `dr-syncer.io/key-type` value of host-key Secrets.
pub const KEY_TYPE_HOST: &str = "agent-host";

/// Name of the generated host-key Secret of RemoteCluster `name`.
pub fn generated_secret_name(name: &str) -> String {
    format!("{name}-agent-host-key")
}

/// Where the host key of `rc` is: `(namespace, name, generated)`.
pub fn location(rc: &RemoteCluster) -> (String, String, bool) {
    let custom = rc.spec.pvc_sync.as_ref().and_then(|p| p.ssh.as_ref()).and_then(|s| s.key_secret_ref.clone());
    match custom {
        Some(r) => (r.namespace, r.name, false),
        None => (rc.namespace().unwrap_or_default(), generated_secret_name(&rc.name_any()), true),
    }
}

/// Parses the host key held in `secret`.
pub fn from_secret(secret: &Secret, what: &str) -> Result<KeyPair, Error> {
    let data = secret.data.as_ref().and_then(|d| d.get(HOST_KEY_SECRET_KEY));
    let text = data.and_then(|b| std::str::from_utf8(&b.0).ok()).ok_or_else(|| Error::Config {
        message: format!("Secret {what} has no UTF-8 key {HOST_KEY_SECRET_KEY:?} with an OpenSSH Ed25519 private key"),
    })?;
    let key = keys::private_from_openssh(text, what).map_err(|source| Error::Key { what: what.into(), source })?;
    keys::pair(&key, what).map_err(|source| Error::Key { what: what.into(), source })
}

/// The host key of `rc`: read, or generated and stored on first use.
pub async fn ensure(client: &Client, rc: &RemoteCluster, timeout: std::time::Duration) -> Result<KeyPair, Error> {
    let (namespace, name, generated) = location(rc);
    let what = format!("{namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    if let Some(secret) = with_timeout(format!("get Secret {what}"), timeout, api.get_opt(&name)).await? {
        return from_secret(&secret, &what);
    }
    if !generated {
        return Err(Error::Config {
            message: format!("the host-key Secret {what} (spec.pvcSync.ssh.keySecretRef) does not exist"),
        });
    }
    let comment = format!("dr-syncer-agent@{}", rc.name_any());
    let pair = keys::generate(&comment).map_err(|source| Error::Key { what: what.clone(), source })?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL_REMOTE_CLUSTER.to_string(), rc.name_any()),
                (LABEL_KEY_TYPE.to_string(), KEY_TYPE_HOST.to_string()),
            ])),
            owner_references: rc.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            HOST_KEY_SECRET_KEY.to_string(),
            ByteString(pair.private_openssh.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    match with_timeout(format!("create Secret {what}"), timeout, api.create(&PostParams::default(), &secret)).await {
        Ok(_) => {
            tracing::info!(secret = %what, fingerprint = %pair.fingerprint, "generated the agents' SSH host key");
            Ok(pair)
        }
        // Created meanwhile (another reconcile): use that one.
        Err(Error::Api { source: kube::Error::Api(e), .. }) if e.code == 409 => {
            let secret = with_timeout(format!("get Secret {what}"), timeout, api.get(&name)).await?;
            from_secret(&secret, &what)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_secret_reads_a_generated_key_and_rejects_missing_or_foreign_keys() {
        let pair = keys::generate("t").unwrap();
        let secret = |text: &str| Secret {
            data: Some(BTreeMap::from([(HOST_KEY_SECRET_KEY.to_string(), ByteString(text.as_bytes().to_vec()))])),
            ..Default::default()
        };
        let read = from_secret(&secret(&pair.private_openssh), "ns/s").unwrap();
        assert_eq!(read.fingerprint, pair.fingerprint);
        let err = from_secret(&Secret::default(), "ns/s").unwrap_err();
        assert!(err.to_string().contains(HOST_KEY_SECRET_KEY), "{err}");
        let err = from_secret(&secret("not a key"), "ns/s").unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        assert!(!format!("{err:?}").contains("PRIVATE KEY"));
    }
}
