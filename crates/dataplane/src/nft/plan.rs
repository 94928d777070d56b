//! The delta from believed-installed to desired, as units of nf_tables
//! messages placed in dependency phases. Pure: no kernel in here.
//!
//! A unit is what succeeds or fails as a whole: the table, one set (its
//! creation or removal), one chain (creation, rule edit, removal — a
//! chain is never left half-edited), or one chunk of one set's element
//! changes (split further if the kernel refuses it). Each unit carries the
//! records that update the believed-installed state once its batch
//! commits.
//!
//! Phases order the messages of all units in one batch so that nothing is
//! referenced before it exists or removed while referenced:
//! table; flushes of chains being deleted or rewritten; deletes of sets
//! and base chains being recreated; creation of sets and chains; element
//! deletes then adds (a changed map value is a delete plus an add; a
//! verdict map element may name a chain created above); rule edits (which
//! may look up the new sets and jump to the new chains); then deletes of
//! sets and, last, chains — after every rule and element that referenced
//! them is gone.
//!
//! Hard cases: a set whose shape changed must be deleted and recreated,
//! which the kernel refuses while rules look it up, so every installed
//! chain referencing it is flushed first and refilled after; a desired
//! rule naming a set or chain that is not desired, or a verdict map
//! element naming a missing chain, is refused here — that one chain or
//! element stays pending with a clear reason and the rest goes ahead;
//! element messages are chunked so each list stays under netlink's 64 KiB
//! attribute limit.

use std::collections::{BTreeMap, BTreeSet};

use super::diff::{self, RuleOp};
use super::expr::Data;
use super::installed::{self, Installed, InstalledChain, InstalledRule};
use super::model::{
    COMMENT_MAX, Chain, Changes, Key, Policy, Ruleset, SetSpec, TableId, check_element,
};
use super::msg::{self, Body, NftMessage};
use super::sys::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};

/// Where a message goes in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Table,
    Flush,
    DeleteForRecreate,
    Create,
    ElementDelete,
    ElementAdd,
    Rules,
    DeleteSet,
    DeleteChain,
}

/// A thing in tortie's table that is applied, or fails, as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Table,
    Chain(String),
    Set(String),
    /// Some elements of a set (added, removed or changed).
    Elements {
        set: String,
        count: usize,
    },
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Table => write!(f, "table"),
            Item::Chain(c) => write!(f, "chain {c}"),
            Item::Set(s) => write!(f, "set {s}"),
            Item::Elements { set, count } => write!(f, "{count} element(s) of set {set}"),
        }
    }
}

/// A change to the believed-installed state, made when a unit commits.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    TableCreated,
    Chain {
        name: String,
        chain: Option<InstalledChain>,
    },
    /// A set created empty (`Some`) or removed.
    Set {
        name: String,
        spec: Option<SetSpec>,
    },
    ElementsAdded {
        set: String,
        elements: Vec<(Key, Option<Data>)>,
    },
    ElementsRemoved {
        set: String,
        keys: Vec<Key>,
    },
}

/// Element changes of one set, in one unit.
#[derive(Debug, Clone)]
pub(crate) struct ElementChange {
    pub set: String,
    pub spec: SetSpec,
    pub delete: bool,
    pub elements: Vec<(Key, Option<Data>)>,
}

/// What one unit creates and others may need: when its unit is refused,
/// the units needing it are not sent (they could only fail too).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dep {
    Table,
    Set(String),
    Chain(String),
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dep::Table => write!(f, "the table"),
            Dep::Set(s) => write!(f, "set {s}"),
            Dep::Chain(c) => write!(f, "chain {c}"),
        }
    }
}

/// Messages that succeed or fail together.
#[derive(Debug, Clone)]
pub(crate) enum Unit {
    Messages {
        item: Item,
        ops: Vec<(Phase, NftMessage)>,
        records: Vec<(Phase, Record)>,
        /// What this unit creates (absent before it).
        creates: Option<Dep>,
        /// Sets and chains its rules reference.
        needs: Vec<Dep>,
    },
    Elements(ElementChange),
}

impl Unit {
    pub(crate) fn item(&self) -> Item {
        match self {
            Unit::Messages { item, .. } => item.clone(),
            Unit::Elements(e) => Item::Elements {
                set: e.set.clone(),
                count: e.elements.len(),
            },
        }
    }

    pub(crate) fn creates(&self) -> Option<&Dep> {
        match self {
            Unit::Messages { creates, .. } => creates.as_ref(),
            Unit::Elements(_) => None,
        }
    }

