//! The effective FelixConfiguration for one node: `node.<name>` fields win
//! over `default` fields, which win over the defaults of resources.md §16.
//!
//! Layering is per field: a node resource that sets only `logPrefix` still
//! inherits everything else from `default`. Values that do not parse (an
//! unknown enum spelling, a bad CIDR in a failsafe entry) fall back to the
//! default rather than failing the whole configuration, as Calico does for
//! `programClusterRoutes` (dataplane.md §2). `vxlanEnabled` / `ipipEnabled`
//! left unset are derived from the IP pools.

use std::net::Ipv4Addr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tortie_model::config::{FelixConfigurationSpec, ProtoPort};
use tortie_model::ippool::EncapMode;
use tortie_model::scalar::{PortValue, parse_cidr, parse_go_duration};

use crate::model::infra::PoolInfo;
use crate::rules::PortRange;

/// `defaultEndpointToHostAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointToHostAction {
    Drop,
    Return,
    Accept,
}

/// `programClusterRoutes`: which remote-block routes the node agent (rather
/// than the BGP daemon) programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProgramClusterRoutes {
    Enabled,
    Disabled,
    EnabledIPIPOnly,
    EnabledNoEncapOnly,
}

impl ProgramClusterRoutes {
    pub fn ipip(self) -> bool {
        matches!(
            self,
            ProgramClusterRoutes::Enabled | ProgramClusterRoutes::EnabledIPIPOnly
        )
    }

    pub fn no_encap(self) -> bool {
        matches!(
            self,
            ProgramClusterRoutes::Enabled | ProgramClusterRoutes::EnabledNoEncapOnly
        )
    }
}

/// A failsafe port: always allowed to or from host endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafePort {
    pub protocol: u8,
    pub port: u16,
    /// If set, only peers in this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<IpNet>,
}

/// The configuration the dataplane runs with on this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveConfig {
    pub interface_prefixes: Vec<String>,
    pub interface_exclude: Vec<String>,
    pub ipv6_support: bool,
    pub default_endpoint_to_host_action: EndpointToHostAction,
    /// `Accept` or `Return`.
    pub filter_allow_action: String,
    /// `Drop` or `Reject`.
    pub filter_deny_action: String,
    /// `Insert` or `Append`.
    pub chain_insert_mode: String,
    /// `Enabled`, `Disabled` or `Auto`.
    pub nftables_mode: String,
    pub mark_mask: u32,
    pub failsafe_inbound: Vec<FailsafePort>,
    pub failsafe_outbound: Vec<FailsafePort>,
    pub vxlan_enabled_v4: bool,
    pub vxlan_enabled_v6: bool,
    pub ipip_enabled: bool,
    pub vxlan_port: u16,
    pub vxlan_vni: u32,
    /// 0 = auto.
    pub vxlan_mtu: u32,
    pub vxlan_mtu_v6: u32,
    pub ipip_mtu: u32,
    pub allow_vxlan_packets_from_workloads: bool,
    pub allow_ipip_packets_from_workloads: bool,
    pub log_prefix: String,
    pub disable_conntrack_invalid_check: bool,
    pub nat_outgoing_address: Option<Ipv4Addr>,
    pub nat_port_range: Option<PortRange>,
    pub kube_node_port_ranges: Vec<PortRange>,
    /// `workloadSourceSpoofing: Any`.
    pub workload_source_spoofing: bool,
    /// `Drop`, `Reject` or `Disabled`.
    pub service_loop_prevention: String,
    pub program_cluster_routes: ProgramClusterRoutes,
    pub route_refresh_interval_ms: u64,
    pub ipsets_refresh_interval_ms: u64,
    pub health_enabled: bool,
    pub health_host: String,
    pub health_port: u16,
    pub prometheus_metrics_enabled: bool,
    pub prometheus_metrics_port: u16,
    pub endpoint_reporting_enabled: bool,
    pub log_severity_screen: String,
    /// Interfaces whose smallest MTU is the host MTU (dataplane.md §4).
    pub mtu_iface_pattern: String,
}

