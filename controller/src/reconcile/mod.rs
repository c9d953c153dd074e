//! The reconcilers of RemoteCluster, ClusterMapping and NamespaceMapping, and what they share.

pub mod backoff;
pub mod changes;
pub mod cluster_mapping;
pub mod conditions;
pub mod context;
pub mod events;
pub mod fields;
pub mod heartbeat;
pub mod metrics;
pub mod remote_cluster;
pub mod status;

pub use context::{Context, Settings};
