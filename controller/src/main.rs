//! `dr-syncer-controller`: wires the pieces together. See the library crate for what each does.

use clap::Parser;
use dr_syncer_controller::cli::{Args, parse_listen_address};
use dr_syncer_controller::http::{AppState, Servers};
use dr_syncer_controller::leader::{ElectionConfig, RoleCell};
use dr_syncer_controller::metrics::Metrics;
use dr_syncer_controller::readiness::{self, CheckerConfig, Readiness};
use dr_syncer_controller::reconcile::events::Events;
use dr_syncer_controller::reconcile::metrics::ControllerMetrics;
use dr_syncer_controller::reconcile::{Context, Settings};
use dr_syncer_controller::supervisor::{self, Ending};
use dr_syncer_controller::{build, clusters, kube_client, leader, telemetry};
use tokio_util::sync::CancellationToken;

/// mimalloc returns freed memory to the system, so the controller's resident memory falls back after a large
/// sync instead of staying at its peak (glibc's per-thread arenas keep it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where a pod's service account names its namespace.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.version_json {
        println!("{}", build::version_json());
        return Ok(());
    }
    telemetry::init(args.log_format, &args.log_level)?;
    tracing::info!(version = build::VERSION, commit = build::GIT_COMMIT, "starting dr-syncer-controller");

    let probe_addr = parse_listen_address(&args.health_probe_bind_address)?;
    let metrics_addr = parse_listen_address(&args.metrics_bind_address)?;
    let metrics = Metrics::new()?;
    let client = kube_client::connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;

    let checker = CheckerConfig {
        crd_names: dr_syncer_api::crd::names(),
        api_timeout: args.api_timeout,
        interval: args.readiness_interval,
    };
    let election = election_config(&args)?;
    let role = RoleCell::with_gauge(supervisor::initial_role(election.is_some()), metrics.leader.clone());
    let caches = dr_syncer_controller::caches::Caches::default();
    let local = readiness::Local { role: role.clone(), caches: caches.clone() };
    let readiness = Readiness::with_local(local);
    let state = AppState { readiness: readiness.clone(), metrics: metrics.clone(), stall_limit: checker.stall_limit() };
    let servers = Servers::bind(probe_addr, metrics_addr, state).await?;

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let ctx = Context {
        client: client.clone(),
        registry: clusters::Registry::default(),
        events: Events::new(client.clone(), std::env::var("POD_NAME").ok()),
        metrics: ControllerMetrics::register(metrics.registry())?,
        settings: Settings {
            api_timeout: args.api_timeout,
            sync_api_timeout: args.sync_api_timeout,
            health_interval: args.health_check_interval,
            sync_concurrency: usize::from(args.sync_concurrency),
            namespace: args.namespace.clone().filter(|n| !n.is_empty()),
            agent_image: args.agent_image.clone(),
            watch_queue: usize::try_from(args.watch_queue_length).unwrap_or(usize::MAX),
            ..Settings::default()
        },
        caches,
        data: dr_syncer_controller::data::DataSync::new(
            metrics.registry(),
            leader::identity(&std::env::var("POD_NAME").unwrap_or_else(|_| "dr-syncer-controller".into())),
        )?,
        probes: Default::default(),
    };
    let checks = tokio::spawn(readiness::run(client.clone(), checker, readiness, metrics, shutdown.clone()));
    let served = tokio::spawn(servers.serve(shutdown.clone()));
    let ending = supervisor::run(client, ctx, election, role, shutdown.clone()).await?;
    if let Ending::LostLeadership(reason) = ending {
        // Exiting is the only way to stop every write this replica started; Kubernetes restarts it as a standby.
        tracing::error!(%reason, "lost leadership; exiting so this replica stops writing at once");
        std::process::exit(1);
    }
    shutdown.cancel();
    let _ = checks.await;
    served.await??;
    tracing::info!("stopped");
    Ok(())
}

/// Leader election settings when `--leader-elect` is on.
fn election_config(args: &Args) -> anyhow::Result<Option<ElectionConfig>> {
    if !args.leader_elect {
        return Ok(None);
    }
    if args.leader_election_renew_grace >= args.leader_election_lease_duration {
        anyhow::bail!("--leader-election-renew-grace must be shorter than --leader-election-lease-duration");
    }
    let namespace = match args.leader_election_namespace.clone().filter(|n| !n.is_empty()) {
        Some(ns) => ns,
        None => std::fs::read_to_string(POD_NAMESPACE_FILE).map(|s| s.trim().to_string()).map_err(|e| {
            anyhow::anyhow!("--leader-elect needs --leader-election-namespace or POD_NAMESPACE outside a pod: {e}")
        })?,
    };
    let base = std::env::var("POD_NAME").unwrap_or_else(|_| "dr-syncer-controller".to_string());
    Ok(Some(ElectionConfig {
        lease_name: args.leader_election_id.clone(),
        namespace,
        identity: leader::identity(&base),
        duration: args.leader_election_lease_duration,
        grace: args.leader_election_renew_grace,
        api_timeout: args.api_timeout,
    }))
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the controller with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
    shutdown.cancel();
}