/// Felix's default `MTUIfacePattern`.
pub const DEFAULT_MTU_IFACE_PATTERN: &str = "^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)";

/// Inbound failsafe defaults (dataplane.md §5.1).
const FAILSAFE_IN: [(u8, u16); 9] = [
    (6, 22),
    (17, 68),
    (6, 179),
    (6, 2379),
    (6, 2380),
    (6, 5473),
    (6, 6443),
    (6, 6666),
    (6, 6667),
];
/// Outbound failsafe defaults.
const FAILSAFE_OUT: [(u8, u16); 9] = [
    (17, 53),
    (17, 67),
    (6, 179),
    (6, 2379),
    (6, 2380),
    (6, 5473),
    (6, 6443),
    (6, 6666),
    (6, 6667),
];

fn failsafe(list: &[(u8, u16)]) -> Vec<FailsafePort> {
    list.iter()
        .map(|&(protocol, port)| FailsafePort {
            protocol,
            port,
            net: None,
        })
        .collect()
}

fn parse_failsafe(list: &[ProtoPort]) -> Option<Vec<FailsafePort>> {
    list.iter()
        .map(|pp| {
            let protocol = match pp.protocol.to_ascii_uppercase().as_str() {
                "TCP" => 6,
                "UDP" => 17,
                "SCTP" => 132,
                _ => return None,
            };
            let port = u16::try_from(pp.port).ok().filter(|p| *p > 0)?;
            let net = if pp.net.is_empty() {
                None
            } else {
                Some(parse_cidr(&pp.net).ok()?.trunc())
            };
            Some(FailsafePort {
                protocol,
                port,
                net,
            })
        })
        .collect()
}

fn range(p: &tortie_model::scalar::Port) -> Option<PortRange> {
    match p.parse().ok()? {
        PortValue::Range { min, max } => Some(PortRange { min, max }),
        PortValue::Named(_) => None,
    }
}

fn duration_ms(text: Option<&String>, default_ms: u64) -> u64 {
    text.and_then(|t| parse_go_duration(t).ok())
        .and_then(|ns| u64::try_from(ns / 1_000_000).ok())
        .unwrap_or(default_ms)
}

