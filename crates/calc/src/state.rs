//! The output: this node's desired dataplane state, as plain serialisable
//! data the reconcilers consume (STYLE.md §2: handlers update desired
//! state; reconcilers diff it against the kernel).
//!
//! Everything is keyed the way the dataplane keys it — workload endpoints
//! by host interface, routes by destination prefix, IP sets by ID — and
//! held in ordered maps so that two calculations of the same datastore
//! state compare (and serialise) identically, whatever the update order.
//!
//! References are by ID: an endpoint lists policy IDs, a compiled rule
//! lists IP set IDs; every ID referenced is present in the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use tortie_model::rule::Action;

use crate::config::EffectiveConfig;
use crate::ids::{PolicyId, WorkloadId};
use crate::policy::TierAction;
use crate::rules::{IcmpMatch, IpFamily, NamedPortProtocol, PortRange};

/// The whole desired state of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalState {
    pub config: EffectiveConfig,
    /// Selector IP sets by ID (`s:…`).
    pub ip_sets: BTreeMap<String, IpSetMembers>,
    /// Named-port IP sets by ID (`n:…`).
    pub named_port_sets: BTreeMap<String, BTreeSet<NamedPortMember>>,
    /// Policies used by local endpoints (or hinted as needed everywhere).
    pub policies: BTreeMap<PolicyId, CompiledPolicy>,
    /// Profiles used by local endpoints.
    pub profiles: BTreeMap<String, CompiledProfile>,
    /// Local workload endpoints by host-side interface name.
    pub workload_endpoints: BTreeMap<String, LocalWorkloadEndpoint>,
    /// Local host endpoints by resource name.
    pub host_endpoints: BTreeMap<String, LocalHostEndpoint>,
    /// Routes by destination.
    pub routes: BTreeMap<IpNet, RouteTarget>,
    pub vxlan: VxlanState,
    pub ipip: IpipState,
    pub nat_outgoing: NatOutgoing,
}

/// Members of a selector IP set, per family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpSetMembers {
    pub v4: BTreeSet<Ipv4Net>,
    pub v6: BTreeSet<Ipv6Net>,
}

impl IpSetMembers {
    pub fn insert(&mut self, net: IpNet) -> bool {
        match net {
            IpNet::V4(n) => self.v4.insert(n),
            IpNet::V6(n) => self.v6.insert(n),
        }
    }

    pub fn remove(&mut self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => self.v4.remove(n),
            IpNet::V6(n) => self.v6.remove(n),
        }
    }

    pub fn contains(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => self.v4.contains(n),
            IpNet::V6(n) => self.v6.contains(n),
        }
    }

    /// True if `addr` falls in any member net.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(&a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Every member, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.v4
            .iter()
            .map(|n| IpNet::V4(*n))
            .chain(self.v6.iter().map(|n| IpNet::V6(*n)))
    }
}

/// A member of a named-port set: an address with a protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamedPortMember {
    pub addr: IpAddr,
    pub protocol: NamedPortProtocol,
    pub port: u16,
}

/// A policy compiled for the dataplane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompiledPolicy {
    pub tier: String,
    pub ingress: Vec<CompiledRule>,
    pub egress: Vec<CompiledRule>,
    /// `doNotTrack`: render in the raw table.
    pub untracked: bool,
    /// `preDNAT`: render in mangle PREROUTING.
    pub pre_dnat: bool,
}

/// A profile compiled for the dataplane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompiledProfile {
    pub ingress: Vec<CompiledRule>,
    pub egress: Vec<CompiledRule>,
}

/// One rule with every selector replaced by an IP set ID. All criteria
/// present must match; list criteria match any entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompiledRule {
    /// Position of the rule in its policy's list (for comments and logs).
    pub index: usize,
    pub action: Action,
    /// The only family the rule can match; `None` = both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<IpFamily>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    pub source: CompiledEntity,
    pub destination: CompiledEntity,
}

/// The source or destination criteria of a compiled rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompiledEntity {
    /// Address in any of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<IpNet>,
    /// Address in none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<IpNet>,
    /// Address in this selector IP set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_set: Option<String>,
    /// Address not in this selector IP set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ip_set: Option<String>,
    /// Port in any of these ranges, OR (address, protocol, port) in any of
    /// `named_port_sets`. Both empty: any port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_port_sets: Vec<String>,
    /// Port in none of these ranges AND (address, protocol, port) in none
    /// of `not_named_port_sets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<PortRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_named_port_sets: Vec<String>,
}

/// One participating tier of an endpoint, in one direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierPolicies {
    pub name: String,
    /// What happens when no policy in the tier decides (`Deny` drops).
    pub default_action: TierAction,
    /// Applicable enforced policies, in evaluation order. Staged policies
    /// are never enforced and never listed; a tier whose applicable
    /// policies are all staged passes and is omitted.
    pub policies: Vec<PolicyId>,
}

