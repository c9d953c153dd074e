//! `dr-syncer-controller`: wires the pieces together. See the library crate for what each does.

use clap::Parser;
use dr_syncer_controller::cli::{Args, parse_listen_address};
use dr_syncer_controller::http::{AppState, Servers};
use dr_syncer_controller::metrics::Metrics;
use dr_syncer_controller::readiness::{self, CheckerConfig, Readiness};
use dr_syncer_controller::reconcile::events::Events;
use dr_syncer_controller::reconcile::metrics::ControllerMetrics;
use dr_syncer_controller::reconcile::{Context, Settings};
use dr_syncer_controller::{build, clusters, controllers, kube_client, telemetry};
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for reconciles in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    let readiness = Readiness::default();
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
            ..Settings::default()
        },
    };
    let controllers = tokio::spawn(controllers::run(ctx, shutdown.clone()));
    tracing::info!("controllers started");
    let checks = tokio::spawn(readiness::run(client, checker, readiness, metrics, shutdown.clone()));
    let served = servers.serve(shutdown.clone()).await;
    shutdown.cancel();
    let _ = checks.await;
    // Reconciles in flight may wait on slow clusters; they are idempotent, so the process does not wait long for them.
    if tokio::time::timeout(SHUTDOWN_GRACE, controllers).await.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown were abandoned");
    }
    served?;
    tracing::info!("stopped");
    Ok(())
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
