//! What the bench measures besides wall time: CPU seconds of the lab's processes and API requests by verb.

use std::collections::HashMap;
use std::path::Path;

use kube::Client;

/// Requests the API server has served so far, by verb (all resources and subresources).
pub async fn requests_by_verb(client: &Client) -> HashMap<String, f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let verb = line.split("verb=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
        let count = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(verb.to_string()).or_insert(0.0) += count;
    }
    out
}

/// `after - before` per verb, as `VERB n` pairs sorted by verb, zero counts left out.
pub fn request_delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> String {
    let mut verbs: Vec<_> = after
        .iter()
        .map(|(verb, n)| (verb.clone(), n - before.get(verb).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n >= 1.0)
        .collect();
    verbs.sort_by(|a, b| a.0.cmp(&b.0));
    verbs.iter().map(|(verb, n)| format!("{verb} {n:.0}")).collect::<Vec<_>>().join(", ")
}

/// The processes whose CPU time the bench reports: the controller, the bench itself, and each lab cluster's API
/// server, etcd and controller manager (their PID files are under `$LAB_RUN/<cluster>/`).
pub struct Processes {
    /// A name per process, in report order.
    pub names: Vec<String>,
    pids: Vec<u32>,
}

impl Processes {
    pub fn of_lab(controller: u32) -> Processes {
        let mut names = vec!["controller".to_string(), "bench client".to_string()];
        let mut pids = vec![controller, std::process::id()];
        let run = std::env::var("LAB_RUN").unwrap_or_default();
        for cluster in ["source", "dr"] {
            for part in ["apiserver", "etcd", "kcm"] {
                let file = Path::new(&run).join(cluster).join(format!("{part}.pid"));
                if let Some(pid) = std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse().ok()) {
                    names.push(format!("{cluster} {part}"));
                    pids.push(pid);
                }
            }
        }
        Processes { names, pids }
    }

    /// CPU seconds (user + system) each process has used so far.
    pub fn cpu(&self) -> Vec<f64> {
        self.pids.iter().map(|pid| cpu_seconds(*pid)).collect()
    }

    pub fn since(&self, before: &[f64]) -> Vec<f64> {
        self.cpu().iter().zip(before).map(|(now, then)| now - then).collect()
    }
}

/// utime + stime of a process from `/proc/<pid>/stat`, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may contain spaces) start at field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The value at fraction `p` of the sorted `sorted`; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sorts `values` and returns the middle one.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
