//! Who a CNI invocation is about (cni.md §3): the orchestrator, namespace
//! and workload, and the names derived from them — WorkloadEndpoint name,
//! host veth name (dataplane.md §1.1), IPAM handles (ipam.md §7).
//!
//! Hard cases: Kubernetes only when both `K8S_POD_NAMESPACE` and
//! `K8S_POD_NAME` are given; the host veth name of a pod is shared by every
//! sandbox of that pod (so a DEL for an old sandbox must not remove it),
//! while a plain container's comes from its container ID; the prefix may be
//! changed by `FELIX_INTERFACEPREFIX` (first entry) and the name never
//! exceeds 15 bytes.

use sha1::{Digest, Sha1};
use tortie_model::endpoint::workload_endpoint_name;

use crate::invocation::Invocation;

/// The default host-side interface prefix.
pub const DEFAULT_PREFIX: &str = "cali";
/// Linux interface names hold at most 15 bytes.
const IFNAME_MAX: usize = 15;

/// The orchestrator-specific identity of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    Kubernetes {
        namespace: String,
        pod: String,
        service_account: Option<String>,
    },
    /// Plain CNI: the container ID is the workload.
    Container,
}

/// Everything one attachment is named by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub node: String,
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub workload: Workload,
}

/// `<prefix><11 hex of SHA-1("<namespace>.<pod>")>`, cut to 15 bytes.
pub fn k8s_host_veth_name(prefix: &str, namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("{prefix}{}", &hex[..11]);
    name.truncate(IFNAME_MAX);
    name
}

/// `cali<first 11 characters of the container ID>`.
pub fn container_host_veth_name(container_id: &str) -> String {
    let short: String = container_id.chars().take(11).collect();
    format!("{DEFAULT_PREFIX}{short}")
}

/// The first entry of `FELIX_INTERFACEPREFIX`, else `cali`.
pub fn interface_prefix(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("FELIX_INTERFACEPREFIX")
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_PREFIX.to_string())
}

impl Identity {
    pub fn new(inv: &Invocation, node: &str, network: &str) -> Identity {
        let workload = match inv.args.k8s_pod() {
            Some((namespace, pod)) => Workload::Kubernetes {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                service_account: inv.args.get("K8S_POD_SERVICEACCOUNT").map(str::to_string),
            },
            None => Workload::Container,
        };
        Identity {
            node: node.to_string(),
            network: network.to_string(),
            container_id: inv.container_id.clone(),
            ifname: inv.ifname.clone(),
            workload,
        }
    }

    pub fn is_k8s(&self) -> bool {
        matches!(self.workload, Workload::Kubernetes { .. })
    }

    pub fn orchestrator(&self) -> &'static str {
        if self.is_k8s() { "k8s" } else { "cni" }
    }

    /// The WorkloadEndpoint's namespace (`default` outside Kubernetes).
    pub fn namespace(&self) -> &str {
        match &self.workload {
            Workload::Kubernetes { namespace, .. } => namespace,
            Workload::Container => "default",
        }
    }

    /// The pod name, or the container ID.
    pub fn workload_id(&self) -> &str {
        match &self.workload {
            Workload::Kubernetes { pod, .. } => pod,
            Workload::Container => &self.container_id,
        }
    }

    pub fn wep_name(&self) -> String {
        workload_endpoint_name(
            &self.node,
            self.orchestrator(),
            self.workload_id(),
            &self.ifname,
        )
    }

    pub fn host_veth_name(&self, prefix: &str) -> String {
        match &self.workload {
            Workload::Kubernetes { namespace, pod, .. } => {
                k8s_host_veth_name(prefix, namespace, pod)
            }
            Workload::Container => container_host_veth_name(&self.container_id),
        }
    }

    /// `<network>.<container ID>`.
    pub fn handle(&self) -> String {
        tortie_ipam::tunnel::workload_handle(&self.network, &self.container_id)
    }

    /// The pre-handle workload ID released on DEL for upgrades.
    pub fn legacy_handle(&self) -> String {
        match &self.workload {
            Workload::Kubernetes { namespace, pod, .. } => format!("{namespace}.{pod}"),
            Workload::Container => self.container_id.clone(),
        }
    }

    /// Whether the host veth name is this container's alone (so a DEL may
    /// remove it by name without knowing who created it).
    pub fn owns_host_veth_name(&self) -> bool {
        !self.is_k8s()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invocation::CniArgs;

    fn inv(args: &str) -> Invocation {
        Invocation {
            command: crate::invocation::Command::Add,
            container_id: "0123456789abcdef".into(),
            netns: "/var/run/netns/x".into(),
            ifname: "eth0".into(),
            args: CniArgs::parse(args).expect("args"),
            path: Vec::new(),
        }
    }

    #[test]
    fn host_veth_names_match_calico() {
        // sha1("default.nginx") starts c440f455693 (computed independently
        // with Python's hashlib).
        assert_eq!(
            k8s_host_veth_name("cali", "default", "nginx"),
            "calic440f455693"
        );
        assert_eq!(k8s_host_veth_name("cali", "default", "nginx").len(), 15);
        assert_eq!(k8s_host_veth_name("tortie", "a", "b").len(), 15);
        assert_eq!(
            container_host_veth_name("0123456789abcdef"),
            "cali0123456789a"
        );
        assert_eq!(container_host_veth_name("abc"), "caliabc");
    }

    #[test]
    fn kubernetes_identity() {
        let id = Identity::new(
            &inv("K8S_POD_NAMESPACE=ns-1;K8S_POD_NAME=web-7d9f;K8S_POD_SERVICEACCOUNT=sa"),
            "node-1",
            "k8s-pod-network",
        );
        assert!(id.is_k8s());
        assert_eq!(id.wep_name(), "node--1-k8s-web--7d9f-eth0");
        assert_eq!(id.namespace(), "ns-1");
        assert_eq!(id.handle(), "k8s-pod-network.0123456789abcdef");
        assert_eq!(id.legacy_handle(), "ns-1.web-7d9f");
        assert!(!id.owns_host_veth_name());
        assert!(matches!(
            &id.workload,
            Workload::Kubernetes { service_account: Some(sa), .. } if sa == "sa"
        ));
    }

    #[test]
    fn plain_cni_identity() {
        let id = Identity::new(&inv("K8S_POD_NAME=only-one"), "n1", "net");
        assert!(!id.is_k8s());
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.wep_name(), "n1-cni-0123456789abcdef-eth0");
        assert_eq!(id.host_veth_name("ignored"), "cali0123456789a");
        assert_eq!(id.legacy_handle(), "0123456789abcdef");
    }

    #[test]
    fn prefix_from_felix_variable() {
        assert_eq!(interface_prefix(&|_| None), "cali");
        assert_eq!(interface_prefix(&|_| Some(" tap, cali".to_string())), "tap");
    }
}