    /// What must exist for this unit to apply (always the table).
    pub(crate) fn needs(&self) -> Vec<Dep> {
        let mut v = vec![Dep::Table];
        match self {
            Unit::Messages { needs, .. } => v.extend(needs.iter().cloned()),
            Unit::Elements(e) => {
                v.push(Dep::Set(e.set.clone()));
                for (_, d) in &e.elements {
                    if let Some(Data::Verdict(verdict)) = d
                        && let Some(t) = verdict.target()
                    {
                        v.push(Dep::Chain(t.to_string()));
                    }
                }
            }
        }
        v
    }

    pub(crate) fn ops(&self, table: &TableId) -> Vec<(Phase, NftMessage)> {
        match self {
            Unit::Messages { ops, .. } => ops.clone(),
            Unit::Elements(e) => element_ops(table, e),
        }
    }

    /// The changes to believed-installed state once this unit committed.
    pub(crate) fn into_records(self) -> Vec<(Phase, Record)> {
        match self {
            Unit::Messages { records, .. } => records,
            Unit::Elements(e) if e.delete => vec![(
                Phase::ElementDelete,
                Record::ElementsRemoved {
                    set: e.set,
                    keys: e.elements.into_iter().map(|(k, _)| k).collect(),
                },
            )],
            Unit::Elements(e) => vec![(
                Phase::ElementAdd,
                Record::ElementsAdded {
                    set: e.set,
                    elements: e.elements,
                },
            )],
        }
    }

    /// Halves an element unit of more than one element.
    pub(crate) fn split(&self) -> Option<(Unit, Unit)> {
        let Unit::Elements(e) = self else { return None };
        if e.elements.len() < 2 {
            return None;
        }
        let mid = e.elements.len() / 2;
        let half = |elements: &[(Key, Option<Data>)]| {
            Unit::Elements(ElementChange {
                elements: elements.to_vec(),
                ..e.clone()
            })
        };
        Some((half(&e.elements[..mid]), half(&e.elements[mid..])))
    }

    /// What to re-examine next apply if this unit did not commit.
    pub(crate) fn pending(&self) -> Changes {
        let mut c = Changes::default();
        match self {
            Unit::Messages { item, .. } => match item {
                Item::Chain(n) => {
                    c.chains.insert(n.clone());
                }
                Item::Set(n) => {
                    c.sets.insert(n.clone());
                }
                Item::Table | Item::Elements { .. } => {}
            },
            Unit::Elements(e) => {
                c.elements.insert(
                    e.set.clone(),
                    e.elements.iter().map(|(k, _)| k.clone()).collect(),
                );
            }
        }
        c
    }
}

/// A unit refused before reaching the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub item: Item,
    pub reason: String,
    pub pending: Changes,
}

/// The delta.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub units: Vec<Unit>,
    pub rejected: Vec<Rejected>,
}

/// What to compare.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    Full,
    Changes(Changes),
}

/// Chains whose edit needs rule handles that are not known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NeedHandles(pub BTreeSet<String>);

/// Elements per message are bounded by bytes: the list attribute's
/// length is 16 bits.
const ELEMENT_LIST_BYTES: usize = 60_000;

pub(crate) fn plan(
    table: &TableId,
    desired: &Ruleset,
    installed: &Installed,
    scope: &Scope,
) -> Result<Plan, NeedHandles> {
    let mut p = Plan::default();
    if !installed.table {
        p.units.push(Unit::Messages {
            item: Item::Table,
            ops: vec![(
                Phase::Table,
                message(
                    table,
                    NLM_F_CREATE,
                    Body::NewTable(msg::Table {
                        name: table.name.clone(),
                        ..Default::default()
                    }),
                ),
            )],
            records: vec![(Phase::Table, Record::TableCreated)],
            creates: Some(Dep::Table),
            needs: Vec::new(),
        });
    }
    let (chain_names, set_names, element_keys): (BTreeSet<String>, BTreeSet<String>, _) =
        match scope {
            Scope::Full => (
                desired
                    .chains()
                    .map(|(n, _)| n.clone())
                    .chain(installed.chains.keys().cloned())
                    .collect(),
                desired
                    .sets()
                    .map(|(n, _)| n.clone())
                    .chain(installed.sets.keys().cloned())
                    .collect(),
                None,
            ),
            Scope::Changes(c) => (c.chains.clone(), c.sets.clone(), Some(&c.elements)),
        };
    let mut rewrite: BTreeSet<String> = BTreeSet::new();
    // Sets whose elements must all be compared: every set in a full
    // scope, and sets named in the changes.
    let mut element_sets: BTreeMap<String, Option<BTreeSet<Key>>> = BTreeMap::new();
    for name in &set_names {
        element_sets.insert(name.clone(), None);
    }
    if let Some(keys) = element_keys {
        for (set, ks) in keys {
            element_sets
                .entry(set.clone())
                .or_insert_with(|| Some(ks.clone()));
        }
    }
    for (id, name) in set_names.iter().enumerate() {
        plan_set(
            table,
            name,
            id as u32 + 1,
            desired,
            installed,
            &mut p,
            &mut rewrite,
        );
    }
    for (set, keys) in &element_sets {
        plan_elements(set, keys.as_ref(), desired, installed, &mut p);
    }
    let mut need = BTreeSet::new();
    for name in chain_names.union(&rewrite) {
        let force = rewrite.contains(name);
        if let Err(()) = plan_chain(table, name, force, desired, installed, &mut p) {
            need.insert(name.clone());
        }
    }
    if !need.is_empty() {
        return Err(NeedHandles(need));
    }
    Ok(p)
}

