//! `ipam check` as a pure function (ipam.md §8, §9.2): from a snapshot of
//! every IPAM object and of the resources that use addresses, find leaks
//! and inconsistencies, and build the machine-readable report that
//! `ipam release --from-report` consumes.
//!
//! Validity of an allocation: Windows-reserved ordinals are always fine; a
//! tunnel address (`type` attribute) is valid while its Node exists; an
//! address some WorkloadEndpoint or Node lists is in use; one with pod or
//! namespace attributes that nothing lists is leaked; one with neither has
//! an unknown owner and is assumed valid. Cooling-down ordinals are not
//! allocations and are never reported as leaked.
//!
//! Beyond Calico's checks this also reports what only a crash or a bug can
//! leave behind: structurally invalid blocks, handle counts that disagree
//! with the blocks, affinities whose block is missing or owned elsewhere,
//! blocks claiming a host that holds no affinity, unconfirmed affinities,
//! and affinities of hosts with no Node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::adapter::ReleaseRequest;
use crate::affinity::{AffinityOwner, AffinityState};
use crate::block::{Block, OrdinalState, WINDOWS_RESERVED_HANDLE};
use crate::cidr::address_at;
use crate::error::IpamError;
use crate::handle::HandleRecord;
use crate::pools::Pool;
use crate::tunnel::{
    ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TIMESTAMP, ATTR_TYPE, is_tunnel_type,
};

/// A block as read: decoded, or the key and the reasons it is invalid.
#[derive(Clone, Debug)]
pub enum StoredBlock {
    Valid(Block),
    Invalid { key: String, problems: Vec<String> },
}

/// An affinity as read.
#[derive(Clone, Debug)]
pub struct StoredAffinity {
    pub owner: AffinityOwner,
    pub block: IpNet,
    /// `Err` holds why the value cannot be read.
    pub state: Result<AffinityState, String>,
}

/// A handle as read.
#[derive(Clone, Debug)]
pub struct StoredHandle {
    pub id: String,
    pub revision: i64,
    pub record: Result<HandleRecord, String>,
}

/// Cluster identity recorded in the report (from ClusterInformation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMeta {
    pub guid: String,
    pub cluster_type: String,
    /// ClusterInformation's resourceVersion.
    pub revision: String,
    pub locked: bool,
}

/// Everything a check looks at.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub blocks: Vec<StoredBlock>,
    pub affinities: Vec<StoredAffinity>,
    pub handles: Vec<StoredHandle>,
    pub pools: Vec<Pool>,
    /// Node names.
    pub nodes: BTreeSet<String>,
    /// Addresses Nodes use as tunnel addresses: (node, address).
    pub node_ips: Vec<(String, IpAddr)>,
    /// Addresses WorkloadEndpoints list: ("namespace/name", address).
    pub workload_ips: Vec<(String, IpAddr)>,
    pub cluster: ClusterMeta,
}

/// One allocation in the report (Calico's field names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handle: String,
    #[serde(
        rename = "sequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub creation_timestamp: String,
    #[serde(rename = "inUse", default)]
    pub in_use: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub borrowed: bool,
    #[serde(rename = "coolingDown", default, skip_serializing_if = "is_false")]
    pub cooling_down: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub owners: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

/// A handle with no allocations, with the revision it was seen at so a
/// release deletes it only if it has not changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "UID", default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(rename = "Revision")]
    pub revision: String,
}

/// The JSON report of §9.2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub version: String,
    #[serde(rename = "clusterGUID")]
    pub cluster_guid: String,
    #[serde(rename = "datastoreLocked")]
    pub datastore_locked: bool,
    #[serde(rename = "clusterInformationRevision")]
    pub cluster_information_revision: String,
    #[serde(rename = "clusterType", default)]
    pub cluster_type: String,
    #[serde(default)]
    pub allocations: BTreeMap<String, Vec<AllocationRecord>>,
    #[serde(
        rename = "leakedHandles",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub leaked_handles: Vec<HandleInfo>,
}

