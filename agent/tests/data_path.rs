//! The data path on this machine, with the real OpenSSH client and rsync: an rsync client jumps through the bastion
//! (`ssh -J`) to an rsync pod's server and pulls a volume; what the agent must refuse is refused and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Lab;
use dr_syncer_agent::keys::generate;
use dr_syncer_agent::progress::Report;
use dr_syncer_testlab::tree;

#[test]
fn pull_copies_the_tree_exactly_and_converges_when_the_source_changes() {
    let lab = Lab::start("copy");
    tree::build(&lab.volume);
    let out = lab.pull("shop", &[]);
    assert!(out.status.success(), "rsync failed: {}", String::from_utf8_lossy(&out.stderr));
    tree::assert_same(&lab.volume, &lab.dest);

    tree::change(&lab.volume);
    let out = lab.pull("shop", &[]);
    assert!(out.status.success(), "incremental rsync failed: {}", String::from_utf8_lossy(&out.stderr));
    tree::assert_same(&lab.volume, &lab.dest);
}

/// The reports of a `dr-syncer-agent copy` run.
fn reports(out: &std::process::Output) -> Vec<Report> {
    String::from_utf8_lossy(&out.stdout).lines().filter_map(Report::from_line).collect()
}

#[test]
fn copy_reports_progress_and_totals_and_fails_verification_when_the_destination_differs() {
    let lab = Lab::start("copyhelper");
    tree::build(&lab.volume);
    let out = lab.copy("shop", "full");
    assert!(out.status.success(), "copy failed: {}", String::from_utf8_lossy(&out.stderr));
    let first = reports(&out);
    assert!(first.iter().any(|r| matches!(r, Report::Progress { .. })), "{first:?}");
    let Some(Report::Done { step, exit_code: 0, bytes_transferred, files_transferred, mismatches: 0, .. }) =
        first.last()
    else {
        panic!("no successful done report: {first:?}");
    };
    assert_eq!(step, "verify");
    assert!(*bytes_transferred > 1 << 20 && *files_transferred >= 5, "{first:?}");
    tree::assert_same(&lab.volume, &lab.dest);

    // A byte changed in the copy with size and time kept: rsync's quick check misses it, verification does not.
    let victim = lab.dest.join("a").join("linked");
    let before = std::fs::metadata(&victim).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&victim).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    // A sample of 100 % and the full check both find it (a smaller sample might miss the one file).
    for mode in ["sample", "full"] {
        let out = lab.copy("shop", mode);
        let done = reports(&out).pop();
        assert_eq!(out.status.code(), Some(100), "{mode}: {done:?}");
        let Some(Report::Done { step, mismatches, message, .. }) = done else { panic!("no done report") };
        assert_eq!((step.as_str(), mismatches), ("verify", 1), "{mode}");
        assert!(message.contains("linked"), "{message}");
    }
}

#[test]
fn agent_refuses_what_a_mapping_key_may_not_do() {
    let lab = Lab::start("refuse");
    tree::build(&lab.volume);
    // A shell on the bastion, and a command other than an rsync sender on the rsync pod.
    assert!(!lab.ssh("shop", "bastion", &["id"]).status.success());
    assert!(!lab.ssh("shop", "target", &["sh", "-c", "id"]).status.success());
    assert!(!lab.ssh("shop", "target", &["rsync", "--server", "--sender", "-r", ".", "/etc/"]).status.success());
    // Another mapping's key cannot reach this mapping's pod; a key nobody listed and a retired key get nowhere.
    assert!(!lab.pull("other", &[]).status.success());
    assert!(!lab.pull("stranger", &[]).status.success());
    assert!(!lab.pull("retired", &[]).status.success());
    // Forwards to anything but the mapping's pods (here the bastion's own metrics port) are refused.
    let forward = format!("127.0.0.1:{}", lab.metrics.port());
    assert!(!lab.ssh_forward("shop", &forward).status.success());
    let metrics = lab.metrics_text();
    for reason in ["RequestNotAllowed", "TargetNotAllowed", "UnknownKey", "KeyRetired"] {
        let count = common::counter(&metrics, "dr_syncer_agent_refusals_total", reason);
        assert!(count >= 1.0, "no refusal counted with reason {reason}:\n{metrics}");
    }
    let serve = lab.serve_logs();
    assert!(serve.iter().any(|l| l.contains("NotRsyncSender")), "{serve:?}");
    assert!(serve.iter().any(|l| l.contains("PathOutsideVolume")), "{serve:?}");
    // Nothing was copied by the refused attempts.
    assert!(std::fs::read_dir(&lab.dest).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn bastion_refuses_a_key_once_it_is_removed_from_the_authorized_set() {
    let lab = Lab::start("rotate");
    tree::build(&lab.volume);
    assert!(lab.pull("shop", &[]).status.success());
    let next = generate("shop:2").unwrap();
    lab.authorize(&[("shop", &next.public_openssh, None)]);
    common::eventually("the removed key to be refused", Duration::from_secs(20), || {
        (!lab.pull("shop", &[]).status.success()).then_some(())
    });
}
