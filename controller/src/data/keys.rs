//! Each NamespaceMapping's SSH certificate authority: Ed25519, the private half only in the controller's memory,
//! the public half in the source agents' authorized set, where it admits the certificates it signs for single
//! copies. Rotated every `keyRotationInterval`, on demand (annotation `dr-syncer.io/rotate-ssh-key`) and with every
//! new controller process. A previous authority stays accepted while copies that may use it run — at most the copy
//! timeout — and is dropped as soon as none does. The decisions here are pure.

use dr_syncer_api::namespace_mapping::{ClientKeyStatus, RetiringKey};
use dr_syncer_wire::keys::KeyPair;
use dr_syncer_wire::policy::AuthorizedKey;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A mapping's key as stored in its DR Secret.
#[derive(Clone)]
pub struct StoredKey {
    /// Counts rotations, 1 for the first key.
    pub generation: i64,
    /// When it was made.
    pub created: Timestamp,
    /// `ssh-ed25519 AAAA… comment`.
    pub public_openssh: String,
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// OpenSSH PEM of the private half.
    pub private_openssh: Zeroizing<String>,
    /// Previous keys still accepted.
    pub retiring: Vec<Retiring>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("generation", &self.generation)
            .field("fingerprint", &self.fingerprint)
            .field("retiring", &self.retiring)
            .finish_non_exhaustive()
    }
}

/// A previous key in its overlap period (public half only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Retiring {
    /// Generation it had.
    pub generation: i64,
    /// `ssh-ed25519 AAAA…`.
    pub public_key: String,
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// Refused by the agents after this time.
    pub not_after: Timestamp,
}

/// What to do with a mapping's key before a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// The current key is fine.
    Keep,
    /// There is no key yet.
    Create,
    /// Replace the current key; the reason is logged and sent as an event.
    Rotate(&'static str),
}

/// Decides whether the key must be made or rotated at `now`.
pub fn decide(stored: Option<&StoredKey>, now: Timestamp, interval: SignedDuration, requested: bool) -> KeyAction {
    match stored {
        None => KeyAction::Create,
        Some(_) if requested => KeyAction::Rotate("RotationRequested"),
        Some(key) if now >= next_rotation(key, interval) => KeyAction::Rotate("RotationDue"),
        Some(_) => KeyAction::Keep,
    }
}

/// When `key` is due for rotation.
pub fn next_rotation(key: &StoredKey, interval: SignedDuration) -> Timestamp {
    key.created.saturating_add(interval).unwrap_or(Timestamp::MAX)
}

/// The key after a rotation at `now` to `new`: the old one is kept until `now + overlap` when copies that may use it
/// are running (`in_flight`), else dropped at once; retiring keys past their end are dropped.
pub fn rotate(old: &StoredKey, new: &KeyPair, now: Timestamp, overlap: SignedDuration, in_flight: bool) -> StoredKey {
    let mut retiring = prune(&old.retiring, now, in_flight);
    if in_flight {
        retiring.push(Retiring {
            generation: old.generation,
            public_key: old.public_openssh.clone(),
            fingerprint: old.fingerprint.clone(),
            not_after: now.saturating_add(overlap).unwrap_or(Timestamp::MAX),
        });
    }
    StoredKey {
        generation: old.generation + 1,
        created: now,
        public_openssh: new.public_openssh.clone(),
        fingerprint: new.fingerprint.clone(),
        private_openssh: new.private_openssh.clone(),
        retiring,
    }
}

/// The first key of a mapping in this process: generation `generation` (status keeps counting across processes).
pub fn first(new: &KeyPair, generation: i64, now: Timestamp) -> StoredKey {
    StoredKey {
        generation,
        created: now,
        public_openssh: new.public_openssh.clone(),
        fingerprint: new.fingerprint.clone(),
        private_openssh: new.private_openssh.clone(),
        retiring: Vec::new(),
    }
}

/// Retiring keys still needed at `now`: none once no copy runs, else those whose end has not passed.
pub fn prune(retiring: &[Retiring], now: Timestamp, in_flight: bool) -> Vec<Retiring> {
    if !in_flight {
        return Vec::new();
    }
    retiring.iter().filter(|r| r.not_after > now).cloned().collect()
}

