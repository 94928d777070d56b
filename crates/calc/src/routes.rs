//! Routes (dataplane.md §1.3, §2): local workload /32s (/128s), local
//! affine blocks as blackholes, remote blocks and borrowed remote workload
//! addresses via the peer (VXLAN, IPIP, or no encapsulation per the pool
//! and CrossSubnet), and remote VXLAN tunnel addresses on the device.
//!
//! Routes are produced per *source* — one workload, one block, one node's
//! tunnel — so a change recomputes only the sources it touches. Several
//! sources may want the same destination (a workload address that is
//! also claimed elsewhere); the candidate with the lowest priority wins,
//! ties broken by source, so the outcome never depends on update order.
//!
//! Hard cases: a remote workload's address inside a block affine to its
//! own node is covered by that block's route and gets no /32; one that is
//! borrowed (in another node's block, or in none) gets a /32 to its node.
//! A local block is a blackhole only once its affinity is confirmed.
//! IPIP and no-encap routes are programmed here only when
//! `programClusterRoutes` gives them to the node agent (otherwise the BGP
//! daemon owns them); VXLAN routes always are.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_ipam::affinity::AffinityState;
use tortie_model::ippool::EncapMode;

use crate::config::EffectiveConfig;
use crate::ids::{ItemKey, WorkloadId};
use crate::model::ClusterModel;
use crate::model::items::ItemKind;
use crate::state::RouteTarget;

/// What wants a route.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteSource {
    Workload(WorkloadId),
    /// A node's VXLAN tunnel addresses.
    Tunnel(String),
    Block(IpNet),
}

/// A route one source wants, with its priority (lower wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteCandidate {
    pub dst: IpNet,
    pub priority: u8,
    pub target: RouteTarget,
}

const PRIO_LOCAL_WORKLOAD: u8 = 0;
const PRIO_REMOTE_WORKLOAD: u8 = 1;
const PRIO_TUNNEL: u8 = 2;
const PRIO_BLOCK: u8 = 3;

/// How to reach addresses in `net` on node `peer` from `local`.
fn remote_target(
    model: &ClusterModel,
    local: &str,
    cfg: &EffectiveConfig,
    peer: &str,
    net: &IpNet,
) -> Option<RouteTarget> {
    let pool = model.pool_containing(net)?;
    let peer_node = model.node(peer)?;
    let peer_addr = peer_node.address_for(net)?;
    let same_subnet = model
        .node(local)
        .is_some_and(|l| l.same_subnet(peer_node, net));
    if pool.vxlan_mode != EncapMode::Never {
        let enabled = match net {
            IpNet::V4(_) => cfg.vxlan_enabled_v4,
            IpNet::V6(_) => cfg.vxlan_enabled_v6,
        };
        if !enabled {
            return None;
        }
        if pool.vxlan_mode == EncapMode::CrossSubnet && same_subnet {
            return Some(RouteTarget::NoEncap { gateway: peer_addr });
        }
        let tunnel = match net {
            IpNet::V4(_) => peer_node.vxlan_tunnel_v4.map(IpAddr::V4),
            IpNet::V6(_) => peer_node.vxlan_tunnel_v6.map(IpAddr::V6),
        }?;
        return Some(RouteTarget::Vxlan { gateway: tunnel });
    }
    if pool.ipip_mode != EncapMode::Never && net.addr().is_ipv4() {
        if !cfg.ipip_enabled || !cfg.program_cluster_routes.ipip() {
            return None;
        }
        if pool.ipip_mode == EncapMode::CrossSubnet && same_subnet {
            return Some(RouteTarget::NoEncap { gateway: peer_addr });
        }
        return Some(RouteTarget::Ipip { gateway: peer_addr });
    }
    cfg.program_cluster_routes
        .no_encap()
        .then_some(RouteTarget::NoEncap { gateway: peer_addr })
}

/// The routes `source` wants on node `local`.
pub fn routes_for(
    model: &ClusterModel,
    local: &str,
    cfg: &EffectiveConfig,
    source: &RouteSource,
) -> Vec<RouteCandidate> {
    match source {
        RouteSource::Workload(id) => {
            let Some(item) = model.item(&ItemKey::Workload(id.clone())) else {
                return Vec::new();
            };
            let ItemKind::Workload(w) = &item.kind else {
                return Vec::new();
            };
            if w.node == local {
                if w.iface.is_empty() {
                    return Vec::new();
                }
                return item
                    .nets
                    .iter()
                    .map(|n| RouteCandidate {
                        dst: *n,
                        priority: PRIO_LOCAL_WORKLOAD,
                        target: RouteTarget::Workload {
                            iface: w.iface.clone(),
                        },
                    })
                    .collect();
            }
            item.nets
                .iter()
                .filter(|n| {
                    model
                        .block_containing(n.addr())
                        .is_none_or(|(_, owner)| owner != w.node)
                })
                .filter_map(|n| {
                    remote_target(model, local, cfg, &w.node, n).map(|target| RouteCandidate {
                        dst: *n,
                        priority: PRIO_REMOTE_WORKLOAD,
                        target,
                    })
                })
                .collect()
        }
        RouteSource::Tunnel(node) => {
            let Some(n) = model.node(node).filter(|_| node != local) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            if cfg.vxlan_enabled_v4
                && let (Some(t), Some(_)) = (n.vxlan_tunnel_v4, n.ipv4)
            {
                out.push(RouteCandidate {
                    dst: IpNet::from(IpAddr::V4(t)),
                    priority: PRIO_TUNNEL,
                    target: RouteTarget::VxlanTunnelAddress,
                });
            }
            if cfg.vxlan_enabled_v6
                && let (Some(t), Some(_)) = (n.vxlan_tunnel_v6, n.ipv6)
            {
                out.push(RouteCandidate {
                    dst: IpNet::from(IpAddr::V6(t)),
                    priority: PRIO_TUNNEL,
                    target: RouteTarget::VxlanTunnelAddress,
                });
            }
            out
        }
        RouteSource::Block(cidr) => {
            let Some(owner) = model.block_owner(cidr) else {
                return Vec::new();
            };
            let target = if owner == local {
                (model.affinity(local, cidr) == Some(AffinityState::Confirmed))
                    .then_some(RouteTarget::Blackhole)
            } else {
                remote_target(model, local, cfg, owner, cidr)
            };
            target
                .map(|target| RouteCandidate {
                    dst: *cidr,
                    priority: PRIO_BLOCK,
                    target,
                })
                .into_iter()
                .collect()
        }
    }
}

/// Every route source in the model (for a full recomputation).
pub fn all_sources(model: &ClusterModel) -> Vec<RouteSource> {
    let mut out: Vec<RouteSource> = model
        .items()
        .filter_map(|i| match &i.kind {
            ItemKind::Workload(w) => Some(RouteSource::Workload(w.id.clone())),
            _ => None,
        })
        .collect();
    out.extend(model.nodes().map(|n| RouteSource::Tunnel(n.name.clone())));
    out.extend(model.blocks().map(|(c, _)| RouteSource::Block(*c)));
    out
}
