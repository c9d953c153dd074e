//! `dr-syncer-agent`: `bastion` (the node's SSH jump host), `serve` (the rsync pod's SSH server), `copy` (the DR
//! copy pod's program) or `probe` (SSH handshakes with the agents from the DR cluster).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dr_syncer_agent::bastion::Bastion;
use dr_syncer_agent::copy::{self, CopyJob, Verify};
use dr_syncer_agent::listen::{self, Limits, Service};
use dr_syncer_agent::metrics::{AgentMetrics, serve_http};
use dr_syncer_agent::policy_secret::{Nodes, PolicySecret, watch_secret};
use dr_syncer_agent::reload::{PolicyFiles, watch_files};
use dr_syncer_agent::serve::RsyncServer;
use dr_syncer_agent::ssh;
use dr_syncer_agent::targets::{Network, TargetRules};
use dr_syncer_wire::keys;
use dr_syncer_wire::policy::Policy;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// dr-syncer agent: SSH bastion of a source cluster node, or SSH server of an rsync pod.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Worker threads of the async runtime. One measured fastest on a 2-CPU node (fewer cross-thread wake-ups while
    /// rsync and ssh keep the CPUs busy: 1.13–1.16× an OpenSSH jump host instead of 0.87–1.19×); raise it on nodes
    /// that relay many copies at once.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: u16,
    #[command(subcommand)]
    command: Command,
}

/// Where an SSH server's host key comes from.
#[derive(clap::Args, Debug, Clone)]
struct HostKeyArgs {
    /// OpenSSH Ed25519 private host key (pinned by every client); instead of `--generate-host-key`.
    #[arg(long, required_unless_present = "generate_host_key")]
    host_key: Option<PathBuf>,
    /// Make the host key in memory at start and log only its public half (message `host key generated`, field
    /// `public_key`, repeated every five minutes), so the private half is on no disk and in no Secret.
    #[arg(long, conflicts_with = "host_key")]
    generate_host_key: bool,
}

