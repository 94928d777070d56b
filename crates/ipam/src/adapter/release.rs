//! Release by address (§5.1), by handle (§5.2), and the cooldown backstop
//! (§5.3).
//!
//! Per block, in a CAS loop: read, collect cooled-down ordinals, release in
//! memory (the whole block's request fails on a bad sequence number or
//! handle), then delete the block if it is empty and unaffine, else write
//! it; only after that write decrement the handles. Blocks of one request
//! are processed concurrently (at most 8 at a time).
//!
//! Afterwards, if the block is empty and its host's Node no longer matches
//! the pool's node selector, the host's affinity is released.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tokio::task::JoinSet;

use super::{Ipam, MAX_CAS_ATTEMPTS, RELEASE_CONCURRENCY};
use crate::affinity::AffinityOwner;
use crate::block::{Block, OrdinalRelease};
use crate::cidr::{IpVersion, address_at, masked, ordinal_of};
use crate::config::IpamConfig;
use crate::error::IpamError;
use crate::handle::sanitize_handle;
use crate::keys::{BLOCKS_PREFIX, block_key, parse_block_key};
use crate::pools::{Pool, pool_containing};

/// One address to release, with optional preconditions (§5.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseRequest {
    pub address: IpAddr,
    /// If set, the allocation must belong to this handle.
    pub handle: Option<String>,
    /// If set, the allocation's sequence number must be this (§5.4).
    pub sequence: Option<u64>,
}

impl ReleaseRequest {
    pub fn address(address: IpAddr) -> ReleaseRequest {
        ReleaseRequest {
            address,
            handle: None,
            sequence: None,
        }
    }
}

/// The requests of one block that failed, and why.
#[derive(Debug)]
pub struct ReleaseFailure {
    pub block: IpNet,
    pub requests: Vec<ReleaseRequest>,
    pub error: IpamError,
}

/// What [`Ipam::release_ips`] did.
#[derive(Debug, Default)]
pub struct ReleaseOutcome {
    pub released: Vec<ReleaseRequest>,
    /// Addresses that were free, cooling down, or in no block.
    pub not_allocated: Vec<ReleaseRequest>,
    pub failed: Vec<ReleaseFailure>,
}

impl ReleaseOutcome {
    /// The first failure, for callers that treat any as fatal.
    pub fn first_error(&self) -> Option<&IpamError> {
        self.failed.first().map(|f| &f.error)
    }
}

/// One block's part of a release.
struct BlockRelease {
    released: Vec<ReleaseRequest>,
    not_allocated: Vec<ReleaseRequest>,
}

