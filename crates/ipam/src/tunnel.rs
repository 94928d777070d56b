//! Tunnel-address conventions (ipam.md §7): the handle ID and attributes a
//! node uses for its IPIP, VXLAN and WireGuard tunnel addresses, so the
//! node daemon, `ipam check` and the garbage collector agree on them.

use std::collections::BTreeMap;

use crate::cidr::IpVersion;

/// The kind of tunnel an address is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Ipip,
    Vxlan,
    Wireguard,
}

/// Attribute keys (§7).
pub const ATTR_NODE: &str = "node";
pub const ATTR_TYPE: &str = "type";
pub const ATTR_POD: &str = "pod";
pub const ATTR_NAMESPACE: &str = "namespace";
pub const ATTR_TIMESTAMP: &str = "timestamp";

impl TunnelKind {
    /// The handle ID of this tunnel's address on `node` (e.g.
    /// `vxlan-tunnel-addr-node-1`, `vxlan-v6-tunnel-addr-node-1`).
    pub fn handle(self, version: IpVersion, node: &str) -> String {
        let prefix = match (self, version) {
            (TunnelKind::Ipip, _) => "ipip-tunnel-addr-",
            (TunnelKind::Vxlan, IpVersion::V4) => "vxlan-tunnel-addr-",
            (TunnelKind::Vxlan, IpVersion::V6) => "vxlan-v6-tunnel-addr-",
            (TunnelKind::Wireguard, IpVersion::V4) => "wireguard-tunnel-addr-",
            (TunnelKind::Wireguard, IpVersion::V6) => "wireguard-v6-tunnel-addr-",
        };
        format!("{prefix}{node}")
    }

    /// The `type` attribute (e.g. `vxlanTunnelAddress`).
    pub fn type_attr(self, version: IpVersion) -> &'static str {
        match (self, version) {
            (TunnelKind::Ipip, _) => "ipipTunnelAddress",
            (TunnelKind::Vxlan, IpVersion::V4) => "vxlanTunnelAddress",
            (TunnelKind::Vxlan, IpVersion::V6) => "vxlanV6TunnelAddress",
            (TunnelKind::Wireguard, IpVersion::V4) => "wireguardTunnelAddress",
            (TunnelKind::Wireguard, IpVersion::V6) => "wireguardV6TunnelAddress",
        }
    }

    /// Attributes of a tunnel allocation: `{node, type}`.
    pub fn attrs(self, version: IpVersion, node: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ATTR_NODE.to_string(), node.to_string()),
            (ATTR_TYPE.to_string(), self.type_attr(version).to_string()),
        ])
    }
}

/// Whether a `type` attribute names a tunnel address.
pub fn is_tunnel_type(value: &str) -> bool {
    matches!(
        value,
        "ipipTunnelAddress"
            | "vxlanTunnelAddress"
            | "vxlanV6TunnelAddress"
            | "wireguardTunnelAddress"
            | "wireguardV6TunnelAddress"
    )
}

/// The CNI handle of a workload: `<network>.<container-id>` (cni.md §3.3).
pub fn workload_handle(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        assert_eq!(
            TunnelKind::Ipip.handle(IpVersion::V4, "n1"),
            "ipip-tunnel-addr-n1"
        );
        assert_eq!(
            TunnelKind::Vxlan.handle(IpVersion::V4, "n1"),
            "vxlan-tunnel-addr-n1"
        );
        assert_eq!(
            TunnelKind::Vxlan.handle(IpVersion::V6, "n1"),
            "vxlan-v6-tunnel-addr-n1"
        );
        assert_eq!(
            TunnelKind::Wireguard.handle(IpVersion::V6, "n1"),
            "wireguard-v6-tunnel-addr-n1"
        );
        let a = TunnelKind::Vxlan.attrs(IpVersion::V6, "n1");
        assert_eq!(
            a.get("type").map(String::as_str),
            Some("vxlanV6TunnelAddress")
        );
        assert!(is_tunnel_type("wireguardTunnelAddress"));
        assert!(!is_tunnel_type("pod"));
        assert_eq!(
            workload_handle("k8s-pod-network", "abc"),
            "k8s-pod-network.abc"
        );
    }
}
