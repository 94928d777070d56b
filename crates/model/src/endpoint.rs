//! Endpoints and address sets: WorkloadEndpoint, HostEndpoint, NetworkSet
//! and GlobalNetworkSet (resources.md §12-14).
//!
//! Hard cases: a WorkloadEndpoint's name is derived from its identity
//! (`<node>-<orchestrator>-<workload>-<endpoint>`, each `-` inside a segment
//! doubled) and must agree with it; its addresses are single hosts only.

use serde::{Deserialize, Serialize};

use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::scalar::{IntOrString, Protocol, validate_port_name};
use crate::validate::{Checker, quoted};

/// The implicit namespace label (selectors.md §6.1); users may not set it on network sets.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalNetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

fn validate_nets(c: &mut Checker, meta: &ObjectMeta, nets: &[String]) {
    for (i, n) in nets.iter().enumerate() {
        c.cidr(&format!("spec.nets[{i}]"), n);
    }
    if meta.labels.contains_key(NAMESPACE_LABEL) {
        c.fail(
            format!("metadata.labels.{NAMESPACE_LABEL}"),
            "is set by tortie and may not be set by users",
        );
    }
}

impl SpecRules for NetworkSetSpec {
    fn validate(&self, meta: &ObjectMeta, c: &mut Checker) {
        validate_nets(c, meta, &self.nets);
    }
}

