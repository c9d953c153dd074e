//! The data path's throughput and cost, on loopback: the same rsync pull (a 2 GiB file, then 20,000 small files,
//! then an incremental run with 1 % changed) through three paths to the same source —
//!
//! * `agent`: OpenSSH client → dr-syncer-agent bastion (russh) → dr-syncer-agent serve (as in the lab);
//! * `jump`:  OpenSSH client → OpenSSH sshd as ProxyJump host → dr-syncer-agent serve;
//! * `direct`: OpenSSH client → OpenSSH sshd running `rsync --server --sender` itself.
//!
//! Prints wall time and MB/s per run, the bastion's and the jump sshd's CPU seconds per GiB, the bastion's peak
//! RSS, and the ratios. Destinations are on a tmpfs when one can be mounted, so the disk does not decide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Lab;
use rand::{Rng, RngExt, SeedableRng};

const GIB: u64 = 1 << 30;
const SMALL_FILES: usize = 20_000;
/// A step: its name and how it changes the volume.
type Step = (&'static str, fn(&Path));
/// A measurement: step, path, seconds, relay CPU seconds.
type Row = (&'static str, &'static str, f64, f64);
/// Rounds of the whole sequence unless `BENCH_ROUNDS` says otherwise; medians are reported, with the range.
const ROUNDS: usize = 3;

/// CPU seconds (user + system, including reaped children) and peak RSS in KiB of a process.
fn cpu_and_peak(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12, cutime 13, cstime 14 (clock ticks, 100/s).
    let cpu = (tick(11) + tick(12) + tick(13) + tick(14)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (cpu, peak)
}

/// Whether `pid` still has child processes (sshd's per-connection processes not yet reaped).
fn has_children(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .any(|t| std::fs::read_to_string(t.path().join("children")).is_ok_and(|c| !c.trim().is_empty()))
        })
        .unwrap_or(false)
}

struct Sshd {
    child: Child,
    port: u16,
}

