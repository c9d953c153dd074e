//! Installing the CRDs shipped in `charts/dr-syncer/crds`.

use std::time::Duration;

use dr_syncer_api::constants::FIELD_MANAGER_CRDS;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::{eventually_async, repo_root};

/// The CRDs as shipped: parsed from the YAML files in `charts/dr-syncer/crds`.
pub fn shipped() -> Vec<CustomResourceDefinition> {
    let dir = repo_root().join("charts/dr-syncer/crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read CRD");
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", f.display()))
        })
        .collect()
}

/// Server-side applies the shipped CRDs (idempotent, safe in parallel) and waits until each is Established.
pub async fn install(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER_CRDS).force();
    for crd in shipped() {
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(&name, &params, &Patch::Apply(&crd)).await.unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    }
    wait_established(client).await;
}

/// Waits until every dr-syncer CRD reports Established=True.
pub async fn wait_established(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in dr_syncer_api::crd::names() {
        eventually_async(&format!("CRD {name} Established"), Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established { Ok(()) } else { Err("not Established yet".to_string()) }
            }
        })
        .await;
    }
}
