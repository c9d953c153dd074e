//! Records the git commit and rustc version for the `dr_syncer_build_info` metric and `--version`.

use std::process::Command;

fn main() {
    let commit = std::env::var("DR_SYNCER_GIT_COMMIT").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string())
    });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=DR_SYNCER_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=DR_SYNCER_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=DR_SYNCER_GIT_COMMIT");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
}
