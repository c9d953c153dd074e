//! # dr-syncer-api
//!
//! The Kubernetes API of dr-syncer (`dr-syncer.io/v1alpha1`):
//!
//! * [`RemoteCluster`] — a cluster reached through a kubeconfig stored in a Secret;
//! * [`ClusterMapping`] — a source cluster paired with its DR cluster;
//! * [`NamespaceMapping`] — what to replicate from which namespaces, and when.
//!
//! The Rust types are the source of truth: `crdgen` writes the CRDs in `charts/dr-syncer/crds/` from them.
//! Field names, types and defaults match the earlier Go operator so its manifests apply unchanged.
//! [`constants`] names every label, annotation, finalizer and field manager.

pub mod agent;
pub mod cluster_mapping;
pub mod common;
pub mod constants;
pub mod crd;
pub mod namespace_mapping;
pub mod remote_cluster;
pub mod validation;

pub use cluster_mapping::{ClusterMapping, ClusterMappingSpec, ClusterMappingStatus};
pub use namespace_mapping::{NamespaceMapping, NamespaceMappingSpec, NamespaceMappingStatus};
pub use remote_cluster::{RemoteCluster, RemoteClusterSpec, RemoteClusterStatus};
