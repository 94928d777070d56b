//! Assignment: automatic (§3.4) and of a specific address (§3.7).
//!
//! Automatic assignment per family: fill the host's confirmed affine blocks
//! in affinity-list order; then claim new blocks while the block cap
//! allows; then, unless strict affinity is on, borrow from any block of the
//! allowed pools in the host's walk order. Each block is filled by
//! [`Ipam::assign_in_block`]: read, allocate in memory, increment the handle,
//! CAS the block; on a lost race take the increment back and re-read.
//!
//! Hard cases: before filling, unconfirmed affinities of the host are
//! pushed through the claim state machine (finishing claims a crash
//! interrupted) and empty blocks in pools that no longer select the host
//! are released (§3.3 step 5); a block that vanished under a confirmed
//! affinity is re-claimed; a block whose affinity changed while we retried
//! is left alone.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::claim::{Claim, SeenBlock};
use super::release::ReleaseRequest;
use super::{
    AssignIpRequest, AutoAssignRequest, AutoAssignResult, FamilyAssignment, Ipam, MAX_CAS_ATTEMPTS,
    RequestContext,
};
use crate::affinity::{AffinityOwner, AffinityRecord, AffinityState, LOAD_BALANCER_OWNER};
use crate::block::OrdinalTaken;
use crate::blockgen::BlockWalk;
use crate::cidr::{IpVersion, address_at, masked, ordinal_of, with_block_prefix};
use crate::error::IpamError;
use crate::handle::sanitize_handle;
use crate::keys::{block_key, owner_family_prefix, parse_affinity_key};
use crate::pools::{Pool, PoolRequest, choose_pools, pools_selecting_node};
use tortie_model::ippool::AllowedUse;

/// What one attempt at a block gave.
enum BlockFill {
    Assigned(Vec<IpNet>),
    /// No block object: nothing to fill.
    Missing,
    /// The block is affine to someone else (affinity check on).
    NotOurs,
}

/// One family's inputs, shared by the phases.
struct FamilyJob<'a> {
    owner: &'a AffinityOwner,
    handle: Option<&'a str>,
    attrs: &'a BTreeMap<String, String>,
    pools: Vec<Pool>,
    reserve_ends: bool,
}

fn ipnet_list(pools: &[Pool]) -> String {
    let cidrs: Vec<String> = pools.iter().map(|p| p.cidr.to_string()).collect();
    format!("[{}]", cidrs.join(" "))
}

impl Ipam {
    /// Assigns addresses of both families (§3.4). A short result is not an
    /// error (see [`FamilyAssignment::shortfall`]); an error means nothing
    /// was assigned (whatever the call assigned before failing is released
    /// again, by address and handle).
    pub async fn auto_assign(&self, req: AutoAssignRequest) -> Result<AutoAssignResult, IpamError> {
        let owner = if req.intended_use == AllowedUse::LoadBalancer {
            AffinityOwner::Virtual(LOAD_BALANCER_OWNER.to_string())
        } else if req.hostname.is_empty() {
            return Err(IpamError::InvalidRequest(
                "a hostname is required to assign addresses".to_string(),
            ));
        } else {
            AffinityOwner::host(&req.hostname)
        };
        let handle = sanitize_handle(&req.handle_id).to_string();
        let handle = (!handle.is_empty()).then_some(handle);
        let ctx = self.context().await?;
        let node_labels = match &owner {
            AffinityOwner::Host(h) => self.node_labels(h).await?,
            AffinityOwner::Virtual(_) => BTreeMap::new(),
        };
        let mut result = AutoAssignResult::default();
        for (version, num, explicit) in [
            (IpVersion::V4, req.num_v4, &req.ipv4_pools),
            (IpVersion::V6, req.num_v6, &req.ipv6_pools),
        ] {
            if num == 0 {
                continue;
            }
            let mut done = FamilyAssignment {
                requested: num,
                ..FamilyAssignment::default()
            };
            let outcome = self
                .assign_family(
                    &ctx,
                    &req,
                    &owner,
                    handle.as_deref(),
                    &node_labels,
                    version,
                    explicit,
                    &mut done,
                )
                .await;
            if let Err(e) = outcome {
                // Nothing stays assigned when the call fails: neither the
                // other family's addresses nor this family's so far.
                let mut assigned = result.ipv4.ips.clone();
                assigned.extend(done.ips);
                self.undo(&assigned, handle.as_deref()).await;
                return Err(e);
            }
            match version {
                IpVersion::V4 => result.ipv4 = done,
                IpVersion::V6 => result.ipv6 = done,
            }
        }
        Ok(result)
    }

