//! A bastion and an rsync pod server on loopback, with keys, an OpenSSH client configuration per key and a volume.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dr_syncer_testlab::process::Process;
use dr_syncer_wire::keys::{KeyPair, generate};
use dr_syncer_wire::policy::{AuthorizedSet, TargetSet};

const AGENT: &str = env!("CARGO_BIN_EXE_dr-syncer-agent");
const STARTUP: Duration = Duration::from_secs(20);

/// How a test's bastion is started.
#[derive(Default)]
pub struct Options {
    /// Extra flags of `dr-syncer-agent bastion`.
    pub bastion_args: Vec<String>,
    /// The bastion's open-file limit (through `prlimit`), if not the inherited one.
    pub bastion_nofile: Option<u32>,
}

/// The running pieces of one test.
pub struct Lab {
    /// Scratch directory of the test.
    pub dir: PathBuf,
    /// The source volume the rsync pod server sends.
    pub volume: PathBuf,
    /// Where pulls write.
    pub dest: PathBuf,
    /// The bastion's metrics address.
    pub metrics: SocketAddr,
    bastion: Process,
    bastion_addr: SocketAddr,
    serve: Process,
    serve_addr: SocketAddr,
}

fn write_private(path: &Path, pair: &KeyPair) {
    std::fs::write(path, pair.private_openssh.as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn addr_from(process: &mut Process, needle: &str) -> SocketAddr {
    let line = process.wait_for_log(needle, STARTUP);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    v["fields"]["addr"].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no addr in {line}"))
}

impl Lab {
    /// Starts an rsync pod server for a fresh volume and a bastion that lets mapping `shop` reach it. Keys:
    /// `shop` (current), `retired` (listed for shop, past its notAfter), `other` (another mapping, no pods here),
    /// `stranger` (listed nowhere).
    pub fn start(name: &str) -> Lab {
        Lab::start_in(name, &std::env::temp_dir())
    }

    /// Like [`Lab::start`], with the scratch directory (volume and destination too) under `base`.
    pub fn start_in(name: &str, base: &Path) -> Lab {
        Lab::start_with(name, base, &Options::default())
    }

    /// Like [`Lab::start_in`], with extra bastion flags and limits.
    pub fn start_with(name: &str, base: &Path, options: &Options) -> Lab {
        let dir = base.join(format!("dr-syncer-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (volume, dest) = (dir.join("volume"), dir.join("dest"));
        for d in [&dir, &volume, &dest] {
            std::fs::create_dir_all(d).unwrap();
        }
        let key = |name: &str| {
            let pair = generate(name).unwrap();
            write_private(&dir.join(format!("id_{name}")), &pair);
            pair
        };
        let (bastion_host, serve_host) = (key("bastion-host"), key("serve-host"));
        let (shop, retired, other) = (key("shop"), key("retired"), key("other"));
        key("stranger");

        std::fs::write(dir.join("serve_authorized_keys"), format!("{}\n", shop.public_openssh)).unwrap();
        let mut serve = Process::spawn(
            Path::new(AGENT),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--host-key",
                dir.join("id_serve-host").to_str().unwrap(),
                "--authorized-keys",
                dir.join("serve_authorized_keys").to_str().unwrap(),
                "--root",
                volume.to_str().unwrap(),
            ],
            &[],
        );
        let serve_addr = addr_from(&mut serve, "listening for SSH");

        let lab_files = (dir.join("authorized.json"), dir.join("targets.json"));
        let targets = TargetSet {
            targets: [("shop".to_string(), vec![serve_addr]), ("other".to_string(), vec![])].into_iter().collect(),
        };
        std::fs::write(&lab_files.1, serde_json::to_vec(&targets).unwrap()).unwrap();
        write_authorized(
            &lab_files.0,
            &[
                ("shop", &shop.public_openssh, None),
                ("shop", &retired.public_openssh, Some("2020-01-01T00:00:00Z")),
                ("other", &other.public_openssh, None),
            ],
        );
        let nofile = options.bastion_nofile.map(|n| format!("--nofile={n}:{n}"));
        let mut args: Vec<String> = Vec::new();
        if let Some(limit) = &nofile {
            args.extend([limit.clone(), AGENT.to_string()]);
        }
        let path = |p: PathBuf| p.to_str().unwrap().to_string();
        args.extend([
            "bastion".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--host-key".into(),
            path(dir.join("id_bastion-host")),
            "--authorized".into(),
            path(lab_files.0.clone()),
            "--targets".into(),
            path(lab_files.1.clone()),
            "--reload-interval".into(),
            "200ms".into(),
            "--metrics-bind-address".into(),
            "127.0.0.1:0".into(),
        ]);
        // The rsync pod server listens on loopback here, on a port of its own.
        args.extend([
            "--target-port".into(),
            serve_addr.port().to_string(),
            "--target-network".into(),
            "127.0.0.0/8".into(),
        ]);
        args.extend(options.bastion_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let program = if nofile.is_some() { Path::new("prlimit") } else { Path::new(AGENT) };
        let mut bastion = Process::spawn(program, &args, &[]);
        let metrics = addr_from(&mut bastion, "serving HTTP");
        let bastion_addr = addr_from(&mut bastion, "listening for SSH");

        let known_hosts = format!(
            "[127.0.0.1]:{} {}\n[127.0.0.1]:{} {}\n",
            bastion_addr.port(),
            bastion_host.public_openssh,
            serve_addr.port(),
            serve_host.public_openssh
        );
        std::fs::write(dir.join("known_hosts"), known_hosts).unwrap();
        for name in ["shop", "retired", "other", "stranger"] {
            let config = format!(
                "Host bastion\n  HostName 127.0.0.1\n  Port {}\nHost target\n  HostName 127.0.0.1\n  Port {}\n  \
                 ProxyJump bastion\nHost *\n  User dr-syncer\n  IdentityFile {}\n  IdentitiesOnly yes\n  BatchMode yes\n  \
                 StrictHostKeyChecking yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
                 Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com\n  ConnectTimeout 10\n  LogLevel ERROR\n",
                bastion_addr.port(),
                serve_addr.port(),
                dir.join(format!("id_{name}")).display(),
                dir.join("known_hosts").display()
            );
            std::fs::write(dir.join(format!("ssh_config.{name}")), config).unwrap();
        }
        Lab { dir, volume, dest, metrics, bastion, bastion_addr, serve, serve_addr }
    }

    fn config(&self, key: &str) -> PathBuf {
        self.dir.join(format!("ssh_config.{key}"))
    }

    /// `rsync` pulling the volume into `dest` through the bastion with `key`.
    pub fn pull(&self, key: &str, extra: &[&str]) -> Output {
        let rsh = format!("ssh -F {}", self.config(key).display());
        Command::new("rsync")
            .args(["-aHAXS", "--numeric-ids", "--delete", "--partial-dir=.dr-syncer-partial", "-e", &rsh])
            .args(extra)
            .arg(format!("target:{}/", self.volume.display()))
            .arg(format!("{}/", self.dest.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `dr-syncer-agent copy` pulling the volume into `dest` through the bastion with `key`, verifying with `verify`.
    pub fn copy(&self, key: &str, verify: &str) -> Output {
        self.copy_with(key, verify, &[])
    }

    /// [`Lab::copy`] with more `dr-syncer-agent copy` flags (before the rsync options).
    pub fn copy_with(&self, key: &str, verify: &str, flags: &[&str]) -> Output {
        Command::new(AGENT)
            .arg("copy")
            .arg("--ssh-config")
            .arg(self.config(key))
            .args(["--source-host", "target", "--source-path"])
            .arg(&self.volume)
            .arg("--destination")
            .arg(&self.dest)
            .args(["--verify", verify, "--sample-percent", "100", "--scratch"])
            .arg(&self.dir)
            .args(flags)
            .args(["--", "-aHAXS", "--numeric-ids", "--delete", "--partial-dir=.dr-syncer-partial"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `ssh` to `host` (`bastion` or `target`) with `key`, running `command`.
    pub fn ssh(&self, key: &str, host: &str, command: &[&str]) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.config(key))
            .arg(host)
            .args(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `ssh -W target bastion` with `key`: a raw forward through the bastion.
    pub fn ssh_forward(&self, key: &str, target: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.config(key))
            .args(["-W", target, "bastion"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Replaces the bastion's authorized set.
    pub fn authorize(&self, entries: &[(&str, &str, Option<&str>)]) {
        write_authorized(&self.dir.join("authorized.json"), entries);
    }

    /// Replaces the bastion's authorized set with `set`.
    pub fn authorize_set(&self, set: &AuthorizedSet) {
        write_json(&self.dir.join("authorized.json"), set);
    }

    /// Replaces the bastion's target set with `set`.
    pub fn set_targets(&self, set: &TargetSet) {
        write_json(&self.dir.join("targets.json"), set);
    }

    /// An OpenSSH client configuration like the others', for identity `name` (a private key file in the lab's
    /// directory) and its certificate `name-cert.pub`; returns its path.
    pub fn certificate_config(&self, name: &str) -> PathBuf {
        let plain = std::fs::read_to_string(self.config("shop")).unwrap();
        let identity = self.dir.join(name);
        let text = plain.replace(
            &format!("IdentityFile {}", self.dir.join("id_shop").display()),
            &format!("IdentityFile {}\n  CertificateFile {}-cert.pub", identity.display(), identity.display()),
        );
        let path = self.dir.join(format!("ssh_config.{name}"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The bastion's `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let mut stream = TcpStream::connect(self.metrics).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    /// Whether the bastion is still running.
    pub fn bastion_running(&mut self) -> bool {
        self.bastion.running()
    }

    /// Address the bastion listens on.
    pub fn bastion_addr(&self) -> SocketAddr {
        self.bastion_addr
    }

    /// Process id of the bastion.
    pub fn bastion_pid(&self) -> u32 {
        self.bastion.pid()
    }

    /// Address of the rsync pod server.
    pub fn serve_addr(&self) -> SocketAddr {
        self.serve_addr
    }

    /// Path of the OpenSSH client configuration for `key` (hosts `bastion` and `target`).
    pub fn ssh_config(&self, key: &str) -> PathBuf {
        self.config(key)
    }

    /// Waits until the rsync pod server has logged a line containing `needle` (a process logs after it acted, and
    /// its output is read by another thread: never assume the line is there yet).
    #[allow(dead_code)] // not every test binary reads the logs
    pub fn wait_serve_log(&self, needle: &str) {
        let logs = || self.serve.logs();
        eventually(&format!("the rsync pod server to log {needle:?}"), LOG_WAIT, || {
            logs().iter().any(|l| l.contains(needle)).then_some(())
        });
    }

    /// Waits until the bastion has logged a line containing `needle` (see [`Lab::wait_serve_log`]).
    #[allow(dead_code)] // not every test binary reads the logs
    pub fn wait_bastion_log(&self, needle: &str) {
        let logs = || self.bastion.logs();
        eventually(&format!("the bastion to log {needle:?}"), LOG_WAIT, || {
            logs().iter().any(|l| l.contains(needle)).then_some(())
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.bastion.terminate(Duration::from_secs(10));
        self.serve.terminate(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_authorized(path: &Path, entries: &[(&str, &str, Option<&str>)]) {
    let mut set = AuthorizedSet::default();
    for (mapping, key, not_after) in entries {
        set.add(mapping, key, *not_after);
    }
    write_json(path, &set);
}

/// Written next to it and renamed, as the kubelet swaps a Secret volume's files.
fn write_json(path: &Path, value: &impl serde::Serialize) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, serde_json::to_vec(value).unwrap()).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The value of counter `name` with label value `label`, 0 when absent.
pub fn counter(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("\"{label}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of the unlabelled metric `name`, 0 when absent.
pub fn gauge(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
}

/// How long a log line may take to appear after what it reports.
const LOG_WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
