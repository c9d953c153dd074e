//! `dr-syncer-agent copy`: the DR copy pod's program. It runs the real rsync client over the real OpenSSH client
//! (jumping through the source agent to the source rsync pod), turns rsync's output into [`Report`] lines the
//! controller follows, and optionally verifies the copy with a checksum dry run over every file or a random sample.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

use dr_syncer_wire::progress::{
    EXIT_DELETE_GUARD, EXIT_NO_RESULT, EXIT_VERIFY_FAILED, Report, Stats, is_difference, parse_progress,
    skipped_deletions,
};

/// Stderr lines kept for the final report.
const STDERR_TAIL: usize = 20;
/// Differing paths named in a failed verification's message.
const MISMATCHES_NAMED: usize = 5;
/// Least time between two progress reports.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// rsync's exit code when `--max-delete` held deletions back.
const EXIT_MAX_DELETE: i32 = 25;
/// Prefix of every stderr line echoed from rsync, ssh or the remote sender.
pub const STDERR_PREFIX: &str = "rsync-stderr| ";
/// Longest line kept from rsync's output; the rest of a longer line is dropped.
const LINE_MAX: usize = 4096;
/// Longest message in the final report: the whole report must fit a termination message (4 KiB).
const MESSAGE_MAX: usize = 2048;

/// How the copy is checked after it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Verify {
    /// Not checked.
    None,
    /// A random share of the files is compared by checksum.
    Sample,
    /// Every file is compared by checksum.
    Full,
}

/// What one copy needs.
#[derive(Clone, Debug)]
pub struct CopyJob {
    /// The rsync program.
    pub rsync: PathBuf,
    /// OpenSSH client configuration naming the source host, the jump and the pinned keys.
    pub ssh_config: PathBuf,
    /// Host alias of the source rsync pod in `ssh_config`.
    pub source_host: String,
    /// Path of the volume in the source rsync pod.
    pub source_path: String,
    /// The destination volume's mount path.
    pub destination: PathBuf,
    /// rsync options chosen by the controller (archive flags, excludes, limits).
    pub options: Vec<String>,
    /// Verification after the copy.
    pub verify: Verify,
    /// Percent of files checked by [`Verify::Sample`].
    pub sample_percent: u8,
    /// Directory for temporary files (the sample's filter).
    pub scratch: PathBuf,
    /// Where the final report is written as JSON, besides stdout (the pod's termination message file).
    pub result_file: Option<PathBuf>,
    /// Deletion guard: most percent of the DR volume's entries one copy may delete; `None` (or 100) for no guard.
    pub max_delete_percent: Option<u8>,
}