/// The policy an endpoint applies in one direction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyChain {
    /// Participating tiers in order.
    pub tiers: Vec<TierPolicies>,
    /// Profiles evaluated after the tiers, in order (only existing ones).
    pub profiles: Vec<String>,
}

/// A workload endpoint on this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalWorkloadEndpoint {
    pub id: WorkloadId,
    pub iface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub ipv4: Vec<Ipv4Net>,
    pub ipv6: Vec<Ipv6Net>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<IpNet>,
    /// Traffic to the workload.
    pub ingress: PolicyChain,
    /// Traffic from the workload.
    pub egress: PolicyChain,
}

/// Tiers per direction, for the host-endpoint classes without profiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TierLists {
    pub ingress: Vec<TierPolicies>,
    pub egress: Vec<TierPolicies>,
}

/// A host endpoint on this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalHostEndpoint {
    /// The interface; `*` for all; `None` to find it by `expected_ips`.
    pub iface: Option<String>,
    pub expected_ips: Vec<IpAddr>,
    /// Traffic to the host through this endpoint (normal policies, then
    /// profiles).
    pub ingress: PolicyChain,
    /// Traffic from the host through this endpoint.
    pub egress: PolicyChain,
    /// Forwarded traffic (`applyOnForward` policies); when a direction has
    /// no tiers the host-endpoint layer allows forwarded traffic.
    pub forward: TierLists,
    /// `preDNAT` policies (ingress only); every tier's default action is
    /// `Pass` (an Allow accepts, a Deny drops, otherwise normal policy runs).
    pub pre_dnat: TierLists,
    /// `doNotTrack` policies; every tier's default action is `Pass`.
    pub untracked: TierLists,
}

/// Where a route sends traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RouteTarget {
    /// A local workload: `dev <iface> scope link`.
    Workload { iface: String },
    /// A block affine to this node: `blackhole <block>`; the more specific
    /// workload routes win.
    Blackhole,
    /// A remote block over VXLAN: `via <gateway> dev vxlan.calico onlink`
    /// (`vxlan-v6.calico` for IPv6); the gateway is the peer's tunnel address.
    Vxlan { gateway: IpAddr },
    /// A remote VXLAN tunnel address, directly on the VXLAN device.
    VxlanTunnelAddress,
    /// A remote block over IPIP: `via <peer node IP> dev tunl0 onlink`.
    Ipip { gateway: IpAddr },
    /// A remote block without encapsulation: `via <peer node IP>` on the
    /// interface that holds this node's address (the dataplane resolves it).
    NoEncap { gateway: IpAddr },
}

/// This node's VXLAN tunnel endpoint in one family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalVtep {
    pub tunnel_addr: IpAddr,
    pub mac: String,
    /// The node address the device sends from (its parent interface holds it).
    pub node_addr: IpAddr,
}

/// A remote node's VXLAN tunnel endpoint in one family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vtep {
    pub node_addr: IpAddr,
    pub tunnel_addr: IpAddr,
    pub mac: String,
}

/// A remote node's VTEPs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerVteps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v4: Option<Vtep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<Vtep>,
}

/// This node's own VXLAN settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanLocal {
    /// `vxlan.calico` wanted (some IPv4 pool uses VXLAN, or configured).
    pub enabled_v4: bool,
    /// `vxlan-v6.calico` wanted.
    pub enabled_v6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v4: Option<LocalVtep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<LocalVtep>,
}

/// VXLAN: the local device and the remote VTEPs (neighbour + FDB entries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanState {
    pub local: VxlanLocal,
    /// Remote nodes by name (only when the family is enabled).
    pub peers: BTreeMap<String, PeerVteps>,
}

/// IPIP (dataplane.md §2.3): whether `tunl0` is wanted and its address.
/// Kernels built without IPIP cannot honour it; the dataplane reports that.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpipState {
    /// Some IP pool uses IPIP (or it is configured on).
    pub enabled: bool,
    /// This node's IPIP tunnel address (`Node.spec.bgp.ipv4IPIPTunnelAddr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_addr: Option<std::net::Ipv4Addr>,
}

/// NAT outgoing: masquerade from `masquerade_pools` to anything outside
/// `all_pools`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatOutgoing {
    pub masquerade_pools: BTreeSet<IpNet>,
    pub all_pools: BTreeSet<IpNet>,
}

/// Splits workload addresses by family.
pub(crate) fn split_families(nets: &[IpNet]) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in nets {
        match n {
            IpNet::V4(n) => v4.push(*n),
            IpNet::V6(n) => v6.push(*n),
        }
    }
    (v4, v6)
}
