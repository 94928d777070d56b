//! Table columns per kind for `get` (calicoctl.md §2.3): which headings the
//! default and wide tables show, and how each cell is printed.

use tortie_model::bgp::{BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec};
use tortie_model::config::{CalicoNodeStatusSpec, ClusterInformationSpec};
use tortie_model::endpoint::{
    GlobalNetworkSetSpec, HostEndpointSpec, NetworkSetSpec, WorkloadEndpointSpec,
};
use tortie_model::ippool::{EncapMode, IPAMConfigurationSpec, IPPoolSpec, IPReservationSpec};
use tortie_model::k8s::StagedKubernetesNetworkPolicySpec;
use tortie_model::node::NodeSpec;
use tortie_model::policy::{
    GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec, StagedGlobalNetworkPolicySpec,
    StagedNetworkPolicySpec, TierSpec,
};
use tortie_model::{Kind, Resource};

/// Default and wide headings of a kind.
pub fn headings(kind: Kind, wide: bool) -> &'static [&'static str] {
    use Kind::*;
    match (kind, wide) {
        (IPPool, false) => &["NAME", "CIDR", "SELECTOR"],
        (IPPool, true) => &[
            "NAME",
            "CIDR",
            "NAT",
            "IPIPMODE",
            "VXLANMODE",
            "DISABLED",
            "DISABLEBGPEXPORT",
            "SELECTOR",
            "ASSIGNMENTMODE",
        ],
        (BGPPeer, _) => &["NAME", "PEERIP", "NODE", "ASN"],
        (BGPConfiguration, _) => &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        (BGPFilter, _) => &[
            "NAME",
            "NUMEXPORTV4",
            "NUMIMPORTV4",
            "NUMEXPORTV6",
            "NUMIMPORTV6",
        ],
        (Node, false) => &["NAME"],
        (Node, true) => &["NAME", "ASN", "IPV4", "IPV6"],
        (WorkloadEndpoint, false) => &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
        (WorkloadEndpoint, true) => &[
            "NAME",
            "WORKLOAD",
            "NODE",
            "NETWORKS",
            "INTERFACE",
            "PROFILES",
            "NATS",
        ],
        (HostEndpoint, false) => &["NAME", "NODE"],
        (HostEndpoint, true) => &["NAME", "NODE", "INTERFACE", "IPS", "PROFILES"],
        (
            GlobalNetworkPolicy | NetworkPolicy | StagedNetworkPolicy | StagedGlobalNetworkPolicy,
            false,
        ) => &["NAME", "TIER"],
        (
            GlobalNetworkPolicy | NetworkPolicy | StagedNetworkPolicy | StagedGlobalNetworkPolicy,
            true,
        ) => &["NAME", "TIER", "ORDER", "SELECTOR"],
        (StagedKubernetesNetworkPolicy, false) => &["NAME"],
        (StagedKubernetesNetworkPolicy, true) => &["NAME", "PODSELECTOR"],
        (GlobalNetworkSet | NetworkSet, false) => &["NAME"],
        (GlobalNetworkSet | NetworkSet, true) => &["NAME", "NETS"],
        (Profile, false) => &["NAME"],
        (Profile, true) => &["NAME", "LABELS"],
        (Tier, _) => &["NAME", "ORDER"],
        (IPReservation, false) => &["NAME"],
        (IPReservation, true) => &["NAME", "CIDRS"],
        (IPAMConfiguration, false) => &["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"],
        (IPAMConfiguration, true) => &[
            "NAME",
            "STRICTAFFINITY",
            "AUTOALLOCATEBLOCKS",
            "MAXBLOCKSPERHOST",
        ],
        (ClusterInformation, _) => &[
            "NAME",
            "CLUSTERGUID",
            "CLUSTERTYPE",
            "CALICOVERSION",
            "DATASTOREREADY",
        ],
        (CalicoNodeStatus, false) => &["NAME", "NODE"],
        (CalicoNodeStatus, true) => &["NAME", "NODE", "CLASSES"],
        (FelixConfiguration | KubeControllersConfiguration, _) => &["NAME"],
    }
}

/// Every heading a kind knows (for `-o custom-columns`).
pub fn all_headings(kind: Kind) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = headings(kind, false).to_vec();
    for h in headings(kind, true) {
        if !all.contains(h) {
            all.push(h);
        }
    }
    all
}

/// What cells need beyond the resource itself.
pub struct CellContext {
    /// The cluster's default AS number, shown in parentheses for nodes
    /// that inherit it.
    pub global_as: String,
}

