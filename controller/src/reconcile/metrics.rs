//! Metrics of the reconcilers and syncs. Series of a mapping or cluster are removed when it is deleted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use dr_syncer_api::namespace_mapping::KindCounts;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::error::Error;
use crate::metrics::PREFIX;

/// Object outcomes counted per kind.
pub const OUTCOMES: [&str; 6] = ["applied", "unchanged", "pruned", "failed", "conflict", "immutable"];

/// Kinds with object series, per (namespace, mapping), so the series can be removed with the mapping.
type KindsSeen = HashMap<(String, String), BTreeSet<String>>;

/// Metrics of the three reconcilers.
#[derive(Clone)]
pub struct ControllerMetrics {
    syncs: IntCounterVec,
    duration: HistogramVec,
    objects: IntCounterVec,
    last_success: GaugeVec,
    running: IntGaugeVec,
    cluster_healthy: IntGaugeVec,
    mapping_connected: IntGaugeVec,
    reconcile_errors: IntCounterVec,
    watches: IntGauge,
    watch_restarts: IntCounterVec,
    watch_overflows: IntCounter,
    workers: IntGauge,
    propagation: HistogramVec,
    kinds_seen: Arc<Mutex<KindsSeen>>,
}

fn name(suffix: &str) -> String {
    format!("{PREFIX}_{suffix}")
}

