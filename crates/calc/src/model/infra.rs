//! Nodes, IP pools and profiles parsed into what routing, VXLAN, NAT and
//! policy need of them.
//!
//! Hard cases: a node's address comes from `spec.bgp.ipv4Address` (an IP
//! with its subnet, which CrossSubnet compares against) or else from an
//! `addresses[]` entry of type `CalicoNodeIP`; the virtual profile
//! `projectcalico-default-allow` is never stored yet always exists.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tortie_client::DEFAULT_ALLOW_PROFILE;
use tortie_model::ippool::{EncapMode, IPPoolSpec};
use tortie_model::node::NodeSpec;
use tortie_model::policy::ProfileSpec;
use tortie_model::rule::{Action, Rule};
use tortie_model::scalar::{parse_cidr, parse_ip, parse_mac};

use crate::model::items::format_mac;
use crate::rules::{ParsedRule, parse_rules};

/// What the calculation needs of a Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// The node's IPv4 address with its subnet.
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    pub vxlan_tunnel_v4: Option<Ipv4Addr>,
    pub vxlan_tunnel_v6: Option<Ipv6Addr>,
    pub vxlan_mac_v4: Option<String>,
    pub vxlan_mac_v6: Option<String>,
    pub ipip_tunnel: Option<Ipv4Addr>,
}

fn opt<T>(s: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if s.is_empty() {
        Ok(None)
    } else {
        f(s).map(Some)
    }
}

fn v4(field: &'static str) -> impl Fn(&str) -> Result<Ipv4Addr, String> {
    move |s| match parse_ip(s) {
        Ok(IpAddr::V4(a)) => Ok(a),
        _ => Err(format!("{field}: {s:?} is not an IPv4 address")),
    }
}

fn v6(field: &'static str) -> impl Fn(&str) -> Result<Ipv6Addr, String> {
    move |s| match parse_ip(s) {
        Ok(IpAddr::V6(a)) => Ok(a),
        _ => Err(format!("{field}: {s:?} is not an IPv6 address")),
    }
}

fn mac(field: &'static str) -> impl Fn(&str) -> Result<String, String> {
    move |s| {
        parse_mac(s)
            .map(format_mac)
            .map_err(|e| format!("{field}: {e}"))
    }
}

impl NodeInfo {
    pub fn parse(name: &str, spec: &NodeSpec) -> Result<NodeInfo, String> {
        let mut ipv4 = None;
        let mut ipv6 = None;
        let mut ipip_tunnel = None;
        if let Some(bgp) = &spec.bgp {
            ipv4 = opt(&bgp.ipv4_address, |s| match parse_cidr(s) {
                Ok(IpNet::V4(n)) => Ok(n),
                _ => Err(format!(
                    "spec.bgp.ipv4Address: {s:?} is not an IPv4 address"
                )),
            })?;
            ipv6 = opt(&bgp.ipv6_address, |s| match parse_cidr(s) {
                Ok(IpNet::V6(n)) => Ok(n),
                _ => Err(format!(
                    "spec.bgp.ipv6Address: {s:?} is not an IPv6 address"
                )),
            })?;
            ipip_tunnel = opt(
                &bgp.ipv4_ipip_tunnel_addr,
                v4("spec.bgp.ipv4IPIPTunnelAddr"),
            )?;
        }
        for a in spec
            .addresses
            .iter()
            .filter(|a| a.address_type == "CalicoNodeIP")
        {
            match parse_cidr(&a.address) {
                Ok(IpNet::V4(n)) if ipv4.is_none() => ipv4 = Some(n),
                Ok(IpNet::V6(n)) if ipv6.is_none() => ipv6 = Some(n),
                Ok(_) => {}
                Err(e) => return Err(format!("spec.addresses: {e}")),
            }
        }
        Ok(NodeInfo {
            name: name.to_string(),
            ipv4,
            ipv6,
            vxlan_tunnel_v4: opt(&spec.ipv4_vxlan_tunnel_addr, v4("spec.ipv4VXLANTunnelAddr"))?,
            vxlan_tunnel_v6: opt(&spec.ipv6_vxlan_tunnel_addr, v6("spec.ipv6VXLANTunnelAddr"))?,
            vxlan_mac_v4: opt(&spec.vxlan_tunnel_mac_addr, mac("spec.vxlanTunnelMACAddr"))?,
            vxlan_mac_v6: opt(
                &spec.vxlan_tunnel_mac_addr_v6,
                mac("spec.vxlanTunnelMACAddrV6"),
            )?,
            ipip_tunnel,
        })
    }

    /// The node's address of the family of `family_of`.
    pub fn address_for(&self, family_of: &IpNet) -> Option<IpAddr> {
        match family_of {
            IpNet::V4(_) => self.ipv4.map(|n| IpAddr::V4(n.addr())),
            IpNet::V6(_) => self.ipv6.map(|n| IpAddr::V6(n.addr())),
        }
    }

    /// True if `other`'s address is in this node's subnet (CrossSubnet).
    pub fn same_subnet(&self, other: &NodeInfo, family_of: &IpNet) -> bool {
        match family_of {
            IpNet::V4(_) => matches!((self.ipv4, other.ipv4),
                (Some(a), Some(b)) if a.trunc().contains(&b.addr())),
            IpNet::V6(_) => matches!((self.ipv6, other.ipv6),
                (Some(a), Some(b)) if a.trunc().contains(&b.addr())),
        }
    }
}

/// What the calculation needs of an IP pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub cidr: IpNet,
    pub vxlan_mode: EncapMode,
    pub ipip_mode: EncapMode,
    pub nat_outgoing: bool,
}

impl PoolInfo {
    pub fn parse(spec: &IPPoolSpec) -> Result<PoolInfo, String> {
        let cidr = parse_cidr(&spec.cidr).map_err(|e| format!("spec.cidr: {e}"))?;
        Ok(PoolInfo {
            cidr: cidr.trunc(),
            vxlan_mode: spec.vxlan_mode.unwrap_or(EncapMode::Never),
            ipip_mode: spec.ipip_mode.unwrap_or(EncapMode::Never),
            nat_outgoing: spec.nat_outgoing || spec.nat_outgoing_v1 == Some(true),
        })
    }
}

/// A parsed profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub ingress: Vec<ParsedRule>,
    pub egress: Vec<ParsedRule>,
    pub labels_to_apply: BTreeMap<String, String>,
}

impl Profile {
    pub fn parse(name: &str, spec: &ProfileSpec) -> Result<Profile, String> {
        Ok(Profile {
            name: name.to_string(),
            ingress: parse_rules(&spec.ingress, None, "spec.ingress")?,
            egress: parse_rules(&spec.egress, None, "spec.egress")?,
            labels_to_apply: spec.labels_to_apply.clone(),
        })
    }

    /// `projectcalico-default-allow`: allow everything both ways.
    pub fn default_allow() -> Profile {
        let allow = [Rule::action(Action::Allow)];
        Profile {
            name: DEFAULT_ALLOW_PROFILE.to_string(),
            ingress: parse_rules(&allow, None, "ingress").expect("an allow-all rule parses"),
            egress: parse_rules(&allow, None, "egress").expect("an allow-all rule parses"),
            labels_to_apply: BTreeMap::new(),
        }
    }

    pub fn rules(&self, direction: crate::policy::Direction) -> &[ParsedRule] {
        match direction {
            crate::policy::Direction::Ingress => &self.ingress,
            crate::policy::Direction::Egress => &self.egress,
        }
    }
}
