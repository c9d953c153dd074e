#![allow(clippy::unwrap_used)]

use super::*;

fn input(pvc: &str) -> CopyInput {
    CopyInput {
        mapping: ("ops".into(), "shop".into()),
        sync_id: "a1b2c3d4".into(),
        pvc: pvc.into(),
        source_namespace: "shop".into(),
        destination_namespace: "shop-dr".into(),
        node: Some("node-1".into()),
        image: "localhost/dr-syncer/agent:1".into(),
        timeout: Duration::from_secs(1800),
        options: vec!["-aHAXS".into(), "--exclude=-x y".into()],
        verify: VerificationMode::Sample,
        sample_percent: 10,
        special_files: false,
        max_delete_percent: Some(50),
    }
}

#[test]
fn object_names_are_dns_labels_when_pvc_names_are_odd() {
    let label = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$").unwrap();
    for pvc in ["data", "a.b.c", &"x".repeat(253), "-dash.", "UPPER"] {
        for role in [ROLE_SOURCE, ROLE_COPY] {
            let name = object_name(role, &input(pvc));
            assert!(label.is_match(&name), "{name}");
        }
    }
}

#[test]
fn source_pod_is_pinned_read_only_and_minimal_when_the_pvc_is_attached() {
    let pod = serde_json::to_value(source_pod(&input("data"), Duration::from_secs(600))).unwrap();
    let spec = &pod["spec"];
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"]
            [0]["values"][0],
        "node-1"
    );
    assert_eq!(spec["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);
    assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
    let security = &spec["containers"][0]["securityContext"];
    assert_eq!(security["capabilities"]["add"], serde_json::json!(["DAC_READ_SEARCH"]));
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    let mut unattached = input("data");
    unattached.node = None;
    let pod = serde_json::to_value(source_pod(&unattached, Duration::from_secs(600))).unwrap();
    assert!(pod["spec"].get("affinity").is_none());
}

#[test]
fn copy_job_passes_options_as_separate_arguments_when_names_are_hostile() {
    let job = serde_json::to_value(copy_job(&input("data"))).unwrap();
    let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<String> = serde_json::from_value(args.clone()).unwrap();
    let dashes = args.iter().position(|a| a == "--").unwrap();
    assert_eq!(&args[dashes + 1..], ["-aHAXS", "--exclude=-x y"]);
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 1800);
}

#[test]
fn rsync_options_refuse_what_is_not_allowed_when_listed() {
    let mut config = DataSyncConfig {
        exclude_paths: Some(vec!["cache/".into(), "--delete-everything".into()]),
        bandwidth_limit: Some(1024),
        rsync_options: Some(vec!["--compress".into()]),
        ..DataSyncConfig::default()
    };
    let options = rsync_options(&config, VerificationMode::Full).unwrap();
    assert!(options.contains(&"--exclude=--delete-everything".to_string()), "an exclude stays one argument");
    assert!(options.contains(&"--bwlimit=1024".to_string()) && options.contains(&"--checksum".to_string()));
    for bad in ["--rsh=sh", "-e", "--remove-source-files", "--files-from=/etc/passwd"] {
        config.rsync_options = Some(vec![bad.into()]);
        assert!(rsync_options(&config, VerificationMode::None).is_err(), "{bad}");
    }
    config.rsync_options = None;
    config.exclude_paths = Some(vec!["a\nb".into()]);
    assert!(rsync_options(&config, VerificationMode::None).is_err());
}

#[test]
fn ssh_files_pin_both_host_keys_by_alias_when_written() {
    let agent = dr_syncer_wire::address::Host::parse("10.250.0.11", false).unwrap();
    let config = ssh_config("10.97.0.9".parse().unwrap(), (&agent, 2222));
    assert!(config.contains("StrictHostKeyChecking yes") && !config.contains("StrictHostKeyChecking no"));
    assert!(config.contains("HostName 10.97.0.9") && config.contains("ProxyJump agent"));
    let generate = |c: &str| dr_syncer_wire::keys::generate(c).unwrap().public_openssh;
    let (a, b, p) = (generate("agent@x"), generate("agent@y"), generate("p"));
    let strip = |line: &str| line.rsplit_once(' ').unwrap().0.to_string();
    let known = known_hosts(&[&a], &p).unwrap();
    assert_eq!(known, format!("dr-syncer-agent {}\ndr-syncer-rsync-pod {}\n", strip(&a), strip(&p)));
    // Behind a Service any agent may answer: each one's key is pinned under the alias.
    let known = known_hosts(&[&a, &b], &p).unwrap();
    let expected =
        format!("dr-syncer-agent {}\ndr-syncer-agent {}\ndr-syncer-rsync-pod {}\n", strip(&a), strip(&b), strip(&p));
    assert_eq!(known, expected);
}

/// A host key line that carries a second line (a directive or another host) is refused, never pasted.
#[test]
fn known_hosts_refuses_a_key_line_when_it_carries_more_than_a_key() {
    let key = dr_syncer_wire::keys::generate("k").unwrap().public_openssh;
    for bad in [format!("{key}\n* ssh-ed25519 AAAAother"), "ssh-ed25519 AAAA@cert-authority".to_string(), String::new()]
    {
        assert!(known_hosts(&[&bad], &key).is_err(), "{bad:?}");
        assert!(known_hosts(&[&key, &bad], &key).is_err(), "{bad:?}");
        assert!(known_hosts(&[&key], &bad).is_err(), "{bad:?}");
    }
}

/// Device files and setgid bits of foreign groups are opt-in: only then the copy pod gets MKNOD and FSETID and rsync
/// `-D`; `security.*` xattrs are never copied; the deletion guard reaches the copy program.
#[test]
fn copy_is_least_privileged_and_guarded_when_special_files_are_off() {
    let caps = |input: &CopyInput| {
        let job = serde_json::to_value(copy_job(input)).unwrap();
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        let caps: Vec<String> =
            serde_json::from_value(container["securityContext"]["capabilities"]["add"].clone()).unwrap();
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
        (caps, args)
    };
    let (plain, args) = caps(&input("data"));
    assert_eq!(plain, ["CHOWN", "DAC_OVERRIDE", "FOWNER"]);
    assert!(args.windows(2).any(|w| w == ["--max-delete-percent", "50"]), "{args:?}");
    let mut special = input("data");
    special.special_files = true;
    special.max_delete_percent = None;
    let (caps_special, args_special) = caps(&special);
    assert!(caps_special.contains(&"MKNOD".to_string()) && caps_special.contains(&"FSETID".to_string()));
    assert!(!args_special.iter().any(|a| a == "--max-delete-percent"));

    let mut config = DataSyncConfig::default();
    let options = rsync_options(&config, VerificationMode::None).unwrap();
    assert_eq!(options[0], "-rlptgoHAXS");
    assert!(options.contains(&SECURITY_XATTRS_FILTER.to_string()));
    config.special_files = Some(true);
    assert_eq!(rsync_options(&config, VerificationMode::None).unwrap()[0], "-rlptgoDHAXS");
}
