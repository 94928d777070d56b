//! What every adapter case starts from: a store ([`Target`]), clients on
//! it, and helpers to create pools, nodes, reservations and workload
//! endpoints and to read raw IPAM objects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use ipnet::IpNet;
use tortie_client::Client;
use tortie_datastore::{Datastore, DatastoreSpec};
use tortie_ipam::affinity::{AffinityOwner, AffinityRecord, AffinityState};
use tortie_ipam::block::{Block, OrdinalState};
use tortie_ipam::clock::ManualClock;
use tortie_ipam::handle::HandleRecord;
use tortie_ipam::keys::{BLOCKS_PREFIX, affinity_key, block_key, handle_key, parse_block_key};
use tortie_ipam::{AllowedUse, AutoAssignRequest, Ipam};
use tortie_model::endpoint::{WorkloadEndpointSpec, workload_endpoint_name};
use tortie_model::ippool::{IPPoolSpec, IPReservationSpec};
use tortie_model::node::NodeSpec;
use tortie_model::{Kind, ObjectMeta, Resource};

/// The store a case runs against; each case gets a fresh, empty one.
pub struct Target {
    pub spec: DatastoreSpec,
}

impl Target {
    pub async fn store(&self) -> Result<Arc<dyn Datastore>> {
        tortie_datastore::connect(&self.spec)
            .await
            .with_context(|| format!("connecting to {}", self.spec))
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::new(self.store().await?))
    }

    pub async fn ipam(&self) -> Result<Ipam> {
        Ok(Ipam::new(self.client().await?))
    }

    /// An IPAM client on a manual clock starting at a fixed instant.
    pub async fn ipam_with_clock(&self) -> Result<(Ipam, Arc<ManualClock>)> {
        let clock = Arc::new(ManualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        ));
        Ok((Ipam::with_clock(self.client().await?, clock.clone()), clock))
    }
}

pub fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub async fn add_pool(
    client: &Client,
    name: &str,
    cidr: &str,
    edit: impl FnOnce(&mut IPPoolSpec),
) -> Result<()> {
    let mut spec = IPPoolSpec {
        cidr: cidr.to_string(),
        ..IPPoolSpec::default()
    };
    edit(&mut spec);
    client
        .create(Resource::new(ObjectMeta::named(name), spec))
        .await
        .with_context(|| format!("creating pool {name}"))?;
    Ok(())
}

pub async fn edit_pool(client: &Client, name: &str, edit: impl Fn(&mut IPPoolSpec)) -> Result<()> {
    client
        .modify(Kind::IPPool, "", name, |mut r| {
            if let Some(spec) = r.spec_mut::<IPPoolSpec>() {
                edit(spec);
            }
            Ok(r)
        })
        .await?;
    Ok(())
}

pub async fn add_node(client: &Client, name: &str, labels: &[(&str, &str)]) -> Result<()> {
    let mut meta = ObjectMeta::named(name);
    meta.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    client
        .create(Resource::new(meta, NodeSpec::default()))
        .await?;
    Ok(())
}

pub async fn add_reservation(client: &Client, name: &str, cidrs: &[&str]) -> Result<()> {
    client
        .create(Resource::new(
            ObjectMeta::named(name),
            IPReservationSpec {
                reserved_cidrs: cidrs.iter().map(|c| (*c).to_string()).collect(),
            },
        ))
        .await?;
    Ok(())
}

/// A WorkloadEndpoint for a pod, listing `ips` (as /32 or /128).
pub async fn add_wep(
    client: &Client,
    namespace: &str,
    pod: &str,
    node: &str,
    ips: &[IpAddr],
) -> Result<()> {
    let spec = WorkloadEndpointSpec {
        orchestrator: "k8s".to_string(),
        node: node.to_string(),
        pod: pod.to_string(),
        endpoint: "eth0".to_string(),
        ip_networks: ips.iter().map(|a| IpNet::from(*a).to_string()).collect(),
        ..WorkloadEndpointSpec::default()
    };
    let name = workload_endpoint_name(node, "k8s", pod, "eth0");
    client
        .create(Resource::new(
            ObjectMeta::namespaced(namespace, &name),
            spec,
        ))
        .await
        .with_context(|| format!("creating endpoint {namespace}/{name}"))?;
    Ok(())
}

