//! Cleanup per `cleanupPolicy`: of every DR namespace when the mapping is deleted (finalizer), and of namespaces
//! the mapping stopped covering (done by the sync task). A cleanup that cannot finish is shown in status
//! (`pendingCleanups`, condition Cleanup) and an event, and retried; the finalizer stays until it has finished.

use std::collections::BTreeSet;

use dr_syncer_api::namespace_mapping::{CleanupPolicy, NamespaceMappingStatus, PendingCleanup};
use dr_syncer_api::{NamespaceMapping, RemoteCluster};
use kube::api::{Api, DynamicObject};
use kube::{Resource, ResourceExt};

use super::spec::{self, Namespaces};
use super::{MappingController, key_of, resolve, write};
use crate::clusters::Connection;
use crate::error::Error;
use crate::reconcile::Context;
use crate::reconcile::conditions::{self, Desired, FALSE, TRUE};
use crate::reconcile::events::Severity;
use crate::sync::api;
use crate::sync::cleanup::{self, Cleanup, CleanupReport};
use crate::sync::discovery::api_resource;
use crate::sync::object;
use crate::sync::ownership::{Marks, Owner};

/// Condition: the last cleanup of DR objects finished (True) or is pending (False, with the reason).
pub const CLEANUP: &str = "Cleanup";

/// The marks of a mapping (only namespace and name identify ownership).
pub fn marks_of(nm: &NamespaceMapping, source_cluster: &str, source_namespace: &str) -> Marks {
    Marks {
        mapping_namespace: nm.namespace().unwrap_or_default(),
        mapping_name: nm.name_any(),
        source_cluster: source_cluster.to_string(),
        source_namespace: source_namespace.to_string(),
    }
}

/// DR namespaces that carry this mapping's marks (namespaces it created).
pub async fn marked_namespaces(
    ctx: &Context,
    marks: &Marks,
    conn: &Connection,
) -> Result<BTreeSet<String>, api::CallError> {
    let resource = api_resource("", "v1", "Namespace", "namespaces");
    let all: Api<DynamicObject> = Api::all_with(conn.client.clone(), &resource);
    let what = "list the namespaces this mapping created on the DR cluster";
    let listed = api::list_all(&all, &resource, Some(&marks.selector()), ctx.settings.sync_api_timeout, what).await?;
    Ok(listed.iter().filter(|ns| marks.owner_of(ns) == Owner::Ours).map(|ns| object::name(ns).to_string()).collect())
}

/// Cleans up `namespaces` of the DR cluster; returns what was done and what is still pending.
pub async fn namespaces(
    ctx: &Context,
    marks: &Marks,
    destination: &(RemoteCluster, Connection),
    policy: CleanupPolicy,
    namespaces: &BTreeSet<String>,
) -> (Vec<(String, CleanupReport)>, Vec<PendingCleanup>) {
    if namespaces.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let (rc, conn) = destination;
    let timeout = ctx.settings.sync_api_timeout;
    let catalog = match ctx.registry.catalog(rc, conn, timeout).await {
        Ok(c) => c,
        Err(e) => {
            let pending = namespaces
                .iter()
                .map(|ns| PendingCleanup { destination: ns.clone(), message: e.to_string() })
                .collect();
            return (Vec::new(), pending);
        }
    };
    let (mut done, mut pending) = (Vec::new(), Vec::new());
    for ns in namespaces {
        let job = Cleanup {
            marks,
            client: conn.client.clone(),
            cluster: &rc.name_any(),
            catalog: &catalog,
            namespace: ns,
            policy,
            timeout,
            concurrency: ctx.settings.sync_concurrency,
        };
        match cleanup::run(&job).await {
            Ok(report) => {
                tracing::info!(mapping = %marks.mapping_ref(), namespace = %ns, ?policy, deleted = report.deleted,
                    released = report.released, namespace_deleted = report.namespace_deleted, "DR namespace cleaned up");
                done.push((ns.clone(), report));
            }
            Err(e) => pending.push(PendingCleanup { destination: ns.clone(), message: e.to_string() }),
        }
    }
    (done, pending)
}

