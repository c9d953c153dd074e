//! RemoteCluster clients: kubeconfig checks and the per-cluster client cache.

pub mod kubeconfig;
pub mod registry;

pub use registry::{ClusterError, Connection, Registry, probe};
