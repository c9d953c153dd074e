//! What a mapping may refer to and what it brings along, against the lab: references to another namespace's
//! Secret or ClusterMapping are refused until that namespace allows them; a mapping without resourceTypes takes its
//! source cluster's defaults; syncCRDs copies the definitions of replicated custom kinds to DR first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, apply, get, has_event, plain_config_map as cm};
use dr_syncer_api::NamespaceMappingStatus;
use dr_syncer_api::common::find_condition;
use dr_syncer_testlab::{TestNamespace, eventually_async, unique_name};
use serde_json::json;

/// The condition of `type_` on RemoteCluster `name`, as (status, reason).
async fn cluster_condition(env: &Env, name: &str, type_: &str) -> (String, String) {
    let rc = env.remote_clusters().get(name).await.ok();
    let conditions = rc.and_then(|rc| rc.status).map(|s| s.conditions).unwrap_or_default();
    find_condition(&conditions, type_).map(|c| (c.status.clone(), c.reason.clone())).unwrap_or_default()
}

/// A RemoteCluster may not use a kubeconfig Secret of another namespace, nor a NamespaceMapping another namespace's
/// ClusterMapping (and with it that namespace's clusters), until that namespace's object allows it.
#[tokio::test]
async fn references_to_another_namespace_are_refused_until_that_namespace_allows_them() {
    let env = Env::start("xref").await;
    let other = TestNamespace::create(&env.dr, "xref-other").await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kc"},
        "stringData": {"kubeconfig": env.source.kubeconfig_yaml()}});
    apply(&env.dr_client, other.name(), &secret).await;
    env.apply_ctl(
        &json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster", "metadata": {"name": "elsewhere"},
        "spec": {"kubeconfigSecretRef": {"name": "kc", "namespace": other.name()}}}),
    )
    .await;
    eventually_async("the foreign Secret refused", common::WAIT, || async {
        let got = cluster_condition(&env, "elsewhere", "KubeconfigAvailable").await;
        if got == ("False".to_string(), "ReferenceNotAllowed".to_string()) { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    has_event(&env, "elsewhere", "ReferenceNotAllowed").await;
    let mut allowed = secret.clone();
    allowed["metadata"]["annotations"] =
        json!({"dr-syncer.io/allow-references-from": format!("x, {}", env.ctl.name())});
    apply(&env.dr_client, other.name(), &allowed).await;
    eventually_async("the allowed Secret used", common::WAIT, || async {
        let got = cluster_condition(&env, "elsewhere", "ClusterAvailable").await;
        if got.0 == "True" { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;

    let shared = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "metadata": {"name": "shared"},
        "spec": {"sourceCluster": "source", "targetCluster": "dr", "verifyConnectivity": false}});
    apply(&env.dr_client, other.name(), &shared).await;
    let src = TestNamespace::create(&env.source, "xref-src").await;
    let dst = unique_name("xref-dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &cm("a")).await;
    env.mapping(
        "m",
        json!({"clusterMappingRef": {"name": "shared", "namespace": other.name()}, "sourceNamespace": src.name(),
        "destinationNamespace": dst, "resourceTypes": ["ConfigMap"]}),
    )
    .await;
    let s = env
        .wait_mapping("m", "refused", |s| {
            if s.conditions.iter().any(|c| c.reason == "ReferenceNotAllowed") {
                Ok(s.clone())
            } else {
                Err(format!("{:?}", s.conditions))
            }
        })
        .await;
    assert!(s.conditions.iter().any(|c| c.reason == "ReferenceNotAllowed" && c.message.contains(other.name())));
    has_event(&env, "m", "ReferenceNotAllowed").await;
    assert!(get(&env.dr_client, "v1", "ConfigMap", &dst, "a").await.is_none(), "nothing written");
}

/// A mapping that names no resourceTypes replicates its source cluster's defaultResourceTypes.
#[tokio::test]
async fn mapping_without_resource_types_takes_its_source_clusters_defaults() {
    let env = Env::start("deftypes").await;
    let mut rc = common::remote_cluster("source", "source-kubeconfig");
    rc["spec"]["defaultResourceTypes"] = json!(["secrets"]);
    env.apply_ctl(&rc).await;
    let src = TestNamespace::create(&env.source, "deftypes-src").await;
    let dst = unique_name("deftypes-dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    apply(&env.source_client, src.name(), &cm("a")).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
    apply(&env.source_client, src.name(), &secret).await;
    env.mapping(
        "m",
        json!({"clusterMappingRef": {"name": "pair"}, "sourceNamespace": src.name(), "destinationNamespace": dst,
               "replicationMode": "Manual", "syncTrigger": "1"}),
    )
    .await;
    let s = env
        .wait_mapping("m", "the sync", |s| {
            if s.last_handled_trigger.as_deref() == Some("1") { Ok(s.clone()) } else { Err("not yet".into()) }
        })
        .await;
    assert!(get(&env.dr_client, "v1", "Secret", &dst, "s").await.is_some(), "{:?}", s.resource_status);
    assert!(get(&env.dr_client, "v1", "ConfigMap", &dst, "a").await.is_none(), "ConfigMaps are not in the defaults");
}

/// With syncCRDs, the definition of a replicated custom kind is written to DR before its objects (the DR cluster
/// never had it); without it, the kind is reported as not served there.
#[tokio::test]
async fn sync_crds_brings_the_definitions_of_replicated_custom_kinds_to_dr() {
    let env = Env::start("crds").await;
    let group = format!("{}.lab.test", unique_name("g"));
    let crd_name = format!("widgets.{group}");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                   "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
    apply(&env.source_client, "", &crd).await;
    let src = TestNamespace::create(&env.source, "crds-src").await;
    let dst = unique_name("crds-dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    let widget =
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    eventually_async("the Widget kind served in the source", common::WAIT, || async {
        common::try_apply(&env.source_client, src.name(), &widget).await
    })
    .await;
    let spec = |sync_crds: bool, token: &str| {
        json!({"clusterMappingRef": {"name": "pair"}, "sourceNamespace": src.name(), "destinationNamespace": dst,
               "replicationMode": "Manual", "syncTrigger": token, "resourceTypes": [crd_name.clone()], "syncCRDs": sync_crds})
    };
    let handled = |token: &'static str| {
        move |s: &NamespaceMappingStatus| {
            if s.last_handled_trigger.as_deref() == Some(token) { Ok(s.clone()) } else { Err("not yet".to_string()) }
        }
    };
    env.mapping("m", spec(false, "1")).await;
    let s = env.wait_mapping("m", "a sync without syncCRDs", handled("1")).await;
    assert!(
        s.resource_status.iter().any(|r| r.name.starts_with("Widget.")),
        "the kind is not served in DR: {:?}",
        s.resource_status
    );
    env.mapping("m", spec(true, "2")).await;
    let s = env.wait_mapping("m", "a sync with syncCRDs", handled("2")).await;
    let copied = get(&env.dr_client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", &crd_name).await;
    assert!(copied.is_some(), "the definition is in DR: {:?}", s.resource_status);
    let w = get(&env.dr_client, &format!("{group}/v1"), "Widget", &dst, "w").await;
    assert_eq!(w.map(|w| w["spec"]["size"].clone()), Some(json!(3)), "{:?}", s.resource_status);
    for client in [&env.source_client, &env.dr_client] {
        common::delete(client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", &crd_name).await;
    }
}
