//! The dr-syncer controller.
//!
//! It connects to the cluster holding the dr-syncer resources, checks that the CRDs are installed and Established,
//! and serves `/healthz`, `/readyz` and `/metrics`. The reconcilers and the sync engine build on this.

pub mod agent;
pub mod build;
pub mod caches;
pub mod cli;
pub mod clusters;
pub mod contain;
pub mod controllers;
pub mod data;
pub mod error;
pub mod http;
pub mod kube_client;
pub mod leader;
pub mod mapping;
pub mod metrics;
pub mod readiness;
pub mod reconcile;
pub mod supervisor;
pub mod sync;
pub mod telemetry;
pub mod watch;

pub use error::Error;
