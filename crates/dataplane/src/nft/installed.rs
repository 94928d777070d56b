//! What tortie believes its table holds in the kernel, and reading it
//! back (resync): the table, its chains with their rules and handles, its
//! sets with their elements.
//!
//! A read is a handful of dumps (table, chains, sets, each set's elements,
//! rules — every one filtered to tortie's table) bracketed by two reads of
//! the ruleset generation id; if the generation moved, or a dump came back
//! marked interrupted, someone changed the ruleset meanwhile and the read
//! is repeated, so the result is one consistent snapshot.
//!
//! Hard cases: objects that this model cannot express (a chain on the
//! ingress hook, a set with timeouts, a rule whose userdata is not a
//! comment) are kept as "unmodelled" so the next apply replaces or deletes
//! them rather than mistaking them for ours; a single-field interval set
//! comes back from the kernel's rbtree as separate start and end elements
//! (the end one past the range, flagged `NFT_SET_ELEM_INTERVAL_END`, in no
//! particular order, possibly with `nft`'s leading end marker) and is
//! paired back into ranges; a rule added since the last read has no known
//! handle until the chain is read again.

use std::collections::BTreeMap;

use tracing::debug;

use super::expr::Data;
use super::model::{
    BaseChain, ChainType, Hook, Key, KeyField, MapData, Policy, Rule, SetSpec, TableId,
};
use super::msg::{self, Body, NftMessage, SetElem};
use super::reconcile::Kernel;
use super::socket::TransportError;
use super::sys::{
    NFT_DATA_VERDICT, NFT_SET_CONCAT, NFT_SET_ELEM_INTERVAL_END, NFT_SET_INTERVAL, NFT_SET_MAP,
};

/// A rule as installed: its handle, if known, and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstalledRule {
    pub handle: Option<u64>,
    pub rule: Rule,
}

/// A chain as installed. `base` is meaningful only when `modelled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstalledChain {
    pub base: Option<BaseChain>,
    pub modelled: bool,
    pub rules: Vec<InstalledRule>,
}

/// A set as installed; `spec` is `None` for a set this model cannot
/// express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstalledSet {
    pub spec: Option<SetSpec>,
    pub elements: BTreeMap<Key, Option<Data>>,
}

/// The believed-installed table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Installed {
    pub table: bool,
    pub chains: BTreeMap<String, InstalledChain>,
    pub sets: BTreeMap<String, InstalledSet>,
}

const READ_ATTEMPTS: usize = 8;

impl Installed {
    /// Reads the table from the kernel as one consistent snapshot, with
    /// the ruleset generation it is a snapshot of.
    pub(crate) fn read<K: Kernel>(
        kernel: &mut K,
        table: &TableId,
    ) -> Result<(Installed, u32), TransportError> {
        let mut last = TransportError::DumpInterrupted;
        for attempt in 0..READ_ATTEMPTS {
            let before = kernel.generation()?;
            match read_once(kernel, table) {
                Ok(installed) => {
                    if kernel.generation()? == before {
                        return Ok((installed, before));
                    }
                    debug!(attempt, "ruleset changed during the read; reading again");
                }
                Err(TransportError::DumpInterrupted) => {
                    debug!(attempt, "dump interrupted; reading again");
                }
                Err(e) => return Err(e),
            }
            last = TransportError::DumpInterrupted;
        }
        Err(last)
    }

    /// Reads one chain's rules (with their handles) from the kernel.
    pub(crate) fn read_rules<K: Kernel>(
        kernel: &mut K,
        table: &TableId,
        chain: Option<&str>,
    ) -> Result<Vec<(String, InstalledRule)>, TransportError> {
        let req = msg::Rule {
            table: table.name.clone(),
            chain: chain.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let replies = kernel.request(table.family, Body::GetRule(req), true)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m.body {
                Body::NewRule(r) if r.table == table.name => Some(r),
                _ => None,
            })
            .map(|r| {
                let rule = Rule {
                    comment: r.userdata.as_deref().and_then(Rule::comment_of),
                    exprs: r.exprs,
                };
                (
                    r.chain,
                    InstalledRule {
                        handle: r.handle,
                        rule,
                    },
                )
            })
            .collect())
    }
}

fn is_enoent(e: &TransportError) -> bool {
    e.errno() == Some(libc::ENOENT)
}