/// An in-use address and who uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InUseAddress {
    pub ip: IpAddr,
    pub owners: Vec<String>,
}

/// The findings of a check.
#[derive(Clone, Debug, Default)]
pub struct CheckFindings {
    pub block_count: usize,
    pub allocation_count: usize,
    pub active_pools: Vec<IpNet>,
    pub node_ip_count: usize,
    pub workload_ip_count: usize,
    pub in_use_ip_count: usize,
    /// Every allocation, by address.
    pub allocations: BTreeMap<IpAddr, Vec<AllocationRecord>>,
    /// Allocated but not in use, with the attribute text for display.
    pub leaked: Vec<(IpAddr, String)>,
    pub not_in_pool: Vec<InUseAddress>,
    pub not_allocated: Vec<InUseAddress>,
    pub multiple_owners: Vec<InUseAddress>,
    pub leaked_handles: Vec<HandleInfo>,
    pub good_handle_count: usize,
    pub missing_handles: Vec<String>,
    pub handle_mismatches: Vec<String>,
    pub invalid_blocks: Vec<(String, Vec<String>)>,
    pub affinity_problems: Vec<String>,
}

impl CheckFindings {
    /// Total number of problems found.
    pub fn problem_count(&self) -> usize {
        self.leaked.len()
            + self.not_in_pool.len()
            + self.not_allocated.len()
            + self.multiple_owners.len()
            + self.leaked_handles.len()
            + self.missing_handles.len()
            + self.handle_mismatches.len()
            + self.invalid_blocks.len()
            + self.affinity_problems.len()
    }

    /// The machine-readable report.
    pub fn report(&self, version: &str, cluster: &ClusterMeta) -> CheckReport {
        CheckReport {
            version: version.to_string(),
            cluster_guid: cluster.guid.clone(),
            datastore_locked: cluster.locked,
            cluster_information_revision: cluster.revision.clone(),
            cluster_type: cluster.cluster_type.clone(),
            allocations: self
                .allocations
                .iter()
                .map(|(ip, records)| (ip.to_string(), records.clone()))
                .collect(),
            leaked_handles: self.leaked_handles.clone(),
        }
    }
}

/// What every given report agrees is leaked (§9.3).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergedLeaks {
    pub ips: BTreeMap<String, ReleaseRequest>,
    pub handles: BTreeMap<String, HandleInfo>,
}

/// Leaks present in all reports: addresses not in use in every report
/// (with the handle and sequence number of the last report), and leaked
/// handles seen at the same revision in every report.
pub fn merge_reports(reports: &[CheckReport]) -> Result<MergedLeaks, IpamError> {
    let mut ips: Option<BTreeMap<String, ReleaseRequest>> = None;
    let mut handles: Option<BTreeMap<String, HandleInfo>> = None;
    for report in reports {
        let mut these = BTreeMap::new();
        for a in report.allocations.values().flatten() {
            if a.in_use || a.cooling_down {
                continue;
            }
            if ips.as_ref().is_some_and(|prev| !prev.contains_key(&a.ip)) {
                continue;
            }
            let address: IpAddr = a.ip.parse().map_err(|_| {
                IpamError::InvalidRequest(format!(
                    "the report lists {:?}, which is not an address",
                    a.ip
                ))
            })?;
            these.insert(
                a.ip.clone(),
                ReleaseRequest {
                    address,
                    handle: Some(a.handle.clone()).filter(|h| !h.is_empty()),
                    sequence: a.sequence_number,
                },
            );
        }
        ips = Some(these);
        let mut kept = BTreeMap::new();
        for h in &report.leaked_handles {
            match &handles {
                None => {
                    kept.insert(h.id.clone(), h.clone());
                }
                Some(prev) if prev.get(&h.id).is_some_and(|p| p.revision == h.revision) => {
                    kept.insert(h.id.clone(), h.clone());
                }
                Some(_) => {}
            }
        }
        handles = Some(kept);
    }
    Ok(MergedLeaks {
        ips: ips.unwrap_or_default(),
        handles: handles.unwrap_or_default(),
    })
}