    /// Releases addresses assigned earlier in a call that then failed.
    async fn undo(&self, ips: &[IpNet], handle: Option<&str>) {
        if ips.is_empty() {
            return;
        }
        let requests: Vec<ReleaseRequest> = ips
            .iter()
            .map(|ip| ReleaseRequest {
                address: ip.addr(),
                handle: handle.map(str::to_string),
                sequence: None,
            })
            .collect();
        match self.release_ips(&requests).await {
            Ok(outcome) if outcome.failed.is_empty() => {}
            Ok(outcome) => {
                for f in outcome.failed {
                    tracing::error!(error = %f.error, "could not release addresses of a failed assignment; they are leaked until ipam check finds them");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not release addresses of a failed assignment; they are leaked until ipam check finds them")
            }
        }
    }

    /// Assigns up to `out.requested` addresses of one family into `out`
    /// (which holds what was assigned even when an error stops the work).
    #[allow(clippy::too_many_arguments)]
    async fn assign_family(
        &self,
        ctx: &RequestContext,
        req: &AutoAssignRequest,
        owner: &AffinityOwner,
        handle: Option<&str>,
        node_labels: &BTreeMap<String, String>,
        version: IpVersion,
        explicit: &[String],
        out: &mut FamilyAssignment,
    ) -> Result<(), IpamError> {
        let num = out.requested;
        let pools = choose_pools(
            &ctx.pools,
            &PoolRequest {
                version,
                explicit,
                host: owner.name(),
                intended_use: req.intended_use,
                node_labels,
                namespace_labels: req.namespace_labels.as_ref(),
                reserve_block_ends: req.reserve_block_ends,
            },
        )?;
        let job = FamilyJob {
            owner,
            handle,
            attrs: &req.attrs,
            pools,
            reserve_ends: req.reserve_block_ends,
        };

        // The host's affinities in this family, tidied up first.
        let affine = self
            .prepare_affine_blocks(ctx, &job, node_labels, version)
            .await?;
        let cap = ctx.config.block_cap(req.max_blocks_per_host);
        let mut owned = affine.len() as u64;

        // 1. Affine blocks, in affinity-list order.
        for cidr in &affine {
            if out.ips.len() >= num {
                break;
            }
            let need = num - out.ips.len();
            let got = self.fill_affine_block(ctx, &job, cidr, need).await?;
            out.ips.extend(got);
        }

        // 2. New blocks, while the cap allows.
        // Claims that yielded nothing in a row (others filled the block
        // first); bounded so a pathological race cannot spin forever.
        let mut fruitless_claims = 0usize;
        while out.ips.len() < num {
            if owned >= u64::from(cap) {
                out.hit_block_limit = true;
                out.messages.push(format!(
                    "Need to allocate an IPAM block but could not - limit of {cap} blocks reached for this node"
                ));
                break;
            }
            if !ctx.config.auto_allocate_blocks {
                out.messages.push(
                    "Need to allocate an IPAM block but automatic block allocation is disabled"
                        .to_string(),
                );
                break;
            }
            if fruitless_claims >= MAX_CAS_ATTEMPTS {
                return Err(IpamError::MaxRetries {
                    key: owner_family_prefix(owner, version),
                });
            }
            let found = self
                .find_and_claim(owner, &job.pools, &ctx.reservations, job.reserve_ends)
                .await?;
            let Some(cidr) = found else {
                if ctx.config.strict_affinity {
                    out.messages
                        .push("No more free affine blocks and strict affinity enabled".to_string());
                }
                break;
            };
            owned += 1;
            let need = num - out.ips.len();
            let got = self.fill_affine_block(ctx, &job, &cidr, need).await?;
            if got.is_empty() {
                fruitless_claims += 1;
            } else {
                fruitless_claims = 0;
            }
            out.ips.extend(got);
        }

        // 3. Borrow from other blocks.
        if out.ips.len() < num && !ctx.config.strict_affinity {
            self.borrow(ctx, &job, version, num, out).await?;
            if out.ips.len() < num {
                out.messages.push(format!(
                    "No IPs available in pools: {}",
                    ipnet_list(&job.pools)
                ));
            }
        }
        tracing::info!(owner = %owner, handle, %version, requested = num, assigned = out.ips.len(), "auto-assigned addresses");
        Ok(())
    }

    /// Lists the owner's affinities of the family; finishes interrupted
    /// claims inside the allowed pools; releases empty affine blocks in
    /// pools that no longer select the host. Returns the confirmed affine
    /// blocks inside the allowed pools, in list order.
    async fn prepare_affine_blocks(
        &self,
        ctx: &RequestContext,
        job: &FamilyJob<'_>,
        node_labels: &BTreeMap<String, String>,
        version: IpVersion,
    ) -> Result<Vec<IpNet>, IpamError> {
        let list = self
            .ds()
            .list(&owner_family_prefix(job.owner, version))
            .await?;
        let selecting = pools_selecting_node(&ctx.pools, version, node_labels);
        let mut affine = Vec::new();
        for kv in &list.items {
            let Some((_, cidr)) = parse_affinity_key(&kv.key) else {
                continue;
            };
            let state = match AffinityRecord::decode(&kv.value) {
                Ok(r) if r.deleted => continue,
                Ok(r) => r.state,
                Err(reason) => {
                    tracing::warn!(key = kv.key, reason, "skipping an unreadable affinity");
                    continue;
                }
            };
            let allowed = job.pools.iter().any(|p| p.cidr.contains(&cidr));
            if !allowed {
                // Housekeeping: blocks in pools that no longer select the
                // host go when empty (blocks of pools this request named
                // explicitly are in use, whatever the selector says).
                let selected = selecting.iter().any(|p| p.cidr.contains(&cidr));
                if job.owner.is_host() && !selected && state == AffinityState::Confirmed {
                    self.release_if_empty(job.owner, &cidr).await;
                }
                continue;
            }
            if state == AffinityState::Confirmed {
                affine.push(cidr);
                continue;
            }
            // A claim or a release was interrupted (or is running right now
            // elsewhere): drive it to a confirmed affinity, or drop it.
            match self.claim_block(job.owner, &cidr, job.reserve_ends).await {
                Ok(Claim::Claimed) => affine.push(cidr),
                Ok(Claim::Conflict) => {}
                Err(e) => {
                    tracing::warn!(%cidr, error = %e, "could not recover an unconfirmed affinity")
                }
            }
        }
        Ok(affine)
    }

    /// Housekeeping (§3.3 step 5): release an affine block's affinity if the
    /// block is empty. Failures are logged, not fatal.
    async fn release_if_empty(&self, owner: &AffinityOwner, cidr: &IpNet) {
        match self.release_block_affinity(owner, cidr, true, None).await {
            Ok(outcome) => {
                tracing::info!(%cidr, %owner, ?outcome, "released the affinity of an empty block outside the host's pools")
            }
            Err(IpamError::BlockNotEmpty { .. }) => {}
            Err(e) => {
                tracing::warn!(%cidr, %owner, error = %e, "could not release an affinity outside the host's pools")
            }
        }
    }

    /// Fills from a block the owner holds an affinity for, re-claiming it
    /// if the block object vanished.
    async fn fill_affine_block(
        &self,
        ctx: &RequestContext,
        job: &FamilyJob<'_>,
        cidr: &IpNet,
        need: usize,
    ) -> Result<Vec<IpNet>, IpamError> {
        for _ in 0..2 {
            match self
                .assign_in_block(ctx, cidr, need, job.handle, job.attrs, Some(job.owner))
                .await?
            {
                BlockFill::Assigned(ips) => return Ok(ips),
                BlockFill::NotOurs => {
                    // §3.2: the affinity is stale; drop it and skip the block.
                    match self
                        .release_block_affinity(job.owner, cidr, true, None)
                        .await
                    {
                        Ok(outcome) => {
                            tracing::info!(%cidr, owner = %job.owner, ?outcome, "dropped a stale affinity")
                        }
                        Err(e) => {
                            tracing::warn!(%cidr, owner = %job.owner, error = %e, "could not drop a stale affinity")
                        }
                    }
                    return Ok(Vec::new());
                }
                BlockFill::Missing => {
                    tracing::warn!(%cidr, owner = %job.owner, "affine block is missing; claiming it again");
                    if self.claim_block(job.owner, cidr, job.reserve_ends).await? == Claim::Conflict
                    {
                        return Ok(Vec::new());
                    }
                }
            }
        }
        Ok(Vec::new())
    }

    /// Borrowing (§3.4 step 4): existing blocks of each allowed pool in the
    /// host's walk order, without the affinity check.
    async fn borrow(
        &self,
        ctx: &RequestContext,
        job: &FamilyJob<'_>,
        version: IpVersion,
        num: usize,
        out: &mut FamilyAssignment,
    ) -> Result<(), IpamError> {
        let existing = self.existing_blocks(version).await?;
        for pool in &job.pools {
            let Some(walk) =
                BlockWalk::for_host(&pool.cidr, pool.block_prefix, job.owner.name(), 0)
            else {
                continue;
            };
            let mut candidates: Vec<(u128, IpNet)> = existing
                .iter()
                .filter(|(cidr, _)| pool.cidr.contains(*cidr) && !ctx.reservations.covers(cidr))
                .filter_map(|(cidr, seen)| match seen.decode(cidr) {
                    SeenBlock::Live(block) if block.usable_free_count(&ctx.reservations) > 0 => {
                        walk.position_of(cidr).map(|pos| (pos, *cidr))
                    }
                    _ => None,
                })
                .collect();
            candidates.sort_unstable();
            for (_, cidr) in candidates {
                if out.ips.len() >= num {
                    return Ok(());
                }
                let need = num - out.ips.len();
                if let BlockFill::Assigned(ips) = self
                    .assign_in_block(ctx, &cidr, need, job.handle, job.attrs, None)
                    .await?
                {
                    if !ips.is_empty() {
                        tracing::info!(%cidr, owner = %job.owner, count = ips.len(), "borrowed addresses");
                    }
                    out.ips.extend(ips);
                }
            }
        }
        Ok(())
    }

    /// Assigns up to `need` addresses in one block with CAS (§3.6). With
    /// `affine_to`, a block affine to anyone else is refused.
    async fn assign_in_block(
        &self,
        ctx: &RequestContext,
        cidr: &IpNet,
        need: usize,
        handle: Option<&str>,
        attrs: &BTreeMap<String, String>,
        affine_to: Option<&AffinityOwner>,
    ) -> Result<BlockFill, IpamError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let slot = match self.get_block(cidr).await {
                Ok(slot) => slot,
                Err(IpamError::Corrupt { key, reason }) => {
                    tracing::error!(key, reason, "not allocating from an invalid block");
                    return Ok(BlockFill::Assigned(Vec::new()));
                }
                Err(e) => return Err(e),
            };
            let Some(mut block) = slot.value else {
                return Ok(BlockFill::Missing);
            };
            if let Some(owner) = affine_to
                && !block.is_owned_by(owner)
            {
                return Ok(BlockFill::NotOurs);
            }
            block.collect_cooled(self.now(), ctx.config.cooldown());
            let ordinals = block.assign(need, handle, attrs, &ctx.reservations);
            if ordinals.is_empty() {
                return Ok(BlockFill::Assigned(Vec::new()));
            }
            let count = ordinals.len() as u64;
            if let Some(h) = handle {
                self.increment_handle(h, cidr, count).await?;
            }
            let bytes = block.commit();
            if self
                .cas_write(&slot.key, slot.revision, bytes)
                .await?
                .is_some()
            {
                let ips = ordinals
                    .iter()
                    .map(|o| with_block_prefix(address_at(cidr, *o), cidr))
                    .collect();
                return Ok(BlockFill::Assigned(ips));
            }
            if let Some(h) = handle {
                self.decrement_handle(h, cidr, count).await?;
            }
        }
        Err(IpamError::MaxRetries {
            key: block_key(cidr),
        })
    }

    /// Assigns one specific address (§3.7). Reservations and node selectors
    /// do not apply.
    pub async fn assign_ip(&self, req: AssignIpRequest) -> Result<(), IpamError> {
        if req.hostname.is_empty() {
            return Err(IpamError::InvalidRequest(
                "a hostname is required to assign an address".to_string(),
            ));
        }
        let ip = req.ip;
        let handle = sanitize_handle(&req.handle_id);
        let handle = (!handle.is_empty()).then_some(handle);
        let config = self.config().await?;
        let pools = self.pools().await?;
        let host_net = IpNet::from(ip);
        let Some(pool) = pools
            .iter()
            .find(|p| p.enabled && p.cidr.contains(&host_net))
        else {
            return Err(IpamError::NotInPool { ip });
        };
        if let Some(intended) = req.intended_use
            && !pool.allows(intended)
        {
            return Err(IpamError::UseNotAllowed {
                ip,
                pool: pool.cidr,
                intended_use: format!("{intended:?}"),
            });
        }
        let cidr = masked(ip, pool.block_prefix).expect("a pool's block size fits its family");
        let ordinal = ordinal_of(&cidr, ip).expect("the block contains the address");
        let owner = AffinityOwner::host(&req.hostname);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let slot = self.get_block(&cidr).await?;
            let Some(mut block) = slot.value else {
                // No block yet: claim it for this host, then look again
                // (whoever won the claim, the block exists now).
                self.claim_block(&owner, &cidr, false).await?;
                continue;
            };
            if config.strict_affinity && !block.is_owned_by(&owner) {
                return Err(IpamError::StrictAffinity {
                    ip,
                    block: cidr,
                    owner: block.affinity().unwrap_or("nobody").to_string(),
                    requester: owner.to_string(),
                });
            }
            block.collect_cooled(self.now(), config.cooldown());
            match block.assign_ordinal(ordinal, handle, &req.attrs) {
                Ok(()) => {}
                Err(OrdinalTaken::CoolingDown) => {
                    return Err(IpamError::CoolingDown { ip, block: cidr });
                }
                Err(OrdinalTaken::Allocated | OrdinalTaken::OutOfRange) => {
                    return Err(IpamError::AlreadyAssigned { ip, block: cidr });
                }
            }
            if let Some(h) = handle {
                self.increment_handle(h, &cidr, 1).await?;
            }
            if self
                .cas_write(&slot.key, slot.revision, block.commit())
                .await?
                .is_some()
            {
                tracing::info!(%ip, handle, host = req.hostname, "assigned a specific address");
                return Ok(());
            }
            if let Some(h) = handle {
                self.decrement_handle(h, &cidr, 1).await?;
            }
        }
        Err(IpamError::MaxRetries {
            key: block_key(&cidr),
        })
    }
}
