//! The shipped CRDs against a real API server (the lab's `source` cluster): installation, `kubectl explain`, the
//! examples, manifests written for the Go operator, and the schema validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use dr_syncer_testlab::manifests::{Applier, is_subset, load};
use dr_syncer_testlab::{LabCluster, TestNamespace, crds, eventually, repo_root};
use kube::api::DynamicObject;
use serde_json::Value;

async fn setup(prefix: &str) -> (LabCluster, TestNamespace, Applier) {
    let cluster = LabCluster::shared("source");
    let client = cluster.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::create(&cluster, prefix).await;
    let applier = Applier::new(client).await;
    (cluster, ns, applier)
}

#[tokio::test]
async fn crds_become_established_when_installed() {
    let cluster = LabCluster::shared("source");
    let client = cluster.client().await;
    crds::install(&client).await;
    crds::wait_established(&client).await;

    // The short names and the category are served.
    let out = kubectl(&cluster, &["api-resources", "--api-group=dr-syncer.io", "-o", "wide"]);
    for expected in ["drrc", "drcm", "nsm", "dr-syncer", "RemoteCluster", "ClusterMapping", "NamespaceMapping"] {
        assert!(out.contains(expected), "api-resources lacks {expected}:\n{out}");
    }
}

#[tokio::test]
async fn kubectl_explain_shows_field_docs_when_crds_installed() {
    let cluster = LabCluster::shared("source");
    crds::install(&cluster.client().await).await;
    // The API server publishes CRD schemas to OpenAPI a few seconds after they are established.
    let cases = [
        ("namespacemapping.spec", "Set exactly one of `sourceNamespace` and"),
        ("namespacemapping.spec.namespaceSelector", "Replicate every source namespace whose labels match"),
        ("namespacemapping.spec.scaleToZero", "Default: true"),
        ("remotecluster.spec.kubeconfigSecretRef", "TLS verification is always on"),
        ("clustermapping.spec.verifyConnectivity", "Default: true"),
    ];
    for (path, want) in cases {
        eventually(&format!("kubectl explain {path} to show its docs"), Duration::from_secs(60), || {
            let out = try_kubectl(&cluster, &["explain", path, "--api-version=dr-syncer.io/v1alpha1"])?;
            let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
            if flat.contains(want) { Ok(()) } else { Err(out) }
        })
        .await;
    }
    let spec = kubectl(&cluster, &["explain", "namespacemapping.spec", "--api-version=dr-syncer.io/v1alpha1"]);
    assert!(spec.contains("sourceNamespace\t<string>"), "field types are published:\n{spec}");
}

#[tokio::test]
async fn every_example_applies_server_side() {
    let (_cluster, ns, applier) = setup("examples").await;
    let dir = repo_root().join("docs/examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for doc in load(&path) {
            let obj = applier
                .apply(ns.name(), &doc)
                .await
                .unwrap_or_else(|e| panic!("{} does not apply: {e}", path.display()));
            assert_spec_kept(&doc, &obj, &path.display().to_string());
            applied += 1;
        }
    }
    assert!(applied >= 9, "expected at least 9 example objects, applied {applied}");
}

#[tokio::test]
async fn go_operator_manifests_apply_unchanged() {
    let (_cluster, ns, applier) = setup("go-compat").await;
    let dir = repo_root().join("api/tests/fixtures/go-operator");
    for kind in ["remotecluster", "clustermapping", "namespacemapping"] {
        let path = dir.join(format!("{kind}.yaml"));
        for doc in load(&path) {
            let obj = applier.apply(ns.name(), &doc).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_spec_kept(&doc, &obj, kind);
        }
    }
}

