//! Shared source watches: one kube-runtime watch per kind per source cluster (metadata only), started by the first
//! subscriber and stopped when the last one leaves. Events are routed to the subscribers interested in the object's
//! namespace. Only namespaces are cached (a reflector store, without managed fields): their labels decide which
//! namespaces a selector covers. Other kinds keep nothing in memory: a change names its object, and the subscriber
//! reads it from the API server when it syncs.
//!
//! Each subscriber's queue is bounded ([`Inbox`]): when it is full the event is dropped and the inbox is marked
//! overflowed, and the subscriber resyncs everything instead of growing without limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, Receiver, Sender};

use crate::reconcile::metrics::ControllerMetrics;

/// One shared watch: a kind (group, version, plural) on one source cluster connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchKey {
    /// The source cluster connection (`namespace/name@server#generation` of the RemoteCluster's client).
    pub cluster: String,
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
}

impl WatchKey {
    /// `plural.group` for metric labels.
    pub fn resource(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// Whether the watch keeps a store of what it sees (namespaces only).
    pub fn cached(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }
}

/// What a subscriber hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The object was created or changed.
    Upserted {
        /// Namespace ("" for cluster-scoped kinds).
        namespace: String,
        /// The object's name, read again from the API server when it is synced.
        name: String,
    },
    /// The object was deleted.
    Deleted {
        /// Namespace ("" for cluster-scoped kinds).
        namespace: String,
        /// The object's name, read again from the API server when it is synced.
        name: String,
    },
    /// The watch works again after an interruption (listed everything again, or resumed): events may have been
    /// missed, resync.
    Relisted,
    /// The watch failed and is backing off before it restarts.
    Failed(String),
}

/// One event as a subscriber receives it: the watch it came from, the change and when it was received.
pub type Delivery = (WatchKey, Change, std::time::Instant);

/// Where a subscriber's events go: a bounded queue, and a mark set when an event was dropped because the queue was
/// full (the subscriber must then resync everything, since it no longer knows every change).
#[derive(Clone)]
pub struct Inbox {
    tx: Sender<Delivery>,
    overflowed: Arc<AtomicBool>,
}

impl Inbox {
    /// A queue of at most `capacity` events (at least one) and its receiving end.
    pub fn bounded(capacity: usize) -> (Inbox, Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Inbox { tx, overflowed: Arc::default() }, rx)
    }

    /// Whether events were dropped since the last call (and clears the mark).
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::SeqCst)
    }

    /// Queues `delivery`, or marks the inbox overflowed when the queue is full.
    fn deliver(&self, delivery: Delivery) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(delivery) {
            self.overflowed.store(true, Ordering::SeqCst);
        }
    }
}

/// Which events a subscriber wants.
pub type Interest = Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct Subscriber {
    interest: Interest,
    key_tag: WatchKey,
    inbox: Inbox,
}

struct Entry {
    subscribers: Arc<Mutex<HashMap<u64, Subscriber>>>,
    task: tokio::task::JoinHandle<()>,
    store: Option<Store<PartialObjectMeta<DynamicObject>>>,
}

/// The shared watches of the controller.
#[derive(Clone)]
pub struct WatchHub {
    entries: Arc<Mutex<HashMap<WatchKey, Entry>>>,
    next_id: Arc<AtomicU64>,
    metrics: ControllerMetrics,
}

/// A subscription; dropping it unsubscribes (and stops the watch when it was the last subscriber).
pub struct Subscription {
    hub: WatchHub,
    key: WatchKey,
    id: u64,
}

impl Subscription {
    /// The reflector's store of the watched kind (metadata only); `None` unless the kind is [cached](WatchKey::cached).
    pub fn store(&self) -> Option<Store<PartialObjectMeta<DynamicObject>>> {
        self.hub.lock().get(&self.key).and_then(|e| e.store.clone())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut entries = self.hub.lock();
        let empty = entries.get(&self.key).is_some_and(|e| {
            let mut subs = e.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subs.remove(&self.id);
            subs.is_empty()
        });
        if empty && let Some(entry) = entries.remove(&self.key) {
            entry.task.abort();
            self.hub.metrics.set_watches(entries.len());
            tracing::debug!(cluster = %self.key.cluster, resource = %self.key.resource(), "source watch stopped");
        }
    }
}

