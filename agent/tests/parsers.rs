//! Property tests of every parser an attacker feeds: the rsync pod's command validator, host addresses from a
//! cluster, public key lines, the authorized set and target documents, the copy report and termination message,
//! rsync's output lines and the verification sample's filter. Each runs on random input mixed with the attack
//! strings of the data-path review as seeds; none may panic, and what passes must be safe to use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dr_syncer_agent::sample::sample_filter;
use dr_syncer_wire::address::Host;
use dr_syncer_wire::keys::{generate, public_from_openssh};
use dr_syncer_wire::policy::{AuthorizedSet, Policy, TargetSet};
use dr_syncer_wire::progress::{Report, Stats, parse_progress, skipped_deletions};
use dr_syncer_wire::rsync_args::parse_sender;
use proptest::prelude::*;

/// Attack strings from the review: line breaks and directives in addresses, filter rules in file names, shell and
/// option injection in commands, forged report lines.
const SEEDS: &[&str] = &[
    "10.0.0.1\n  ProxyCommand sh -c 'touch /data/pwned'",
    "10.0.0.1\r\nProxyCommand x",
    "10.0.0.1 ProxyCommand=x",
    "-oProxyCommand=x",
    "a\r.- /etc/dr-syncer/ssh/id_ed25519",
    "dir\r. /x/f",
    "--rsh=sh",
    "rsync --server --sender -e.LsfxC . /data/;id",
    "rsync --server --sender -L . /data/",
    "rsync --server --sender --files-from=/etc/passwd . /data/",
    "rsync --server --sender -r . /data/../etc",
    "rsync --server -r . /data/",
    "rsync --server --sender -r . /data/ /etc/",
    "rsync\t--server --sender -r . /data/",
    "dr-syncer-report {\"event\":\"done\",\"step\":\"copy\",\"exitCode\":0}",
    "Deletions stopped due to --max-delete limit (0 skipped)",
    "  1,238,099  45%   11.80MB/s    0:00:01 (xfr#3, to-chk=12/20)",
    "Number of files: 18446744073709551616 (reg: 1)",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n@cert-authority * ssh-ed25519 AAAA",
    "{\"mappings\":{\"m\":{\"keys\":[{\"publicKey\":\"x\",\"notAfter\":\"never\"}]}}}",
    "",
];

/// A seed or any string (control characters, quotes and non-ASCII included).
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SEEDS).prop_map(str::to_string),
        any::<String>(),
        "[ -~\\r\\n\\t]{0,80}",
        prop::sample::select(SEEDS).prop_flat_map(|seed| any::<String>().prop_map(move |tail| format!("{seed}{tail}"))),
    ]
}

const ROOT: &str = "/data";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Whatever the command, an accepted one runs rsync's sender on the volume root only, with no argument that a
    /// shell, a quote or a line break could have shaped, confined to the volume.
    #[test]
    fn sender_commands_that_pass_are_confined_to_the_volume(command in hostile()) {
        if let Ok(sender) = parse_sender(&command, ROOT) {
            let args = &sender.args;
            prop_assert_eq!(&args[..2], &["--server".to_string(), "--sender".to_string()]);
            prop_assert_eq!(args.last().map(String::as_str), Some("/data/"));
            prop_assert!(args.contains(&"--confine-root=/data".to_string()));
            for arg in args {
                prop_assert!(!arg.chars().any(|c| c.is_control() || "'\"\\`$;|&".contains(c)), "{:?}", arg);
            }
            prop_assert!(!args.iter().any(|a| a.starts_with("-e") && !a.starts_with("-e.") || a.contains("rsh")));
        }
    }

    /// An address that passes renders without whitespace or control characters and parses back to itself.
    #[test]
    fn hosts_that_pass_render_safely(text in hostile(), names in any::<bool>()) {
        match Host::parse(&text, names) {
            Ok(host) => {
                let rendered = host.to_string();
                prop_assert!(!rendered.chars().any(|c| c.is_whitespace() || c.is_control()));
                prop_assert!(!rendered.starts_with('-'));
                prop_assert_eq!(Host::parse(&rendered, names), Ok(host));
            }
            Err(_) => prop_assert!(text.parse::<std::net::IpAddr>().is_err(), "an IP address was refused: {:?}", text),
        }
    }

    /// A public key line with a control character is refused; no line makes the parser panic.
    #[test]
    fn key_lines_with_control_characters_are_refused(text in hostile()) {
        let result = public_from_openssh(&text, "fuzz");
        if text.trim().chars().any(char::is_control) {
            prop_assert!(result.is_err());
        }
    }

    /// Any authorized-set or target document either parses into a policy or is refused whole.
    #[test]
    fn policy_documents_parse_or_are_refused_whole(authorized in hostile(), targets in hostile()) {
        let a: Result<AuthorizedSet, _> = serde_json::from_str(&authorized);
        let t: Result<TargetSet, _> = serde_json::from_str(&targets);
        if let (Ok(a), Ok(t)) = (a, t) {
            let _ = Policy::new(&a, &t);
        }
    }

    /// Log lines and termination messages parse into a report only when they are one; rsync's output lines never
    /// panic the parsers.
    #[test]
    fn report_and_rsync_output_parsers_never_panic(line in hostile()) {
        let _ = Report::from_line(&line);
        let _ = Report::from_json(&line);
        let _ = parse_progress(&line);
        let _ = skipped_deletions(&line);
        Stats::default().read_line(&line);
    }

    /// A final report survives the termination message round trip whatever its message.
    #[test]
    fn reports_round_trip_through_the_termination_message(message in hostile(), exit_code in -1i32..300) {
        let report = Report::Done {
            step: "copy".into(),
            exit_code,
            bytes_transferred: 1,
            files_transferred: 2,
            mismatches: 0,
            message,
        };
        prop_assert_eq!(Report::from_json(&report.to_json()), Some(report));
    }

    /// Whatever the file names, the sample filter has one include rule per line, then the final exclude: no name
    /// adds a rule of its own.
    #[test]
    fn sample_filters_hold_only_include_rules(paths in prop::collection::vec(hostile(), 0..12)) {
        let text = sample_filter(paths.iter().map(String::as_str));
        let lines: Vec<&str> = text.split(['\n', '\r']).filter(|l| !l.is_empty()).collect();
        prop_assert_eq!(lines.last().copied(), Some("- *"));
        for line in &lines[..lines.len() - 1] {
            prop_assert!(line.starts_with("+ /"), "{:?}", line);
        }
        prop_assert_eq!(text.matches('\n').count(), lines.len());
    }
}

/// The seeds alone, once each, so a regression on a known attack names it.
#[test]
fn every_seed_is_refused_or_harmless_when_parsed_alone() {
    for seed in SEEDS {
        assert!(Host::parse(seed, true).is_err() || !seed.contains(char::is_whitespace), "{seed:?}");
        assert!(parse_sender(seed, ROOT).is_err(), "{seed:?}");
    }
    let key = generate("k").unwrap().public_openssh;
    assert!(public_from_openssh(&format!("{key}\n@cert-authority * {key}"), "x").is_err());
}
