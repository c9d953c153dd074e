//! Ed25519 SSH keys: generation, OpenSSH encoding and SHA-256 fingerprints. The controller and the agent share this
//! module, so both sides agree on formats. A private key never appears in `Debug` output.

use russh::keys::ssh_key::{HashAlg, LineEnding, certificate};
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::error::Error;

/// Log message of an agent whose field `public_key` is the host key it generated, which the clients pin.
pub const HOST_KEY_GENERATED: &str = "host key generated";

/// A freshly generated or loaded key pair in OpenSSH text form.
#[derive(Clone)]
pub struct KeyPair {
    /// The private key, `-----BEGIN OPENSSH PRIVATE KEY-----` PEM; wiped from memory when dropped.
    pub private_openssh: Zeroizing<String>,
    /// The public key as one `authorized_keys` line: `ssh-ed25519 AAAA… comment`.
    pub public_openssh: String,
    /// SHA-256 fingerprint as `ssh-keygen -l` prints it: `SHA256:…`.
    pub fingerprint: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// Generates an Ed25519 key pair with `comment` (for example the mapping and generation it belongs to).
pub fn generate(comment: &str) -> Result<KeyPair, Error> {
    let key_error = |source| Error::Key { what: format!("generated for {comment}"), source };
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(key_error)?;
    key.set_comment(comment);
    pair(&key, comment)
}

/// Reads an Ed25519 private key from OpenSSH PEM text; `what` names it in errors.
pub fn private_from_openssh(text: &str, what: &str) -> Result<PrivateKey, Error> {
    let key = PrivateKey::from_openssh(text).map_err(|source| Error::Key { what: what.to_string(), source })?;
    ensure_ed25519(key.algorithm(), what)?;
    Ok(key)
}

/// Reads an Ed25519 public key from one `authorized_keys`-style line; `what` names it in errors.
/// A line with a control character inside (a second line, a carriage return) is refused: it could carry another
/// entry into whatever file the key is written to.
pub fn public_from_openssh(line: &str, what: &str) -> Result<PublicKey, Error> {
    let line = line.trim();
    if line.chars().any(char::is_control) {
        return Err(Error::KeyText { what: what.to_string() });
    }
    let key = PublicKey::from_openssh(line).map_err(|source| Error::Key { what: what.to_string(), source })?;
    ensure_ed25519(key.algorithm(), what)?;
    Ok(key)
}

/// The SHA-256 fingerprint of a public key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The key pair of a loaded private key.
pub fn pair(key: &PrivateKey, what: &str) -> Result<KeyPair, Error> {
    let key_error = |source| Error::Key { what: what.to_string(), source };
    Ok(KeyPair {
        private_openssh: key.to_openssh(LineEnding::LF).map_err(key_error)?,
        public_openssh: key.public_key().to_openssh().map_err(key_error)?,
        fingerprint: fingerprint(key.public_key()),
    })
}

/// An OpenSSH user certificate for `key`, signed by `authority`: `key_id` names it in logs, `principals` are the
/// `ip:port` targets it may reach, valid from `valid_after` to `valid_before` (Unix seconds). Returns the
/// `ssh-ed25519-cert-v01@openssh.com AAAA…` line an OpenSSH client reads with `CertificateFile`.
pub fn certify(
    authority: &PrivateKey,
    key: &PublicKey,
    key_id: &str,
    principals: &[String],
    validity: (u64, u64),
) -> Result<String, Error> {
    let error = |source| Error::Key { what: format!("certificate {key_id}"), source };
    let mut builder =
        certificate::Builder::new_with_random_nonce(&mut rand::rng(), key.key_data().clone(), validity.0, validity.1)
            .map_err(error)?;
    builder.cert_type(certificate::CertType::User).map_err(error)?;
    builder.key_id(key_id).map_err(error)?;
    for principal in principals {
        builder.valid_principal(principal.as_str()).map_err(error)?;
    }
    let signed = builder.sign(authority).map_err(error)?;
    signed.to_openssh().map_err(error)
}

/// Whether two public keys are the same key (comments ignored).
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

fn ensure_ed25519(algorithm: Algorithm, what: &str) -> Result<(), Error> {
    if algorithm == Algorithm::Ed25519 {
        Ok(())
    } else {
        Err(Error::KeyAlgorithm { what: what.to_string(), algorithm: algorithm.to_string() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generate_round_trips_through_openssh_text_when_parsed_back() {
        let pair = generate("dr-syncer:ops/shop:1").unwrap();
        assert!(pair.private_openssh.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(pair.public_openssh.starts_with("ssh-ed25519 "));
        assert!(pair.public_openssh.ends_with(" dr-syncer:ops/shop:1"));
        let private = private_from_openssh(&pair.private_openssh, "test").unwrap();
        let public = public_from_openssh(&pair.public_openssh, "test").unwrap();
        assert!(same_key(private.public_key(), &public));
        assert_eq!(fingerprint(&public), pair.fingerprint);
        assert!(pair.fingerprint.starts_with("SHA256:"));
    }

    #[test]
    fn debug_output_never_contains_the_private_key_when_formatted() {
        let pair = generate("x").unwrap();
        let text = format!("{pair:?}");
        assert!(!text.contains("PRIVATE"));
        assert!(text.contains(&pair.fingerprint));
    }

    #[test]
    fn public_from_openssh_refuses_when_the_line_is_not_a_key() {
        let err = public_from_openssh("ssh-ed25519 not-base64!", "line 3").unwrap_err();
        assert_eq!(err.reason(), "InvalidKey");
        let key = generate("k").unwrap().public_openssh;
        for bad in [format!("{key}\nssh-ed25519 AAAA"), format!("{key}\rx"), key.replace(' ', "\t")] {
            assert_eq!(public_from_openssh(&bad, "x").unwrap_err().reason(), "InvalidKey", "{bad:?}");
        }
    }

    #[test]
    fn certify_signs_a_user_certificate_for_the_named_targets_when_asked() {
        let authority = private_from_openssh(&generate("ca").unwrap().private_openssh, "ca").unwrap();
        let client = generate("copy").unwrap();
        let public = public_from_openssh(&client.public_openssh, "copy").unwrap();
        let text = certify(&authority, &public, "m:abc", &["10.97.0.5:2022".to_string()], (100, 200)).unwrap();
        assert!(text.starts_with("ssh-ed25519-cert-v01@openssh.com "), "{text}");
        let cert = russh::keys::Certificate::from_openssh(&text).unwrap();
        let ca = authority.public_key().fingerprint(HashAlg::Sha256);
        assert!(cert.validate_at(150, [&ca]).is_ok());
        assert!(cert.validate_at(250, [&ca]).is_err());
        assert_eq!(cert.valid_principals(), ["10.97.0.5:2022"]);
        assert_eq!(cert.key_id(), "m:abc");
        assert!(same_key(&russh::keys::PublicKey::new(cert.public_key().clone(), ""), &public));
    }

    #[test]
    fn two_generated_keys_differ_when_generated_twice() {
        assert_ne!(generate("a").unwrap().fingerprint, generate("a").unwrap().fingerprint);
    }
}
