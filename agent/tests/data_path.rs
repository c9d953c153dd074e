//! The data path on this machine, with the real OpenSSH client and rsync: an rsync client jumps through the bastion
//! (`ssh -J`) to an rsync pod's server and pulls a volume; what the agent must refuse is refused and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Lab;
use dr_syncer_testlab::tree;
use dr_syncer_wire::keys::generate;
use dr_syncer_wire::progress::Report;

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
    lab.wait_serve_log("NotRsyncSender");
    lab.wait_serve_log("PathOutsideVolume");
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

/// A source directory whose name carries a carriage return and a merge rule (`a\r. FILE`): with a 100 % sample
/// the verification must neither merge a file of the DR side as filter rules (sending its lines to the sender) nor
/// fail; the names are copied like any other.
#[test]
fn sample_verification_never_turns_file_names_into_filter_rules_when_names_carry_line_ends() {
    let lab = Lab::start("samplenames");
    tree::build(&lab.volume);
    let merge = lab.dir.join("merged-by-a-file-name");
    std::fs::write(&merge, "- *\n").unwrap();
    let names =
        [format!("a\r. {}", merge.display()), format!("b\r.- {}", merge.display()), "c\n. /nonexistent".to_string()];
    for name in &names {
        let dir = lab.volume.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inner"), "data\n").unwrap();
    }
    let out = lab.copy("shop", "sample");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let done = reports(&out).pop();
    assert!(out.status.success(), "{done:?} {stderr}");
    let Some(Report::Done { step, mismatches: 0, .. }) = &done else { panic!("{done:?}") };
    assert_eq!(step, "verify");
    assert!(!stderr.contains("merge"), "a file name became a merge rule: {stderr}");
    for name in &names {
        assert_eq!(std::fs::read_to_string(lab.dest.join(name).join("inner")).unwrap(), "data\n");
    }
    tree::assert_same(&lab.volume, &lab.dest);
}

/// An OpenSSH master connection to `host` (`bastion` or `target`) with `key`, for channels opened later on the
/// same connection.
struct Master {
    child: std::process::Child,
    control: std::path::PathBuf,
    config: std::path::PathBuf,
    host: &'static str,
}

impl Master {
    fn open(lab: &Lab, key: &str) -> Master {
        Master::open_to(lab, key, "bastion")
    }

    fn open_to(lab: &Lab, key: &str, host: &'static str) -> Master {
        let control = lab.dir.join(format!("control-{key}-{host}"));
        let config = lab.ssh_config(key);
        let child = std::process::Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .args(["-M", "-N", "-S"])
            .arg(&control)
            .arg(host)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let master = Master { child, control, config, host };
        common::eventually("the master connection", Duration::from_secs(20), || master.check().then_some(()));
        master
    }

    /// `ssh -O check`: the master connection is up.
    fn check(&self) -> bool {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.control)
            .args(["-O", "check", self.host])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A direct-tcpip channel to `target` on the master connection; true when the rsync pod's banner came back.
    fn forward(&self, target: std::net::SocketAddr) -> bool {
        let out = std::process::Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.control)
            .args(["-W", &target.to_string(), self.host])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).starts_with("SSH-2.0-")
    }

    /// Runs `command` in a new session channel on the master connection; returns ssh's output.
    fn run(&self, command: &[&str]) -> std::process::Output {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.control)
            .arg(self.host)
            .args(command)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection that authenticated before its key was removed from the policy opens no new channel and is closed.
#[test]
fn bastion_closes_a_connection_when_its_key_leaves_the_policy() {
    let lab = Lab::start("revoke");
    let mut master = Master::open(&lab, "shop");
    assert!(master.forward(lab.serve_addr()), "a channel to the mapping's pod while the key is listed");
    let next = generate("shop:2").unwrap();
    lab.authorize(&[("shop", &next.public_openssh, None)]);
    common::eventually("the connection to be closed", Duration::from_secs(20), || master.exited().then_some(()));
    assert!(!master.forward(lab.serve_addr()), "no channel after the key was removed");
    lab.wait_bastion_log("closing a connection whose key is refused now");
}

