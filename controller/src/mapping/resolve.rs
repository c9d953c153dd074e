//! Finding a NamespaceMapping's clusters, and refusing mappings that would write where they must not.

use std::sync::Arc;

use dr_syncer_api::constants::{ANNOTATION_ALLOW_REFERENCES_FROM, reference_allowed};
use dr_syncer_api::{ClusterMapping, NamespaceMapping, RemoteCluster};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use super::spec::{ClusterRefs, Invalid, Namespaces, validate};
use crate::clusters::Connection;
use crate::error::with_timeout as call;
use crate::reconcile::Context;

/// Both clusters of a mapping with their clients.
pub struct Resolved {
    /// Source RemoteCluster and client.
    pub source: (RemoteCluster, Connection),
    /// DR RemoteCluster and client.
    pub destination: (RemoteCluster, Connection),
}

/// The RemoteClusters (`namespace`, source name, destination name) a reference names.
async fn cluster_names(
    ctx: &Context,
    refs: &ClusterRefs,
    mapping_ns: &str,
) -> Result<(String, String, String), Invalid> {
    match refs {
        ClusterRefs::Direct(s, d) => Ok((mapping_ns.to_string(), s.clone(), d.clone())),
        ClusterRefs::ClusterMapping(ns, name) => {
            let api: Api<ClusterMapping> = Api::namespaced(ctx.client.clone(), ns);
            match call(format!("get ClusterMapping {ns}/{name}"), ctx.settings.api_timeout, api.get_opt(name)).await {
                Ok(Some(cm)) if !reference_allowed(mapping_ns, ns, cm.metadata.annotations.as_ref()) => Err(Invalid {
                    reason: "ReferenceNotAllowed",
                    message: format!(
                        "ClusterMapping {ns}/{name} is in another namespace than the mapping ({mapping_ns}); add \
                         {mapping_ns} to its annotation {ANNOTATION_ALLOW_REFERENCES_FROM} to allow it"
                    ),
                }),
                Ok(Some(cm)) => Ok((ns.clone(), cm.spec.source_cluster, cm.spec.target_cluster)),
                Ok(None) => Err(Invalid {
                    reason: "ClusterMappingNotFound",
                    message: format!("ClusterMapping {ns}/{name} does not exist"),
                }),
                Err(e) => Err(Invalid { reason: "ApiError", message: e.to_string() }),
            }
        }
    }
}

async fn remote(ctx: &Context, ns: &str, name: &str, role: &str) -> Result<(RemoteCluster, Connection), Invalid> {
    let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), ns);
    let rc = match call(format!("get RemoteCluster {ns}/{name}"), ctx.settings.api_timeout, api.get_opt(name)).await {
        Ok(Some(rc)) => rc,
        Ok(None) => {
            return Err(Invalid {
                reason: "RemoteClusterNotFound",
                message: format!("{role} RemoteCluster {ns}/{name} does not exist"),
            });
        }
        Err(e) => return Err(Invalid { reason: "ApiError", message: e.to_string() }),
    };
    let conn = ctx
        .registry
        .connect(&ctx.client, &rc, ctx.settings.api_timeout)
        .await
        .map_err(|e| Invalid { reason: e.reason(), message: format!("{role} RemoteCluster {ns}/{name}: {e}") })?;
    Ok((rc, conn))
}

/// Resolves both clusters and builds their clients.
pub async fn clusters(ctx: &Context, refs: &ClusterRefs, mapping_ns: &str) -> Result<Resolved, Invalid> {
    let (ns, source, destination) = cluster_names(ctx, refs, mapping_ns).await?;
    let source = remote(ctx, &ns, &source, "source").await?;
    let destination = remote(ctx, &ns, &destination, "destination").await?;
    Ok(Resolved { source, destination })
}

/// Resolves only the DR cluster (cleanup must work while the source cluster is gone).
pub async fn destination(
    ctx: &Context,
    refs: &ClusterRefs,
    mapping_ns: &str,
) -> Result<(RemoteCluster, Connection), Invalid> {
    let (ns, _, destination) = cluster_names(ctx, refs, mapping_ns).await?;
    remote(ctx, &ns, &destination, "destination").await
}

/// Refuses a mapping whose source and DR namespace are the same namespace of the same cluster.
pub fn same_namespace(resolved: &Resolved, source_ns: &str, destination_ns: &str) -> Result<(), Invalid> {
    let same_cluster = resolved.source.0.uid() == resolved.destination.0.uid()
        || resolved.source.1.server.trim_end_matches('/') == resolved.destination.1.server.trim_end_matches('/');
    if same_cluster && source_ns == destination_ns {
        return Err(Invalid {
            reason: "SameNamespace",
            message: format!(
                "source and destination are namespace {source_ns:?} of the same cluster ({}); nothing is written",
                resolved.source.1.server
            ),
        });
    }
    Ok(())
}

/// `(creationTimestamp, namespace, name)`: the older mapping owns a contested destination.
fn age_key(m: &NamespaceMapping) -> (Option<jiff::Timestamp>, String, String) {
    (m.metadata.creation_timestamp.as_ref().map(|t| t.0), m.namespace().unwrap_or_default(), m.name_any())
}

/// Refuses a mapping when an older mapping writes the same DR namespace of the same DR cluster.
pub async fn destination_owner(
    ctx: &Context,
    store: &Store<NamespaceMapping>,
    me: &NamespaceMapping,
    resolved: &Resolved,
    destination_ns: &str,
) -> Result<(), Invalid> {
    let my_key = age_key(me);
    let my_cluster = (resolved.destination.0.namespace().unwrap_or_default(), resolved.destination.0.name_any());
    let mut others: Vec<Arc<NamespaceMapping>> = store
        .state()
        .into_iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none() && o.uid() != me.uid() && age_key(o) < my_key)
        .collect();
    others.sort_by_key(|o| age_key(o));
    for other in others {
        let other_ns = other.namespace().unwrap_or_default();
        let Ok(v) = validate(&other.spec, &other_ns) else { continue };
        let Namespaces::One { destination, .. } = &v.namespaces else { continue };
        if destination != destination_ns {
            continue;
        }
        let Ok((cluster_ns, _, dst)) = cluster_names(ctx, &v.clusters, &other_ns).await else { continue };
        if (cluster_ns, dst) == my_cluster {
            return Err(Invalid {
                reason: "DestinationOwnedByAnotherMapping",
                message: format!(
                    "NamespaceMapping {other_ns}/{} already replicates into namespace {destination_ns:?} of RemoteCluster {}/{}; nothing is written",
                    other.name_any(),
                    my_cluster.0,
                    my_cluster.1
                ),
            });
        }
    }
    Ok(())
}
