//! One data-sync run of a mapping: resolve settings, make or rotate its key, find its DR PVCs, copy each within the
//! slots, retry transient failures with the mapping's backoff, and keep `status.dataSync`, events and metrics
//! current.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dr_syncer_api::constants::{
    ANNOTATION_SOURCE_NAMESPACE, LABEL_DR_MANAGED_BY, LABEL_MAPPING, LABEL_MAPPING_NAMESPACE, MANAGED_BY_VALUE,
};
use dr_syncer_api::namespace_mapping::{DataSyncError, PvcDataPhase, PvcDataStatus};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use tokio::sync::Semaphore;

use super::failure::Failure;
use super::manager::{DataRequest, DataSync, MappingData, STATUS_EVERY, write_status};
use super::rotation::ensure_key;
use super::run::AgentAccess;
use super::settings::settings;
use super::{pvc_task, sweep};
use crate::reconcile::Context;
use crate::reconcile::events::Severity;
use crate::sync::ownership::label_value;

pub(super) fn time(t: Timestamp) -> Time {
    Time(t)
}

pub(super) fn error(failure: &Failure) -> DataSyncError {
    DataSyncError {
        reason: failure.reason.to_string(),
        message: failure.message.clone(),
        permanent: failure.permanent,
        time: Some(time(Timestamp::now())),
    }
}

/// One run; never fails as a whole (every failure lands in status, an event and a log line).
pub(super) async fn run(ctx: &Context, manager: &DataSync, data: &Arc<MappingData>, request: &DataRequest) {
    let mapping = &request.mapping;
    let (ns, name) = (mapping.namespace().unwrap_or_default(), mapping.name_any());
    let writer = spawn_writer(ctx, data, mapping.clone());
    let result = run_inner(ctx, manager, data, request).await;
    if data.cancel.is_cancelled() {
        // The mapping was deleted or stopped copying: nothing to report on it any more.
        writer.abort();
        tracing::info!(mapping = %request.key(), "data sync stopped: the mapping no longer copies data");
        return;
    }
    manager.metrics.set_load((&ns, &name), 0, 0);
    writer.abort();
    match result {
        Err(failure) => report_failure(ctx, data, request, &failure).await,
        Ok(()) => {
            let status = data.snapshot();
            if let Err(error) = write_status(ctx, mapping, &status).await {
                tracing::warn!(mapping = %request.key(), %error, "cannot write status.dataSync");
            }
        }
    }
}

/// Reports a data sync that could not run (or panicked) on every PVC of the mapping, with an event, and writes the
/// status.
pub(super) async fn report_failure(ctx: &Context, data: &MappingData, request: &DataRequest, failure: &Failure) {
    tracing::warn!(mapping = %request.key(), reason = failure.reason, message = %failure.message, "data sync could not run");
    data.update(|s| {
        for pvc in &mut s.pvcs {
            pvc.phase = PvcDataPhase::Failed;
            pvc.last_error = Some(error(failure));
        }
    });
    let object = request.mapping.object_ref(&());
    ctx.events.publish(&object, Severity::Warning, failure.reason, "DataSync", &failure.message).await;
    let status = data.snapshot();
    if let Err(error) = write_status(ctx, &request.mapping, &status).await {
        tracing::warn!(mapping = %request.key(), %error, "cannot write status.dataSync");
    }
}

fn spawn_writer(
    ctx: &Context,
    data: &Arc<MappingData>,
    mapping: Arc<dr_syncer_api::NamespaceMapping>,
) -> tokio::task::JoinHandle<()> {
    let (ctx, data) = (ctx.clone(), data.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(STATUS_EVERY).await;
            if data.dirty.swap(false, Ordering::SeqCst) {
                let status = data.snapshot();
                if let Err(error) = write_status(&ctx, &mapping, &status).await {
                    data.dirty.store(true, Ordering::SeqCst);
                    tracing::debug!(%error, "status.dataSync not written yet");
                }
            }
        }
    })
}

