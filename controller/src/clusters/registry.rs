//! Clients for RemoteClusters, built from their kubeconfig Secrets and cached until the Secret changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_syncer_api::RemoteCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::config::KubeConfigOptions;
use kube::{Api, Client, ResourceExt};

use super::kubeconfig::{KubeconfigProblem, inspect};
use crate::sync::api::CallError;
use crate::sync::discovery;
use crate::sync::kinds::Catalog;

/// How long a cluster's discovery catalog is reused before it is loaded again.
pub const CATALOG_TTL: Duration = Duration::from_secs(300);
/// Connect timeout of remote clients.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout of remote clients (lists of large namespaces take a while).
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a RemoteCluster has no usable client.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig Secret does not exist.
    #[error("kubeconfig Secret {namespace}/{name} not found")]
    SecretNotFound {
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// The Secret lacks the kubeconfig key.
    #[error("kubeconfig Secret {namespace}/{name} has no key {key:?}")]
    SecretKeyMissing {
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// The Secret could not be read.
    #[error("cannot read kubeconfig Secret {namespace}/{name}: {message}")]
    SecretUnreadable {
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// What the API server answered.
        message: String,
    },
    /// The Secret is in another namespace that does not allow references from the RemoteCluster's.
    #[error(
        "kubeconfig Secret {namespace}/{name} is in another namespace than the RemoteCluster ({referrer}); add {referrer} to its annotation {annotation} to allow it",
        annotation = dr_syncer_api::constants::ANNOTATION_ALLOW_REFERENCES_FROM
    )]
    ReferenceNotAllowed {
        /// Secret namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The RemoteCluster's namespace.
        referrer: String,
    },
    /// The kubeconfig is unusable.
    #[error("invalid kubeconfig in Secret {secret}: {problem}")]
    Kubeconfig {
        /// `namespace/name[key]` of the Secret.
        secret: String,
        /// What is wrong.
        #[source]
        problem: KubeconfigProblem,
    },
}

impl ClusterError {
    /// A short CamelCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::SecretNotFound { .. } => "SecretNotFound",
            ClusterError::SecretKeyMissing { .. } => "SecretKeyMissing",
            ClusterError::SecretUnreadable { .. } => "SecretUnreadable",
            ClusterError::ReferenceNotAllowed { .. } => "ReferenceNotAllowed",
            ClusterError::Kubeconfig { problem, .. } => problem.reason,
        }
    }

    /// Whether the Secret itself is missing or unreadable (rather than its content being bad).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, ClusterError::Kubeconfig { .. })
    }
}

/// A usable client for one RemoteCluster.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: Client,
    /// API server URL.
    pub server: String,
    /// The kubeconfig asked to skip TLS verification (ignored: verification stays on).
    pub insecure_requested: bool,
    /// Identifies this client: the RemoteCluster and the kubeconfig Secret version it was built from.
    pub identity: String,
}

struct Entry {
    secret_version: String,
    connection: Connection,
    catalog: Option<(Arc<Catalog>, Instant)>,
}

/// Clients per RemoteCluster (`namespace/name`), rebuilt when the kubeconfig Secret's resourceVersion changes.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// The cache key of a RemoteCluster: `namespace/name`.
pub fn key(rc: &RemoteCluster) -> String {
    format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any())
}

