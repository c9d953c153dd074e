//! Remote API calls of the sync engine: each with a timeout, failures classified for retries and status.

use std::time::Duration;

use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::report::Category;
use dr_syncer_api::constants::FIELD_MANAGER_SYNC;

/// Page size of list calls.
const PAGE_SIZE: u32 = 500;

/// A failed remote call.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct CallError {
    /// What was attempted (`list Secret in shop on source`).
    pub what: String,
    /// Short CamelCase reason.
    pub reason: String,
    /// Class of the failure.
    pub category: Category,
    /// The API server's or transport's message.
    pub message: String,
}

impl CallError {
    /// Whether the API server answered 404.
    pub fn is_not_found(&self) -> bool {
        self.reason == "NotFound"
    }
}

/// Classifies a kube error into (category, reason, message).
pub fn classify(err: &kube::Error) -> (Category, String, String) {
    match err {
        kube::Error::Api(status) => {
            let (category, reason) = match status.code {
                404 => (Category::ResourceNotFound, "NotFound"),
                422 => (Category::ValidationFailure, "Invalid"),
                409 => (Category::Other, "Conflict"),
                403 => (Category::Other, "Forbidden"),
                401 => (Category::Other, "Unauthorized"),
                429 | 500..=599 => (Category::NetworkError, "ServerError"),
                _ => (Category::Other, "ApiError"),
            };
            (category, reason.to_string(), status.message.clone())
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => {
            (Category::NetworkError, "Unreachable".to_string(), err.to_string())
        }
        kube::Error::Auth(_) => (Category::Other, "Unauthorized".to_string(), err.to_string()),
        _ => (Category::Other, "ClientError".to_string(), err.to_string()),
    }
}

/// An object that could not be converted between its typed and JSON forms.
fn decode_error(what: &str, e: &serde_json::Error) -> CallError {
    CallError {
        what: what.to_string(),
        reason: "DecodeError".into(),
        category: Category::Other,
        message: e.to_string(),
    }
}

/// Runs a call with a timeout, classifying its failure.
pub async fn call<T>(
    what: impl FnOnce() -> String,
    timeout: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(err)) => {
            let (category, reason, message) = classify(&err);
            Err(CallError { what: what(), reason, category, message })
        }
        Err(_) => Err(CallError {
            what: what(),
            reason: "Timeout".into(),
            category: Category::NetworkError,
            message: format!("no answer within {timeout:?}"),
        }),
    }
}

/// Lists every object (all pages) as JSON values with `apiVersion` and `kind` filled in.
pub async fn list_all(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    selector: Option<&str>,
    timeout: Duration,
    what: &str,
) -> Result<Vec<Value>, CallError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    // Often as large as the object itself, and not needed: dropped to keep large listings small.
    let drop_managed_fields = !super::transform::reads_managed_fields(&resource.group, &resource.kind);
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(sel) = selector {
            params = params.labels(sel);
        }
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = call(|| what.to_string(), timeout, api.list(&params)).await?;
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        for mut item in page.items {
            if drop_managed_fields {
                item.metadata.managed_fields = None;
            }
            let mut value = serde_json::to_value(&item).map_err(|e| decode_error(what, &e))?;
            if let Some(map) = value.as_object_mut() {
                map.insert("apiVersion".into(), Value::String(resource.api_version.clone()));
                map.insert("kind".into(), Value::String(resource.kind.clone()));
            }
            out.push(value);
        }
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Server-side applies a desired object with the sync field manager, forcing ownership of its fields.
pub async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    desired: &Value,
    timeout: Duration,
    what: &str,
) -> Result<(), CallError> {
    let params = PatchParams::apply(FIELD_MANAGER_SYNC).force();
    call(|| what.to_string(), timeout, api.patch(name, &params, &Patch::Apply(desired))).await.map(|_| ())
}

