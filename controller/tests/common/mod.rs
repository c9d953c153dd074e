//! A lab environment for sync tests: the controllers run in-process against the `dr` cluster, scoped to a control
//! namespace of their own (so tests in parallel never share a controller), with RemoteClusters `source` and `dr`
//! and a ClusterMapping `pair`.
#![allow(dead_code)]

pub mod data;

use std::time::Duration;

use dr_syncer_api::{ClusterMapping, NamespaceMapping, NamespaceMappingStatus, RemoteCluster};
use dr_syncer_controller::clusters::Registry;
use dr_syncer_controller::reconcile::events::Events;
use dr_syncer_controller::reconcile::metrics::ControllerMetrics;
use dr_syncer_controller::reconcile::{Context, Settings};
use dr_syncer_testlab::manifests::Applier;
use dr_syncer_testlab::{LabCluster, TestNamespace, crds, eventually_async};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long tests wait for the controller.
pub const WAIT: Duration = Duration::from_secs(60);

/// The running environment; the controllers stop when it is dropped.
pub struct Env {
    pub source: LabCluster,
    pub dr: LabCluster,
    pub source_client: Client,
    pub dr_client: Client,
    /// Control namespace in the `dr` cluster holding the dr-syncer resources.
    pub ctl: TestNamespace,
    pub registry: prometheus::Registry,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Env {
    /// Starts controllers for a fresh control namespace and creates RemoteClusters `source`, `dr` and
    /// ClusterMapping `pair`.
    pub async fn start(prefix: &str) -> Env {
        Env::start_with(prefix, true).await
    }

    /// Like [`Env::start`]; without in-process controllers when `controllers` is false (for tests that run the
    /// controller binary).
    pub async fn start_with(prefix: &str, controllers: bool) -> Env {
        Env::start_full(prefix, controllers, |_| {}).await
    }

    /// Like [`Env::start`], with the controllers' settings changed by `tune` first.
    #[allow(dead_code)] // not every test binary tunes the settings
    pub async fn start_tuned(prefix: &str, tune: impl FnOnce(&mut Settings)) -> Env {
        Env::start_full(prefix, true, tune).await
    }

    async fn start_full(prefix: &str, controllers: bool, tune: impl FnOnce(&mut Settings)) -> Env {
        // LAB_TEST_LOG=<filter> (for example `dr_syncer_controller=debug`) shows the in-process controllers' logs.
        if let Ok(filter) = std::env::var("LAB_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let (source, dr) = (LabCluster::shared("source"), LabCluster::shared("dr"));
        let (source_client, dr_client) = (source.client().await, dr.client().await);
        crds::install(&dr_client).await;
        let ctl = TestNamespace::create(&dr, prefix).await;
        let registry = prometheus::Registry::new();
        let mut settings = Settings {
            api_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            namespace: Some(ctl.name().to_string()),
            agent_image: dr_syncer_testlab::images::try_image("agent").unwrap_or(Settings::default().agent_image),
            ..Settings::default()
        };
        tune(&mut settings);
        let ctx = Context {
            client: dr_client.clone(),
            registry: Registry::default(),
            events: Events::new(dr_client.clone(), None),
            metrics: ControllerMetrics::register(&registry).unwrap(),
            settings,
            caches: Default::default(),
            probes: Default::default(),
            data: dr_syncer_controller::data::DataSync::new(&registry, format!("test-{prefix}")).unwrap(),
        };
        let shutdown = CancellationToken::new();
        if controllers {
            tokio::spawn(dr_syncer_controller::controllers::run(ctx, shutdown.clone()));
        }
        let env = Env { source, dr, source_client, dr_client, ctl, registry, shutdown };
        env.kubeconfig_secret("source-kubeconfig", &env.source.kubeconfig_yaml()).await;
        env.kubeconfig_secret("dr-kubeconfig", &env.dr.kubeconfig_yaml()).await;
        env.apply_ctl(&remote_cluster("source", "source-kubeconfig")).await;
        env.apply_ctl(&remote_cluster("dr", "dr-kubeconfig")).await;
        env.apply_ctl(&json!({
            "apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping",
            "metadata": {"name": "pair"}, "spec": {"sourceCluster": "source", "targetCluster": "dr", "verifyConnectivity": false}
        }))
        .await;
        env
    }

    /// Creates (or replaces) a Secret holding a kubeconfig in the control namespace.
    pub async fn kubeconfig_secret(&self, name: &str, kubeconfig: &str) {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"kubeconfig": kubeconfig}});
        self.apply_ctl(&secret).await;
    }

    /// Server-side applies an object into the control namespace.
    pub async fn apply_ctl(&self, obj: &Value) {
        apply(&self.dr_client, self.ctl.name(), obj).await;
    }

    /// Server-side applies a NamespaceMapping `name` with `spec` into the control namespace.
    pub async fn mapping(&self, name: &str, spec: Value) {
        self.apply_ctl(&json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping", "metadata": {"name": name}, "spec": spec})).await;
    }

    /// The NamespaceMapping API of the control namespace.
    pub fn mappings(&self) -> Api<NamespaceMapping> {
        Api::namespaced(self.dr_client.clone(), self.ctl.name())
    }

    /// The RemoteCluster API of the control namespace.
    pub fn remote_clusters(&self) -> Api<RemoteCluster> {
        Api::namespaced(self.dr_client.clone(), self.ctl.name())
    }

    /// The ClusterMapping API of the control namespace.
    pub fn cluster_mappings(&self) -> Api<ClusterMapping> {
        Api::namespaced(self.dr_client.clone(), self.ctl.name())
    }

    /// Waits until the status of mapping `name` satisfies `check`.
    pub async fn wait_mapping<T>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&NamespaceMappingStatus) -> Result<T, String>,
    ) -> T {
        let api = self.mappings();
        eventually_async(what, WAIT, || async {
            let nm = api.get(name).await.map_err(|e| e.to_string())?;
            let status = nm.status.unwrap_or_default();
            check(&status).map_err(|e| format!("{e}; status: {}", serde_json::to_string(&status).unwrap_or_default()))
        })
        .await
    }

    /// Waits for mapping `name` to finish a sync after `after` (an RFC 3339 time or None for any).
    pub async fn wait_synced_after(&self, name: &str, after: Option<jiff::Timestamp>) -> NamespaceMappingStatus {
        self.wait_mapping(name, "a finished sync", |s| match &s.last_sync_time {
            Some(t)
                if after.is_none_or(|a| t.0 >= a)
                    && s.phase != Some(dr_syncer_api::namespace_mapping::NamespaceMappingPhase::Running) =>
            {
                Ok(s.clone())
            }
            _ => Err("no sync finished yet".into()),
        })
        .await
    }

    /// Adds the sync-now annotation to mapping `name`.
    pub async fn sync_now(&self, name: &str) {
        let patch = json!({"metadata": {"annotations": {"dr-syncer.io/sync-now": jiff::Timestamp::now().to_string()}}});
        self.mappings().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    /// Reasons of the events on object `name` in the control namespace.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.dr_client.clone(), self.ctl.name());
        let list = api.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Metrics text of the in-process controllers.
    pub fn metrics(&self) -> String {
        let mut buf = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &self.registry.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }
}

