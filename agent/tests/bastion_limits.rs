//! The bastion under pre-authentication floods on loopback: thousands of idle TCP connections and half-open SSH
//! handshakes neither stop it nor keep an honest rsync copy out; idle connections are cut at the end of the login
//! grace time; running out of file descriptors pauses `accept()` instead of ending the agent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Lab, Options};
use dr_syncer_testlab::tree;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Opens `count` connections to `target` from loopback addresses `127.0.0.{first}..`, `per_source` from each; with
/// `hello`, each sends an SSH version line and then stalls (a half-open handshake).
async fn flood(target: SocketAddr, count: usize, first: u8, per_source: usize, hello: bool) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, first + (i / per_source) as u8));
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(5), socket.connect(target)).await else {
            continue;
        };
        if hello {
            let _ = stream.write_all(b"SSH-2.0-flood\r\n").await;
        }
        held.push(stream);
    }
    held
}

/// How many of `streams` the agent has closed (a read sees EOF or an error at once).
async fn closed_by_agent(streams: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for stream in streams.iter_mut() {
        let mut buffer = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue, // the agent's version line and key exchange offer
                Err(_) => break,       // still open
            }
        }
    }
    closed
}

/// rsync pulling `volume` into `dest` through the bastion with the client configuration `config`.
fn pull(config: &Path, volume: &Path, dest: &Path) -> std::process::Output {
    std::process::Command::new("rsync")
        .args(["-aHAXS", "--numeric-ids", "--delete", "-e"])
        .arg(format!("ssh -F {}", config.display()))
        .arg(format!("target:{}/", volume.display()))
        .arg(format!("{}/", dest.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A lab whose bastion has the given login grace, startup caps and open-file limit, and a volume to copy.
fn limited_lab(name: &str, grace: &str, startups: &str, per_source: &str, nofile: u32) -> Lab {
    let bastion_args = ["--login-grace", grace, "--max-startups", startups, "--max-startups-per-source", per_source]
        .map(String::from)
        .to_vec();
    let lab = Lab::start_with(name, &std::env::temp_dir(), &Options { bastion_args, bastion_nofile: Some(nofile) });
    tree::build(&lab.volume);
    lab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bastion_serves_an_honest_copy_and_cuts_idle_connections_when_flooded() {
    // Far fewer descriptors than the flood has connections: without limits the agent runs out of them.
    let mut lab = limited_lab("flood", "3s", "64", "8", 256);
    let target = lab.bastion_addr();
    // 2,000 idle connections from eight addresses and 1,000 half-open handshakes from four more.
    let mut idle = flood(target, 2000, 10, 250, false).await;
    let mut half_open = flood(target, 1000, 20, 250, true).await;
    assert!(idle.len() + half_open.len() >= 2900, "the flood could not connect");
    assert!(lab.bastion_running(), "the bastion died under the flood");
    // The connections over the caps were closed at once; at most 64 wait for a login.
    let metrics = lab.metrics_text();
    let waiting = common::gauge(&metrics, "dr_syncer_agent_unauthenticated_connections");
    assert!(waiting <= 64.0, "{waiting} connections wait for a login");
    // The rest were closed at once (the agent may still be draining its accept queue).
    common::eventually("connections over the per-source limit closed at once", Duration::from_secs(20), || {
        let text = lab.metrics_text();
        let dropped = ["SourceStartupLimit", "StartupLimit"]
            .map(|reason| common::counter(&text, "dr_syncer_agent_connections_dropped_total", reason));
        (dropped.iter().sum::<f64>() >= 2000.0 && dropped[0] >= 1.0).then_some(())
    });

    // An honest copy while the flood goes on: new half-open handshakes keep coming from four more addresses.
    let churn = tokio::spawn(async move {
        let mut kept = std::collections::VecDeque::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            kept.extend(flood(target, 100, 40, 25, true).await);
            while kept.len() > 400 {
                kept.pop_front();
            }
        }
    });
    // Like the controller, the copy is tried again when a connection is turned away: the first wave holds every
    // login slot until its grace time ends; the ongoing flood from four addresses can hold only 32 of them.
    let started = Instant::now();
    let copy = tokio::task::spawn_blocking({
        let (config, volume, dest) = (lab.ssh_config("shop"), lab.volume.clone(), lab.dest.clone());
        move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let out = pull(&config, &volume, &dest);
                if out.status.success() || Instant::now() > deadline {
                    return out;
                }
            }
        }
    });
    let out = copy.await.unwrap();
    churn.abort();
    assert!(out.status.success(), "honest copy failed under the flood: {}", String::from_utf8_lossy(&out.stderr));
    tree::assert_same(&lab.volume, &lab.dest);

    // After the grace time every flood connection is closed by the agent.
    common::eventually("idle connections cut after the login grace", Duration::from_secs(20), || {
        let text = lab.metrics_text();
        (common::gauge(&text, "dr_syncer_agent_unauthenticated_connections") == 0.0).then_some(())
    });
    let total = idle.len() + half_open.len();
    let closed = closed_by_agent(&mut idle).await + closed_by_agent(&mut half_open).await;
    assert_eq!(closed, total, "every flood connection is closed ({:?} after the copy started)", started.elapsed());
    let cut = common::counter(&lab.metrics_text(), "dr_syncer_agent_connections_dropped_total", "LoginTimeout");
    assert!(cut >= 1.0, "the waiting connections were cut at the grace time");
    assert!(lab.bastion_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bastion_keeps_serving_when_it_runs_out_of_file_descriptors() {
    let mut lab = limited_lab("nofile", "2s", "4000", "4000", 64);
    // Limits far above the descriptors the agent has: accept() fails with EMFILE.
    let held = flood(lab.bastion_addr(), 300, 30, 300, false).await;
    assert!(held.len() >= 100, "the flood could not connect");
    lab.wait_bastion_log("accept failed");
    assert!(lab.bastion_running(), "the bastion exited when accept() failed");
    // The waiting connections are cut after the grace time, descriptors come back and a copy goes through.
    drop(held);
    let out = common::eventually("a copy after the flood", Duration::from_secs(30), || {
        let out = pull(&lab.ssh_config("shop"), &lab.volume, &lab.dest);
        out.status.success().then_some(out)
    });
    assert!(out.status.success());
    tree::assert_same(&lab.volume, &lab.dest);
    let errors = common::gauge(&lab.metrics_text(), "dr_syncer_agent_accept_errors_total");
    assert!(errors >= 1.0, "accept() never failed, so the test proved nothing");
    assert!(lab.bastion_running());
}
