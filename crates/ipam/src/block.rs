//! One allocation block (ipam.md §2.1, §3.6, §3.7, §5): its stored JSON form
//! and every change IPAM makes to it, as plain functions on a value.
//!
//! The block is the unit of compare-and-swap: the adapter reads it, calls
//! one of these functions, and writes it back at the revision it read. So
//! each function here is a complete, self-checking state transition:
//! allocate ordinals from the head of the free queue (skipping reserved
//! addresses without removing them), release ordinals — immediately to the
//! *tail* of the queue, or into cooldown behind a `releasedAt` attribute —
//! with handle and sequence-number preconditions checked for the whole
//! request before anything changes, and collect ordinals whose cooldown has
//! passed. [`Block::commit`] bumps the sequence number and prunes unused
//! attributes, so every write carries both.
//!
//! Decoding validates the structure strictly (allocation length, attribute
//! indices, and `unallocated` holding exactly the free ordinals once each):
//! a block that fails is never allocated from, because a free queue that
//! lists an allocated ordinal would hand that address out twice.
//!
//! Hard cases: the legacy `hostAffinity` field; `null` maps written by
//! other implementations; unknown fields, which are kept and written back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::affinity::AffinityOwner;
use crate::cidr::{address_at, host_bits, parse_cidr};
use crate::reservations::Reservations;

/// Handle of the ordinals reserved at both ends of blocks for Windows hosts.
pub const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";
/// Ordinals reserved at the start / end of a block for Windows hosts.
pub const WINDOWS_RESERVED_HEAD: u32 = 3;
pub const WINDOWS_RESERVED_TAIL: u32 = 1;
/// Largest block IPAM accepts when decoding (host bits).
const MAX_BLOCK_HOST_BITS: u8 = 16;

/// The attribute entry several ordinals may share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    #[serde(rename = "handle_id", default)]
    pub handle_id: Option<String>,
    #[serde(rename = "secondary", default, deserialize_with = "null_as_default")]
    pub active_owner_attrs: BTreeMap<String, String>,
    #[serde(
        rename = "alternateOwnerAttrs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub alternate_owner_attrs: BTreeMap<String, String>,
    /// Set on the entry of ordinals in cooldown (§5.3).
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The JSON shape, field order as ipam.md §2.1 shows it.
#[derive(Serialize, Deserialize)]
struct BlockWire {
    cidr: String,
    #[serde(default)]
    affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    affinity_claim_time: Option<String>,
    /// Legacy form of `affinity` (a bare host name); read, never written.
    #[serde(
        default,
        rename = "hostAffinity",
        skip_serializing_if = "Option::is_none"
    )]
    host_affinity: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    allocations: Vec<Option<usize>>,
    #[serde(default, deserialize_with = "null_as_default")]
    unallocated: Vec<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    attributes: Vec<AllocationAttribute>,
    #[serde(default, rename = "sequenceNumber")]
    sequence_number: u64,
    #[serde(
        default,
        rename = "sequenceNumberForAllocation",
        deserialize_with = "null_as_default"
    )]
    sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default)]
    deleted: bool,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// A validated block.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    cidr: IpNet,
    affinity: Option<String>,
    affinity_claim_time: Option<String>,
    allocations: Vec<Option<usize>>,
    unallocated: VecDeque<u32>,
    attributes: Vec<AllocationAttribute>,
    sequence_number: u64,
    sequence_for_allocation: BTreeMap<u32, u64>,
    extra: serde_json::Map<String, serde_json::Value>,
}

/// What one ordinal of a block is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrdinalState<'a> {
    Free,
    Allocated(&'a AllocationAttribute),
    /// Released, waiting out the cooldown.
    CoolingDown(&'a AllocationAttribute),
}

/// Why a specific ordinal cannot be assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrdinalTaken {
    OutOfRange,
    Allocated,
    CoolingDown,
}