#[tokio::test]
async fn defaults_are_filled_in_when_fields_omitted() {
    let (_cluster, ns, applier) = setup("defaults").await;
    let doc = yaml(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {name: d}\n\
         spec: {sourceNamespace: a, clusterMappingRef: {name: m}, continuous: {}, retryConfig: {},\n\
         pvcConfig: {dataSyncConfig: {}}, namespaceConfig: {createNamespace: false}}",
    );
    let obj = applier.apply(ns.name(), &doc).await.unwrap();
    let spec = &obj.data["spec"];
    let expected = serde_json::json!({
        "replicationMode": "Scheduled", "scaleToZero": true, "paused": false, "syncCRDs": false,
        "continuous": {"backgroundSyncInterval": "1h", "watchResources": true},
        "retryConfig": {"maxRetries": 5, "initialBackoff": "5s", "maxBackoff": "5m", "backoffMultiplier": 200},
        "pvcConfig": {"dataSyncConfig": {"concurrentSyncs": 2, "timeout": "30m", "verificationMode": "none", "samplePercent": 10}},
        "namespaceConfig": {"createNamespace": false, "preserveLabels": true, "preserveAnnotations": true}
    });
    is_subset(&expected, spec).unwrap_or_else(|e| panic!("defaults: {e}\n{spec:#}"));
}

/// (what, manifest, text the API server's message must contain)
const INVALID: &[(&str, &str, &str)] = &[
    ("cron with four fields", "NM schedule: '*/5 * * *'", "spec.schedule"),
    ("cron minute out of range", "NM schedule: '61 * * * *'", "spec.schedule"),
    ("unknown replication mode", "NM replicationMode: Sometimes", "spec.replicationMode"),
    ("negative retries", "NM retryConfig: {maxRetries: -1}", "spec.retryConfig.maxRetries"),
    ("backoff multiplier below 100", "NM retryConfig: {backoffMultiplier: 50}", "spec.retryConfig.backoffMultiplier"),
    ("duration in words", "NM continuous: {backgroundSyncInterval: 1 hour}", "spec.continuous.backgroundSyncInterval"),
    ("fractional duration", "NM retryConfig: {maxBackoff: 1.5h}", "spec.retryConfig.maxBackoff"),
    (
        "samplePercent 0",
        "NM pvcConfig: {dataSyncConfig: {samplePercent: 0}}",
        "spec.pvcConfig.dataSyncConfig.samplePercent",
    ),
    (
        "samplePercent 101",
        "NM pvcConfig: {dataSyncConfig: {samplePercent: 101}}",
        "spec.pvcConfig.dataSyncConfig.samplePercent",
    ),
    (
        "zero concurrent syncs",
        "NM pvcConfig: {dataSyncConfig: {concurrentSyncs: 0}}",
        "spec.pvcConfig.dataSyncConfig.concurrentSyncs",
    ),
    (
        "negative bandwidth",
        "NM pvcConfig: {dataSyncConfig: {bandwidthLimit: -5}}",
        "spec.pvcConfig.dataSyncConfig.bandwidthLimit",
    ),
    (
        "unknown verification mode",
        "NM pvcConfig: {dataSyncConfig: {verificationMode: md5}}",
        "spec.pvcConfig.dataSyncConfig.verificationMode",
    ),
    (
        "unknown immutable handling",
        "NM immutableResourceConfig: {defaultHandling: Explode}",
        "spec.immutableResourceConfig.defaultHandling",
    ),
    ("namespace with capitals", "NM* sourceNamespace: Bad_NS, clusterMappingRef: {name: m}", "spec.sourceNamespace"),
    (
        "namespace and selector",
        "NM* sourceNamespace: a, namespaceSelector: {matchLabels: {dr: 'on'}}, clusterMappingRef: {name: m}",
        "spec.sourceNamespace",
    ),
    ("neither namespace nor selector", "NM* clusterMappingRef: {name: m}", "spec.sourceNamespace"),
    (
        "selector with destination namespace",
        "NM* namespaceSelector: {matchLabels: {dr: 'on'}}, destinationNamespace: b, clusterMappingRef: {name: m}",
        "spec.destinationNamespace",
    ),
    (
        "naming rule without selector",
        "NM* sourceNamespace: a, destinationNamespaceRule: {suffix: -dr}, clusterMappingRef: {name: m}",
        "spec.destinationNamespaceRule",
    ),
    ("no cluster reference", "NM* sourceNamespace: a, sourceCluster: c1", "spec.clusterMappingRef"),
    ("RemoteCluster without kubeconfig", "RC* defaultSchedule: '@daily'", "spec.kubeconfigSecretRef"),
    ("kubeconfig ref without namespace", "RC* kubeconfigSecretRef: {name: s}", "spec.kubeconfigSecretRef.namespace"),
    ("RemoteCluster bad default schedule", "RC defaultSchedule: 'every day'", "spec.defaultSchedule"),
    ("agent port 0", "RC pvcSync: {ssh: {port: 0}}", "spec.pvcSync.ssh.port"),
    ("zero global concurrency", "RC pvcSync: {globalConcurrencyLimit: 0}", "spec.pvcSync.globalConcurrencyLimit"),
    (
        "bad resource quantity",
        "RC pvcSync: {deployment: {resources: {limits: {cpu: lots}}}}",
        "spec.pvcSync.deployment.resources.limits.cpu",
    ),
    ("ClusterMapping without target", "CM* sourceCluster: a", "spec.targetCluster"),
    ("zero connectivity timeout", "CM connectivityTimeoutSeconds: 0", "spec.connectivityTimeoutSeconds"),
];

