//! Writing the status subresource of dr-syncer resources with server-side apply.

use std::fmt::Debug;
use std::time::Duration;

use dr_syncer_api::constants::FIELD_MANAGER_STATUS;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, with_timeout};

/// Applies `status` as the whole status of `obj`, owned by the status field manager. Returns the updated object.
pub async fn apply<K, S>(api: &Api<K>, obj: &K, status: &S, timeout: Duration) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any()},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER_STATUS).force();
    let name = obj.name_any();
    let what = format!("update status of {} {}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), name);
    with_timeout(what, timeout, api.patch_status(&name, &params, &Patch::Apply(&body))).await
}
