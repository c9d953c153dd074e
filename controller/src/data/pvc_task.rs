//! One PVC of a data-sync run: take its Lease, remove what an interrupted earlier copy left behind, copy with
//! retries and backoff (stopped when the Lease is lost or the mapping goes away), then record the outcome in
//! status, metrics and an event.

use std::time::{Duration, Instant};

use dr_syncer_api::common::VerificationMode;
use dr_syncer_api::namespace_mapping::{DataProgress, PvcDataPhase, PvcDataStatus};
use dr_syncer_wire::progress::Report;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

use super::failure::{Failure, Totals};
use super::keys::StoredKey;
use super::lease;
use super::manager::{DataRequest, DataSync, MappingData};
use super::pods::CopyInput;
use super::run::{AgentAccess, CopyContext};
use super::settings::Settings;
use super::sweep;
use super::task::{error, load, set_pvc, time};
use crate::mapping::outcome::RetryPolicy;
use crate::reconcile::Context;
use crate::reconcile::events::Severity;

/// One PVC of a run.
pub(super) struct PvcJob {
    pub(super) source_ns: String,
    pub(super) destination_ns: String,
    pub(super) pvc: String,
}

/// Copies one PVC until it succeeds, fails for good, runs out of retries or is stopped.
#[allow(clippy::too_many_arguments)]
pub(super) async fn copy_pvc(
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
    let cluster_retries = request.source_rc.spec.pvc_sync.as_ref().and_then(|p| p.retry_config.as_ref());
    let retries = super::settings::copy_retries(request.mapping.spec.retry_config.as_ref(), cluster_retries);
    let retry = RetryPolicy::from_config(Some(&retries));
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
                    let result = copy_held(ctx, request, settings, agent, key, job, data, &held).await;
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
        Err(_) if data.cancel.is_cancelled() => {}
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

/// One attempt while holding the PVC's Lease: sweep leftovers, then copy; a lost Lease or a deleted mapping stops
/// the copy (which still cleans up after itself).
#[allow(clippy::too_many_arguments)]
async fn copy_held(
    ctx: &Context,
    request: &DataRequest,
    settings: &Settings,
    agent: &AgentAccess,
    key: &StoredKey,
    job: &PvcJob,
    data: &MappingData,
    held: &lease::Held,
) -> Result<Totals, Failure> {
    let (ns, name) = (request.mapping.namespace().unwrap_or_default(), request.mapping.name_any());
    let scope = sweep::Scope {
        source: &request.source,
        destination: &request.destination,
        mapping: (&ns, &name),
        timeout: ctx.settings.sync_api_timeout,
    };
    sweep::pvc(&scope, &job.source_ns, &job.destination_ns, &job.pvc).await?;
    let stop = data.cancel.child_token();
    // Cancels the copy when the Lease is lost, then waits for the copy to end (and clean up) on its own.
    let watch = async {
        held.lost().await;
        stop.cancel();
        std::future::pending::<Result<Totals, Failure>>().await
    };
    let result = tokio::select! {
        result = copy_once(ctx, request, settings, agent, key, job, data, &stop) => result,
        result = watch => result,
    };
    match result {
        Err(failure) if failure.reason == super::run::STOPPED && held.is_lost() => Err(Failure::transient(
            "LeaseLost",
            format!("the Lease of PVC {}/{} could not be renewed; the copy was stopped", job.source_ns, job.pvc),
        )),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy_once(
    ctx: &Context,
    request: &DataRequest,
    settings: &Settings,
    agent: &AgentAccess,
    key: &StoredKey,
    job: &PvcJob,
    data: &MappingData,
    stop: &CancellationToken,
) -> Result<Totals, Failure> {
    let defaults = (settings.verify, settings.sample_percent);
    let (verify, sample_percent) = pvc_verification(request, job, defaults, ctx.settings.sync_api_timeout).await;
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
        sample_percent,
        special_files: settings.config.special_files.unwrap_or(false),
        max_delete_percent: settings.max_delete_percent,
    };
    let copy_ctx = CopyContext {
        source: &request.source,
        destination: &request.destination,
        agent,
        mapping_id: &request.key(),
        authority: key,
        api_timeout: ctx.settings.sync_api_timeout,
        stop: stop.clone(),
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

/// The PVC's own verification mode and sample share (annotations on the source PVC), else the mapping's.
async fn pvc_verification(
    request: &DataRequest,
    job: &PvcJob,
    defaults: (VerificationMode, u8),
    t: Duration,
) -> (VerificationMode, u8) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(request.source.clone(), &job.source_ns);
    let Ok(Ok(Some(pvc))) = tokio::time::timeout(t, api.get_opt(&job.pvc)).await else { return defaults };
    let (mode, percent, problems) = super::settings::pvc_verification(pvc.annotations(), defaults);
    for problem in problems {
        tracing::warn!(mapping = %request.key(), pvc = %format!("{}/{}", job.source_ns, job.pvc), "{problem}");
    }
    (mode, percent)
}