/// Sets the Cleanup condition and `pendingCleanups` from a cleanup's result.
pub fn fold(
    status: &mut NamespaceMappingStatus,
    done: &[String],
    pending: Vec<PendingCleanup>,
    generation: Option<i64>,
) {
    let now = conditions::now();
    let desired = match pending.first() {
        Some(p) => Desired {
            type_: CLEANUP,
            status: FALSE,
            reason: "CleanupPending",
            message: format!("{} DR namespace(s) not cleaned up yet; {}: {}", pending.len(), p.destination, p.message),
        },
        None if done.is_empty() => return,
        None => Desired {
            type_: CLEANUP,
            status: TRUE,
            reason: "CleanedUp",
            message: format!("cleaned up {}", done.join(", ")),
        },
    };
    conditions::set(&mut status.conditions, desired, generation, &now);
    status.pending_cleanups = pending;
}

/// The finalizer: cleans up every DR namespace of the mapping per its policy, then lets it go.
pub async fn on_delete(mc: &MappingController, nm: &NamespaceMapping) -> Result<(), Error> {
    let key = key_of(nm);
    let ns = nm.namespace().unwrap_or_default();
    let reference = nm.object_ref(&());
    let previous = mc.states.with(&key, |s| s.status.clone()).or_else(|| nm.status.clone()).unwrap_or_default();
    let validated = match spec::validate(&nm.spec, &ns) {
        Ok(v) => v,
        Err(why) => {
            let note = format!("the spec names no usable clusters ({}); DR objects were not cleaned up", why.message);
            mc.ctx.events.publish(&reference, Severity::Warning, "CleanupSkipped", "Cleanup", &note).await;
            tracing::warn!(mapping = %key, reason = why.reason, "cleanup skipped: {note}");
            return Ok(());
        }
    };
    let pending_because = |message: String| vec![PendingCleanup { destination: "*".into(), message }];
    let (done, pending) = match resolve::destination(&mc.ctx, &validated.clusters, &ns).await {
        Err(why) => (Vec::new(), pending_because(format!("{}: {}", why.reason, why.message))),
        Ok(destination) => {
            let marks = marks_of(nm, "", "");
            let mut targets: BTreeSet<String> =
                previous.covered_namespaces.iter().map(|c| c.destination.clone()).collect();
            targets.extend(previous.destination_namespace.clone());
            if let Namespaces::One { destination, .. } = &validated.namespaces {
                targets.insert(destination.clone());
            }
            match marked_namespaces(&mc.ctx, &marks, &destination.1).await {
                Ok(found) => {
                    targets.extend(found);
                    namespaces(&mc.ctx, &marks, &destination, nm.spec.cleanup(), &targets).await
                }
                Err(e) => (Vec::new(), pending_because(e.to_string())),
            }
        }
    };
    let mut status = previous.clone();
    let names: Vec<String> = done.iter().map(|(ns, _)| ns.clone()).collect();
    fold(&mut status, &names, pending.clone(), nm.meta().generation);
    if let Some(p) = pending.first() {
        let note = format!("{}: {}; the mapping is kept until cleanup finishes", p.destination, p.message);
        mc.ctx.events.publish(&reference, Severity::Warning, "CleanupPending", "Cleanup", &note).await;
        write(mc, nm, &previous, &status).await?;
        return Err(Error::Cleanup { mapping: key, message: note });
    }
    let (deleted, released) = done.iter().fold((0, 0), |(d, r), (_, report)| (d + report.deleted, r + report.released));
    let note = format!("cleanupPolicy {:?}: {deleted} DR objects deleted, {released} released", nm.spec.cleanup());
    mc.ctx.events.publish(&reference, Severity::Normal, "CleanedUp", "Cleanup", &note).await;
    Ok(())
}