/// The mapping's entries of the agents' authorized set: the current certificate authority, then the retiring ones
/// with their end. The current one ends too — at its next rotation plus `overlap` (the copy timeout): a data sync
/// rotates it before that, so only an authority whose controller stopped running expires.
pub fn authorized(key: &StoredKey, interval: SignedDuration, overlap: SignedDuration) -> Vec<AuthorizedKey> {
    let authority = |public_key: &str, not_after: Timestamp| AuthorizedKey {
        public_key: public_key.to_string(),
        not_after: Some(not_after.to_string()),
        certificate_authority: true,
    };
    let end = next_rotation(key, interval).saturating_add(overlap).unwrap_or(Timestamp::MAX);
    let mut entries = vec![authority(&key.public_openssh, end)];
    entries.extend(key.retiring.iter().map(|r| authority(&r.public_key, r.not_after)));
    entries
}

/// The key's status: fingerprints, generation and times only.
pub fn status(key: &StoredKey, interval: SignedDuration) -> ClientKeyStatus {
    let time = |t: Timestamp| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t);
    ClientKeyStatus {
        generation: key.generation,
        fingerprint: key.fingerprint.clone(),
        created: Some(time(key.created)),
        next_rotation: Some(time(next_rotation(key, interval))),
        retiring: key
            .retiring
            .iter()
            .map(|r| RetiringKey {
                fingerprint: r.fingerprint.clone(),
                generation: r.generation,
                not_after: Some(time(r.not_after)),
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dr_syncer_wire::keys::generate;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn day() -> SignedDuration {
        SignedDuration::from_hours(24)
    }

    #[test]
    fn decide_follows_the_interval_and_the_request_when_a_key_exists() {
        let key = first(&generate("m:1").unwrap(), 1, at(0));
        let cases = [
            (None, at(0), false, KeyAction::Create),
            (Some(&key), at(3600), false, KeyAction::Keep),
            (Some(&key), at(3600), true, KeyAction::Rotate("RotationRequested")),
            (Some(&key), at(86_400), false, KeyAction::Rotate("RotationDue")),
        ];
        for (stored, now, requested, expected) in cases {
            assert_eq!(decide(stored, now, day(), requested), expected, "{now}");
        }
    }

    #[test]
    fn rotate_keeps_the_old_key_until_the_overlap_ends_when_copies_run() {
        let old = first(&generate("m:1").unwrap(), 1, at(0));
        let new = generate("m:2").unwrap();
        let rotated = rotate(&old, &new, at(100), SignedDuration::from_mins(30), true);
        assert_eq!(rotated.generation, 2);
        assert_eq!(rotated.fingerprint, new.fingerprint);
        assert_eq!(rotated.retiring.len(), 1);
        assert_eq!(rotated.retiring[0].not_after, at(100 + 1800));
        let entries = authorized(&rotated, day(), SignedDuration::from_mins(30));
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].not_after.as_deref(),
            Some(at(100 + 86_400 + 1800).to_string().as_str()),
            "every key ends"
        );
        assert!(entries.iter().all(|e| e.certificate_authority));
        assert_eq!(entries[1].public_key, old.public_openssh);
        // Once the copies ended, the old key goes.
        assert!(prune(&rotated.retiring, at(200), false).is_empty());
        // And past its end even while copies run.
        assert!(prune(&rotated.retiring, at(100 + 1801), true).is_empty());
    }

    #[test]
    fn rotate_drops_the_old_key_at_once_when_no_copy_runs() {
        let old = first(&generate("m:1").unwrap(), 1, at(0));
        let rotated = rotate(&old, &generate("m:2").unwrap(), at(100), SignedDuration::from_mins(30), false);
        assert!(rotated.retiring.is_empty());
        assert_eq!(authorized(&rotated, day(), SignedDuration::from_mins(30)).len(), 1);
    }

    #[test]
    fn status_and_debug_never_show_the_private_key_when_rendered() {
        let key = first(&generate("m:1").unwrap(), 1, at(0));
        let text = format!("{key:?} {:?}", status(&key, day()));
        assert!(!text.contains("PRIVATE KEY"));
        assert!(text.contains(&key.fingerprint));
        assert_eq!(status(&key, day()).next_rotation.unwrap().0, at(86_400));
    }
}
