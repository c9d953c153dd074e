//! Host addresses read from a cluster, checked before they reach an OpenSSH configuration, a known_hosts file or a
//! command line. A Node's `status.addresses` and a Service's load-balancer hostname are written by parties the DR
//! side does not trust (a source node's kubelet may set its own addresses, and the API server does not check their
//! form): a value such as `10.0.0.1\n  ProxyCommand …` pasted into an ssh configuration runs a command in the DR
//! copy pod. Only an IP address, or where a name is allowed a strict DNS-1123 name, passes; the text written out is
//! always re-rendered from the parsed value, never the input.

use std::fmt;
use std::net::IpAddr;

/// Longest DNS name accepted (RFC 1123).
const NAME_MAX: usize = 253;
/// Longest label of a DNS name.
const LABEL_MAX: usize = 63;

/// A host an OpenSSH client may be pointed at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A lowercase DNS-1123 name (for example a cloud load balancer's hostname).
    Name(String),
}

/// Why a value is not a usable host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The value is empty.
    #[error("the address is empty")]
    Empty,
    /// Whitespace or a control character, which could end a line of a configuration file and start another.
    #[error("the address {0:?} contains whitespace or control characters")]
    Control(String),
    /// Not an IP address, where only addresses are allowed.
    #[error("{0:?} is not an IP address")]
    NotAnIp(String),
    /// Neither an IP address nor a DNS-1123 name.
    #[error("{0:?} is neither an IP address nor a DNS name")]
    NotAName(String),
}

impl Host {
    /// Parses `text` as an IP address; a DNS-1123 name too when `allow_name`. Anything with whitespace or control
    /// characters is refused first, whatever else it contains.
    pub fn parse(text: &str, allow_name: bool) -> Result<Host, AddressError> {
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddressError::Control(text.to_string()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if !allow_name {
            return Err(AddressError::NotAnIp(text.to_string()));
        }
        if is_dns_name(text) { Ok(Host::Name(text.to_string())) } else { Err(AddressError::NotAName(text.to_string())) }
    }

    /// `host:port`, with an IPv6 address in brackets.
    pub fn with_port(&self, port: u16) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{self}:{port}"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Whether `text` is a lowercase DNS-1123 subdomain: dot-separated labels of `a-z`, `0-9` and inner `-`.
pub fn is_dns_name(text: &str) -> bool {
    text.len() <= NAME_MAX
        && text.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= LABEL_MAX
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Values a compromised node or Service could report, and what each must parse to.
    #[test]
    fn parse_accepts_only_addresses_and_strict_names_when_given_hostile_values() {
        let cases: &[(&str, bool, Result<&str, &str>)] = &[
            ("10.0.0.1", false, Ok("10.0.0.1")),
            ("fd00::1", false, Ok("fd00::1")),
            ("lb-1.example.internal", true, Ok("lb-1.example.internal")),
            ("lb-1.example.internal", false, Err("NotAnIp")),
            ("10.0.0.1\n  ProxyCommand sh -c 'id > /data/pwned'", false, Err("Control")),
            ("10.0.0.1\r\nProxyCommand x", true, Err("Control")),
            ("10.0.0.1 ProxyCommand=x", true, Err("Control")),
            ("10.0.0.1\tPort 22", true, Err("Control")),
            ("a\u{0}b", true, Err("Control")),
            ("host\u{85}x", true, Err("Control")),
            ("", true, Err("Empty")),
            ("-oProxyCommand=x", true, Err("NotAName")),
            ("UPPER.example", true, Err("NotAName")),
            ("a..b", true, Err("NotAName")),
            ("%h", true, Err("NotAName")),
            ("a/b", true, Err("NotAName")),
            ("10.0.0.1:22", false, Err("NotAnIp")),
        ];
        for (text, allow_name, expected) in cases {
            let got = Host::parse(text, *allow_name);
            match (expected, &got) {
                (Ok(rendered), Ok(host)) => assert_eq!(&host.to_string(), rendered, "{text:?}"),
                (Err(kind), Err(error)) => assert!(format!("{error:?}").starts_with(kind), "{text:?}: {error:?}"),
                _ => panic!("{text:?} (names allowed: {allow_name}): expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn with_port_brackets_ipv6_when_the_host_is_an_ipv6_address() {
        assert_eq!(Host::parse("fd00::1", false).unwrap().with_port(22), "[fd00::1]:22");
        assert_eq!(Host::parse("10.1.2.3", false).unwrap().with_port(22), "10.1.2.3:22");
        assert_eq!(Host::parse("lb.x", true).unwrap().with_port(2222), "lb.x:2222");
    }

    #[test]
    fn is_dns_name_enforces_label_and_name_lengths_when_names_are_long() {
        assert!(is_dns_name(&"a".repeat(63)));
        assert!(!is_dns_name(&"a".repeat(64)));
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(!is_dns_name(&long));
    }
}
