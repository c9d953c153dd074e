//! Running a dr-syncer binary as a child process, the way it runs in production.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process whose JSON log lines (stderr) are collected.
pub struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Starts `binary` with `args` and `env`.
    pub fn spawn(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(binary);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            }));
        }
        Process { child, logs, readers }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every line written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Waits until a log line contains `needle`, returning it; panics with the logs after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain(Duration::from_secs(5));
                panic!("process exited ({status}) before logging {needle:?}; logs:\n{}", self.logs().join("\n"));
            }
            if Instant::now() > deadline {
                panic!("no log line with {needle:?} after {timeout:?}; logs:\n{}", self.logs().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address from the JSON log line `serving HTTP` (start with `--log-format json`).
    pub fn http_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_log("serving HTTP", Duration::from_secs(30));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        v["addr"].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no addr in {line}"))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain(Duration::from_secs(5));
                return status;
            }
            if Instant::now() > deadline {
                panic!("process still running after {timeout:?}; logs:\n{}", self.logs().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After the exit: waits until the reader threads have read every line the process wrote (its pipes closed), so
    /// [`Process::logs`] is complete; panics after `timeout` (something else holds the pipes open).
    fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.readers.iter().all(std::thread::JoinHandle::is_finished) {
            if Instant::now() > deadline {
                panic!("the exited process's output is still open after {timeout:?} (a child of it holds it?)");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to this child only.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET http://<addr><path>`: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    Ok((code, resp.text().await.map_err(|e| e.to_string())?))
}

/// Runs `promtool check metrics` on a metrics text; `Err` carries promtool's complaints.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package prometheus; test/tools/setup.sh installs it)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Arguments of the controller binary for a test or benchmark: the cluster of `kubeconfig`, dr-syncer resources in
/// `namespace` only, JSON logs, probe and metrics servers on free loopback ports.
pub fn controller_args(kubeconfig: &Path, namespace: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    args.extend(["--namespace", namespace, "--log-format", "json"].map(String::from));
    args.extend(
        ["--health-probe-bind-address", "127.0.0.1:0", "--metrics-bind-address", "127.0.0.1:0"].map(String::from),
    );
    args
}
