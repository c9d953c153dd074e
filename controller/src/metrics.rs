//! Prometheus metrics served on `/metrics`.

use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::Error;

/// Prefix of every dr-syncer metric.
pub const PREFIX: &str = "dr_syncer";

/// The controller's metrics, in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// 1 while the controller is ready (API reachable, CRDs established).
    pub ready: IntGauge,
    /// 1 per readiness check that currently passes, 0 when it fails; label `check` (`api` or a CRD name).
    pub readiness_check: IntGaugeVec,
    /// 1 while this replica runs the reconcilers (it holds the leader Lease, or leader election is off).
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates the registry with build information and process metrics.
    pub fn new() -> Result<Metrics, Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(format!("{PREFIX}_build_info"), "Build information of the running controller; always 1."),
            &["version", "git_commit", "rustc_version"],
        )
        .map_err(Error::Metrics)?;
        build_info
            .with_label_values(&[crate::build::VERSION, crate::build::GIT_COMMIT, crate::build::RUSTC_VERSION])
            .set(1);
        let ready = IntGauge::new(
            format!("{PREFIX}_ready"),
            "1 while the controller is ready: its API server answers and the dr-syncer CRDs are established.",
        )
        .map_err(Error::Metrics)?;
        let readiness_check = IntGaugeVec::new(
            Opts::new(format!("{PREFIX}_readiness_check"), "1 while a readiness check passes, 0 while it fails."),
            &["check"],
        )
        .map_err(Error::Metrics)?;
        let leader = IntGauge::new(
            format!("{PREFIX}_leader"),
            "1 while this replica runs the reconcilers: it holds the leader Lease, or leader election is off.",
        )
        .map_err(Error::Metrics)?;
        registry.register(Box::new(leader.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(build_info)).map_err(Error::Metrics)?;
        registry.register(Box::new(ready.clone())).map_err(Error::Metrics)?;
        registry.register(Box::new(readiness_check.clone())).map_err(Error::Metrics)?;
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .map_err(Error::Metrics)?;
        Ok(Metrics { registry, ready, readiness_check, leader })
    }

    /// The registry, for components that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_includes_build_info_and_process_metrics() {
        let m = Metrics::new().unwrap();
        m.ready.set(1);
        let text = m.render();
        assert!(text.contains("dr_syncer_build_info{"), "{text}");
        assert!(text.contains("dr_syncer_ready 1"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
