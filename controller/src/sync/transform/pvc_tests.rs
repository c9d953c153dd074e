use serde_json::json;

use super::super::{Options, transform};
use super::*;

fn opts(pvc: PvcOptions) -> Options {
    Options { source_namespace: "a".into(), destination_namespace: "a".into(), pvc, ..Options::default() }
}

fn source(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "labels": labels, "annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/selected-node": "n1", "team": "a"}},
        "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
            "volumeName": "pv-1", "selector": {"matchLabels": {"x": "y"}},
            "dataSource": {"kind": "VolumeSnapshot", "name": "s", "apiGroup": "snapshot.storage.k8s.io"},
            "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"capacity": {"storage": "2Gi"}}})
}

fn mappings() -> PvcOptions {
    PvcOptions {
        storage_classes: [("fast".to_string(), "dr-fast".to_string())].into(),
        access_modes: [("ReadWriteOnce".to_string(), "ReadWriteMany".to_string())].into(),
        ..PvcOptions::default()
    }
}

#[test]
fn claim_swaps_class_and_modes_and_drops_binding_when_pvs_are_not_synced() {
    let src = source(json!({}));
    let out = transform("", crate::sync::sanitize::sanitize(&src, Some("a")), &src, None, &opts(mappings())).object;
    assert_eq!(out["metadata"]["annotations"], json!({"team": "a"}));
    assert_eq!(
        out["spec"],
        json!({"storageClassName": "dr-fast", "accessModes": ["ReadWriteMany"], "volumeMode": "Block",
               "resources": {"requests": {"storage": "2Gi"}}})
    );
}

#[test]
fn claim_labels_override_mappings_and_keep_volume_when_pv_synced() {
    let src = source(json!({"dr-syncer.io/storage-class": "slow", "dr-syncer.io/access-mode": "ReadOnlyMany",
                            "dr-syncer.io/sync-pv": "true"}));
    let out = transform("", crate::sync::sanitize::sanitize(&src, Some("a")), &src, None, &opts(mappings())).object;
    assert_eq!(out["spec"]["storageClassName"], json!("slow"));
    assert_eq!(out["spec"]["accessModes"], json!(["ReadOnlyMany"]));
    assert_eq!(out["spec"]["volumeName"], json!("pv-1"));
}

#[test]
fn claim_never_shrinks_below_existing_dr_request() {
    let src = source(json!({}));
    let existing = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
    let out = transform("", crate::sync::sanitize::sanitize(&src, Some("a")), &src, Some(&existing), &opts(mappings()));
    assert_eq!(out.object["spec"]["resources"]["requests"]["storage"], json!("5Gi"));
}

#[test]
fn claim_keeps_volume_attributes_when_asked() {
    let src = source(json!({}));
    let pvc = PvcOptions { preserve_volume_attributes: true, ..PvcOptions::default() };
    let out = transform("", crate::sync::sanitize::sanitize(&src, Some("a")), &src, None, &opts(pvc)).object;
    assert!(out["spec"].get("selector").is_some() && out["spec"].get("dataSource").is_some());
    assert_eq!(out["spec"]["storageClassName"], json!("fast"));
}

#[test]
fn persistent_volume_is_prebound_to_dr_claim_with_retain_policy() {
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv-1", "uid": "u", "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
        "spec": {"storageClassName": "fast", "persistentVolumeReclaimPolicy": "Delete", "capacity": {"storage": "2Gi"},
            "claimRef": {"namespace": "a", "name": "data", "uid": "x", "resourceVersion": "1"}, "nfs": {"server": "s", "path": "/"}},
        "status": {"phase": "Bound"}});
    let out = persistent_volume(&pv, &source(json!({})), "a-dr", &mappings());
    assert_eq!(
        out["spec"]["claimRef"],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "a-dr", "name": "data"})
    );
    assert_eq!(out["spec"]["persistentVolumeReclaimPolicy"], json!("Retain"));
    assert_eq!(out["spec"]["storageClassName"], json!("dr-fast"));
    assert!(out.get("status").is_none() && out["metadata"].get("annotations").is_none());
}

#[test]
fn quantity_bytes_compares_binary_and_decimal_units() {
    assert!(quantity_bytes("2Gi") > quantity_bytes("2G"));
    assert!(quantity_bytes("1500Mi") > quantity_bytes("1Gi"));
    assert_eq!(quantity_bytes("bogus"), 0.0);
    assert_eq!(quantity_bytes("100"), 100.0);
}
