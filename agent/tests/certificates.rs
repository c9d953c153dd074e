//! Per-copy certificates through the bastion with the real OpenSSH client: a certificate signed by the mapping's
//! certificate authority reaches the target its principal names and no other target of the mapping; an expired
//! one, one of an unknown authority, and the authority's own key used as a client key are refused; a connection on
//! a certificate is closed when its authority leaves the policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Lab;
use dr_syncer_wire::keys::{KeyPair, certify, generate, private_from_openssh, public_from_openssh};
use dr_syncer_wire::policy::{AuthorizedSet, TargetSet};

/// A client key with a certificate of `authority` for `principals`, valid `validity` seconds around now, written as
/// `<name>` and `<name>-cert.pub` in the lab's directory; returns the OpenSSH configuration using them.
fn certified(lab: &Lab, name: &str, authority: &KeyPair, principals: &[&str], validity: (i64, i64)) -> PathBuf {
    let client = generate(name).unwrap();
    let path = lab.dir.join(name);
    std::fs::write(&path, client.private_openssh.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ca = private_from_openssh(&authority.private_openssh, "ca").unwrap();
    let public = public_from_openssh(&client.public_openssh, name).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let window = ((now + validity.0) as u64, (now + validity.1) as u64);
    let principals: Vec<String> = principals.iter().map(|p| p.to_string()).collect();
    let cert = certify(&ca, &public, &format!("test:{name}"), &principals, window).unwrap();
    std::fs::write(lab.dir.join(format!("{name}-cert.pub")), cert).unwrap();
    lab.certificate_config(name)
}

/// `ssh -W target bastion` with configuration `config`.
fn forward(config: &Path, target: SocketAddr) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-W", &target.to_string(), "bastion"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn reloads(lab: &Lab) -> f64 {
    common::counter(&lab.metrics_text(), "dr_syncer_agent_policy_reloads_total", "ok")
}

/// Writes the policy and waits until the bastion has loaded it.
fn apply(lab: &Lab, authorized: &AuthorizedSet, targets: &TargetSet) {
    let before = reloads(lab);
    lab.set_targets(targets);
    lab.authorize_set(authorized);
    common::eventually("the policy reload", Duration::from_secs(10), || (reloads(lab) >= before + 1.0).then_some(()));
}

#[test]
fn certificates_reach_only_their_own_target_within_their_validity() {
    let lab = Lab::start("certs");
    let (authority, stranger_ca) = (generate("shop-ca").unwrap(), generate("other-ca").unwrap());
    let serve = lab.serve_addr();
    // A second target of the mapping at the rsync port (nothing listens there): a plain key could reach it.
    let other: SocketAddr = format!("127.0.0.2:{}", serve.port()).parse().unwrap();
    let mut authorized = AuthorizedSet::default();
    authorized.add_authority("shop", &authority.public_openssh, None);
    let mut targets = TargetSet::default();
    targets.targets.insert("shop".into(), vec![serve, other]);
    apply(&lab, &authorized, &targets);

    let serve_text = serve.to_string();
    let good = certified(&lab, "copy-1", &authority, &[&serve_text], (-60, 600));
    let out = forward(&good, serve);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SSH-2.0-"), "the certified target: {}", stderr(&out));
    let refused = || common::counter(&lab.metrics_text(), "dr_syncer_agent_refusals_total", "TargetNotAllowed");
    let before = refused();
    let out = forward(&good, other);
    let after = refused();
    assert!(out.stdout.is_empty() && after == before + 1.0, "a target it does not name: {after} {}", stderr(&out));

    for (config, what) in [
        (certified(&lab, "expired", &authority, &[&serve_text], (-600, -60)), "an expired certificate"),
        (certified(&lab, "early", &authority, &[&serve_text], (300, 600)), "a certificate not valid yet"),
        (certified(&lab, "foreign", &stranger_ca, &[&serve_text], (-60, 600)), "a certificate of an unknown authority"),
        (certified(&lab, "named", &authority, &["shop"], (-60, 600)), "a principal that is no ip:port target"),
    ] {
        let out = forward(&config, serve);
        assert!(stderr(&out).contains("Permission denied (publickey)"), "{what}: {}", stderr(&out));
    }
    // The authority's own key is no client key.
    std::fs::write(lab.dir.join("ca-as-client"), authority.private_openssh.as_bytes()).unwrap();
    std::fs::set_permissions(lab.dir.join("ca-as-client"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    std::fs::write(lab.dir.join("ca-as-client-cert.pub"), "").unwrap();
    let out = forward(&lab.certificate_config("ca-as-client"), serve);
    assert!(stderr(&out).contains("Permission denied (publickey)"), "the authority as a client key: {}", stderr(&out));
    let metrics = lab.metrics_text();
    for reason in ["CertificateInvalid", "UnknownAuthority", "UnknownKey"] {
        assert!(common::counter(&metrics, "dr_syncer_agent_refusals_total", reason) >= 1.0, "{reason}\n{metrics}");
    }

    // Removing the authority refuses its certificates from then on.
    let mut without = AuthorizedSet::default();
    without.add("other", &generate("x").unwrap().public_openssh, None);
    apply(&lab, &without, &targets);
    let out = forward(&good, serve);
    assert!(stderr(&out).contains("Permission denied (publickey)"), "after the authority left: {}", stderr(&out));
}
