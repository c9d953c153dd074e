//! The DR copy pod's report format and the parsing of rsync's own output into it. `dr-syncer-agent copy` prints one
//! JSON [`Report`] per line on stdout; the controller follows the pod's log and reads them, so progress reaches it
//! while the copy runs. Parsing is pure, so every rsync output shape has a unit test.

use serde::{Deserialize, Serialize};

/// One line of the copy pod's log that the controller reads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Report {
    /// The copy is running.
    #[serde(rename_all = "camelCase")]
    Progress {
        /// Bytes handled so far.
        bytes: u64,
        /// Percent of the volume handled.
        percent: u8,
        /// Current rate as rsync prints it.
        rate: String,
        /// Files sent so far.
        files: u64,
    },
    /// The copy (and the verification, if any) ended.
    #[serde(rename_all = "camelCase")]
    Done {
        /// Which step ended it: `copy` or `verify`.
        step: String,
        /// rsync's exit code (255: ssh failed; -1: rsync could not be started or was killed).
        exit_code: i32,
        /// Bytes of file data sent (rsync's "Total transferred file size").
        bytes_transferred: u64,
        /// Regular files sent.
        files_transferred: u64,
        /// Differences verification found (0 when it passed or did not run).
        mismatches: u64,
        /// The last lines rsync and ssh wrote to stderr, and the first differing paths of a failed verification.
        message: String,
    },
}

/// Exit code of `dr-syncer-agent copy` when rsync could not be started or was killed.
pub const EXIT_NOT_RUN: i32 = 102;
/// Exit code of `dr-syncer-agent copy` when the verification after the copy failed (outside rsync's own codes).
pub const EXIT_VERIFY_FAILED: i32 = 100;
/// Exit code of `dr-syncer-agent copy` when the result could not be written to `--result-file`.
pub const EXIT_NO_RESULT: i32 = 101;
/// Exit code of `dr-syncer-agent copy` when the deletion guard held back the copy's deletions.
pub const EXIT_DELETE_GUARD: i32 = 103;

/// Prefix of every report line, so other log lines are never mistaken for one.
pub const REPORT_PREFIX: &str = "dr-syncer-report ";

impl Report {
    /// The report as one log line.
    pub fn to_line(&self) -> String {
        format!("{REPORT_PREFIX}{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// The report in a log line, if it is one.
    pub fn from_line(line: &str) -> Option<Report> {
        let json = line.trim_end().strip_prefix(REPORT_PREFIX)?;
        serde_json::from_str(json).ok()
    }

    /// The report as JSON alone (the termination message of the copy pod).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report in a termination message, if it is one.
    pub fn from_json(text: &str) -> Option<Report> {
        serde_json::from_str(text.trim()).ok()
    }

    /// The exit code `dr-syncer-agent copy` ends with after this report: 0 for rsync's 0 and 24 (files that
    /// vanished during the copy), else rsync's code (or the verification's) up to 255, and [`EXIT_NOT_RUN`] when
    /// rsync could not be run (a negative code); progress reports are not final (-1).
    pub fn process_exit_code(&self) -> i32 {
        match self {
            Report::Progress { .. } => -1,
            Report::Done { exit_code: 24, .. } => 0,
            Report::Done { exit_code, .. } if *exit_code < 0 => EXIT_NOT_RUN,
            Report::Done { exit_code, .. } => (*exit_code).min(255),
        }
    }
}

/// The number in rsync's `Deletions stopped due to --max-delete limit (N skipped)` warning.
pub fn skipped_deletions(line: &str) -> Option<u64> {
    let rest = line.trim().strip_prefix("Deletions stopped due to --max-delete limit (")?;
    parse_number(rest.strip_suffix(" skipped)")?)
}

/// One `--info=progress2` line: `  1,238,099  45%   11.80MB/s    0:00:01 (xfr#3, to-chk=12/20)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressLine {
    /// Bytes handled so far.
    pub bytes: u64,
    /// Share of the transfer done, as rsync estimates it (0–100).
    pub percent: u8,
    /// Rate as printed.
    pub rate: String,
    /// Files sent so far (`xfr#N`), when printed.
    pub files: Option<u64>,
}

/// Parses a `--info=progress2` line; `None` for any other line.
pub fn parse_progress(line: &str) -> Option<ProgressLine> {
    let mut words = line.split_whitespace();
    let bytes = parse_number(words.next()?)?;
    let percent = words.next()?.strip_suffix('%')?.parse::<u8>().ok()?;
    let rate = words.next()?;
    if !rate.ends_with("/s") {
        return None;
    }
    let files = line
        .split_once("xfr#")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    Some(ProgressLine { bytes, percent: percent.min(100), rate: rate.to_string(), files })
}

/// The totals of rsync's `--stats` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// "Number of regular files transferred".
    pub files_transferred: u64,
    /// "Total transferred file size".
    pub bytes_transferred: u64,
    /// "Number of files": every entry of the source (files, directories, links, the root).
    pub files_total: u64,
}

