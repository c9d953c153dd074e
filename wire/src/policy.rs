//! Who may connect and where to: the mapping keys the bastion accepts and the rsync pods each mapping may reach.
//! The controller writes the authorized set (JSON, [`AuthorizedSet`]); the targets come from the rsync pods on this
//! node (or, outside a cluster, from a file of the same shape as [`TargetSet`]). Both are checked by pure functions
//! here, so every refusal has a unit test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use jiff::Timestamp;
use russh::keys::ssh_key::HashAlg;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::keys;

/// The keys of every mapping, as the controller writes them into the agent's Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedSet {
    /// Mapping identity (the rsync pods' mapping label value) → its keys.
    #[serde(default)]
    pub mappings: BTreeMap<String, MappingKeys>,
}

/// The keys of one mapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MappingKeys {
    /// Current key first, then keys kept during a rotation's overlap.
    pub keys: Vec<AuthorizedKey>,
}

/// One accepted public key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedKey {
    /// `ssh-ed25519 AAAA… comment`.
    pub public_key: String,
    /// RFC 3339 time after which the key is refused even if still listed (a retired key's end of overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// The key is the mapping's certificate authority: it is never accepted as a client key itself, only the
    /// certificates it signed are, each for the `ip:port` targets its principals name and within its validity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certificate_authority: bool,
}

impl AuthorizedSet {
    /// Adds `public_key` (an `authorized_keys` line) to `mapping`'s keys, refused after `not_after` (RFC 3339) if
    /// given.
    pub fn add(&mut self, mapping: &str, public_key: &str, not_after: Option<&str>) {
        self.mappings.entry(mapping.to_string()).or_default().keys.push(AuthorizedKey {
            public_key: public_key.to_string(),
            not_after: not_after.map(str::to_string),
            ..Default::default()
        });
    }

    /// Adds `public_key` as `mapping`'s certificate authority, refused after `not_after` (RFC 3339) if given.
    pub fn add_authority(&mut self, mapping: &str, public_key: &str, not_after: Option<&str>) {
        self.mappings.entry(mapping.to_string()).or_default().keys.push(AuthorizedKey {
            public_key: public_key.to_string(),
            not_after: not_after.map(str::to_string),
            certificate_authority: true,
        });
    }
}

/// The rsync pods each mapping may reach from this node: mapping identity → `ip:port` addresses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetSet {
    /// Mapping identity → addresses of its rsync pods on this node.
    #[serde(default)]
    pub targets: BTreeMap<String, Vec<SocketAddr>>,
}

/// A key the agent accepts, parsed.
#[derive(Clone, Debug)]
struct Accepted {
    key: PublicKey,
    mapping: String,
    fingerprint: String,
    not_after: Option<Timestamp>,
    authority: bool,
}

/// What a client authenticated with: a listed key, or a certificate signed by a listed certificate authority.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A plain public key.
    Key(PublicKey),
    /// An OpenSSH user certificate (its key's possession proven by the client).
    Certificate(Box<Certificate>),
}

/// The parsed authorized set and targets the bastion decides with.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    keys: Vec<Accepted>,
    targets: HashMap<String, HashSet<SocketAddr>>,
}

/// The mapping a connection authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Mapping identity.
    pub mapping: String,
    /// Fingerprint of the key used.
    pub fingerprint: String,
    /// When the key stops being accepted, if it has an end.
    pub not_after: Option<Timestamp>,
    /// With a certificate: the only targets it may reach (its principals); `None` for a plain key.
    pub targets: Option<HashSet<SocketAddr>>,
}

/// Why a key or a target was refused (the `reason` label of the refusals metric).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The key is in no mapping's set.
    #[error("unknown key")]
    UnknownKey,
    /// The key is listed but past its `notAfter`.
    #[error("key retired")]
    KeyRetired,
    /// A certificate signed by no mapping's certificate authority.
    #[error("certificate of an unknown authority")]
    UnknownAuthority,
    /// A certificate outside its validity, of the wrong type, with critical options or principals that are not
    /// `ip:port` targets.
    #[error("certificate not accepted: {0}")]
    CertificateInvalid(&'static str),
    /// The connection asked for something before authenticating.
    #[error("not authenticated")]
    NotAuthenticated,
    /// The requested host is not an IP address (names are never resolved).
    #[error("target {0:?} is not an IP address")]
    NotAnAddress(String),
    /// The address is not one of this mapping's rsync pods on this node.
    #[error("target {0} is not an rsync pod of this mapping on this node")]
    NotAllowedTarget(String),
    /// A channel or request type the agent never serves (shell, exec, pty, subsystem, forwarding).
    #[error("{0} is not allowed")]
    Request(&'static str),
}

impl Refusal {
    /// A short CamelCase reason for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownKey => "UnknownKey",
            Refusal::KeyRetired => "KeyRetired",
            Refusal::UnknownAuthority => "UnknownAuthority",
            Refusal::CertificateInvalid(_) => "CertificateInvalid",
            Refusal::NotAuthenticated => "NotAuthenticated",
            Refusal::NotAnAddress(_) => "TargetNotAnAddress",
            Refusal::NotAllowedTarget(_) => "TargetNotAllowed",
            Refusal::Request(_) => "RequestNotAllowed",
        }
    }
}