fn one_of(value: Option<&String>, allowed: &[&str], default: &str) -> String {
    value
        .filter(|v| allowed.contains(&v.as_str()))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

impl EffectiveConfig {
    /// Layers `node` (the `node.<name>` resource) over `global` (`default`)
    /// over the defaults; `pools` decide unset encapsulation switches.
    pub fn layered<'a>(
        global: Option<&FelixConfigurationSpec>,
        node: Option<&FelixConfigurationSpec>,
        pools: impl Iterator<Item = &'a PoolInfo> + Clone,
    ) -> EffectiveConfig {
        let empty = FelixConfigurationSpec::default();
        let g = global.unwrap_or(&empty);
        let n = node.unwrap_or(&empty);
        // The first layer that sets a field wins.
        macro_rules! pick {
            ($field:ident) => {
                n.$field.as_ref().or(g.$field.as_ref())
            };
        }
        let copy_bool = |v: Option<&bool>, d: bool| v.copied().unwrap_or(d);
        let int = |v: Option<&i64>, d: i64| v.copied().unwrap_or(d);
        let pool_uses = |f: fn(&PoolInfo) -> bool| pools.clone().any(f);
        let vxlan_auto_v4 =
            pool_uses(|p| p.cidr.addr().is_ipv4() && p.vxlan_mode != EncapMode::Never);
        let vxlan_auto_v6 =
            pool_uses(|p| p.cidr.addr().is_ipv6() && p.vxlan_mode != EncapMode::Never);
        let ipip_auto = pool_uses(|p| p.ipip_mode != EncapMode::Never);
        let vxlan_set = pick!(vxlan_enabled).copied();
        EffectiveConfig {
            interface_prefixes: pick!(interface_prefix)
                .map(|p| {
                    p.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| vec!["cali".to_string()]),
            interface_exclude: pick!(interface_exclude)
                .map(|p| {
                    p.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_else(|| vec!["kube-ipvs0".to_string()]),
            ipv6_support: copy_bool(pick!(ipv6_support), true),
            default_endpoint_to_host_action: match pick!(default_endpoint_to_host_action)
                .map(String::as_str)
            {
                Some("Return") => EndpointToHostAction::Return,
                Some("Accept") => EndpointToHostAction::Accept,
                _ => EndpointToHostAction::Drop,
            },
            filter_allow_action: one_of(
                pick!(iptables_filter_allow_action),
                &["Accept", "Return"],
                "Accept",
            ),
            filter_deny_action: one_of(
                pick!(iptables_filter_deny_action),
                &["Drop", "Reject"],
                "Drop",
            ),
            chain_insert_mode: one_of(pick!(chain_insert_mode), &["Insert", "Append"], "Insert"),
            nftables_mode: one_of(
                pick!(nftables_mode),
                &["Enabled", "Disabled", "Auto"],
                "Auto",
            ),
            mark_mask: pick!(nftables_mark_mask)
                .or(pick!(iptables_mark_mask))
                .and_then(|m| u32::try_from(*m).ok())
                .unwrap_or(0xffff_0000),
            failsafe_inbound: pick!(failsafe_inbound_host_ports)
                .and_then(|l| parse_failsafe(l))
                .unwrap_or_else(|| failsafe(&FAILSAFE_IN)),
            failsafe_outbound: pick!(failsafe_outbound_host_ports)
                .and_then(|l| parse_failsafe(l))
                .unwrap_or_else(|| failsafe(&FAILSAFE_OUT)),
            vxlan_enabled_v4: vxlan_set.unwrap_or(vxlan_auto_v4),
            vxlan_enabled_v6: vxlan_set.unwrap_or(vxlan_auto_v6),
            ipip_enabled: copy_bool(pick!(ipip_enabled), ipip_auto),
            vxlan_port: u16::try_from(int(pick!(vxlan_port), 4789)).unwrap_or(4789),
            vxlan_vni: u32::try_from(int(pick!(vxlan_vni), 4096)).unwrap_or(4096),
            vxlan_mtu: u32::try_from(int(pick!(vxlan_mtu), 0)).unwrap_or(0),
            vxlan_mtu_v6: u32::try_from(int(pick!(vxlan_mtu_v6), 0)).unwrap_or(0),
            ipip_mtu: u32::try_from(int(pick!(ipip_mtu), 0)).unwrap_or(0),
            allow_vxlan_packets_from_workloads: copy_bool(
                pick!(allow_vxlan_packets_from_workloads),
                false,
            ),
            allow_ipip_packets_from_workloads: copy_bool(
                pick!(allow_ipip_packets_from_workloads),
                false,
            ),
            log_prefix: pick!(log_prefix)
                .cloned()
                .unwrap_or_else(|| "calico-packet".to_string()),
            disable_conntrack_invalid_check: copy_bool(
                pick!(disable_conntrack_invalid_check),
                false,
            ),
            nat_outgoing_address: pick!(nat_outgoing_address).and_then(|a| a.parse().ok()),
            nat_port_range: pick!(nat_port_range).and_then(range),
            kube_node_port_ranges: pick!(kube_node_port_ranges)
                .map(|l| l.iter().filter_map(range).collect())
                .unwrap_or_else(|| {
                    vec![PortRange {
                        min: 30000,
                        max: 32767,
                    }]
                }),
            workload_source_spoofing: pick!(workload_source_spoofing).is_some_and(|v| v == "Any"),
            service_loop_prevention: one_of(
                pick!(service_loop_prevention),
                &["Drop", "Reject", "Disabled"],
                "Drop",
            ),
            program_cluster_routes: match pick!(program_cluster_routes).map(String::as_str) {
                Some("Enabled") => ProgramClusterRoutes::Enabled,
                Some("Disabled") => ProgramClusterRoutes::Disabled,
                Some("EnabledNoEncapOnly") => ProgramClusterRoutes::EnabledNoEncapOnly,
                _ => ProgramClusterRoutes::EnabledIPIPOnly,
            },
            route_refresh_interval_ms: duration_ms(pick!(route_refresh_interval), 90_000),
            ipsets_refresh_interval_ms: duration_ms(pick!(ipsets_refresh_interval), 90_000),
            health_enabled: copy_bool(pick!(health_enabled), false),
            health_host: pick!(health_host)
                .cloned()
                .unwrap_or_else(|| "localhost".to_string()),
            health_port: u16::try_from(int(pick!(health_port), 9099)).unwrap_or(9099),
            prometheus_metrics_enabled: copy_bool(pick!(prometheus_metrics_enabled), false),
            prometheus_metrics_port: u16::try_from(int(pick!(prometheus_metrics_port), 9091))
                .unwrap_or(9091),
            endpoint_reporting_enabled: copy_bool(pick!(endpoint_reporting_enabled), false),
            log_severity_screen: pick!(log_severity_screen)
                .cloned()
                .unwrap_or_else(|| "Info".to_string()),
            mtu_iface_pattern: pick!(mtu_iface_pattern)
                .cloned()
                .unwrap_or_else(|| DEFAULT_MTU_IFACE_PATTERN.to_string()),
        }
    }
}

impl Default for EffectiveConfig {
    fn default() -> Self {
        EffectiveConfig::layered(None, None, std::iter::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let c = EffectiveConfig::default();
        assert_eq!(c.interface_prefixes, ["cali"]);
        assert_eq!(c.mtu_iface_pattern, DEFAULT_MTU_IFACE_PATTERN);
        assert_eq!(
            c.default_endpoint_to_host_action,
            EndpointToHostAction::Drop
        );
        assert_eq!((c.vxlan_port, c.vxlan_vni), (4789, 4096));
        assert_eq!(c.failsafe_inbound.len(), 9);
        assert_eq!(
            c.failsafe_inbound[0],
            FailsafePort {
                protocol: 6,
                port: 22,
                net: None
            }
        );
        assert_eq!(c.failsafe_outbound[0].port, 53);
        assert_eq!(c.mark_mask, 0xffff_0000);
        assert_eq!(
            c.program_cluster_routes,
            ProgramClusterRoutes::EnabledIPIPOnly
        );
        assert!(!c.vxlan_enabled_v4 && !c.ipip_enabled);
        assert_eq!(c.route_refresh_interval_ms, 90_000);
    }

    #[test]
    fn node_fields_win_field_by_field_and_pools_decide_encapsulation() {
        let global = FelixConfigurationSpec {
            log_prefix: Some("g".into()),
            vxlan_port: Some(4790),
            default_endpoint_to_host_action: Some("Accept".into()),
            program_cluster_routes: Some("Bogus".into()),
            ..FelixConfigurationSpec::default()
        };
        let node = FelixConfigurationSpec {
            log_prefix: Some("n".into()),
            interface_prefix: Some("tap, cali".into()),
            ..FelixConfigurationSpec::default()
        };
        let pool = PoolInfo {
            cidr: "10.0.0.0/16".parse().unwrap(),
            vxlan_mode: EncapMode::CrossSubnet,
            ipip_mode: EncapMode::Never,
            nat_outgoing: false,
        };
        let c = EffectiveConfig::layered(Some(&global), Some(&node), [&pool].into_iter());
        assert_eq!(c.log_prefix, "n");
        assert_eq!(c.vxlan_port, 4790);
        assert_eq!(c.interface_prefixes, ["tap", "cali"]);
        assert_eq!(
            c.default_endpoint_to_host_action,
            EndpointToHostAction::Accept
        );
        assert_eq!(
            c.program_cluster_routes,
            ProgramClusterRoutes::EnabledIPIPOnly
        );
        assert!(c.vxlan_enabled_v4 && !c.vxlan_enabled_v6);
    }
}
