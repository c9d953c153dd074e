//! What the controller reads from the pods of a copy: whether the source pod is still the one it created (UID, IP)
//! and the host key it made (from its log), why a pod is not running fine, progress from the copy pod's log
//! (bounded lines, progress reports only) and the copy's result from its container's termination message, checked
//! against its exit code.

use dr_syncer_wire::progress::Report;
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;

use std::net::IpAddr;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, LogParams};

use super::failure::{Failure, Totals, classify};
use super::pods;
use crate::error::with_timeout;

/// How much of the source pod's log is read for its host key (it is the first lines).
const HOST_KEY_LOG_BYTES: i64 = 64 << 10;

/// The node and IP of `pod` if it is the pod created with `uid` (and, when given, still at `ip`); else the copy
/// stops with `SourcePodReplaced`: someone deleted it and made another of that name.
pub(crate) fn ours(pod: &Pod, uid: &str, ip: Option<IpAddr>) -> Result<(String, IpAddr), Failure> {
    let name = pod.name_any();
    let replaced =
        |what: &str| Failure::transient("SourcePodReplaced", format!("pod {name} {what}; not copying from it"));
    if pod.uid().as_deref() != Some(uid) {
        return Err(replaced("is not the pod dr-syncer created (another UID)"));
    }
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let current: Option<IpAddr> = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|a| a.parse().ok());
    match (current, ip) {
        (None, _) => Err(Failure::transient("SourcePodNotReady", format!("pod {name} has no IP"))),
        (Some(now), Some(before)) if now != before => Err(replaced("changed its address")),
        (Some(now), _) => Ok((node, now)),
    }
}

/// Reads the source pod's host key from its log, which the pod writes before it listens (so a Ready pod has it).
pub(crate) async fn read_host_key(api: &Api<Pod>, name: &str, t: Duration) -> Result<String, Failure> {
    let params =
        LogParams { container: Some("serve".into()), limit_bytes: Some(HOST_KEY_LOG_BYTES), ..Default::default() };
    let log = with_timeout(format!("log of Pod {name}"), t, api.logs(name, &params)).await?;
    crate::agent::host_keys::key_from_log(&log)
        .ok_or_else(|| Failure::transient("SourcePodNoHostKey", format!("pod {name} logged no usable host key")))
}

/// Longest log line read from the copy pod; the rest of a longer line is dropped.
const LOG_LINE_MAX: usize = 16 << 10;

/// Reads the copy pod's log, handing each progress report to `progress`. Only progress is taken from the log:
/// it also carries what the remote sender prints, so a final report there proves nothing. Lines are bounded.
pub(crate) async fn read_progress(mut stream: impl futures::AsyncRead + Unpin, progress: &impl Fn(&Report)) {
    let mut line = Vec::with_capacity(256);
    let mut chunk = vec![0u8; 8192];
    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
        for byte in &chunk[..n] {
            if *byte != b'\n' {
                if line.len() < LOG_LINE_MAX {
                    line.push(*byte);
                }
                continue;
            }
            if let Some(report @ Report::Progress { .. }) = Report::from_line(&String::from_utf8_lossy(&line)) {
                progress(&report);
            }
            line.clear();
        }
    }
}

/// The copy's result from its ended pod (pure): the report in the copy container's termination message, which only
/// the copy program writes, checked against the container's exit code.
pub fn pod_result(pod: &Pod) -> Result<Totals, Failure> {
    let reason = pod_reason(pod);
    let terminated = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == pods::COPY_CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    let Some(terminated) = terminated else { return classify(None, &reason) };
    let report = terminated.message.as_deref().and_then(Report::from_json).filter(|r| matches!(r, Report::Done { .. }));
    match report {
        Some(report) if report.process_exit_code() != terminated.exit_code => Err(Failure::transient(
            "InconsistentResult",
            format!(
                "the copy reported exit code {} but its container ended with {}",
                report.process_exit_code(),
                terminated.exit_code
            ),
        )),
        Some(report) => classify(Some(&report), &reason),
        None => classify(None, &reason),
    }
}

/// What Kubernetes says about a pod that is not running fine.
pub(crate) fn pod_reason(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let container = status.container_statuses.iter().flatten().find_map(|c| {
        let state = c.state.as_ref()?;
        if let Some(w) = &state.waiting {
            return Some(format!(
                "{}: {}",
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default()
            ));
        }
        state.terminated.as_ref().map(|t| {
            format!(
                "{} (exit code {}): {}",
                t.reason.clone().unwrap_or_default(),
                t.exit_code,
                t.message.clone().unwrap_or_default()
            )
        })
    });
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "False" && c.message.is_some())
        .map(|c| format!("{}: {}", c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()));
    container.or(condition).or(status.message).unwrap_or_else(|| status.phase.unwrap_or_default())
}

#[cfg(test)]
#[path = "pod_report_tests.rs"]
mod tests;
