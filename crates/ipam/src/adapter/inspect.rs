//! Read-only views for `ipam show` and `ipam check`: one address's
//! allocation, a handle's addresses, utilisation, borrowed addresses, and
//! the snapshot `check` analyses. Cooldowns are computed on the copies read
//! here but never written (§5.3).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_model::Kind;
use tortie_model::config::ClusterInformationSpec;
use tortie_model::endpoint::WorkloadEndpointSpec;
use tortie_model::node::NodeSpec;

use super::Ipam;
use crate::affinity::AffinityRecord;
use crate::block::{Block, OrdinalState};
use crate::check::{
    CheckFindings, ClusterMeta, Snapshot, StoredAffinity, StoredBlock, StoredHandle, check,
};
use crate::cidr::{address_at, masked, ordinal_of, parse_address};
use crate::error::IpamError;
use crate::handle::{HandleRecord, sanitize_handle};
use crate::keys::{
    BLOCKS_PREFIX, HANDLES_PREFIX, HOST_PREFIX, VIRTUAL_PREFIX, parse_affinity_key,
    parse_block_key, parse_handle_key,
};
use crate::pools::pool_containing;
use crate::tunnel::{ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TYPE};
use crate::usage::{PoolUsage, utilisation};

/// One allocated (or cooling-down) address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationInfo {
    pub ip: IpAddr,
    pub block: IpNet,
    pub block_affinity: Option<String>,
    pub handle_id: Option<String>,
    pub active_owner_attrs: BTreeMap<String, String>,
    pub alternate_owner_attrs: BTreeMap<String, String>,
    /// The sequence number recorded for the ordinal (pass it to a release
    /// to be sure of releasing this allocation and no later one).
    pub sequence_number: u64,
    /// Released, waiting out the cooldown: not usable, not reassignable.
    pub cooling_down: bool,
    pub released_at: Option<String>,
}

/// An address allocated by a node other than its block's owner (§9.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BorrowedAllocation {
    pub ip: IpAddr,
    pub borrowing_node: String,
    pub block: IpNet,
    pub block_owner: String,
    /// `pod`, `vmi`, or the `type` attribute.
    pub kind: String,
    /// `<namespace>/<pod>` (or `<namespace>/<vmi-name>`).
    pub allocated_to: String,
}

impl Ipam {
    /// Reads every block of both families (invalid ones included, so
    /// callers can report them).
    pub async fn blocks(&self) -> Result<Vec<StoredBlock>, IpamError> {
        let list = self.ds().list(BLOCKS_PREFIX).await?;
        let now = self.now();
        let cooldown = self.config().await?.cooldown();
        let mut out = Vec::new();
        for kv in list.items {
            if parse_block_key(&kv.key).is_none() {
                continue;
            }
            match Block::decode(&kv.value) {
                Ok(Some(mut b)) => {
                    b.collect_cooled(now, cooldown);
                    out.push(StoredBlock::Valid(b));
                }
                Ok(None) => {}
                Err(e) => out.push(StoredBlock::Invalid {
                    key: kv.key,
                    problems: e.problems,
                }),
            }
        }
        Ok(out)
    }