impl ControllerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<ControllerMetrics, Error> {
        let m = ControllerMetrics {
            syncs: IntCounterVec::new(
                Opts::new(name("syncs_total"), "Syncs of a NamespaceMapping by result: success (every object in sync), partial (some objects failed or conflicted) or failed (the sync could not run)."),
                &["namespace", "mapping", "result"],
            )
            .map_err(Error::Metrics)?,
            duration: HistogramVec::new(
                HistogramOpts::new(name("sync_duration_seconds"), "Wall time of NamespaceMapping syncs.")
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
                &["namespace", "mapping"],
            )
            .map_err(Error::Metrics)?,
            objects: IntCounterVec::new(
                Opts::new(name("sync_objects_total"), "Objects handled by syncs, by kind and outcome (applied, unchanged, pruned, failed, conflict, immutable)."),
                &["namespace", "mapping", "kind", "outcome"],
            )
            .map_err(Error::Metrics)?,
            last_success: GaugeVec::new(
                Opts::new(name("last_successful_sync_timestamp_seconds"), "Unix time when the mapping last finished a sync with every object in sync: the recovery point."),
                &["namespace", "mapping"],
            )
            .map_err(Error::Metrics)?,
            running: IntGaugeVec::new(
                Opts::new(name("sync_running"), "1 while a sync of the mapping is in progress."),
                &["namespace", "mapping"],
            )
            .map_err(Error::Metrics)?,
            cluster_healthy: IntGaugeVec::new(
                Opts::new(name("remote_cluster_healthy"), "1 while the RemoteCluster's API server answers with its kubeconfig."),
                &["namespace", "name"],
            )
            .map_err(Error::Metrics)?,
            mapping_connected: IntGaugeVec::new(
                Opts::new(name("cluster_mapping_connected"), "1 while both clusters of the ClusterMapping are reachable."),
                &["namespace", "name"],
            )
            .map_err(Error::Metrics)?,
            reconcile_errors: IntCounterVec::new(
                Opts::new(name("reconcile_errors_total"), "Reconciles that failed and were retried, by controller and reason."),
                &["controller", "reason"],
            )
            .map_err(Error::Metrics)?,
            watches: IntGauge::new(name("watches"), "Source watches running (one per kind per source cluster, shared by the Continuous mappings that need it).")
                .map_err(Error::Metrics)?,
            watch_restarts: IntCounterVec::new(
                Opts::new(name("watch_restarts_total"), "Times a source watch failed and restarted after a backoff, by source cluster and resource."),
                &["cluster", "resource"],
            )
            .map_err(Error::Metrics)?,
            watch_overflows: IntCounter::new(
                name("watch_queue_overflows_total"),
                "Times a Continuous mapping's queue of source changes was full: changes were dropped and the mapping resynced everything instead.",
            )
            .map_err(Error::Metrics)?,
            workers: IntGauge::new(name("continuous_workers"), "Continuous mappings whose watch-driven sync is running.")
                .map_err(Error::Metrics)?,
            propagation: HistogramVec::new(
                HistogramOpts::new(name("propagation_seconds"), "Continuous mode: time from the controller receiving a source change to the change being applied in the DR cluster.")
                    .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["namespace", "mapping"],
            )
            .map_err(Error::Metrics)?,
            kinds_seen: Arc::default(),
        };
        registry.register(Box::new(m.watches.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.watch_restarts.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.watch_overflows.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.workers.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.propagation.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.syncs.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.duration.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.objects.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.last_success.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.running.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.cluster_healthy.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.mapping_connected.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.reconcile_errors.clone())).map_err(Error::Metrics)?;
        Ok(m)
    }

    /// Marks a sync of `namespace/mapping` as started (`true`) or finished.
    pub fn set_running(&self, namespace: &str, mapping: &str, running: bool) {
        self.running.with_label_values(&[namespace, mapping]).set(i64::from(running));
    }

    /// Records a finished sync.
    pub fn record_sync(&self, namespace: &str, mapping: &str, result: &str, seconds: f64, kinds: &[KindCounts]) {
        self.syncs.with_label_values(&[namespace, mapping, result]).inc();
        self.duration.with_label_values(&[namespace, mapping]).observe(seconds);
        self.record_objects(namespace, mapping, kinds);
    }

    /// Sets the recovery-point timestamp of a mapping.
    pub fn set_last_success(&self, namespace: &str, mapping: &str, unix_seconds: f64) {
        self.last_success.with_label_values(&[namespace, mapping]).set(unix_seconds);
    }

    /// Removes every series of a deleted mapping.
    pub fn forget_mapping(&self, namespace: &str, mapping: &str) {
        for result in ["success", "partial", "failed"] {
            let _ = self.syncs.remove_label_values(&[namespace, mapping, result]);
        }
        let _ = self.duration.remove_label_values(&[namespace, mapping]);
        let _ = self.last_success.remove_label_values(&[namespace, mapping]);
        let _ = self.running.remove_label_values(&[namespace, mapping]);
        let _ = self.propagation.remove_label_values(&[namespace, mapping]);
        let kinds =
            self.kinds_seen.lock().ok().and_then(|mut s| s.remove(&(namespace.to_string(), mapping.to_string())));
        for kind in kinds.unwrap_or_default() {
            for outcome in OUTCOMES {
                let _ = self.objects.remove_label_values(&[namespace, mapping, &kind, outcome]);
            }
        }
    }

    /// Sets the health of a RemoteCluster; `None` removes its series.
    pub fn set_cluster_healthy(&self, namespace: &str, name: &str, healthy: Option<bool>) {
        match healthy {
            Some(h) => self.cluster_healthy.with_label_values(&[namespace, name]).set(i64::from(h)),
            None => {
                let _ = self.cluster_healthy.remove_label_values(&[namespace, name]);
            }
        }
    }

    /// Sets the connectivity of a ClusterMapping; `None` removes its series.
    pub fn set_mapping_connected(&self, namespace: &str, name: &str, connected: Option<bool>) {
        match connected {
            Some(c) => self.mapping_connected.with_label_values(&[namespace, name]).set(i64::from(c)),
            None => {
                let _ = self.mapping_connected.remove_label_values(&[namespace, name]);
            }
        }
    }

    /// Removes the health series of RemoteClusters `keep` (given namespace and name) says are gone.
    pub fn retain_clusters(&self, keep: impl Fn(&str, &str) -> bool) {
        retain(&self.cluster_healthy, keep);
    }

    /// Removes the connectivity series of ClusterMappings `keep` (given namespace and name) says are gone.
    pub fn retain_mappings(&self, keep: impl Fn(&str, &str) -> bool) {
        retain(&self.mapping_connected, keep);
    }

    /// Sets the number of running source watches.
    pub fn set_watches(&self, n: usize) {
        self.watches.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a source watch restart.
    pub fn watch_restarted(&self, cluster: &str, resource: &str) {
        self.watch_restarts.with_label_values(&[cluster, resource]).inc();
    }

    /// Counts a Continuous mapping's change queue overflowing (a full resync follows).
    pub fn watch_queue_overflowed(&self) {
        self.watch_overflows.inc();
    }

    /// Counts a Continuous worker starting (`+1`) or stopping (`-1`).
    pub fn worker_delta(&self, delta: i64) {
        self.workers.add(delta);
    }

    /// Records the propagation time of one source change.
    pub fn observe_propagation(&self, namespace: &str, mapping: &str, seconds: f64) {
        self.propagation.with_label_values(&[namespace, mapping]).observe(seconds);
    }

    /// Adds object outcomes (of a full sync, or of watch-driven syncs, which count no sync).
    pub fn record_objects(&self, namespace: &str, mapping: &str, kinds: &[KindCounts]) {
        for k in kinds {
            let values = [k.applied, k.unchanged, k.pruned, k.failed, k.conflicts, k.immutable];
            for (outcome, n) in OUTCOMES.iter().zip(values) {
                self.objects.with_label_values(&[namespace, mapping, &k.kind, outcome]).inc_by(n.max(0) as u64);
            }
        }
        if let Ok(mut seen) = self.kinds_seen.lock() {
            seen.entry((namespace.to_string(), mapping.to_string()))
                .or_default()
                .extend(kinds.iter().map(|k| k.kind.clone()));
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_error(&self, controller: &str, reason: &str) {
        self.reconcile_errors.with_label_values(&[controller, reason]).inc();
    }
}

/// Removes the series of `gauges` (labelled namespace, name) whose object `keep` says is gone.
fn retain(gauges: &IntGaugeVec, keep: impl Fn(&str, &str) -> bool) {
    use prometheus::core::Collector;
    for family in gauges.collect() {
        for metric in family.get_metric() {
            let label = |n: &str| metric.get_label().iter().find(|l| l.name() == n).map(|l| l.value().to_string());
            if let (Some(namespace), Some(name)) = (label("namespace"), label("name"))
                && !keep(&namespace, &name)
            {
                let _ = gauges.remove_label_values(&[&namespace, &name]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_mapping_removes_every_series_of_the_mapping() {
        let registry = Registry::new();
        let m = ControllerMetrics::register(&registry).unwrap();
        let kinds = [KindCounts { kind: "ConfigMap".into(), applied: 2, ..KindCounts::default() }];
        m.record_sync("ns", "a", "success", 0.5, &kinds);
        m.record_sync("ns", "b", "success", 0.5, &kinds);
        m.set_last_success("ns", "a", 1.0);
        m.set_running("ns", "a", false);
        m.forget_mapping("ns", "a");
        let text = {
            let mut buf = Vec::new();
            prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut buf).unwrap();
            String::from_utf8(buf).unwrap()
        };
        assert!(!text.contains("mapping=\"a\""), "{text}");
        assert!(text.contains("mapping=\"b\""), "{text}");
    }
}
