//! Readiness: is the controller's API server reachable, are the dr-syncer CRDs installed and Established, and —
//! on the replica that leads — have the controllers' watches finished their initial list (caches synced)? A standby
//! replica is ready when the API and CRDs are: it can take over at once.
//!
//! A background task runs the checks (every second while not ready, every `interval` while ready) and publishes a
//! [`Report`]; `/readyz` serves the latest report and `/healthz` fails when the task stops making progress.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::caches::Caches;
use crate::error::with_timeout;
use crate::leader::{Role, RoleCell};
use crate::metrics::Metrics;

/// Name of the API-reachability check.
pub const CHECK_API: &str = "api";
/// Name of the leader-election / caches check.
pub const CHECK_CONTROLLERS: &str = "controllers";

/// This process's own state that readiness reports on.
#[derive(Clone)]
pub struct Local {
    /// Leader, standby or single replica.
    pub role: RoleCell,
    /// Initial-list state of the controllers' watches.
    pub caches: Caches,
}

/// The controllers check: a standby passes; a leader (or single replica) passes once every cache synced.
pub fn controllers_check(role: &Role, pending: Option<Vec<&'static str>>) -> Check {
    let (ok, detail) = match (role, pending) {
        (Role::Standby, _) => (true, "standby: waiting for the leader Lease".to_string()),
        (_, None) => (false, "controllers not started yet".to_string()),
        (_, Some(p)) if p.is_empty() => (true, format!("{} and caches synced", role_name(role))),
        (_, Some(p)) => (false, format!("waiting for the initial list of {}", p.join(", "))),
    };
    Check { name: CHECK_CONTROLLERS.into(), ok, detail }
}

fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Single => "running",
        Role::Standby => "standby",
        Role::Leader => "leading",
    }
}
/// Interval of checks while not ready.
const NOT_READY_INTERVAL: Duration = Duration::from_secs(1);

/// Outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `api`, or the CRD name.
    pub name: String,
    /// The check passed.
    pub ok: bool,
    /// Why it failed, or what passed.
    pub detail: String,
}

/// The latest outcome of every check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One entry per check, in a stable order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Ready when checks have run and all passed.
    pub fn ready(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// `/readyz` body: `ok` when ready; otherwise (or when `verbose`) one `[+]`/`[-]` line per check.
    pub fn render(&self, verbose: bool) -> String {
        if self.checks.is_empty() {
            return "[-]checks have not run yet\nreadyz check failed\n".to_string();
        }
        let ready = self.ready();
        if ready && !verbose {
            return "ok\n".to_string();
        }
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { '+' } else { '-' };
            out.push_str(&format!("[{mark}]{} {}\n", c.name, c.detail));
        }
        out.push_str(if ready { "readyz check passed\n" } else { "readyz check failed\n" });
        out
    }
}

/// Evaluates a CRD as read from the API server (`None` when it does not exist).
pub fn crd_check(name: &str, crd: Option<&CustomResourceDefinition>) -> Check {
    let fail = |detail: String| Check { name: name.to_string(), ok: false, detail };
    let Some(crd) = crd else {
        return fail(
            "not installed (install the chart's CRDs: kubectl apply --server-side -f charts/dr-syncer/crds/)".into(),
        );
    };
    let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref()).cloned().unwrap_or_default();
    let status_of = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = status_of("NamesAccepted").filter(|c| c.status == "False") {
        return fail(format!("names not accepted: {}", c.message.clone().unwrap_or_default()));
    }
    match status_of("Established") {
        Some(c) if c.status == "True" => Check { name: name.to_string(), ok: true, detail: "established".into() },
        Some(c) => fail(format!("not established: {}", c.message.clone().unwrap_or_default())),
        None => fail("not established yet".into()),
    }
}

/// Shared readiness state.
#[derive(Clone)]
pub struct Readiness {
    report: Arc<RwLock<Report>>,
    progress: Arc<RwLock<Instant>>,
    local: Option<Local>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness { report: Arc::default(), progress: Arc::new(RwLock::new(Instant::now())), local: None }
    }
}

impl Readiness {
    /// Readiness that also reports this process's role and caches (evaluated at every read, so a replica that
    /// just became leader is not ready until its caches synced).
    pub fn with_local(local: Local) -> Self {
        Readiness { local: Some(local), ..Readiness::default() }
    }

    /// The latest report of the API and CRD checks, plus the current controllers check.
    pub fn report(&self) -> Report {
        let mut report = self.report.read().map(|r| r.clone()).unwrap_or_default();
        if let Some(local) = &self.local
            && !report.checks.is_empty()
        {
            report.checks.push(controllers_check(&local.role.get(), local.caches.pending()));
        }
        report
    }

    /// Time since the checker last finished a round (or since start).
    pub fn since_progress(&self) -> Duration {
        self.progress.read().map(|p| p.elapsed()).unwrap_or(Duration::MAX)
    }

    fn publish(&self, report: Report) {
        if let Ok(mut r) = self.report.write() {
            *r = report;
        }
        if let Ok(mut p) = self.progress.write() {
            *p = Instant::now();
        }
    }
}

/// Settings of the checker.
#[derive(Clone, Debug)]
pub struct CheckerConfig {
    /// CRDs that must be Established.
    pub crd_names: Vec<String>,
    /// Time allowed per API request.
    pub api_timeout: Duration,
    /// Time between rounds while ready.
    pub interval: Duration,
}

