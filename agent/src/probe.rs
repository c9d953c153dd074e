//! `dr-syncer-agent probe`: an SSH handshake with each source agent, its host key pinned, from wherever the probe
//! runs — a short-lived pod in the DR cluster, so the check sees the network the copy Jobs will use. No
//! authentication is attempted. One result line per target on stdout; the argument and line formats are in
//! `dr_syncer_wire::probe`.

use std::sync::Arc;
use std::time::Duration;

use dr_syncer_wire::address::Host;
use dr_syncer_wire::probe::{KnownKey, ProbeResult, Target};
use russh::keys::{PublicKey, PublicKeyOrCertificate};

/// A russh client handler that accepts only the pinned host keys.
struct Pinned {
    expected: Vec<PublicKey>,
}

impl russh::client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. }
            if self.expected.iter().any(|e| e.key_data() == key.key_data())))
    }
}

/// One SSH handshake with `host:port`, the host key pinned to one of `expected`.
pub async fn handshake(host: &Host, port: u16, expected: &[PublicKey], timeout: Duration) -> Result<(), String> {
    let config = Arc::new(russh::client::Config { inactivity_timeout: Some(timeout), ..Default::default() });
    let handler = Pinned { expected: expected.to_vec() };
    match tokio::time::timeout(timeout, russh::client::connect(config, (host.to_string(), port), handler)).await {
        Ok(Ok(session)) => {
            let _ = session.disconnect(russh::Disconnect::ByApplication, "check done", "en").await;
            Ok(())
        }
        Ok(Err(russh::Error::UnknownKey)) => Err("the agent's host key is not the pinned one".to_string()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no SSH handshake within {timeout:?}")),
    }
}

/// Checks every target at once, each against the keys [`KnownKey`]s give for its node.
pub async fn run(targets: &[Target], known: &[KnownKey], timeout: Duration) -> Vec<ProbeResult> {
    let checks = targets.iter().map(|t| async move {
        let expected: Vec<PublicKey> = known.iter().filter(|k| k.applies_to(&t.node)).map(|k| k.key.clone()).collect();
        let result = if expected.is_empty() {
            Err(format!("no host key is known for the agent of node {}", t.node))
        } else {
            handshake(&t.host, t.port, &expected, timeout).await
        };
        ProbeResult {
            node: t.node.clone(),
            address: t.host.with_port(t.port),
            connected: result.is_ok(),
            error: result.err(),
        }
    });
    futures::future::join_all(checks).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_accepts_a_node_only_with_a_key_pinned_for_it_when_checking_targets() {
        let server_key = dr_syncer_wire::keys::generate("probe-test-host").unwrap();
        let private = dr_syncer_wire::keys::private_from_openssh(&server_key.private_openssh, "host").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = crate::serve::RsyncServer {
            authorized: Arc::new(vec![]),
            root: "/nonexistent".into(),
            rsync: "rsync".into(),
            metrics: crate::metrics::AgentMetrics::new().unwrap(),
        };
        let config = crate::ssh::server_config(private);
        let metrics = server.metrics.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let limits = crate::listen::Limits::default();
        tokio::spawn(crate::listen::serve(server, config, listener, limits, metrics, stop.clone()));
        let right = dr_syncer_wire::keys::public_from_openssh(&server_key.public_openssh, "host").unwrap();
        let other = dr_syncer_wire::keys::public_from_openssh(
            &dr_syncer_wire::keys::generate("x").unwrap().public_openssh,
            "x",
        )
        .unwrap();
        let t = Duration::from_secs(5);
        let loopback = Host::Ip(std::net::Ipv4Addr::LOCALHOST.into());
        let target = |node: &str| Target { node: node.into(), host: loopback.clone(), port };
        let pin = |node: Option<&str>, key: &PublicKey| KnownKey { node: node.map(str::to_string), key: key.clone() };
        // Each node's agent is checked against its own key only; `*` keys apply to every target.
        let known = [pin(Some("right"), &right), pin(Some("wrong"), &other), pin(Some("elsewhere"), &right)];
        let results = run(&[target("right"), target("wrong"), target("none")], &known, t).await;
        let outcome: Vec<_> = results.iter().map(|r| (r.node.as_str(), r.connected)).collect();
        assert_eq!(outcome, [("right", true), ("wrong", false), ("none", false)]);
        assert!(results[1].error.as_deref().unwrap().contains("not the pinned one"), "{results:?}");
        assert!(results[2].error.as_deref().unwrap().contains("no host key is known"), "{results:?}");
        let any = [pin(None, &other), pin(None, &right)];
        assert!(run(&[target("wrong")], &any, t).await[0].connected);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(handshake(&loopback, closed, &[right], t).await.is_err());
    }
}
