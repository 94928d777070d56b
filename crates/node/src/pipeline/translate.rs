//! From the calculation's deltas to the updates of the routes, VXLAN,
//! IPIP and links reconcilers (pure: no I/O, tested on its own).
//!
//! The calculation speaks of what the node wants (a workload route, a
//! remote block through VXLAN, a peer's VTEP); the reconcilers speak of
//! kernel objects (a route key and target on a named device, a VXLAN
//! device with its MTU). This module owns that mapping and the MTU rules
//! of spec/dataplane.md §4.
//!
//! Hard cases: a route whose target needs IPIP on a kernel without it is
//! not programmed and counted as blocked (reported in status); a VTEP or
//! local device whose MAC does not parse is skipped with a problem rather
//! than a panic; route keys of removed routes are rebuilt exactly as they
//! were added (same metric), so removal finds them.

use std::collections::BTreeSet;

use ipnet::IpNet;
use tortie_calc::Delta;
use tortie_calc::config::EffectiveConfig;
use tortie_calc::state::{IpipState, LocalVtep, PeerVteps, RouteTarget as CalcTarget};
use tortie_dataplane::ipip::{self, TunnelDevice};
use tortie_dataplane::links::LinkUpdate;
use tortie_dataplane::routes::{Route, RouteKey, RouteTarget, RouteUpdate};
use tortie_dataplane::vxlan::{self, Vtep, VxlanDevice, VxlanUpdate};

/// Overheads of spec/dataplane.md §4.
const VXLAN_V4_OVERHEAD: u32 = 50;
const VXLAN_V6_OVERHEAD: u32 = 70;
const IPIP_OVERHEAD: u32 = 20;
/// Metric of every route tortie programs (the kernel reads 0 as 1024 for
/// IPv6; [`RouteKey::new`] normalises).
const ROUTE_METRIC: u32 = 0;

/// What the translation needs to know about this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// The interface holding the node address (routes without
    /// encapsulation leave through it).
    pub node_iface: String,
    /// The host MTU the encapsulation MTUs derive from (the smallest of the
    /// interfaces matching `mtuIfacePattern`, spec/dataplane.md §4).
    pub host_mtu: u32,
    /// Whether this kernel can do IPIP.
    pub ipip_supported: bool,
}

/// Updates for each reconciler, from one delta.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Updates {
    pub routes: Vec<RouteUpdate>,
    pub vxlan_v4: Vec<VxlanUpdate>,
    pub vxlan_v6: Vec<VxlanUpdate>,
    /// `tunl0` as it should now be (`None`: without IPv4 addresses).
    pub ipip: Vec<Option<TunnelDevice>>,
    pub links: Vec<LinkUpdate>,
    /// Things that could not be programmed, for logs and status.
    pub problems: Vec<String>,
}

/// Keeps what later deltas need (the effective config, which routes were
/// blocked) and translates each delta.
#[derive(Debug)]
pub struct Translator {
    host: HostFacts,
    config: EffectiveConfig,
    /// The latest IPIP state (the tunnel MTU also follows the config).
    ipip: IpipState,
    /// Routes not programmed because the kernel lacks IPIP.
    blocked: BTreeSet<IpNet>,
}

impl Translator {
    pub fn new(host: HostFacts) -> Translator {
        Translator {
            host,
            config: EffectiveConfig::default(),
            ipip: IpipState::default(),
            blocked: BTreeSet::new(),
        }
    }

    /// Routes the kernel cannot carry (IPIP without IPIP support).
    pub fn blocked_routes(&self) -> usize {
        self.blocked.len()
    }

    /// The pod MTU (§4): the smallest MTU among the enabled
    /// encapsulations, else the host MTU.
    pub fn pod_mtu(&self) -> u32 {
        let c = &self.config;
        let mut mtu = self.host.host_mtu;
        if c.vxlan_enabled_v4 {
            mtu = mtu.min(self.vxlan_mtu(false));
        }
        if c.vxlan_enabled_v6 {
            mtu = mtu.min(self.vxlan_mtu(true));
        }
        if c.ipip_enabled {
            mtu = mtu.min(or_auto(c.ipip_mtu, self.host.host_mtu, IPIP_OVERHEAD));
        }
        mtu
    }