/// `Main:<handle> Extra:k=v,k=v`, as calicoctl prints attributes.
pub fn attr_text(handle: Option<&str>, attrs: &BTreeMap<String, String>) -> String {
    let extra: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "Main:{} Extra:{}",
        handle.unwrap_or("<none>"),
        extra.join(",")
    )
}

/// Runs every check over a snapshot.
pub fn check(snapshot: &Snapshot) -> CheckFindings {
    let mut f = CheckFindings {
        block_count: snapshot.blocks.len(),
        active_pools: snapshot
            .pools
            .iter()
            .filter(|p| p.enabled)
            .map(|p| p.cidr)
            .collect(),
        node_ip_count: snapshot.node_ips.len(),
        workload_ip_count: snapshot.workload_ips.len(),
        ..CheckFindings::default()
    };

    // Who uses each address.
    let mut owners: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for (node, ip) in &snapshot.node_ips {
        owners.entry(*ip).or_default().push(format!("Node({node})"));
    }
    for (wep, ip) in &snapshot.workload_ips {
        owners
            .entry(*ip)
            .or_default()
            .push(format!("Workload({wep})"));
    }
    f.in_use_ip_count = owners.len();

    // Allocations, handle usage per block.
    let mut handle_use: BTreeMap<String, BTreeMap<IpNet, u64>> = BTreeMap::new();
    let mut affine_blocks: Vec<(IpNet, AffinityOwner)> = Vec::new();
    let mut blocks_by_cidr: BTreeMap<IpNet, &Block> = BTreeMap::new();
    for stored in &snapshot.blocks {
        let block = match stored {
            StoredBlock::Valid(b) => b,
            StoredBlock::Invalid { key, problems } => {
                f.invalid_blocks.push((key.clone(), problems.clone()));
                continue;
            }
        };
        blocks_by_cidr.insert(block.cidr(), block);
        if let Some(owner) = block.owner() {
            affine_blocks.push((block.cidr(), owner));
        }
        let block_host = match block.owner() {
            Some(AffinityOwner::Host(h)) => h,
            _ => String::new(),
        };
        for (ordinal, state) in block.occupied() {
            let ip = address_at(&block.cidr(), ordinal);
            let (attr, cooling) = match state {
                OrdinalState::Allocated(a) => (a, false),
                OrdinalState::CoolingDown(a) => (a, true),
                OrdinalState::Free => continue,
            };
            let handle = attr.handle_id.clone().unwrap_or_default();
            let windows = handle == WINDOWS_RESERVED_HANDLE;
            if !cooling {
                f.allocation_count += 1;
                if !handle.is_empty() && !windows {
                    *handle_use
                        .entry(handle.clone())
                        .or_default()
                        .entry(block.cidr())
                        .or_insert(0) += 1;
                }
            }
            let get = |k: &str| attr.active_owner_attrs.get(k).cloned().unwrap_or_default();
            let node = Some(get(ATTR_NODE))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| block_host.clone());
            let kind = get(ATTR_TYPE);
            let (pod, namespace) = (get(ATTR_POD), get(ATTR_NAMESPACE));
            let listed = owners.get(&ip).cloned().unwrap_or_default();
            let in_use = !cooling
                && (windows
                    || !listed.is_empty()
                    || if is_tunnel_type(&kind) {
                        snapshot.nodes.contains(&node)
                    } else {
                        pod.is_empty() && namespace.is_empty()
                    });
            if !in_use && !cooling {
                f.leaked.push((
                    ip,
                    attr_text(attr.handle_id.as_deref(), &attr.active_owner_attrs),
                ));
            }
            f.allocations.entry(ip).or_default().push(AllocationRecord {
                ip: ip.to_string(),
                handle,
                sequence_number: Some(block.sequence_for(ordinal)),
                pod,
                namespace,
                borrowed: node != block_host,
                node,
                kind,
                creation_timestamp: get(ATTR_TIMESTAMP),
                in_use,
                cooling_down: cooling,
                owners: if windows {
                    vec!["Reserved for Windows".to_string()]
                } else {
                    listed
                },
            });
        }
    }

    // In-use addresses without an allocation.
    for (ip, who) in &owners {
        if who.len() > 1 {
            f.multiple_owners.push(InUseAddress {
                ip: *ip,
                owners: who.clone(),
            });
        }
        let allocated = f
            .allocations
            .get(ip)
            .is_some_and(|records| records.iter().any(|r| !r.cooling_down));
        if allocated {
            continue;
        }
        let entry = InUseAddress {
            ip: *ip,
            owners: who.clone(),
        };
        let host = IpNet::from(*ip);
        if snapshot
            .pools
            .iter()
            .any(|p| p.enabled && p.cidr.contains(&host))
        {
            f.not_allocated.push(entry);
        } else {
            f.not_in_pool.push(entry);
        }
    }

    // Handles.
    let mut known_handles = BTreeSet::new();
    for h in &snapshot.handles {
        known_handles.insert(h.id.as_str());
        let record = match &h.record {
            Ok(r) => r,
            Err(reason) => {
                f.handle_mismatches
                    .push(format!("handle {} cannot be read: {reason}", h.id));
                continue;
            }
        };
        let Some(used) = handle_use.get(&h.id) else {
            f.leaked_handles.push(HandleInfo {
                id: h.id.clone(),
                uid: None,
                revision: h.revision.to_string(),
            });
            continue;
        };
        f.good_handle_count += 1;
        let (nets, bad) = record.blocks();
        for key in bad {
            f.handle_mismatches.push(format!(
                "handle {} names {key:?}, which is not a CIDR",
                h.id
            ));
        }
        let recorded: BTreeMap<IpNet, u64> = nets
            .iter()
            .map(|n| (*n, record.block.get(&n.to_string()).copied().unwrap_or(0)))
            .collect();
        for cidr in recorded.keys().chain(used.keys()).collect::<BTreeSet<_>>() {
            let want = recorded.get(cidr).copied().unwrap_or(0);
            let have = used.get(cidr).copied().unwrap_or(0);
            if want != have {
                f.handle_mismatches.push(format!(
                    "handle {} records {want} addresses in block {cidr}, the block holds {have}",
                    h.id
                ));
            }
        }
    }
    for id in handle_use.keys() {
        if !known_handles.contains(id.as_str()) {
            f.missing_handles.push(id.clone());
        }
    }

    // Affinities.
    let mut affinity_keys: BTreeSet<(AffinityOwner, IpNet)> = BTreeSet::new();
    for a in &snapshot.affinities {
        affinity_keys.insert((a.owner.clone(), a.block));
        let state = match &a.state {
            Ok(s) => *s,
            Err(reason) => {
                f.affinity_problems.push(format!(
                    "affinity of {} for block {} cannot be read: {reason}",
                    a.owner, a.block
                ));
                continue;
            }
        };
        if let AffinityOwner::Host(host) = &a.owner
            && !snapshot.nodes.contains(host)
        {
            f.affinity_problems.push(format!(
                "host {host} holds an affinity for block {} but node {host} does not exist",
                a.block
            ));
        }
        match blocks_by_cidr.get(&a.block) {
            None => f.affinity_problems.push(format!(
                "affinity of {} for block {} ({state:?}) has no block",
                a.owner, a.block
            )),
            Some(b) if !b.is_owned_by(&a.owner) => f.affinity_problems.push(format!(
                "affinity of {} for block {} is stale: the block is affine to {}",
                a.owner,
                a.block,
                b.affinity().unwrap_or("nobody")
            )),
            Some(_) if state != AffinityState::Confirmed => f.affinity_problems.push(format!(
                "affinity of {} for block {} is {state:?}, not confirmed (an interrupted claim or release)",
                a.owner, a.block
            )),
            Some(_) => {}
        }
    }
    for (cidr, owner) in affine_blocks {
        if !affinity_keys.contains(&(owner.clone(), cidr)) {
            f.affinity_problems.push(format!(
                "block {cidr} is affine to {owner}, which holds no affinity for it"
            ));
        }
    }
    f
}

#[cfg(test)]
mod tests;
