//! Typed reads and compare-and-swap writes of IPAM keys.
//!
//! A read returns a [`Slot`]: the revision to write against (`None` when
//! the key is absent, so the write is a create) and the live value (`None`
//! also for a soft-deleted row, which is overwritten at its revision).
//! A write that loses a race — create finds the key, update finds another
//! revision or no key, delete finds another revision or no key — returns
//! `Ok(None)`; the caller re-reads and decides again. Every other error
//! aborts (§3.1).

use ipnet::IpNet;
use tortie_datastore::{DatastoreError, Revision};

use super::{Ipam, MAX_CAS_ATTEMPTS};
use crate::affinity::{AffinityOwner, AffinityRecord, AffinityState};
use crate::block::Block;
use crate::error::IpamError;
use crate::handle::HandleRecord;
use crate::keys::{affinity_key, block_key, handle_key, host_marker_key};

/// One key as read.
#[derive(Clone, Debug)]
pub(crate) struct Slot<T> {
    pub key: String,
    pub revision: Option<Revision>,
    pub value: Option<T>,
}

impl Ipam {
    /// Creates (`revision: None`) or updates at `revision`. `Ok(None)` when
    /// the precondition failed.
    pub(crate) async fn cas_write(
        &self,
        key: &str,
        revision: Option<Revision>,
        value: Vec<u8>,
    ) -> Result<Option<Revision>, IpamError> {
        let result = match revision {
            None => self.ds().create(key, value).await,
            Some(rev) => self.ds().update(key, value, rev).await,
        };
        match result {
            Ok(rev) => Ok(Some(rev)),
            Err(
                DatastoreError::AlreadyExists { .. }
                | DatastoreError::Conflict { .. }
                | DatastoreError::NotFound { .. },
            ) => {
                tracing::debug!(key, "compare-and-swap lost a race; re-reading");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes at `revision`. `Ok(false)` when the key changed or vanished.
    pub(crate) async fn cas_delete(
        &self,
        key: &str,
        revision: Revision,
    ) -> Result<bool, IpamError> {
        match self.ds().delete(key, Some(revision)).await {
            Ok(_) => Ok(true),
            Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {
                tracing::debug!(key, "compare-and-swap delete lost a race; re-reading");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a block; a structurally invalid one is an error (never used).
    pub(crate) async fn get_block(&self, cidr: &IpNet) -> Result<Slot<Block>, IpamError> {
        let key = block_key(cidr);
        let Some(kv) = self.ds().get(&key).await? else {
            return Ok(Slot {
                key,
                revision: None,
                value: None,
            });
        };
        let value = Block::decode(&kv.value).map_err(|e| IpamError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        Ok(Slot {
            key,
            revision: Some(kv.mod_revision),
            value,
        })
    }

    pub(crate) async fn get_affinity(
        &self,
        owner: &AffinityOwner,
        cidr: &IpNet,
    ) -> Result<Slot<AffinityState>, IpamError> {
        let key = affinity_key(owner, cidr);
        let Some(kv) = self.ds().get(&key).await? else {
            return Ok(Slot {
                key,
                revision: None,
                value: None,
            });
        };
        let record = AffinityRecord::decode(&kv.value).map_err(|reason| IpamError::Corrupt {
            key: key.clone(),
            reason,
        })?;
        Ok(Slot {
            key,
            revision: Some(kv.mod_revision),
            value: (!record.deleted).then_some(record.state),
        })
    }

    pub(crate) async fn get_handle(&self, id: &str) -> Result<Slot<HandleRecord>, IpamError> {
        let key = handle_key(id);
        let Some(kv) = self.ds().get(&key).await? else {
            return Ok(Slot {
                key,
                revision: None,
                value: None,
            });
        };
        let record = HandleRecord::decode(&kv.value).map_err(|reason| IpamError::Corrupt {
            key: key.clone(),
            reason,
        })?;
        Ok(Slot {
            key,
            revision: Some(kv.mod_revision),
            value: (!record.is_empty()).then_some(record),
        })
    }

    /// Writes an affinity state at the slot's revision.
    pub(crate) async fn put_affinity(
        &self,
        slot: &Slot<AffinityState>,
        state: AffinityState,
    ) -> Result<bool, IpamError> {
        let bytes = AffinityRecord::with_state(state).encode();
        Ok(self
            .cas_write(&slot.key, slot.revision, bytes)
            .await?
            .is_some())
    }

    /// Creates the host marker `/calico/ipam/v2/host/<host>` if missing.
    pub(crate) async fn ensure_host_marker(&self, host: &str) -> Result<(), IpamError> {
        match self
            .ds()
            .create(&host_marker_key(host), b"{}".to_vec())
            .await
        {
            Ok(_) | Err(DatastoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds `count` addresses in `block` to a handle (creating it).
    pub(crate) async fn increment_handle(
        &self,
        id: &str,
        block: &IpNet,
        count: u64,
    ) -> Result<(), IpamError> {
        // Most handles are new (one per container): try creating first.
        let mut fresh = HandleRecord::default();
        fresh.increment(block, count);
        if self
            .cas_write(&handle_key(id), None, fresh.encode())
            .await?
            .is_some()
        {
            return Ok(());
        }
        for _ in 0..MAX_CAS_ATTEMPTS {
            let slot = self.get_handle(id).await?;
            let mut record = slot.value.unwrap_or_default();
            record.increment(block, count);
            if self
                .cas_write(&slot.key, slot.revision, record.encode())
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(IpamError::MaxRetries {
            key: handle_key(id),
        })
    }

    /// Removes `count` addresses in `block` from a handle, deleting the
    /// handle when it holds nothing more. A missing handle is fine (nothing
    /// to take back).
    pub(crate) async fn decrement_handle(
        &self,
        id: &str,
        block: &IpNet,
        count: u64,
    ) -> Result<(), IpamError> {
        self.decrement_handle_hinted(id, block, count, &mut None)
            .await
    }

    /// [`Ipam::decrement_handle`] starting from a copy read earlier
    /// (`hint`: revision and record), saving a read when nobody else wrote
    /// the handle since; the hint is updated to what was written.
    pub(crate) async fn decrement_handle_hinted(
        &self,
        id: &str,
        block: &IpNet,
        count: u64,
        hint: &mut Option<(Revision, HandleRecord)>,
    ) -> Result<(), IpamError> {
        let key = handle_key(id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (revision, mut record) = match hint.take() {
                Some(known) => known,
                None => {
                    let slot = self.get_handle(id).await?;
                    let (Some(revision), Some(record)) = (slot.revision, slot.value) else {
                        tracing::warn!(handle = id, %block, count, "releasing from a handle that does not exist");
                        return Ok(());
                    };
                    (revision, record)
                }
            };
            if record.decrement(block, count) {
                tracing::warn!(handle = id, %block, count, "the handle recorded fewer addresses than were released");
            }
            if record.is_empty() {
                if self.cas_delete(&key, revision).await? {
                    return Ok(());
                }
            } else if let Some(new_revision) = self
                .cas_write(&key, Some(revision), record.encode())
                .await?
            {
                *hint = Some((new_revision, record));
                return Ok(());
            }
        }
        Err(IpamError::MaxRetries {
            key: handle_key(id),
        })
    }
}
