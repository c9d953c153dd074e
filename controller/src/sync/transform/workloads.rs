//! Workload transforms: parking Deployments, StatefulSets, DaemonSets, CronJobs and Jobs in the DR cluster.

use dr_syncer_api::constants as c;
use serde_json::{Value, json};

use super::{Options, Transformed};
use crate::sync::object;
use crate::sync::sanitize::sanitize_template;

/// What the `dr-syncer.io/scale-override` label asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Override {
    /// No label.
    None,
    /// An integer replica count.
    Count(i32),
    /// `"true"`: keep the source's count (the Go operator's meaning).
    KeepSource,
    /// Anything else.
    Invalid,
}

/// Reads the scale-override label.
pub fn scale_override(obj: &Value) -> Override {
    match object::label(obj, c::LABEL_SCALE_OVERRIDE) {
        None => Override::None,
        Some(c::TRUE_VALUE) => Override::KeepSource,
        Some(v) => v.trim().parse::<i32>().ok().filter(|n| *n >= 0).map_or(Override::Invalid, Override::Count),
    }
}

fn invalid_override_warning(obj: &Value) -> String {
    format!(
        "label {} has invalid value {:?}: use a replica count or \"true\"; parked as if absent",
        c::LABEL_SCALE_OVERRIDE,
        object::label(obj, c::LABEL_SCALE_OVERRIDE).unwrap_or_default()
    )
}

/// Deployments and StatefulSets: 0 replicas in DR unless overridden; the source count in an annotation.
pub fn replicated_set(out: &mut Transformed, opts: &Options) {
    let source = out.object.pointer("/spec/replicas").and_then(Value::as_i64).map_or(1, |n| n as i32);
    let replicas = match scale_override(&out.object) {
        Override::Count(n) => n,
        Override::KeepSource => source,
        Override::Invalid => {
            out.warnings.push(invalid_override_warning(&out.object));
            if opts.scale_to_zero { 0 } else { source }
        }
        Override::None if opts.scale_to_zero => 0,
        Override::None => source,
    };
    if let Some(spec) = object::map_at(&mut out.object, &["spec"]) {
        spec.insert("replicas".into(), json!(replicas));
    }
    object::set_annotation(&mut out.object, c::ANNOTATION_ORIGINAL_REPLICAS, &source.to_string());
    out.original_replicas = Some(source);
    if let Some(templates) = out.object.pointer_mut("/spec/volumeClaimTemplates").and_then(Value::as_array_mut) {
        templates.iter_mut().for_each(sanitize_template);
    }
}

/// Whether a parkable workload stays active: the override asks for a positive count or the source's.
fn stays_active(out: &mut Transformed, opts: &Options) -> bool {
    match scale_override(&out.object) {
        Override::Count(n) => n > 0,
        Override::KeepSource => true,
        Override::Invalid => {
            out.warnings.push(invalid_override_warning(&out.object));
            !opts.scale_to_zero
        }
        Override::None => !opts.scale_to_zero,
    }
}

/// DaemonSets cannot be scaled; a parked one gets a node selector no node matches, the original kept in an
/// annotation.
pub fn daemon_set(out: &mut Transformed, opts: &Options) {
    if stays_active(out, opts) {
        return;
    }
    let original = out.object.pointer("/spec/template/spec/nodeSelector").cloned().unwrap_or_else(|| json!({}));
    object::set_annotation(&mut out.object, c::ANNOTATION_ORIGINAL_NODE_SELECTOR, &original.to_string());
    if let Some(selector) = object::map_at(&mut out.object, &["spec", "template", "spec", "nodeSelector"]) {
        selector.insert(c::LABEL_PARKED.into(), json!(c::TRUE_VALUE));
    }
}

/// CronJobs are suspended in DR; the source's `suspend` kept in an annotation.
pub fn cron_job(out: &mut Transformed, opts: &Options) {
    if stays_active(out, opts) {
        return;
    }
    let original = out.object.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
    object::set_annotation(&mut out.object, c::ANNOTATION_ORIGINAL_SUSPEND, &original.to_string());
    if let Some(spec) = object::map_at(&mut out.object, &["spec"]) {
        spec.insert("suspend".into(), json!(true));
    }
    if let Some(template) = out.object.pointer_mut("/spec/jobTemplate") {
        sanitize_template(template);
    }
}

/// Labels the Job controller writes; the DR API server generates its own.
const JOB_GENERATED_LABELS: &[&str] =
    &["controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"];

/// Jobs (opt-in): the generated selector and labels are dropped; a parked Job runs with parallelism 0.
pub fn job(out: &mut Transformed, opts: &Options) {
    let manual = out.object.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        object::remove(&mut out.object, "/spec/selector");
        if let Some(labels) = out.object.pointer_mut("/spec/template/metadata/labels").and_then(Value::as_object_mut) {
            labels.retain(|k, _| !JOB_GENERATED_LABELS.contains(&k.as_str()));
        }
    }
    if stays_active(out, opts) {
        return;
    }
    let original = out.object.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1);
    object::set_annotation(&mut out.object, c::ANNOTATION_ORIGINAL_PARALLELISM, &original.to_string());
    if let Some(spec) = object::map_at(&mut out.object, &["spec"]) {
        spec.insert("parallelism".into(), json!(0));
    }
}

/// ServiceAccounts lose references to the source's token Secrets (the DR cluster mints its own).
pub fn service_account(obj: &mut Value) {
    let name = object::name(obj).to_string();
    let prefix = format!("{name}-token-");
    if let Some(secrets) = obj.get_mut("secrets").and_then(Value::as_array_mut) {
        secrets.retain(|s| !s.get("name").and_then(Value::as_str).is_some_and(|n| n.starts_with(&prefix)));
        if secrets.is_empty() {
            object::remove(obj, "/secrets");
        }
    }
}

/// Drops server-written noise from embedded pod templates.
pub fn sanitize_templates(obj: &mut Value) {
    if let Some(template) = obj.pointer_mut("/spec/template") {
        sanitize_template(template);
    }
    if let Some(template) = obj.pointer_mut("/spec/jobTemplate/spec/template") {
        sanitize_template(template);
    }
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