    fn vxlan_mtu(&self, v6: bool) -> u32 {
        if v6 {
            or_auto(
                self.config.vxlan_mtu_v6,
                self.host.host_mtu,
                VXLAN_V6_OVERHEAD,
            )
        } else {
            or_auto(self.config.vxlan_mtu, self.host.host_mtu, VXLAN_V4_OVERHEAD)
        }
    }

    pub fn translate(&mut self, delta: &Delta) -> Updates {
        let mut out = Updates::default();
        if let Some(config) = &delta.config {
            self.config = config.clone();
        }
        if let Some(local) = &delta.vxlan_local {
            out.vxlan_v4.push(VxlanUpdate::Device(self.device(
                local.enabled_v4,
                local.v4.as_ref(),
                &mut out.problems,
            )));
            out.vxlan_v6.push(VxlanUpdate::Device(self.device(
                local.enabled_v6,
                local.v6.as_ref(),
                &mut out.problems,
            )));
        }
        if let Some(ipip) = &delta.ipip {
            self.ipip = ipip.clone();
            if ipip.enabled && !self.host.ipip_supported {
                out.problems.push(
                    "an IP pool uses IPIP but this kernel has no IPIP support: IPIP routes are not programmed"
                        .to_string(),
                );
            }
        }
        if delta.ipip.is_some() || delta.config.is_some() {
            out.ipip.push(self.tunnel_device());
        }
        for (node, peer) in &delta.vteps_upserted {
            self.peer(node, peer, &mut out);
        }
        for (dst, target) in &delta.routes_upserted {
            match self.route(*dst, target) {
                Some(route) => {
                    self.blocked.remove(dst);
                    out.routes.push(RouteUpdate::Set(route));
                }
                None => {
                    if self.blocked.insert(*dst) {
                        out.problems.push(format!(
                            "route to {dst} needs IPIP, which this kernel lacks"
                        ));
                    }
                    out.routes
                        .push(RouteUpdate::Remove(RouteKey::new(*dst, ROUTE_METRIC)));
                }
            }
        }
        for dst in &delta.routes_removed {
            self.blocked.remove(dst);
            out.routes
                .push(RouteUpdate::Remove(RouteKey::new(*dst, ROUTE_METRIC)));
        }
        for node in &delta.vteps_removed {
            out.vxlan_v4
                .push(VxlanUpdate::RemoveVtep { node: node.clone() });
            out.vxlan_v6
                .push(VxlanUpdate::RemoveVtep { node: node.clone() });
        }
        for wep in delta.workload_endpoints_upserted.values() {
            out.links.push(LinkUpdate::AllowSpoofedSources {
                iface: wep.iface.clone(),
                allowed: !wep.allow_spoofed_source_prefixes.is_empty(),
            });
        }
        out
    }

    /// `tunl0` with the node's IPIP tunnel address and the IPIP MTU, while
    /// IPIP is in use, the kernel has it and the address is allocated.
    fn tunnel_device(&self) -> Option<TunnelDevice> {
        let address = self
            .ipip
            .tunnel_addr
            .filter(|_| self.ipip.enabled && self.host.ipip_supported)?;
        Some(TunnelDevice {
            address,
            mtu: or_auto(self.config.ipip_mtu, self.host.host_mtu, IPIP_OVERHEAD),
        })
    }

