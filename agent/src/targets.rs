//! Which addresses the bastion relays to at all, whatever the policy lists: only the rsync pods' port, and only
//! pod addresses — never loopback, link-local (the cloud metadata service), unspecified, multicast or broadcast
//! addresses, and, when the pod networks are given (`--target-network`), nothing outside them. A policy Secret
//! that someone else managed to write can then still not turn the agent into a proxy to the node itself, the API
//! server's host network or the metadata service.

use std::net::{IpAddr, SocketAddr};

use dr_syncer_wire::policy::Refusal;

/// A network in CIDR notation: `10.244.0.0/16`, `fd00:10:244::/56`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not ADDRESS/PREFIX"))?;
        let address: IpAddr = address.parse().map_err(|_| format!("{address:?} is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("bad prefix in {text:?}"))?;
        Ok(Network { address, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The bastion's limits on relay targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRules {
    /// The only port relayed to (the rsync pods' SSH port).
    pub port: u16,
    /// Pod networks; when not empty, only addresses inside them are relayed to (and these may then include
    /// ranges that are otherwise refused, such as loopback for tests on one machine).
    pub networks: Vec<Network>,
}

impl TargetRules {
    /// Checks `address` against the rules.
    pub fn check(&self, address: SocketAddr) -> Result<(), Refusal> {
        let refused = || Refusal::NotAllowedTarget(address.to_string());
        if address.port() != self.port {
            return Err(refused());
        }
        let ip = address.ip().to_canonical();
        if !self.networks.is_empty() {
            return if self.networks.iter().any(|n| n.contains(ip)) { Ok(()) } else { Err(refused()) };
        }
        let special = match ip {
            IpAddr::V4(v4) => {
                v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()
            }
        };
        if special { Err(refused()) } else { Ok(()) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn check_relays_only_to_the_rsync_port_of_pod_addresses_when_rules_apply() {
        let open = TargetRules { port: 2022, networks: vec![] };
        let pods = TargetRules { port: 2022, networks: vec![Network::parse("10.244.0.0/16").unwrap()] };
        let cases: &[(&TargetRules, &str, bool)] = &[
            (&open, "10.244.1.7:2022", true),
            (&open, "10.244.1.7:22", false),
            (&open, "10.244.1.7:10250", false),
            (&open, "127.0.0.1:2022", false),
            (&open, "169.254.169.254:2022", false),
            (&open, "0.0.0.0:2022", false),
            (&open, "255.255.255.255:2022", false),
            (&open, "224.0.0.1:2022", false),
            (&open, "[::1]:2022", false),
            (&open, "[fe80::1]:2022", false),
            (&open, "[::ffff:127.0.0.1]:2022", false),
            (&pods, "10.244.1.7:2022", true),
            (&pods, "10.96.0.1:2022", false),
            (&pods, "[::ffff:10.244.0.9]:2022", true),
        ];
        for (rules, address, allowed) in cases {
            let got = rules.check(address.parse().unwrap());
            assert_eq!(got.is_ok(), *allowed, "{address} with {rules:?}: {got:?}");
        }
        let loopback = TargetRules { port: 2022, networks: vec![Network::parse("127.0.0.0/8").unwrap()] };
        assert!(loopback.check("127.0.0.1:2022".parse().unwrap()).is_ok(), "named networks are taken as given");
    }

    #[test]
    fn network_parse_refuses_when_the_text_is_not_cidr() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "fd00::/129", "10.0.0.0/-1"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        assert!(Network::parse("fd00:10:244::/56").unwrap().contains("fd00:10:244::5".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}