    /// The allocation of one address, `None` if it is free or in no block.
    pub async fn allocation(&self, ip: IpAddr) -> Result<Option<AllocationInfo>, IpamError> {
        let pools = self.pools().await?;
        let cidr = match pool_containing(&pools, &IpNet::from(ip)) {
            Some(pool) => masked(ip, pool.block_prefix),
            None => {
                let list = self.ds().list(BLOCKS_PREFIX).await?;
                list.items
                    .iter()
                    .filter_map(|kv| parse_block_key(&kv.key))
                    .find(|b| b.contains(&ip))
            }
        };
        let Some(cidr) = cidr else {
            return Ok(None);
        };
        let Some(mut block) = self.get_block(&cidr).await?.value else {
            return Ok(None);
        };
        block.collect_cooled(self.now(), self.config().await?.cooldown());
        let ordinal = ordinal_of(&cidr, ip).expect("the block contains the address");
        let (attr, cooling_down) = match block.ordinal_state(ordinal) {
            OrdinalState::Free => return Ok(None),
            OrdinalState::Allocated(a) => (a, false),
            OrdinalState::CoolingDown(a) => (a, true),
        };
        Ok(Some(AllocationInfo {
            ip,
            block: cidr,
            block_affinity: block.affinity().map(str::to_string),
            handle_id: attr.handle_id.clone(),
            active_owner_attrs: attr.active_owner_attrs.clone(),
            alternate_owner_attrs: attr.alternate_owner_attrs.clone(),
            sequence_number: block.sequence_for(ordinal),
            cooling_down,
            released_at: attr.released_at.clone(),
        }))
    }

