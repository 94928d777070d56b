//! The nftables reconciler (STYLE.md §2): desired [`Ruleset`] versus
//! believed-installed state for tortie's one table; [`Reconciler::apply`]
//! sends the minimal delta as one transaction and records what committed;
//! [`Reconciler::resync`] reads the kernel's view of the table so the
//! next apply repairs drift.
//!
//! Failure isolation: a batch is all or nothing, so when the kernel
//! refuses it the units owning the refused messages are taken out (an
//! element unit is halved and retried down to single elements), the rest
//! is sent again, and the refused units stay pending for the next apply
//! with the kernel's reason in the report. A refusal the kernel does not
//! pin on one message (commit-time validation) is bisected. Units needing
//! a set or chain whose creation was refused are not sent at all (they
//! could only fail, and splitting 50,000 elements of a refused set would
//! be a storm of transactions); an apply spends at most
//! `MAX_TRANSACTIONS` on isolation. One bad item never blocks the rest;
//! a chain is never left half-edited.
//!
//! Start-up takeover: a new reconciler resyncs before its first apply, so
//! a restarted daemon edits the table it finds in place — no flush, no
//! window in which `ct state established,related accept` is missing.
//!
//! Hard cases: when the outcome of a batch is unknown (replies lost) the
//! next apply resyncs first; a refusal hints at drift (a rule deleted
//! behind our back is `ENOENT` on delete), so after one the next apply
//! resyncs too; rules added since the last read have no handle, and a
//! chain edit that needs them reads that chain (or, for many chains, all
//! rules) before planning.

use std::collections::BTreeSet;

use tracing::{debug, info, warn};

use super::installed::{Installed, InstalledSet};
use super::model::{Changes, Ruleset, TableId};
use super::msg::{Body, Family, NftMessage};
use super::plan::{self, Dep, Item, Plan, Record, Scope, Unit};
use super::socket::{BatchOutcome, MessageError, NftSocket, TransportError};

/// What the reconciler needs from the kernel; [`NftSocket`] in
/// production, a fake in tests of the failure handling.
pub trait Kernel {
    /// Sends `messages` as one transaction.
    fn transact(&mut self, messages: &[NftMessage]) -> Result<BatchOutcome, TransportError>;
    /// A GET request (a dump if `dump`).
    fn request(
        &mut self,
        family: Family,
        body: Body,
        dump: bool,
    ) -> Result<Vec<NftMessage>, TransportError>;
    /// The ruleset generation id.
    fn generation(&mut self) -> Result<u32, TransportError>;
}

impl Kernel for NftSocket {
    fn transact(&mut self, messages: &[NftMessage]) -> Result<BatchOutcome, TransportError> {
        NftSocket::transact(self, messages)
    }

    fn request(
        &mut self,
        family: Family,
        body: Body,
        dump: bool,
    ) -> Result<Vec<NftMessage>, TransportError> {
        NftSocket::request(self, family, body, dump)
    }

    fn generation(&mut self) -> Result<u32, TransportError> {
        NftSocket::generation(self)
    }
}

/// Why an apply or resync could not run (item refusals are not errors:
/// they are in [`ApplyReport::failures`]).
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables table {table}: {source}")]
    Transport {
        table: String,
        #[source]
        source: TransportError,
    },
    #[error("nftables table {table}: rule handles still unknown after reading the table")]
    HandlesUnknown { table: String },
}

/// An item left pending, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub item: Item,
    pub reason: String,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Transactions sent (more than one only when something was refused).
    pub transactions: usize,
    /// Messages in committed transactions.
    pub messages: usize,
    /// Bytes sent, committed or not.
    pub bytes: usize,
    /// Items left pending.
    pub failures: Vec<Failure>,
}

/// Above this many chains needing handles, all rules are read at once.
const READ_ALL_RULES_ABOVE: usize = 32;
/// Transactions one apply may spend isolating refused items.
const MAX_TRANSACTIONS: usize = 256;

/// What the kernel refused to create during one apply.
#[derive(Debug, Default)]
struct Refused(BTreeSet<Dep>);

fn blocked_reason(unit: &Unit, refused: &Refused) -> String {
    match unit.needs().into_iter().find(|d| refused.0.contains(d)) {
        Some(d) => format!("needs {d}, which was refused"),
        None => "needs something that was refused".into(),
    }
}

