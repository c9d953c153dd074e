//! `dr-syncer-agent probe`: an SSH handshake with each source agent, its host key pinned, from wherever the probe
//! runs — a short-lived pod in the DR cluster, so the check sees the network the copy Jobs will use. No
//! authentication is attempted. One result line per target on stdout ([`ProbeResult::to_line`]).

use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PublicKey, PublicKeyOrCertificate};
use serde::{Deserialize, Serialize};

use crate::address::Host;

/// Prefix of a result line on stdout.
pub const RESULT_PREFIX: &str = "dr-syncer-probe ";

/// One agent to check: the node it serves and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Source node the agent runs on.
    pub node: String,
    /// Address, or a DNS name (a load balancer's), checked.
    pub host: Host,
    /// SSH port.
    pub port: u16,
}

impl Target {
    /// Parses `NODE=HOST:PORT` (an IPv6 host in brackets); HOST must be an IP address or a DNS-1123 name.
    pub fn parse(text: &str) -> Result<Target, String> {
        let (node, address) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NODE=HOST:PORT"))?;
        let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("{address:?} has no :PORT"))?;
        let port = port.parse().map_err(|_| format!("{port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if node.is_empty() {
            return Err(format!("{text:?} is not NODE=HOST:PORT"));
        }
        let host = Host::parse(host, true).map_err(|e| e.to_string())?;
        Ok(Target { node: node.into(), host, port })
    }

    /// The `NODE=HOST:PORT` form.
    pub fn to_arg(&self) -> String {
        format!("{}={}", self.node, self.host.with_port(self.port))
    }
}

/// The outcome for one target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    /// Source node.
    pub node: String,
    /// `host:port` contacted.
    pub address: String,
    /// The handshake completed with the pinned host key.
    pub connected: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProbeResult {
    /// The stdout line.
    pub fn to_line(&self) -> String {
        format!("{RESULT_PREFIX}{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// Parses a stdout line; `None` for other lines.
    pub fn from_line(line: &str) -> Option<ProbeResult> {
        serde_json::from_str(line.trim_end().strip_prefix(RESULT_PREFIX)?).ok()
    }
}

/// A russh client handler that accepts only the pinned host key.
struct Pinned {
    expected: PublicKey,
}

impl russh::client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.expected.key_data()))
    }
}

/// One SSH handshake with `host:port`, the host key pinned to `expected`.
pub async fn handshake(host: &Host, port: u16, expected: &PublicKey, timeout: Duration) -> Result<(), String> {
    let config = Arc::new(russh::client::Config { inactivity_timeout: Some(timeout), ..Default::default() });
    let handler = Pinned { expected: expected.clone() };
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

/// Checks every target at once.
pub async fn run(targets: &[Target], expected: &PublicKey, timeout: Duration) -> Vec<ProbeResult> {
    let checks = targets.iter().map(|t| async move {
        let result = handshake(&t.host, t.port, expected, timeout).await;
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

    #[test]
    fn target_parse_reads_node_host_and_port_when_well_formed() {
        let cases = [
            ("n1=10.0.0.1:2222", Some(("n1", "10.0.0.1", 2222))),
            ("n1=[fd00::1]:2222", Some(("n1", "fd00::1", 2222))),
            ("n1=lb.example.com:30022", Some(("n1", "lb.example.com", 30022))),
            ("10.0.0.1:2222", None),
            ("n1=10.0.0.1", None),
            ("n1=10.0.0.1:ssh", None),
            ("=10.0.0.1:22", None),
            ("n1=10.0.0.1\n  ProxyCommand x:22", None),
            ("n1=-oProxyCommand=x:22", None),
        ];
        for (text, expected) in cases {
            let parsed = Target::parse(text).ok();
            let got = parsed.as_ref().map(|t| (t.node.as_str(), t.host.to_string(), t.port));
            assert_eq!(got, expected.map(|(n, h, p)| (n, h.to_string(), p)), "{text}");
            if let Some(t) = parsed {
                assert_eq!(Target::parse(&t.to_arg()).unwrap(), t);
            }
        }
    }

    #[test]
    fn result_lines_round_trip_and_other_lines_are_ignored() {
        let r = ProbeResult { node: "n".into(), address: "h:1".into(), connected: false, error: Some("x".into()) };
        assert_eq!(ProbeResult::from_line(&r.to_line()), Some(r));
        assert_eq!(ProbeResult::from_line("{\"level\":\"INFO\"}"), None);
    }

    #[tokio::test]
    async fn handshake_fails_when_the_host_key_is_not_the_pinned_one() {
        let server_key = crate::keys::generate("probe-test-host").unwrap();
        let private = crate::keys::private_from_openssh(&server_key.private_openssh, "host").unwrap();
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
        let right = crate::keys::public_from_openssh(&server_key.public_openssh, "host").unwrap();
        let other = crate::keys::public_from_openssh(&crate::keys::generate("x").unwrap().public_openssh, "x").unwrap();
        let t = Duration::from_secs(5);
        let loopback = Host::Ip(std::net::Ipv4Addr::LOCALHOST.into());
        assert_eq!(handshake(&loopback, port, &right, t).await, Ok(()));
        let wrong = handshake(&loopback, port, &other, t).await.unwrap_err();
        assert!(wrong.contains("not the pinned one"), "{wrong}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(handshake(&loopback, closed, &right, t).await.is_err());
    }
}
