//! The WorkloadEndpoint the plugin writes (cni.md §4.2 step 3, §4.3) and
//! the network's Profile, with the ownership rules of DEL and GC.
//!
//! Hard cases:
//! - A pod's endpoint name does not contain the container ID, so a DEL for
//!   an old sandbox finds the new sandbox's endpoint: it is deleted only if
//!   its `containerID` is ours (or empty), and only at the revision read.
//! - Writes race with other writers: create, or update at the read
//!   revision, retried a bounded number of times.
//! - GC must know which endpoints belong to which network: the plugin
//!   annotates each endpoint with `cni.tortie.dev/network`.
//! - The network's Profile is created if missing and never updated.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_client::{Client, ClientError};
use tortie_model::endpoint::{
    NAMESPACE_LABEL, ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL, WorkloadEndpointSpec,
};
use tortie_model::policy::ProfileSpec;
use tortie_model::rule::{Action, Rule};
use tortie_model::{Kind, ObjectMeta, Resource};

use crate::error::CniError;
use crate::identity::{Identity, Workload};

/// Annotation recording which CNI network wrote an endpoint.
pub const NETWORK_ANNOTATION: &str = "cni.tortie.dev/network";
/// Attempts of a read-modify-write that keeps losing races.
const WRITE_ATTEMPTS: usize = 6;

/// What an endpoint is built from.
#[derive(Clone, Debug)]
pub struct EndpointFacts<'a> {
    pub identity: &'a Identity,
    pub user_labels: &'a BTreeMap<String, String>,
    pub addresses: &'a [IpAddr],
    pub host_veth: &'a str,
    pub container_mac: &'a str,
}

/// The profiles of a workload: `kns.<ns>` (+ `ksa.<ns>.<sa>`) for pods,
/// the network's name otherwise.
pub fn profiles(identity: &Identity) -> Vec<String> {
    match &identity.workload {
        Workload::Kubernetes {
            namespace,
            service_account,
            ..
        } => {
            let mut list = vec![format!("kns.{namespace}")];
            if let Some(sa) = service_account {
                list.push(format!("ksa.{namespace}.{sa}"));
            }
            list
        }
        Workload::Container => vec![identity.network.clone()],
    }
}

/// The endpoint resource for `facts`.
pub fn build(facts: &EndpointFacts<'_>) -> Resource {
    let id = facts.identity;
    let mut labels = facts.user_labels.clone();
    labels.insert(NAMESPACE_LABEL.to_string(), id.namespace().to_string());
    labels.insert(
        ORCHESTRATOR_LABEL.to_string(),
        id.orchestrator().to_string(),
    );
    let (pod, service_account) = match &id.workload {
        Workload::Kubernetes {
            pod,
            service_account,
            ..
        } => (pod.clone(), service_account.clone().unwrap_or_default()),
        Workload::Container => (String::new(), String::new()),
    };
    if !service_account.is_empty() {
        labels.insert(SERVICE_ACCOUNT_LABEL.to_string(), service_account.clone());
    }
    let mut metadata = ObjectMeta::namespaced(id.namespace(), &id.wep_name());
    metadata.labels = labels;
    metadata
        .annotations
        .insert(NETWORK_ANNOTATION.to_string(), id.network.clone());
    let spec = WorkloadEndpointSpec {
        orchestrator: id.orchestrator().to_string(),
        workload: if id.is_k8s() {
            String::new()
        } else {
            id.container_id.clone()
        },
        node: id.node.clone(),
        container_id: id.container_id.clone(),
        pod,
        endpoint: id.ifname.clone(),
        service_account_name: service_account,
        ip_networks: facts
            .addresses
            .iter()
            .map(|a| IpNet::from(*a).to_string())
            .collect(),
        profiles: profiles(id),
        interface_name: facts.host_veth.to_string(),
        mac: facts.container_mac.to_string(),
        ..WorkloadEndpointSpec::default()
    };
    Resource::new(metadata, spec)
}

/// The endpoint of this identity, if stored.
pub async fn get(client: &Client, identity: &Identity) -> Result<Option<Resource>, CniError> {
    match client
        .get(
            Kind::WorkloadEndpoint,
            identity.namespace(),
            &identity.wep_name(),
        )
        .await
    {
        Ok(r) => Ok(Some(r)),
        Err(ClientError::NotFound { .. }) => Ok(None),
        Err(e) => Err(CniError::from(e).context("cannot read the WorkloadEndpoint")),
    }
}