/// The reconciler for one table.
pub struct Reconciler<K: Kernel = NftSocket> {
    kernel: K,
    table: TableId,
    desired: Ruleset,
    installed: Installed,
    /// Changes that did not commit, re-examined next apply.
    pending: Changes,
    /// Compare everything next apply (after a resync).
    full: bool,
    needs_resync: bool,
    /// The ruleset generation as of tortie's last read or commit; while
    /// the kernel reports the same, nothing has changed behind our back.
    known_generation: Option<u32>,
}

impl Reconciler<NftSocket> {
    /// A reconciler talking to the kernel of the calling thread's
    /// network namespace.
    pub fn open(table: TableId) -> Result<Reconciler<NftSocket>, NftError> {
        let socket = NftSocket::open().map_err(|source| NftError::Transport {
            table: table.to_string(),
            source,
        })?;
        Ok(Reconciler::new(socket, table))
    }
}

impl<K: Kernel> Reconciler<K> {
    /// A reconciler that will read the installed table before its first
    /// apply.
    pub fn new(kernel: K, table: TableId) -> Reconciler<K> {
        Reconciler {
            kernel,
            table,
            desired: Ruleset::new(),
            installed: Installed::default(),
            pending: Changes::default(),
            full: true,
            needs_resync: true,
            known_generation: None,
        }
    }

    pub fn table(&self) -> &TableId {
        &self.table
    }

    pub fn desired(&self) -> &Ruleset {
        &self.desired
    }

    /// The desired state, for handlers to change.
    pub fn desired_mut(&mut self) -> &mut Ruleset {
        &mut self.desired
    }

    /// True when nothing is pending: the last apply committed everything
    /// and nothing changed since.
    pub fn in_sync(&self) -> bool {
        !self.desired.has_changes() && self.pending.is_empty() && !self.full && !self.needs_resync
    }

    fn transport(&self, source: TransportError) -> NftError {
        NftError::Transport {
            table: self.table.to_string(),
            source,
        }
    }

    /// Reads the kernel's view of the table into believed-installed; the
    /// next apply compares everything against it.
    pub fn resync(&mut self) -> Result<(), NftError> {
        let (installed, generation) =
            Installed::read(&mut self.kernel, &self.table).map_err(|e| self.transport(e))?;
        self.known_generation = Some(generation);
        debug!(
            table = %self.table,
            exists = installed.table,
            chains = installed.chains.len(),
            sets = installed.sets.len(),
            "read nftables table"
        );
        self.installed = installed;
        self.full = true;
        self.needs_resync = false;
        Ok(())
    }

    /// [`Reconciler::resync`], but only when the ruleset generation moved
    /// since tortie last read or committed (one small netlink request
    /// otherwise). Returns whether it read the table. Another process's
    /// change to any table moves the generation too, so this reads more
    /// often than strictly needed, never less — except for a change that
    /// lands between a commit and the generation read after it, which a
    /// periodic [`Reconciler::resync`] catches.
    pub fn resync_if_changed(&mut self) -> Result<bool, NftError> {
        if !self.needs_resync
            && let Some(known) = self.known_generation
        {
            let now = self.kernel.generation().map_err(|e| self.transport(e))?;
            if now == known {
                return Ok(false);
            }
            debug!(table = %self.table, known, now, "ruleset generation moved; reading the table");
        }
        self.resync()?;
        Ok(true)
    }

    /// Brings the kernel to the desired state: the minimal delta, as one
    /// transaction (more only when the kernel refuses some items).
    pub fn apply(&mut self) -> Result<ApplyReport, NftError> {
        if self.needs_resync {
            self.resync()?;
        }
        let mut changes = self.desired.take_changes();
        changes.merge(std::mem::take(&mut self.pending));
        let scope = if self.full {
            Scope::Full
        } else {
            Scope::Changes(changes)
        };
        self.full = false;
        let result = self.apply_scope(&scope);
        match &result {
            Err(_) => {
                // Whatever was taken is compared again after a resync.
                self.full = true;
                self.needs_resync = true;
            }
            Ok(report) if report.transactions > 0 => {
                self.known_generation = self.kernel.generation().ok();
            }
            Ok(_) => {}
        }
        result
    }

    fn apply_scope(&mut self, scope: &Scope) -> Result<ApplyReport, NftError> {
        let plan = self.plan_with_handles(scope)?;
        for u in &plan.units {
            debug!(table = %self.table, item = %u.item(), "planned");
        }
        let mut report = ApplyReport::default();
        for r in plan.rejected {
            warn!(table = %self.table, item = %r.item, reason = %r.reason, "not applied");
            self.pending.merge(r.pending);
            report.failures.push(Failure {
                item: r.item,
                reason: r.reason,
            });
        }
        if plan.units.is_empty() {
            return Ok(report);
        }
        let refused_before = report.failures.len();
        self.run(plan.units, &mut Refused::default(), &mut report)?;
        if report.transactions > 1 || report.failures.len() > refused_before {
            // Refusals usually mean the kernel differs from what we believe.
            self.needs_resync = true;
        }
        info!(
            table = %self.table,
            transactions = report.transactions,
            messages = report.messages,
            bytes = report.bytes,
            failures = report.failures.len(),
            "applied nftables changes"
        );
        Ok(report)
    }