async fn run_inner(
    ctx: &Context,
    manager: &DataSync,
    data: &Arc<MappingData>,
    request: &DataRequest,
) -> Result<(), Failure> {
    let settings = settings(request)?;
    if !crate::agent::enabled(&request.source_rc) {
        return Err(Failure::permanent(
            "AgentsNotEnabled",
            format!(
                "RemoteCluster {} has pvcSync.enabled false: no agent can relay the copies",
                request.source_rc.name_any()
            ),
        ));
    }
    let t = ctx.settings.sync_api_timeout;
    let pvc_sync = request.source_rc.spec.pvc_sync.clone().unwrap_or_default();
    let ssh = pvc_sync.ssh.clone().unwrap_or_default();
    let agent = AgentAccess {
        port: ssh.port.unwrap_or(dr_syncer_api::remote_cluster::DEFAULT_AGENT_SSH_PORT) as u16,
        service: ssh.service.is_some(),
    };
    let key = ensure_key(ctx, data, request, &settings, request.rotate).await?;
    let pvcs = list_pvcs(request, t).await?;
    let (ns, name) = (request.mapping.namespace().unwrap_or_default(), request.mapping.name_any());
    // No copy of this mapping runs in this process now: drop agent targets a crashed controller left behind.
    let scope =
        sweep::Scope { source: &request.source, destination: &request.destination, mapping: (&ns, &name), timeout: t };
    let sources: Vec<String> = request.namespaces.iter().map(|c| c.source.clone()).collect();
    sweep::stale_targets(&scope, &sources).await?;
    // PVCs gone from the mapping leave its status and take their metric series (their recovery point) with them.
    let mut gone = Vec::new();
    data.update(|s| {
        s.pvcs.retain(|p| {
            let keep = pvcs.iter().any(|(src, _, pvc)| *src == p.namespace && *pvc == p.name);
            if !keep {
                gone.push((p.namespace.clone(), p.name.clone()));
            }
            keep
        });
    });
    for (pvc_ns, pvc) in &gone {
        manager.metrics.forget_pvc((&ns, &name), (pvc_ns, pvc));
        tracing::info!(mapping = %request.key(), pvc = %format!("{pvc_ns}/{pvc}"), "PVC no longer in the mapping; its data status, metrics and Lease removed");
    }
    let cluster = request.source_rc.name_any();
    let leases: Vec<String> = gone.iter().map(|(pvc_ns, pvc)| super::lease::name(&cluster, pvc_ns, pvc)).collect();
    super::lease::remove_idle(&ctx.client, &ns, &leases, t).await;
    let generation = request.mapping.meta().generation.unwrap_or_default();
    let mapping_slots = Arc::new(Semaphore::new(settings.config.concurrent_syncs.unwrap_or(2).max(1) as usize));
    let [cluster_slots, global] = manager.slots(&request.source_rc);
    let settings = Arc::new(settings);
    let mut copies = Vec::new();
    for (source_ns, destination_ns, pvc) in pvcs {
        let skip = data.permanent.lock().ok().and_then(|p| p.get(&(source_ns.clone(), pvc.clone())).copied());
        if skip == Some(generation) && !request.forced {
            continue;
        }
        set_pvc(data, &source_ns, &pvc, &destination_ns, |p| p.phase = PvcDataPhase::Queued);
        let which = (source_ns.clone(), destination_ns.clone(), pvc.clone());
        let job = pvc_task::PvcJob { source_ns, destination_ns, pvc };
        let (ctx, task_manager, task_data, request) = (ctx.clone(), manager.clone(), data.clone(), request.clone());
        let (settings, agent, key) = (settings.clone(), agent.clone(), key.clone());
        let (mapping_slots, cluster_slots, global) = (mapping_slots.clone(), cluster_slots.clone(), global.clone());
        copies.push((
            which,
            tokio::spawn(async move {
                let Ok(_mine) = mapping_slots.acquire_owned().await else { return };
                let Ok(_cluster) = cluster_slots.acquire_owned().await else { return };
                let Ok(_global) = global.acquire_owned().await else { return };
                pvc_task::copy_pvc(
                    &ctx,
                    &task_manager,
                    &task_data,
                    &request,
                    &settings,
                    &agent,
                    &key,
                    &job,
                    generation,
                )
                .await;
            }),
        ));
        load(manager, data, &ns, &name);
    }
    for ((source_ns, destination_ns, pvc), copy) in copies {
        // A copy that panicked is reported on its PVC; the others and the next run go on.
        if let Err(panicked) = copy.await
            && panicked.is_panic()
        {
            let _ = data.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            let failure =
                Failure::transient(crate::contain::PANICKED, "the copy hit an internal error (please report it)");
            tracing::error!(mapping = %request.key(), pvc = %format!("{source_ns}/{pvc}"), "PVC copy panicked");
            set_pvc(data, &source_ns, &pvc, &destination_ns, |p| {
                p.phase = PvcDataPhase::Failed;
                p.last_error = Some(error(&failure));
            });
        }
    }
    // Approved deletions went through once every PVC copied: the approval is used up.
    let all_copied = data.snapshot().pvcs.iter().all(|p| p.phase == PvcDataPhase::Succeeded);
    if settings.deletions_approved && all_copied && !data.cancel.is_cancelled() {
        super::rotation::remove_annotation(ctx, request, dr_syncer_api::constants::ANNOTATION_APPROVE_DELETIONS).await;
    }
    // Drop a previous key no copy needs any more (or rotate, if due meanwhile) — unless the mapping went away.
    if !data.cancel.is_cancelled() {
        ensure_key(ctx, data, request, &settings, false).await?;
    }
    Ok(())
}

