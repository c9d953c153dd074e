//! Which rsync invocations the data path allows. The rsync pod's SSH server accepts only the command an rsync client
//! sends for a pull of the whole volume (`rsync --server --sender <options> . /data/`), checked option by option
//! like rrsync, and runs it rebuilt from the parsed parts, never through a shell. Extra client options a
//! NamespaceMapping asks for (`dataSyncConfig.rsyncOptions`) are checked by [`check_client_option`].

/// An allowed long option: its name, and the check of its value when it takes one.
pub type LongOption = (&'static str, Option<fn(&str) -> bool>);

/// Short options an rsync client may pass to the sending server: verbosity, dry run, archive parts (`-rlptgoD`),
/// hard links, ACLs, xattrs, sparse, checksum, one file system, compression, whole file, omit times, prune empty
/// directories, update, ignore times. Never `-L`/`-k` (follow symlinks out of the volume) or `-s` (arguments sent
/// outside the command line, where they cannot be checked).
const SERVER_SHORT: &str = "vnrlptgoDHAXScxzWOJmuI";

/// Long options both the client (from `rsyncOptions`) and the sending server may carry, by name; `Some(check)`
/// when the option takes a value.
const SHARED_LONG: &[LongOption] = &[
    ("ignore-errors", None),
    ("inplace", None),
    ("size-only", None),
    ("timeout", Some(digits)),
    ("modify-window", Some(digits)),
    ("compress-level", Some(digits)),
    ("max-size", Some(size)),
    ("min-size", Some(size)),
    ("checksum-choice", Some(word_list)),
    ("compress-choice", Some(word_list)),
];

/// Long options only the sending server receives (the client sets them itself).
const SERVER_ONLY_LONG: &[LongOption] = &[("numeric-ids", None), ("bwlimit", Some(digits))];

/// rsync client options users may add through `dataSyncConfig.rsyncOptions` besides [`SHARED_LONG`]: they change
/// how data is compared, compressed or timed, never where it is read or written.
pub const CLIENT_ONLY_OPTIONS: &[LongOption] = &[
    ("compress", None),
    ("whole-file", None),
    ("omit-dir-times", None),
    ("omit-link-times", None),
    ("prune-empty-dirs", None),
    ("ignore-times", None),
];

/// A sender command that passed the checks, ready to run: the allowed options, `--confine-root=<root>` (rsync 3.5 or
/// later on the sending side), `.` and `<root>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderCommand {
    /// The arguments after the program name, rebuilt from what was checked; the path is always `<root>/`.
    pub args: Vec<String>,
}

/// Why a command was refused (logged and counted by reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not an rsync server command sending data (shell commands, receivers, daemons).
    #[error("not an rsync sender command")]
    NotRsyncSender,
    /// Quotes, backslashes or control characters that the client never sends for our paths.
    #[error("the command contains quoting or control characters")]
    Quoting,
    /// An option outside the allow-list.
    #[error("option {0:?} is not allowed")]
    Option(String),
    /// A path other than the volume root.
    #[error("path {0:?} is not the volume root")]
    Path(String),
}

impl Refusal {
    /// A short CamelCase reason for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotRsyncSender => "NotRsyncSender",
            Refusal::Quoting => "Quoting",
            Refusal::Option(_) => "OptionNotAllowed",
            Refusal::Path(_) => "PathOutsideVolume",
        }
    }
}

/// Checks the command an SSH client asked the rsync pod to run. `root` is the volume's mount path (`/data`).
pub fn parse_sender(command: &str, root: &str) -> Result<SenderCommand, Refusal> {
    if command.chars().any(|c| c.is_control() || matches!(c, '\'' | '"' | '\\' | '`' | '$' | ';' | '|' | '&')) {
        return Err(Refusal::Quoting);
    }
    let words: Vec<&str> = command.split(' ').filter(|w| !w.is_empty()).collect();
    let [program, "--server", "--sender", rest @ ..] = words.as_slice() else {
        return Err(Refusal::NotRsyncSender);
    };
    if *program != "rsync" {
        return Err(Refusal::NotRsyncSender);
    }
    let dot = rest.iter().position(|w| *w == ".").ok_or(Refusal::NotRsyncSender)?;
    let (options, paths) = (&rest[..dot], &rest[dot + 1..]);
    let mut args = vec!["--server".to_string(), "--sender".to_string()];
    for option in options {
        args.push(check_server_option(option)?);
    }
    let root = root.trim_end_matches('/');
    match paths {
        [path] if path.trim_end_matches('/') == root => {}
        [path, ..] => return Err(Refusal::Path((*path).to_string())),
        [] => return Err(Refusal::NotRsyncSender),
    }
    // rsync 3.5: paths the sender resolves (operator paths, a files-from list) must stay inside the volume.
    args.push(format!("--confine-root={root}"));
    args.push(".".to_string());
    args.push(format!("{root}/"));
    Ok(SenderCommand { args })
}

fn check_server_option(option: &str) -> Result<String, Refusal> {
    let refused = || Refusal::Option(option.to_string());
    if let Some(long) = option.strip_prefix("--") {
        let allowed = long_allowed(SHARED_LONG, long) || long_allowed(SERVER_ONLY_LONG, long);
        return allowed.then(|| option.to_string()).ok_or_else(refused);
    }
    let short = option.strip_prefix('-').ok_or_else(refused)?;
    // `-…e.<capabilities>`: everything after `e` is the client's protocol capability string.
    let (flags, capabilities) = match short.split_once('e') {
        Some((flags, caps)) => (flags, Some(caps)),
        None => (short, None),
    };
    let flags_ok = !short.is_empty() && flags.chars().all(|c| SERVER_SHORT.contains(c));
    let caps_ok = capabilities
        .is_none_or(|caps| caps.strip_prefix('.').is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphabetic())));
    (flags_ok && caps_ok).then(|| option.to_string()).ok_or_else(refused)
}

/// Whether `--option[=value]` (without the dashes) is on `list` with an acceptable value.
fn long_allowed(list: &[LongOption], long: &str) -> bool {
    let (name, value) = match long.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (long, None),
    };
    list.iter().any(|(allowed, check)| {
        *allowed == name
            && match (check, value) {
                (None, None) => true,
                (Some(check), Some(value)) => check(value),
                _ => false,
            }
    })
}

/// Checks one extra client option from `dataSyncConfig.rsyncOptions`; the error names the option.
pub fn check_client_option(option: &str) -> Result<(), Refusal> {
    option
        .strip_prefix("--")
        .is_some_and(|long| long_allowed(SHARED_LONG, long) || long_allowed(CLIENT_ONLY_OPTIONS, long))
        .then_some(())
        .ok_or_else(|| Refusal::Option(option.to_string()))
}

fn digits(value: &str) -> bool {
    !value.is_empty() && value.len() <= 12 && value.chars().all(|c| c.is_ascii_digit())
}

fn size(value: &str) -> bool {
    let number = value.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't', 'B', 'b', 'i']);
    digits(number) && value.len() - number.len() <= 3
}

fn word_list(value: &str) -> bool {
    !value.is_empty() && value.len() <= 64 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == ',' || c == '-')
}

#[cfg(test)]
#[path = "rsync_args_tests.rs"]
mod tests;
