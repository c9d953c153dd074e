//! Runs the controllers, alone or under leader election, and decides how the process ends.

use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::controllers;
use crate::error::Error;
use crate::leader::{Election, ElectionConfig, Role, RoleCell};
use crate::reconcile::Context;

/// How a supervised run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Shutdown was requested (signal).
    Shutdown,
    /// This replica lost the Lease; the process must exit at once so nothing it started keeps writing.
    LostLeadership(String),
}

/// How long shutdown waits for reconciles in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a leader that shuts down waits to hand its Lease back.
const RELEASE_GRACE: Duration = Duration::from_secs(3);

/// Runs the controllers until `shutdown`: at once when `election` is `None`, else only while holding the Lease.
pub async fn run(
    client: Client,
    ctx: Context,
    election: Option<ElectionConfig>,
    role: RoleCell,
    shutdown: CancellationToken,
) -> Result<Ending, Error> {
    let Some(cfg) = election else {
        let running = tokio::spawn(controllers::run(ctx, shutdown.clone()));
        shutdown.cancelled().await;
        grace(running).await;
        return Ok(Ending::Shutdown);
    };
    tracing::info!(lease = %cfg.lease_name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for leadership");
    let Some(mut election) = Election::start(client, cfg, role.clone(), &shutdown).await else {
        return Ok(Ending::Shutdown);
    };
    if !election.acquired(&shutdown).await? {
        election.release(RELEASE_GRACE).await;
        return Ok(Ending::Shutdown);
    }
    let stop = CancellationToken::new();
    let running = tokio::spawn(controllers::run(ctx, stop.clone()));
    match election.lost(&shutdown).await {
        // Lost: return at once; the caller exits the process, which stops every sync mid-flight.
        Some(reason) => Ok(Ending::LostLeadership(reason)),
        None => {
            stop.cancel();
            grace(running).await;
            role.set_standby();
            election.release(RELEASE_GRACE).await;
            Ok(Ending::Shutdown)
        }
    }
}

/// Waits a short grace for the controllers' reconciles in flight.
async fn grace(running: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(SHUTDOWN_GRACE, running).await.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown were abandoned");
    }
}

/// The role a process starts in.
pub fn initial_role(leader_elect: bool) -> Role {
    if leader_elect { Role::Standby } else { Role::Single }
}