pub(super) fn load(manager: &DataSync, data: &MappingData, ns: &str, name: &str) {
    let status = data.snapshot();
    let queued = status.pvcs.iter().filter(|p| p.phase == PvcDataPhase::Queued).count() as i64;
    let in_flight = data.in_flight.load(Ordering::SeqCst) as i64;
    manager.metrics.set_load((ns, name), in_flight, queued);
    data.update(|s| {
        s.in_flight = in_flight as i32;
        s.queued = queued as i32;
    });
}

pub(super) fn set_pvc(
    data: &MappingData,
    source_ns: &str,
    pvc: &str,
    destination_ns: &str,
    f: impl FnOnce(&mut PvcDataStatus),
) {
    data.update(|s| {
        let index = match s.pvcs.iter().position(|p| p.namespace == source_ns && p.name == pvc) {
            Some(i) => i,
            None => {
                s.pvcs.push(PvcDataStatus {
                    namespace: source_ns.into(),
                    name: pvc.into(),
                    destination_namespace: destination_ns.into(),
                    ..PvcDataStatus::default()
                });
                s.pvcs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                s.pvcs.iter().position(|p| p.namespace == source_ns && p.name == pvc).unwrap_or_default()
            }
        };
        if let Some(entry) = s.pvcs.get_mut(index) {
            f(entry);
        }
    });
}

/// The mapping's DR PVCs (written by its resource sync), as (source namespace, DR namespace, name).
async fn list_pvcs(request: &DataRequest, t: Duration) -> Result<Vec<(String, String, String)>, Failure> {
    let mapping = &request.mapping;
    let selector = format!(
        "{LABEL_DR_MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_MAPPING}={},{LABEL_MAPPING_NAMESPACE}={}",
        label_value(&mapping.name_any()),
        label_value(&mapping.namespace().unwrap_or_default())
    );
    let mut found = Vec::new();
    for covered in &request.namespaces {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(request.destination.clone(), &covered.destination);
        let what = format!("list PVCs of {}", covered.destination);
        let list = crate::error::with_timeout(what, t, api.list(&ListParams::default().labels(&selector))).await?;
        for pvc in list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let from = pvc.annotations().get(ANNOTATION_SOURCE_NAMESPACE).cloned().unwrap_or_default();
            if from == covered.source {
                found.push((covered.source.clone(), covered.destination.clone(), pvc.name_any()));
            }
        }
    }
    found.sort();
    Ok(found)
}