impl CheckerConfig {
    /// How long `/healthz` tolerates no finished round before reporting the checker stuck.
    pub fn stall_limit(&self) -> Duration {
        (self.interval + self.api_timeout * (1 + self.crd_names.len() as u32)) * 3
    }
}

/// Runs one round of the API and CRD checks.
pub async fn probe(client: &Client, cfg: &CheckerConfig) -> Report {
    let mut checks = Vec::with_capacity(cfg.crd_names.len() + 1);
    match with_timeout("get /version", cfg.api_timeout, client.apiserver_version()).await {
        Ok(v) => {
            checks.push(Check { name: CHECK_API.into(), ok: true, detail: format!("reachable ({})", v.git_version) })
        }
        Err(e) => {
            checks.push(Check { name: CHECK_API.into(), ok: false, detail: crate::error::chain(&e) });
            // Without the API, CRD checks would only repeat the same failure.
            for name in &cfg.crd_names {
                checks.push(Check { name: name.clone(), ok: false, detail: "API server unreachable".into() });
            }
            return Report { checks };
        }
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in &cfg.crd_names {
        let what = format!("get CustomResourceDefinition {name}");
        let check = match with_timeout(what, cfg.api_timeout, api.get_opt(name)).await {
            Ok(crd) => crd_check(name, crd.as_ref()),
            Err(e) => Check { name: name.clone(), ok: false, detail: crate::error::chain(&e) },
        };
        checks.push(check);
    }
    Report { checks }
}

/// Runs checks until `shutdown`, publishing each report and logging every change of readiness.
pub async fn run(
    client: Client,
    cfg: CheckerConfig,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut was_ready: Option<bool> = None;
    loop {
        readiness.publish(probe(&client, &cfg).await);
        let report = readiness.report();
        let ready = report.ready();
        metrics.ready.set(i64::from(ready));
        for c in &report.checks {
            metrics.readiness_check.with_label_values(&[c.name.as_str()]).set(i64::from(c.ok));
        }
        if was_ready != Some(ready) {
            if ready {
                tracing::info!("ready: API server reachable, dr-syncer CRDs established, controllers ready");
            } else {
                let failing: Vec<_> =
                    report.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
                tracing::warn!(failing = ?failing, "not ready");
            }
            was_ready = Some(ready);
        }
        let wait = if ready { cfg.interval } else { NOT_READY_INTERVAL };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionCondition, CustomResourceDefinitionStatus,
    };

    fn crd_with(conditions: &[(&str, &str)]) -> CustomResourceDefinition {
        CustomResourceDefinition {
            status: Some(CustomResourceDefinitionStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| CustomResourceDefinitionCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            message: Some("msg".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn crd_check_passes_only_when_established() {
        let cases: Vec<(Option<CustomResourceDefinition>, bool, &str)> = vec![
            (None, false, "not installed"),
            (Some(crd_with(&[])), false, "not established yet"),
            (Some(crd_with(&[("NamesAccepted", "True"), ("Established", "False")])), false, "not established: msg"),
            (Some(crd_with(&[("NamesAccepted", "False"), ("Established", "False")])), false, "names not accepted"),
            (Some(crd_with(&[("NamesAccepted", "True"), ("Established", "True")])), true, "established"),
        ];
        for (crd, ok, detail) in cases {
            let c = crd_check("x.dr-syncer.io", crd.as_ref());
            assert_eq!(c.ok, ok, "{detail}");
            assert!(c.detail.starts_with(detail), "{} vs {detail}", c.detail);
        }
    }

    #[test]
    fn report_renders_failing_checks_when_not_ready() {
        let report = Report {
            checks: vec![
                Check { name: "api".into(), ok: true, detail: "reachable".into() },
                Check { name: "a.dr-syncer.io".into(), ok: false, detail: "not installed".into() },
            ],
        };
        assert!(!report.ready());
        let body = report.render(false);
        assert!(body.contains("[-]a.dr-syncer.io not installed"), "{body}");
        assert!(body.ends_with("readyz check failed\n"));
        assert!(!Report::default().ready());
    }

    #[test]
    fn controllers_check_passes_for_standby_and_synced_leader() {
        let cases: Vec<(Role, Option<Vec<&'static str>>, bool, &str)> = vec![
            (Role::Standby, None, true, "standby"),
            (Role::Leader, None, false, "controllers not started"),
            (Role::Leader, Some(vec!["remoteclusters"]), false, "waiting for the initial list of remoteclusters"),
            (Role::Leader, Some(vec![]), true, "leading and caches synced"),
            (Role::Single, Some(vec![]), true, "running and caches synced"),
        ];
        for (role, pending, ok, detail) in cases {
            let c = controllers_check(&role, pending);
            assert_eq!((c.ok, c.detail.as_str()), (ok, c.detail.as_str()));
            assert!(c.detail.starts_with(detail), "{} vs {detail}", c.detail);
        }
    }

    #[test]
    fn report_renders_ok_when_ready() {
        let report = Report { checks: vec![Check { name: "api".into(), ok: true, detail: "reachable".into() }] };
        assert_eq!(report.render(false), "ok\n");
        assert!(report.render(true).contains("[+]api reachable"));
    }
}