    fn device(
        &self,
        enabled: bool,
        vtep: Option<&LocalVtep>,
        problems: &mut Vec<String>,
    ) -> Option<VxlanDevice> {
        let vtep = vtep.filter(|_| enabled)?;
        let Some(mac) = parse_mac(&vtep.mac) else {
            problems.push(format!(
                "this node's VXLAN MAC {:?} is not a MAC address; VXLAN not programmed",
                vtep.mac
            ));
            return None;
        };
        let mtu = self.vxlan_mtu(vtep.node_addr.is_ipv6());
        let mut device = VxlanDevice::new(vtep.node_addr, vtep.tunnel_addr, mac, mtu);
        device.vni = self.config.vxlan_vni;
        device.port = self.config.vxlan_port;
        Some(device)
    }

    fn peer(&self, node: &str, peer: &PeerVteps, out: &mut Updates) {
        for (vtep, updates) in [(&peer.v4, &mut out.vxlan_v4), (&peer.v6, &mut out.vxlan_v6)] {
            let update = match vtep {
                None => VxlanUpdate::RemoveVtep {
                    node: node.to_string(),
                },
                Some(v) => match parse_mac(&v.mac) {
                    Some(mac) => VxlanUpdate::SetVtep {
                        node: node.to_string(),
                        vtep: Vtep {
                            node_ip: v.node_addr,
                            tunnel_ip: v.tunnel_addr,
                            mac,
                        },
                    },
                    None => {
                        out.problems.push(format!(
                            "node {node}: VXLAN MAC {:?} is not a MAC address; its VTEP is not programmed",
                            v.mac
                        ));
                        VxlanUpdate::RemoveVtep {
                            node: node.to_string(),
                        }
                    }
                },
            };
            updates.push(update);
        }
    }

    /// The kernel route for a calculated one; `None` when the kernel
    /// cannot carry it.
    fn route(&self, dst: IpNet, target: &CalcTarget) -> Option<Route> {
        let vxlan_device = || {
            if dst.addr().is_ipv6() {
                vxlan::DEVICE_V6
            } else {
                vxlan::DEVICE_V4
            }
            .to_string()
        };
        let target = match target {
            CalcTarget::Workload { iface } => RouteTarget::Device {
                iface: iface.clone(),
            },
            CalcTarget::Blackhole => RouteTarget::Blackhole,
            CalcTarget::Vxlan { gateway } => RouteTarget::Gateway {
                gateway: *gateway,
                iface: vxlan_device(),
                onlink: true,
            },
            CalcTarget::VxlanTunnelAddress => RouteTarget::Device {
                iface: vxlan_device(),
            },
            CalcTarget::Ipip { gateway } => {
                if !self.host.ipip_supported {
                    return None;
                }
                RouteTarget::Gateway {
                    gateway: *gateway,
                    iface: ipip::DEVICE.to_string(),
                    onlink: true,
                }
            }
            CalcTarget::NoEncap { gateway } => RouteTarget::Gateway {
                gateway: *gateway,
                iface: self.host.node_iface.clone(),
                onlink: false,
            },
        };
        Some(Route {
            key: RouteKey::new(dst, ROUTE_METRIC),
            target,
            mtu: None,
        })
    }
}

/// A configured MTU, or the host MTU less the overhead when it is 0.
fn or_auto(configured: u32, host: u32, overhead: u32) -> u32 {
    if configured == 0 {
        host.saturating_sub(overhead)
    } else {
        configured
    }
}

