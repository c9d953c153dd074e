//! Kubernetes events on dr-syncer resources. Publishing is best effort: a failure is logged, never fatal.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::conditions::truncate;

/// Name events are reported under.
pub const REPORTER: &str = "dr-syncer-controller";
/// Time allowed to publish one event.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes events through one recorder.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something expected happened.
    Normal,
    /// Something users should look at.
    Warning,
}

impl Events {
    /// A publisher writing to the cluster of `client`; `instance` tells controller replicas apart.
    pub fn new(client: Client, instance: Option<String>) -> Events {
        let reporter = Reporter { controller: REPORTER.to_string(), instance };
        Events { recorder: Recorder::new(client, reporter) }
    }

    /// Publishes one event about `object`; logs instead of failing.
    pub async fn publish(&self, object: &ObjectReference, severity: Severity, reason: &str, action: &str, note: &str) {
        let event = Event {
            type_: match severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.recorder.publish(&event, object)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, reason, "cannot publish event"),
            Err(_) => tracing::warn!(reason, "publishing an event timed out"),
        }
    }
}
