//! PersistentVolumeClaim (and PersistentVolume) transforms.

use std::collections::BTreeMap;

use dr_syncer_api::constants as c;
use serde_json::{Value, json};

use super::{Transformed, mapped};
use crate::sync::object;
use crate::sync::sanitize::sanitize;

/// Annotations the binder and provisioners of the source cluster write on PVCs.
const BINDING_ANNOTATIONS: &[&str] = &[
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
];

/// PVC options (from `pvcConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PvcOptions {
    /// Storage class swaps (source → DR).
    pub storage_classes: BTreeMap<String, String>,
    /// Access mode swaps (source → DR).
    pub access_modes: BTreeMap<String, String>,
    /// Replicate bound PersistentVolumes for every PVC.
    pub sync_persistent_volumes: bool,
    /// Keep selector, dataSource and dataSourceRef.
    pub preserve_volume_attributes: bool,
}

impl PvcOptions {
    /// Whether this source PVC's PersistentVolume is replicated (mapping option or `dr-syncer.io/sync-pv` label).
    pub fn syncs_volume_of(&self, source: &Value) -> bool {
        self.sync_persistent_volumes || object::label(source, c::LABEL_SYNC_PV) == Some(c::TRUE_VALUE)
    }

    /// The DR storage class for a source class (label override first, then the mappings).
    pub fn storage_class_for(&self, source: &Value, class: Option<&str>) -> Option<String> {
        if let Some(label) = object::label(source, c::LABEL_STORAGE_CLASS) {
            return Some(label.to_string());
        }
        let class = class?;
        Some(mapped(&self.storage_classes, class).unwrap_or(class).to_string())
    }
}

/// Adapts a PVC: storage class and access modes swapped, binding state of the source dropped (unless its PV is
/// replicated too), size taken from the source's provisioned capacity and never below the DR copy's.
pub fn claim(out: &mut Transformed, source: &Value, existing: Option<&Value>, opts: &PvcOptions) {
    let obj = &mut out.object;
    for key in BINDING_ANNOTATIONS {
        object::remove_annotation(obj, key);
    }
    object::drop_empty_metadata_maps(obj);
    let keep_volume = opts.syncs_volume_of(source);
    if !keep_volume {
        object::remove(obj, "/spec/volumeName");
    }
    if !opts.preserve_volume_attributes {
        for field in ["/spec/selector", "/spec/dataSource", "/spec/dataSourceRef"] {
            object::remove(obj, field);
        }
    }
    let class = obj.pointer("/spec/storageClassName").and_then(Value::as_str).map(str::to_string);
    if let Some(new) = opts.storage_class_for(source, class.as_deref())
        && let Some(spec) = object::map_at(obj, &["spec"])
    {
        spec.insert("storageClassName".into(), json!(new));
    }
    if let Some(mode) = object::label(source, c::LABEL_ACCESS_MODE) {
        if let Some(spec) = object::map_at(obj, &["spec"]) {
            spec.insert("accessModes".into(), json!([mode]));
        }
    } else if let Some(modes) = obj.pointer_mut("/spec/accessModes").and_then(Value::as_array_mut) {
        for mode in modes.iter_mut() {
            if let Some(new) = mode.as_str().and_then(|m| mapped(&opts.access_modes, m)) {
                *mode = json!(new);
            }
        }
    }
    let capacity = source.pointer("/status/capacity/storage").and_then(Value::as_str);
    let existing_request = existing.and_then(|e| e.pointer("/spec/resources/requests/storage")).and_then(Value::as_str);
    let requested = obj.pointer("/spec/resources/requests/storage").and_then(Value::as_str).map(str::to_string);
    let size = [capacity.map(str::to_string), existing_request.map(str::to_string), requested]
        .into_iter()
        .flatten()
        .max_by(|a, b| quantity_bytes(a).partial_cmp(&quantity_bytes(b)).unwrap_or(std::cmp::Ordering::Equal));
    if let Some(size) = size
        && let Some(requests) = object::map_at(obj, &["spec", "resources", "requests"])
    {
        requests.insert("storage".into(), json!(size));
    }
}

/// A PersistentVolume for the DR cluster: bound ahead to the DR PVC, reclaim policy Retain (the DR cluster must
/// never delete the storage the source uses), storage class swapped like its claim's.
pub fn persistent_volume(
    source_pv: &Value,
    claim_source: &Value,
    destination_namespace: &str,
    opts: &PvcOptions,
) -> Value {
    let mut pv = sanitize(source_pv, None);
    object::remove_annotation(&mut pv, "pv.kubernetes.io/bound-by-controller");
    object::drop_empty_metadata_maps(&mut pv);
    let claim_name = object::name(claim_source).to_string();
    let class = pv.pointer("/spec/storageClassName").and_then(Value::as_str).map(str::to_string);
    if let Some(spec) = object::map_at(&mut pv, &["spec"]) {
        spec.insert(
            "claimRef".into(),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": destination_namespace, "name": claim_name}),
        );
        spec.insert("persistentVolumeReclaimPolicy".into(), json!("Retain"));
    }
    if let Some(new) = opts.storage_class_for(claim_source, class.as_deref())
        && let Some(spec) = object::map_at(&mut pv, &["spec"])
    {
        spec.insert("storageClassName".into(), json!(new));
    }
    pv
}

/// Approximate byte count of a Kubernetes quantity, for comparing sizes. Unknown forms compare as 0.
pub fn quantity_bytes(q: &str) -> f64 {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    let q = q.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().map_or(0.0, |v| v * factor);
        }
    }
    q.parse::<f64>().unwrap_or(0.0)
}

#[cfg(test)]
#[path = "pvc_tests.rs"]
mod tests;