/// Builds a manifest from a table row: `NM`, `RC` or `CM`, then spec fields. Without `*`, the fields are added to a
/// valid minimal spec; with `*`, they are the whole spec.
fn invalid_manifest(row: &str) -> Value {
    let (prefix, fields) = row.split_once(' ').unwrap();
    let (kind, minimal) = match prefix.trim_end_matches('*') {
        "NM" => ("NamespaceMapping", "sourceNamespace: a, clusterMappingRef: {name: m}"),
        "RC" => ("RemoteCluster", "kubeconfigSecretRef: {name: kubeconfig, namespace: dr-syncer}"),
        "CM" => ("ClusterMapping", "sourceCluster: a, targetCluster: b"),
        other => panic!("unknown kind {other}"),
    };
    let spec = if prefix.ends_with('*') { fields.to_string() } else { format!("{minimal}, {fields}") };
    yaml(&format!("apiVersion: dr-syncer.io/v1alpha1\nkind: {kind}\nmetadata: {{name: invalid}}\nspec: {{{spec}}}"))
}

#[tokio::test]
async fn invalid_specs_are_rejected_naming_the_field() {
    assert!(INVALID.len() >= 12);
    let (_cluster, ns, applier) = setup("invalid").await;
    let mut failures = Vec::new();
    for (what, row, field) in INVALID {
        match applier.apply(ns.name(), &invalid_manifest(row)).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(field) => {}
            Err(e) => failures.push(format!("{what}: expected a 422 naming {field}, got {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid specs misbehaved:\n{}",
        failures.len(),
        INVALID.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn full_cron_syntax_is_accepted() {
    let (_cluster, ns, applier) = setup("cron").await;
    for schedule in ["0,30 9-17 * * MON-FRI", "*/10 1-5/2 1,15 jan-jun 0", "@hourly", "5/15 0 * * 7", "@annually"] {
        let doc = invalid_manifest(&format!("NM schedule: '{schedule}'"));
        applier.apply(ns.name(), &doc).await.unwrap_or_else(|e| panic!("{schedule} rejected: {e}"));
    }
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("bad test YAML {text}: {e}"))
}

fn assert_spec_kept(doc: &Value, obj: &DynamicObject, what: &str) {
    if let Some(spec) = doc.get("spec") {
        is_subset(spec, &obj.data["spec"]).unwrap_or_else(|e| panic!("{what}: stored spec differs: spec{e}"));
    }
}

fn try_kubectl(cluster: &LabCluster, args: &[&str]) -> Result<String, String> {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .output()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

fn kubectl(cluster: &LabCluster, args: &[&str]) -> String {
    try_kubectl(cluster, args).unwrap_or_else(|e| panic!("kubectl {args:?} failed: {e}"))
}
