//! The verification sample of `dr-syncer-agent copy`: a random share of the DR volume's files, written as rsync
//! filter rules that include exactly those files. The names come from the source volume, so no name may add a
//! rule of its own.

use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;

/// Writes (into `scratch`) a filter that includes a random `sample_percent` of `destination`'s regular files (and
/// their parent directories) and excludes everything else. `None` when the destination has no files.
pub fn write_filter(destination: &Path, sample_percent: u8, scratch: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut files = Vec::new();
    collect_files(destination, destination, &mut files)?;
    if files.is_empty() {
        return Ok(None);
    }
    let wanted = (files.len() * usize::from(sample_percent)).div_ceil(100).max(1);
    let chosen: Vec<&String> = files.sample(&mut rand::rng(), wanted).collect();
    let text = sample_filter(chosen.iter().map(|s| s.as_str()));
    let path = scratch.join("dr-syncer-sample.filter");
    std::fs::write(&path, text)?;
    Ok(Some(path))
}

/// Filter rules that include exactly `paths` (relative to the volume root) and their parents. A path with a
/// control character is left out of the sample: rsync ends a filter line at `\r` as well as `\n`, so such a name
/// (it comes from the source volume) could add a rule of its own — `. FILE` merges a local file and sends its lines
/// to the sender. Every rule written is one `+ ` line whose pattern has no control character.
pub fn sample_filter<'a>(paths: impl Iterator<Item = &'a str>) -> String {
    let mut rules = std::collections::BTreeSet::new();
    let mut text = String::new();
    for path in paths.filter(|p| !p.chars().any(char::is_control)) {
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len().saturating_sub(1)] {
            parent.push('/');
            parent.push_str(dir);
            if rules.insert(format!("{parent}/")) {
                text.push_str(&format!("+ {}/\n", escape_pattern(&parent)));
            }
        }
        if rules.insert(format!("/{path}")) {
            text.push_str(&format!("+ {}\n", escape_pattern(&format!("/{path}"))));
        }
    }
    text.push_str("- *\n");
    text
}

/// rsync treats a pattern with `*`, `?` or `[` as a wildcard pattern, where `\` escapes; a pattern without them is
/// literal, backslashes included.
fn escape_pattern(path: &str) -> String {
    if !path.contains(['*', '?', '[']) {
        return path.to_string();
    }
    path.chars().fold(String::new(), |mut out, c| {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            collect_files(root, &path, files)?;
        } else if kind.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            files.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sample_filter_includes_parents_once_and_excludes_the_rest_when_given_paths() {
        let text = sample_filter(["a/b/c.txt", "a/b/d.txt", "top"].into_iter());
        assert_eq!(text, "+ /a/\n+ /a/b/\n+ /a/b/c.txt\n+ /a/b/d.txt\n+ /top\n- *\n");
    }

    #[test]
    fn sample_filter_escapes_wildcards_and_skips_control_characters_when_names_are_odd() {
        let hostile = ["new\nline", "a\r.- /etc/dr-syncer/ssh/id_ed25519", "dir\r. /x/f", "tab\there", "nul\u{0}"];
        let mut names = vec!["we*rd[1]\\x", "back\\slash"];
        names.extend(hostile);
        let text = sample_filter(names.into_iter());
        assert_eq!(text, "+ /we\\*rd\\[1]\\\\x\n+ /back\\slash\n- *\n");
        // Whatever the names, every line is one include rule (or the final exclude): none can add a rule.
        for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
            assert!(line.starts_with("+ /") || line == "- *", "{line:?}");
        }
    }
}