fn read_once<K: Kernel>(kernel: &mut K, table: &TableId) -> Result<Installed, TransportError> {
    let fam = table.family;
    let t = msg::Table {
        name: table.name.clone(),
        ..Default::default()
    };
    match kernel.request(fam, Body::GetTable(t), false) {
        Ok(_) => {}
        Err(e) if is_enoent(&e) => return Ok(Installed::default()),
        Err(e) => return Err(e),
    }
    let mut out = Installed {
        table: true,
        ..Default::default()
    };
    let chains = kernel.request(
        fam,
        Body::GetChain(msg::Chain {
            table: table.name.clone(),
            ..Default::default()
        }),
        true,
    )?;
    for m in chains {
        if let Body::NewChain(c) = m.body
            && c.table == table.name
        {
            let (base, modelled) = base_of(&c);
            out.chains.insert(
                c.name,
                InstalledChain {
                    base,
                    modelled,
                    rules: Vec::new(),
                },
            );
        }
    }
    let sets = kernel.request(
        fam,
        Body::GetSet(msg::Set {
            table: table.name.clone(),
            ..Default::default()
        }),
        true,
    )?;
    for m in sets {
        let Body::NewSet(s) = m.body else { continue };
        if s.table != table.name {
            continue;
        }
        let spec = spec_of(&s);
        let elements = match &spec {
            Some(spec) => read_elements(kernel, table, &s.name, spec)?,
            None => BTreeMap::new(),
        };
        out.sets.insert(s.name, InstalledSet { spec, elements });
    }
    for (chain, rule) in Installed::read_rules(kernel, table, None)? {
        if let Some(c) = out.chains.get_mut(&chain) {
            c.rules.push(rule);
        }
    }
    Ok(out)
}

fn read_elements<K: Kernel>(
    kernel: &mut K,
    table: &TableId,
    set: &str,
    spec: &SetSpec,
) -> Result<BTreeMap<Key, Option<Data>>, TransportError> {
    let req = msg::SetElems {
        table: table.name.clone(),
        set: set.to_string(),
        elements: Vec::new(),
    };
    let replies = kernel.request(table.family, Body::GetSetElem(req), true)?;
    let elems = replies.into_iter().flat_map(|m: NftMessage| match m.body {
        Body::NewSetElem(e) => e.elements,
        _ => Vec::new(),
    });
    Ok(elements_of(spec, elems))
}

/// Turns dumped elements into keys of the model.
pub(crate) fn elements_of(
    spec: &SetSpec,
    elems: impl Iterator<Item = SetElem>,
) -> BTreeMap<Key, Option<Data>> {
    if spec.interval && spec.key.len() == 1 {
        return rbtree_ranges(elems);
    }
    elems
        .filter_map(|e| {
            let start = e.key?;
            let end = if spec.interval {
                Some(e.key_end.unwrap_or_else(|| start.clone()))
            } else {
                None
            };
            Some((Key { start, end }, e.data))
        })
        .collect()
}

/// Pairs rbtree start and end elements into inclusive ranges.
fn rbtree_ranges(elems: impl Iterator<Item = SetElem>) -> BTreeMap<Key, Option<Data>> {
    // Sort by key, ends before starts on equal keys: the end of [a, b]
    // and the start of [b+1, c] share the key b+1.
    let mut marks: Vec<(Vec<u8>, bool, Option<Data>)> = elems
        .filter_map(|e| {
            let end = e.flags.unwrap_or(0) & NFT_SET_ELEM_INTERVAL_END != 0;
            Some((e.key?, !end, e.data))
        })
        .collect();
    marks.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out = BTreeMap::new();
    let mut open: Option<(Vec<u8>, Option<Data>)> = None;
    for (key, is_start, data) in marks {
        if is_start {
            if let Some((s, d)) = open.take() {
                // A start without an end: the range runs to the next start.
                let end = decrement(&key).unwrap_or_else(|| s.clone());
                out.insert(Key::range(s, end), d);
            }
            open = Some((key, data));
        } else if let Some((s, d)) = open.take() {
            let end = decrement(&key).unwrap_or_else(|| s.clone());
            out.insert(Key::range(s, end), d);
        }
        // An end with nothing open is nft's leading marker: skipped.
    }
    if let Some((s, d)) = open {
        let end = vec![0xff; s.len()];
        out.insert(Key::range(s, end), d);
    }
    out
}

