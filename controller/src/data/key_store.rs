//! Reading and writing a mapping's client-key Secret in its DR namespace. The Secret holds the private half for
//! the copy Jobs; its annotations hold the generation, creation time and the retiring public keys, so the key's
//! whole state survives a controller restart without ever leaving the DR namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_api::constants::{
    ANNOTATION_KEY_CREATED, ANNOTATION_KEY_GENERATION, ANNOTATION_KEY_RETIRING, FIELD_MANAGER_DATA, LABEL_KEY_TYPE,
    LABEL_MANAGED_BY, LABEL_MAPPING, LABEL_MAPPING_NAMESPACE, MANAGED_BY_VALUE,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams};
use zeroize::Zeroizing;

use super::failure::Failure;
use super::keys::{Retiring, StoredKey};
use crate::error::with_timeout;

/// Key of the private half in the Secret (the file name ssh reads).
pub const PRIVATE_KEY_FILE: &str = "id_ed25519";
/// Key of the public half in the Secret.
pub const PUBLIC_KEY_FILE: &str = "id_ed25519.pub";
/// `dr-syncer.io/key-type` value of client-key Secrets.
pub const KEY_TYPE_CLIENT: &str = "mapping-client";

/// Name of the client-key Secret of mapping `mapping` (a DNS subdomain, so the prefix keeps it one).
pub fn secret_name(mapping: &str) -> String {
    let name = format!("dr-syncer-ssh-{mapping}");
    if name.len() <= 253 { name } else { format!("dr-syncer-ssh-{}", &crate::data::short_hash(mapping)) }
}

/// Parses a client-key Secret; the error says what is wrong (never the key itself).
pub fn from_secret(secret: &Secret) -> Result<StoredKey, String> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()).ok_or_else(|| format!("no {key:?}"))
    };
    let private = Zeroizing::new(text(PRIVATE_KEY_FILE)?);
    let parsed = dr_syncer_agent::keys::private_from_openssh(&private, "client key").map_err(|e| e.to_string())?;
    let pair = dr_syncer_agent::keys::pair(&parsed, "client key").map_err(|e| e.to_string())?;
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let generation = annotations.get(ANNOTATION_KEY_GENERATION).and_then(|g| g.parse().ok()).unwrap_or(1);
    let created = annotations
        .get(ANNOTATION_KEY_CREATED)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("no valid {ANNOTATION_KEY_CREATED} annotation"))?;
    let retiring: Vec<Retiring> = match annotations.get(ANNOTATION_KEY_RETIRING) {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("{ANNOTATION_KEY_RETIRING}: {e}"))?,
        None => Vec::new(),
    };
    Ok(StoredKey {
        generation,
        created,
        public_openssh: pair.public_openssh,
        fingerprint: pair.fingerprint,
        private_openssh: private,
        retiring,
    })
}

/// The client-key Secret holding `key` for mapping `namespace/mapping`.
pub fn to_secret(key: &StoredKey, name: &str, namespace: &str, mapping: (&str, &str)) -> Secret {
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (LABEL_MAPPING.to_string(), mapping.1.to_string()),
        (LABEL_MAPPING_NAMESPACE.to_string(), mapping.0.to_string()),
        (LABEL_KEY_TYPE.to_string(), KEY_TYPE_CLIENT.to_string()),
    ]);
    let annotations = BTreeMap::from([
        (ANNOTATION_KEY_GENERATION.to_string(), key.generation.to_string()),
        (ANNOTATION_KEY_CREATED.to_string(), key.created.to_string()),
        (ANNOTATION_KEY_RETIRING.to_string(), serde_json::to_string(&key.retiring).unwrap_or_else(|_| "[]".into())),
    ]);
    let data = BTreeMap::from([
        (PRIVATE_KEY_FILE.to_string(), ByteString(key.private_openssh.as_bytes().to_vec())),
        (PUBLIC_KEY_FILE.to_string(), ByteString(key.public_openssh.as_bytes().to_vec())),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Reads the key of `api`/`name`; `Ok(None)` when the Secret does not exist, a permanent failure when it holds no
/// usable key (someone edited it).
pub async fn read(api: &Api<Secret>, name: &str, timeout: Duration) -> Result<Option<StoredKey>, Failure> {
    let Some(secret) = with_timeout(format!("get Secret {name}"), timeout, api.get_opt(name)).await? else {
        return Ok(None);
    };
    from_secret(&secret)
        .map(Some)
        .map_err(|why| Failure::permanent("InvalidClientKey", format!("client-key Secret {name} is unusable: {why}")))
}

/// Writes `secret` with server-side apply.
pub async fn write(api: &Api<Secret>, secret: &Secret, timeout: Duration) -> Result<(), Failure> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut body = serde_json::to_value(secret).map_err(|e| Failure::transient("EncodeError", e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let params = PatchParams::apply(FIELD_MANAGER_DATA).force();
    with_timeout(format!("apply Secret {name}"), timeout, api.patch(&name, &params, &Patch::Apply(&body))).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::data::keys::{first, rotate};

    #[test]
    fn a_stored_key_survives_the_secret_round_trip_when_rotated() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let old = first(&dr_syncer_agent::keys::generate("m:1").unwrap(), now);
        let key = rotate(
            &old,
            &dr_syncer_agent::keys::generate("m:2").unwrap(),
            now,
            jiff::SignedDuration::from_mins(5),
            true,
        );
        let secret = to_secret(&key, "dr-syncer-ssh-m", "shop-dr", ("ops", "m"));
        let back = from_secret(&secret).unwrap();
        assert_eq!((back.generation, back.fingerprint.clone(), back.created), (2, key.fingerprint.clone(), now));
        assert_eq!(back.retiring, key.retiring);
        assert_eq!(*back.private_openssh, *key.private_openssh);
    }

    #[test]
    fn from_secret_explains_without_the_key_when_the_secret_is_broken() {
        let secret = Secret {
            data: Some(BTreeMap::from([(PRIVATE_KEY_FILE.to_string(), ByteString(b"garbage".to_vec()))])),
            ..Secret::default()
        };
        let why = from_secret(&secret).unwrap_err();
        assert!(!why.contains("garbage"), "{why}");
    }

    #[test]
    fn secret_name_stays_a_valid_name_when_the_mapping_name_is_long() {
        assert_eq!(secret_name("shop"), "dr-syncer-ssh-shop");
        assert!(secret_name(&"m".repeat(253)).len() <= 253);
    }
}