impl Stats {
    /// Takes the numbers of a `--stats` line, ignoring every other line.
    pub fn read_line(&mut self, line: &str) {
        let Some((label, value)) = line.split_once(':') else { return };
        let number = value.split_whitespace().next().and_then(parse_number);
        match (label.trim(), number) {
            ("Number of regular files transferred", Some(n)) => self.files_transferred = n,
            ("Total transferred file size", Some(n)) => self.bytes_transferred = n,
            ("Number of files", Some(n)) => self.files_total = n,
            _ => {}
        }
    }
}

/// Whether a line of `--itemize-changes` output of a verification dry run reports a difference. rsync itemizes
/// every changed or missing item; `*deleting` marks an extra file at the destination.
pub fn is_difference(line: &str) -> bool {
    let Some(code) = line.split_whitespace().next() else { return false };
    if code == "*deleting" {
        return true;
    }
    let bytes = code.as_bytes();
    // YXcstpoguax: Y is <, >, c, h, ., *; X the file type. `.` with all-dots attributes is an unchanged item.
    bytes.len() >= 11
        && matches!(bytes[0], b'<' | b'>' | b'c' | b'h' | b'.' | b'*')
        && matches!(bytes[1], b'f' | b'd' | b'L' | b'D' | b'S')
        && !(bytes[0] == b'.' && bytes[2..].iter().all(|b| *b == b'.' || *b == b' '))
}

fn parse_number(text: &str) -> Option<u64> {
    let digits: String = text.chars().filter(|c| *c != ',' && *c != '.').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_progress_reads_each_rsync_line_shape_when_given() {
        let cases = [
            (
                "  1,238,099  45%   11.80MB/s    0:00:01 (xfr#3, to-chk=12/20)",
                Some((1_238_099, 45, "11.80MB/s", Some(3))),
            ),
            ("          0   0%    0.00kB/s    0:00:00 (xfr#0, ir-chk=1000/1001)", Some((0, 0, "0.00kB/s", Some(0)))),
            ("  2,147,483,648 100%  120.00MB/s    0:00:17", Some((2_147_483_648, 100, "120.00MB/s", None))),
            ("sending incremental file list", None),
            ("Number of files: 3 (reg: 2, dir: 1)", None),
            ("", None),
        ];
        for (line, expected) in cases {
            let parsed = parse_progress(line).map(|p| (p.bytes, p.percent, p.rate.clone(), p.files));
            let expected = expected.map(|(b, p, r, f)| (b, p, r.to_string(), f));
            assert_eq!(parsed, expected, "{line:?}");
        }
    }

    #[test]
    fn stats_take_transferred_totals_when_the_block_is_read() {
        let mut stats = Stats::default();
        for line in [
            "Number of files: 20,004 (reg: 20,000, dir: 4)",
            "Number of regular files transferred: 19,998",
            "Total file size: 2,147,483,648 bytes",
            "Total transferred file size: 1,073,741,824 bytes",
            "Literal data: 1,073,741,824 bytes",
        ] {
            stats.read_line(line);
        }
        assert_eq!(stats, Stats { files_transferred: 19_998, bytes_transferred: 1_073_741_824, files_total: 20_004 });
    }

    #[test]
    fn skipped_deletions_reads_rsyncs_warning_when_deletions_were_held_back() {
        assert_eq!(skipped_deletions("Deletions stopped due to --max-delete limit (8 skipped)"), Some(8));
        assert_eq!(skipped_deletions("Deletions stopped due to --max-delete limit (1,024 skipped)\n"), Some(1024));
        assert_eq!(skipped_deletions("rsync error: the --max-delete limit stopped deletions (code 25)"), None);
    }

    #[test]
    fn is_difference_tells_changes_from_unchanged_items_when_itemized() {
        let cases = [
            (">f.st...... data/file", true),
            (">f+++++++++ new file", true),
            ("cL+++++++++ link -> target", true),
            ("*deleting   extra", true),
            (".d..t...... dir/", true),
            (".f          same", false),
            (".d          ./", false),
            ("sent 1,234 bytes  received 56 bytes", false),
            ("", false),
        ];
        for (line, expected) in cases {
            assert_eq!(is_difference(line), expected, "{line:?}");
        }
    }

    #[test]
    fn report_round_trips_through_a_log_line_when_written() {
        let report = Report::Progress { bytes: 5, percent: 7, rate: "1.00MB/s".into(), files: 2 };
        let line = report.to_line();
        assert!(line.starts_with(REPORT_PREFIX));
        assert_eq!(Report::from_line(&line), Some(report.clone()));
        assert_eq!(Report::from_line("{\"event\":\"progress\"}"), None);
        assert_eq!(Report::from_json(&report.to_json()), Some(report));
    }

    #[test]
    fn process_exit_code_follows_the_report_when_the_copy_ends() {
        let done = |exit_code| Report::Done {
            step: "copy".into(),
            exit_code,
            bytes_transferred: 0,
            files_transferred: 0,
            mismatches: 0,
            message: String::new(),
        };
        for (rsync, process) in [(0, 0), (24, 0), (23, 23), (100, 100), (255, 255), (-1, EXIT_NOT_RUN), (300, 255)] {
            assert_eq!(done(rsync).process_exit_code(), process, "{rsync}");
        }
    }
}