    fn plan_with_handles(&mut self, scope: &Scope) -> Result<Plan, NftError> {
        match plan::plan(&self.table, &self.desired, &self.installed, scope) {
            Ok(p) => return Ok(p),
            Err(plan::NeedHandles(chains)) => {
                debug!(chains = chains.len(), "reading rule handles");
                self.read_handles(&chains)?;
            }
        }
        match plan::plan(&self.table, &self.desired, &self.installed, scope) {
            Ok(p) => Ok(p),
            // The chains were not where we believed: start over from the kernel.
            Err(_) => {
                self.resync()?;
                plan::plan(&self.table, &self.desired, &self.installed, &Scope::Full).map_err(
                    |_| NftError::HandlesUnknown {
                        table: self.table.to_string(),
                    },
                )
            }
        }
    }

    fn read_handles(
        &mut self,
        chains: &std::collections::BTreeSet<String>,
    ) -> Result<(), NftError> {
        let read = if chains.len() > READ_ALL_RULES_ABOVE {
            Installed::read_rules(&mut self.kernel, &self.table, None)
                .map_err(|e| self.transport(e))?
        } else {
            let mut all = Vec::new();
            for c in chains {
                match Installed::read_rules(&mut self.kernel, &self.table, Some(c)) {
                    Ok(r) => all.extend(r),
                    Err(e) if e.errno() == Some(libc::ENOENT) => {
                        self.installed.chains.remove(c);
                    }
                    Err(e) => return Err(self.transport(e)),
                }
            }
            all
        };
        for c in chains {
            if let Some(ic) = self.installed.chains.get_mut(c) {
                ic.rules.clear();
            }
        }
        for (chain, rule) in read {
            if chains.contains(&chain)
                && let Some(ic) = self.installed.chains.get_mut(&chain)
            {
                ic.rules.push(rule);
            }
        }
        Ok(())
    }

    /// Sends `units` as one transaction; on refusal, isolates the refused
    /// units and sends the rest again.
    fn run(
        &mut self,
        units: Vec<Unit>,
        refused: &mut Refused,
        report: &mut ApplyReport,
    ) -> Result<(), NftError> {
        // Units needing something refused earlier in this apply would
        // only be refused too: they wait for the next apply.
        let (blocked, units): (Vec<Unit>, Vec<Unit>) = units
            .into_iter()
            .partition(|u| u.needs().iter().any(|d| refused.0.contains(d)));
        for u in blocked {
            let reason = blocked_reason(&u, refused);
            self.fail(u, reason, refused, report);
        }
        if units.is_empty() {
            return Ok(());
        }
        if report.transactions >= MAX_TRANSACTIONS {
            for u in units {
                self.fail(
                    u,
                    "not tried: too many refusals in one apply".into(),
                    refused,
                    report,
                );
            }
            return Ok(());
        }
        let mut tagged: Vec<(plan::Phase, usize, NftMessage)> = Vec::new();
        for (u, unit) in units.iter().enumerate() {
            for (phase, m) in unit.ops(&self.table) {
                tagged.push((phase, u, m));
            }
        }
        tagged.sort_by_key(|(phase, _, _)| *phase);
        let owners: Vec<usize> = tagged.iter().map(|(_, u, _)| *u).collect();
        let messages: Vec<NftMessage> = tagged.into_iter().map(|(_, _, m)| m).collect();
        report.transactions += 1;
        let outcome = match self.kernel.transact(&messages) {
            Ok(o) => o,
            Err(e) => {
                for u in &units {
                    self.pending.merge(u.pending());
                }
                return Err(self.transport(e));
            }
        };
        report.bytes += outcome.bytes;
        if outcome.committed() {
            report.messages += messages.len();
            self.record(units);
            return Ok(());
        }
        let mut why: Vec<Option<&MessageError>> = vec![None; units.len()];
        for e in &outcome.errors {
            if let Some(i) = e.index
                && let Some(&u) = owners.get(i)
            {
                why[u].get_or_insert(e);
            }
        }
        if why.iter().all(Option::is_none) {
            // Refused as a whole (e.g. at commit): bisect.
            let error = outcome.errors.first().cloned();
            debug!(units = units.len(), error = ?error, "batch refused as a whole; bisecting");
            let mut units = units;
            if units.len() == 1 {
                return self.isolate(units.remove(0), error, refused, report);
            }
            let second = units.split_off(units.len() / 2);
            self.run(units, refused, report)?;
            return self.run(second, refused, report);
        }
        let mut good = Vec::new();
        let mut splittable = Vec::new();
        for (unit, e) in units.into_iter().zip(why) {
            match e {
                None => good.push(unit),
                Some(e) if unit.split().is_some() => splittable.push((unit, e.clone())),
                // Refused for itself: whatever needs it waits too.
                Some(e) => self.fail(unit, e.to_string(), refused, report),
            }
        }
        self.run(good, refused, report)?;
        for (unit, e) in splittable {
            self.isolate(unit, Some(e), refused, report)?;
        }
        Ok(())
    }

