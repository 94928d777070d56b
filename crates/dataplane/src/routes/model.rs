//! The routes reconciler's vocabulary: what the daemon asks for
//! ([`Route`], keyed by [`RouteKey`] as the kernel keys it) and what the
//! kernel holds ([`KernelRoute`], with interface indexes instead of names).
//!
//! Hard cases: keys are normalised (network address, IPv6 metric 0 means
//! the kernel's 1024) so that a desired route and its dumped copy compare
//! equal; IPv6 has no route scopes (the kernel reports universe whatever
//! was sent), so only IPv4 device routes carry scope link.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The route protocol tortie tags its routes with (`ip route show proto
/// 80`). It is Calico's own number: Calico writes its blackholes with 80
/// when `DeviceRouteProtocol` is the default 3 (spec/dataplane.md §2.1).
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 80;
/// `RTPROT_BOOT`, Felix's default `DeviceRouteProtocol`.
pub const RTPROT_BOOT: u8 = 3;
/// `RTPROT_KERNEL`: routes the kernel derives from addresses.
pub const RTPROT_KERNEL: u8 = 2;
/// `IPv4NormalRoutePriority` / `IPv6NormalRoutePriority`.
pub const NORMAL_ROUTE_PRIORITY: u32 = 1024;
/// `IPv4ElevatedRoutePriority` / `IPv6ElevatedRoutePriority` (live migration).
pub const ELEVATED_ROUTE_PRIORITY: u32 = 512;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// The protocol tag for a configured `DeviceRouteProtocol`: the value
/// itself, unless it is `boot` (3) — a tag shared with every route added
/// by hand, so useless for ownership — in which case
/// [`DEFAULT_ROUTE_PROTOCOL`].
pub fn route_protocol(device_route_protocol: u8) -> u8 {
    if device_route_protocol == RTPROT_BOOT {
        DEFAULT_ROUTE_PROTOCOL
    } else {
        device_route_protocol
    }
}

/// A route's identity in the kernel: table, destination, metric and TOS.
/// Two routes with the same key cannot coexist; replacing one takes the
/// destination over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub table: u32,
    pub dst: IpNet,
    pub metric: u32,
    pub tos: u8,
}

impl RouteKey {
    /// A main-table key with TOS 0.
    pub fn new(dst: IpNet, metric: u32) -> RouteKey {
        RouteKey {
            table: MAIN_TABLE,
            dst,
            metric,
            tos: 0,
        }
        .normalised()
    }

    /// The form the kernel reports: the network address of `dst`, and for
    /// IPv6 metric 0 read as 1024 (the kernel's `IP6_RT_PRIO_USER`).
    pub fn normalised(self) -> RouteKey {
        let metric = match (self.dst, self.metric) {
            (IpNet::V6(_), 0) => NORMAL_ROUTE_PRIORITY,
            (_, m) => m,
        };
        RouteKey {
            dst: self.dst.trunc(),
            metric,
            ..self
        }
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.dst, IpNet::V6(_))
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} metric {}", self.dst, self.metric)?;
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        if self.tos != 0 {
            write!(f, " tos {}", self.tos)?;
        }
        Ok(())
    }
}

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// `dev <iface> scope link`: a workload /32 (/128) or a peer's tunnel
    /// address on the VXLAN device.
    Device { iface: String },
    /// `via <gateway> dev <iface> [onlink]`: a remote block through a
    /// tunnel (`via <peer tunnel IP> dev vxlan.calico onlink`, `via <peer
    /// node IP> dev tunl0 onlink`) or, CrossSubnet / no encapsulation,
    /// through the parent interface.
    Gateway {
        gateway: IpAddr,
        iface: String,
        onlink: bool,
    },
    /// `blackhole <block>`: the node's own affine blocks.
    Blackhole,
}

impl RouteTarget {
    /// The interface the route needs up, if any.
    pub fn iface(&self) -> Option<&str> {
        match self {
            RouteTarget::Device { iface } | RouteTarget::Gateway { iface, .. } => Some(iface),
            RouteTarget::Blackhole => None,
        }
    }
}

/// A route the daemon wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub key: RouteKey,
    pub target: RouteTarget,
    /// Path MTU (`mtu <n>`), set on routes over tunnels.
    pub mtu: Option<u32>,
}