/// Creates the endpoint, or updates the stored one to match.
pub async fn write(client: &Client, desired: &Resource) -> Result<Resource, CniError> {
    let (ns, name) = (&desired.metadata.namespace, &desired.metadata.name);
    for _ in 0..WRITE_ATTEMPTS {
        match client.create(desired.clone()).await {
            Ok(stored) => return Ok(stored),
            Err(ClientError::AlreadyExists { .. }) => {}
            Err(e) => return Err(CniError::from(e).context("cannot create the WorkloadEndpoint")),
        }
        let current = match client.get(Kind::WorkloadEndpoint, ns, name).await {
            Ok(r) => r,
            Err(ClientError::NotFound { .. }) => continue,
            Err(e) => return Err(CniError::from(e).context("cannot read the WorkloadEndpoint")),
        };
        let mut update = desired.clone();
        update.metadata.resource_version = current.metadata.resource_version.clone();
        let mut annotations = current.metadata.annotations.clone();
        annotations.extend(desired.metadata.annotations.clone());
        update.metadata.annotations = annotations;
        match client.update(update).await {
            Ok(stored) => return Ok(stored),
            Err(ClientError::OutOfDate { .. } | ClientError::NotFound { .. }) => continue,
            Err(e) => return Err(CniError::from(e).context("cannot update the WorkloadEndpoint")),
        }
    }
    Err(CniError::try_again(format!(
        "WorkloadEndpoint {ns}/{name} kept changing while being written; try again later"
    )))
}

/// What a guarded delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Deleted; the addresses it listed.
    Deleted(Vec<IpAddr>),
    AlreadyGone,
    /// The endpoint belongs to another container ID and was kept.
    KeptForOtherContainer(String),
}

