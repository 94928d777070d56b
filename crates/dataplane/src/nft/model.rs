//! The desired contents of tortie's one nftables table: base chains,
//! regular chains with ordered rules, named sets (plain, interval,
//! concatenated), maps and verdict maps with their elements.
//!
//! Keyed as the kernel keys them (STYLE.md §2): chains and sets by name,
//! elements by key within their set, rules by position within their
//! chain. Handlers change this [`Ruleset`] only; it remembers which
//! chains, sets and elements changed since the reconciler last took the
//! changes, so an apply costs what changed, not what exists.
//!
//! Hard cases: putting an identical chain or element is not a change;
//! changing a set's key or kind drops its elements (they would not fit);
//! element keys are in register layout — every field of a concatenated
//! key padded to 4 bytes — and their length is checked against the set
//! here, so a malformed element is refused when it is put, not when the
//! kernel sees it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::expr::{Data, Expr};
use super::msg::Family;

/// Tortie's table: its family and name. Nothing outside it is touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableId {
    pub family: Family,
    pub name: String,
}

impl TableId {
    pub fn new(family: Family, name: impl Into<String>) -> TableId {
        TableId {
            family,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for TableId {
    /// As `nft` names it: `inet tortie`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family.name(), self.name)
    }
}

/// A netfilter hook (`enum nf_inet_hooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }

    pub fn from_number(n: u32) -> Option<Hook> {
        Some(match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }

    pub fn from_name(s: &str) -> Option<ChainType> {
        Some(match s {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => return None,
        })
    }
}

/// A base chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

/// What makes a chain a base chain: attached to a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseChain {
    pub hook: Hook,
    pub chain_type: ChainType,
    pub priority: i32,
    pub policy: Policy,
}

/// One rule: its expressions and an optional comment (stored in the
/// rule's userdata the way `nft` stores comments, so `nft list` shows it).
/// Two rules are the same rule when both are equal. The expressions are
/// shared (`Arc`): the desired state, the believed-installed state and the
/// message that installs a rule hold one copy, and comparing a rule with
/// its own copy is a pointer comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub exprs: Arc<[Expr]>,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(exprs: Vec<Expr>) -> Rule {
        Rule {
            exprs: exprs.into(),
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: impl Into<String>) -> Rule {
        self.comment = Some(comment.into());
        self
    }

    /// The rule's userdata: the comment as one `nft`-style comment TLV
    /// (type 0, length, NUL-terminated text), as libnftnl lays it out.
    pub(crate) fn userdata(&self) -> Option<Vec<u8>> {
        let text = self.comment.as_ref()?.as_bytes();
        if text.len() > COMMENT_MAX {
            return None; // refused before it gets here (plan::check_rule)
        }
        let mut v = Vec::with_capacity(text.len() + 3);
        v.push(0);
        v.push((text.len() + 1) as u8);
        v.extend_from_slice(text);
        v.push(0);
        Some(v)
    }

    /// The comment in a rule's userdata, if it holds exactly one comment.
    pub(crate) fn comment_of(userdata: &[u8]) -> Option<String> {
        match userdata {
            [0, len, rest @ ..] if usize::from(*len) == rest.len() && rest.last() == Some(&0) => {
                String::from_utf8(rest[..rest.len() - 1].to_vec()).ok()
            }
            _ => None,
        }
    }

    /// Chains this rule jumps or goes to.
    pub fn chain_refs(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().filter_map(|e| match e {
            Expr::Immediate {
                data: Data::Verdict(v),
                ..
            } => v.target(),
            _ => None,
        })
    }

    /// Sets and maps this rule looks up.
    pub fn set_refs(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().filter_map(|e| match e {
            Expr::Lookup { set, .. } => Some(set.as_str()),
            _ => None,
        })
    }
}

/// Longest comment kept (`nft` allows 128 bytes with the NUL).
pub const COMMENT_MAX: usize = 127;

/// A chain: a base chain if `base` is set, else a regular chain reached
/// by jumps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn regular(rules: Vec<Rule>) -> Chain {
        Chain { base: None, rules }
    }

    pub fn base(base: BaseChain, rules: Vec<Rule>) -> Chain {
        Chain {
            base: Some(base),
            rules,
        }
    }
}

/// One field of a set key or map value: `nft`'s datatype number (for
/// `nft list` to print it) and its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyField {
    pub datatype: u32,
    pub len: u32,
}

impl KeyField {
    /// `mark`: 32 bits; tortie's selector ids use it (shown in hex).
    pub const MARK: KeyField = KeyField {
        datatype: 19,
        len: 4,
    };
    pub const IPV4_ADDR: KeyField = KeyField {
        datatype: 7,
        len: 4,
    };
    pub const IPV6_ADDR: KeyField = KeyField {
        datatype: 8,
        len: 16,
    };
    pub const IFNAME: KeyField = KeyField {
        datatype: 41,
        len: 16,
    };
    pub const INET_PROTO: KeyField = KeyField {
        datatype: 12,
        len: 1,
    };
    pub const INET_SERVICE: KeyField = KeyField {
        datatype: 13,
        len: 2,
    };