pub fn pod_attrs(namespace: &str, pod: &str, node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("namespace".to_string(), namespace.to_string()),
        ("pod".to_string(), pod.to_string()),
        ("node".to_string(), node.to_string()),
    ])
}

/// A workload request for `v4` IPv4 and `v6` IPv6 addresses.
pub fn request(host: &str, handle: &str, v4: usize, v6: usize) -> AutoAssignRequest {
    AutoAssignRequest {
        num_v4: v4,
        num_v6: v6,
        handle_id: handle.to_string(),
        attrs: BTreeMap::from([("node".to_string(), host.to_string())]),
        hostname: host.to_string(),
        intended_use: AllowedUse::Workload,
        ..AutoAssignRequest::default()
    }
}

/// Assigns and returns the IPv4 addresses (bare).
pub async fn assign_v4(ipam: &Ipam, host: &str, handle: &str, n: usize) -> Result<Vec<IpAddr>> {
    let r = ipam.auto_assign(request(host, handle, n, 0)).await?;
    Ok(r.ipv4.ips.iter().map(IpNet::addr).collect())
}

/// The stored block, decoded.
pub async fn raw_block(store: &dyn Datastore, cidr: &IpNet) -> Result<Option<(Block, i64)>> {
    let Some(kv) = store.get(&block_key(cidr)).await? else {
        return Ok(None);
    };
    let block = Block::decode(&kv.value)?.context("soft-deleted block")?;
    Ok(Some((block, kv.mod_revision)))
}

pub async fn raw_affinity(
    store: &dyn Datastore,
    host: &str,
    cidr: &IpNet,
) -> Result<Option<AffinityState>> {
    let key = affinity_key(&AffinityOwner::host(host), cidr);
    match store.get(&key).await? {
        None => Ok(None),
        Some(kv) => Ok(Some(
            AffinityRecord::decode(&kv.value)
                .map_err(anyhow::Error::msg)?
                .state,
        )),
    }
}

pub async fn raw_handle(store: &dyn Datastore, id: &str) -> Result<Option<HandleRecord>> {
    match store.get(&handle_key(id)).await? {
        None => Ok(None),
        Some(kv) => Ok(Some(
            HandleRecord::decode(&kv.value).map_err(anyhow::Error::msg)?,
        )),
    }
}

pub async fn put_affinity(
    store: &dyn Datastore,
    host: &str,
    cidr: &IpNet,
    state: AffinityState,
) -> Result<()> {
    let key = affinity_key(&AffinityOwner::host(host), cidr);
    store
        .put(&key, AffinityRecord::with_state(state).encode())
        .await?;
    Ok(())
}

/// Every block, decoded (fails on an invalid one).
pub async fn all_blocks(store: &dyn Datastore) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    for kv in store.list(BLOCKS_PREFIX).await?.items {
        ensure!(parse_block_key(&kv.key).is_some(), "stray key {}", kv.key);
        if let Some(b) = Block::decode(&kv.value)? {
            out.push(b);
        }
    }
    Ok(out)
}

/// Every live allocation: address -> handle. Fails if an address appears
/// twice (which the block structure cannot express, but a bug in block
/// placement could: overlapping blocks).
pub async fn all_allocations(store: &dyn Datastore) -> Result<BTreeMap<IpAddr, String>> {
    let mut out = BTreeMap::new();
    for b in all_blocks(store).await? {
        for (ordinal, state) in b.occupied() {
            if let OrdinalState::Allocated(a) = state {
                let ip = tortie_ipam::cidr::address_at(&b.cidr(), ordinal);
                let handle = a.handle_id.clone().unwrap_or_default();
                if let Some(other) = out.insert(ip, handle.clone()) {
                    bail!("{ip} is allocated twice: to {other} and to {handle}");
                }
            }
        }
    }
    Ok(out)
}

/// Asserts addresses are pairwise distinct.
pub fn assert_unique(ips: &[IpAddr]) -> Result<()> {
    let set: BTreeSet<&IpAddr> = ips.iter().collect();
    ensure!(set.len() == ips.len(), "duplicate addresses in {ips:?}");
    Ok(())
}

/// A block CIDR containing `ip` with the pool's block size.
pub fn block_of(ip: IpAddr, prefix: u8) -> IpNet {
    IpNet::new(ip, prefix).expect("prefix").trunc()
}
