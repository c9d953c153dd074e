//! Runs every end-to-end case in `test/cases/` (see its README) against the lab with one shared controller; all
//! cases run concurrently and every failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{Env, apply, get};
use dr_syncer_api::common::find_condition;
use dr_syncer_testlab::manifests::{is_subset, parse};
use dr_syncer_testlab::{TestNamespace, eventually_async, repo_root, unique_name};
use serde_json::{Value, json};

fn read(dir: &Path, file: &str, src: &str, dst: &str) -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let text = text.replace("${SRC_NS}", src).replace("${DST_NS}", dst);
    Some(parse(&text).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display())))
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("test/cases"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

async fn run_case(env: &Env, index: usize, dir: &Path) -> Result<(), String> {
    let case = dir.file_name().unwrap().to_string_lossy().to_string();
    let src = TestNamespace::create(&env.source, "case-src").await;
    let dst = unique_name("case-dst");
    let _guard = TestNamespace::guard(&env.dr, &dst);
    let load = |file: &str| read(dir, file, src.name(), &dst);
    if let Some(before) = load("dr-before.yaml") {
        apply(&env.dr_client, "", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dst}})).await;
        for obj in before {
            apply(&env.dr_client, &dst, &obj).await;
        }
    }
    // A user label on the source namespace, for cases about namespace labels.
    let label = json!({"metadata": {"labels": {"dr-syncer-case": case}}});
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(env.source_client.clone());
    namespaces.patch(src.name(), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&label)).await.unwrap();
    for obj in load("cluster.yaml").unwrap_or_default() {
        apply(&env.source_client, "", &obj).await;
        apply(&env.dr_client, "", &obj).await;
    }
    for obj in load("source.yaml").ok_or("source.yaml missing")? {
        // A kind from cluster.yaml (a CRD) is served a moment after it is created.
        eventually_async(&format!("{case}: apply source object"), common::WAIT, || {
            let (client, ns, obj) = (env.source_client.clone(), src.name().to_string(), obj.clone());
            async move { common::try_apply(&client, &ns, &obj).await }
        })
        .await;
    }
    let mut spec = load("mapping.yaml").and_then(|d| d.into_iter().next()).unwrap_or_else(|| json!({}));
    let fields = spec.as_object_mut().ok_or("mapping.yaml is not a mapping")?;
    fields.insert("clusterMappingRef".into(), json!({"name": "pair"}));
    fields.insert("sourceNamespace".into(), json!(src.name()));
    fields.entry("destinationNamespace").or_insert(json!(dst));
    fields.insert("replicationMode".into(), json!("Manual"));
    fields.insert("syncTrigger".into(), json!("case-run"));
    let name = format!("case-{index:02}");
    env.mapping(&name, spec).await;
    let status = env
        .wait_mapping(&name, &format!("{case}: sync"), |s| {
            if s.last_handled_trigger.as_deref() == Some("case-run") { Ok(s.clone()) } else { Err("not synced".into()) }
        })
        .await;
    let mut failures = Vec::new();
    for expected in load("expected.yaml").ok_or("expected.yaml missing")? {
        let (api_version, kind) =
            (expected["apiVersion"].as_str().unwrap_or("v1"), expected["kind"].as_str().unwrap_or(""));
        let obj_name = expected["metadata"]["name"].as_str().unwrap_or("");
        let ns = if kind == "Namespace" { "" } else { dst.as_str() };
        match get(&env.dr_client, api_version, kind, ns, obj_name).await {
            None => failures.push(format!("{kind}/{obj_name} missing in DR")),
            Some(actual) => {
                if let Err(e) = is_subset(&expected, &actual) {
                    failures.push(format!("{kind}/{obj_name}: {e}"));
                }
            }
        }
    }
    for absent in load("absent.yaml").unwrap_or_default() {
        let (api_version, kind, obj_name) = (
            absent["apiVersion"].as_str().unwrap_or("v1"),
            absent["kind"].as_str().unwrap_or(""),
            absent["name"].as_str().unwrap_or(""),
        );
        if get(&env.dr_client, api_version, kind, &dst, obj_name).await.is_some() {
            failures.push(format!("{kind}/{obj_name} should not be in DR"));
        }
    }
    if let Some(want) = load("status.yaml").and_then(|d| d.into_iter().next()) {
        let synced = find_condition(&status.conditions, "Synced")
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap_or_default();
        if let Some(s) = want["synced"].as_str().filter(|s| *s != synced.0) {
            failures.push(format!("Synced is {:?}, expected {s}", synced));
        }
        if let Some(r) = want["syncedReason"].as_str().filter(|r| *r != synced.1) {
            failures.push(format!("Synced reason is {:?}, expected {r}", synced.1));
        }
        for (kind, counts) in want["counts"].as_object().cloned().unwrap_or_default() {
            let actual =
                status.resource_counts.iter().find(|k| k.kind == kind).map(|k| serde_json::to_value(k).unwrap());
            match actual {
                None => failures.push(format!("no counts for {kind}")),
                Some(a) => {
                    if let Err(e) = is_subset(&counts, &a) {
                        failures.push(format!("counts of {kind}: {e}"));
                    }
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{case}:\n  {}\n  status: {}",
            failures.join("\n  "),
            serde_json::to_string(&status).unwrap_or_default()
        ))
    }
}

#[tokio::test]
async fn every_case_in_test_cases_produces_its_expected_dr_state() {
    let env = Env::start("cases").await;
    let dirs = case_dirs();
    assert!(dirs.len() >= 15, "expected at least 15 cases, found {}", dirs.len());
    let results = futures::future::join_all(dirs.iter().enumerate().map(|(i, d)| run_case(&env, i, d))).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
    eventually_async("no sync running", common::WAIT, || async {
        if env.metrics().contains("dr_syncer_sync_running{")
            && env.metrics().lines().any(|l| l.starts_with("dr_syncer_sync_running{") && l.ends_with(" 1"))
        {
            Err("a sync is running".to_string())
        } else {
            Ok(())
        }
    })
    .await;
}