fn join(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn truncate80(s: String) -> String {
    if s.chars().count() <= 80 {
        s
    } else {
        let head: String = s.chars().take(77).collect();
        format!("{head}...")
    }
}

fn order(o: Option<f64>) -> String {
    o.map(|o| o.to_string()).unwrap_or_default()
}

fn mode(m: Option<EncapMode>) -> String {
    format!("{:?}", m.unwrap_or(EncapMode::Never))
}

/// The text of one cell.
pub fn cell(r: &Resource, heading: &str, ctx: &CellContext) -> String {
    let name = r.metadata.name.clone();
    if heading == "NAME" {
        return name;
    }
    if heading == "NAMESPACE" {
        return r.metadata.namespace.clone();
    }
    if let Some(p) = r.spec::<IPPoolSpec>() {
        return match heading {
            "CIDR" => p.cidr.clone(),
            "SELECTOR" => p.node_selector.clone(),
            "NAT" => p.nat_outgoing.to_string(),
            "IPIPMODE" => mode(p.ipip_mode),
            "VXLANMODE" => mode(p.vxlan_mode),
            "DISABLED" => p.disabled.to_string(),
            "DISABLEBGPEXPORT" => p.disable_bgp_export.to_string(),
            "ASSIGNMENTMODE" => p
                .assignment_mode
                .map(|m| format!("{m:?}"))
                .unwrap_or_default(),
            _ => String::new(),
        };
    }
    if let Some(p) = r.spec::<BGPPeerSpec>() {
        return match heading {
            "PEERIP" => p.peer_ip.clone(),
            "NODE" if !p.node.is_empty() => p.node.clone(),
            "NODE" if !p.node_selector.is_empty() => p.node_selector.clone(),
            "NODE" => "(global)".to_string(),
            "ASN" => p
                .as_number
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            _ => String::new(),
        };
    }
    if let Some(c) = r.spec::<BGPConfigurationSpec>() {
        return match heading {
            "LOGSEVERITY" => c.log_severity_screen.clone(),
            "MESHENABLED" => c
                .node_to_node_mesh_enabled
                .map(|b| b.to_string())
                .unwrap_or_else(|| "-".into()),
            "ASNUMBER" => c
                .as_number
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into()),
            _ => String::new(),
        };
    }
    if let Some(f) = r.spec::<BGPFilterSpec>() {
        return match heading {
            "NUMEXPORTV4" => f.export_v4.len().to_string(),
            "NUMIMPORTV4" => f.import_v4.len().to_string(),
            "NUMEXPORTV6" => f.export_v6.len().to_string(),
            "NUMIMPORTV6" => f.import_v6.len().to_string(),
            _ => String::new(),
        };
    }
    if let Some(n) = r.spec::<NodeSpec>() {
        let bgp = n.bgp.as_ref();
        return match heading {
            "ASN" => match bgp.and_then(|b| b.as_number.as_ref()) {
                Some(a) => a.to_string(),
                None => format!("({})", ctx.global_as),
            },
            "IPV4" => bgp.map(|b| b.ipv4_address.clone()).unwrap_or_default(),
            "IPV6" => bgp.map(|b| b.ipv6_address.clone()).unwrap_or_default(),
            _ => String::new(),
        };
    }
    if let Some(w) = r.spec::<WorkloadEndpointSpec>() {
        return match heading {
            "WORKLOAD" if !w.workload.is_empty() => w.workload.clone(),
            "WORKLOAD" => w.pod.clone(),
            "NODE" => w.node.clone(),
            "NETWORKS" => join(&w.ip_networks),
            "INTERFACE" => w.interface_name.clone(),
            "PROFILES" => join(&w.profiles),
            "NATS" => join(
                w.ip_nats
                    .iter()
                    .map(|n| format!("{}->{}", n.internal_ip, n.external_ip)),
            ),
            _ => String::new(),
        };
    }
    if let Some(h) = r.spec::<HostEndpointSpec>() {
        return match heading {
            "NODE" => h.node.clone(),
            "INTERFACE" => h.interface_name.clone(),
            "IPS" => join(&h.expected_ips),
            "PROFILES" => join(&h.profiles),
            _ => String::new(),
        };
    }
    let policy = |tier: &str, ord: Option<f64>, selector: &str| match heading {
        "TIER" => tier.to_string(),
        "ORDER" => order(ord),
        "SELECTOR" => selector.to_string(),
        _ => String::new(),
    };
    if let Some(p) = r.spec::<NetworkPolicySpec>() {
        return policy(&p.tier, p.order, &p.selector);
    }
    if let Some(p) = r.spec::<GlobalNetworkPolicySpec>() {
        return policy(&p.tier, p.order, &p.selector);
    }
    if let Some(p) = r.spec::<StagedNetworkPolicySpec>() {
        return policy(&p.policy.tier, p.policy.order, &p.policy.selector);
    }
    if let Some(p) = r.spec::<StagedGlobalNetworkPolicySpec>() {
        return policy(&p.policy.tier, p.policy.order, &p.policy.selector);
    }
    if let Some(p) = r.spec::<StagedKubernetesNetworkPolicySpec>() {
        return match heading {
            "PODSELECTOR" => serde_json::to_string(&p.pod_selector).unwrap_or_default(),
            _ => String::new(),
        };
    }
    if let Some(s) = r.spec::<NetworkSetSpec>() {
        return truncate80(join(&s.nets));
    }
    if let Some(s) = r.spec::<GlobalNetworkSetSpec>() {
        return truncate80(join(&s.nets));
    }
    if let Some(p) = r.spec::<ProfileSpec>() {
        return join(p.labels_to_apply.iter().map(|(k, v)| format!("{k}={v}")));
    }
    if let Some(t) = r.spec::<TierSpec>() {
        return order(t.order);
    }
    if let Some(s) = r.spec::<IPReservationSpec>() {
        return truncate80(join(&s.reserved_cidrs));
    }
    if let Some(c) = r.spec::<IPAMConfigurationSpec>() {
        return match heading {
            "STRICTAFFINITY" => c.strict_affinity.to_string(),
            "AUTOALLOCATEBLOCKS" => c.auto_allocate_blocks.unwrap_or(true).to_string(),
            "MAXBLOCKSPERHOST" => c.max_blocks_per_host.unwrap_or(0).to_string(),
            _ => String::new(),
        };
    }
    if let Some(c) = r.spec::<ClusterInformationSpec>() {
        return match heading {
            "CLUSTERGUID" => c.cluster_guid.clone(),
            "CLUSTERTYPE" => c.cluster_type.clone(),
            "CALICOVERSION" => c.calico_version.clone(),
            "DATASTOREREADY" => c.datastore_ready.unwrap_or(false).to_string(),
            _ => String::new(),
        };
    }
    if let Some(s) = r.spec::<CalicoNodeStatusSpec>() {
        return match heading {
            "NODE" => s.node.clone(),
            "CLASSES" => join(&s.classes),
            _ => String::new(),
        };
    }
    String::new()
}
