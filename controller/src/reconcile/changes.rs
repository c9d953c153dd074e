//! What wakes a reconciler: a change someone made to an object — its spec (generation), labels, annotations,
//! finalizers or deletion — never the status the reconcilers write themselves. Without this filter every status
//! write would come back as a watch event and start the next reconcile at once, so a failing object would re-check
//! itself many times a second instead of backing off, and a heartbeat would wake everything that refers to it.

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::{Predicate, PredicateConfig, predicates};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Hash of the deletion state, so marking an object for deletion passes the filter.
fn deleting<K: Resource>(obj: &K) -> Option<u64> {
    Some(u64::from(obj.meta().deletion_timestamp.is_some()))
}

/// The changes that wake a reconciler (see the module documentation).
pub fn made_by_users<K: Resource + 'static>() -> impl Predicate<K> + 'static {
    predicates::generation
        .combine(predicates::labels)
        .combine(predicates::annotations)
        .combine(predicates::finalizers)
        .combine(deleting)
}

/// A watch of `api` that keeps `store` complete (every event, status changes too) but passes an object on only when
/// [`made_by_users`] says it changed: the trigger of a controller and its store.
pub fn primary<K>(api: Api<K>) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(made_by_users(), PredicateConfig::default());
    (reader, stream)
}

/// A watch of objects another controller's objects refer to, passing an object on only when [`made_by_users`] says
/// it changed (a RemoteCluster's heartbeat wakes no mapping).
pub fn related<K>(api: Api<K>) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .predicate_filter(made_by_users(), PredicateConfig::default())
        .boxed()
}