/// One ordinal to release, with the caller's preconditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrdinalRelease {
    pub ordinal: u32,
    /// If set, the allocation must carry this handle.
    pub handle: Option<String>,
    /// If set, the allocation's sequence number must equal it.
    pub sequence: Option<u64>,
}

/// What a release did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleasedOrdinals {
    /// Released ordinals with the handle each was held by.
    pub released: Vec<(u32, Option<String>)>,
    /// Ordinals that were free or already cooling down.
    pub not_allocated: Vec<u32>,
}

impl ReleasedOrdinals {
    /// Number released per handle.
    pub fn per_handle(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (_, handle) in &self.released {
            if let Some(h) = handle {
                *counts.entry(h.clone()).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// Why a release was refused; nothing was released.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseConflict {
    #[error(
        "bad sequence number for ordinal {ordinal}: the request carries {given}, the allocation has {actual}"
    )]
    BadSequenceNumber {
        ordinal: u32,
        given: u64,
        actual: u64,
    },
    #[error(
        "bad handle for ordinal {ordinal}: the request names {given:?}, the allocation has {actual:?}"
    )]
    BadHandle {
        ordinal: u32,
        given: String,
        actual: Option<String>,
    },
}

/// Decoding failures: not JSON, or structurally invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid block: {}", problems.join("; "))]
pub struct BlockDecodeError {
    pub problems: Vec<String>,
}

/// Nanoseconds since the epoch (saturating), the unit of sequence numbers.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339, seconds precision (claim times, attribute timestamps).
pub fn rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses an RFC 3339 timestamp (any fractional precision).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text)
        .ok()
        .or_else(|| humantime::parse_rfc3339_weak(text).ok())
}

impl Block {
    /// A new, empty block created `now`, affine to `owner`. With
    /// `reserve_ends` the first 3 and last ordinal are pre-allocated to the
    /// Windows reserved handle (§3.6).
    pub fn new(
        cidr: IpNet,
        owner: Option<&AffinityOwner>,
        now: SystemTime,
        reserve_ends: bool,
    ) -> Block {
        let cidr = cidr.trunc();
        let size = block_size(&cidr);
        let mut block = Block {
            cidr,
            affinity: owner.map(AffinityOwner::block_affinity),
            affinity_claim_time: owner.map(|_| rfc3339_seconds(now)),
            allocations: vec![None; size as usize],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number: unix_nanos(now),
            sequence_for_allocation: BTreeMap::new(),
            extra: serde_json::Map::new(),
        };
        if reserve_ends && size > WINDOWS_RESERVED_HEAD + WINDOWS_RESERVED_TAIL {
            let attrs = BTreeMap::from([("note".to_string(), "windows host rsvd".to_string())]);
            let reserved = (0..WINDOWS_RESERVED_HEAD).chain(std::iter::once(size - 1));
            for ordinal in reserved {
                block
                    .assign_ordinal(ordinal, Some(WINDOWS_RESERVED_HANDLE), &attrs)
                    .expect("a new block has every ordinal free");
            }
        }
        block
    }

    /// Decodes a stored block; `Ok(None)` for a soft-deleted row.
    pub fn decode(bytes: &[u8]) -> Result<Option<Block>, BlockDecodeError> {
        let wire: BlockWire = serde_json::from_slice(bytes).map_err(|e| BlockDecodeError {
            problems: vec![format!("not a block value: {e}")],
        })?;
        if wire.deleted {
            return Ok(None);
        }
        Block::from_wire(wire).map(Some)
    }

