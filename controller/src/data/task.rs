//! One data-sync run of a mapping: resolve settings, make or rotate its key, find its DR PVCs, copy each within the
//! slots, retry transient failures with the mapping's backoff, and keep `status.dataSync`, events and metrics
//! current.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dr_syncer_agent::progress::Report;
use dr_syncer_api::common::VerificationMode;
use dr_syncer_api::constants::{
    ANNOTATION_SOURCE_NAMESPACE, ANNOTATION_VERIFICATION_MODE, LABEL_DR_MANAGED_BY, LABEL_MAPPING,
    LABEL_MAPPING_NAMESPACE, MANAGED_BY_VALUE,
};
use dr_syncer_api::namespace_mapping::{DataProgress, DataSyncError, PvcDataPhase, PvcDataStatus};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use tokio::sync::Semaphore;

use super::failure::{Failure, Totals};
use super::keys::{self, StoredKey};
use super::lease;
use super::manager::{DataRequest, DataSync, MappingData, STATUS_EVERY, write_status};
use super::pods::CopyInput;
use super::rotation::{ensure_key, remove_rotate_annotation};
use super::run::{AgentAccess, CopyContext};
use super::settings::{Settings, settings};
use crate::mapping::outcome::RetryPolicy;
use crate::reconcile::Context;
use crate::reconcile::events::Severity;
use crate::sync::ownership::label_value;

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn error(failure: &Failure) -> DataSyncError {
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
    if let Err(failure) = run_inner(ctx, manager, data, request).await {
        tracing::warn!(mapping = %request.key(), reason = failure.reason, message = %failure.message, "data sync could not run");
        data.update(|s| {
            for pvc in &mut s.pvcs {
                pvc.phase = PvcDataPhase::Failed;
                pvc.last_error = Some(error(&failure));
            }
        });
        let object = mapping.object_ref(&());
        ctx.events.publish(&object, Severity::Warning, failure.reason, "DataSync", &failure.message).await;
    }
    manager.metrics.set_load((&ns, &name), 0, 0);
    writer.abort();
    let status = data.snapshot();
    if let Err(error) = write_status(ctx, mapping, &status).await {
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
    let host_key = crate::agent::host_key::ensure(&ctx.client, &request.source_rc, t).await?;
    let pvc_sync = request.source_rc.spec.pvc_sync.clone().unwrap_or_default();
    let ssh = pvc_sync.ssh.clone().unwrap_or_default();
    let agent = AgentAccess {
        host_key: host_key.public_openssh.clone(),
        port: ssh.port.unwrap_or(dr_syncer_api::remote_cluster::DEFAULT_AGENT_SSH_PORT) as u16,
        service: ssh.service.is_some(),
    };
    let key = ensure_key(ctx, data, request, &settings, request.rotate).await?;
    if request.rotate {
        remove_rotate_annotation(ctx, request).await;
    }
    let pvcs = list_pvcs(request, t).await?;
    let (ns, name) = (request.mapping.namespace().unwrap_or_default(), request.mapping.name_any());
    data.update(|s| {
        s.pvcs.retain(|p| pvcs.iter().any(|(src, _, pvc)| *src == p.namespace && *pvc == p.name));
    });
    let generation = request.mapping.meta().generation.unwrap_or_default();
    let mapping_slots = Arc::new(Semaphore::new(settings.config.concurrent_syncs.unwrap_or(2).max(1) as usize));
    let global = manager.global_slots(&request.source_rc);
    let settings = Arc::new(settings);
    let mut copies = Vec::new();
    for (source_ns, destination_ns, pvc) in pvcs {
        let skip = data.permanent.lock().ok().and_then(|p| p.get(&(source_ns.clone(), pvc.clone())).copied());
        if skip == Some(generation) && !request.forced {
            continue;
        }
        set_pvc(data, &source_ns, &pvc, &destination_ns, |p| p.phase = PvcDataPhase::Queued);
        let job = PvcJob { source_ns, destination_ns, pvc };
        let (ctx, task_manager, task_data, request) = (ctx.clone(), manager.clone(), data.clone(), request.clone());
        let (settings, agent, key, mapping_slots, global) =
            (settings.clone(), agent.clone(), key.clone(), mapping_slots.clone(), global.clone());
        copies.push(tokio::spawn(async move {
            let Ok(_mine) = mapping_slots.acquire_owned().await else { return };
            let Ok(_global) = global.acquire_owned().await else { return };
            copy_pvc(&ctx, &task_manager, &task_data, &request, &settings, &agent, &key, &job, generation).await;
        }));
        load(manager, data, &ns, &name);
    }
    for copy in copies {
        let _ = copy.await;
    }
    // Drop a previous key no copy needs any more (or rotate, if due meanwhile).
    ensure_key(ctx, data, request, &settings, false).await?;
    Ok(())
}

fn load(manager: &DataSync, data: &MappingData, ns: &str, name: &str) {
    let status = data.snapshot();
    let queued = status.pvcs.iter().filter(|p| p.phase == PvcDataPhase::Queued).count() as i64;
    let in_flight = data.in_flight.load(Ordering::SeqCst) as i64;
    manager.metrics.set_load((ns, name), in_flight, queued);
    data.update(|s| {
        s.in_flight = in_flight as i32;
        s.queued = queued as i32;
    });
}

fn set_pvc(data: &MappingData, source_ns: &str, pvc: &str, destination_ns: &str, f: impl FnOnce(&mut PvcDataStatus)) {
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

/// One PVC of a run.
struct PvcJob {
    source_ns: String,
    destination_ns: String,
    pvc: String,
}

#[allow(clippy::too_many_arguments)]
async fn copy_pvc(
    ctx: &Context,
    manager: &DataSync,
    data: &MappingData,
    request: &DataRequest,
    settings: &Settings,
    agent: &AgentAccess,
    key: &StoredKey,
    job: &PvcJob,
    generation: i64,
) {
    let (ns, name) = (request.mapping.namespace().unwrap_or_default(), request.mapping.name_any());
    let pvc_what = format!("{}/{}", job.source_ns, job.pvc);
    let lease_name = lease::name(&request.source_rc.name_any(), &job.source_ns, &job.pvc);
    let retry = RetryPolicy::from_config(request.mapping.spec.retry_config.as_ref());
    let started = Instant::now();
    let start_time = Timestamp::now();
    data.in_flight.fetch_add(1, Ordering::SeqCst);
    set_pvc(data, &job.source_ns, &job.pvc, &job.destination_ns, |p| {
        p.phase = PvcDataPhase::Running;
        p.last_start_time = Some(time(start_time));
        p.attempts = 0;
        p.next_retry_time = None;
        p.progress = None;
    });
    load(manager, data, &ns, &name);
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        set_pvc(data, &job.source_ns, &job.pvc, &job.destination_ns, |p| p.attempts = attempt);
        let result =
            match lease::acquire(&ctx.client, &ns, &lease_name, &manager.identity, &pvc_what, ctx.settings.api_timeout)
                .await
            {
                Ok(held) => {
                    let result = copy_once(ctx, request, settings, agent, key, job, data).await;
                    held.release(ctx.settings.api_timeout).await;
                    result
                }
                Err(failure) => Err(failure),
            };
        match result {
            Ok(totals) => break Ok(totals),
            Err(failure) if failure.permanent || attempt > retry.max_retries || data.cancel.is_cancelled() => {
                break Err(failure);
            }
            Err(failure) => {
                let wait = retry.wait(attempt);
                tracing::info!(pvc = %pvc_what, reason = failure.reason, message = %failure.message, ?wait, attempt, "copy failed; retrying");
                manager.metrics.failed((&ns, &name), failure.reason, false);
                let next = Timestamp::now().checked_add(SignedDuration::try_from(wait).unwrap_or_default()).ok();
                set_pvc(data, &job.source_ns, &job.pvc, &job.destination_ns, |p| {
                    p.last_error = Some(error(&failure));
                    p.next_retry_time = next.map(time);
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = data.cancel.cancelled() => break Err(failure),
                }
            }
        }
    };
    data.in_flight.fetch_sub(1, Ordering::SeqCst);
    let object = request.mapping.object_ref(&());
    match outcome {
        Ok(totals) => {
            let seconds = started.elapsed().as_secs_f64();
            let end = Timestamp::now();
            manager.metrics.succeeded(
                (&ns, &name),
                (&job.source_ns, &job.pvc),
                totals.bytes,
                totals.files,
                seconds,
                end.as_millisecond() as f64 / 1000.0,
            );
            if let Ok(mut p) = data.permanent.lock() {
                p.remove(&(job.source_ns.clone(), job.pvc.clone()));
            }
            set_pvc(data, &job.source_ns, &job.pvc, &job.destination_ns, |p| {
                succeeded(p, totals, end, started.elapsed())
            });
            let note =
                format!("copied PVC {pvc_what}: {} bytes in {} files, {:.1} s", totals.bytes, totals.files, seconds);
            tracing::info!(mapping = %request.key(), pvc = %pvc_what, bytes = totals.bytes, files = totals.files, seconds, "PVC data copied");
            ctx.events.publish(&object, Severity::Normal, "DataSynced", "DataSync", &note).await;
        }
        Err(failure) => {
            manager.metrics.failed((&ns, &name), failure.reason, failure.permanent);
            if failure.permanent
                && let Ok(mut p) = data.permanent.lock()
            {
                p.insert((job.source_ns.clone(), job.pvc.clone()), generation);
            }
            set_pvc(data, &job.source_ns, &job.pvc, &job.destination_ns, |p| {
                p.phase = PvcDataPhase::Failed;
                p.progress = None;
                p.next_retry_time = None;
                p.last_error = Some(error(&failure));
            });
            let note = format!("PVC {pvc_what}: {}", failure.message);
            tracing::warn!(mapping = %request.key(), pvc = %pvc_what, reason = failure.reason, permanent = failure.permanent, message = %failure.message, "PVC data copy failed");
            ctx.events.publish(&object, Severity::Warning, failure.reason, "DataSync", &note).await;
        }
    }
    load(manager, data, &ns, &name);
}

fn succeeded(p: &mut PvcDataStatus, totals: Totals, end: Timestamp, took: Duration) {
    p.phase = PvcDataPhase::Succeeded;
    p.last_success_time = Some(time(end));
    p.last_duration = Some(humantime::format_duration(Duration::from_secs(took.as_secs())).to_string());
    p.bytes_transferred = totals.bytes as i64;
    p.files_transferred = totals.files as i64;
    p.progress = None;
    p.next_retry_time = None;
    p.last_error = None;
}

async fn copy_once(
    ctx: &Context,
    request: &DataRequest,
    settings: &Settings,
    agent: &AgentAccess,
    key: &StoredKey,
    job: &PvcJob,
    data: &MappingData,
) -> Result<Totals, Failure> {
    let verify = pvc_verification(request, job, settings.verify, ctx.settings.sync_api_timeout).await;
    let input = CopyInput {
        mapping: (request.mapping.namespace().unwrap_or_default(), request.mapping.name_any()),
        sync_id: super::short_hash(&format!("{}{}", Timestamp::now(), job.pvc))[..10].to_string(),
        pvc: job.pvc.clone(),
        source_namespace: job.source_ns.clone(),
        destination_namespace: job.destination_ns.clone(),
        node: None,
        image: crate::agent::manifests::image(
            &request.source_rc.spec.pvc_sync.clone().unwrap_or_default(),
            &ctx.settings.agent_image,
        ),
        timeout: settings.timeout,
        options: settings.options.clone(),
        verify,
        sample_percent: settings.sample_percent,
    };
    let authorized: Vec<String> = keys::authorized(key).into_iter().map(|k| k.public_key).collect();
    let copy_ctx = CopyContext {
        source: &request.source,
        destination: &request.destination,
        agent,
        mapping_id: &request.key(),
        authorized_keys: authorized.join("\n") + "\n",
        private_key: key.private_openssh.clone(),
        api_timeout: ctx.settings.sync_api_timeout,
    };
    let (source_ns, pvc, destination_ns) = (&job.source_ns, &job.pvc, &job.destination_ns);
    super::run::copy(&copy_ctx, input, |report| {
        if let Report::Progress { bytes, percent, rate, files } = report {
            set_pvc(data, source_ns, pvc, destination_ns, |p| {
                p.progress = Some(DataProgress {
                    bytes: *bytes as i64,
                    percent: i32::from(*percent),
                    rate: rate.clone(),
                    files: *files as i64,
                });
            });
        }
    })
    .await
}

/// The PVC's own verification mode (annotation `dr-syncer.io/verification-mode` on the source PVC), else the
/// mapping's.
async fn pvc_verification(
    request: &DataRequest,
    job: &PvcJob,
    default: VerificationMode,
    t: Duration,
) -> VerificationMode {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(request.source.clone(), &job.source_ns);
    let Ok(Ok(Some(pvc))) = tokio::time::timeout(t, api.get_opt(&job.pvc)).await else { return default };
    match pvc.annotations().get(ANNOTATION_VERIFICATION_MODE).map(String::as_str) {
        Some("none") => VerificationMode::None,
        Some("sample") => VerificationMode::Sample,
        Some("full") => VerificationMode::Full,
        _ => default,
    }
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
        for pvc in list.items {
            let from = pvc.annotations().get(ANNOTATION_SOURCE_NAMESPACE).cloned().unwrap_or_default();
            if from == covered.source {
                found.push((covered.source.clone(), covered.destination.clone(), pvc.name_any()));
            }
        }
    }
    found.sort();
    Ok(found)
}