fn message(table: &TableId, flags: u16, body: Body) -> NftMessage {
    NftMessage {
        family: table.family,
        flags,
        body,
        ..Default::default()
    }
}

fn plan_set(
    table: &TableId,
    name: &str,
    id: u32,
    desired: &Ruleset,
    installed: &Installed,
    p: &mut Plan,
    rewrite: &mut BTreeSet<String>,
) {
    let d = desired.set(name);
    let i = installed.sets.get(name);
    let del = || {
        message(
            table,
            0,
            Body::DelSet(msg::Set {
                table: table.name.clone(),
                name: name.to_string(),
                ..Default::default()
            }),
        )
    };
    match (d, i) {
        (None, None) => {}
        (None, Some(_)) => p.units.push(Unit::Messages {
            item: Item::Set(name.to_string()),
            ops: vec![(Phase::DeleteSet, del())],
            records: vec![(
                Phase::DeleteSet,
                Record::Set {
                    name: name.to_string(),
                    spec: None,
                },
            )],
            creates: None,
            needs: Vec::new(),
        }),
        (Some(d), i) => {
            let recreate = match i {
                None => false,
                Some(i) if i.spec.as_ref() == Some(&d.spec) => return,
                Some(_) => true,
            };
            let mut ops = Vec::new();
            if recreate {
                ops.push((Phase::DeleteForRecreate, del()));
                // Chains looking the set up must let go of it first.
                for (chain, c) in &installed.chains {
                    if c.rules.iter().any(|r| r.rule.set_refs().any(|s| s == name)) {
                        rewrite.insert(chain.clone());
                    }
                }
            }
            ops.push((
                Phase::Create,
                message(
                    table,
                    NLM_F_CREATE,
                    Body::NewSet(installed::set_message(&table.name, name, &d.spec, id)),
                ),
            ));
            p.units.push(Unit::Messages {
                item: Item::Set(name.to_string()),
                ops,
                records: vec![(
                    Phase::Create,
                    Record::Set {
                        name: name.to_string(),
                        spec: Some(d.spec.clone()),
                    },
                )],
                creates: Some(Dep::Set(name.to_string())),
                needs: Vec::new(),
            });
        }
    }
}

fn plan_elements(
    set: &str,
    keys: Option<&BTreeSet<Key>>,
    desired: &Ruleset,
    installed: &Installed,
    p: &mut Plan,
) {
    let Some(d) = desired.set(set) else { return };
    let i = installed
        .sets
        .get(set)
        .filter(|i| i.spec.as_ref() == Some(&d.spec));
    let empty = BTreeMap::new();
    let installed_elems = i.map_or(&empty, |i| &i.elements);
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    let mut consider = |k: &Key| {
        let want = d.elements.get(k);
        let have = installed_elems.get(k);
        if want == have {
            return;
        }
        if have.is_some() {
            dels.push((k.clone(), None));
        }
        if let Some(data) = want {
            match check_target(desired, &d.spec, k, data.as_ref()) {
                Ok(()) => adds.push((k.clone(), data.clone())),
                Err(reason) => {
                    let mut pending = Changes::default();
                    pending
                        .elements
                        .insert(set.to_string(), BTreeSet::from([k.clone()]));
                    p.rejected.push(Rejected {
                        item: Item::Elements {
                            set: set.to_string(),
                            count: 1,
                        },
                        reason,
                        pending,
                    });
                }
            }
        }
    };
    // A set that is (re)created starts empty: compare every element.
    match keys.filter(|_| i.is_some()) {
        Some(keys) => keys.iter().for_each(&mut consider),
        None => {
            let all: BTreeSet<&Key> = d.elements.keys().chain(installed_elems.keys()).collect();
            all.into_iter().for_each(&mut consider);
        }
    }
    for (delete, list) in [(true, dels), (false, adds)] {
        for chunk in chunks(&d.spec, list) {
            p.units.push(Unit::Elements(ElementChange {
                set: set.to_string(),
                spec: d.spec.clone(),
                delete,
                elements: chunk,
            }));
        }
    }
}