/// Connection limits of an SSH listener (see `dr_syncer_agent::listen::Limits`).
#[derive(clap::Args, Debug, Clone)]
struct LimitArgs {
    /// Time a client has from connecting to authenticating; the connection is closed after it.
    #[arg(long, default_value = "30s", value_parser = humantime_duration)]
    login_grace: Duration,
    /// Connections not authenticated yet, from all sources; more are closed at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_startups: u32,
    /// Connections not authenticated yet, from one source address; more are closed at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_startups_per_source: u32,
    /// Connections in total; more are closed at once.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            login_grace: self.login_grace,
            max_startups: self.max_startups as usize,
            max_startups_per_source: self.max_startups_per_source as usize,
            max_connections: self.max_connections as usize,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The node's SSH jump host: relays a mapping's rsync client to that mapping's rsync pods on this node.
    Bastion {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:2222")]
        listen: SocketAddr,
        #[command(flatten)]
        host_key: HostKeyArgs,
        /// In a cluster: the policy Secret the controller writes, as NAMESPACE/NAME, watched through the API (the
        /// pod's service account needs get/list/watch on it). Instead of `--authorized` and `--targets`.
        #[arg(long, conflicts_with_all = ["authorized", "targets"], required_unless_present = "authorized")]
        policy_secret: Option<String>,
        /// This node's name (only its targets are read from the policy Secret).
        #[arg(long, env = dr_syncer_api::agent::ENV_NODE_NAME, requires = "policy_secret")]
        node_name: Option<String>,
        /// Relay to the mapping's rsync pods on every node (the agents are behind a Service), not only this one's.
        #[arg(long, requires = "policy_secret")]
        all_nodes: bool,
        /// Outside a cluster: JSON authorized set, mapping → public keys.
        #[arg(long, requires = "targets")]
        authorized: Option<PathBuf>,
        /// Outside a cluster: JSON target set, mapping → addresses of its rsync pods on this node.
        #[arg(long, requires = "authorized")]
        targets: Option<PathBuf>,
        /// How often the `--authorized` and `--targets` files are checked for changes.
        #[arg(long, default_value = "1s", value_parser = humantime_duration)]
        reload_interval: Duration,
        /// Address of `/metrics` and `/healthz`; none when empty.
        #[arg(long, default_value = "")]
        metrics_bind_address: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// The only port relayed to: the rsync pods' SSH port.
        #[arg(long, default_value_t = dr_syncer_api::agent::RSYNC_POD_PORT)]
        target_port: u16,
        /// A pod network (CIDR), repeated; when given, only addresses inside these networks are relayed to.
        /// Without it, every address but loopback, link-local, unspecified, multicast and broadcast ones.
        #[arg(long = "target-network", value_parser = Network::parse)]
        target_networks: Vec<Network>,
    },
    /// The rsync pod's SSH server: runs one checked rsync sender command for the volume.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:2022")]
        listen: SocketAddr,
        #[command(flatten)]
        host_key: HostKeyArgs,
        /// `authorized_keys` file: the mapping's public keys, one per line.
        #[arg(long)]
        authorized_keys: PathBuf,
        /// The volume's mount path; the only path rsync may send.
        #[arg(long, default_value = "/data")]
        root: PathBuf,
        /// The rsync program.
        #[arg(long, default_value = "rsync")]
        rsync: PathBuf,
        /// Address of `/metrics` and `/healthz`; none when empty.
        #[arg(long, default_value = "")]
        metrics_bind_address: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// The DR copy pod's program: rsync over OpenSSH from the source rsync pod into the volume, with progress
    /// reports on stdout and optional verification.
    Copy {
        /// OpenSSH client configuration with the source host, the jump through the agent and the pinned keys.
        #[arg(long)]
        ssh_config: PathBuf,
        /// Host alias of the source rsync pod in `--ssh-config`.
        #[arg(long, default_value = "source")]
        source_host: String,
        /// Path of the volume in the source rsync pod.
        #[arg(long, default_value = "/data")]
        source_path: String,
        /// The destination volume's mount path.
        #[arg(long, default_value = "/data")]
        destination: PathBuf,
        /// Verification after the copy.
        #[arg(long, value_enum, default_value = "none")]
        verify: Verify,
        /// Percent of files checked with `--verify sample`.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=100))]
        sample_percent: u8,
        /// Directory for temporary files.
        #[arg(long, default_value = "/tmp")]
        scratch: PathBuf,
        /// File the final report is written to as JSON (in a pod: `/dev/termination-log`, where the controller reads
        /// it; the log only carries progress).
        #[arg(long)]
        result_file: Option<PathBuf>,
        /// Deletion guard: when the source no longer has more than this percentage of the DR volume's entries,
        /// delete none of them (exit code 103); 100 or absent turns it off.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        max_delete_percent: Option<u8>,
        /// The rsync program.
        #[arg(long, default_value = "rsync")]
        rsync: PathBuf,
        /// rsync options (after `--`).
        #[arg(last = true)]
        options: Vec<String>,
    },
    /// SSH handshakes with source agents, their host key pinned; one result line per target on stdout. Exits 0
    /// when every handshake completed, 1 otherwise.
    Probe {
        /// A host key the agent of a node may present, as NODE=KEY (`n1=ssh-ed25519 AAAA…`), or `*=KEY` for a key any
        /// target may present (agents behind a Service); repeated.
        #[arg(long = "host-key", required = true, value_parser = dr_syncer_wire::probe::KnownKey::parse)]
        host_keys: Vec<dr_syncer_wire::probe::KnownKey>,
        /// An agent to check, as NODE=HOST:PORT; repeated.
        #[arg(long = "target", required = true, value_parser = dr_syncer_wire::probe::Target::parse)]
        targets: Vec<dr_syncer_wire::probe::Target>,
        /// Time allowed for each handshake.
        #[arg(long, default_value = "10s", value_parser = humantime_duration)]
        timeout: Duration,
    },
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration such as 1s or 500ms: {e}"))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,russh=warn".into()),
        )
        .json()
        .init();
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.worker_threads))
        .enable_all()
        .build()
        .context("async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Copy {
        ssh_config,
        source_host,
        source_path,
        destination,
        verify,
        sample_percent,
        scratch,
        result_file,
        max_delete_percent,
        rsync,
        options,
    } = cli.command
    {
        let job = CopyJob {
            rsync,
            ssh_config,
            source_host,
            source_path,
            destination,
            options,
            verify,
            sample_percent,
            scratch,
            result_file,
            max_delete_percent,
        };
        std::process::exit(copy::run(&job).await);
    }
    if let Command::Probe { host_keys, targets, timeout } = &cli.command {
        let results = dr_syncer_agent::probe::run(targets, host_keys, *timeout).await;
        for result in &results {
            println!("{}", result.to_line());
        }
        std::process::exit(if results.iter().all(|r| r.connected) { 0 } else { 1 });
    }
    let metrics = AgentMetrics::new().context("metrics")?;
    let stop = CancellationToken::new();
    let (listen, host_key, comment, metrics_address, limits) = match &cli.command {
        Command::Bastion { listen, host_key, metrics_bind_address, limits, .. } => {
            (*listen, host_key, "dr-syncer-agent", metrics_bind_address, limits.limits())
        }
        Command::Serve { listen, host_key, metrics_bind_address, limits, .. } => {
            (*listen, host_key, "dr-syncer-rsync-pod", metrics_bind_address, limits.limits())
        }
        Command::Copy { .. } | Command::Probe { .. } => anyhow::bail!("copy and probe run above"),
    };
    let host_key = dr_syncer_agent::host_key::load_or_generate(host_key.host_key.as_deref(), comment, &stop)?;
    if !metrics_address.is_empty() {
        let address: SocketAddr = metrics_address.parse().context("--metrics-bind-address")?;
        tokio::spawn(serve_http(address, metrics.clone(), stop.clone()));
    }
    let socket = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    info!(addr = %socket.local_addr().context("listener address")?, "listening for SSH");
    let config = ssh::server_config(host_key);
    let result = match cli.command {
        Command::Bastion {
            policy_secret,
            node_name,
            all_nodes,
            authorized,
            targets,
            reload_interval,
            target_port,
            target_networks,
            ..
        } => {
            let rules = Arc::new(TargetRules { port: target_port, networks: target_networks });
            info!(?rules, "relay targets");
            let receiver = match (policy_secret, authorized, targets) {
                (Some(secret), _, _) => {
                    let (namespace, name) = secret
                        .split_once('/')
                        .with_context(|| format!("--policy-secret {secret:?} is not NAMESPACE/NAME"))?;
                    let nodes = match (all_nodes, node_name) {
                        (true, _) => Nodes::All,
                        (false, Some(node)) => Nodes::One(node),
                        (false, None) => {
                            anyhow::bail!("--policy-secret needs --node-name (or NODE_NAME) or --all-nodes")
                        }
                    };
                    let client = kube::Client::try_default().await.context("Kubernetes client")?;
                    let source = PolicySecret { namespace: namespace.into(), name: name.into(), nodes };
                    info!(secret = %secret, nodes = ?source.nodes, "watching the policy Secret");
                    // Nobody is accepted until the Secret has been read.
                    let (sender, receiver) = tokio::sync::watch::channel(Arc::new(Policy::default()));
                    tokio::spawn(watch_secret(client, source, sender, metrics.clone(), stop.clone()));
                    receiver
                }
                (None, Some(authorized), Some(targets)) => {
                    let files = PolicyFiles { authorized, targets };
                    let (policy, raw) = files.load()?;
                    info!(keys = policy.key_count(), "policy loaded");
                    let (sender, receiver) = tokio::sync::watch::channel(Arc::new(policy));
                    tokio::spawn(watch_files(files, raw, sender, metrics.clone(), reload_interval, stop.clone()));
                    receiver
                }
                _ => anyhow::bail!("give --policy-secret, or both --authorized and --targets"),
            };
            let bastion = Bastion { policy: receiver, metrics: metrics.clone(), rules };
            serve_ssh(bastion, config, socket, limits, metrics, &stop).await
        }
        Command::Serve { authorized_keys, root, rsync, .. } => {
            let text = read_text(&authorized_keys)?;
            let authorized = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .enumerate()
                .map(|(i, line)| keys::public_from_openssh(line, &format!("line {} of authorized keys", i + 1)))
                .collect::<Result<Vec<_>, _>>()?;
            anyhow::ensure!(!authorized.is_empty(), "{} lists no key", authorized_keys.display());
            let server = RsyncServer { authorized: Arc::new(authorized), root, rsync, metrics: metrics.clone() };
            serve_ssh(server, config, socket, limits, metrics, &stop).await
        }
        Command::Copy { .. } | Command::Probe { .. } => anyhow::bail!("copy and probe run above"),
    };
    stop.cancel();
    result
}

/// Runs an SSH server on `socket` until SIGTERM/SIGINT arrives; open connections are closed then.
async fn serve_ssh<S: Service>(
    service: S,
    config: Arc<russh::server::Config>,
    socket: TcpListener,
    limits: Limits,
    metrics: AgentMetrics,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    info!(?limits, "connection limits");
    let serving = listen::serve(service, config, socket, limits, metrics, stop.clone());
    tokio::select! {
        () = serving => {}
        () = shutdown_signal() => info!("stopping"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