/// A key listed with a `notAfter` a few seconds ahead: the connection it opened is closed when that time passes,
/// with no change to the policy.
#[test]
fn bastion_closes_a_connection_when_its_key_passes_not_after() {
    let lab = Lab::start("expire");
    let shop = std::fs::read_to_string(lab.dir.join("id_shop")).unwrap();
    let public = dr_syncer_wire::keys::private_from_openssh(&shop, "shop").unwrap().public_key().to_openssh().unwrap();
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let reloads = || common::counter(&lab.metrics_text(), "dr_syncer_agent_policy_reloads_total", "ok");
    let before = reloads();
    lab.authorize(&[("shop", &public, Some(&end.to_string()))]);
    common::eventually("the policy reload", Duration::from_secs(10), || (reloads() > before).then_some(()));
    let mut master = Master::open(&lab, "shop");
    assert!(master.forward(lab.serve_addr()));
    common::eventually("the connection to be closed at notAfter", Duration::from_secs(20), || {
        master.exited().then_some(())
    });
    assert!(jiff::Timestamp::now() >= end, "closed before notAfter");
}

/// The rsync pod's server runs one command per connection: a second session channel on the same connection is
/// refused, even after the first command ended.
#[test]
fn rsync_pod_refuses_a_second_session_on_one_connection() {
    let lab = Lab::start("onesession");
    let master = Master::open_to(&lab, "shop", "target");
    let volume = lab.volume.to_str().unwrap().to_string();
    let sender = ["rsync", "--server", "--sender", "-r", ".", volume.as_str()];
    let first = master.run(&sender);
    let refused = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).contains("Session open refused");
    assert!(!refused(&first), "{first:?}");
    let second = master.run(&sender);
    assert!(refused(&second), "the second session was opened: {}", String::from_utf8_lossy(&second.stderr));
    lab.wait_serve_log("a second session on one connection");
}

/// The deletion guard: when the source loses 80 % of the files, the copy deletes nothing in DR (new files still
/// arrive) and says why with exit code 103; within the guard, or approved (100 %), deletions go through.
#[test]
fn deletion_guard_keeps_dr_files_when_the_source_loses_most_of_them() {
    let lab = Lab::start("deleteguard");
    let dir = lab.volume.join("records");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..50 {
        std::fs::write(dir.join(format!("r{i:02}")), format!("record {i}\n")).unwrap();
    }
    let guard = ["--max-delete-percent", "50"];
    assert!(lab.copy_with("shop", "none", &guard).status.success());
    let count = || std::fs::read_dir(lab.dest.join("records")).unwrap().count();
    assert_eq!(count(), 50);

    // 40 of 50 files gone in the source (a wipe), one new file.
    for i in 0..40 {
        std::fs::remove_file(dir.join(format!("r{i:02}"))).unwrap();
    }
    std::fs::write(dir.join("new"), "new\n").unwrap();
    let out = lab.copy_with("shop", "none", &guard);
    let done = reports(&out).pop();
    assert_eq!(out.status.code(), Some(103), "{done:?}");
    let Some(Report::Done { exit_code: 103, message, .. }) = &done else { panic!("{done:?}") };
    assert!(message.contains("40 of the") && message.contains("approve"), "{message}");
    assert_eq!(count(), 51, "nothing deleted, the new file copied");

    // Approved (the guard off): the deletions go through.
    assert!(lab.copy_with("shop", "full", &["--max-delete-percent", "100"]).status.success());
    assert_eq!(count(), 11);
    // Within the guard: 2 of 11 entries.
    for i in 40..42 {
        std::fs::remove_file(dir.join(format!("r{i:02}"))).unwrap();
    }
    let out = lab.copy_with("shop", "none", &guard);
    assert!(out.status.success(), "{:?}", reports(&out));
    assert_eq!(count(), 9);
    let names = |d: &std::path::Path| {
        let mut n: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&dir), names(&lab.dest.join("records")));
}
