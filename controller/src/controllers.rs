//! Runs the three reconcilers together.

use tokio_util::sync::CancellationToken;

use crate::mapping;
use crate::reconcile::{Context, cluster_mapping, remote_cluster};

/// Runs the RemoteCluster, ClusterMapping and NamespaceMapping controllers until `shutdown` is cancelled; syncs in
/// flight are cancelled then.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let stop = |token: CancellationToken| async move { token.cancelled().await };
    tokio::join!(
        remote_cluster::run(ctx.clone(), stop(shutdown.clone())),
        cluster_mapping::run(ctx.clone(), stop(shutdown.clone())),
        mapping::run(ctx, stop(shutdown)),
    );
}
