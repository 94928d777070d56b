//! Endpoints and network sets — the things selectors match — parsed from
//! their resources: addresses, declared named ports, profiles, and the
//! label layers of selectors.md §6.1-6.2.
//!
//! Hard cases: a NetworkSet implicitly inherits its namespace's `kns.<ns>`
//! profile labels; a host endpoint's `expectedIPs` are its addresses for
//! rule selectors; unnamed workload ports (host ports only) are not named
//! ports; the service-account label is only set for names under 63
//! characters (it must fit a label value).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tortie_model::Resource;
use tortie_model::endpoint::{
    GlobalNetworkSetSpec, HostEndpointSpec, NAMESPACE_LABEL, NetworkSetSpec, ORCHESTRATOR_LABEL,
    SERVICE_ACCOUNT_LABEL, WorkloadEndpointSpec,
};
use tortie_model::scalar::{Protocol, parse_cidr, parse_ip, parse_mac};

use crate::ids::{ItemKey, NetworkSetId, WorkloadId};
use crate::labels::{LabelSources, Labels};
use crate::rules::NamedPortProtocol;

/// A port an endpoint declares by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeclaredPort {
    pub name: String,
    pub protocol: NamedPortProtocol,
    pub port: u16,
}

/// A workload endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub id: WorkloadId,
    /// The pod (Kubernetes), container ID (CNI) or workload name.
    pub workload: String,
    pub node: String,
    /// Host-side interface name (may be empty before the CNI plugin sets it).
    pub iface: String,
    /// Normalised `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    pub allow_spoofed_source_prefixes: Vec<IpNet>,
    pub profiles: Vec<String>,
}

/// A host endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct HostEndpoint {
    pub name: String,
    pub node: String,
    /// The interface, `*` for all, or `None` to find it by `expectedIPs`.
    pub iface: Option<String>,
    pub expected_ips: Vec<IpAddr>,
    pub profiles: Vec<String>,
}

/// What kind of item, with its kind-specific data.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    Workload(Workload),
    Host(HostEndpoint),
    NetworkSet(NetworkSetId),
}

/// An endpoint or network set with everything selectors and IP sets need.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    /// The addresses the item contributes to IP sets.
    pub nets: Vec<IpNet>,
    pub ports: Vec<DeclaredPort>,
    pub label_sources: LabelSources,
    /// The flattened labels (see `labels`).
    pub labels: Labels,
}

impl Item {
    pub fn key(&self) -> ItemKey {
        match &self.kind {
            ItemKind::Workload(w) => ItemKey::Workload(w.id.clone()),
            ItemKind::Host(h) => ItemKey::Host(h.name.clone()),
            ItemKind::NetworkSet(id) => ItemKey::NetworkSet(id.clone()),
        }
    }

    /// The node of an endpoint (`None` for network sets).
    pub fn node(&self) -> Option<&str> {
        match &self.kind {
            ItemKind::Workload(w) => Some(&w.node),
            ItemKind::Host(h) => Some(&h.node),
            ItemKind::NetworkSet(_) => None,
        }
    }

    pub fn is_endpoint(&self) -> bool {
        !matches!(self.kind, ItemKind::NetworkSet(_))
    }

    /// True if `addr` is one of the item's addresses (or inside a net).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// Same item, relabelled.
    pub fn with_labels(&self, labels: Labels) -> Item {
        Item {
            labels,
            ..self.clone()
        }
    }
}

fn nets(list: &[String], field: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .enumerate()
        .map(|(i, n)| parse_cidr(n).map_err(|e| format!("{field}[{i}]: {e}")))
        .collect()
}

fn declared_port(
    name: &str,
    protocol: Option<&Protocol>,
    port: i64,
    field: &str,
) -> Result<DeclaredPort, String> {
    let protocol = protocol
        .ok_or_else(|| format!("{field}.protocol is required"))?
        .number()
        .map_err(|e| format!("{field}.protocol: {e}"))?;
    let protocol = NamedPortProtocol::from_number(protocol)
        .ok_or_else(|| format!("{field}.protocol: {protocol} has no ports"))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{field}.port: {port} is not 1-65535"))?;
    Ok(DeclaredPort {
        name: name.to_string(),
        protocol,
        port,
    })
}