    /// A unit the kernel refused: halve element units and try the
    /// halves; anything else stays pending.
    fn isolate(
        &mut self,
        unit: Unit,
        error: Option<MessageError>,
        refused: &mut Refused,
        report: &mut ApplyReport,
    ) -> Result<(), NftError> {
        if unit.needs().iter().any(|d| refused.0.contains(d)) {
            let reason = blocked_reason(&unit, refused);
            self.fail(unit, reason, refused, report);
            return Ok(());
        }
        if let Some((a, b)) = unit.split() {
            self.run(vec![a], refused, report)?;
            return self.run(vec![b], refused, report);
        }
        let reason = error.map_or_else(|| "refused by the kernel".to_string(), |e| e.to_string());
        self.fail(unit, reason, refused, report);
        Ok(())
    }

    /// Leaves a unit pending and reports it.
    fn fail(
        &mut self,
        unit: Unit,
        reason: String,
        refused: &mut Refused,
        report: &mut ApplyReport,
    ) {
        warn!(table = %self.table, item = %unit.item(), %reason, "not applied; will retry");
        if let Some(d) = unit.creates() {
            refused.0.insert(d.clone());
        }
        self.pending.merge(unit.pending());
        report.failures.push(Failure {
            item: unit.item(),
            reason,
        });
    }

