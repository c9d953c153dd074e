//! The arguments and result lines of `dr-syncer-agent probe` (an SSH handshake with each source agent, its host key
//! pinned, run from a short-lived pod in the DR cluster): the controller writes the arguments and reads the lines.

use russh::keys::PublicKey;
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

/// A host key an agent may present: that of one node's agent, or (`node` none) of any target's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownKey {
    /// The node whose agent has this key; `None` for a key any target may present.
    pub node: Option<String>,
    /// The public key.
    pub key: PublicKey,
}

impl KnownKey {
    /// Parses `NODE=KEY` or `*=KEY`, KEY an OpenSSH Ed25519 public key line.
    pub fn parse(text: &str) -> Result<KnownKey, String> {
        let (node, key) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NODE=KEY or *=KEY"))?;
        if node.is_empty() || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{node:?} is not a node name or *"));
        }
        let key = crate::keys::public_from_openssh(key, &format!("host key of {node}")).map_err(|e| e.to_string())?;
        Ok(KnownKey { node: (node != "*").then(|| node.to_string()), key })
    }

    /// The `NODE=KEY` or `*=KEY` form.
    pub fn to_arg(&self) -> String {
        let key = self.key.to_openssh().unwrap_or_default();
        format!("{}={key}", self.node.as_deref().unwrap_or("*"))
    }

    /// Whether an agent on `node` may present this key.
    pub fn applies_to(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }
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
    fn known_key_parse_takes_node_or_star_and_refuses_other_forms() {
        let key = crate::keys::generate("k").unwrap().public_openssh;
        let parsed = KnownKey::parse(&format!("n1={key}")).unwrap();
        assert_eq!(parsed.node.as_deref(), Some("n1"));
        assert_eq!(KnownKey::parse(&parsed.to_arg()).unwrap(), parsed);
        assert_eq!(KnownKey::parse(&format!("*={key}")).unwrap().node, None);
        for bad in [key.clone(), format!("={key}"), format!("n 1={key}"), "n1=ssh-ed25519 AAAA".into(), "n1=".into()] {
            assert!(KnownKey::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn result_lines_round_trip_and_other_lines_are_ignored() {
        let r = ProbeResult { node: "n".into(), address: "h:1".into(), connected: false, error: Some("x".into()) };
        assert_eq!(ProbeResult::from_line(&r.to_line()), Some(r));
        assert_eq!(ProbeResult::from_line("{\"level\":\"INFO\"}"), None);
    }
}