/// Label sources of a workload: the implicit labels, its own, its profiles.
fn workload_label_sources(r: &Resource, spec: &WorkloadEndpointSpec) -> LabelSources {
    let mut implicit = vec![(NAMESPACE_LABEL.to_string(), r.metadata.namespace.clone())];
    if !spec.orchestrator.is_empty() {
        implicit.push((ORCHESTRATOR_LABEL.to_string(), spec.orchestrator.clone()));
    }
    if !spec.service_account_name.is_empty() && spec.service_account_name.len() < 63 {
        implicit.push((
            SERVICE_ACCOUNT_LABEL.to_string(),
            spec.service_account_name.clone(),
        ));
    }
    LabelSources {
        implicit,
        own: r.metadata.labels.clone(),
        parents: spec.profiles.clone(),
    }
}

/// Parses an endpoint or network set resource; `None` for other kinds. The
/// labels are left empty: the model flattens them against its profiles.
pub fn parse_item(r: &Resource) -> Option<Result<Item, String>> {
    if let Some(spec) = r.spec::<WorkloadEndpointSpec>() {
        return Some(parse_workload(r, spec));
    }
    if let Some(spec) = r.spec::<HostEndpointSpec>() {
        return Some(parse_host(r, spec));
    }
    if let Some(spec) = r.spec::<NetworkSetSpec>() {
        let ns = &r.metadata.namespace;
        return Some(nets(&spec.nets, "spec.nets").map(|nets| Item {
            kind: ItemKind::NetworkSet(NetworkSetId {
                namespace: ns.clone(),
                name: r.metadata.name.clone(),
            }),
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            ports: Vec::new(),
            label_sources: LabelSources {
                implicit: vec![(NAMESPACE_LABEL.to_string(), ns.clone())],
                own: r.metadata.labels.clone(),
                parents: vec![format!("kns.{ns}")],
            },
            labels: Labels::default(),
        }));
    }
    if let Some(spec) = r.spec::<GlobalNetworkSetSpec>() {
        return Some(nets(&spec.nets, "spec.nets").map(|nets| Item {
            kind: ItemKind::NetworkSet(NetworkSetId {
                namespace: String::new(),
                name: r.metadata.name.clone(),
            }),
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            ports: Vec::new(),
            label_sources: LabelSources {
                implicit: Vec::new(),
                own: r.metadata.labels.clone(),
                parents: Vec::new(),
            },
            labels: Labels::default(),
        }));
    }
    None
}

fn parse_workload(r: &Resource, spec: &WorkloadEndpointSpec) -> Result<Item, String> {
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        if !p.name.is_empty() {
            ports.push(declared_port(
                &p.name,
                p.protocol.as_ref(),
                p.port,
                &format!("spec.ports[{i}]"),
            )?);
        }
    }
    let mac = if spec.mac.is_empty() {
        None
    } else {
        let m = parse_mac(&spec.mac).map_err(|e| format!("spec.mac: {e}"))?;
        Some(format_mac(m))
    };
    Ok(Item {
        kind: ItemKind::Workload(Workload {
            id: WorkloadId::new(&r.metadata.namespace, &r.metadata.name),
            workload: spec.workload_id().to_string(),
            node: spec.node.clone(),
            iface: spec.interface_name.clone(),
            mac,
            allow_spoofed_source_prefixes: nets(
                &spec.allow_spoofed_source_prefixes,
                "spec.allowSpoofedSourcePrefixes",
            )?,
            profiles: spec.profiles.clone(),
        }),
        nets: nets(&spec.ip_networks, "spec.ipNetworks")?,
        ports,
        label_sources: workload_label_sources(r, spec),
        labels: Labels::default(),
    })
}

fn parse_host(r: &Resource, spec: &HostEndpointSpec) -> Result<Item, String> {
    let expected_ips = spec
        .expected_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| parse_ip(ip).map_err(|e| format!("spec.expectedIPs[{i}]: {e}")))
        .collect::<Result<Vec<IpAddr>, String>>()?;
    let ports = spec
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            declared_port(
                &p.name,
                p.protocol.as_ref(),
                p.port,
                &format!("spec.ports[{i}]"),
            )
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Item {
        kind: ItemKind::Host(HostEndpoint {
            name: r.metadata.name.clone(),
            node: spec.node.clone(),
            iface: (!spec.interface_name.is_empty()).then(|| spec.interface_name.clone()),
            expected_ips: expected_ips.clone(),
            profiles: spec.profiles.clone(),
        }),
        nets: expected_ips.into_iter().map(IpNet::from).collect(),
        ports,
        label_sources: LabelSources {
            implicit: Vec::new(),
            own: r.metadata.labels.clone(),
            parents: spec.profiles.clone(),
        },
        labels: Labels::default(),
    })
}

/// `aa:bb:cc:dd:ee:ff`, lower case.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Shared handle to an item.
pub type ItemRef = Arc<Item>;