impl WatchHub {
    /// An empty hub.
    pub fn new(metrics: ControllerMetrics) -> WatchHub {
        WatchHub { entries: Arc::default(), next_id: Arc::new(AtomicU64::new(1)), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WatchKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to `key` (watching it with `client` if nobody does yet). Events pass `interest` (called with the
    /// object's namespace) and arrive in `inbox` with the time they were received.
    pub fn subscribe(
        &self,
        key: WatchKey,
        client: &Client,
        resource: &ApiResource,
        interest: Interest,
        inbox: Inbox,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        let subscriber = Subscriber { interest, key_tag: key.clone(), inbox };
        if let Some(entry) = entries.get(&key) {
            entry.subscribers.lock().unwrap_or_else(|p| p.into_inner()).insert(id, subscriber);
        } else {
            let subscribers = Arc::new(Mutex::new(HashMap::from([(id, subscriber)])));
            let writer = key
                .cached()
                .then(|| reflector::store::Writer::<PartialObjectMeta<DynamicObject>>::new(resource.clone()));
            let store = writer.as_ref().map(|w| w.as_reader());
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), resource);
            let task = tokio::spawn(run(key.clone(), api, writer, subscribers.clone(), self.metrics.clone()));
            entries.insert(key.clone(), Entry { subscribers, task, store });
            self.metrics.set_watches(entries.len());
            tracing::debug!(cluster = %key.cluster, resource = %key.resource(), "source watch started");
        }
        Subscription { hub: self.clone(), key, id }
    }
}

fn send(subscribers: &Mutex<HashMap<u64, Subscriber>>, namespace: Option<&str>, change: &Change) {
    let now = std::time::Instant::now();
    let subs = subscribers.lock().unwrap_or_else(|p| p.into_inner());
    for s in subs.values() {
        if namespace.is_none_or(|ns| (s.interest)(ns)) {
            s.inbox.deliver((s.key_tag.clone(), change.clone(), now));
        }
    }
}

/// Runs one watch until aborted: errors back off (kube-runtime's default backoff) and are counted as restarts.
async fn run(
    key: WatchKey,
    api: Api<PartialObjectMeta<DynamicObject>>,
    writer: Option<reflector::store::Writer<PartialObjectMeta<DynamicObject>>>,
    subscribers: Arc<Mutex<HashMap<u64, Subscriber>>>,
    metrics: ControllerMetrics,
) {
    let stream = watch_stream(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut PartialObjectMeta<DynamicObject>| o.managed_fields_mut().clear());
    let mut stream = match writer {
        Some(writer) => reflector::reflector(writer, stream).boxed(),
        None => stream.boxed(),
    };
    let mut listed_once = false;
    let mut failing = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => {
                if failing && matches!(event, Event::Apply(_) | Event::Delete(_)) {
                    // The watch resumed from where it was: tell subscribers so they resync once.
                    failing = false;
                    send(&subscribers, None, &Change::Relisted);
                }
                event
            }
            Err(e) => {
                metrics.watch_restarted(key.cluster.split('#').next().unwrap_or_default(), &key.resource());
                tracing::warn!(cluster = %key.cluster, resource = %key.resource(), error = %e, "source watch failed; backing off");
                failing = true;
                send(&subscribers, None, &Change::Failed(e.to_string()));
                continue;
            }
        };
        match event {
            Event::Apply(o) => {
                let (namespace, name) = (o.namespace().unwrap_or_default(), o.name_any());
                send(&subscribers, Some(&namespace), &Change::Upserted { namespace: namespace.clone(), name });
            }
            Event::Delete(o) => {
                let (namespace, name) = (o.namespace().unwrap_or_default(), o.name_any());
                send(&subscribers, Some(&namespace), &Change::Deleted { namespace: namespace.clone(), name });
            }
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => {
                if listed_once || failing {
                    send(&subscribers, None, &Change::Relisted);
                }
                listed_once = true;
                failing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(name: &str) -> Delivery {
        let key =
            WatchKey { cluster: "c".into(), group: String::new(), version: "v1".into(), plural: "configmaps".into() };
        (key, Change::Upserted { namespace: "ns".into(), name: name.into() }, std::time::Instant::now())
    }

    #[test]
    fn inbox_drops_and_marks_overflow_when_its_queue_is_full() {
        let (inbox, mut rx) = Inbox::bounded(2);
        inbox.deliver(delivery("a"));
        inbox.deliver(delivery("b"));
        assert!(!inbox.take_overflow(), "two events fit");
        inbox.deliver(delivery("c"));
        assert!(inbox.take_overflow(), "the third is dropped and marked");
        assert!(!inbox.take_overflow(), "the mark is cleared once taken");
        let names: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(_, c, _)| match c {
                Change::Upserted { name, .. } => name,
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