/// `aa:bb:cc:dd:ee:ff` to bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_calc::state::{Vtep as CalcVtep, VxlanLocal};

    fn facts(ipip: bool) -> HostFacts {
        HostFacts {
            node_iface: "eth0".into(),
            host_mtu: 1500,
            ipip_supported: ipip,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("66:0a:ff:00:01:02"),
            Some([0x66, 0x0a, 0xff, 0, 1, 2])
        );
        for bad in [
            "",
            "66:0a:ff:00:01",
            "66:0a:ff:00:01:02:03",
            "6:0a:ff:00:01:02",
            "zz:0a:ff:00:01:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn routes_map_to_devices_and_removals_use_the_same_key() {
        let mut t = Translator::new(facts(true));
        let mut delta = Delta::default();
        delta.routes_upserted.insert(
            net("10.244.1.5/32"),
            CalcTarget::Workload {
                iface: "cali123".into(),
            },
        );
        delta.routes_upserted.insert(
            net("10.244.2.0/26"),
            CalcTarget::Vxlan {
                gateway: "10.244.2.1".parse().unwrap(),
            },
        );
        delta.routes_upserted.insert(
            net("fd00:10::/122"),
            CalcTarget::Vxlan {
                gateway: "fd00:10::1".parse().unwrap(),
            },
        );
        delta.routes_upserted.insert(
            net("10.244.3.0/26"),
            CalcTarget::NoEncap {
                gateway: "172.30.0.13".parse().unwrap(),
            },
        );
        delta
            .routes_upserted
            .insert(net("10.244.0.0/26"), CalcTarget::Blackhole);
        let updates = t.translate(&delta);
        let targets: Vec<(String, RouteTarget)> = updates
            .routes
            .iter()
            .map(|u| match u {
                RouteUpdate::Set(r) => (r.key.dst.to_string(), r.target.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(targets.contains(&(
            "10.244.1.5/32".into(),
            RouteTarget::Device {
                iface: "cali123".into()
            }
        )));
        assert!(targets.contains(&(
            "10.244.2.0/26".into(),
            RouteTarget::Gateway {
                gateway: "10.244.2.1".parse().unwrap(),
                iface: "vxlan.calico".into(),
                onlink: true
            }
        )));
        assert!(targets.contains(&(
            "fd00:10::/122".into(),
            RouteTarget::Gateway {
                gateway: "fd00:10::1".parse().unwrap(),
                iface: "vxlan-v6.calico".into(),
                onlink: true
            }
        )));
        assert!(targets.contains(&(
            "10.244.3.0/26".into(),
            RouteTarget::Gateway {
                gateway: "172.30.0.13".parse().unwrap(),
                iface: "eth0".into(),
                onlink: false
            }
        )));
        assert!(targets.contains(&("10.244.0.0/26".into(), RouteTarget::Blackhole)));

        let added: Vec<RouteKey> = updates
            .routes
            .iter()
            .filter_map(|u| match u {
                RouteUpdate::Set(r) => Some(r.key),
                _ => None,
            })
            .collect();
        let removal = Delta {
            routes_removed: delta.routes_upserted.keys().copied().collect(),
            ..Delta::default()
        };
        let removed: Vec<RouteKey> = t
            .translate(&removal)
            .routes
            .into_iter()
            .map(|u| match u {
                RouteUpdate::Remove(k) => k,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        for key in added {
            assert!(removed.contains(&key), "{key} removed with another key");
        }
    }

    #[test]
    fn ipip_routes_are_blocked_and_reported_without_kernel_support() {
        let mut t = Translator::new(facts(false));
        let mut delta = Delta {
            ipip: Some(IpipState {
                enabled: true,
                tunnel_addr: None,
            }),
            ..Delta::default()
        };
        delta.routes_upserted.insert(
            net("10.244.5.0/26"),
            CalcTarget::Ipip {
                gateway: "172.30.0.12".parse().unwrap(),
            },
        );
        let updates = t.translate(&delta);
        assert_eq!(t.blocked_routes(), 1);
        assert_eq!(updates.problems.len(), 2, "{:?}", updates.problems);
        assert!(matches!(updates.routes[..], [RouteUpdate::Remove(_)]));
        let mut gone = Delta::default();
        gone.routes_removed.insert(net("10.244.5.0/26"));
        t.translate(&gone);
        assert_eq!(t.blocked_routes(), 0);
    }

    #[test]
    fn tunl0_gets_the_tunnel_address_and_ipip_mtu_and_routes_go_through_it() {
        let mut t = Translator::new(facts(true));
        let ipip = |enabled, addr: Option<&str>| IpipState {
            enabled,
            tunnel_addr: addr.map(|a| a.parse().unwrap()),
        };
        let mut delta = Delta {
            ipip: Some(ipip(true, None)),
            ..Delta::default()
        };
        delta.routes_upserted.insert(
            net("10.244.5.0/26"),
            CalcTarget::Ipip {
                gateway: "172.30.0.12".parse().unwrap(),
            },
        );
        let updates = t.translate(&delta);
        assert_eq!(updates.ipip, vec![None], "no tunnel address yet");
        let [RouteUpdate::Set(route)] = &updates.routes[..] else {
            panic!("one route: {:?}", updates.routes);
        };
        assert_eq!(
            route.target,
            RouteTarget::Gateway {
                gateway: "172.30.0.12".parse().unwrap(),
                iface: "tunl0".into(),
                onlink: true,
            }
        );
        assert!(updates.problems.is_empty());

        let with_addr = Delta {
            ipip: Some(ipip(true, Some("10.244.3.0"))),
            ..Delta::default()
        };
        let want = TunnelDevice {
            address: "10.244.3.0".parse().unwrap(),
            mtu: 1480,
        };
        assert_eq!(t.translate(&with_addr).ipip, vec![Some(want)]);
        // A configured MTU arrives with the config alone.
        let config = Delta {
            config: Some(EffectiveConfig {
                ipip_enabled: true,
                ipip_mtu: 1400,
                ..EffectiveConfig::default()
            }),
            ..Delta::default()
        };
        assert_eq!(
            t.translate(&config).ipip,
            vec![Some(TunnelDevice { mtu: 1400, ..want })]
        );
        let off = Delta {
            ipip: Some(ipip(false, Some("10.244.3.0"))),
            ..Delta::default()
        };
        assert_eq!(t.translate(&off).ipip, vec![None], "IPIP no longer used");
        // Without kernel support tunl0 is never asked for.
        let mut bare = Translator::new(facts(false));
        assert_eq!(bare.translate(&with_addr).ipip, vec![None]);
    }

    #[test]
    fn vxlan_device_and_peers_get_mtu_vni_and_macs() {
        let mut t = Translator::new(facts(true));
        let config = EffectiveConfig {
            vxlan_enabled_v4: true,
            vxlan_vni: 4096,
            vxlan_port: 4789,
            ..EffectiveConfig::default()
        };
        let mut delta = Delta {
            config: Some(config),
            ..Delta::default()
        };
        delta.vxlan_local = Some(VxlanLocal {
            enabled_v4: true,
            enabled_v6: false,
            v4: Some(LocalVtep {
                tunnel_addr: "10.244.0.0".parse().unwrap(),
                mac: "66:00:00:00:00:01".into(),
                node_addr: "172.30.0.11".parse().unwrap(),
            }),
            v6: None,
        });
        delta.vteps_upserted.insert(
            "node-2".into(),
            PeerVteps {
                v4: Some(CalcVtep {
                    node_addr: "172.30.0.12".parse().unwrap(),
                    tunnel_addr: "10.244.1.0".parse().unwrap(),
                    mac: "66:00:00:00:00:02".into(),
                }),
                v6: None,
            },
        );
        let updates = t.translate(&delta);
        match &updates.vxlan_v4[..] {
            [
                VxlanUpdate::Device(Some(d)),
                VxlanUpdate::SetVtep { node, vtep },
            ] => {
                assert_eq!(d.mtu, 1450);
                assert_eq!(d.vni, 4096);
                assert_eq!(d.mac, [0x66, 0, 0, 0, 0, 1]);
                assert_eq!(node, "node-2");
                assert_eq!(vtep.mac, [0x66, 0, 0, 0, 0, 2]);
                assert!(vtep.node_ip.is_ipv4());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            updates.vxlan_v6[..],
            [VxlanUpdate::Device(None), VxlanUpdate::RemoveVtep { .. }]
        ));
        assert_eq!(t.pod_mtu(), 1450);
    }
}
