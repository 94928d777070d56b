//! Claiming blocks: the two-phase claim driver (§3.2), finding a block to
//! claim with the per-host walk (§3.5, including reclaiming other hosts'
//! long-empty blocks), and claiming a whole range (§3.9).
//!
//! The driver reads the affinity and the block, asks
//! [`next_claim_step`] for the one write to do, does it with CAS, and
//! starts over; so it finishes claims that crashed half-way and yields to
//! whoever got the block first.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;

use super::{Ipam, MAX_CAS_ATTEMPTS};
use crate::affinity::{
    AffinityOwner, AffinityState, BlockOwnership, ClaimProgress, ClaimStep, next_claim_step,
};
use crate::block::{Block, parse_rfc3339};
use crate::blockgen::BlockWalk;
use crate::cidr::IpVersion;
use crate::error::IpamError;
use crate::keys::{block_key, blocks_prefix, parse_block_key};
use crate::pools::Pool;
use crate::reservations::Reservations;

/// How long an empty block must have been claimed before another host may
/// take it over (§3.5).
const RECLAIM_AGE: Duration = Duration::from_secs(60);

/// Result of one claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Confirmed affinity, block affine to us.
    Claimed,
    /// The block belongs to someone else.
    Conflict,
}

/// Result of [`Ipam::claim_affinity`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimAffinityOutcome {
    pub claimed: Vec<IpNet>,
    /// Blocks owned by someone else.
    pub failed: Vec<IpNet>,
}

/// An existing block seen in a listing, decoded only when looked at.
pub(crate) struct Seen {
    raw: Vec<u8>,
    pub revision: i64,
}

/// What a listed block turned out to be.
pub(crate) enum SeenBlock {
    Live(Box<Block>),
    /// Soft-deleted: as good as missing.
    Gone,
    Invalid,
}

impl Seen {
    pub(crate) fn decode(&self, cidr: &IpNet) -> SeenBlock {
        match Block::decode(&self.raw) {
            Ok(Some(block)) => SeenBlock::Live(Box::new(block)),
            Ok(None) => SeenBlock::Gone,
            Err(e) => {
                tracing::warn!(block = %cidr, error = %e, "skipping an invalid block");
                SeenBlock::Invalid
            }
        }
    }
}