    /// Updates believed-installed for committed units, in phase order.
    fn record(&mut self, units: Vec<Unit>) {
        let mut records: Vec<(plan::Phase, Record)> =
            units.into_iter().flat_map(Unit::into_records).collect();
        records.sort_by_key(|(phase, _)| *phase);
        for (_, r) in records {
            match r {
                Record::TableCreated => self.installed.table = true,
                Record::Chain { name, chain } => match chain {
                    Some(c) => {
                        self.installed.chains.insert(name, c);
                    }
                    None => {
                        self.installed.chains.remove(&name);
                    }
                },
                Record::Set { name, spec } => match spec {
                    Some(spec) => {
                        self.installed.sets.insert(
                            name,
                            InstalledSet {
                                spec: Some(spec),
                                elements: Default::default(),
                            },
                        );
                    }
                    None => {
                        self.installed.sets.remove(&name);
                    }
                },
                Record::ElementsAdded { set, elements } => {
                    if let Some(s) = self.installed.sets.get_mut(&set) {
                        s.elements.extend(elements);
                    }
                }
                Record::ElementsRemoved { set, keys } => {
                    if let Some(s) = self.installed.sets.get_mut(&set) {
                        for k in keys {
                            s.elements.remove(&k);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::model::{Chain, Key, KeyField, Rule, SetSpec};
    use crate::nft::rules;
    use crate::nft::{Family, Verdict};

    /// A kernel that commits every batch except those holding a poisoned
    /// message: a rule in chain `whole` refuses the batch as a whole (as
    /// commit-time validation does), an element with key `[6, 6, 6, 6]`
    /// refuses just its message.
    #[derive(Default)]
    struct FakeKernel {
        batches: Vec<usize>,
    }

    fn poisoned_whole(m: &NftMessage) -> bool {
        matches!(&m.body, Body::NewRule(r) if r.chain == "whole")
    }

    fn poisoned_message(m: &NftMessage) -> bool {
        match &m.body {
            Body::NewSetElem(e) => {
                e.set == "badset"
                    || e.elements
                        .iter()
                        .any(|el| el.key.as_deref() == Some(&[6, 6, 6, 6][..]))
            }
            Body::NewSet(s) => s.name == "badset",
            _ => false,
        }
    }

    impl Kernel for FakeKernel {
        fn transact(&mut self, messages: &[NftMessage]) -> Result<BatchOutcome, TransportError> {
            self.batches.push(messages.len());
            let errors = if messages.iter().any(poisoned_whole) {
                vec![MessageError {
                    index: None,
                    errno: libc::ELOOP,
                    message: None,
                }]
            } else {
                messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| poisoned_message(m))
                    .map(|(i, _)| MessageError {
                        index: Some(i),
                        errno: libc::EEXIST,
                        message: Some("overlap".into()),
                    })
                    .collect()
            };
            Ok(BatchOutcome { errors, bytes: 100 })
        }

        fn request(
            &mut self,
            _: Family,
            body: Body,
            _: bool,
        ) -> Result<Vec<NftMessage>, TransportError> {
            match body {
                Body::GetTable(_) => Err(TransportError::Kernel {
                    request: "GETTABLE",
                    errno: libc::ENOENT,
                    message: None,
                }),
                _ => Ok(Vec::new()),
            }
        }

        fn generation(&mut self) -> Result<u32, TransportError> {
            Ok(1)
        }
    }

    fn accept_chain() -> Chain {
        Chain::regular(vec![Rule::new(vec![rules::verdict(Verdict::Accept)])])
    }

    #[test]
    fn a_batch_refused_as_a_whole_is_bisected_down_to_the_culprit() {
        let mut rec = Reconciler::new(FakeKernel::default(), TableId::new(Family::Inet, "t"));
        for i in 0..7 {
            rec.desired_mut().put_chain(format!("c{i}"), accept_chain());
        }
        rec.desired_mut().put_chain("whole", accept_chain());
        let report = rec.apply().expect("the fake never fails to talk");
        assert_eq!(
            report.failures,
            vec![Failure {
                item: Item::Chain("whole".into()),
                reason: io_reason(libc::ELOOP),
            }]
        );
        // Table + 7 chains of 2 messages each committed; one try, then
        // two per halving of the 9 units.
        assert_eq!(report.messages, 1 + 7 * 2);
        assert!(report.transactions <= 1 + 2 * 4, "{report:?}");
        assert!(!rec.in_sync());
        let installed: Vec<&String> = rec.installed.chains.keys().collect();
        assert_eq!(installed.len(), 7);
        assert!(!rec.installed.chains.contains_key("whole"));
        assert!(rec.pending.chains.contains("whole"));
    }

    #[test]
    fn a_refused_element_message_is_split_down_to_one_element() {
        let mut rec = Reconciler::new(FakeKernel::default(), TableId::new(Family::Inet, "t"));
        let r = rec.desired_mut();
        r.put_set("s", SetSpec::plain(vec![KeyField::IPV4_ADDR]));
        for i in 0..64u8 {
            r.put_element("s", Key::exact(vec![10, 0, 0, i]), None)
                .expect("fits");
        }
        r.put_element("s", Key::exact(vec![6, 6, 6, 6]), None)
            .expect("fits");
        let report = rec.apply().expect("the fake never fails to talk");
        assert_eq!(
            report.failures,
            vec![Failure {
                item: Item::Elements {
                    set: "s".into(),
                    count: 1
                },
                reason: "File exists (os error 17) (overlap)".into(),
            }]
        );
        assert_eq!(rec.installed.sets["s"].elements.len(), 64);
        let pending = &rec.pending.elements["s"];
        assert_eq!(
            pending.iter().collect::<Vec<_>>(),
            vec![&Key::exact(vec![6, 6, 6, 6])]
        );
    }

    #[test]
    fn what_needs_a_refused_set_waits_instead_of_being_split() {
        let mut rec = Reconciler::new(FakeKernel::default(), TableId::new(Family::Inet, "t"));
        let r = rec.desired_mut();
        r.put_set("badset", SetSpec::plain(vec![KeyField::IPV4_ADDR]));
        for i in 0..5000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            r.put_element("badset", Key::exact(vec![10, 1, a, b]), None)
                .expect("fits");
        }
        r.put_chain("ok", accept_chain());
        let report = rec.apply().expect("the fake never fails to talk");
        assert!(report.transactions <= 2, "no split storm: {report:?}");
        assert_eq!(report.failures[0].item, Item::Set("badset".into()));
        assert!(
            report.failures[1..]
                .iter()
                .all(|f| f.reason == "needs set badset, which was refused"),
            "{report:?}"
        );
        assert!(rec.installed.chains.contains_key("ok"));
        assert_eq!(rec.pending.elements["badset"].len(), 5000);
    }

    fn io_reason(errno: i32) -> String {
        std::io::Error::from_raw_os_error(errno).to_string()
    }
}