impl Policy {
    /// Parses an authorized set and a target set. A malformed key fails the whole set, so a bad update never
    /// half-applies (the previous policy stays in force).
    pub fn new(authorized: &AuthorizedSet, targets: &TargetSet) -> Result<Policy, Error> {
        let mut keys = Vec::new();
        for (mapping, set) in &authorized.mappings {
            for (i, entry) in set.keys.iter().enumerate() {
                let what = format!("{i} of mapping {mapping}");
                let key = keys::public_from_openssh(&entry.public_key, &what)?;
                let not_after = match &entry.not_after {
                    Some(text) => Some(text.parse::<Timestamp>().map_err(|e| Error::Policy {
                        what: format!("notAfter of key {what}"),
                        message: e.to_string(),
                    })?),
                    None => None,
                };
                let fingerprint = keys::fingerprint(&key);
                let authority = entry.certificate_authority;
                keys.push(Accepted { key, mapping: mapping.clone(), fingerprint, not_after, authority });
            }
        }
        let targets = targets.targets.iter().map(|(m, addrs)| (m.clone(), addrs.iter().copied().collect())).collect();
        Ok(Policy { keys, targets })
    }

    /// Which mapping a credential belongs to, at time `now`.
    pub fn identify_credential(&self, credential: &Credential, now: Timestamp) -> Result<Identity, Refusal> {
        match credential {
            Credential::Key(key) => self.identify(key, now),
            Credential::Certificate(certificate) => self.identify_certificate(certificate, now),
        }
    }

    /// Which mapping `key` belongs to, at time `now` (certificate authorities are never client keys).
    pub fn identify(&self, key: &PublicKey, now: Timestamp) -> Result<Identity, Refusal> {
        let accepted =
            self.keys.iter().find(|a| !a.authority && keys::same_key(&a.key, key)).ok_or(Refusal::UnknownKey)?;
        if accepted.not_after.is_some_and(|end| now > end) {
            return Err(Refusal::KeyRetired);
        }
        Ok(Identity {
            mapping: accepted.mapping.clone(),
            fingerprint: accepted.fingerprint.clone(),
            not_after: accepted.not_after,
            targets: None,
        })
    }

    /// Which mapping `certificate` belongs to at time `now`: signed by that mapping's certificate authority (not
    /// past its `notAfter`), a user certificate within its validity, without critical options, whose principals are
    /// the `ip:port` targets it may reach.
    pub fn identify_certificate(&self, certificate: &Certificate, now: Timestamp) -> Result<Identity, Refusal> {
        let authority = self
            .keys
            .iter()
            .find(|a| a.authority && a.key.key_data() == certificate.signature_key())
            .ok_or(Refusal::UnknownAuthority)?;
        if authority.not_after.is_some_and(|end| now > end) {
            return Err(Refusal::KeyRetired);
        }
        let unix = u64::try_from(now.as_second()).unwrap_or(0);
        let trusted = authority.key.fingerprint(HashAlg::Sha256);
        certificate.validate_at(unix, [&trusted]).map_err(|_| Refusal::CertificateInvalid("signature or validity"))?;
        if certificate.cert_type() != CertType::User {
            return Err(Refusal::CertificateInvalid("not a user certificate"));
        }
        if !certificate.critical_options().is_empty() {
            return Err(Refusal::CertificateInvalid("critical options"));
        }
        let targets = certificate
            .valid_principals()
            .iter()
            .map(|p| p.parse::<SocketAddr>())
            .collect::<Result<HashSet<_>, _>>()
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::CertificateInvalid("principals are not ip:port targets"))?;
        let valid_before = i64::try_from(certificate.valid_before()).ok().and_then(|s| Timestamp::from_second(s).ok());
        let not_after = match (authority.not_after, valid_before) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let key = PublicKey::new(certificate.public_key().clone(), "");
        Ok(Identity {
            mapping: authority.mapping.clone(),
            fingerprint: format!("{} (certificate {:?})", keys::fingerprint(&key), certificate.key_id()),
            not_after,
            targets: Some(targets),
        })
    }

    /// The address to connect to for a direct-tcpip request of `identity` to `host:port`.
    pub fn target(&self, identity: &Identity, host: &str, port: u32) -> Result<SocketAddr, Refusal> {
        let ip: IpAddr = host.parse().map_err(|_| Refusal::NotAnAddress(host.to_string()))?;
        let port = u16::try_from(port).map_err(|_| Refusal::NotAllowedTarget(format!("{host}:{port}")))?;
        let address = SocketAddr::new(ip, port);
        let certified = identity.targets.as_ref().is_none_or(|own| own.contains(&address));
        match self.targets.get(&identity.mapping) {
            Some(allowed) if allowed.contains(&address) && certified => Ok(address),
            _ => Err(Refusal::NotAllowedTarget(address.to_string())),
        }
    }

    /// Number of keys accepted (for logs).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