/// Big-endian `v - 1`, or None for zero.
pub(crate) fn decrement(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = v.to_vec();
    for b in out.iter_mut().rev() {
        if *b > 0 {
            *b -= 1;
            return Some(out);
        }
        *b = 0xff;
    }
    None
}

/// Big-endian `v + 1`, or None on overflow (all ones).
pub(crate) fn increment(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = v.to_vec();
    for b in out.iter_mut().rev() {
        if *b < 0xff {
            *b += 1;
            return Some(out);
        }
        *b = 0;
    }
    None
}

fn base_of(c: &msg::Chain) -> (Option<BaseChain>, bool) {
    let Some(hook) = &c.hook else {
        return (None, true);
    };
    let base = (|| {
        if hook.device.is_some() {
            return None;
        }
        Some(BaseChain {
            hook: Hook::from_number(hook.hooknum)?,
            chain_type: ChainType::from_name(c.chain_type.as_deref()?)?,
            priority: hook.priority,
            policy: match c.policy? {
                0 => Policy::Drop,
                1 => Policy::Accept,
                _ => return None,
            },
        })
    })();
    let modelled = base.is_some();
    (base, modelled)
}

/// The model's view of a dumped set, if it can express it.
pub(crate) fn spec_of(s: &msg::Set) -> Option<SetSpec> {
    let flags = s.flags.unwrap_or(0);
    if flags & !(NFT_SET_INTERVAL | NFT_SET_MAP | NFT_SET_CONCAT) != 0 {
        return None;
    }
    let key_type = s.key_type.unwrap_or(0);
    let key_len = s.key_len?;
    let key = if s.concat.len() > 1 {
        let n = s.concat.len();
        s.concat
            .iter()
            .enumerate()
            .map(|(i, len)| KeyField {
                datatype: (key_type >> (6 * (n - 1 - i))) & 0x3f,
                len: *len,
            })
            .collect()
    } else {
        vec![KeyField {
            datatype: key_type,
            len: key_len,
        }]
    };
    let map = if flags & NFT_SET_MAP != 0 {
        Some(match s.data_type? {
            NFT_DATA_VERDICT => MapData::Verdict,
            t => MapData::Value(KeyField {
                datatype: t,
                len: s.data_len?,
            }),
        })
    } else {
        None
    };
    let spec = SetSpec {
        key,
        interval: flags & NFT_SET_INTERVAL != 0,
        map,
    };
    (spec.key_len() == key_len).then_some(spec)
}

/// The set message that creates `spec` (the inverse of [`spec_of`]);
/// `id` must be unique within the transaction.
pub(crate) fn set_message(table: &str, name: &str, spec: &SetSpec, id: u32) -> msg::Set {
    let mut flags = 0;
    if spec.interval {
        flags |= NFT_SET_INTERVAL;
    }
    // The kernel refuses field lengths of a concatenation (which every
    // multi-field key carries) without this flag, interval or not.
    if spec.key.len() > 1 {
        flags |= NFT_SET_CONCAT;
    }
    let (data_type, data_len) = match spec.map {
        None => (None, None),
        Some(MapData::Verdict) => {
            flags |= NFT_SET_MAP;
            (Some(NFT_DATA_VERDICT), None)
        }
        Some(MapData::Value(f)) => {
            flags |= NFT_SET_MAP;
            (Some(f.datatype), Some(f.len))
        }
    };
    msg::Set {
        table: table.to_string(),
        name: name.to_string(),
        flags: Some(flags),
        key_type: Some(spec.key_type()),
        key_len: Some(spec.key_len()),
        data_type,
        data_len,
        concat: if spec.key.len() > 1 {
            spec.key.iter().map(|f| f.len).collect()
        } else {
            Vec::new()
        },
        id: Some(id),
        userdata: set_userdata(spec),
        ..Default::default()
    }
}

/// libnftnl's set userdata telling `nft` the byte order of a one-field
/// key and of map values (TLVs: type 0 key byte order, 1 data byte order;
/// value 1 host, 2 big-endian), so `nft list` prints interface names and
/// marks right. The kernel only stores it.
fn set_userdata(spec: &SetSpec) -> Option<Vec<u8>> {
    let order = |f: &KeyField| -> u32 {
        if *f == KeyField::MARK || *f == KeyField::IFNAME {
            1
        } else {
            2
        }
    };
    let mut v = Vec::new();
    if let [key] = spec.key.as_slice() {
        v.extend_from_slice(&[0, 4]);
        v.extend_from_slice(&order(key).to_ne_bytes());
    }
    if let Some(MapData::Value(f)) = &spec.map {
        v.extend_from_slice(&[1, 4]);
        v.extend_from_slice(&order(f).to_ne_bytes());
    }
    (!v.is_empty()).then_some(v)
}