    /// Length in registers' bytes (rounded up to 4).
    pub fn padded_len(self) -> u32 {
        self.len.div_ceil(4) * 4
    }
}

/// What a map maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapData {
    /// A verdict map: `jump`/`goto` a chain, `accept`, `drop`, ...
    Verdict,
    Value(KeyField),
}

/// A named set's shape. A key of more than one field is concatenated; an
/// interval set holds ranges (one field: the kernel's rbtree, more: its
/// pipapo backend).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetSpec {
    pub key: Vec<KeyField>,
    pub interval: bool,
    pub map: Option<MapData>,
}

impl SetSpec {
    pub fn plain(key: Vec<KeyField>) -> SetSpec {
        SetSpec {
            key,
            interval: false,
            map: None,
        }
    }

    pub fn interval(key: Vec<KeyField>) -> SetSpec {
        SetSpec {
            key,
            interval: true,
            map: None,
        }
    }

    pub fn verdict_map(key: Vec<KeyField>) -> SetSpec {
        SetSpec {
            key,
            interval: false,
            map: Some(MapData::Verdict),
        }
    }

    /// Key length in bytes as the kernel sees it (fields padded to 4).
    pub fn key_len(&self) -> u32 {
        if let [one] = self.key.as_slice() {
            return one.len;
        }
        self.key.iter().map(|f| f.padded_len()).sum()
    }

    /// `NFTA_SET_KEY_TYPE`: `nft`'s concatenated type, 6 bits per field.
    pub fn key_type(&self) -> u32 {
        self.key.iter().fold(0, |acc, f| (acc << 6) | f.datatype)
    }
}

/// A set element's key: a value, or for interval sets an inclusive range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub start: Vec<u8>,
    /// Inclusive end; `Some` exactly for interval sets.
    pub end: Option<Vec<u8>>,
}

impl Key {
    pub fn exact(value: Vec<u8>) -> Key {
        Key {
            start: value,
            end: None,
        }
    }

    pub fn range(start: Vec<u8>, end: Vec<u8>) -> Key {
        Key {
            start,
            end: Some(end),
        }
    }
}

/// Builds a concatenated key from its fields, each padded to 4 bytes.
pub fn concat_key(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    out
}

/// An interface name as a key or cmp operand: NUL-padded to IFNAMSIZ.
pub fn ifname_bytes(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

/// A set: its shape and its elements (with map values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub spec: SetSpec,
    pub elements: BTreeMap<Key, Option<Data>>,
}

/// Why a change to the desired state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("set {set} does not exist")]
    NoSuchSet { set: String },
    #[error("element of set {set}: {reason}")]
    BadElement { set: String, reason: String },
}

/// Names of what changed since the changes were last taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
    pub elements: BTreeMap<String, BTreeSet<Key>>,
}

impl Changes {
    pub(crate) fn merge(&mut self, other: Changes) {
        self.chains.extend(other.chains);
        self.sets.extend(other.sets);
        for (set, keys) in other.elements {
            self.elements.entry(set).or_default().extend(keys);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.sets.is_empty() && self.elements.is_empty()
    }
}

/// The desired table contents.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    chains: BTreeMap<String, Chain>,
    sets: BTreeMap<String, Set>,
    changes: Changes,
}

impl Ruleset {
    pub fn new() -> Ruleset {
        Ruleset::default()
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.get(name)
    }

    pub fn chains(&self) -> impl Iterator<Item = (&String, &Chain)> {
        self.chains.iter()
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.get(name)
    }

    pub fn sets(&self) -> impl Iterator<Item = (&String, &Set)> {
        self.sets.iter()
    }

    /// Creates or replaces a chain.
    pub fn put_chain(&mut self, name: impl Into<String>, chain: Chain) {
        let name = name.into();
        if self.chains.get(&name) == Some(&chain) {
            return;
        }
        self.chains.insert(name.clone(), chain);
        self.changes.chains.insert(name);
    }

    pub fn remove_chain(&mut self, name: &str) -> Option<Chain> {
        let old = self.chains.remove(name)?;
        self.changes.chains.insert(name.to_string());
        Some(old)
    }

    /// Creates a set, or changes its shape (which empties it).
    pub fn put_set(&mut self, name: impl Into<String>, spec: SetSpec) {
        let name = name.into();
        if self.sets.get(&name).is_some_and(|s| s.spec == spec) {
            return;
        }
        self.sets.insert(
            name.clone(),
            Set {
                spec,
                elements: BTreeMap::new(),
            },
        );
        self.changes.elements.remove(&name);
        self.changes.sets.insert(name);
    }

    pub fn remove_set(&mut self, name: &str) -> Option<Set> {
        let old = self.sets.remove(name)?;
        self.changes.elements.remove(name);
        self.changes.sets.insert(name.to_string());
        Some(old)
    }

