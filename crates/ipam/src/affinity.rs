//! Block affinities (ipam.md §2.2, §3.2): who owns a block, the stored
//! affinity record, and the two-phase claim as a pure state machine.
//!
//! The claim protocol writes three objects in order — affinity `pending`,
//! block (with `affinity: host:H`), affinity `confirmed` — and a process may
//! die between any two writes. [`next_claim_step`] looks only at what is
//! stored *now* (the affinity state and the block's owner) and says which
//! single compare-and-swap brings the pair closer to "confirmed affinity on
//! a block affine to us", so a claim interrupted anywhere — by a crash, by a
//! concurrent claimer of the same block, or by a concurrent release — is
//! finished or abandoned by whoever looks next. The driver re-reads both
//! objects after every write; nothing is decided on a stale copy.
//!
//! Hard cases: a block that exists but whose affinity is not confirmed may
//! be in use by a releaser half-way through §6, so recovery first re-marks
//! the affinity `pending` and rewrites the block unchanged (bumping its
//! revision, which makes the releaser's own compare-and-swap fail) before
//! confirming; a block owned by someone else means our affinity is stale and
//! is deleted.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The owner named by an affinity: a host, or a virtual owner such as the
/// load-balancer allocator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AffinityOwner {
    Host(String),
    Virtual(String),
}

/// The virtual owner of LoadBalancer blocks (ipam.md §7).
pub const LOAD_BALANCER_OWNER: &str = "load-balancer";

impl AffinityOwner {
    pub fn host(name: &str) -> AffinityOwner {
        AffinityOwner::Host(name.to_string())
    }

    /// The value of a block's `affinity` field: `host:<name>` / `virtual:<name>`.
    pub fn block_affinity(&self) -> String {
        match self {
            AffinityOwner::Host(h) => format!("host:{h}"),
            AffinityOwner::Virtual(v) => format!("virtual:{v}"),
        }
    }

    /// Parses a block's `affinity` field.
    pub fn parse_block_affinity(text: &str) -> Option<AffinityOwner> {
        if let Some(h) = text.strip_prefix("host:") {
            return (!h.is_empty()).then(|| AffinityOwner::Host(h.to_string()));
        }
        if let Some(v) = text.strip_prefix("virtual:") {
            return (!v.is_empty()).then(|| AffinityOwner::Virtual(v.to_string()));
        }
        None
    }

    /// The key segment before the name: `host` or `virtual`.
    pub fn key_kind(&self) -> &'static str {
        match self {
            AffinityOwner::Host(_) => "host",
            AffinityOwner::Virtual(_) => "virtual",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            AffinityOwner::Host(n) | AffinityOwner::Virtual(n) => n,
        }
    }

    pub fn is_host(&self) -> bool {
        matches!(self, AffinityOwner::Host(_))
    }
}

impl fmt::Display for AffinityOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.block_affinity())
    }
}

/// State of an affinity record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AffinityState {
    #[serde(rename = "pending")]
    Pending,
    #[default]
    #[serde(rename = "confirmed")]
    Confirmed,
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

/// The stored affinity value: `{"state": "confirmed", "deleted": false}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityRecord {
    /// Absent or empty in legacy data, which counts as confirmed.
    #[serde(default, deserialize_with = "state_or_confirmed")]
    pub state: AffinityState,
    #[serde(default)]
    pub deleted: bool,
}

fn state_or_confirmed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AffinityState, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text.as_deref() {
        None | Some("") | Some("confirmed") => Ok(AffinityState::Confirmed),
        Some("pending") => Ok(AffinityState::Pending),
        Some("pendingDeletion") => Ok(AffinityState::PendingDeletion),
        Some(other) => Err(serde::de::Error::custom(format!(
            "unknown affinity state {other:?}"
        ))),
    }
}

impl AffinityRecord {
    pub fn with_state(state: AffinityState) -> AffinityRecord {
        AffinityRecord {
            state,
            deleted: false,
        }
    }

    /// Decodes a stored value; an empty value is a legacy confirmed affinity.
    pub fn decode(bytes: &[u8]) -> Result<AffinityRecord, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(AffinityRecord::with_state(AffinityState::Confirmed));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an affinity record always serialises")
    }
}

/// What a claimer sees of the block it is claiming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOwnership {
    /// No block object (or a soft-deleted one).
    Missing,
    /// The block's `affinity` names the claimer.
    Ours,
    /// The block exists with another owner or with none.
    NotOurs,
}

/// Facts about the claim so far that the stored state cannot show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimProgress {
    /// We created the block object ourselves in this claim.
    pub created_block: bool,
    /// We already rewrote an existing block to bump its revision.
    pub rewrote_block: bool,
}

/// The one write a claimer performs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimStep {
    /// Create the affinity with state `pending`.
    CreatePendingAffinity,
    /// CAS the existing affinity to `pending`.
    MarkAffinityPending,
    /// Create the block affine to us.
    CreateBlock,
    /// Write the existing block unchanged (bumping its sequence number and
    /// revision) so concurrent users holding an older copy must re-read.
    RewriteBlock,
    /// CAS the affinity to `confirmed`.
    ConfirmAffinity,
    /// Claimed: confirmed affinity, block affine to us.
    Done,
    /// The block belongs to someone else: delete our affinity (if any) and
    /// report a claim conflict.
    Abandon,
}

