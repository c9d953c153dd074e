//! Making, rotating and trimming a mapping's SSH certificate authority, in the order that never cuts a copy: the
//! agents' authorized set first, then status.

use std::sync::atomic::Ordering;

use dr_syncer_api::constants::ANNOTATION_ROTATE_SSH_KEY;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::failure::Failure;
use super::keys::{self, KeyAction, StoredKey};
use super::manager::{DataRequest, MappingData};
use super::policy;
use super::settings::{Settings, settings};
use crate::reconcile::Context;
use crate::reconcile::events::Severity;

/// Makes, rotates or trims the mapping's certificate authority: the agents' authorized set first, then status. The
/// authority's private half stays in this process's memory; what reaches a DR namespace is a key and certificate
/// made per copy ([`super::run`]).
pub(super) async fn ensure_key(
    ctx: &Context,
    data: &MappingData,
    request: &DataRequest,
    settings: &Settings,
    force: bool,
) -> Result<StoredKey, Failure> {
    let mut held = data.authority.lock().await;
    if data.cancel.is_cancelled() {
        // The mapping was deleted or stopped copying: its keys are being revoked, never written again.
        return Err(Failure::transient(super::run::STOPPED, "the mapping no longer copies data"));
    }
    let t = ctx.settings.sync_api_timeout;
    // A rotation on demand happens once per annotation: whoever holds the lock first rotates and removes it.
    let force = force && rotation_requested(ctx, request).await;
    if held.is_none() {
        // Client keys of earlier versions lived in the DR namespaces; they are no longer used or accepted.
        for covered in &request.namespaces {
            super::sweep::legacy_key_secret(&request.destination, &covered.destination, &request.mapping.name_any(), t)
                .await;
        }
    }
    let now = Timestamp::now();
    let in_flight = data.in_flight.load(Ordering::SeqCst) > 0;
    let overlap = SignedDuration::try_from(settings.timeout).unwrap_or(SignedDuration::from_mins(30));
    let action = keys::decide(held.as_ref(), now, settings.interval, force);
    // Generations go on from what status says, across processes.
    let in_status = request.mapping.status.as_ref().and_then(|s| s.data_sync.as_ref()).and_then(|d| d.key.as_ref());
    let last = in_status.map_or(0, |k| k.generation).max(data.snapshot().key.map_or(0, |k| k.generation));
    let comment = |generation: i64| format!("dr-syncer-ca:{}:{generation}", request.key());
    let generate = |generation| {
        dr_syncer_wire::keys::generate(&comment(generation)).map_err(|e| Failure::transient("KeyError", e.to_string()))
    };
    let key = match (&action, held.take()) {
        (KeyAction::Keep, Some(mut key)) => {
            key.retiring = keys::prune(&key.retiring, now, in_flight);
            key
        }
        (KeyAction::Rotate(_), Some(old)) => {
            keys::rotate(&old, &generate(old.generation + 1)?, now, overlap, in_flight)
        }
        _ => keys::first(&generate(last + 1)?, last + 1, now),
    };
    // The agents learn the new authority before any copy holds a certificate it signed.
    let edit = policy::Edit::Keys { mapping: request.key(), keys: keys::authorized(&key, settings.interval, overlap) };
    let published = policy::edit(&request.source, &edit, t).await;
    *held = Some(key.clone());
    published?;
    data.update(|s| s.key = Some(keys::status(&key, settings.interval)));
    let made = match &action {
        KeyAction::Rotate(why) => Some(*why),
        KeyAction::Create => Some("FirstKey"),
        KeyAction::Keep => None,
    };
    if force {
        remove_annotation(ctx, request, ANNOTATION_ROTATE_SSH_KEY).await;
    }
    if let Some(why) = made {
        let note = format!(
            "SSH certificate authority generation {} ({}), fingerprint {}",
            key.generation, why, key.fingerprint
        );
        tracing::info!(mapping = %request.key(), generation = key.generation, fingerprint = %key.fingerprint, why, "certificate authority made");
        ctx.events
            .publish(&request.mapping.object_ref(&()), Severity::Normal, "ClientKeyRotated", "DataSync", &note)
            .await;
    }
    Ok(key)
}

/// Whether the live mapping still carries the rotate annotation (an error reads as yes: rotating once too often
/// is harmless, missing a requested rotation is not).
async fn rotation_requested(ctx: &Context, request: &DataRequest) -> bool {
    let api: Api<dr_syncer_api::NamespaceMapping> =
        Api::namespaced(ctx.client.clone(), &request.mapping.namespace().unwrap_or_default());
    let name = request.mapping.name_any();
    let call = api.get_opt(&name);
    match crate::error::with_timeout("get the mapping", ctx.settings.api_timeout, call).await {
        Ok(Some(mapping)) => mapping.annotations().contains_key(ANNOTATION_ROTATE_SSH_KEY),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Removes annotation `key` from the mapping (a request that was carried out).
pub(super) async fn remove_annotation(ctx: &Context, request: &DataRequest, key: &str) {
    let api: Api<dr_syncer_api::NamespaceMapping> =
        Api::namespaced(ctx.client.clone(), &request.mapping.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {key: null}}});
    let (name, params, patch) = (request.mapping.name_any(), PatchParams::default(), Patch::Merge(&patch));
    let call = api.patch(&name, &params, &patch);
    if let Err(error) =
        crate::error::with_timeout(format!("remove annotation {key}"), ctx.settings.api_timeout, call).await
    {
        tracing::warn!(mapping = %request.key(), %error, "cannot remove annotation {key}");
    }
}

/// Rotates the mapping's key now, while a run may be copying (its copies keep the previous key until they end).
pub async fn rotate_now(ctx: &Context, data: &MappingData, request: &DataRequest) {
    let result = match settings(request) {
        Ok(settings) => ensure_key(ctx, data, request, &settings, true).await.map(|_| ()),
        Err(failure) => Err(failure),
    };
    match result {
        Ok(()) => {}
        Err(failure) => {
            tracing::warn!(mapping = %request.key(), reason = failure.reason, message = %failure.message, "key rotation failed");
            let object = request.mapping.object_ref(&());
            ctx.events.publish(&object, Severity::Warning, failure.reason, "RotateKey", &failure.message).await;
        }
    }
}
