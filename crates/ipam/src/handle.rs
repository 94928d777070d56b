//! Handles (ipam.md §2.3, §7): the stored per-owner record of how many
//! addresses the owner holds in each block, and the handle-ID rules.
//!
//! The record is a hint for release-by-handle (which blocks to visit), not
//! the source of truth: the block's attributes say who holds an ordinal. So
//! the handle is incremented *before* a block write and decremented *after*
//! a release write; a crash in between leaves the handle over-counting (a
//! leak `ipam check` reports), never an address without an owner.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The stored value: `{"block": {"10.0.0.0/26": 1}, "deleted": false}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleRecord {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub block: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, u64>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

impl HandleRecord {
    /// Decodes a stored value; a soft-deleted record reads as empty.
    pub fn decode(bytes: &[u8]) -> Result<HandleRecord, String> {
        let mut record: HandleRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.deleted {
            record = HandleRecord::default();
        }
        Ok(record)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a handle record always serialises")
    }

    /// Adds `count` addresses in `block`.
    pub fn increment(&mut self, block: &IpNet, count: u64) {
        *self.block.entry(block.to_string()).or_insert(0) += count;
    }

    /// Removes `count` addresses in `block` (clamping at zero; an entry
    /// that reaches zero is removed). Returns whether the count was short,
    /// i.e. the record claimed fewer addresses than were released.
    pub fn decrement(&mut self, block: &IpNet, count: u64) -> bool {
        let key = block.to_string();
        let Some(current) = self.block.get_mut(&key) else {
            return count > 0;
        };
        let short = *current < count;
        *current = current.saturating_sub(count);
        if *current == 0 {
            self.block.remove(&key);
        }
        short
    }

    /// A handle holding nothing is deleted rather than written.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The blocks this handle names, parsed (unparseable keys are returned
    /// separately so callers can report them).
    pub fn blocks(&self) -> (Vec<IpNet>, Vec<String>) {
        let mut nets = Vec::new();
        let mut bad = Vec::new();
        for key in self.block.keys() {
            match key.parse::<IpNet>() {
                Ok(n) => nets.push(n.trunc()),
                Err(_) => bad.push(key.clone()),
            }
        }
        (nets, bad)
    }

    /// Total addresses recorded.
    pub fn total(&self) -> u64 {
        self.block.values().sum()
    }
}

/// Handle IDs containing `\r` are truncated at the first `\r` (§2.3).
pub fn sanitize_handle(id: &str) -> &str {
    id.split('\r').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn counts_per_block_and_empties() {
        let mut h = HandleRecord::default();
        h.increment(&net("10.0.0.0/26"), 2);
        h.increment(&net("fd00::/122"), 1);
        assert_eq!(
            h.encode(),
            br#"{"block":{"10.0.0.0/26":2,"fd00::/122":1},"deleted":false}"#
        );
        assert!(!h.decrement(&net("10.0.0.0/26"), 1));
        assert!(h.decrement(&net("10.0.0.0/26"), 5), "short");
        assert!(h.decrement(&net("10.1.0.0/26"), 1), "unknown block");
        assert!(!h.decrement(&net("fd00::/122"), 1));
        assert!(h.is_empty());
    }

    #[test]
    fn decoding_tolerates_nulls_and_soft_deletes() {
        let h = HandleRecord::decode(br#"{"block":null,"deleted":false}"#).expect("null map");
        assert!(h.is_empty());
        let h = HandleRecord::decode(br#"{"block":{"10.0.0.0/26":1},"deleted":true}"#)
            .expect("deleted");
        assert!(h.is_empty());
        let h = HandleRecord::decode(br#"{"block":{"10.0.0.0/26":3,"x":1}}"#).expect("decode");
        assert_eq!(h.total(), 4);
        let (nets, bad) = h.blocks();
        assert_eq!(nets, vec![net("10.0.0.0/26")]);
        assert_eq!(bad, vec!["x".to_string()]);
    }

    #[test]
    fn carriage_returns_are_cut() {
        assert_eq!(
            sanitize_handle("k8s-pod-network.abc\r\nxyz"),
            "k8s-pod-network.abc"
        );
        assert_eq!(sanitize_handle("plain"), "plain");
        assert_eq!(sanitize_handle("\rx"), "");
    }
}