/// The kernel's route type, as far as tortie cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Blackhole,
    /// Any other type (local, unreachable, multipath...): never what we
    /// want, so a route of ours with it is replaced or removed.
    Other,
}

/// A route as installed (or to be installed) in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    pub key: RouteKey,
    pub kind: RouteKind,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub onlink: bool,
    /// Scope link (IPv4 device routes only; IPv6 has no scopes).
    pub scope_link: bool,
    pub protocol: u8,
    pub mtu: Option<u32>,
}

/// An interface as the routes reconciler needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInterface {
    pub index: u32,
    /// Oper-up (IFF_RUNNING): routes are only programmed on running links.
    pub up: bool,
}

impl Route {
    /// The kernel form of this route, or `None` while its interface is
    /// absent or down (the route is then pending).
    pub fn resolve(
        &self,
        protocol: u8,
        iface: impl Fn(&str) -> Option<RouteInterface>,
    ) -> Option<KernelRoute> {
        let up_index = |name: &str| iface(name).filter(|i| i.up).map(|i| i.index);
        let (kind, oif, gateway, onlink, scope_link) = match &self.target {
            RouteTarget::Device { iface } => (
                RouteKind::Unicast,
                Some(up_index(iface)?),
                None,
                false,
                !self.key.is_ipv6(),
            ),
            RouteTarget::Gateway {
                gateway,
                iface,
                onlink,
            } => (
                RouteKind::Unicast,
                Some(up_index(iface)?),
                Some(*gateway),
                *onlink,
                false,
            ),
            RouteTarget::Blackhole => (RouteKind::Blackhole, None, None, false, false),
        };
        Some(KernelRoute {
            key: self.key,
            kind,
            oif,
            gateway,
            onlink,
            scope_link,
            protocol,
            mtu: self.mtu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn keys_take_the_kernels_form() {
        let k = RouteKey::new(net("10.1.2.3/24"), 0);
        assert_eq!(k.dst, net("10.1.2.0/24"));
        assert_eq!(k.metric, 0);
        let k6 = RouteKey::new(net("fd00::1/64"), 0);
        assert_eq!((k6.dst, k6.metric), (net("fd00::/64"), 1024));
        assert_eq!(k6.to_string(), "fd00::/64 metric 1024");
        let other = RouteKey {
            table: 100,
            tos: 4,
            ..k
        };
        assert_eq!(other.to_string(), "10.1.2.0/24 metric 0 table 100 tos 4");
    }

    #[test]
    fn protocol_follows_device_route_protocol() {
        assert_eq!(route_protocol(3), 80);
        assert_eq!(route_protocol(99), 99);
    }

    #[test]
    fn routes_resolve_only_on_running_interfaces() {
        let up = |name: &str| (name == "cali1").then_some(RouteInterface { index: 7, up: true });
        let down = |_: &str| {
            Some(RouteInterface {
                index: 7,
                up: false,
            })
        };
        let dev = Route {
            key: RouteKey::new(net("10.0.0.5/32"), 1024),
            target: RouteTarget::Device {
                iface: "cali1".into(),
            },
            mtu: None,
        };
        let k = dev.resolve(80, up).expect("up");
        assert_eq!((k.oif, k.scope_link, k.protocol), (Some(7), true, 80));
        assert_eq!(dev.resolve(80, down), None);
        assert_eq!(dev.resolve(80, |_: &str| None), None);

        let v6 = Route {
            key: RouteKey::new(net("fd00::5/128"), 1024),
            ..dev.clone()
        };
        assert!(!v6.resolve(80, up).expect("up").scope_link);

        let hole = Route {
            key: RouteKey::new(net("10.0.1.0/26"), 1024),
            target: RouteTarget::Blackhole,
            mtu: None,
        };
        let k = hole
            .resolve(80, |_: &str| None)
            .expect("needs no interface");
        assert_eq!((k.kind, k.oif), (RouteKind::Blackhole, None));

        let via = Route {
            key: RouteKey::new(net("10.0.2.0/26"), 1024),
            target: RouteTarget::Gateway {
                gateway: "10.0.9.1".parse().expect("ip"),
                iface: "cali1".into(),
                onlink: true,
            },
            mtu: Some(1410),
        };
        let k = via.resolve(80, up).expect("up");
        assert!(k.onlink && !k.scope_link);
        assert_eq!(k.mtu, Some(1410));
    }
}
