//! Tunnel endpoints (dataplane.md §2.2-2.3): this node's VXLAN device and
//! `tunl0` settings, and every remote node's VXLAN (node address, tunnel
//! address, MAC).
//!
//! The device MAC is `Node.spec.vxlanTunnelMACAddr` when set, else derived
//! so that every node computes the same MAC for a peer without asking it:
//! `0x66` followed by the first five bytes of SHA-1(node name), or of
//! SHA-1(node name + "-v6") for the IPv6 device. A VTEP needs both a node
//! address and a tunnel address of its family; a node missing either has
//! no VTEP in that family (its blocks then have no VXLAN route either).

use std::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::config::EffectiveConfig;
use crate::model::infra::NodeInfo;
use crate::model::items::format_mac;
use crate::state::{IpipState, LocalVtep, PeerVteps, Vtep, VxlanLocal};

/// The MAC a node's VXLAN device gets when its Node resource names none.
pub fn derived_mac(node: &str, v6: bool) -> String {
    let mut hasher = Sha1::new();
    hasher.update(node.as_bytes());
    if v6 {
        hasher.update(b"-v6");
    }
    let digest = hasher.finalize();
    let mut mac = [0x66u8; 6];
    mac[1..].copy_from_slice(&digest[..5]);
    format_mac(mac)
}

/// A node's VTEP in one family: (node address, tunnel address, MAC).
fn vtep(node: &NodeInfo, v6: bool) -> Option<Vtep> {
    let (node_addr, tunnel_addr, mac) = if v6 {
        (
            IpAddr::V6(node.ipv6?.addr()),
            IpAddr::V6(node.vxlan_tunnel_v6?),
            node.vxlan_mac_v6.clone(),
        )
    } else {
        (
            IpAddr::V4(node.ipv4?.addr()),
            IpAddr::V4(node.vxlan_tunnel_v4?),
            node.vxlan_mac_v4.clone(),
        )
    };
    Some(Vtep {
        node_addr,
        tunnel_addr,
        mac: mac.unwrap_or_else(|| derived_mac(&node.name, v6)),
    })
}

/// This node's VXLAN device settings.
pub fn local_vxlan(node: Option<&NodeInfo>, cfg: &EffectiveConfig) -> VxlanLocal {
    let local = |v6: bool, enabled: bool| {
        node.filter(|_| enabled)
            .and_then(|n| vtep(n, v6))
            .map(|v| LocalVtep {
                tunnel_addr: v.tunnel_addr,
                mac: v.mac,
                node_addr: v.node_addr,
            })
    };
    VxlanLocal {
        enabled_v4: cfg.vxlan_enabled_v4,
        enabled_v6: cfg.vxlan_enabled_v6,
        v4: local(false, cfg.vxlan_enabled_v4),
        v6: local(true, cfg.vxlan_enabled_v6),
    }
}

/// This node's `tunl0` settings.
pub fn local_ipip(node: Option<&NodeInfo>, cfg: &EffectiveConfig) -> IpipState {
    IpipState {
        enabled: cfg.ipip_enabled,
        tunnel_addr: node
            .filter(|_| cfg.ipip_enabled)
            .and_then(|n| n.ipip_tunnel),
    }
}

/// A remote node's VTEPs in the enabled families; `None` if it has none.
pub fn peer_vteps(peer: &NodeInfo, cfg: &EffectiveConfig) -> Option<PeerVteps> {
    let v = PeerVteps {
        v4: cfg.vxlan_enabled_v4.then(|| vtep(peer, false)).flatten(),
        v6: cfg.vxlan_enabled_v6.then(|| vtep(peer, true)).flatten(),
    };
    (v.v4.is_some() || v.v6.is_some()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_are_locally_administered_and_stable() {
        let mac = derived_mac("node-1", false);
        assert!(mac.starts_with("66:"));
        assert_eq!(mac, derived_mac("node-1", false));
        assert_ne!(mac, derived_mac("node-1", true));
        assert_ne!(mac, derived_mac("node-2", false));
        // SHA-1("node-1") = 7b2e...; first five bytes follow 0x66.
        let digest = Sha1::digest(b"node-1");
        assert_eq!(
            mac,
            format_mac([0x66, digest[0], digest[1], digest[2], digest[3], digest[4]])
        );
    }
}