    fn from_wire(wire: BlockWire) -> Result<Block, BlockDecodeError> {
        let mut problems = Vec::new();
        let cidr = match parse_cidr(&wire.cidr) {
            Some(c) if host_bits(&c) <= MAX_BLOCK_HOST_BITS => Some(c),
            Some(c) => {
                problems.push(format!("cidr {c} is larger than any block"));
                None
            }
            None => {
                problems.push(format!("cidr {:?} is not a masked CIDR", wire.cidr));
                None
            }
        };
        let affinity = wire.affinity.filter(|a| !a.is_empty()).or_else(|| {
            wire.host_affinity
                .filter(|h| !h.is_empty())
                .map(|h| format!("host:{h}"))
        });
        if let Some(a) = &affinity
            && AffinityOwner::parse_block_affinity(a).is_none()
        {
            problems.push(format!(
                "affinity {a:?} is neither host:<name> nor virtual:<name>"
            ));
        }
        let size = cidr.as_ref().map(block_size).unwrap_or(0) as usize;
        if cidr.is_some() && wire.allocations.len() != size {
            problems.push(format!(
                "{} allocation entries for a block of {size} addresses",
                wire.allocations.len()
            ));
        }
        for (ordinal, entry) in wire.allocations.iter().enumerate() {
            if let Some(index) = entry
                && *index >= wire.attributes.len()
            {
                problems.push(format!(
                    "ordinal {ordinal} points at attribute {index} of {}",
                    wire.attributes.len()
                ));
            }
        }
        let mut queued = BTreeSet::new();
        for ordinal in &wire.unallocated {
            let o = *ordinal as usize;
            if o >= wire.allocations.len() {
                problems.push(format!(
                    "unallocated lists ordinal {ordinal}, outside the block"
                ));
            } else if wire.allocations[o].is_some() {
                problems.push(format!(
                    "unallocated lists ordinal {ordinal}, which is allocated"
                ));
            }
            if !queued.insert(*ordinal) {
                problems.push(format!("unallocated lists ordinal {ordinal} twice"));
            }
        }
        let missing: Vec<usize> = wire
            .allocations
            .iter()
            .enumerate()
            .filter(|(o, a)| a.is_none() && !queued.contains(&(*o as u32)))
            .map(|(o, _)| o)
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "free ordinals missing from unallocated: {missing:?}"
            ));
        }
        let mut sequence_for_allocation = BTreeMap::new();
        for (key, seq) in &wire.sequence_number_for_allocation {
            match key.parse::<u32>() {
                Ok(o) if (o as usize) < size => {
                    sequence_for_allocation.insert(o, *seq);
                }
                _ => problems.push(format!(
                    "sequenceNumberForAllocation has key {key:?}, not an ordinal of the block"
                )),
            }
        }
        match (cidr, problems.is_empty()) {
            (Some(cidr), true) => Ok(Block {
                cidr,
                affinity,
                affinity_claim_time: wire.affinity_claim_time,
                allocations: wire.allocations,
                unallocated: wire.unallocated.into(),
                attributes: wire.attributes,
                sequence_number: wire.sequence_number,
                sequence_for_allocation,
                extra: wire.extra,
            }),
            _ => Err(BlockDecodeError { problems }),
        }
    }

    /// The stored form, without changing anything (used to create).
    pub fn encode(&self) -> Vec<u8> {
        let wire = BlockWire {
            cidr: self.cidr.to_string(),
            affinity: self.affinity.clone(),
            affinity_claim_time: self.affinity_claim_time.clone(),
            host_affinity: None,
            allocations: self.allocations.clone(),
            unallocated: self.unallocated.iter().copied().collect(),
            attributes: self.attributes.clone(),
            sequence_number: self.sequence_number,
            sequence_number_for_allocation: self
                .sequence_for_allocation
                .iter()
                .map(|(o, s)| (o.to_string(), *s))
                .collect(),
            deleted: false,
            extra: self.extra.clone(),
        };
        serde_json::to_vec(&wire).expect("a block always serialises")
    }

    /// Prepares the block for an update: prunes unused attributes, bumps
    /// the sequence number, and returns the bytes to write.
    pub fn commit(&mut self) -> Vec<u8> {
        self.prune_attributes();
        self.sequence_number = self.sequence_number.wrapping_add(1);
        self.encode()
    }

    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    /// Number of addresses.
    pub fn size(&self) -> u32 {
        self.allocations.len() as u32
    }

    /// The raw `affinity` field (`host:node-1`).
    pub fn affinity(&self) -> Option<&str> {
        self.affinity.as_deref()
    }

    pub fn owner(&self) -> Option<AffinityOwner> {
        self.affinity
            .as_deref()
            .and_then(AffinityOwner::parse_block_affinity)
    }

    pub fn is_owned_by(&self, owner: &AffinityOwner) -> bool {
        self.affinity.as_deref() == Some(owner.block_affinity().as_str())
    }

    pub fn affinity_claim_time(&self) -> Option<&str> {
        self.affinity_claim_time.as_deref()
    }

    /// Clears `affinity` and `affinity_claim_time` (§6 step 5).
    pub fn clear_affinity(&mut self) {
        self.affinity = None;
        self.affinity_claim_time = None;
    }

    pub fn sequence_number(&self) -> u64 {
        self.sequence_number
    }

    /// The sequence number recorded when `ordinal` was (re)assigned; 0 when
    /// none was recorded (blocks written by old versions).
    pub fn sequence_for(&self, ordinal: u32) -> u64 {
        self.sequence_for_allocation
            .get(&ordinal)
            .copied()
            .unwrap_or(0)
    }

    /// The free queue, head first.
    pub fn unallocated(&self) -> impl Iterator<Item = u32> + '_ {
        self.unallocated.iter().copied()
    }

    pub fn attributes(&self) -> &[AllocationAttribute] {
        &self.attributes
    }

    pub fn ordinal_state(&self, ordinal: u32) -> OrdinalState<'_> {
        match self.allocations.get(ordinal as usize).copied().flatten() {
            None => OrdinalState::Free,
            Some(index) => {
                let attr = &self.attributes[index];
                if attr.released_at.is_some() {
                    OrdinalState::CoolingDown(attr)
                } else {
                    OrdinalState::Allocated(attr)
                }
            }
        }
    }

    /// Every non-free ordinal with its state, in ordinal order.
    pub fn occupied(&self) -> impl Iterator<Item = (u32, OrdinalState<'_>)> + '_ {
        (0..self.size())
            .map(|o| (o, self.ordinal_state(o)))
            .filter(|(_, s)| *s != OrdinalState::Free)
    }

    /// Live allocations per handle (cooling ordinals excluded).
    pub fn allocations_per_handle(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (_, state) in self.occupied() {
            if let OrdinalState::Allocated(attr) = state
                && let Some(h) = &attr.handle_id
            {
                *counts.entry(h.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Allocated ordinals (live or cooling).
    pub fn in_use_count(&self) -> u32 {
        self.size() - self.unallocated.len() as u32
    }

    /// Ordinals in cooldown.
    pub fn cooling_count(&self) -> u32 {
        self.occupied()
            .filter(|(_, s)| matches!(s, OrdinalState::CoolingDown(_)))
            .count() as u32
    }

    fn is_windows_reserved(attr: &AllocationAttribute) -> bool {
        attr.handle_id.as_deref() == Some(WINDOWS_RESERVED_HANDLE)
    }

    /// Live allocations other than Windows-reserved ordinals.
    pub fn live_count(&self) -> u32 {
        self.occupied()
            .filter(
                |(_, s)| matches!(s, OrdinalState::Allocated(a) if !Self::is_windows_reserved(a)),
            )
            .count() as u32
    }

    /// Empty = nothing allocated and nothing cooling down (Windows-reserved
    /// ordinals do not count). Only empty blocks may be deleted.
    pub fn is_empty(&self) -> bool {
        self.occupied().all(|(_, s)| match s {
            OrdinalState::Allocated(a) => Self::is_windows_reserved(a),
            _ => false,
        })
    }

    /// Free ordinals whose address is not reserved.
    pub fn usable_free_count(&self, reservations: &Reservations) -> u32 {
        if reservations.is_empty() {
            return self.unallocated.len() as u32;
        }
        self.unallocated
            .iter()
            .filter(|o| !reservations.contains(address_at(&self.cidr, **o)))
            .count() as u32
    }

    /// Index of an attribute entry equal to (handle, attrs), adding one if
    /// there is none (§2.1 de-duplication).
    fn attribute_index(&mut self, handle: Option<&str>, attrs: &BTreeMap<String, String>) -> usize {
        let found = self.attributes.iter().position(|a| {
            a.handle_id.as_deref() == handle
                && &a.active_owner_attrs == attrs
                && a.alternate_owner_attrs.is_empty()
                && a.released_at.is_none()
        });
        found.unwrap_or_else(|| {
            self.attributes.push(AllocationAttribute {
                handle_id: handle.map(str::to_string),
                active_owner_attrs: attrs.clone(),
                ..AllocationAttribute::default()
            });
            self.attributes.len() - 1
        })
    }

    /// Allocates up to `num` ordinals from the head of the free queue,
    /// skipping (and keeping queued) reserved addresses (§3.6). Returns the
    /// ordinals, in allocation order.
    pub fn assign(
        &mut self,
        num: usize,
        handle: Option<&str>,
        attrs: &BTreeMap<String, String>,
        reservations: &Reservations,
    ) -> Vec<u32> {
        let mut chosen = Vec::new();
        let mut kept = VecDeque::with_capacity(self.unallocated.len());
        while let Some(ordinal) = self.unallocated.pop_front() {
            if chosen.len() < num && !reservations.contains(address_at(&self.cidr, ordinal)) {
                chosen.push(ordinal);
            } else {
                kept.push_back(ordinal);
            }
            if chosen.len() == num {
                kept.extend(self.unallocated.drain(..));
            }
        }
        self.unallocated = kept;
        if !chosen.is_empty() {
            let index = self.attribute_index(handle, attrs);
            for ordinal in &chosen {
                self.allocations[*ordinal as usize] = Some(index);
                self.sequence_for_allocation
                    .insert(*ordinal, self.sequence_number);
            }
        }
        chosen
    }

    /// Allocates one specific ordinal (§3.7); fails if it is not free
    /// (allocated or cooling down).
    pub fn assign_ordinal(
        &mut self,
        ordinal: u32,
        handle: Option<&str>,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), OrdinalTaken> {
        match self.ordinal_state(ordinal) {
            OrdinalState::Free if ordinal < self.size() => {}
            OrdinalState::Free => return Err(OrdinalTaken::OutOfRange),
            OrdinalState::Allocated(_) => return Err(OrdinalTaken::Allocated),
            OrdinalState::CoolingDown(_) => return Err(OrdinalTaken::CoolingDown),
        }
        self.unallocated.retain(|o| *o != ordinal);
        let index = self.attribute_index(handle, attrs);
        self.allocations[ordinal as usize] = Some(index);
        self.sequence_for_allocation
            .insert(ordinal, self.sequence_number);
        Ok(())
    }

    /// Releases ordinals (§5.1, §5.3). Every precondition is checked before
    /// anything changes; duplicates are collapsed; free or cooling ordinals
    /// are reported as not allocated. With a cooldown the released ordinals
    /// point at a fresh `{releasedAt: now}` entry; without, they go straight
    /// to the tail of the free queue.
    pub fn release(
        &mut self,
        requests: &[OrdinalRelease],
        now: SystemTime,
        cooldown: Duration,
    ) -> Result<ReleasedOrdinals, ReleaseConflict> {
        let mut seen = BTreeSet::new();
        let mut outcome = ReleasedOrdinals::default();
        for req in requests {
            if !seen.insert(req.ordinal) {
                continue;
            }
            let attr = match self.ordinal_state(req.ordinal) {
                OrdinalState::Allocated(attr) => attr,
                OrdinalState::Free | OrdinalState::CoolingDown(_) => {
                    outcome.not_allocated.push(req.ordinal);
                    continue;
                }
            };
            if let Some(given) = req.sequence {
                let actual = self.sequence_for(req.ordinal);
                if given != actual {
                    return Err(ReleaseConflict::BadSequenceNumber {
                        ordinal: req.ordinal,
                        given,
                        actual,
                    });
                }
            }
            if let Some(given) = &req.handle
                && attr.handle_id.as_deref() != Some(given.as_str())
            {
                return Err(ReleaseConflict::BadHandle {
                    ordinal: req.ordinal,
                    given: given.clone(),
                    actual: attr.handle_id.clone(),
                });
            }
            outcome.released.push((req.ordinal, attr.handle_id.clone()));
        }
        let ordinals: Vec<u32> = outcome.released.iter().map(|(o, _)| *o).collect();
        self.free_ordinals(&ordinals, now, cooldown);
        Ok(outcome)
    }

    /// Releases every live ordinal held by `handle` (§5.2), optionally only
    /// if its sequence number matches. Returns the ordinals released.
    pub fn release_by_handle(
        &mut self,
        handle: &str,
        sequence: Option<u64>,
        now: SystemTime,
        cooldown: Duration,
    ) -> Vec<u32> {
        let ordinals: Vec<u32> = self
            .occupied()
            .filter(|(o, s)| {
                matches!(s, OrdinalState::Allocated(a) if a.handle_id.as_deref() == Some(handle))
                    && sequence.is_none_or(|seq| self.sequence_for(*o) == seq)
            })
            .map(|(o, _)| o)
            .collect();
        self.free_ordinals(&ordinals, now, cooldown);
        ordinals
    }

    fn free_ordinals(&mut self, ordinals: &[u32], now: SystemTime, cooldown: Duration) {
        if ordinals.is_empty() {
            return;
        }
        if cooldown.is_zero() {
            for ordinal in ordinals {
                self.allocations[*ordinal as usize] = None;
                self.unallocated.push_back(*ordinal);
                self.sequence_for_allocation.remove(ordinal);
            }
        } else {
            self.attributes.push(AllocationAttribute {
                released_at: Some(rfc3339_nanos(now)),
                ..AllocationAttribute::default()
            });
            let index = self.attributes.len() - 1;
            for ordinal in ordinals {
                self.allocations[*ordinal as usize] = Some(index);
                self.sequence_for_allocation
                    .insert(*ordinal, self.sequence_number);
            }
        }
    }

    /// Frees ordinals whose cooldown has passed (§5.3), in ordinal order,
    /// to the tail of the queue. Returns whether anything changed.
    pub fn collect_cooled(&mut self, now: SystemTime, cooldown: Duration) -> bool {
        let expired: Vec<u32> = self
            .occupied()
            .filter_map(|(o, s)| match s {
                OrdinalState::CoolingDown(attr) => {
                    let released = attr.released_at.as_deref().and_then(parse_rfc3339);
                    // An unreadable timestamp cannot hold an address forever.
                    let done = released.is_none_or(|t| {
                        now.duration_since(t)
                            .is_ok_and(|elapsed| elapsed >= cooldown)
                    });
                    done.then_some(o)
                }
                _ => None,
            })
            .collect();
        for ordinal in &expired {
            self.allocations[*ordinal as usize] = None;
            self.unallocated.push_back(*ordinal);
            self.sequence_for_allocation.remove(ordinal);
        }
        !expired.is_empty()
    }

    /// Removes attribute entries no ordinal points at, renumbering the rest.
    pub fn prune_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for index in self.allocations.iter().flatten() {
            used[*index] = true;
        }
        if used.iter().all(|u| *u) {
            return;
        }
        let mut renumber = vec![0usize; self.attributes.len()];
        let mut next = 0;
        for (old, keep) in used.iter().enumerate() {
            if *keep {
                renumber[old] = next;
                next += 1;
            }
        }
        let mut index = 0;
        self.attributes.retain(|_| {
            let keep = used[index];
            index += 1;
            keep
        });
        for entry in self.allocations.iter_mut().flatten() {
            *entry = renumber[*entry];
        }
    }
}

/// Number of addresses in a block network.
fn block_size(cidr: &IpNet) -> u32 {
    1u32 << host_bits(cidr).min(MAX_BLOCK_HOST_BITS)
}

#[cfg(test)]
mod tests;