    /// The addresses a handle holds (with their blocks' prefix lengths).
    pub async fn ips_by_handle(&self, handle: &str) -> Result<Vec<IpNet>, IpamError> {
        let handle = sanitize_handle(handle);
        let Some(record) = self.get_handle(handle).await?.value else {
            return Err(IpamError::HandleNotFound {
                handle: handle.to_string(),
            });
        };
        let mut out = Vec::new();
        for cidr in record.blocks().0 {
            let Some(block) = self.get_block(&cidr).await?.value else {
                continue;
            };
            for (ordinal, state) in block.occupied() {
                if let OrdinalState::Allocated(a) = state
                    && a.handle_id.as_deref() == Some(handle)
                {
                    out.push(crate::cidr::with_block_prefix(
                        address_at(&cidr, ordinal),
                        &cidr,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Utilisation per pool and block (§9.1).
    pub async fn utilisation(&self) -> Result<Vec<PoolUsage>, IpamError> {
        let pools = self.pools().await?;
        let reservations = self.reservations().await?;
        let blocks: Vec<Block> = self
            .blocks()
            .await?
            .into_iter()
            .filter_map(|b| match b {
                StoredBlock::Valid(b) => Some(b),
                StoredBlock::Invalid { .. } => None,
            })
            .collect();
        Ok(utilisation(&pools, &blocks, &reservations))
    }

    /// Borrowed addresses, and how many allocations carry no `node`
    /// attribute (which cannot be classified).
    pub async fn borrowed(&self) -> Result<(Vec<BorrowedAllocation>, usize), IpamError> {
        let mut out = Vec::new();
        let mut unclassified = 0;
        for stored in self.blocks().await? {
            let StoredBlock::Valid(block) = stored else {
                continue;
            };
            let owner = block
                .owner()
                .map(|o| o.name().to_string())
                .unwrap_or_default();
            for (ordinal, state) in block.occupied() {
                let OrdinalState::Allocated(attr) = state else {
                    continue;
                };
                let Some(node) = attr.active_owner_attrs.get(ATTR_NODE) else {
                    unclassified += 1;
                    continue;
                };
                if *node == owner {
                    continue;
                }
                let get = |k: &str| attr.active_owner_attrs.get(k).cloned().unwrap_or_default();
                let (kind, allocated_to) =
                    if let Some(vmi) = attr.active_owner_attrs.get("vmi-name") {
                        ("vmi".to_string(), format!("{}/{vmi}", get(ATTR_NAMESPACE)))
                    } else if let Some(pod) = attr.active_owner_attrs.get(ATTR_POD) {
                        ("pod".to_string(), format!("{}/{pod}", get(ATTR_NAMESPACE)))
                    } else {
                        (get(ATTR_TYPE), String::new())
                    };
                out.push(BorrowedAllocation {
                    ip: address_at(&block.cidr(), ordinal),
                    borrowing_node: node.clone(),
                    block: block.cidr(),
                    block_owner: owner.clone(),
                    kind,
                    allocated_to,
                });
            }
        }
        Ok((out, unclassified))
    }

    /// Reads everything `ipam check` needs.
    pub async fn check_snapshot(&self) -> Result<Snapshot, IpamError> {
        let mut snapshot = Snapshot {
            blocks: self.blocks().await?,
            pools: self.pools().await?,
            ..Snapshot::default()
        };
        for prefix in [HOST_PREFIX, VIRTUAL_PREFIX] {
            for kv in self.ds().list(prefix).await?.items {
                let Some((owner, block)) = parse_affinity_key(&kv.key) else {
                    continue;
                };
                let state = match AffinityRecord::decode(&kv.value) {
                    Ok(r) if r.deleted => continue,
                    Ok(r) => Ok(r.state),
                    Err(e) => Err(e),
                };
                snapshot.affinities.push(StoredAffinity {
                    owner,
                    block,
                    state,
                });
            }
        }
        for kv in self.ds().list(HANDLES_PREFIX).await?.items {
            let Some(id) = parse_handle_key(&kv.key) else {
                continue;
            };
            let record = HandleRecord::decode(&kv.value);
            if record.as_ref().is_ok_and(|r| r.is_empty()) {
                // Soft-deleted or emptied: not a handle any more.
                continue;
            }
            snapshot.handles.push(StoredHandle {
                id: id.to_string(),
                revision: kv.mod_revision,
                record,
            });
        }
        for node in self.client.list(Kind::Node, None).await?.items {
            let name = node.metadata.name.clone();
            if let Some(spec) = node.spec::<NodeSpec>() {
                for ip in node_tunnel_addresses(spec) {
                    snapshot.node_ips.push((name.clone(), ip));
                }
            }
            snapshot.nodes.insert(name);
        }
        for wep in self.client.list(Kind::WorkloadEndpoint, None).await?.items {
            let Some(spec) = wep.spec::<WorkloadEndpointSpec>() else {
                continue;
            };
            let id = format!("{}/{}", wep.metadata.namespace, wep.metadata.name);
            let mut seen = BTreeSet::new();
            for net in &spec.ip_networks {
                match parse_address(net) {
                    Some(ip) if seen.insert(ip) => snapshot.workload_ips.push((id.clone(), ip)),
                    Some(_) => {}
                    None => tracing::warn!(
                        workload = id,
                        address = net,
                        "cannot parse a workload address"
                    ),
                }
            }
        }
        match self
            .client
            .get(Kind::ClusterInformation, "", "default")
            .await
        {
            Ok(info) => {
                if let Some(spec) = info.spec::<ClusterInformationSpec>() {
                    snapshot.cluster = ClusterMeta {
                        guid: spec.cluster_guid.clone(),
                        cluster_type: spec.cluster_type.clone(),
                        revision: info.metadata.resource_version.clone(),
                        locked: spec.datastore_ready == Some(false),
                    };
                }
            }
            Err(tortie_client::ClientError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(snapshot)
    }

    /// Runs `ipam check` (§9.2): the findings and the cluster identity.
    pub async fn check(&self) -> Result<(CheckFindings, Snapshot), IpamError> {
        let snapshot = self.check_snapshot().await?;
        Ok((check(&snapshot), snapshot))
    }
}

/// The tunnel addresses a Node lists (IPIP, VXLAN v4/v6, WireGuard v4/v6).
pub fn node_tunnel_addresses(spec: &NodeSpec) -> Vec<IpAddr> {
    let mut texts: Vec<&str> = vec![&spec.ipv4_vxlan_tunnel_addr, &spec.ipv6_vxlan_tunnel_addr];
    if let Some(bgp) = &spec.bgp {
        texts.push(&bgp.ipv4_ipip_tunnel_addr);
    }
    if let Some(wg) = &spec.wireguard {
        texts.push(&wg.interface_ipv4_address);
        texts.push(&wg.interface_ipv6_address);
    }
    texts
        .into_iter()
        .filter(|t| !t.is_empty())
        .filter_map(parse_address)
        .collect()
}
