//! Single-object syncs for Continuous mode: the same select → sanitize → transform → plan → apply steps as a full
//! sync, for one source object whose change a watch reported. A source object that is gone (or no longer selected)
//! is pruned from DR only after a GET of it answered 404 — never on a failed call.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject};
use kube::core::{Selector, SelectorExt};
use serde_json::Value;

use super::kind::{KindContext, plan_object, problem, record, write_one};
use super::{Job, Rules};
use crate::sync::api;
use crate::sync::discovery::api_resource;
use crate::sync::kinds::SelectedKind;
use crate::sync::object;
use crate::sync::ownership::Owner;
use crate::sync::report::{SyncFailure, SyncReport};

/// One source namespace of a Continuous mapping, ready for single-object syncs.
pub struct NamespaceSync {
    job: Job,
    rules: Rules,
    selector: Option<Selector>,
}

impl NamespaceSync {
    /// Compiles the rules of `job`.
    pub fn new(job: Job) -> Result<NamespaceSync, SyncFailure> {
        let rules = Rules::from_spec(&job)?;
        let selector = job.spec.label_selector.clone().and_then(|s| Selector::try_from(s).ok());
        Ok(NamespaceSync { job, rules, selector })
    }

    fn selected(&self, source: &Value, plural: &str) -> bool {
        if self.rules.selection.skip(source, plural).is_some() {
            return false;
        }
        let labels: BTreeMap<String, String> =
            source.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
        self.selector.as_ref().is_none_or(|s| s.matches(&labels))
    }

    /// Syncs the object `name` of `selected`: applies its current state, or prunes the DR copy when the source
    /// object is gone or no longer selected. Outcomes are counted in `report`.
    pub async fn sync_object(&self, selected: &SelectedKind, version: &str, name: &str, report: &mut SyncReport) {
        let job = &self.job;
        let kind = selected.qualified();
        let ctx = KindContext { job, rules: &self.rules, selected, version, storage_classes: None };
        let resource = api_resource(&selected.group, version, &selected.kind, &selected.plural);
        let source_api: Api<DynamicObject> =
            Api::namespaced_with(job.source.client.clone(), &job.marks.source_namespace, &resource);
        let dest_api: Api<DynamicObject> =
            Api::namespaced_with(job.destination.client.clone(), &job.destination_namespace, &resource);
        let what = format!("get {kind} {}/{name} on source cluster {}", job.marks.source_namespace, job.source.name);
        let source = match api::get_opt(&source_api, name, job.timeout, &what).await {
            Ok(found) => found.map(|mut o| {
                if let Some(map) = o.as_object_mut() {
                    map.insert("apiVersion".into(), Value::String(resource.api_version.clone()));
                    map.insert("kind".into(), Value::String(resource.kind.clone()));
                }
                o
            }),
            Err(err) => return report.fail(problem(&kind, name, &err)),
        };
        let what = format!("get {kind} {}/{name} on DR cluster {}", job.destination_namespace, job.destination.name);
        let existing = match api::get_opt(&dest_api, name, job.timeout, &what).await {
            Ok(found) => found,
            Err(err) => return report.fail(problem(&kind, name, &err)),
        };
        report.counts(&kind);
        match source.filter(|s| self.selected(s, &selected.plural)) {
            Some(source) => {
                if let Some(write) = plan_object(&ctx, &kind, &source, existing.as_ref(), report) {
                    let written = write_one(&ctx, &dest_api, &kind, &write, existing.as_ref()).await;
                    record(report, &kind, name, written);
                }
            }
            None => {
                let Some(existing) = existing.filter(|e| job.marks.owner_of(e) == Owner::Ours) else { return };
                let what = format!(
                    "delete {kind} {}/{name} on DR cluster {}",
                    job.destination_namespace, job.destination.name
                );
                match api::delete(&dest_api, name, object::uid(&existing), job.timeout, &what).await {
                    Ok(()) => report.counts(&kind).pruned += 1,
                    Err(err) => report.fail(problem(&kind, name, &err)),
                }
            }
        }
    }
}
