//! Why a PVC copy failed, and whether trying again can help. Classification is pure: it reads the copy pod's final
//! report (rsync's exit code and the tail of what rsync and ssh printed).

use dr_syncer_wire::progress::Report;
use dr_syncer_wire::progress::{EXIT_DELETE_GUARD, EXIT_VERIFY_FAILED};

/// A failed copy attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Short CamelCase reason for status, events and metric labels.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
    /// Trying again cannot help until something changes (keys, space, the PVC, the mapping).
    pub permanent: bool,
}

impl Failure {
    /// A failure worth retrying.
    pub fn transient(reason: &'static str, message: impl Into<String>) -> Failure {
        Failure { reason, message: message.into(), permanent: false }
    }

    /// A failure retrying cannot fix.
    pub fn permanent(reason: &'static str, message: impl Into<String>) -> Failure {
        Failure { reason, message: message.into(), permanent: true }
    }
}

impl From<crate::error::Error> for Failure {
    /// An API error keeps what the API server said (a refused permission names the verb and resource to grant),
    /// with reason `Forbidden` or `Unauthorized` for those answers.
    fn from(error: crate::error::Error) -> Failure {
        if let crate::error::Error::Api { source: kube::Error::Api(status), .. } = &error {
            let reason = match status.code {
                401 => "Unauthorized",
                403 => "Forbidden",
                _ => error.reason(),
            };
            return Failure::transient(reason, format!("{error}: {}", status.message));
        }
        Failure::transient(error.reason(), error.to_string())
    }
}

/// What a successful copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes of file data sent.
    pub bytes: u64,
    /// Regular files sent.
    pub files: u64,
}

/// Texts in rsync's or ssh's output that decide the class of a failure, first match wins.
const PATTERNS: &[(&str, &str, bool)] = &[
    ("No space left on device", "NoSpace", true),
    ("Disk quota exceeded", "NoSpace", true),
    ("Permission denied (publickey", "AuthRefused", true),
    // Transient: a retry pins the keys read anew, so an agent or pod that restarted in between is taken; a host
    // that keeps presenting another key keeps failing, with this reason.
    ("Host key verification failed", "HostKeyMismatch", false),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "HostKeyMismatch", false),
    ("Read-only file system", "DestinationReadOnly", true),
    ("administratively prohibited", "TargetRefused", false),
    ("Connection refused", "Network", false),
    ("Connection timed out", "Network", false),
    ("No route to host", "Network", false),
    ("Connection reset", "Network", false),
    ("Connection closed", "Network", false),
    ("connection unexpectedly closed", "Network", false),
    ("Broken pipe", "Network", false),
    ("Timeout, server", "Network", false),
];

/// Classifies the copy pod's final report; `None` when the pod ended without one (killed, evicted, out of memory),
/// with `pod_reason` saying what Kubernetes reported.
pub fn classify(report: Option<&Report>, pod_reason: &str) -> Result<Totals, Failure> {
    let Some(Report::Done { step, exit_code, bytes_transferred, files_transferred, mismatches, message }) = report
    else {
        return Err(Failure::transient("CopyPodFailed", format!("the copy pod ended without a report: {pod_reason}")));
    };
    let totals = Totals { bytes: *bytes_transferred, files: *files_transferred };
    let tail = last_lines(message, 6);
    if matches!(exit_code, 0 | 24) {
        return Ok(totals);
    }
    if *exit_code == EXIT_DELETE_GUARD {
        return Err(Failure::permanent("MassDeletion", message.clone()));
    }
    if *exit_code == EXIT_VERIFY_FAILED {
        return Err(Failure::transient("VerificationFailed", format!("{mismatches} files differ: {message}")));
    }
    let what = format!("rsync {step} exit code {exit_code}: {tail}");
    if let Some((_, reason, permanent)) = PATTERNS.iter().find(|(needle, _, _)| message.contains(needle)) {
        return Err(Failure { reason, message: what, permanent: *permanent });
    }
    Err(match exit_code {
        1 | 2 | 4 => Failure::permanent("RsyncUsage", what),
        10 | 12 | 30 | 35 | 255 => Failure::transient("Network", what),
        11 => Failure::transient("FileIo", what),
        20 => Failure::transient("Interrupted", what),
        23 => Failure::transient("PartialTransfer", what),
        _ => Failure::transient("RsyncFailed", what),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_the_servers_words_and_name_refused_permissions() {
        let api = |code: u16, message: &str| crate::error::Error::Api {
            what: "log of Pod p".into(),
            source: kube::Error::Api(Box::new(kube::core::Status::failure(message, "").with_code(code))),
        };
        let cases = [(403, "Forbidden"), (401, "Unauthorized"), (500, "ApiError")];
        for (code, reason) in cases {
            let failure = Failure::from(api(code, "pods \"p\" is forbidden: cannot get resource \"pods/log\""));
            assert_eq!((failure.reason, failure.permanent), (reason, false), "{code}");
            assert!(failure.message.contains("log of Pod p") && failure.message.contains("pods/log"), "{failure:?}");
        }
    }

    fn done(exit_code: i32, message: &str) -> Report {
        Report::Done {
            step: "copy".into(),
            exit_code,
            bytes_transferred: 7,
            files_transferred: 2,
            mismatches: 0,
            message: message.into(),
        }
    }

    #[test]
    fn classify_sorts_failures_into_reasons_when_rsync_ends() {
        type Expected = Result<(), (&'static str, bool)>;
        let cases: &[(i32, &str, Expected)] = &[
            (0, "", Ok(())),
            (24, "file has vanished: \"/data/x\"", Ok(())),
            (11, "rsync: write failed on \"/data/big\": No space left on device (28)", Err(("NoSpace", true))),
            (255, "dr-syncer@source: Permission denied (publickey).", Err(("AuthRefused", true))),
            (255, "Host key verification failed.", Err(("HostKeyMismatch", false))),
            (255, "channel 0: open failed: administratively prohibited: ", Err(("TargetRefused", false))),
            (255, "ssh: connect to host 10.0.0.1 port 2222: Connection refused", Err(("Network", false))),
            (12, "rsync: connection unexpectedly closed (0 bytes received so far)", Err(("Network", false))),
            (1, "rsync: --bogus: unknown option", Err(("RsyncUsage", true))),
            (23, "rsync: some files/attrs were not transferred", Err(("PartialTransfer", false))),
            (100, "1 differences", Err(("VerificationFailed", false))),
            (103, "the source no longer has 40 of the 51 entries", Err(("MassDeletion", true))),
        ];
        for (code, message, expected) in cases {
            let got = classify(Some(&done(*code, message)), "").map(|_| ()).map_err(|f| (f.reason, f.permanent));
            assert_eq!(&got, expected, "{code} {message}");
        }
    }

    #[test]
    fn classify_reports_the_pod_reason_when_no_report_came() {
        let failure = classify(None, "OOMKilled").unwrap_err();
        assert_eq!((failure.reason, failure.permanent), ("CopyPodFailed", false));
        assert!(failure.message.contains("OOMKilled"));
    }
}