impl Ipam {
    /// Releases addresses (§5.1). Per-block failures (conflicting sequence
    /// numbers or handles, lost races) are reported in the outcome; only a
    /// failure to read pools or blocks at all is an `Err`.
    pub async fn release_ips(
        &self,
        requests: &[ReleaseRequest],
    ) -> Result<ReleaseOutcome, IpamError> {
        let pools = self.pools().await?;
        let config = self.config().await?;
        let mut outcome = ReleaseOutcome::default();
        let mut by_block: BTreeMap<IpNet, Vec<ReleaseRequest>> = BTreeMap::new();
        let mut scanned: Option<Vec<IpNet>> = None;
        for req in requests {
            let mut req = req.clone();
            req.handle = req
                .handle
                .as_deref()
                .map(|h| sanitize_handle(h).to_string())
                .filter(|h| !h.is_empty());
            match self.block_of(&pools, req.address, &mut scanned).await? {
                Some(cidr) => by_block.entry(cidr).or_default().push(req),
                None => outcome.not_allocated.push(req),
            }
        }
        let mut tasks = JoinSet::new();
        let mut pending = by_block.into_iter();
        loop {
            while tasks.len() < RELEASE_CONCURRENCY {
                let Some((cidr, reqs)) = pending.next() else {
                    break;
                };
                let ipam = self.clone();
                let config = config.clone();
                let pools = pools.clone();
                tasks.spawn(async move {
                    let result = ipam.release_in_block(&cidr, &reqs, &config, &pools).await;
                    (cidr, reqs, result)
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (cidr, reqs, result) = joined
                .map_err(|e| IpamError::InvalidRequest(format!("a release task failed: {e}")))?;
            match result {
                Ok(done) => {
                    outcome.released.extend(done.released);
                    outcome.not_allocated.extend(done.not_allocated);
                }
                Err(error) => {
                    tracing::warn!(block = %cidr, %error, "releasing addresses failed");
                    outcome.failed.push(ReleaseFailure {
                        block: cidr,
                        requests: reqs,
                        error,
                    });
                }
            }
        }
        Ok(outcome)
    }

    /// The block an address belongs to: its pool's block, or (outside every
    /// pool) an existing block containing it (§5.1 step 1).
    async fn block_of(
        &self,
        pools: &[Pool],
        ip: IpAddr,
        scanned: &mut Option<Vec<IpNet>>,
    ) -> Result<Option<IpNet>, IpamError> {
        if let Some(pool) = pool_containing(pools, &IpNet::from(ip)) {
            return Ok(masked(ip, pool.block_prefix));
        }
        if scanned.is_none() {
            let list = self.ds().list(BLOCKS_PREFIX).await?;
            *scanned = Some(
                list.items
                    .iter()
                    .filter_map(|kv| parse_block_key(&kv.key))
                    .collect(),
            );
        }
        Ok(scanned
            .as_ref()
            .and_then(|blocks| blocks.iter().find(|b| b.contains(&ip)).copied()))
    }

    async fn release_in_block(
        &self,
        cidr: &IpNet,
        requests: &[ReleaseRequest],
        config: &IpamConfig,
        pools: &[Pool],
    ) -> Result<BlockRelease, IpamError> {
        let ordinals: Vec<OrdinalRelease> = requests
            .iter()
            .filter_map(|r| {
                ordinal_of(cidr, r.address).map(|ordinal| OrdinalRelease {
                    ordinal,
                    handle: r.handle.clone(),
                    sequence: r.sequence,
                })
            })
            .collect();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let slot = self.get_block(cidr).await?;
            let Some(mut block) = slot.value else {
                return Ok(BlockRelease {
                    released: Vec::new(),
                    not_allocated: requests.to_vec(),
                });
            };
            let revision = slot.revision.expect("a stored block has a revision");
            let now = self.now();
            let collected = block.collect_cooled(now, config.cooldown());
            let done = block
                .release(&ordinals, now, config.cooldown())
                .map_err(|conflict| {
                    let ordinal = match &conflict {
                        crate::block::ReleaseConflict::BadSequenceNumber { ordinal, .. }
                        | crate::block::ReleaseConflict::BadHandle { ordinal, .. } => *ordinal,
                    };
                    IpamError::ReleaseConflict {
                        ip: address_at(cidr, ordinal),
                        block: *cidr,
                        conflict,
                    }
                })?;
            if !done.released.is_empty() || collected {
                if !self
                    .write_or_delete(&slot.key, revision, &mut block)
                    .await?
                {
                    continue;
                }
                for (handle, count) in done.per_handle() {
                    self.decrement_handle(&handle, cidr, count).await?;
                }
                if !done.released.is_empty() {
                    tracing::info!(block = %cidr, released = done.released.len(), "released addresses");
                }
                self.check_host_still_selected(&block, Some(pools)).await;
            }
            let released_ordinals: Vec<u32> = done.released.iter().map(|(o, _)| *o).collect();
            let mut result = BlockRelease {
                released: Vec::new(),
                not_allocated: Vec::new(),
            };
            let mut reported = std::collections::BTreeSet::new();
            for req in requests {
                let ordinal = ordinal_of(cidr, req.address);
                if ordinal.is_some_and(|o| released_ordinals.contains(&o)) {
                    if reported.insert(req.address) {
                        result.released.push(req.clone());
                    }
                } else {
                    result.not_allocated.push(req.clone());
                }
            }
            return Ok(result);
        }
        Err(IpamError::MaxRetries {
            key: block_key(cidr),
        })
    }

    /// Writes a changed block, or deletes it if it is empty and unaffine.
    /// `false` when the CAS lost.
    pub(crate) async fn write_or_delete(
        &self,
        key: &str,
        revision: i64,
        block: &mut Block,
    ) -> Result<bool, IpamError> {
        if block.is_empty() && block.affinity().is_none() {
            let deleted = self.cas_delete(key, revision).await?;
            if deleted {
                tracing::info!(block = %block.cidr(), "deleted an empty unaffine block");
            }
            Ok(deleted)
        } else {
            Ok(self
                .cas_write(key, Some(revision), block.commit())
                .await?
                .is_some())
        }
    }

    /// §5.1: an empty block whose host the pool no longer selects loses its
    /// affinity. Failures are logged; the next assignment retries. Pools
    /// are read only when needed (the block emptied) unless given.
    async fn check_host_still_selected(&self, block: &Block, pools: Option<&[Pool]>) {
        let Some(AffinityOwner::Host(host)) = block.owner() else {
            return;
        };
        if !block.is_empty() {
            return;
        }
        let read;
        let pools = match pools {
            Some(p) => p,
            None => match self.pools().await {
                Ok(p) => {
                    read = p;
                    &read
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the pools to check the block's host");
                    return;
                }
            },
        };
        let cidr = block.cidr();
        let labels = match self.node_labels(&host).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%host, error = %e, "cannot read the node to check its pools");
                return;
            }
        };
        let selected =
            pool_containing(pools, &cidr).is_some_and(|p| p.enabled && p.selects_node(&labels));
        if selected {
            return;
        }
        let owner = AffinityOwner::Host(host);
        match self.release_block_affinity(&owner, &cidr, true, None).await {
            Ok(outcome) => {
                tracing::info!(%cidr, %owner, ?outcome, "released the affinity of an empty block its pool no longer gives the host")
            }
            Err(e) => tracing::debug!(%cidr, %owner, error = %e, "not releasing the affinity"),
        }
    }

    /// Releases everything a handle holds (§5.2). `HandleNotFound` if the
    /// handle does not exist (which the CNI DEL path treats as success).
    pub async fn release_by_handle(&self, handle: &str) -> Result<(), IpamError> {
        let handle = sanitize_handle(handle);
        let slot = self.get_handle(handle).await?;
        let Some(record) = slot.value else {
            return Err(IpamError::HandleNotFound {
                handle: handle.to_string(),
            });
        };
        let config = self.config().await?;
        let (blocks, bad) = record.blocks();
        for key in bad {
            tracing::warn!(handle, key, "handle names something that is not a CIDR");
        }
        let mut hint = slot.revision.map(|rev| (rev, record.clone()));
        for cidr in blocks {
            self.release_handle_in_block(&cidr, handle, &config, &mut hint)
                .await?;
        }
        Ok(())
    }

    async fn release_handle_in_block(
        &self,
        cidr: &IpNet,
        handle: &str,
        config: &IpamConfig,
        hint: &mut Option<(i64, crate::handle::HandleRecord)>,
    ) -> Result<u64, IpamError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let slot = self.get_block(cidr).await?;
            let Some(mut block) = slot.value else {
                tracing::debug!(handle, block = %cidr, "the handle's block no longer exists");
                return Ok(0);
            };
            let revision = slot.revision.expect("a stored block has a revision");
            let now = self.now();
            let collected = block.collect_cooled(now, config.cooldown());
            let released = block.release_by_handle(handle, None, now, config.cooldown());
            if released.is_empty() && !collected {
                return Ok(0);
            }
            if !self
                .write_or_delete(&slot.key, revision, &mut block)
                .await?
            {
                continue;
            }
            let count = released.len() as u64;
            if count > 0 {
                self.decrement_handle_hinted(handle, cidr, count, hint)
                    .await?;
                tracing::info!(handle, block = %cidr, count, "released a handle's addresses");
            }
            self.check_host_still_selected(&block, None).await;
            return Ok(count);
        }
        Err(IpamError::MaxRetries {
            key: block_key(cidr),
        })
    }

    /// Deletes a handle only if it is still at `revision` (the revision a
    /// check report recorded for a handle with no allocations); `false`
    /// when it changed or is gone.
    pub async fn delete_handle_if_unchanged(
        &self,
        handle: &str,
        revision: i64,
    ) -> Result<bool, IpamError> {
        let deleted = self
            .cas_delete(&crate::keys::handle_key(sanitize_handle(handle)), revision)
            .await?;
        if deleted {
            tracing::info!(handle, revision, "deleted a leaked handle");
        }
        Ok(deleted)
    }

    /// The cooldown backstop (§5.3): rewrites blocks holding ordinals whose
    /// cooldown has passed (deleting those left empty and unaffine).
    /// Returns how many blocks were rewritten.
    pub async fn collect_cooled_down(&self) -> Result<usize, IpamError> {
        let config = self.config().await?;
        let mut rewritten = 0;
        for version in [IpVersion::V4, IpVersion::V6] {
            let cidrs: Vec<IpNet> = self.existing_blocks(version).await?.into_keys().collect();
            for cidr in cidrs {
                for _ in 0..MAX_CAS_ATTEMPTS {
                    let slot = match self.get_block(&cidr).await {
                        Ok(s) => s,
                        Err(IpamError::Corrupt { .. }) => break,
                        Err(e) => return Err(e),
                    };
                    let (Some(revision), Some(mut block)) = (slot.revision, slot.value) else {
                        break;
                    };
                    if !block.collect_cooled(self.now(), config.cooldown()) {
                        break;
                    }
                    if self
                        .write_or_delete(&slot.key, revision, &mut block)
                        .await?
                    {
                        rewritten += 1;
                        break;
                    }
                }
            }
        }
        Ok(rewritten)
    }
}
