//! Metrics of PVC data copies. Labels are bounded: the mapping, and the PVC only where the recovery point needs it;
//! every series of a mapping (and of a PVC no longer copied) is removed with it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::error::Error;
use crate::metrics::PREFIX;

/// Results counted by `data_syncs_total`.
pub const RESULTS: [&str; 3] = ["success", "failed", "permanent"];

type Seen = HashMap<(String, String), (BTreeSet<(String, String)>, BTreeSet<String>)>;

/// Metrics of the data copies.
#[derive(Clone)]
pub struct DataMetrics {
    syncs: IntCounterVec,
    failures: IntCounterVec,
    bytes: IntCounterVec,
    files: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    queued: IntGaugeVec,
    last_success: GaugeVec,
    seen: Arc<Mutex<Seen>>,
}

fn name(suffix: &str) -> String {
    format!("{PREFIX}_{suffix}")
}

fn counter(suffix: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, Error> {
    IntCounterVec::new(Opts::new(name(suffix), help), labels).map_err(Error::Metrics)
}

fn gauge(suffix: &str, help: &str) -> Result<IntGaugeVec, Error> {
    IntGaugeVec::new(Opts::new(name(suffix), help), &["namespace", "mapping"]).map_err(Error::Metrics)
}

impl DataMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<DataMetrics, Error> {
        let mapping = ["namespace", "mapping"];
        let m = DataMetrics {
            syncs: counter(
                "data_syncs_total",
                "PVC data copies by result: success, failed (retried) or permanent (not retried until something changes).",
                &["namespace", "mapping", "result"],
            )?,
            failures: counter(
                "data_sync_failures_total",
                "Failed PVC data copies by reason (NoSpace, AuthRefused, Network, Timeout, ...).",
                &["namespace", "mapping", "reason"],
            )?,
            bytes: counter("data_bytes_transferred_total", "Bytes of file data sent by PVC data copies.", &mapping)?,
            files: counter("data_files_transferred_total", "Regular files sent by PVC data copies.", &mapping)?,
            duration: HistogramVec::new(
                HistogramOpts::new(name("data_sync_duration_seconds"), "Wall time of PVC data copies that succeeded.")
                    .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0]),
                &mapping,
            )
            .map_err(Error::Metrics)?,
            in_flight: gauge("data_syncs_in_flight", "PVC data copies running now.")?,
            queued: gauge("data_syncs_queued", "PVC data copies waiting for a free slot.")?,
            last_success: GaugeVec::new(
                Opts::new(
                    name("data_last_successful_sync_timestamp_seconds"),
                    "Unix time when the PVC's data copy last succeeded: the data recovery point.",
                ),
                &["namespace", "mapping", "pvc_namespace", "pvc"],
            )
            .map_err(Error::Metrics)?,
            seen: Arc::default(),
        };
        registry.register(Box::new(m.syncs.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.failures.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.bytes.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.files.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.duration.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.in_flight.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.queued.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(m.last_success.clone())).map_err(Error::Metrics)?;
        Ok(m)
    }

    fn remember(&self, mapping: (&str, &str), pvc: Option<(&str, &str)>, reason: Option<&str>) {
        if let Ok(mut seen) = self.seen.lock() {
            let entry = seen.entry((mapping.0.to_string(), mapping.1.to_string())).or_default();
            if let Some((ns, name)) = pvc {
                entry.0.insert((ns.to_string(), name.to_string()));
            }
            if let Some(reason) = reason {
                entry.1.insert(reason.to_string());
            }
        }
    }

    /// Records a successful copy of `pvc`, ended at `unix_seconds`.
    pub fn succeeded(
        &self,
        mapping: (&str, &str),
        pvc: (&str, &str),
        bytes: u64,
        files: u64,
        seconds: f64,
        unix_seconds: f64,
    ) {
        let (ns, m) = mapping;
        self.remember(mapping, Some(pvc), None);
        self.syncs.with_label_values(&[ns, m, "success"]).inc();
        self.bytes.with_label_values(&[ns, m]).inc_by(bytes);
        self.files.with_label_values(&[ns, m]).inc_by(files);
        self.duration.with_label_values(&[ns, m]).observe(seconds);
        self.last_success.with_label_values(&[ns, m, pvc.0, pvc.1]).set(unix_seconds);
    }

    /// Records a failed copy.
    pub fn failed(&self, mapping: (&str, &str), reason: &str, permanent: bool) {
        let (ns, m) = mapping;
        self.remember(mapping, None, Some(reason));
        self.syncs.with_label_values(&[ns, m, if permanent { "permanent" } else { "failed" }]).inc();
        self.failures.with_label_values(&[ns, m, reason]).inc();
    }

    /// Sets the running and waiting copies of a mapping.
    pub fn set_load(&self, mapping: (&str, &str), in_flight: i64, queued: i64) {
        self.in_flight.with_label_values(&[mapping.0, mapping.1]).set(in_flight);
        self.queued.with_label_values(&[mapping.0, mapping.1]).set(queued);
    }

    /// Removes the recovery point of a PVC that is no longer copied.
    pub fn forget_pvc(&self, mapping: (&str, &str), pvc: (&str, &str)) {
        let _ = self.last_success.remove_label_values(&[mapping.0, mapping.1, pvc.0, pvc.1]);
        if let Ok(mut seen) = self.seen.lock()
            && let Some(entry) = seen.get_mut(&(mapping.0.to_string(), mapping.1.to_string()))
        {
            entry.0.remove(&(pvc.0.to_string(), pvc.1.to_string()));
        }
    }

    /// Removes every series of a deleted mapping.
    pub fn forget_mapping(&self, mapping: (&str, &str)) {
        let (ns, m) = mapping;
        for result in RESULTS {
            let _ = self.syncs.remove_label_values(&[ns, m, result]);
        }
        for vec in [&self.bytes, &self.files] {
            let _ = vec.remove_label_values(&[ns, m]);
        }
        let _ = self.duration.remove_label_values(&[ns, m]);
        let _ = self.in_flight.remove_label_values(&[ns, m]);
        let _ = self.queued.remove_label_values(&[ns, m]);
        let seen = self.seen.lock().ok().and_then(|mut s| s.remove(&(ns.to_string(), m.to_string())));
        let (pvcs, reasons) = seen.unwrap_or_default();
        for (pvc_ns, pvc) in pvcs {
            let _ = self.last_success.remove_label_values(&[ns, m, &pvc_ns, &pvc]);
        }
        for reason in reasons {
            let _ = self.failures.remove_label_values(&[ns, m, &reason]);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn forget_mapping_removes_every_series_when_the_mapping_goes() {
        let registry = Registry::new();
        let metrics = DataMetrics::register(&registry).unwrap();
        metrics.succeeded(("ops", "shop"), ("shop", "data"), 10, 2, 1.5, 1.8e9);
        metrics.failed(("ops", "shop"), "NoSpace", true);
        metrics.set_load(("ops", "shop"), 1, 2);
        metrics.succeeded(("ops", "other"), ("x", "y"), 1, 1, 1.0, 1.8e9);
        metrics.forget_mapping(("ops", "shop"));
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(!text.contains("mapping=\"shop\""), "{text}");
        assert!(text.contains("mapping=\"other\""));
    }
}
