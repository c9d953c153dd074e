//! Discovery: what a cluster serves, turned into a [`Catalog`] for kind resolution and version choice.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use kube::core::{GroupVersionKind, Version};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};

use super::api::{CallError, call};
use super::kinds::{Catalog, ServedResource};

/// Verbs replication needs on a kind.
const NEEDED_VERBS: &[&str] = &[verbs::LIST, verbs::GET, verbs::CREATE, verbs::PATCH, verbs::DELETE];

/// Runs discovery against a cluster and returns its namespaced resources, versions most preferred first (stable
/// before beta before alpha, higher numbers first).
pub async fn load(client: &Client, timeout: Duration, cluster: &str) -> Result<Catalog, CallError> {
    let discovery =
        call(|| format!("discover the API of cluster {cluster}"), timeout, Discovery::new(client.clone()).run())
            .await?;
    let mut by_kind: BTreeMap<(String, String), ServedResource> = BTreeMap::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (ar, caps) in group.versioned_resources(version) {
                if caps.scope != Scope::Namespaced || ar.plural.contains('/') {
                    continue;
                }
                let entry = by_kind.entry((ar.group.clone(), ar.kind.clone())).or_insert_with(|| ServedResource {
                    group: ar.group.clone(),
                    kind: ar.kind.clone(),
                    plural: ar.plural.clone(),
                    versions: Vec::new(),
                    replicable: NEEDED_VERBS.iter().all(|v| caps.supports_operation(v)),
                });
                if !entry.versions.iter().any(|v| v == version) {
                    entry.versions.push(version.to_string());
                }
            }
        }
    }
    let mut resources: Vec<ServedResource> = by_kind.into_values().collect();
    for r in &mut resources {
        r.versions.sort_by_key(|v| std::cmp::Reverse(Version::parse(v).priority()));
    }
    Ok(Catalog { resources })
}

/// The dynamic API resource of a kind in a version.
pub fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}