fn check_target(
    desired: &Ruleset,
    spec: &SetSpec,
    k: &Key,
    data: Option<&Data>,
) -> Result<(), String> {
    check_element(spec, k, data)?;
    if let Some(Data::Verdict(v)) = data
        && let Some(target) = v.target()
    {
        match desired.chain(target) {
            None => {
                return Err(format!(
                    "its verdict names chain {target}, which is not desired"
                ));
            }
            Some(c) if c.base.is_some() => {
                return Err(format!("its verdict jumps to base chain {target}"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An upper bound of an element's encoded size.
fn element_bytes(spec: &SetSpec, k: &Key, data: Option<&Data>) -> usize {
    let key = 12 + k.start.len().next_multiple_of(4);
    let data = match data {
        None => 0,
        Some(Data::Value(v)) => 12 + v.len().next_multiple_of(4),
        Some(Data::Verdict(v)) => 28 + v.target().map_or(0, |t| (t.len() + 1).next_multiple_of(4)),
    };
    // An rbtree range is two elements.
    let n = if spec.interval && spec.key.len() == 1 {
        2
    } else {
        1
    };
    n * (4 + 2 * key + 8 + data)
}

fn chunks(spec: &SetSpec, list: Vec<(Key, Option<Data>)>) -> Vec<Vec<(Key, Option<Data>)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for (k, d) in list {
        let b = element_bytes(spec, &k, d.as_ref());
        if bytes + b > ELEMENT_LIST_BYTES && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += b;
        cur.push((k, d));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn element_ops(table: &TableId, e: &ElementChange) -> Vec<(Phase, NftMessage)> {
    let elements = e
        .elements
        .iter()
        .flat_map(|(k, d)| {
            installed::wire_elements(&e.spec, k, if e.delete { None } else { d.as_ref() })
        })
        .collect();
    let body = msg::SetElems {
        table: table.name.clone(),
        set: e.set.clone(),
        elements,
    };
    let (phase, flags, body) = if e.delete {
        (Phase::ElementDelete, 0, Body::DelSetElem(body))
    } else {
        (Phase::ElementAdd, NLM_F_CREATE, Body::NewSetElem(body))
    };
    vec![(phase, message(table, flags, body))]
}

/// Why a desired chain cannot be installed as it is, if it cannot.
fn check_chain(desired: &Ruleset, chain: &Chain) -> Result<(), String> {
    for r in &chain.rules {
        if let Some(c) = &r.comment
            && c.len() > COMMENT_MAX
        {
            return Err(format!("a rule comment is longer than {COMMENT_MAX} bytes"));
        }
        for s in r.set_refs() {
            if desired.set(s).is_none() {
                return Err(format!("a rule looks up set {s}, which is not desired"));
            }
        }
        for t in r.chain_refs() {
            match desired.chain(t) {
                None => return Err(format!("a rule jumps to chain {t}, which is not desired")),
                Some(c) if c.base.is_some() => {
                    return Err(format!("a rule jumps to base chain {t}"));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn chain_message(table: &TableId, name: &str, chain: &Chain) -> msg::Chain {
    let mut m = msg::Chain {
        table: table.name.clone(),
        name: name.to_string(),
        ..Default::default()
    };
    if let Some(b) = &chain.base {
        m.hook = Some(msg::ChainHook {
            hooknum: b.hook.number(),
            priority: b.priority,
            device: None,
        });
        m.chain_type = Some(b.chain_type.name().to_string());
        m.policy = Some(match b.policy {
            Policy::Drop => 0,
            Policy::Accept => 1,
        });
    }
    m
}

/// Plans one chain; `Err(())` if it needs rule handles first.
fn plan_chain(
    table: &TableId,
    name: &str,
    force_rewrite: bool,
    desired: &Ruleset,
    installed: &Installed,
    p: &mut Plan,
) -> Result<(), ()> {
    let d = desired.chain(name);
    let i = installed.chains.get(name);
    let item = Item::Chain(name.to_string());
    let flush = || {
        message(
            table,
            0,
            Body::DelRule(msg::Rule {
                table: table.name.clone(),
                chain: name.to_string(),
                ..Default::default()
            }),
        )
    };
    let del_chain = || {
        message(
            table,
            0,
            Body::DelChain(msg::Chain {
                table: table.name.clone(),
                name: name.to_string(),
                ..Default::default()
            }),
        )
    };
    let Some(d) = d else {
        if let Some(i) = i {
            let mut ops = Vec::new();
            if !i.rules.is_empty() {
                ops.push((Phase::Flush, flush()));
            }
            ops.push((Phase::DeleteChain, del_chain()));
            p.units.push(Unit::Messages {
                item,
                ops,
                records: vec![(
                    Phase::DeleteChain,
                    Record::Chain {
                        name: name.to_string(),
                        chain: None,
                    },
                )],
                creates: None,
                needs: Vec::new(),
            });
        }
        return Ok(());
    };
    if let Err(reason) = check_chain(desired, d) {
        let mut pending = Changes::default();
        pending.chains.insert(name.to_string());
        p.rejected.push(Rejected {
            item,
            reason,
            pending,
        });
        return Ok(());
    }
    let mut ops = Vec::new();
    let create = || {
        message(
            table,
            NLM_F_CREATE,
            Body::NewChain(chain_message(table, name, d)),
        )
    };
    let same_hook = |i: &InstalledChain| {
        i.modelled
            && match (&d.base, &i.base) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    (a.hook, a.chain_type, a.priority) == (b.hook, b.chain_type, b.priority)
                }
                _ => false,
            }
    };
    let created = i.is_none_or(|i| !same_hook(i));
    let edit = match i {
        None => {
            ops.push((Phase::Create, create()));
            diff::diff(&[], &d.rules).map_err(|_| ())?
        }
        Some(i) if !same_hook(i) => {
            // Hook, type and priority are fixed at creation.
            ops.push((Phase::DeleteForRecreate, del_chain()));
            ops.push((Phase::Create, create()));
            diff::diff(&[], &d.rules).map_err(|_| ())?
        }
        Some(i) => {
            if d.base.map(|b| b.policy) != i.base.map(|b| b.policy) {
                ops.push((Phase::Create, create()));
            }
            if force_rewrite {
                ops.push((Phase::Flush, flush()));
                diff::diff(&[], &d.rules).map_err(|_| ())?
            } else {
                diff::diff(&i.rules, &d.rules).map_err(|_| ())?
            }
        }
    };
    for op in &edit.ops {
        let rule = |idx: usize, handle: Option<u64>, position: Option<u64>| {
            let r = &d.rules[idx];
            msg::Rule {
                table: table.name.clone(),
                chain: name.to_string(),
                handle,
                position,
                exprs: r.exprs.clone(),
                userdata: r.userdata(),
            }
        };
        let (flags, body) = match *op {
            RuleOp::Flush => (0, flush().body),
            RuleOp::Delete { handle } => (
                0,
                Body::DelRule(msg::Rule {
                    table: table.name.clone(),
                    chain: name.to_string(),
                    handle: Some(handle),
                    ..Default::default()
                }),
            ),
            RuleOp::Replace { handle, rule: idx } => {
                (NLM_F_REPLACE, Body::NewRule(rule(idx, Some(handle), None)))
            }
            RuleOp::InsertBefore { handle, rule: idx } => {
                (NLM_F_CREATE, Body::NewRule(rule(idx, None, Some(handle))))
            }
            RuleOp::InsertAfter { handle, rule: idx } => (
                NLM_F_CREATE | NLM_F_APPEND,
                Body::NewRule(rule(idx, None, Some(handle))),
            ),
            RuleOp::Append { rule: idx } => (
                NLM_F_CREATE | NLM_F_APPEND,
                Body::NewRule(rule(idx, None, None)),
            ),
        };
        ops.push((Phase::Rules, message(table, flags, body)));
    }
    if ops.is_empty() {
        return Ok(());
    }
    let installed_chain = InstalledChain {
        base: d.base,
        modelled: true,
        rules: d
            .rules
            .iter()
            .zip(edit.handles)
            .map(|(r, handle)| InstalledRule {
                handle,
                rule: r.clone(),
            })
            .collect(),
    };
    let needs = d
        .rules
        .iter()
        .flat_map(|r| {
            r.set_refs()
                .map(|s| Dep::Set(s.to_string()))
                .chain(r.chain_refs().map(|c| Dep::Chain(c.to_string())))
        })
        .collect::<BTreeSet<Dep>>()
        .into_iter()
        .collect();
    p.units.push(Unit::Messages {
        item,
        ops,
        records: vec![(
            Phase::Rules,
            Record::Chain {
                name: name.to_string(),
                chain: Some(installed_chain),
            },
        )],
        creates: created.then(|| Dep::Chain(name.to_string())),
        needs,
    });
    Ok(())
}