/// The value of an unlabelled metric (or the sum of a metric's series) in a Prometheus text exposition.
#[allow(dead_code)] // not every test binary reads metrics
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A ConfigMap `name` with one entry.
pub fn plain_config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// Waits until `object` (in the control namespace) has an event with `reason`.
pub async fn has_event(env: &Env, object: &str, reason: &str) {
    eventually_async(&format!("event {reason} on {object}"), WAIT, || async {
        let reasons = env.event_reasons(object).await;
        if reasons.iter().any(|r| r == reason) { Ok(()) } else { Err(format!("{reasons:?}")) }
    })
    .await;
}

/// A RemoteCluster manifest.
pub fn remote_cluster(name: &str, secret: &str) -> Value {
    json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster", "metadata": {"name": name},
           "spec": {"kubeconfigSecretRef": {"name": secret, "namespace": "${CTL}"}}})
}

/// Server-side applies `obj` into `namespace` (any served kind); `${CTL}` in string values is replaced by `namespace`.
pub async fn apply(client: &Client, namespace: &str, obj: &Value) {
    let text = serde_json::to_string(obj).unwrap().replace("${CTL}", namespace);
    let obj: Value = serde_json::from_str(&text).unwrap();
    Applier::new(client.clone()).await.apply(namespace, &obj).await.unwrap_or_else(|e| panic!("apply {obj}: {e}"));
}

/// Like [`apply`], returning the error (for kinds that may not be served yet).
pub async fn try_apply(client: &Client, namespace: &str, obj: &Value) -> Result<(), String> {
    let discovery = kube::Discovery::new(client.clone()).run().await.map_err(|e| e.to_string())?;
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = obj["apiVersion"].as_str().unwrap_or_default().split_once('/').unwrap_or(("", "v1"));
    if discovery.resolve_gvk(&GroupVersionKind::gvk(group, version, kind)).is_none() {
        return Err(format!("{kind} not served yet"));
    }
    Applier::new(client.clone()).await.apply(namespace, obj).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Gets an object as JSON, `None` when absent.
pub async fn get(client: &Client, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource)
    };
    api.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

/// Deletes an object (no error when absent).
pub async fn delete(client: &Client, api_version: &str, kind: &str, namespace: &str, name: &str) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource)
    };
    let _ = api.delete(name, &Default::default()).await;
}

/// Creates an object with POST (fails when it exists).
pub async fn create_secret(client: &Client, namespace: &str, secret: Secret) {
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
}
