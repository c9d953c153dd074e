//! Making, rotating and trimming a mapping's client key, in the order that never cuts a copy: the agents'
//! authorized set first, then the DR Secrets, then status.

use std::sync::atomic::Ordering;

use dr_syncer_api::constants::ANNOTATION_ROTATE_SSH_KEY;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::failure::Failure;
use super::keys::{self, KeyAction, StoredKey};
use super::manager::{DataRequest, MappingData};
use super::settings::{Settings, settings};
use super::{key_store, policy};
use crate::reconcile::Context;
use crate::reconcile::events::Severity;

/// Makes, rotates or trims the mapping's key: the agents' authorized set first, then the DR Secrets, then status.
pub(super) async fn ensure_key(
    ctx: &Context,
    data: &MappingData,
    request: &DataRequest,
    settings: &Settings,
    force: bool,
) -> Result<StoredKey, Failure> {
    let _held = data.key_lock.lock().await;
    if data.cancel.is_cancelled() {
        // The mapping was deleted or stopped copying: its keys are being revoked, never written again.
        return Err(Failure::transient(super::run::STOPPED, "the mapping no longer copies data"));
    }
    let t = ctx.settings.sync_api_timeout;
    // A rotation on demand happens once per annotation: whoever holds the lock first rotates and removes it.
    let force = force && rotation_requested(ctx, request).await;
    let secret_name = key_store::secret_name(&request.mapping.name_any());
    let Some(primary) = request.namespaces.first() else {
        return Err(Failure::transient("NoNamespaces", "the mapping covers no namespace yet"));
    };
    let api: Api<Secret> = Api::namespaced(request.destination.clone(), &primary.destination);
    let stored = key_store::read(&api, &secret_name, t).await?;
    let now = Timestamp::now();
    let in_flight = data.in_flight.load(Ordering::SeqCst) > 0;
    let overlap = SignedDuration::try_from(settings.timeout).unwrap_or(SignedDuration::from_mins(30));
    let action = keys::decide(stored.as_ref(), now, settings.interval, force);
    let comment = |generation: i64| format!("dr-syncer:{}:{generation}", request.key());
    let generate = |generation| {
        dr_syncer_agent::keys::generate(&comment(generation)).map_err(|e| Failure::transient("KeyError", e.to_string()))
    };
    let key = match (&action, stored) {
        (KeyAction::Keep, Some(mut key)) => {
            key.retiring = keys::prune(&key.retiring, now, in_flight);
            key
        }
        (KeyAction::Rotate(_), Some(old)) => {
            keys::rotate(&old, &generate(old.generation + 1)?, now, overlap, in_flight)
        }
        _ => keys::first(&generate(1)?, now),
    };
    // The agents learn the new public key before any copy can hold the new private key.
    let edit = policy::Edit::Keys { mapping: request.key(), keys: keys::authorized(&key) };
    policy::edit(&request.source, &edit, t).await?;
    let mapping = (request.mapping.namespace().unwrap_or_default(), request.mapping.name_any());
    for covered in &request.namespaces {
        let api: Api<Secret> = Api::namespaced(request.destination.clone(), &covered.destination);
        let secret = key_store::to_secret(&key, &secret_name, &covered.destination, (&mapping.0, &mapping.1));
        key_store::write(&api, &secret, t).await?;
    }
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
        let note = format!("SSH client key generation {} ({}), fingerprint {}", key.generation, why, key.fingerprint);
        tracing::info!(mapping = %request.key(), generation = key.generation, fingerprint = %key.fingerprint, why, "client key made");
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