/// Deletes the identity's endpoint if it belongs to this container.
pub async fn delete_if_owned(client: &Client, identity: &Identity) -> Result<Removal, CniError> {
    let (ns, name) = (identity.namespace(), identity.wep_name());
    for _ in 0..WRITE_ATTEMPTS {
        let Some(current) = get(client, identity).await? else {
            return Ok(Removal::AlreadyGone);
        };
        let owner = current
            .spec::<WorkloadEndpointSpec>()
            .map(|s| s.container_id.clone())
            .unwrap_or_default();
        if !owner.is_empty() && owner != identity.container_id {
            return Ok(Removal::KeptForOtherContainer(owner));
        }
        match client
            .delete(
                Kind::WorkloadEndpoint,
                ns,
                &name,
                Some(&current.metadata.resource_version),
            )
            .await
        {
            Ok(deleted) => {
                let addresses = deleted
                    .spec::<WorkloadEndpointSpec>()
                    .map(|s| {
                        s.ip_networks
                            .iter()
                            .filter_map(|n| n.parse::<IpNet>().ok())
                            .map(|n| n.addr())
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok(Removal::Deleted(addresses));
            }
            Err(ClientError::NotFound { .. }) => return Ok(Removal::AlreadyGone),
            Err(ClientError::OutOfDate { .. }) => continue,
            Err(e) => return Err(CniError::from(e).context("cannot delete the WorkloadEndpoint")),
        }
    }
    Err(CniError::try_again(format!(
        "WorkloadEndpoint {ns}/{name} kept changing while being deleted; try again later"
    )))
}

/// Creates the network's Profile if it does not exist (cni.md §4.3):
/// egress allowed; ingress allowed from members of the network.
pub async fn ensure_profile(client: &Client, network: &str) -> Result<(), CniError> {
    match client.get(Kind::Profile, "", network).await {
        Ok(_) => return Ok(()),
        Err(ClientError::NotFound { .. }) => {}
        Err(e) => return Err(CniError::from(e).context("cannot read the network's Profile")),
    }
    let mut ingress = Rule::action(Action::Allow);
    ingress.source.selector = format!("has({network})");
    let profile = Resource::new(
        ObjectMeta::named(network),
        ProfileSpec {
            ingress: vec![ingress],
            egress: vec![Rule::action(Action::Allow)],
            labels_to_apply: BTreeMap::from([(network.to_string(), String::new())]),
        },
    );
    match client.create(profile).await {
        Ok(_) | Err(ClientError::AlreadyExists { .. }) => {
            tracing::info!(profile = network, "created the network's profile");
            Ok(())
        }
        Err(e) => Err(CniError::from(e).context(format!("cannot create Profile {network}"))),
    }
}

/// Adds the network to an existing endpoint's profiles (plain CNI ADD of
/// a container that already has an endpoint).
pub async fn add_profile(
    client: &Client,
    identity: &Identity,
) -> Result<Option<Resource>, CniError> {
    let network = identity.network.clone();
    let changed = client
        .modify(
            Kind::WorkloadEndpoint,
            identity.namespace(),
            &identity.wep_name(),
            |mut r| {
                if let Some(spec) = r.spec_mut::<WorkloadEndpointSpec>()
                    && !spec.profiles.contains(&network)
                {
                    spec.profiles.push(network.clone());
                }
                Ok(r)
            },
        )
        .await;
    match changed {
        Ok(r) => Ok(Some(r)),
        Err(ClientError::NotFound { .. }) => Ok(None),
        Err(e) => Err(CniError::from(e).context("cannot update the WorkloadEndpoint's profiles")),
    }
}

/// Deletes this network's endpoints on `node` whose container is not in
/// `valid`. Returns the deleted endpoints' names.
pub async fn collect_garbage(
    client: &Client,
    network: &str,
    node: &str,
    valid: &BTreeSet<String>,
) -> Result<Vec<String>, CniError> {
    let list = client
        .list(Kind::WorkloadEndpoint, None)
        .await
        .map_err(|e| CniError::from(e).context("cannot list WorkloadEndpoints"))?;
    let mut deleted = Vec::new();
    for wep in list.items {
        let Some(spec) = wep.spec::<WorkloadEndpointSpec>() else {
            continue;
        };
        let ours = spec.node == node
            && wep
                .metadata
                .annotations
                .get(NETWORK_ANNOTATION)
                .map(String::as_str)
                == Some(network);
        if !ours || valid.contains(&spec.container_id) {
            continue;
        }
        let (ns, name) = (&wep.metadata.namespace, &wep.metadata.name);
        match client
            .delete(
                Kind::WorkloadEndpoint,
                ns,
                name,
                Some(&wep.metadata.resource_version),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(endpoint = %name, namespace = %ns, "GC: deleted the endpoint of an attachment the runtime no longer has");
                deleted.push(format!("{ns}/{name}"));
            }
            // Changed or gone since the list: someone else owns it now.
            Err(ClientError::NotFound { .. } | ClientError::OutOfDate { .. }) => {}
            Err(e) => return Err(CniError::from(e).context(format!("cannot delete {ns}/{name}"))),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invocation::{CniArgs, Command, Invocation};

    fn identity(args: &str) -> Identity {
        let inv = Invocation {
            command: Command::Add,
            container_id: "c0ffee".into(),
            netns: "/x".into(),
            ifname: "eth0".into(),
            args: CniArgs::parse(args).expect("args"),
            path: Vec::new(),
        };
        Identity::new(&inv, "node-1", "net1")
    }

    #[test]
    fn kubernetes_endpoint_contents() {
        let id = identity("K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1;K8S_POD_SERVICEACCOUNT=api");
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let addrs: Vec<IpAddr> = vec![
            "10.0.0.5".parse().expect("ip"),
            "fd00::5".parse().expect("ip"),
        ];
        let mut r = build(&EndpointFacts {
            identity: &id,
            user_labels: &labels,
            addresses: &addrs,
            host_veth: "cali12345678901",
            container_mac: "aa:bb:cc:dd:ee:ff",
        });
        r.apply_defaults();
        r.validate().expect("a valid endpoint");
        assert_eq!(r.metadata.name, "node--1-k8s-web--1-eth0");
        assert_eq!(r.metadata.namespace, "prod");
        assert_eq!(
            r.metadata.labels.get(NAMESPACE_LABEL).map(String::as_str),
            Some("prod")
        );
        assert_eq!(
            r.metadata
                .labels
                .get(ORCHESTRATOR_LABEL)
                .map(String::as_str),
            Some("k8s")
        );
        assert_eq!(
            r.metadata
                .labels
                .get(SERVICE_ACCOUNT_LABEL)
                .map(String::as_str),
            Some("api")
        );
        assert_eq!(
            r.metadata.labels.get("app").map(String::as_str),
            Some("web")
        );
        let spec = r.spec::<WorkloadEndpointSpec>().expect("wep");
        assert_eq!(spec.ip_networks, ["10.0.0.5/32", "fd00::5/128"]);
        assert_eq!(spec.profiles, ["kns.prod", "ksa.prod.api"]);
        assert_eq!(spec.pod, "web-1");
        assert_eq!(spec.container_id, "c0ffee");
        assert_eq!(spec.endpoint, "eth0");
        assert_eq!(spec.interface_name, "cali12345678901");
        assert_eq!(spec.mac, "aa:bb:cc:dd:ee:ff");
    }

    #[test]
    fn plain_cni_endpoint_contents() {
        let id = identity("");
        let addrs: Vec<IpAddr> = vec!["10.0.0.5".parse().expect("ip")];
        let mut r = build(&EndpointFacts {
            identity: &id,
            user_labels: &BTreeMap::new(),
            addresses: &addrs,
            host_veth: "calic0ffee",
            container_mac: "aa:bb:cc:dd:ee:ff",
        });
        r.apply_defaults();
        r.validate().expect("a valid endpoint");
        assert_eq!(r.metadata.name, "node--1-cni-c0ffee-eth0");
        assert_eq!(r.metadata.namespace, "default");
        let spec = r.spec::<WorkloadEndpointSpec>().expect("wep");
        assert_eq!(spec.profiles, ["net1"]);
        assert_eq!(spec.workload, "c0ffee");
        assert_eq!(spec.orchestrator, "cni");
        assert_eq!(
            r.metadata
                .annotations
                .get(NETWORK_ANNOTATION)
                .map(String::as_str),
            Some("net1")
        );
    }
}