    /// Adds an element (or changes its map value).
    pub fn put_element(
        &mut self,
        set: &str,
        key: Key,
        data: Option<Data>,
    ) -> Result<(), ModelError> {
        let s = self
            .sets
            .get_mut(set)
            .ok_or_else(|| ModelError::NoSuchSet {
                set: set.to_string(),
            })?;
        check_element(&s.spec, &key, data.as_ref()).map_err(|reason| ModelError::BadElement {
            set: set.to_string(),
            reason,
        })?;
        if s.elements.get(&key) == Some(&data) {
            return Ok(());
        }
        self.changes
            .elements
            .entry(set.to_string())
            .or_default()
            .insert(key.clone());
        s.elements.insert(key, data);
        Ok(())
    }

    /// Removes an element; true if it was there.
    pub fn remove_element(&mut self, set: &str, key: &Key) -> bool {
        let Some(s) = self.sets.get_mut(set) else {
            return false;
        };
        if s.elements.remove(key).is_none() {
            return false;
        }
        self.changes
            .elements
            .entry(set.to_string())
            .or_default()
            .insert(key.clone());
        true
    }

    pub(crate) fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub(crate) fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }
}

/// Why an element does not fit its set, if it does not.
pub(crate) fn check_element(spec: &SetSpec, key: &Key, data: Option<&Data>) -> Result<(), String> {
    let len = spec.key_len() as usize;
    if key.start.len() != len {
        return Err(format!(
            "key is {} bytes, the set's key is {len}",
            key.start.len()
        ));
    }
    match (&key.end, spec.interval) {
        (Some(end), true) if end.len() != len => {
            return Err(format!(
                "range end is {} bytes, the set's key is {len}",
                end.len()
            ));
        }
        (Some(end), true) if *end < key.start => {
            return Err("range ends before it starts".into());
        }
        (None, true) => return Err("an interval set needs ranges".into()),
        (Some(_), false) => return Err("a range in a set without intervals".into()),
        _ => {}
    }
    match (spec.map, data) {
        (None, None) | (Some(MapData::Verdict), Some(Data::Verdict(_))) => Ok(()),
        (Some(MapData::Value(f)), Some(Data::Value(v))) if v.len() == f.len as usize => Ok(()),
        (None, Some(_)) => Err("a value for a set that is not a map".into()),
        (Some(_), _) => Err("a map element needs a value of the map's type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::expr::Verdict;

    #[test]
    fn identical_puts_are_not_changes() {
        let mut r = Ruleset::new();
        r.put_chain("a", Chain::regular(vec![]));
        r.put_set("s", SetSpec::plain(vec![KeyField::IPV4_ADDR]));
        r.put_element("s", Key::exact(vec![10, 0, 0, 1]), None)
            .expect("fits");
        let c = r.take_changes();
        assert_eq!(c.chains.len(), 1);
        assert_eq!(c.sets.len(), 1);
        assert_eq!(c.elements["s"].len(), 1);
        r.put_chain("a", Chain::regular(vec![]));
        r.put_set("s", SetSpec::plain(vec![KeyField::IPV4_ADDR]));
        r.put_element("s", Key::exact(vec![10, 0, 0, 1]), None)
            .expect("fits");
        assert!(r.take_changes().is_empty());
    }

    #[test]
    fn elements_are_checked_against_their_set() {
        let mut r = Ruleset::new();
        r.put_set(
            "sel",
            SetSpec::interval(vec![KeyField::MARK, KeyField::IPV4_ADDR]),
        );
        assert_eq!(r.set("sel").map(|s| s.spec.key_len()), Some(8));
        let k = concat_key(&[&1u32.to_be_bytes(), &[10, 0, 0, 1]]);
        assert!(r.put_element("sel", Key::exact(k.clone()), None).is_err());
        assert!(
            r.put_element("sel", Key::range(k.clone(), k.clone()), None)
                .is_ok()
        );
        assert!(
            r.put_element("sel", Key::range(vec![1], vec![1]), None)
                .is_err()
        );
        r.put_set("vm", SetSpec::verdict_map(vec![KeyField::IFNAME]));
        let ifk = Key::exact(ifname_bytes("cali1"));
        assert!(r.put_element("vm", ifk.clone(), None).is_err());
        assert!(
            r.put_element("vm", ifk, Some(Data::Verdict(Verdict::Goto("x".into()))))
                .is_ok()
        );
        assert_eq!(
            r.put_element("nope", Key::exact(vec![]), None),
            Err(ModelError::NoSuchSet { set: "nope".into() })
        );
    }

    #[test]
    fn concatenated_key_type_packs_six_bits_per_field() {
        let s = SetSpec::plain(vec![KeyField::IPV4_ADDR, KeyField::INET_SERVICE]);
        // nft's own encoding of `ipv4_addr . inet_service` (read from a dump).
        assert_eq!(s.key_type(), 461);
        assert_eq!(s.key_len(), 8);
        assert_eq!(
            concat_key(&[&[10, 0, 0, 1], &[0, 80]]),
            vec![10, 0, 0, 1, 0, 80, 0, 0]
        );
    }
}
