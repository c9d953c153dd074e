//! The agent's Prometheus metrics (bastion and rsync pod server) and the `/metrics` + `/healthz` endpoint.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Counters of the agent. Cheap to clone (shared series).
#[derive(Clone)]
pub struct AgentMetrics {
    registry: Registry,
    /// `dr_syncer_agent_connections_total`: SSH connections accepted by TCP.
    pub connections: IntCounter,
    /// `dr_syncer_agent_refusals_total{reason}`: refused keys, channels, targets and commands.
    pub refusals: IntCounterVec,
    /// `dr_syncer_agent_relays`: relays to rsync pods running now.
    pub relays: IntGauge,
    /// `dr_syncer_agent_relayed_bytes_total{direction}`: bytes relayed `to_pod` and `from_pod`.
    pub relayed_bytes: IntCounterVec,
    /// `dr_syncer_agent_policy_reloads_total{result}`: authorized-set and target reloads, `ok` or `error`.
    pub reloads: IntCounterVec,
    /// `dr_syncer_agent_unauthenticated_connections`: connections that have not authenticated yet.
    pub unauthenticated: IntGauge,
    /// `dr_syncer_agent_connections_dropped_total{reason}`: connections closed unserved (a limit was reached) or
    /// cut at the end of the login grace time.
    pub dropped: IntCounterVec,
    /// `dr_syncer_agent_accept_errors_total`: failed `accept()` calls (each followed by a pause).
    pub accept_errors: IntCounter,
}

impl AgentMetrics {
    /// Registers the agent's metrics (and process metrics) in a fresh registry.
    pub fn new() -> Result<AgentMetrics, prometheus::Error> {
        let registry = Registry::new();
        let connections =
            IntCounter::with_opts(Opts::new("dr_syncer_agent_connections_total", "SSH connections accepted."))?;
        let refusals = IntCounterVec::new(
            Opts::new("dr_syncer_agent_refusals_total", "Refused keys, channels, targets and commands, by reason."),
            &["reason"],
        )?;
        let relays = IntGauge::with_opts(Opts::new("dr_syncer_agent_relays", "Relays to rsync pods running now."))?;
        let relayed_bytes = IntCounterVec::new(
            Opts::new("dr_syncer_agent_relayed_bytes_total", "Bytes relayed, by direction (to_pod, from_pod)."),
            &["direction"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("dr_syncer_agent_policy_reloads_total", "Reloads of the authorized keys and targets, by result."),
            &["result"],
        )?;
        let unauthenticated = IntGauge::with_opts(Opts::new(
            "dr_syncer_agent_unauthenticated_connections",
            "Connections that have not authenticated yet.",
        ))?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "dr_syncer_agent_connections_dropped_total",
                "Connections closed unserved at a connection limit, or cut at the end of the login grace time.",
            ),
            &["reason"],
        )?;
        let accept_errors =
            IntCounter::with_opts(Opts::new("dr_syncer_agent_accept_errors_total", "Failed accept() calls."))?;
        registry.register(Box::new(unauthenticated.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(accept_errors.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(relays.clone()))?;
        registry.register(Box::new(relayed_bytes.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(AgentMetrics {
            registry,
            connections,
            refusals,
            relays,
            relayed_bytes,
            reloads,
            unauthenticated,
            dropped,
            accept_errors,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Serves `/metrics` and `/healthz` on `address` until `stop` is cancelled.
pub async fn serve_http(address: SocketAddr, metrics: AgentMetrics, stop: CancellationToken) -> Result<(), Error> {
    let listener =
        TcpListener::bind(address).await.map_err(|source| Error::Listen { address: address.to_string(), source })?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(addr = %bound, "serving HTTP");
    }
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(|source| Error::Server { source })
}
