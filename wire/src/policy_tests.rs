use super::*;
use crate::keys::{generate, public_from_openssh};

fn set(entries: &[(&str, &str, Option<&str>)]) -> AuthorizedSet {
    let mut out = AuthorizedSet::default();
    for (mapping, key, not_after) in entries {
        out.add(mapping, key, *not_after);
    }
    out
}

fn targets(entries: &[(&str, &str)]) -> TargetSet {
    let mut out = TargetSet::default();
    for (mapping, addr) in entries {
        out.targets.entry(mapping.to_string()).or_default().push(addr.parse().unwrap());
    }
    out
}

fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

#[test]
fn identify_finds_the_mapping_when_the_key_is_listed() {
    let (a, b) = (generate("a").unwrap(), generate("b").unwrap());
    let policy =
        Policy::new(&set(&[("shop", &a.public_openssh, None), ("db", &b.public_openssh, None)]), &targets(&[]))
            .unwrap();
    let key = public_from_openssh(&b.public_openssh, "b").unwrap();
    let identity = policy.identify(&key, now()).unwrap();
    assert_eq!(identity.mapping, "db");
    assert_eq!(identity.fingerprint, b.fingerprint);
}

#[test]
fn identify_refuses_when_the_key_is_unknown_or_retired() {
    let (current, retired, stranger) = (generate("c").unwrap(), generate("r").unwrap(), generate("s").unwrap());
    let authorized = set(&[
        ("shop", &current.public_openssh, Some("2026-11-24T00:00:00Z")),
        ("shop", &retired.public_openssh, Some("2026-11-23T11:59:59Z")),
    ]);
    let policy = Policy::new(&authorized, &targets(&[])).unwrap();
    let key = |pair: &crate::keys::KeyPair| public_from_openssh(&pair.public_openssh, "k").unwrap();
    assert!(policy.identify(&key(&current), now()).is_ok());
    assert_eq!(policy.identify(&key(&retired), now()), Err(Refusal::KeyRetired));
    assert_eq!(policy.identify(&key(&stranger), now()), Err(Refusal::UnknownKey));
}

#[test]
fn new_refuses_the_whole_set_when_one_key_is_malformed() {
    let good = generate("g").unwrap();
    let cases = [
        set(&[("shop", &good.public_openssh, None), ("db", "ssh-ed25519 AAAA", None)]),
        set(&[("shop", &good.public_openssh, Some("yesterday"))]),
        set(&[("shop", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7", None)]),
    ];
    for authorized in cases {
        let err = Policy::new(&authorized, &targets(&[])).unwrap_err();
        assert!(matches!(err.reason(), "InvalidKey" | "InvalidPolicy" | "UnsupportedKeyAlgorithm"), "{err}");
    }
}

#[test]
fn target_allows_only_the_mappings_own_pods() {
    let policy =
        Policy::new(&AuthorizedSet::default(), &targets(&[("shop", "10.97.0.5:2022"), ("db", "10.97.0.6:2022")]))
            .unwrap();
    let shop = Identity { mapping: "shop".into(), fingerprint: "SHA256:x".into(), not_after: None, targets: None };
    assert_eq!(policy.target(&shop, "10.97.0.5", 2022), Ok("10.97.0.5:2022".parse().unwrap()));
    let refused: &[(&str, u32, &str)] = &[
        ("10.97.0.6", 2022, "TargetNotAllowed"),
        ("10.97.0.5", 22, "TargetNotAllowed"),
        ("10.97.0.5", 70_000, "TargetNotAllowed"),
        ("10.250.0.1", 443, "TargetNotAllowed"),
        ("127.0.0.1", 2022, "TargetNotAllowed"),
        ("kubernetes.default", 443, "TargetNotAnAddress"),
        ("rsync-pod.shop.svc", 2022, "TargetNotAnAddress"),
    ];
    for (host, port, reason) in refused {
        assert_eq!(policy.target(&shop, host, *port).unwrap_err().reason(), *reason, "{host}:{port}");
    }
    let unknown = Identity { mapping: "other".into(), fingerprint: "SHA256:y".into(), not_after: None, targets: None };
    assert!(policy.target(&unknown, "10.97.0.5", 2022).is_err());
}

#[test]
fn authorized_set_reads_the_documented_json_when_parsed() {
    let text = r#"{"mappings": {"shop": {"keys": [{"publicKey": "ssh-ed25519 AAAA x", "notAfter": "2026-11-24T00:00:00Z"}]}}}"#;
    let parsed: AuthorizedSet = serde_json::from_str(text).unwrap();
    assert_eq!(parsed.mappings["shop"].keys[0].not_after.as_deref(), Some("2026-11-24T00:00:00Z"));
}
