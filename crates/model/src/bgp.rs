//! BGP kinds: BGPConfiguration, BGPPeer and BGPFilter (resources.md §5-7).
//!
//! BGPConfiguration is not defaulted on write (`tortie get bgpconfig` shows
//! `-` for unset fields, as calicoctl does); the speaker applies the runtime
//! defaults. Hard cases: community definitions must be referenced by a
//! prefix advertisement; BGPPeer's mutually exclusive field groups; filter
//! rules are typed per address family.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::scalar::{AsNumber, is_interface_pattern, normalise_duration, parse_strict_cidr};
use crate::validate::{Checker, quoted};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CidrEntry {
    pub cidr: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// `{secretKeyRef: {name, key}}`: a password kept in a Kubernetes secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

fn validate_password(c: &mut Checker, path: &str, p: &BGPPassword) {
    match &p.secret_key_ref {
        None => c.fail(path, "secretKeyRef is required"),
        Some(r) => {
            if r.name.is_empty() {
                c.fail(format!("{path}.secretKeyRef.name"), "is required");
            }
            if r.key.is_empty() {
                c.fail(format!("{path}.secretKeyRef.key"), "is required");
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_severity_screen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<CidrEntry>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<CidrEntry>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<CidrEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv4: String,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv6: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_normal_route_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_normal_route_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<String>,
}

pub(crate) const LOG_SEVERITIES: [&str; 6] =
    ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

/// `aa:nn` (two 16-bit parts) or `aa:nn:mm` (three 32-bit parts).
pub fn is_community_value(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    }
}

/// Valid names for the per-node singletons: `default` or `node.<nodename>`.
pub(crate) fn validate_singleton_name(kind: &str, name: &str, c: &mut Checker) {
    let ok = name == "default"
        || name
            .strip_prefix("node.")
            .is_some_and(crate::scalar::is_dns_subdomain);
    if !ok {
        c.bad(
            "metadata.name",
            quoted(name),
            format!("a {kind} is named \"default\" or \"node.<nodename>\""),
        );
    }
}

impl SpecRules for BGPConfigurationSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        if let Some(a) = &self.as_number {
            self.as_number = Some(a.normalised());
        }
        if let Some(d) = &self.node_mesh_max_restart_time {
            self.node_mesh_max_restart_time = Some(normalise_duration(d));
        }
    }

    fn validate_name(name: &str, c: &mut Checker) {
        validate_singleton_name("BGPConfiguration", name, c);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if !self.log_severity_screen.is_empty() {
            c.one_of_ignore_case(
                "spec.logSeverityScreen",
                &self.log_severity_screen,
                &LOG_SEVERITIES,
            );
        }
        if let Some(a) = &self.as_number {
            c.as_number("spec.asNumber", a);
        }
        if let Some(p) = self.listen_port {
            c.range("spec.listenPort", p, 1, 65535);
        }
        if let Some(m) = &self.bind_mode {
            c.one_of("spec.bindMode", m, &["None", "NodeIP"]);
        }
        for (field, list) in [
            ("serviceClusterIPs", &self.service_cluster_ips),
            ("serviceExternalIPs", &self.service_external_ips),
            ("serviceLoadBalancerIPs", &self.service_load_balancer_ips),
        ] {
            for (i, e) in list.iter().enumerate() {
                c.strict_cidr(&format!("spec.{field}[{i}].cidr"), &e.cidr);
            }
        }
        if let Some(a) = &self.service_load_balancer_aggregation {
            c.one_of(
                "spec.serviceLoadBalancerAggregation",
                a,
                &["Enabled", "Disabled"],
            );
        }
        if self.communities.len() > 500 {
            c.fail("spec.communities", "at most 500 entries are allowed");
        }
        for (i, com) in self.communities.iter().enumerate() {
            let p = format!("spec.communities[{i}]");
            if com.name.is_empty() {
                c.fail(format!("{p}.name"), "is required");
            }
            if !is_community_value(&com.value) {
                c.bad(
                    format!("{p}.value"),
                    quoted(&com.value),
                    "must be aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)",
                );
            }
            let referenced = self
                .prefix_advertisements
                .iter()
                .any(|pa| pa.communities.contains(&com.name));
            if !com.name.is_empty() && !referenced {
                c.bad(
                    format!("{p}.name"),
                    quoted(&com.name),
                    "is not referenced by any prefixAdvertisements entry",
                );
            }
        }
        for (i, pa) in self.prefix_advertisements.iter().enumerate() {
            let p = format!("spec.prefixAdvertisements[{i}]");
            c.strict_cidr(&format!("{p}.cidr"), &pa.cidr);
            for (j, com) in pa.communities.iter().enumerate() {
                let defined = self.communities.iter().any(|d| &d.name == com);
                if !defined && !is_community_value(com) {
                    c.bad(
                        format!("{p}.communities[{j}]"),
                        quoted(com),
                        "is neither a name defined in spec.communities nor a community value",
                    );
                }
            }
        }
        let mesh_enabled = self.node_to_node_mesh_enabled != Some(false);
        if let Some(pw) = &self.node_mesh_password {
            if !mesh_enabled {
                c.fail(
                    "spec.nodeMeshPassword",
                    "can only be set when nodeToNodeMeshEnabled is true",
                );
            }
            validate_password(c, "spec.nodeMeshPassword", pw);
        }
        if let Some(d) = &self.node_mesh_max_restart_time {
            if !mesh_enabled {
                c.fail(
                    "spec.nodeMeshMaxRestartTime",
                    "can only be set when nodeToNodeMeshEnabled is true",
                );
            }
            c.duration("spec.nodeMeshMaxRestartTime", d);
        }
        for (i, iface) in self.ignored_interfaces.iter().enumerate() {
            let p = format!("spec.ignoredInterfaces[{i}]");
            if iface == "*" {
                c.bad(
                    &p,
                    quoted(iface),
                    "\"*\" alone would ignore every interface",
                );
            } else if !is_interface_pattern(iface) {
                c.bad(
                    &p,
                    quoted(iface),
                    "must be 1-15 characters of [a-zA-Z0-9_.*-]",
                );
            }
        }
        if !self.local_workload_peering_ipv4.is_empty() {
            c.ipv4(
                "spec.localWorkloadPeeringIPV4",
                &self.local_workload_peering_ipv4,
            );
        }
        if !self.local_workload_peering_ipv6.is_empty() {
            c.ipv6(
                "spec.localWorkloadPeeringIPV6",
                &self.local_workload_peering_ipv6,
            );
        }
        if let Some(r) = &self.program_cluster_routes {
            c.one_of(
                "spec.programClusterRoutes",
                r,
                &[
                    "Enabled",
                    "Disabled",
                    "EnabledIPIPOnly",
                    "EnabledNoEncapOnly",
                ],
            );
        }
        for (field, v) in [
            ("ipv4NormalRoutePriority", self.ipv4_normal_route_priority),
            ("ipv6NormalRoutePriority", self.ipv6_normal_route_priority),
        ] {
            if let Some(v) = v {
                c.range(&format!("spec.{field}"), v, 1, 2147483646);
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_selector: String,
    #[serde(default, skip_serializing_if = "crate::ippool::is_false")]
    pub keep_original_next_hop: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reachable_by: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_workload_selector: String,
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<String>,
}

/// Parses a BGPPeer `peerIP`: `IP`, `IPv4:port` or `[IPv6]:port`.
pub fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    match s.parse::<std::net::SocketAddr>() {
        Ok(sa) if sa.port() != 0 => Ok((sa.ip(), Some(sa.port()))),
        Ok(_) => Err("port must be between 1 and 65535".to_string()),
        Err(_) => Err("must be an IP, IPv4:port or [IPv6]:port".to_string()),
    }
}

impl SpecRules for BGPPeerSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        for a in [&mut self.as_number, &mut self.local_as_number]
            .into_iter()
            .flatten()
        {
            *a = a.normalised();
        }
        for d in [&mut self.max_restart_time, &mut self.keepalive_time]
            .into_iter()
            .flatten()
        {
            *d = normalise_duration(d);
        }
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if !self.node.is_empty() {
            c.subdomain("spec.node", &self.node);
            if !self.node_selector.is_empty() {
                c.fail("spec.nodeSelector", "cannot be combined with spec.node");
            }
        }
        c.opt_selector("spec.nodeSelector", &self.node_selector, false);
        c.opt_selector("spec.peerSelector", &self.peer_selector, false);
        c.opt_selector(
            "spec.localWorkloadSelector",
            &self.local_workload_selector,
            false,
        );
        let peer_ip = if self.peer_ip.is_empty() {
            None
        } else {
            match parse_peer_ip(&self.peer_ip) {
                Ok((ip, _)) => Some(ip),
                Err(e) => {
                    c.bad("spec.peerIP", quoted(&self.peer_ip), e);
                    None
                }
            }
        };
        if !self.peer_ip.is_empty() && !self.peer_selector.is_empty() {
            c.fail("spec.peerSelector", "cannot be combined with spec.peerIP");
        }
        if let Some(a) = &self.as_number {
            c.as_number("spec.asNumber", a);
            if !self.peer_selector.is_empty() && a.value().is_ok_and(|v| v != 0) {
                c.bad("spec.asNumber", a, "must be empty when peerSelector is set");
            }
        }
        if !self.local_workload_selector.is_empty() {
            if !self.peer_ip.is_empty() || !self.peer_selector.is_empty() {
                c.fail(
                    "spec.localWorkloadSelector",
                    "cannot be combined with peerIP or peerSelector",
                );
            }
            if self
                .as_number
                .as_ref()
                .is_none_or(|a| a.value().is_ok_and(|v| v == 0))
            {
                c.fail("spec.asNumber", "is required with localWorkloadSelector");
            }
        }
        if let Some(a) = &self.local_as_number {
            c.as_number("spec.localASNumber", a);
        }
        if let Some(m) = &self.next_hop_mode {
            c.one_of("spec.nextHopMode", m, &["Auto", "Self", "Keep"]);
            if self.keep_original_next_hop {
                c.fail(
                    "spec.keepOriginalNextHop",
                    "cannot be combined with nextHopMode",
                );
            }
        }
        if let Some(pw) = &self.password {
            validate_password(c, "spec.password", pw);
        }
        if let Some(s) = &self.source_address {
            c.one_of("spec.sourceAddress", s, &["UseNodeIP", "None"]);
        }
        for (field, d) in [
            ("maxRestartTime", &self.max_restart_time),
            ("keepaliveTime", &self.keepalive_time),
        ] {
            if let Some(d) = d {
                c.duration(&format!("spec.{field}"), d);
            }
        }
        if let Some(n) = self.num_allowed_local_as_numbers {
            c.range("spec.numAllowedLocalASNumbers", n, 0, i64::from(i32::MAX));
        }
        if let Some(t) = self.ttl_security {
            c.range("spec.ttlSecurity", t, 0, 255);
        }
        if !self.reachable_by.is_empty()
            && let Some(r) = c.ip("spec.reachableBy", &self.reachable_by)
        {
            match peer_ip {
                None => c.fail("spec.reachableBy", "requires spec.peerIP"),
                Some(p) if p.is_ipv4() != r.is_ipv4() => c.bad(
                    "spec.reachableBy",
                    quoted(&self.reachable_by),
                    "must be the same address family as peerIP",
                ),
                Some(_) => {}
            }
        }
        for (i, f) in self.filters.iter().enumerate() {
            c.subdomain(&format!("spec.filters[{i}]"), f);
        }
        if let Some(r) = &self.reverse_peering {
            c.one_of("spec.reversePeering", r, &["Auto", "Manual"]);
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    #[serde(default)]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub match_operator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    #[serde(
        default,
        rename = "asPathPrefix",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<AsNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<BGPFilterOperation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<CommunityValue>,
    #[serde(
        default,
        rename = "prependASPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependAsPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<PriorityValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityValue {
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrependAsPath {
    #[serde(default)]
    pub prefix: Vec<AsNumber>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityValue {
    #[serde(default)]
    pub value: i64,
}

impl SpecRules for BGPFilterSpec {
    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        for (field, rules, v6) in [
            ("exportV4", &self.export_v4, false),
            ("importV4", &self.import_v4, false),
            ("exportV6", &self.export_v6, true),
            ("importV6", &self.import_v6, true),
        ] {
            for (i, r) in rules.iter().enumerate() {
                validate_filter_rule(c, &format!("spec.{field}[{i}]"), r, v6);
            }
        }
    }
}

fn validate_filter_rule(c: &mut Checker, p: &str, r: &BGPFilterRule, v6: bool) {
    if r.action.is_empty() {
        c.fail(format!("{p}.action"), "is required (Accept or Reject)");
    } else {
        c.one_of(&format!("{p}.action"), &r.action, &["Accept", "Reject"]);
    }
    let max_len = if v6 { 128 } else { 32 };
    if !r.cidr.is_empty() {
        if let Ok(net) = parse_strict_cidr(&r.cidr) {
            if net.addr().is_ipv6() != v6 {
                c.bad(
                    format!("{p}.cidr"),
                    quoted(&r.cidr),
                    if v6 {
                        "must be an IPv6 CIDR in a V6 rule"
                    } else {
                        "must be an IPv4 CIDR in a V4 rule"
                    },
                );
            }
        } else {
            c.strict_cidr(&format!("{p}.cidr"), &r.cidr);
        }
    }
    if r.cidr.is_empty() != r.match_operator.is_empty() {
        c.fail(p, "cidr and matchOperator must be set together");
    }
    if !r.match_operator.is_empty() {
        c.one_of(
            &format!("{p}.matchOperator"),
            &r.match_operator,
            &["Equal", "NotEqual", "In", "NotIn"],
        );
    }
    if let Some(pl) = &r.prefix_length {
        if r.cidr.is_empty() {
            c.fail(format!("{p}.prefixLength"), "requires cidr");
        }
        for (f, v) in [("min", pl.min), ("max", pl.max)] {
            if let Some(v) = v {
                c.range(&format!("{p}.prefixLength.{f}"), v, 0, max_len);
            }
        }
        if let (Some(min), Some(max)) = (pl.min, pl.max)
            && min > max
        {
            c.fail(format!("{p}.prefixLength"), "min must not exceed max");
        }
    }
    if !r.source.is_empty() {
        c.one_of(&format!("{p}.source"), &r.source, &["RemotePeers"]);
    }
    if !r.interface.is_empty() && !is_interface_pattern(&r.interface) {
        c.bad(
            format!("{p}.interface"),
            quoted(&r.interface),
            "must be 1-15 characters of [a-zA-Z0-9_.*-]",
        );
    }
    if !r.peer_type.is_empty() {
        c.one_of(&format!("{p}.peerType"), &r.peer_type, &["eBGP", "iBGP"]);
    }
    if let Some(cm) = &r.communities {
        if cm.values.len() != 1 {
            c.fail(
                format!("{p}.communities.values"),
                "must hold exactly one community value",
            );
        }
        for (i, v) in cm.values.iter().enumerate() {
            if !is_community_value(v) {
                c.bad(
                    format!("{p}.communities.values[{i}]"),
                    quoted(v),
                    "is not a community value (aa:nn or aa:nn:mm)",
                );
            }
        }
    }
    for (i, a) in r.as_path_prefix.iter().enumerate() {
        c.as_number(&format!("{p}.asPathPrefix[{i}]"), a);
    }
    if let Some(prio) = r.priority {
        c.range(&format!("{p}.priority"), prio, 1, 2147483646);
    }
    if !r.operations.is_empty() {
        if r.operations.len() > 10 {
            c.fail(
                format!("{p}.operations"),
                "at most 10 operations are allowed",
            );
        }
        if r.action != "Accept" {
            c.fail(
                format!("{p}.operations"),
                "are only allowed with action Accept",
            );
        }
    }
    for (i, op) in r.operations.iter().enumerate() {
        let op_path = format!("{p}.operations[{i}]");
        let set = [
            op.add_community.is_some(),
            op.prepend_as_path.is_some(),
            op.set_priority.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            c.fail(
                &op_path,
                "must set exactly one of addCommunity, prependASPath, setPriority",
            );
        }
        if let Some(ac) = &op.add_community
            && !is_community_value(&ac.value)
        {
            c.bad(
                format!("{op_path}.addCommunity.value"),
                quoted(&ac.value),
                "is not a community value (aa:nn or aa:nn:mm)",
            );
        }
        if let Some(pp) = &op.prepend_as_path {
            if pp.prefix.is_empty() {
                c.fail(
                    format!("{op_path}.prependASPath.prefix"),
                    "must list at least one AS number",
                );
            }
            for (j, a) in pp.prefix.iter().enumerate() {
                c.as_number(&format!("{op_path}.prependASPath.prefix[{j}]"), a);
            }
        }
        if let Some(sp) = &op.set_priority {
            c.range(
                &format!("{op_path}.setPriority.value"),
                sp.value,
                1,
                2147483646,
            );
        }
    }
}
