//! Throwaway namespaces.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use rand::RngExt;

use crate::LabCluster;

/// Label on every namespace a test creates, so leftovers can be found.
pub const TEST_NAMESPACE_LABEL: &str = "dr-syncer.io/test";

/// `<prefix>-<8 random hex digits>`, a valid DNS label when `prefix` is one of at most 50 characters.
pub fn unique_name(prefix: &str) -> String {
    let suffix: u32 = rand::rng().random();
    format!("{prefix}-{suffix:08x}")
}

/// A namespace created for one test and deleted (without waiting) when dropped, also when the test panics.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// Creates a fresh namespace named `<prefix>-<random>` in `cluster`.
    pub async fn create(cluster: &LabCluster, prefix: &str) -> TestNamespace {
        TestNamespace::create_with_name(cluster, &unique_name(prefix)).await
    }

    /// Creates a namespace with exactly `name` (for tests that need the same name in two clusters).
    pub async fn create_with_name(cluster: &LabCluster, name: &str) -> TestNamespace {
        let api: Api<Namespace> = Api::all(cluster.client().await);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true"}}
        }))
        .expect("namespace");
        api.create(&PostParams::default(), &ns).await.unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace { name: name.to_string(), kubeconfig: cluster.kubeconfig_path().to_path_buf() }
    }

    /// A guard for namespace `name`, created by someone else (the controller, say): deleted when dropped.
    pub fn guard(cluster: &LabCluster, name: &str) -> TestNamespace {
        TestNamespace { name: name.to_string(), kubeconfig: cluster.kubeconfig_path().to_path_buf() }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // The test's runtime may be shutting down (or be the current-thread runtime we are blocking), so delete from a
        // thread with its own runtime and client.
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let client: Client = crate::cluster::client_for(&kubeconfig).await;
                let api: Api<Namespace> = Api::all(client);
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    api.delete(&name, &DeleteParams::background()),
                )
                .await;
            });
        });
        let _ = handle.join();
    }
}