/// Decides the next claim step from what is stored now.
pub fn next_claim_step(
    affinity: Option<AffinityState>,
    block: BlockOwnership,
    progress: ClaimProgress,
) -> ClaimStep {
    use AffinityState::{Confirmed, Pending, PendingDeletion};
    use BlockOwnership::{Missing, NotOurs, Ours};
    match (affinity, block) {
        (_, NotOurs) => ClaimStep::Abandon,
        (None, Missing | Ours) => ClaimStep::CreatePendingAffinity,
        (Some(Pending), Missing) => ClaimStep::CreateBlock,
        (Some(Pending), Ours) if !progress.created_block && !progress.rewrote_block => {
            ClaimStep::RewriteBlock
        }
        (Some(Pending), Ours) => ClaimStep::ConfirmAffinity,
        (Some(Confirmed), Ours) => ClaimStep::Done,
        (Some(Confirmed | PendingDeletion), Missing) | (Some(PendingDeletion), Ours) => {
            ClaimStep::MarkAffinityPending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_values_decode_including_legacy_forms() {
        let r = AffinityRecord::decode(br#"{"state":"pending","deleted":false}"#).expect("decode");
        assert_eq!(r.state, AffinityState::Pending);
        assert_eq!(
            AffinityRecord::decode(b"").expect("empty").state,
            AffinityState::Confirmed
        );
        assert_eq!(
            AffinityRecord::decode(br#"{"state":""}"#)
                .expect("empty state")
                .state,
            AffinityState::Confirmed
        );
        assert_eq!(
            AffinityRecord::decode(br#"{"deleted":false}"#)
                .expect("no state")
                .state,
            AffinityState::Confirmed
        );
        assert!(AffinityRecord::decode(br#"{"state":"bogus"}"#).is_err());
        assert_eq!(
            AffinityRecord::with_state(AffinityState::PendingDeletion).encode(),
            br#"{"state":"pendingDeletion","deleted":false}"#
        );
    }

    #[test]
    fn owners_parse_and_print() {
        let h = AffinityOwner::host("node-1");
        assert_eq!(h.block_affinity(), "host:node-1");
        assert_eq!(AffinityOwner::parse_block_affinity("host:node-1"), Some(h));
        assert_eq!(
            AffinityOwner::parse_block_affinity("virtual:load-balancer"),
            Some(AffinityOwner::Virtual("load-balancer".into()))
        );
        assert_eq!(AffinityOwner::parse_block_affinity("host:"), None);
        assert_eq!(AffinityOwner::parse_block_affinity("node-1"), None);
    }

    /// A model of the stored pair, advanced by applying claim steps, to check
    /// that every reachable state ends in Done or Abandon.
    fn apply(
        step: ClaimStep,
        aff: &mut Option<AffinityState>,
        block: &mut BlockOwnership,
        p: &mut ClaimProgress,
    ) {
        match step {
            ClaimStep::CreatePendingAffinity | ClaimStep::MarkAffinityPending => {
                *aff = Some(AffinityState::Pending)
            }
            ClaimStep::CreateBlock => {
                *block = BlockOwnership::Ours;
                p.created_block = true;
            }
            ClaimStep::RewriteBlock => p.rewrote_block = true,
            ClaimStep::ConfirmAffinity => *aff = Some(AffinityState::Confirmed),
            ClaimStep::Done | ClaimStep::Abandon => {}
        }
    }

    #[test]
    fn every_crash_state_converges() {
        let affs = [
            None,
            Some(AffinityState::Pending),
            Some(AffinityState::Confirmed),
            Some(AffinityState::PendingDeletion),
        ];
        let blocks = [
            BlockOwnership::Missing,
            BlockOwnership::Ours,
            BlockOwnership::NotOurs,
        ];
        for a0 in affs {
            for b0 in blocks {
                let (mut a, mut b, mut p) = (a0, b0, ClaimProgress::default());
                let mut steps = Vec::new();
                loop {
                    let step = next_claim_step(a, b, p);
                    steps.push(step);
                    assert!(steps.len() < 8, "{a0:?}/{b0:?} loops: {steps:?}");
                    if matches!(step, ClaimStep::Done | ClaimStep::Abandon) {
                        break;
                    }
                    apply(step, &mut a, &mut b, &mut p);
                }
                let last = *steps.last().expect("at least one step");
                if b0 == BlockOwnership::NotOurs {
                    assert_eq!(last, ClaimStep::Abandon);
                } else {
                    assert_eq!(last, ClaimStep::Done, "{a0:?}/{b0:?}: {steps:?}");
                }
                // A block that existed before we looked, under an affinity
                // that was not confirmed, is always rewritten first.
                if b0 == BlockOwnership::Ours && a0 != Some(AffinityState::Confirmed) {
                    assert!(steps.contains(&ClaimStep::RewriteBlock), "{steps:?}");
                }
            }
        }
    }

    #[test]
    fn fresh_claim_is_three_writes() {
        let mut a = None;
        let mut b = BlockOwnership::Missing;
        let mut p = ClaimProgress::default();
        let mut steps = Vec::new();
        loop {
            let s = next_claim_step(a, b, p);
            steps.push(s);
            if s == ClaimStep::Done {
                break;
            }
            apply(s, &mut a, &mut b, &mut p);
        }
        assert_eq!(
            steps,
            vec![
                ClaimStep::CreatePendingAffinity,
                ClaimStep::CreateBlock,
                ClaimStep::ConfirmAffinity,
                ClaimStep::Done
            ]
        );
    }
}
