//! Test support for dr-syncer's lab integration tests.
//!
//! * [`LabCluster`] — a named cluster of the lab started by `make lab-up` / `make test` (`source`, `dr`), and
//!   [`EphemeralCluster`], a private control plane a test starts and stops itself;
//! * [`TestNamespace`] — a fresh, uniquely named namespace deleted when the test ends (also on panic);
//! * [`crds`] — installs the CRDs shipped in `charts/dr-syncer/crds` and waits for them;
//! * [`manifests`] — loads YAML files and server-side applies them, whatever their kind;
//! * [`process`] — runs a dr-syncer binary as a child process and reads its JSON logs;
//! * [`tree`] — a volume tree worth copying (hard links, sparse files, xattrs, owners, odd names) and its comparison;
//! * [`eventually`] — polls a condition with a deadline (tests never sleep to wait for state).
//!
//! Tests must not depend on each other's namespaces or on their run order; everything here is safe to use from
//! tests running in parallel.
//!
//! This crate is test-only code: failing fast with a clear panic is the desired behaviour.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod cluster;
pub mod crds;
pub mod images;
pub mod manifests;
mod namespace;
pub mod process;
pub mod tree;
mod wait;

pub use cluster::{EphemeralCluster, LabCluster, client_for, repo_root};
pub use namespace::{TestNamespace, unique_name};
pub use wait::{eventually, eventually_async};
