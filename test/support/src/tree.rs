//! A volume worth copying: nested directories, hard links, symlinks (also pointing outside), a sparse file, xattrs,
//! owners, modes, a large file, and names with spaces, newlines, leading dashes and dots. Built and compared with
//! Python and rsync itself.

use std::path::Path;
use std::process::Command;

fn python(script: &str, args: &[&Path]) {
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
}

const BUILD: &str = r#"
import os, sys
root = sys.argv[1]
def p(*parts): return os.path.join(root, *parts)
os.makedirs(p("a", "b", "c"), exist_ok=True)
os.makedirs(p("empty"), exist_ok=True)
for i in range(200):
    with open(p("a", "b", "c", f"f{i}.txt"), "wb") as f: f.write(os.urandom(64 + i))
with open(p("big.bin"), "wb") as f:
    for _ in range(32): f.write(os.urandom(1 << 20))
with open(p("sparse.img"), "wb") as f:
    f.truncate(256 << 20); f.seek(64 << 20); f.write(b"middle"); f.seek((256 << 20) - 4); f.write(b"end!")
with open(p("a", "linked"), "wb") as f: f.write(b"one inode, two names\n")
os.link(p("a", "linked"), p("a", "b", "also-linked"))
os.symlink("b/c", p("a", "to-c"))
os.symlink("/etc/passwd", p("outside"))
os.symlink("../../nowhere", p("a", "dangling"))
for name in ["with space", "new\nline", "-leading-dash", "..dots", "ütf-8 ✓", "--rsh=sh"]:
    with open(p(name), "w") as f: f.write(name)
with open(p("xattr.txt"), "w") as f: f.write("x")
os.setxattr(p("xattr.txt"), "user.dr-syncer", b"kept")
with open(p("owned"), "w") as f: f.write("owned")
os.chown(p("owned"), 1234, 5678)
os.chmod(p("owned"), 0o640)
os.chmod(p("a", "b"), 0o2750)
with open(p("secret"), "w") as f: f.write("mode 600")
os.chmod(p("secret"), 0o600)
os.utime(p("big.bin"), (1_000_000_000, 1_000_000_000))
"#;

const CHANGE: &str = r#"
import os, sys
root = sys.argv[1]
def p(*parts): return os.path.join(root, *parts)
with open(p("a", "b", "c", "f1.txt"), "ab") as f: f.write(b"appended")
os.remove(p("a", "b", "c", "f2.txt"))
os.rename(p("a", "b", "c", "f3.txt"), p("a", "renamed.txt"))
os.rename(p("with space"), p("with more space"))
os.chmod(p("secret"), 0o400)
with open(p("big.bin"), "r+b") as f: f.seek(1 << 20); f.write(os.urandom(4096))
os.makedirs(p("new", "dir"), exist_ok=True)
with open(p("new", "dir", "file"), "w") as f: f.write("new")
"#;

const SAME: &str = r#"
import os, sys
src, dst = sys.argv[1], sys.argv[2]
def d(*parts): return os.path.join(dst, *parts)
assert os.stat(d("a", "linked")).st_ino == os.stat(d("a", "b", "also-linked")).st_ino, "hard link lost"
assert os.readlink(d("outside")) == "/etc/passwd", "symlink target changed"
assert os.path.islink(d("a", "to-c")) and not os.path.exists(d("..", "passwd"))
st = os.stat(d("sparse.img"))
assert st.st_size == 256 << 20 and st.st_blocks * 512 < (16 << 20), f"sparse file not sparse: {st.st_blocks}"
assert os.getxattr(d("xattr.txt"), "user.dr-syncer") == b"kept", "xattr lost"
o = os.stat(d("owned"))
assert (o.st_uid, o.st_gid, o.st_mode & 0o7777) == (1234, 5678, 0o640), f"owner/mode lost: {o}"
assert os.stat(d("a", "b")).st_mode & 0o7777 == 0o2750
"#;

/// Creates the tree in `root`.
pub fn build(root: &Path) {
    python(BUILD, &[root]);
}

/// Edits, deletes, renames and adds files in `root`.
pub fn change(root: &Path) {
    python(CHANGE, &[root]);
}

/// Panics unless `dest` equals `src` in content and attributes (rsync checksum dry run finds nothing to do) and
/// the properties rsync could silently lose (hard links, sparseness, xattrs, owners, modes) survived.
pub fn assert_same(src: &Path, dest: &Path) {
    assert_equal(src, dest);
    python(SAME, &[src, dest]);
}

/// Panics unless an rsync checksum dry run from `src` to `dest` finds nothing to do (any tree).
pub fn assert_equal(src: &Path, dest: &Path) {
    let out = Command::new("rsync")
        .args(["-aHAXSnc", "--numeric-ids", "--delete", "--itemize-changes", "--exclude=.dr-syncer-partial"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dest.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "compare failed: {}", String::from_utf8_lossy(&out.stderr));
    let differences = String::from_utf8_lossy(&out.stdout);
    assert!(differences.trim().is_empty(), "copy differs from the source:\n{differences}");
}
