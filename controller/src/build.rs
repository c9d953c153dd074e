//! What this binary is: version, git commit and compiler, as recorded at build time.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`unknown` outside a git checkout).
pub const GIT_COMMIT: &str = env!("DR_SYNCER_GIT_COMMIT");
/// The compiler that built the binary.
pub const RUSTC_VERSION: &str = env!("DR_SYNCER_RUSTC_VERSION");
/// `--version` output with the commit and compiler.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DR_SYNCER_GIT_COMMIT"),
    ", ",
    env!("DR_SYNCER_RUSTC_VERSION"),
    ")"
);

/// Version information as the JSON object printed by `--version-json`.
pub fn version_json() -> serde_json::Value {
    serde_json::json!({ "version": VERSION, "gitCommit": GIT_COMMIT, "rustcVersion": RUSTC_VERSION })
}
