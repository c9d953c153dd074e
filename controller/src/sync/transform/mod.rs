//! Transforms: how a sanitized source object is adapted for the DR cluster. Pure functions.

mod ingress;
mod pvc;
mod refs;
mod service;
mod workloads;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

pub use pvc::{PvcOptions, persistent_volume};
pub use refs::NamespaceRewrite;

/// Ingress adaptation options (from `ingressConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressOptions {
    /// Keep annotations.
    pub preserve_annotations: bool,
    /// Keep `spec.tls`.
    pub preserve_tls: bool,
    /// Keep default and resource backends.
    pub preserve_backends: bool,
    /// IngressClass to set.
    pub class_name: Option<String>,
}

impl Default for IngressOptions {
    fn default() -> Self {
        IngressOptions { preserve_annotations: true, preserve_tls: true, preserve_backends: true, class_name: None }
    }
}

/// Everything the transforms need to know about the mapping.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Source namespace.
    pub source_namespace: String,
    /// DR namespace.
    pub destination_namespace: String,
    /// Park workloads (`scaleToZero`).
    pub scale_to_zero: bool,
    /// Keep every Service nodePort.
    pub preserve_node_ports: bool,
    /// Ingress options.
    pub ingress: IngressOptions,
    /// PVC options.
    pub pvc: PvcOptions,
    /// The namespace rewrite, compiled on first use (leave it to `Default`): compiling its pattern for every object
    /// cost more CPU than the rest of the transform.
    pub rewrite: OnceLock<NamespaceRewrite>,
}

impl Options {
    /// The rewrite from the source namespace to the DR namespace.
    pub fn namespace_rewrite(&self) -> &NamespaceRewrite {
        self.rewrite.get_or_init(|| NamespaceRewrite::new(&self.source_namespace, &self.destination_namespace))
    }
}

/// A transformed object and what the transform noticed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transformed {
    /// The object to write to the DR cluster (without ownership marks).
    pub object: Value,
    /// Problems worth a warning event (the object is still replicated).
    pub warnings: Vec<String>,
    /// The source replica count, for Deployments and StatefulSets.
    pub original_replicas: Option<i32>,
}

/// Whether the transform of a kind reads the source's managedFields (Services: which nodePorts a user set
/// explicitly). Listings of other kinds drop them: they are often as large as the object itself.
pub fn reads_managed_fields(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Service"
}

/// Adapts a sanitized object. `source` is the unsanitized source object (for managedFields and status);
/// `existing` is the current DR object, if any.
pub fn transform(
    group: &str,
    sanitized: Value,
    source: &Value,
    existing: Option<&Value>,
    opts: &Options,
) -> Transformed {
    let mut out = Transformed { object: sanitized, ..Transformed::default() };
    let kind = super::object::kind(&out.object).to_string();
    match (group, kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => workloads::replicated_set(&mut out, opts),
        ("apps", "DaemonSet") => workloads::daemon_set(&mut out, opts),
        ("batch", "CronJob") => workloads::cron_job(&mut out, opts),
        ("batch", "Job") => workloads::job(&mut out, opts),
        ("", "Service") => service::service(&mut out.object, source, opts),
        ("networking.k8s.io" | "extensions", "Ingress") => ingress::ingress(&mut out.object, &opts.ingress),
        ("", "PersistentVolumeClaim") => pvc::claim(&mut out, source, existing, &opts.pvc),
        ("", "ServiceAccount") => workloads::service_account(&mut out.object),
        _ => {}
    }
    workloads::sanitize_templates(&mut out.object);
    if opts.source_namespace != opts.destination_namespace {
        opts.namespace_rewrite().apply(group, &mut out.object);
    }
    out
}

/// Looks a key up in a string map, for the storage-class and access-mode mappings.
pub(crate) fn mapped<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    map.get(key).map(String::as_str)
}