/// The wire elements for one model element of a set of this shape:
/// rbtree ranges become a start and a past-the-end element.
pub(crate) fn wire_elements(spec: &SetSpec, key: &Key, data: Option<&Data>) -> Vec<SetElem> {
    match (&key.end, spec.key.len()) {
        (Some(end), 1) => {
            let mut v = vec![SetElem {
                key: Some(key.start.clone()),
                data: data.cloned(),
                ..Default::default()
            }];
            if let Some(past) = increment(end) {
                v.push(SetElem {
                    key: Some(past),
                    flags: Some(NFT_SET_ELEM_INTERVAL_END),
                    ..Default::default()
                });
            }
            v
        }
        _ => vec![SetElem {
            key: Some(key.start.clone()),
            key_end: key.end.clone(),
            data: data.cloned(),
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(key: &[u8], end: bool) -> SetElem {
        SetElem {
            key: Some(key.to_vec()),
            flags: end.then_some(NFT_SET_ELEM_INTERVAL_END),
            ..Default::default()
        }
    }

    #[test]
    fn rbtree_elements_pair_into_ranges_as_nft_dumps_them() {
        // As dumped for `{ 10.0.0.0/8, 192.168.1.1-192.168.1.5 }` made by nft.
        let dumped = vec![
            el(&[192, 168, 1, 6], true),
            el(&[192, 168, 1, 1], false),
            el(&[11, 0, 0, 0], true),
            el(&[10, 0, 0, 0], false),
            el(&[0, 0, 0, 0], true),
        ];
        let spec = SetSpec::interval(vec![KeyField::IPV4_ADDR]);
        let got: Vec<Key> = elements_of(&spec, dumped.into_iter()).into_keys().collect();
        assert_eq!(
            got,
            vec![
                Key::range(vec![10, 0, 0, 0], vec![10, 255, 255, 255]),
                Key::range(vec![192, 168, 1, 1], vec![192, 168, 1, 5]),
            ]
        );
    }

    #[test]
    fn adjacent_and_open_ended_ranges_round_trip() {
        let spec = SetSpec::interval(vec![KeyField::INET_SERVICE]);
        let keys = [
            Key::range(vec![0, 10], vec![0, 20]),
            Key::range(vec![0, 21], vec![0, 30]),
            Key::range(vec![0xff, 0], vec![0xff, 0xff]),
        ];
        let wire: Vec<SetElem> = keys
            .iter()
            .flat_map(|k| wire_elements(&spec, k, None))
            .rev()
            .collect();
        assert_eq!(wire.len(), 5, "no end element past all-ones");
        let got: Vec<Key> = elements_of(&spec, wire.into_iter()).into_keys().collect();
        assert_eq!(got, keys.to_vec());
    }

    #[test]
    fn set_messages_and_specs_are_inverse() {
        for spec in [
            SetSpec::interval(vec![KeyField::MARK, KeyField::IPV6_ADDR]),
            SetSpec::plain(vec![KeyField::IPV4_ADDR, KeyField::INET_SERVICE]),
            SetSpec::verdict_map(vec![KeyField::IFNAME]),
            SetSpec {
                key: vec![KeyField::IPV4_ADDR],
                interval: false,
                map: Some(MapData::Value(KeyField::MARK)),
            },
        ] {
            assert_eq!(spec_of(&set_message("t", "s", &spec, 1)), Some(spec));
        }
        let mut timeout = set_message("t", "s", &SetSpec::plain(vec![KeyField::MARK]), 1);
        timeout.flags = Some(0x10);
        assert_eq!(spec_of(&timeout), None);
    }

    #[test]
    fn byte_arithmetic_carries() {
        assert_eq!(increment(&[0, 0xff]), Some(vec![1, 0]));
        assert_eq!(increment(&[0xff, 0xff]), None);
        assert_eq!(decrement(&[1, 0]), Some(vec![0, 0xff]));
        assert_eq!(decrement(&[0, 0]), None);
    }
}
