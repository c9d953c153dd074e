//! Command-line flags of `dr-syncer-controller`. Flag and environment names of the Go operator are kept.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::Error;

/// Default of `--watch-queue-length`: about a megabyte of queued changes per Continuous mapping at most.
pub const DEFAULT_WATCH_QUEUE: u32 = 4096;
/// The agent image when neither `--agent-image` nor the RemoteCluster names one: `make images` builds it.
pub const DEFAULT_AGENT_IMAGE: &str = concat!("localhost/dr-syncer/agent:", env!("CARGO_PKG_VERSION"));

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// dr-syncer controller: keeps a warm standby of Kubernetes namespaces in another cluster.
#[derive(Debug, Parser)]
#[command(name = "dr-syncer-controller", version = crate::build::VERSION, long_version = crate::build::LONG_VERSION)]
pub struct Args {
    /// Kubeconfig of the cluster holding the dr-syncer resources. Default: in-cluster configuration, else $KUBECONFIG,
    /// else ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use. Default: the current context.
    #[arg(long)]
    pub context: Option<String>,

    /// Address of the Prometheus /metrics endpoint, as host:port or :port (all interfaces).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_bind_address: String,

    /// Address of the /healthz and /readyz endpoints, as host:port or :port (all interfaces). May equal the metrics
    /// address.
    #[arg(long, env = "PROBE_ADDR", default_value = "127.0.0.1:8081")]
    pub health_probe_bind_address: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level or filter (error, warn, info, debug, trace, or a filter such as `info,kube=debug`). RUST_LOG, when
    /// set, takes precedence.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Time allowed for each Kubernetes API request outside syncs and copies — reconcilers (reads, status writes,
    /// cluster checks, agent installation) and readiness checks — for example `5s`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub api_timeout: Duration,

    /// Time between readiness checks while ready; checks run every second while not ready.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub readiness_interval: Duration,

    /// Time allowed for each request a sync makes to a source or DR cluster, for example `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sync_api_timeout: Duration,

    /// Time between connectivity checks of RemoteClusters and ClusterMappings that are healthy.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub health_check_interval: Duration,

    /// Objects one sync writes or deletes at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub sync_concurrency: u16,

    /// Source changes one Continuous mapping queues at most while it syncs earlier ones. When more arrive, they are
    /// dropped and the mapping runs a full sync instead (nothing is lost; memory stays bounded).
    #[arg(long, default_value_t = DEFAULT_WATCH_QUEUE, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watch_queue_length: u32,

    /// Image of the PVC data-sync agent installed in source clusters (a RemoteCluster's `spec.pvcSync.image`
    /// overrides its parts).
    #[arg(long, env = "AGENT_IMAGE", default_value = DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,

    /// Only manage dr-syncer resources in this namespace (default: every namespace).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Run only while holding the leader Lease, so several replicas can run with one active (high availability).
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,

    /// Name of the coordination.k8s.io Lease replicas compete for.
    #[arg(long, default_value = dr_syncer_api::constants::LEADER_ELECTION_LEASE)]
    pub leader_election_id: String,

    /// Namespace of the Lease (default: POD_NAMESPACE, else the service account's namespace in a pod).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// How long the leader's hold lasts without renewal; a standby takes over within this after the leader dies.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// The leader renews its hold this long before it expires.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub leader_election_renew_grace: Duration,

    /// Print version information as JSON and exit.
    #[arg(long)]
    pub version_json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    dr_syncer_api::validation::parse_duration(s).map_err(|e| e.to_string())
}

/// Parses a listen address: `host:port`, `[v6]:port`, or `:port` meaning every interface.
pub fn parse_listen_address(value: &str) -> Result<SocketAddr, Error> {
    let full = if value.starts_with(':') { format!("0.0.0.0{value}") } else { value.to_string() };
    full.parse().map_err(|_| Error::Address { value: value.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_listen_address_accepts_go_style_port_only() {
        let cases = [
            (":8080", "0.0.0.0:8080"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("[::1]:81", "[::1]:81"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_listen_address(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn parse_listen_address_rejects_value_when_malformed() {
        for input in ["", "8080", "localhost", "host:port", ":99999"] {
            assert_eq!(parse_listen_address(input).unwrap_err().reason(), "InvalidAddress", "{input}");
        }
    }

    #[test]
    fn args_parse_defaults_when_no_flags_given() {
        let args = Args::try_parse_from(["dr-syncer-controller"]).unwrap();
        assert_eq!(args.metrics_bind_address, "127.0.0.1:8080");
        assert_eq!(args.health_probe_bind_address, "127.0.0.1:8081");
        assert_eq!(args.api_timeout, Duration::from_secs(5));
        assert_eq!(args.log_format, LogFormat::Text);
    }

    #[test]
    fn args_reject_bad_duration() {
        let err = Args::try_parse_from(["dr-syncer-controller", "--api-timeout", "5 seconds"]).unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }
}