impl Registry {
    /// A client for `rc`: reads its kubeconfig Secret through `local` and reuses the cached client while the Secret
    /// is unchanged.
    pub async fn connect(
        &self,
        local: &Client,
        rc: &RemoteCluster,
        timeout: Duration,
    ) -> Result<Connection, ClusterError> {
        let secret_ref = &rc.spec.kubeconfig_secret_ref;
        let (namespace, name, data_key) =
            (secret_ref.namespace.clone(), secret_ref.name.clone(), secret_ref.key_or_default().to_string());
        let api: Api<Secret> = Api::namespaced(local.clone(), &namespace);
        let secret = match tokio::time::timeout(timeout, api.get_opt(&name)).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => return Err(ClusterError::SecretNotFound { namespace, name }),
            Ok(Err(e)) => return Err(ClusterError::SecretUnreadable { namespace, name, message: e.to_string() }),
            Err(_) => {
                let message = format!("no answer within {timeout:?}");
                return Err(ClusterError::SecretUnreadable { namespace, name, message });
            }
        };
        let referrer = rc.namespace().unwrap_or_default();
        if !dr_syncer_api::constants::reference_allowed(&referrer, &namespace, secret.metadata.annotations.as_ref()) {
            return Err(ClusterError::ReferenceNotAllowed { namespace, name, referrer });
        }
        let version = format!(
            "{}:{}:{}",
            secret.uid().unwrap_or_default(),
            secret.resource_version().unwrap_or_default(),
            data_key
        );
        if let Some(conn) = self.cached(&key(rc), &version) {
            return Ok(conn);
        }
        let bytes = secret.data.as_ref().and_then(|d| d.get(&data_key)).map(|b| b.0.clone()).ok_or_else(|| {
            ClusterError::SecretKeyMissing { namespace: namespace.clone(), name: name.clone(), key: data_key.clone() }
        })?;
        let secret_label = format!("{namespace}/{name}[{data_key}]");
        let bad = |problem: KubeconfigProblem| ClusterError::Kubeconfig { secret: secret_label.clone(), problem };
        let text = String::from_utf8(bytes).map_err(|_| {
            bad(KubeconfigProblem {
                reason: "KubeconfigParseError",
                message: "the kubeconfig is not UTF-8 text".into(),
            })
        })?;
        let inspected = inspect(&text).map_err(&bad)?;
        let options = KubeConfigOptions { context: Some(inspected.context.clone()), ..KubeConfigOptions::default() };
        let mut config = kube::Config::from_custom_kubeconfig(inspected.kubeconfig, &options)
            .await
            .map_err(|e| bad(KubeconfigProblem { reason: "KubeconfigLoadError", message: e.to_string() }))?;
        config.accept_invalid_certs = false;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        let client = Client::try_from(config)
            .map_err(|e| bad(KubeconfigProblem { reason: "KubeconfigLoadError", message: e.to_string() }))?;
        let connection = Connection {
            client,
            server: inspected.server,
            insecure_requested: inspected.insecure_requested,
            identity: format!("{}#{version}", key(rc)),
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key(rc), Entry { secret_version: version, connection: connection.clone(), catalog: None });
        }
        tracing::info!(remote_cluster = %key(rc), server = %connection.server, "built client for remote cluster");
        Ok(connection)
    }

    fn cached(&self, key: &str, version: &str) -> Option<Connection> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|e| e.secret_version == version).map(|e| e.connection.clone())
    }

    /// What `rc`'s cluster serves, from discovery, reused for [`CATALOG_TTL`] per client.
    pub async fn catalog(
        &self,
        rc: &RemoteCluster,
        connection: &Connection,
        timeout: Duration,
    ) -> Result<Arc<Catalog>, CallError> {
        let k = key(rc);
        if let Ok(entries) = self.entries.lock()
            && let Some((catalog, at)) = entries.get(&k).and_then(|e| e.catalog.as_ref())
            && at.elapsed() < CATALOG_TTL
        {
            return Ok(catalog.clone());
        }
        let catalog = Arc::new(discovery::load(&connection.client, timeout, &rc.name_any()).await?);
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&k)
        {
            entry.catalog = Some((catalog.clone(), Instant::now()));
        }
        Ok(catalog)
    }

    /// Forgets the discovery catalog of `rc`, so the next [`Registry::catalog`] loads it again (after a CRD was
    /// installed, for example).
    pub fn invalidate_catalog(&self, rc: &RemoteCluster) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&key(rc))
        {
            entry.catalog = None;
        }
    }

    /// Drops the cached client of a deleted RemoteCluster.
    pub fn forget(&self, rc: &RemoteCluster) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&key(rc));
        }
    }
}

/// Checks that a cluster answers: `GET /version`. Returns its version, or `(reason, message)`.
pub async fn probe(connection: &Connection, timeout: Duration) -> Result<String, (String, String)> {
    let what = || format!("GET {}/version", connection.server);
    match crate::sync::api::call(what, timeout, connection.client.apiserver_version()).await {
        Ok(info) => Ok(info.git_version),
        Err(e) => Err((e.reason, format!("{}: {}", e.what, e.message))),
    }
}

impl Registry {
    /// Drops cached clients of RemoteClusters not in `known` (`namespace/name` keys).
    pub fn retain(&self, known: &std::collections::HashSet<String>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|k, _| known.contains(k));
        }
    }
}
