//! Lab clusters: the shared ones started by `make lab-up`, and private ones a test starts itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn lab_run() -> PathBuf {
    std::env::var_os("LAB_RUN").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".lab"))
}

fn lab_script() -> PathBuf {
    repo_root().join("test/lab/lab.sh")
}

fn env_var_for(name: &str) -> String {
    format!("KUBECONFIG_{}", name.to_uppercase().replace('-', "_"))
}

/// A running lab cluster, identified by name.
#[derive(Clone, Debug)]
pub struct LabCluster {
    name: String,
    kubeconfig: PathBuf,
}

impl LabCluster {
    /// The shared lab cluster `name` (`source` or `dr`). Uses `KUBECONFIG_<NAME>` when set (as printed by
    /// `make -s lab-env`), else the lab's run directory. Panics with instructions when the cluster is not running.
    pub fn shared(name: &str) -> LabCluster {
        let kubeconfig = std::env::var_os(env_var_for(name))
            .map(PathBuf::from)
            .unwrap_or_else(|| lab_run().join(name).join("kubeconfig"));
        let pid_file = lab_run().join(name).join("apiserver.pid");
        let running = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !kubeconfig.exists() || (std::env::var_os(env_var_for(name)).is_none() && !running) {
            panic!(
                "lab cluster '{name}' is not running (no kubeconfig at {}).\n\
                 Start it with `make lab-up`, or run the whole suite with `make test`, which starts and stops it.",
                kubeconfig.display()
            );
        }
        LabCluster { name: name.to_string(), kubeconfig }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the cluster's admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubeconfig file's contents (for putting into a RemoteCluster's Secret).
    pub fn kubeconfig_yaml(&self) -> String {
        std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig")
    }

    /// A client with the cluster's admin credentials.
    pub async fn client(&self) -> Client {
        client_for(&self.kubeconfig).await
    }
}

/// A client for the kubeconfig at `path`.
pub async fn client_for(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    Client::try_from(config).expect("build client")
}

/// A control plane (etcd + kube-apiserver, without the controller manager) started for one test and removed when
/// dropped. Starting one takes about 4 s; use it only for what needs a cluster of its own, such as a cluster without
/// the dr-syncer CRDs.
#[derive(Debug)]
pub struct EphemeralCluster {
    cluster: LabCluster,
}

impl EphemeralCluster {
    /// Starts a cluster named `<prefix>-<random>`.
    pub fn start(prefix: &str) -> EphemeralCluster {
        let name = crate::unique_name(prefix);
        // A control plane only, also when the shared clusters have nodes.
        let out = Command::new(lab_script())
            .args(["up", &name, "--no-kcm"])
            .env("LAB_NODES", "0")
            .output()
            .expect("run lab.sh");
        if !out.status.success() {
            let _ = Command::new(lab_script()).args(["down", "--purge", &name]).status();
            panic!(
                "starting ephemeral cluster {name} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let kubeconfig = lab_run().join(&name).join("kubeconfig");
        EphemeralCluster { cluster: LabCluster { name, kubeconfig } }
    }

    /// The cluster, usable like a shared one.
    pub fn cluster(&self) -> &LabCluster {
        &self.cluster
    }

    /// Stops the cluster's API server and etcd, keeping their data (an outage).
    pub fn stop(&self) {
        self.lab(&["stop", &self.cluster.name]);
    }

    /// Starts the cluster again after [`EphemeralCluster::stop`], on the same address and with the same data.
    pub fn restart(&self) {
        self.lab(&["start", &self.cluster.name, "--no-kcm"]);
    }

    fn lab(&self, args: &[&str]) {
        let out = Command::new(lab_script()).args(args).output().expect("run lab.sh");
        assert!(
            out.status.success(),
            "lab.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for EphemeralCluster {
    fn drop(&mut self) {
        let _ = Command::new(lab_script())
            .args(["down", "--purge", &self.cluster.name])
            .stdout(std::process::Stdio::null())
            .status();
    }
}
