//! Which controllers have finished the initial list of their watches ("caches synced"), for `/readyz`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::Store;

/// How often a pending cache is checked again.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Named flags, one per watched kind, set once that kind's reflector store holds its first full list.
#[derive(Clone, Default)]
pub struct Caches(Arc<Mutex<BTreeMap<&'static str, bool>>>);

impl Caches {
    /// Registers `name` as not synced and marks it synced once `store` is ready (in a background task).
    pub fn track<K>(&self, name: &'static str, store: Store<K>)
    where
        K: kube::Resource + Clone + Send + Sync + 'static,
        K::DynamicType: Send + Sync,
        K::DynamicType: std::hash::Hash + Eq + Clone,
    {
        self.set(name, false);
        let caches = self.clone();
        // Polled in rounds: in kube-runtime 5 a store's readiness wakes only its most recent waiter, and the
        // controller itself waits on the same store, so a single long wait here may never be woken.
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(RECHECK, store.wait_until_ready()).await {
                    Ok(Ok(())) => {
                        caches.set(name, true);
                        tracing::debug!(cache = name, "cache synced");
                        return;
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
        });
    }

    fn set(&self, name: &'static str, synced: bool) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(name, synced);
        }
    }

    /// Registered names whose cache has not synced yet; `None` when nothing is registered.
    pub fn pending(&self) -> Option<Vec<&'static str>> {
        let m = self.0.lock().ok()?;
        if m.is_empty() {
            return None;
        }
        Some(m.iter().filter(|(_, synced)| !**synced).map(|(name, _)| *name).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lists_unsynced_names_when_some_are_registered() {
        let c = Caches::default();
        assert_eq!(c.pending(), None);
        c.set("a", false);
        c.set("b", true);
        assert_eq!(c.pending(), Some(vec!["a"]));
        c.set("a", true);
        assert_eq!(c.pending(), Some(vec![]));
    }
}
