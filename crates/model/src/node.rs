//! The Node kind (resources.md §8): a host's addresses, BGP identity and
//! tunnel addresses. Normally written by the node daemon at start-up.

use serde::{Deserialize, Serialize};

use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::scalar::AsNumber;
use crate::validate::{Checker, quoted};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr: String,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr_v6: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBGPSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_ipip_tunnel_addr: String,
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "String::is_empty"
    )]
    pub route_reflector_cluster_id: String,
}

impl NodeBGPSpec {
    fn is_empty(&self) -> bool {
        *self == NodeBGPSpec::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub orchestrator: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeWireguardSpec {
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv4_address: String,
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv6_address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(default)]
    pub address: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub address_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInterface {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// Checks an "IP with prefix" field (`10.0.0.5/24`, host bits allowed) of one family.
fn ip_with_prefix(c: &mut Checker, path: &str, s: &str, v4: bool) {
    let Some(net) = c.cidr(path, s) else { return };
    if net.addr().is_ipv4() != v4 {
        c.bad(
            path,
            quoted(s),
            if v4 {
                "must be an IPv4 address"
            } else {
                "must be an IPv6 address"
            },
        );
    }
}

impl SpecRules for NodeSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        if let Some(a) = self.bgp.as_mut().and_then(|b| b.as_number.as_mut()) {
            *a = a.normalised();
        }
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if let Some(bgp) = &self.bgp {
            if bgp.is_empty() {
                c.fail(
                    "spec.bgp",
                    "is present but empty: remove it or set an address",
                );
            }
            if let Some(a) = &bgp.as_number {
                c.as_number("spec.bgp.asNumber", a);
            }
            if !bgp.ipv4_address.is_empty() {
                ip_with_prefix(c, "spec.bgp.ipv4Address", &bgp.ipv4_address, true);
            }
            if !bgp.ipv6_address.is_empty() {
                ip_with_prefix(c, "spec.bgp.ipv6Address", &bgp.ipv6_address, false);
            }
            if !bgp.ipv4_ipip_tunnel_addr.is_empty() {
                c.ipv4("spec.bgp.ipv4IPIPTunnelAddr", &bgp.ipv4_ipip_tunnel_addr);
            }
            if !bgp.route_reflector_cluster_id.is_empty() {
                c.ipv4(
                    "spec.bgp.routeReflectorClusterID",
                    &bgp.route_reflector_cluster_id,
                );
            }
        }
        if !self.ipv4_vxlan_tunnel_addr.is_empty() {
            c.ipv4("spec.ipv4VXLANTunnelAddr", &self.ipv4_vxlan_tunnel_addr);
        }
        if !self.ipv6_vxlan_tunnel_addr.is_empty() {
            c.ipv6("spec.ipv6VXLANTunnelAddr", &self.ipv6_vxlan_tunnel_addr);
        }
        if !self.vxlan_tunnel_mac_addr.is_empty() {
            c.mac("spec.vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr);
        }
        if !self.vxlan_tunnel_mac_addr_v6.is_empty() {
            c.mac("spec.vxlanTunnelMACAddrV6", &self.vxlan_tunnel_mac_addr_v6);
        }
        if let Some(wg) = &self.wireguard {
            if !wg.interface_ipv4_address.is_empty() {
                c.ipv4(
                    "spec.wireguard.interfaceIPv4Address",
                    &wg.interface_ipv4_address,
                );
            }
            if !wg.interface_ipv6_address.is_empty() {
                c.ipv6(
                    "spec.wireguard.interfaceIPv6Address",
                    &wg.interface_ipv6_address,
                );
            }
        }
        for (i, r) in self.orch_refs.iter().enumerate() {
            if r.orchestrator.is_empty() {
                c.fail(format!("spec.orchRefs[{i}].orchestrator"), "is required");
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let p = format!("spec.addresses[{i}]");
            c.cidr(&format!("{p}.address"), &a.address);
            if !a.address_type.is_empty() {
                c.one_of(
                    &format!("{p}.type"),
                    &a.address_type,
                    &["CalicoNodeIP", "InternalIP", "ExternalIP"],
                );
            }
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            let p = format!("spec.interfaces[{i}]");
            c.interface_name(&format!("{p}.name"), &iface.name);
            for (j, a) in iface.addresses.iter().enumerate() {
                c.cidr(&format!("{p}.addresses[{j}]"), a);
            }
        }
    }
}