impl Sshd {
    /// OpenSSH's sshd on a free loopback port, accepting `authorized` for root, forwarding allowed.
    fn start(dir: &Path, authorized: &str) -> Sshd {
        let sshd = std::env::var("SSHD").unwrap_or_else(|_| "sshd".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host_key = dir.join("sshd_host_key");
        let key = dr_syncer_wire::keys::generate("bench-sshd").unwrap();
        std::fs::write(&host_key, key.private_openssh.as_bytes()).unwrap();
        std::fs::set_permissions(&host_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::write(dir.join("sshd_authorized_keys"), format!("{authorized}\n")).unwrap();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\n\
             UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowTcpForwarding yes\nCiphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com\nLogLevel ERROR\n",
            host_key.display(),
            dir.join("sshd_authorized_keys").display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let path = which(&sshd);
        let child = Command::new(path)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd (make tools extracts it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::write(dir.join("known_hosts_sshd"), format!("[127.0.0.1]:{port} {}\n", key.public_openssh)).unwrap();
        Sshd { child, port }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH (run make tools)"))
}

/// Writes a 2 GiB file of random data into the volume.
fn write_big(volume: &Path) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let big = volume.join("big");
    std::fs::create_dir_all(&big).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(big.join("2GiB.bin")).unwrap());
    let mut chunk = vec![0u8; 8 << 20];
    for _ in 0..(2 * GIB / chunk.len() as u64) {
        rng.fill_bytes(&mut chunk);
        std::io::Write::write_all(&mut file, &chunk).unwrap();
    }
    std::io::Write::flush(&mut file).unwrap();
}

/// Writes 20,000 files of 1–8 KiB in 100 directories into the volume.
fn write_small(volume: &Path) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    for i in 0..SMALL_FILES {
        let dir = volume.join("small").join(format!("d{:02}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; rng.random_range(1024..8192)];
        rng.fill_bytes(&mut data);
        std::fs::write(dir.join(format!("f{i:05}")), data).unwrap();
    }
}

/// Changes 1 %: 200 small files rewritten, 20 MiB of the large file overwritten in 1 MiB pieces.
fn change_one_percent(volume: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    for i in (0..SMALL_FILES).step_by(100) {
        let mut data = vec![0u8; rng.random_range(1024..8192)];
        rng.fill_bytes(&mut data);
        std::fs::write(volume.join("small").join(format!("d{:02}", i % 100)).join(format!("f{i:05}")), data).unwrap();
    }
    let mut file = std::fs::OpenOptions::new().write(true).open(volume.join("big/2GiB.bin")).unwrap();
    let mut piece = vec![0u8; 1 << 20];
    for _ in 0..20 {
        rng.fill_bytes(&mut piece);
        file.seek(SeekFrom::Start(rng.random_range(0..2047) << 20)).unwrap();
        file.write_all(&piece).unwrap();
    }
}

/// One path: how rsync reaches the source, and the process whose CPU it costs on the way.
struct Path3 {
    name: &'static str,
    rsh: String,
    source: String,
    relay_pid: Option<u32>,
}

/// Pulls the whole volume (the rsync pod serves only its root) into `dest`; returns (seconds, relay CPU seconds).
fn pull(path: &Path3, dest: &Path) -> (f64, f64) {
    std::fs::create_dir_all(dest).unwrap();
    let cpu_before = path.relay_pid.map_or(0.0, |p| cpu_and_peak(p).0);
    let started = Instant::now();
    let out = Command::new("rsync")
        .args(["-aHAXS", "--numeric-ids", "--delete", "-e", &path.rsh])
        .arg(format!("{}/", path.source))
        .arg(format!("{}/", dest.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}: {}", path.name, String::from_utf8_lossy(&out.stderr));
    let cpu = path.relay_pid.map_or(0.0, |pid| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while path.name != "agent" && has_children(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        cpu_and_peak(pid).0 - cpu_before
    });
    (seconds, cpu)
}

fn mount_tmpfs(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    Command::new("mount").args(["-t", "tmpfs", "-o", "size=14g", "tmpfs"]).arg(dir).status().is_ok_and(|s| s.success())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("data_path: benchmark");
        return;
    }
    let base = std::env::temp_dir().join(format!("dr-syncer-bench-data-{}", std::process::id()));
    let tmpfs = mount_tmpfs(&base);
    let lab = Lab::start_in("bench", &base);
    let shop = std::fs::read_to_string(lab.dir.join("id_shop")).unwrap();
    let shop_public = dr_syncer_wire::keys::pair(
        &dr_syncer_wire::keys::private_from_openssh(&shop, "bench key").unwrap(),
        "bench key",
    )
    .unwrap()
    .public_openssh;
    let sshd = Sshd::start(&lab.dir, &shop_public);
    let id = lab.dir.join("id_shop");
    let common_opts = format!(
        "-o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o Ciphers=aes128-gcm@openssh.com -i {}",
        id.display()
    );
    let known = format!("{} {}", lab.dir.join("known_hosts").display(), lab.dir.join("known_hosts_sshd").display());
    let serve = lab.serve_addr();
    let paths = [
        Path3 {
            name: "agent",
            rsh: format!("ssh -F {}", lab.ssh_config("shop").display()),
            source: format!("target:{}", lab.volume.display()),
            relay_pid: Some(lab.bastion_pid()),
        },
        Path3 {
            name: "jump",
            rsh: format!(
                "ssh -F /dev/null {common_opts} -o 'UserKnownHostsFile {known}' -p {} \
                 -o 'ProxyCommand ssh -F /dev/null {common_opts} -o \"UserKnownHostsFile {known}\" -p {} -W %h:%p root@127.0.0.1'",
                serve.port(),
                sshd.port
            ),
            source: format!("dr-syncer@127.0.0.1:{}", lab.volume.display()),
            relay_pid: Some(sshd.child.id()),
        },
        Path3 {
            name: "direct",
            rsh: format!("ssh -F /dev/null {common_opts} -o 'UserKnownHostsFile {known}' -p {}", sshd.port),
            source: format!("root@127.0.0.1:{}", lab.volume.display()),
            relay_pid: Some(sshd.child.id()),
        },
    ];
    println!("data path benchmark (destinations on {})", if tmpfs { "tmpfs" } else { "disk" });
    // Each round starts from an empty volume and empty destinations and has three steps, each pulled by every
    // path (in a rotating order) into its own destination: the 2 GiB file alone; then 20,000 small files added
    // (the large file is unchanged, so rsync skips it after comparing size and time); then 1 % changed.
    let steps: [Step; 3] =
        [("2 GiB file", write_big), ("20k small files", write_small), ("1% changed", change_one_percent)];
    let mut rows: Vec<Row> = Vec::new();
    let rounds: usize =
        std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).filter(|r| *r > 0).unwrap_or(ROUNDS);
    for round in 0..rounds {
        for dir in
            [lab.volume.clone()].into_iter().chain(paths.iter().map(|p| lab.dir.join(format!("dest-{}", p.name))))
        {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (step, prepare) in steps {
            prepare(&lab.volume);
            for k in 0..paths.len() {
                let path = &paths[(k + round) % paths.len()];
                let (seconds, cpu) = pull(path, &lab.dir.join(format!("dest-{}", path.name)));
                rows.push((step, path.name, seconds, cpu));
            }
        }
        println!("round {} of {rounds} done", round + 1);
    }
    let (_, bastion_peak) = cpu_and_peak(lab.bastion_pid());
    let small_bytes: u64 = walk_bytes(&lab.volume.join("small"));
    let median = |step: &str, name: &str, pick: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().filter(|r| r.0 == step && r.1 == name).map(pick).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!("medians of {rounds} rounds (range of seconds in brackets)");
    println!(
        "{:<16} {:<7} {:>8} {:>9} {:>12} {:>16}",
        "step", "path", "seconds", "MB/s", "relay CPU s", "relay CPU s/GiB"
    );
    for (step, _) in steps {
        // Bytes the step had to bring over: the file, the small files, the changed 1 % (20 MiB + 200 files).
        let bytes = match step {
            "2 GiB file" => 2 * GIB,
            "20k small files" => small_bytes,
            _ => (20 << 20) + small_bytes / 100,
        };
        for path in &paths {
            let (seconds, cpu) = (median(step, path.name, |r| r.2), median(step, path.name, |r| r.3));
            let (cpu, per_gib) = if path.name == "direct" {
                ("-".to_string(), "-".to_string())
            } else {
                (format!("{cpu:.2}"), format!("{:.3}", cpu / (bytes as f64 / GIB as f64)))
            };
            let all: Vec<f64> = rows.iter().filter(|r| r.0 == step && r.1 == path.name).map(|r| r.2).collect();
            let (low, high) = all.iter().fold((f64::MAX, 0.0f64), |(l, h), v| (l.min(*v), h.max(*v)));
            println!(
                "{step:<16} {:<7} {seconds:>8.2} {:>9.1} {cpu:>12} {per_gib:>16}   [{low:.2}–{high:.2}]",
                path.name,
                bytes as f64 / seconds / 1e6
            );
        }
    }
    for (step, _) in steps {
        let time = |name| median(step, name, |r| r.2);
        let cpu = |name| median(step, name, |r| r.3);
        println!(
            "ratio {step:<16} agent/jump throughput {:.2}x  agent/direct {:.2}x  bastion/sshd-jump CPU {:.2}x",
            time("jump") / time("agent"),
            time("direct") / time("agent"),
            cpu("agent") / cpu("jump"),
        );
    }
    println!("bastion peak RSS {:.1} MiB", bastion_peak as f64 / 1024.0);
    drop(sshd);
    drop(lab);
    if tmpfs {
        let _ = Command::new("umount").arg(&base).status();
    }
    let _ = std::fs::remove_dir_all(&base);
}

fn walk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk_bytes(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}
