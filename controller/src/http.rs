//! HTTP endpoints: `/healthz` and `/readyz` on the probe address, `/metrics` on the metrics address (one server when
//! both addresses are equal).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    /// Readiness state published by the checker.
    pub readiness: Readiness,
    /// The metrics registry.
    pub metrics: Metrics,
    /// `/healthz` fails when the checker has not finished a round for this long.
    pub stall_limit: Duration,
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let since = s.readiness.since_progress();
    if since > s.stall_limit {
        let body = format!("readiness checker has made no progress for {}s\n", since.as_secs());
        return (StatusCode::INTERNAL_SERVER_ERROR, body);
    }
    (StatusCode::OK, "ok\n".to_string())
}

async fn readyz(State(s): State<AppState>, uri: Uri) -> impl IntoResponse {
    let report = s.readiness.report();
    let code = if report.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let verbose = uri.query().is_some_and(|q| q.split('&').any(|p| p == "verbose" || p.starts_with("verbose=")));
    (code, report.render(verbose))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

fn probe_routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

/// Listening servers, bound but not yet serving: binding first makes a busy port fail at startup.
pub struct Servers {
    servers: Vec<(TcpListener, Router)>,
}

impl Servers {
    /// Binds the probe and metrics addresses (once when they are equal).
    pub async fn bind(probe: SocketAddr, metrics_addr: SocketAddr, state: AppState) -> Result<Servers, Error> {
        let servers = if probe == metrics_addr {
            vec![(bind(probe).await?, probe_routes().merge(metrics_routes()).with_state(state))]
        } else {
            vec![
                (bind(probe).await?, probe_routes().with_state(state.clone())),
                (bind(metrics_addr).await?, metrics_routes().with_state(state)),
            ]
        };
        Ok(Servers { servers })
    }

    /// The bound addresses (useful when a port was 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
    }

    /// Serves until `shutdown`, then finishes in-flight requests.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut tasks = Vec::new();
        for (listener, router) in self.servers {
            let addr =
                listener.local_addr().map_err(|source| Error::Serve { addr: ([0, 0, 0, 0], 0).into(), source })?;
            tracing::info!(%addr, "serving HTTP");
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
                    .map_err(|source| Error::Serve { addr, source })
            }));
        }
        for t in tasks {
            match t.await {
                Ok(result) => result?,
                Err(join) => tracing::error!(error = %join, "HTTP server task ended abnormally"),
            }
        }
        Ok(())
    }
}