/// Whether `desired` passes the API server's validation as a new object: a server-side dry-run create, which
/// validates before it finds that the name is taken. A write the server refused as `Invalid` (HTTP 422) while the same
/// object is valid as a new one was refused by an update-only rule — a field that cannot change in place — whatever
/// words the server used for it (they differ between Kubernetes versions).
pub async fn valid_as_new(
    api: &Api<DynamicObject>,
    desired: &Value,
    timeout: Duration,
    what: &str,
) -> Result<bool, CallError> {
    let mut obj: DynamicObject = serde_json::from_value(desired.clone()).map_err(|e| decode_error(what, &e))?;
    obj.metadata.resource_version = None;
    obj.metadata.uid = None;
    let params = PostParams { dry_run: true, field_manager: Some(FIELD_MANAGER_SYNC.to_string()) };
    let what = format!("{what} (dry-run create)");
    match call(|| what, timeout, api.create(&params, &obj)).await {
        // Created (the DR object went meanwhile) or AlreadyExists: valid as a new object.
        Ok(_) => Ok(true),
        Err(e) if e.reason == "Conflict" => Ok(true),
        Err(e) if e.reason == "Invalid" => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces an object whole (HTTP PUT) with `desired`, as the sync field manager: fields `desired` lacks are removed.
/// Used once when dr-syncer adopts an object it did not create.
pub async fn replace(
    api: &Api<DynamicObject>,
    name: &str,
    desired: &Value,
    timeout: Duration,
    what: &str,
) -> Result<(), CallError> {
    let obj: DynamicObject = serde_json::from_value(desired.clone()).map_err(|e| decode_error(what, &e))?;
    let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER_SYNC.to_string()) };
    call(|| what.to_string(), timeout, api.replace(name, &params, &obj)).await.map(|_| ())
}

/// Deletes an object if it still has this uid (so a re-created object of the same name is never removed).
pub async fn delete(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    timeout: Duration,
    what: &str,
) -> Result<(), CallError> {
    delete_with_grace(api, name, uid, None, timeout, what).await
}

/// [`delete`] with a grace period (`Some(0)`: at once); an object already gone counts as deleted.
pub async fn delete_with_grace(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    grace_period_seconds: Option<u32>,
    timeout: Duration,
    what: &str,
) -> Result<(), CallError> {
    let params = DeleteParams {
        preconditions: (!uid.is_empty()).then(|| Preconditions { uid: Some(uid.to_string()), resource_version: None }),
        propagation_policy: Some(PropagationPolicy::Background),
        grace_period_seconds,
        ..DeleteParams::default()
    };
    match call(|| what.to_string(), timeout, api.delete(name, &params)).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Merge-patches an object; an object already gone is not an error.
pub async fn merge_patch_if_present(
    api: &Api<DynamicObject>,
    name: &str,
    patch: &Value,
    timeout: Duration,
    what: &str,
) -> Result<(), CallError> {
    let params = PatchParams::default();
    let merge = Patch::Merge(patch);
    match call(|| what.to_string(), timeout, api.patch(name, &params, &merge)).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Gets an object as JSON, `None` when it does not exist.
pub async fn get_opt(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
    what: &str,
) -> Result<Option<Value>, CallError> {
    let obj = call(|| what.to_string(), timeout, api.get_opt(name)).await?;
    obj.map(|o| serde_json::to_value(&o)).transpose().map_err(|e| decode_error(what, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status { code, message: format!("code {code}"), ..Default::default() }))
    }

    #[test]
    fn classify_maps_status_codes_to_categories() {
        let cases = [
            (404, Category::ResourceNotFound, "NotFound"),
            (422, Category::ValidationFailure, "Invalid"),
            (409, Category::Other, "Conflict"),
            (403, Category::Other, "Forbidden"),
            (503, Category::NetworkError, "ServerError"),
            (429, Category::NetworkError, "ServerError"),
            (418, Category::Other, "ApiError"),
        ];
        for (code, category, reason) in cases {
            let (c, r, m) = classify(&api_error(code));
            assert_eq!((c, r.as_str()), (category, reason), "{code}");
            assert_eq!(m, format!("code {code}"));
        }
    }

    #[tokio::test]
    async fn call_reports_timeout_as_network_error_when_slow() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), kube::Error>(())
        };
        let err = call(|| "get x".to_string(), Duration::from_millis(10), slow).await.unwrap_err();
        assert_eq!((err.category, err.reason.as_str()), (Category::NetworkError, "Timeout"));
    }
}