impl CopyJob {
    fn command(&self, extra: &[String]) -> Command {
        let mut command = Command::new(&self.rsync);
        command
            .args(&self.options)
            .args(extra)
            .arg("-e")
            .arg(format!("ssh -F {}", self.ssh_config.display()))
            .arg(format!("{}:{}/", self.source_host, self.source_path.trim_end_matches('/')))
            .arg(format!("{}/", self.destination.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Runs the copy and the verification, printing [`Report`] lines; returns the exit code for the process.
pub async fn run(job: &CopyJob) -> i32 {
    let copied = match copy(job).await {
        Ok(copied) => copied,
        Err(held_back) => return finish(job, "copy", held_back, 0),
    };
    let copy_ok = copied.exit_code == 0 || copied.exit_code == 24;
    if !copy_ok || job.verify == Verify::None {
        return finish(job, "copy", copied, 0);
    }
    let mut flags = vec!["--dry-run".to_string(), "--itemize-changes".to_string(), "--checksum".to_string()];
    if job.verify == Verify::Sample {
        match crate::sample::write_filter(&job.destination, job.sample_percent, &job.scratch) {
            Ok(Some(filter)) => flags.push(format!("--filter=merge {}", filter.display())),
            Ok(None) => return finish(job, "copy", copied, 0),
            Err(error) => {
                let message = format!("cannot choose the verification sample: {error}");
                return finish(job, "verify", Outcome { exit_code: -1, message, ..Outcome::default() }, 0);
            }
        }
    }
    let verified = run_rsync(job.command(&flags), false).await;
    let mismatches = verified.differences.len() as u64;
    if verified.exit_code != 0 && verified.exit_code != 24 {
        return finish(job, "verify", verified, mismatches);
    }
    let mut outcome = Outcome { exit_code: copied.exit_code, stats: copied.stats, ..Outcome::default() };
    if mismatches > 0 {
        outcome.exit_code = EXIT_VERIFY_FAILED;
        let named: Vec<&str> = verified.differences.iter().take(MISMATCHES_NAMED).map(String::as_str).collect();
        outcome.message = format!("{mismatches} differences after the copy, e.g. {}", named.join(" | "));
        return finish(job, "verify", outcome, mismatches);
    }
    finish(job, "verify", outcome, 0)
}

/// The copy itself. With a deletion guard, the first pass deletes nothing (`--max-delete=0`, which counts what it
/// held back); when the share of the DR volume's entries it would delete is within the guard, a second pass
/// deletes them, else the copy ends with [`EXIT_DELETE_GUARD`] (`Err`) and the DR volume keeps every file.
async fn copy(job: &CopyJob) -> Result<Outcome, Outcome> {
    let flags = ["--info=progress2".to_string(), "--stats".to_string()];
    let guarded = job.max_delete_percent.filter(|p| *p < 100 && job.options.iter().any(|o| o == "--delete"));
    let Some(percent) = guarded else {
        return Ok(run_rsync(job.command(&flags), true).await);
    };
    let mut first_flags = flags.to_vec();
    first_flags.push("--max-delete=0".to_string());
    let first = run_rsync(job.command(&first_flags), true).await;
    // Set only when rsync itself ended with "deletions held back".
    let Some(skipped) = first.skipped_deletions.filter(|n| *n > 0) else {
        return Ok(first);
    };
    // After the first pass the DR volume holds every source entry plus the ones it would delete.
    let entries = first.stats.files_total + skipped;
    if skipped * 100 > u64::from(percent) * entries {
        let message = format!(
            "the source no longer has {skipped} of the {entries} entries of the DR volume ({}%), over the deletion \
             guard of {percent}%: nothing was deleted (new and changed files were copied); approve with the \
             annotation dr-syncer.io/approve-deletions",
            skipped * 100 / entries.max(1)
        );
        return Err(Outcome { exit_code: EXIT_DELETE_GUARD, stats: first.stats, message, ..Outcome::default() });
    }
    let mut second = run_rsync(job.command(&flags), true).await;
    second.stats.bytes_transferred += first.stats.bytes_transferred;
    second.stats.files_transferred += first.stats.files_transferred;
    Ok(second)
}

fn finish(job: &CopyJob, step: &str, outcome: Outcome, mismatches: u64) -> i32 {
    let report = Report::Done {
        step: step.to_string(),
        exit_code: outcome.exit_code,
        bytes_transferred: outcome.stats.bytes_transferred,
        files_transferred: outcome.stats.files_transferred,
        mismatches,
        message: truncate(&outcome.message, MESSAGE_MAX),
    };
    println!("{}", report.to_line());
    if let Some(path) = &job.result_file
        && let Err(error) = std::fs::write(path, report.to_json())
    {
        eprintln!("{STDERR_PREFIX}cannot write the result to {}: {error}", path.display());
        return EXIT_NO_RESULT;
    }
    report.process_exit_code()
}

/// The first `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What one rsync run produced.
#[derive(Debug, Default)]
struct Outcome {
    exit_code: i32,
    stats: Stats,
    /// Itemized differences (verification runs).
    differences: Vec<String>,
    /// Deletions `--max-delete` held back, from rsync's warning.
    skipped_deletions: Option<u64>,
    /// Tail of stderr.
    message: String,
}

async fn run_rsync(mut command: Command, report_progress: bool) -> Outcome {
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Outcome { exit_code: -1, message: format!("cannot start rsync: {error}"), ..Outcome::default() };
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Outcome { exit_code: -1, message: "rsync has no output pipes".into(), ..Outcome::default() };
    };
    let mut outcome = Outcome::default();
    let reading = read_stdout(stdout, report_progress, &mut outcome);
    let tail = read_stderr(stderr);
    let ((), (tail, skipped)) = tokio::join!(reading, tail);
    outcome.message = tail;
    outcome.skipped_deletions = skipped;
    outcome.exit_code = match child.wait().await {
        Ok(status) => status.code().unwrap_or(-1),
        Err(_) => -1,
    };
    // Only rsync's own exit code says that deletions were held back; a line alone could come from the sender.
    if outcome.exit_code != EXIT_MAX_DELETE {
        outcome.skipped_deletions = None;
    }
    outcome
}

/// Reads rsync's stdout, whose progress lines end in `\r` and the rest in `\n`.
async fn read_stdout(stdout: impl AsyncRead + Unpin, report_progress: bool, outcome: &mut Outcome) {
    let mut reader = BufReader::new(stdout);
    let mut buffer = Vec::new();
    let mut last_report: Option<Instant> = None;
    let mut chunk = [0u8; 8192];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for byte in &chunk[..n] {
            if *byte != b'\r' && *byte != b'\n' {
                if buffer.len() < LINE_MAX {
                    buffer.push(*byte);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&buffer).into_owned();
            buffer.clear();
            take_line(&line, report_progress, &mut last_report, outcome);
        }
    }
    if !buffer.is_empty() {
        let line = String::from_utf8_lossy(&buffer).into_owned();
        take_line(&line, report_progress, &mut last_report, outcome);
    }
}

fn take_line(line: &str, report_progress: bool, last_report: &mut Option<Instant>, outcome: &mut Outcome) {
    if let Some(progress) = parse_progress(line) {
        if report_progress && last_report.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            *last_report = Some(Instant::now());
            let report = Report::Progress {
                bytes: progress.bytes,
                percent: progress.percent,
                rate: progress.rate,
                files: progress.files.unwrap_or(0),
            };
            println!("{}", report.to_line());
        }
    } else if is_difference(line) {
        outcome.differences.push(line.to_string());
    } else {
        outcome.stats.read_line(line);
    }
}

/// Reads rsync's stderr (its own messages, ssh's, and whatever the remote sender writes), echoing each line to
/// this program's stderr behind [`STDERR_PREFIX`] so no echoed line can pass for a report, and keeps the last
/// [`STDERR_TAIL`] lines, and the count of the last `--max-delete` warning (rsync's receiver prints it last, after
/// anything the sender wrote). Lines are cut at [`LINE_MAX`] bytes, so a sender that never ends a line cannot grow
/// memory.
async fn read_stderr(stderr: impl AsyncRead + Unpin) -> (String, Option<u64>) {
    let mut reader = BufReader::new(stderr);
    let mut tail = std::collections::VecDeque::with_capacity(STDERR_TAIL);
    let mut line = Vec::with_capacity(256);
    let mut chunk = [0u8; 8192];
    let mut skipped = None;
    let mut keep = |line: &mut Vec<u8>| {
        let text: String =
            String::from_utf8_lossy(line).chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        line.clear();
        if let Some(n) = skipped_deletions(&text) {
            skipped = Some(n);
        }
        eprintln!("{STDERR_PREFIX}{text}");
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(text);
    };
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for byte in &chunk[..n] {
            if *byte == b'\n' {
                keep(&mut line);
            } else if line.len() < LINE_MAX {
                line.push(*byte);
            }
        }
    }
    if !line.is_empty() {
        keep(&mut line);
    }
    (Vec::from(tail).join("\n"), skipped)
}
