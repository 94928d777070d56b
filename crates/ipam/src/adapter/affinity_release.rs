//! Releasing block affinities (§6) and the host- and pool-level helpers
//! built on it.
//!
//! Order: affinity -> `pendingDeletion`; block deleted (empty) or its
//! affinity cleared (not empty, the addresses stay owned by their handles);
//! affinity deleted. Each step is a CAS; a lost race restarts from a fresh
//! read, where a block no longer affine to the owner means only the stale
//! affinity is left to delete.

use ipnet::IpNet;

use super::{Ipam, MAX_CAS_ATTEMPTS};
use crate::affinity::{AffinityOwner, AffinityState};
use crate::error::IpamError;
use crate::keys::{
    HOST_PREFIX, VIRTUAL_PREFIX, affinity_key, host_marker_key, owner_affinities_prefix,
    parse_affinity_key,
};

/// What releasing one affinity did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityReleaseOutcome {
    /// The block was empty and is deleted.
    BlockDeleted,
    /// The block keeps its addresses but no longer has an affinity.
    AffinityCleared,
    /// The block belonged to someone else (or did not exist): only our
    /// stale affinity was removed ("claim conflict").
    StaleAffinityRemoved,
    /// There was neither an affinity nor a block affine to the owner.
    NothingToRelease,
}

/// What releasing many affinities did.
#[derive(Debug, Default)]
pub struct AffinityReleaseSummary {
    pub released: Vec<IpNet>,
    /// Skipped because they still hold addresses (with `require_empty`).
    pub not_empty: Vec<IpNet>,
    pub errors: Vec<(IpNet, IpamError)>,
}

impl Ipam {
    /// Releases `owner`'s affinity for `cidr` (§6). With `require_empty`, a
    /// block holding addresses is refused (`BlockNotEmpty`); with
    /// `required_sequence`, so is a block whose sequence number moved on
    /// (`BlockChanged`).
    pub async fn release_block_affinity(
        &self,
        owner: &AffinityOwner,
        cidr: &IpNet,
        require_empty: bool,
        required_sequence: Option<u64>,
    ) -> Result<AffinityReleaseOutcome, IpamError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let affinity = self.get_affinity(owner, cidr).await?;
            let slot = self.get_block(cidr).await?;
            let ours = slot.value.as_ref().filter(|b| b.is_owned_by(owner));
            let Some(block) = ours else {
                // No block affine to us: at most a stale affinity to drop.
                let Some(rev) = affinity.revision else {
                    return Ok(AffinityReleaseOutcome::NothingToRelease);
                };
                if self.cas_delete(&affinity.key, rev).await? {
                    tracing::info!(%cidr, %owner, "removed a stale affinity");
                    return Ok(AffinityReleaseOutcome::StaleAffinityRemoved);
                }
                continue;
            };
            if let Some(expected) = required_sequence
                && block.sequence_number() != expected
            {
                return Err(IpamError::BlockChanged {
                    block: *cidr,
                    expected,
                    actual: block.sequence_number(),
                });
            }
            if require_empty && !block.is_empty() {
                return Err(IpamError::BlockNotEmpty { block: *cidr });
            }
            if affinity.revision.is_some()
                && affinity.value != Some(AffinityState::PendingDeletion)
                && !self
                    .put_affinity(&affinity, AffinityState::PendingDeletion)
                    .await?
            {
                continue;
            }
            let mut block = block.clone();
            let revision = slot.revision.expect("a stored block has a revision");
            let outcome = if block.is_empty() {
                if !self.cas_delete(&slot.key, revision).await? {
                    continue;
                }
                AffinityReleaseOutcome::BlockDeleted
            } else {
                block.clear_affinity();
                if self
                    .cas_write(&slot.key, Some(revision), block.commit())
                    .await?
                    .is_none()
                {
                    continue;
                }
                AffinityReleaseOutcome::AffinityCleared
            };
            // The affinity may have changed since we marked it; delete it at
            // whatever revision it has now (the block no longer names us).
            self.delete_affinity_key(owner, cidr).await?;
            tracing::info!(%cidr, %owner, ?outcome, "released block affinity");
            return Ok(outcome);
        }
        Err(IpamError::MaxRetries {
            key: affinity_key(owner, cidr),
        })
    }

    async fn delete_affinity_key(
        &self,
        owner: &AffinityOwner,
        cidr: &IpNet,
    ) -> Result<(), IpamError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let slot = self.get_affinity(owner, cidr).await?;
            let Some(rev) = slot.revision else {
                return Ok(());
            };
            if self.cas_delete(&slot.key, rev).await? {
                return Ok(());
            }
        }
        Err(IpamError::MaxRetries {
            key: affinity_key(owner, cidr),
        })
    }

    async fn release_affinities_under(
        &self,
        prefix: &str,
        filter: impl Fn(&AffinityOwner, &IpNet) -> bool,
        require_empty: bool,
    ) -> Result<AffinityReleaseSummary, IpamError> {
        let list = self.ds().list(prefix).await?;
        let mut summary = AffinityReleaseSummary::default();
        for kv in list.items {
            let Some((owner, cidr)) = parse_affinity_key(&kv.key) else {
                continue;
            };
            if !filter(&owner, &cidr) {
                continue;
            }
            match self
                .release_block_affinity(&owner, &cidr, require_empty, None)
                .await
            {
                Ok(_) => summary.released.push(cidr),
                Err(IpamError::BlockNotEmpty { .. }) => summary.not_empty.push(cidr),
                Err(e) => summary.errors.push((cidr, e)),
            }
        }
        Ok(summary)
    }

    /// Releases every affinity of a host, both families (optionally only of
    /// empty blocks).
    pub async fn release_host_affinities(
        &self,
        host: &str,
        require_empty: bool,
    ) -> Result<AffinityReleaseSummary, IpamError> {
        let owner = AffinityOwner::host(host);
        self.release_affinities_under(&owner_affinities_prefix(&owner), |_, _| true, require_empty)
            .await
    }

    /// Releases every affinity (any owner) of blocks inside `pool` — the
    /// pool-deletion step of §1.1.
    pub async fn release_pool_affinities(
        &self,
        pool: &IpNet,
    ) -> Result<AffinityReleaseSummary, IpamError> {
        let mut summary = AffinityReleaseSummary::default();
        for prefix in [HOST_PREFIX, VIRTUAL_PREFIX] {
            let part = self
                .release_affinities_under(prefix, |_, cidr| pool.contains(cidr), false)
                .await?;
            summary.released.extend(part.released);
            summary.not_empty.extend(part.not_empty);
            summary.errors.extend(part.errors);
        }
        Ok(summary)
    }

    /// Removes a host from IPAM: releases all its affinities (blocks keep
    /// their addresses) and deletes its host marker. The host's own
    /// allocations are not released; release them by handle first.
    pub async fn remove_host(&self, host: &str) -> Result<AffinityReleaseSummary, IpamError> {
        let summary = self.release_host_affinities(host, false).await?;
        if summary.errors.is_empty() {
            match self.ds().delete(&host_marker_key(host), None).await {
                Ok(_) | Err(tortie_datastore::DatastoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(summary)
    }
}