impl SpecRules for GlobalNetworkSetSpec {
    fn validate(&self, meta: &ObjectMeta, c: &mut Checker) {
        validate_nets(c, meta, &self.nets);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// A named port of a host endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPort {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default)]
    pub port: i64,
}

/// A port of a workload endpoint, optionally published on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointPort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default)]
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

fn validate_port_protocol(c: &mut Checker, path: &str, protocol: Option<&Protocol>) {
    match protocol {
        None => c.fail(format!("{path}.protocol"), "is required (TCP, UDP or SCTP)"),
        Some(p) => match p.number() {
            Err(e) => c.bad(format!("{path}.protocol"), p, e),
            Ok(_) if !p.supports_ports() => {
                c.bad(
                    format!("{path}.protocol"),
                    p,
                    "must be a protocol with ports (TCP, UDP or SCTP)",
                );
            }
            Ok(_) => {}
        },
    }
}

fn validate_profiles(c: &mut Checker, profiles: &[String]) {
    for (i, p) in profiles.iter().enumerate() {
        c.subdomain(&format!("spec.profiles[{i}]"), p);
    }
}

impl SpecRules for HostEndpointSpec {
    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        if self.node.is_empty() {
            c.fail("spec.node", "is required");
        } else {
            c.subdomain("spec.node", &self.node);
        }
        if self.interface_name.is_empty() && self.expected_ips.is_empty() {
            c.fail("spec", "interfaceName or expectedIPs is required");
        }
        if !self.interface_name.is_empty() && self.interface_name != "*" {
            c.interface_name("spec.interfaceName", &self.interface_name);
        }
        for (i, ip) in self.expected_ips.iter().enumerate() {
            c.ip(&format!("spec.expectedIPs[{i}]"), ip);
        }
        validate_profiles(c, &self.profiles);
        for (i, port) in self.ports.iter().enumerate() {
            let p = format!("spec.ports[{i}]");
            if port.name.is_empty() {
                c.fail(format!("{p}.name"), "is required");
            } else if let Err(e) = validate_port_name(&port.name) {
                c.bad(format!("{p}.name"), quoted(&port.name), e);
            }
            validate_port_protocol(c, &p, port.protocol.as_ref());
            c.range(&format!("{p}.port"), port.port, 1, 65535);
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_gateway: String,
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<QoSControls>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpNat {
    #[serde(default, rename = "internalIP")]
    pub internal_ip: String,
    #[serde(default, rename = "externalIP")]
    pub external_ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QoSControls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_bandwidth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_bandwidth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_peakrate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_peakrate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_minburst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_minburst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_max_connections: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_max_connections: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<IntOrString>,
}

/// DSCP names accepted besides the numbers 0-63.
const DSCP_NAMES: [&str; 21] = [
    "DF", "EF", "AF11", "AF12", "AF13", "AF21", "AF22", "AF23", "AF31", "AF32", "AF33", "AF41",
    "AF42", "AF43", "CS0", "CS1", "CS2", "CS3", "CS4", "CS5", "CS6",
];

impl QoSControls {
    fn validate(&self, c: &mut Checker) {
        let fields = [
            ("ingressBandwidth", self.ingress_bandwidth),
            ("egressBandwidth", self.egress_bandwidth),
            ("ingressBurst", self.ingress_burst),
            ("egressBurst", self.egress_burst),
            ("ingressPeakrate", self.ingress_peakrate),
            ("egressPeakrate", self.egress_peakrate),
            ("ingressMinburst", self.ingress_minburst),
            ("egressMinburst", self.egress_minburst),
            ("ingressPacketRate", self.ingress_packet_rate),
            ("egressPacketRate", self.egress_packet_rate),
            ("ingressPacketBurst", self.ingress_packet_burst),
            ("egressPacketBurst", self.egress_packet_burst),
            ("ingressMaxConnections", self.ingress_max_connections),
            ("egressMaxConnections", self.egress_max_connections),
        ];
        for (name, v) in fields {
            if let Some(v) = v
                && v < 0
            {
                c.bad(
                    format!("spec.qosControls.{name}"),
                    v,
                    "must not be negative",
                );
            }
        }
        match &self.dscp {
            Some(IntOrString::Int(n)) => c.range("spec.qosControls.dscp", *n, 0, 63),
            Some(IntOrString::Str(s)) if !DSCP_NAMES.contains(&s.as_str()) => {
                c.bad(
                    "spec.qosControls.dscp",
                    quoted(s),
                    "must be 0-63 or a DSCP name such as AF11 or EF",
                );
            }
            _ => {}
        }
    }
}

/// Doubles every `-` so segments can be joined with single dashes.
fn escape_segment(s: &str) -> String {
    s.replace('-', "--")
}

/// The derived WorkloadEndpoint name: `<node>-<orchestrator>-<workload>-<endpoint>`
/// with every `-` inside a segment doubled (resources.md §14).
pub fn workload_endpoint_name(
    node: &str,
    orchestrator: &str,
    workload: &str,
    endpoint: &str,
) -> String {
    [node, orchestrator, workload, endpoint]
        .iter()
        .map(|s| escape_segment(s))
        .collect::<Vec<_>>()
        .join("-")
}

impl WorkloadEndpointSpec {
    /// The workload segment of the name: the pod for Kubernetes, the
    /// container ID for plain CNI, the workload otherwise.
    pub fn workload_id(&self) -> &str {
        match self.orchestrator.as_str() {
            "k8s" if !self.pod.is_empty() => &self.pod,
            "cni" if !self.container_id.is_empty() => &self.container_id,
            _ => &self.workload,
        }
    }
}

impl SpecRules for WorkloadEndpointSpec {
    fn validate_name(name: &str, c: &mut Checker) {
        if name.len() > 253 || name.is_empty() {
            c.bad("metadata.name", quoted(name), "must be 1-253 characters");
        }
    }

    fn validate(&self, meta: &ObjectMeta, c: &mut Checker) {
        let ids = [
            &self.node,
            &self.orchestrator,
            self.workload_id(),
            &self.endpoint,
        ];
        for (segment, value) in ["node", "orchestrator", "workload", "endpoint"]
            .iter()
            .zip(ids)
        {
            if value.starts_with('-') || value.ends_with('-') {
                c.bad(
                    format!("spec.{segment}"),
                    quoted(value),
                    "may not start or end with '-'",
                );
            }
        }
        if ids.iter().all(|s| !s.is_empty()) {
            let want = workload_endpoint_name(ids[0], ids[1], ids[2], ids[3]);
            if meta.name != want {
                c.bad(
                    "metadata.name",
                    quoted(&meta.name),
                    format!("does not match the endpoint's identity: expected {want:?}"),
                );
            }
        }
        if !self.node.is_empty() {
            c.subdomain("spec.node", &self.node);
        }
        let mut nets = Vec::new();
        for (i, n) in self.ip_networks.iter().enumerate() {
            let p = format!("spec.ipNetworks[{i}]");
            if let Some(net) = c.cidr(&p, n) {
                if net.prefix_len() != net.max_prefix_len() {
                    c.bad(&p, quoted(n), "must be a single address (/32 or /128)");
                }
                nets.push(net);
            }
        }
        for (i, nat) in self.ip_nats.iter().enumerate() {
            let p = format!("spec.ipNATs[{i}]");
            let int = c.ip(&format!("{p}.internalIP"), &nat.internal_ip);
            let ext = c.ip(&format!("{p}.externalIP"), &nat.external_ip);
            if let (Some(int), Some(ext)) = (int, ext) {
                if int.is_ipv4() != ext.is_ipv4() {
                    c.fail(
                        &p,
                        "internalIP and externalIP must be the same address family",
                    );
                }
                if !nets.iter().any(|n| n.addr() == int) {
                    c.bad(
                        format!("{p}.internalIP"),
                        quoted(&nat.internal_ip),
                        "must be one of spec.ipNetworks",
                    );
                }
            }
        }
        if !self.ipv4_gateway.is_empty() {
            c.ipv4("spec.ipv4Gateway", &self.ipv4_gateway);
        }
        if !self.ipv6_gateway.is_empty() {
            c.ipv6("spec.ipv6Gateway", &self.ipv6_gateway);
        }
        validate_profiles(c, &self.profiles);
        if !self.interface_name.is_empty() {
            c.interface_name("spec.interfaceName", &self.interface_name);
        }
        if !self.mac.is_empty() {
            c.mac("spec.mac", &self.mac);
        }
        for (i, port) in self.ports.iter().enumerate() {
            let p = format!("spec.ports[{i}]");
            if port.name.is_empty() {
                if port.host_port.is_none() {
                    c.fail(format!("{p}.name"), "is required unless hostPort is set");
                }
            } else if let Err(e) = validate_port_name(&port.name) {
                c.bad(format!("{p}.name"), quoted(&port.name), e);
            }
            validate_port_protocol(c, &p, port.protocol.as_ref());
            c.range(&format!("{p}.port"), port.port, 1, 65535);
            if let Some(hp) = port.host_port {
                c.range(&format!("{p}.hostPort"), hp, 1, 65535);
            }
            if !port.host_ip.is_empty() {
                c.ip(&format!("{p}.hostIP"), &port.host_ip);
            }
        }
        for (i, n) in self.allow_spoofed_source_prefixes.iter().enumerate() {
            c.cidr(&format!("spec.allowSpoofedSourcePrefixes[{i}]"), n);
        }
        if let Some(q) = &self.qos_controls {
            q.validate(c);
        }
    }
}