impl Ipam {
    /// Runs the two-phase claim of `cidr` for `owner` to completion.
    pub(crate) async fn claim_block(
        &self,
        owner: &AffinityOwner,
        cidr: &IpNet,
        reserve_ends: bool,
    ) -> Result<Claim, IpamError> {
        if let AffinityOwner::Host(host) = owner {
            self.ensure_host_marker(host).await?;
        }
        let mut progress = ClaimProgress::default();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let affinity = self.get_affinity(owner, cidr).await?;
            let block = match self.get_block(cidr).await {
                Ok(b) => Some(b),
                // An unreadable block is somebody's problem, never ours to claim.
                Err(IpamError::Corrupt { key, reason }) => {
                    tracing::error!(key, reason, "cannot claim a block whose value is invalid");
                    None
                }
                Err(e) => return Err(e),
            };
            let ownership = match block.as_ref().map(|b| b.value.as_ref()) {
                Some(None) => BlockOwnership::Missing,
                Some(Some(b)) if b.is_owned_by(owner) => BlockOwnership::Ours,
                _ => BlockOwnership::NotOurs,
            };
            let step = next_claim_step(affinity.value, ownership, progress);
            tracing::debug!(%cidr, %owner, ?step, affinity = ?affinity.value, ?ownership, "claim step");
            let written = match step {
                ClaimStep::Done => {
                    tracing::info!(%cidr, %owner, "claimed block");
                    return Ok(Claim::Claimed);
                }
                ClaimStep::Abandon => {
                    let deleted = match (affinity.revision, affinity.value) {
                        (Some(rev), Some(_)) => self.cas_delete(&affinity.key, rev).await?,
                        _ => true,
                    };
                    if deleted {
                        tracing::info!(%cidr, %owner, "block is owned elsewhere; claim abandoned");
                        return Ok(Claim::Conflict);
                    }
                    false
                }
                ClaimStep::CreatePendingAffinity | ClaimStep::MarkAffinityPending => {
                    self.put_affinity(&affinity, AffinityState::Pending).await?
                }
                ClaimStep::ConfirmAffinity => {
                    self.put_affinity(&affinity, AffinityState::Confirmed)
                        .await?
                }
                ClaimStep::CreateBlock => {
                    let slot = block.expect("a missing block was read");
                    let new = Block::new(*cidr, Some(owner), self.now(), reserve_ends);
                    let ok = self
                        .cas_write(&slot.key, slot.revision, new.encode())
                        .await?
                        .is_some();
                    progress.created_block |= ok;
                    ok
                }
                ClaimStep::RewriteBlock => {
                    let slot = block.expect("an owned block was read");
                    let mut b = slot.value.expect("an owned block has a value");
                    let ok = self
                        .cas_write(&slot.key, slot.revision, b.commit())
                        .await?
                        .is_some();
                    progress.rewrote_block |= ok;
                    ok
                }
            };
            if !written {
                tracing::debug!(%cidr, %owner, ?step, "claim step lost a race; re-reading");
            }
        }
        Err(IpamError::MaxRetries {
            key: block_key(cidr),
        })
    }

    /// Every existing block of a family, by CIDR.
    pub(crate) async fn existing_blocks(
        &self,
        version: IpVersion,
    ) -> Result<BTreeMap<IpNet, Seen>, IpamError> {
        let list = self.ds().list(&blocks_prefix(version)).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|kv| {
                let cidr = parse_block_key(&kv.key)?;
                Some((
                    cidr,
                    Seen {
                        raw: kv.value,
                        revision: kv.mod_revision,
                    },
                ))
            })
            .collect())
    }

    /// Finds and claims a block for `owner` in `pools` (§3.5). `None` when
    /// every pool is full.
    pub(crate) async fn find_and_claim(
        &self,
        owner: &AffinityOwner,
        pools: &[Pool],
        reservations: &Reservations,
        reserve_ends: bool,
    ) -> Result<Option<IpNet>, IpamError> {
        let Some(version) = pools.first().map(Pool::version) else {
            return Ok(None);
        };
        let existing = self.existing_blocks(version).await?;
        let now = self.now();
        let now_nanos = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut remembered: Vec<(IpNet, Block, i64)> = Vec::new();
        for pool in pools {
            let Some(mut walk) =
                BlockWalk::for_host(&pool.cidr, pool.block_prefix, owner.name(), now_nanos)
            else {
                continue;
            };
            while let Some(cidr) = walk.next_unreserved(reservations) {
                let seen = existing.get(&cidr).map(|s| (s.decode(&cidr), s.revision));
                match seen {
                    None | Some((SeenBlock::Gone, _)) => {
                        if self.claim_block(owner, &cidr, reserve_ends).await? == Claim::Claimed {
                            return Ok(Some(cidr));
                        }
                    }
                    Some((SeenBlock::Live(block), revision)) => {
                        let usable = block.usable_free_count(reservations) > 0;
                        if block.is_owned_by(owner) && usable {
                            if self.claim_block(owner, &cidr, reserve_ends).await? == Claim::Claimed
                            {
                                return Ok(Some(cidr));
                            }
                        } else if block.is_empty() && usable {
                            remembered.push((cidr, *block, revision));
                        }
                    }
                    Some((SeenBlock::Invalid, _)) => {}
                }
            }
        }
        for (cidr, block, revision) in remembered {
            let claimed_at = block.affinity_claim_time().and_then(parse_rfc3339);
            let old_enough = claimed_at
                .is_none_or(|t| now.duration_since(t).is_ok_and(|age| age >= RECLAIM_AGE));
            if !old_enough {
                continue;
            }
            let freed = match block.owner() {
                Some(other) => {
                    match self
                        .release_block_affinity(&other, &cidr, true, Some(block.sequence_number()))
                        .await
                    {
                        Ok(_) => true,
                        Err(
                            e @ (IpamError::BlockNotEmpty { .. } | IpamError::BlockChanged { .. }),
                        ) => {
                            tracing::debug!(%cidr, error = %e, "empty block changed; not reclaiming it");
                            false
                        }
                        Err(e) => return Err(e),
                    }
                }
                // An empty block nobody owns: remove it if it is unchanged.
                None => self.cas_delete(&block_key(&cidr), revision).await?,
            };
            if freed {
                tracing::info!(%cidr, previous = ?block.affinity(), %owner, "reclaiming an empty block");
                if self.claim_block(owner, &cidr, reserve_ends).await? == Claim::Claimed {
                    return Ok(Some(cidr));
                }
            }
        }
        Ok(None)
    }

    /// Claims every block of `cidr` for `host` (§3.9): `cidr` must lie in a
    /// pool and be at least one block in size.
    pub async fn claim_affinity(
        &self,
        cidr: &IpNet,
        host: &str,
    ) -> Result<ClaimAffinityOutcome, IpamError> {
        let cidr = cidr.trunc();
        let pools = self.pools().await?;
        let Some(pool) = pools.iter().find(|p| p.cidr.contains(&cidr)) else {
            return Err(IpamError::InvalidRequest(format!(
                "{cidr} is not inside any IP pool"
            )));
        };
        if cidr.prefix_len() > pool.block_prefix {
            return Err(IpamError::InvalidRequest(format!(
                "{cidr} is smaller than one block of pool {} (/{})",
                pool.cidr, pool.block_prefix
            )));
        }
        let owner = AffinityOwner::host(host);
        let mut outcome = ClaimAffinityOutcome::default();
        let blocks = cidr
            .subnets(pool.block_prefix)
            .map_err(|e| IpamError::InvalidRequest(e.to_string()))?;
        for block in blocks {
            match self.claim_block(&owner, &block, false).await? {
                Claim::Claimed => outcome.claimed.push(block),
                Claim::Conflict => outcome.failed.push(block),
            }
        }
        Ok(outcome)
    }
}
