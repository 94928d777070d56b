//! One compiled policy or profile rule → nftables rules (policy.md §4).
//!
//! Every criterion present is ANDed as consecutive matches of one nft
//! rule. What needs an OR becomes one lookup: a selector or named port in
//! its id-keyed set (`sel4h`/`sel6h`, or `sel4`/`sel6` once it holds a
//! CIDR), several nets in `sel4`/`sel6` under an id of their own, several
//! ports in `ports`. Negated lists are inverted lookups (AND
//! of "not in" is "not in any").
//!
//! Families: a rule pinned to IPv4 or IPv6 starts with a `meta nfproto`
//! guard; an unpinned rule that matches addresses renders once per
//! family, each against that family's sets; one without address criteria
//! renders once for both.
//!
//! Hard case: `ports` is an OR of numeric ranges and named ports, and a
//! source and a destination may both have one. With a single alternative
//! the rule is one nft rule; with several, a scratch mark bit is cleared,
//! each alternative sets it, and one last rule takes the action if it is
//! set — so even `Log` acts once per packet.

use ipnet::IpNet;
use tortie_calc::state::{CompiledEntity, CompiledRule};
use tortie_dataplane::nft::rules::{self, Addr, IpFamily};
use tortie_dataplane::nft::{Expr, Reg, Rule, Ruleset, Verdict};
use tortie_model::rule::Action;

use crate::exprs::{self, family, family_of_net};
use crate::marks::Marks;
use crate::names;
use crate::sets::{SetKind, SetTable, merge_ports, named_port_set, selector_set};

/// What a policy Deny does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    Drop,
    /// `iptablesFilterDenyAction: Reject` (filter hooks only).
    Reject,
}

/// How one chain's rules are rendered.
#[derive(Debug, Clone, Copy)]
pub struct RuleContext<'a> {
    pub marks: Marks,
    pub deny: Deny,
    pub log_prefix: &'a str,
    /// Names the chain's owner and direction in rule comments.
    pub label: &'a str,
}

/// The sets one chain refers to, acquired while rendering it.
pub struct Held<'a> {
    pub sets: &'a mut SetTable,
    pub ruleset: &'a mut Ruleset,
    pub keys: Vec<String>,
}

impl Held<'_> {
    fn calc(&mut self, key: &str, kind: SetKind) -> Option<u32> {
        let id = self.sets.acquire(key, kind)?;
        self.keys.push(key.to_string());
        Some(id)
    }

    /// An address set's id, and whether it lives in the interval sets.
    fn addresses(&mut self, key: &str) -> Option<(u32, bool)> {
        let id = self.calc(key, SetKind::Addresses)?;
        Some((id, self.sets.ranged(key)))
    }

    fn nets(&mut self, nets: &[IpNet]) -> Option<(u32, bool)> {
        let (key, id) = self.sets.acquire_nets(self.ruleset, nets)?;
        let ranged = self.sets.ranged(&key);
        self.keys.push(key);
        Some((id, ranged))
    }

    fn ports(&mut self, ranges: &[tortie_calc::rules::PortRange]) -> Option<u32> {
        let (key, id) = self.sets.acquire_ports(self.ruleset, ranges)?;
        self.keys.push(key);
        Some(id)
    }
}

/// The verdict part of a rule.
pub fn action(a: Action, ctx: &RuleContext<'_>) -> Vec<Expr> {
    match a {
        Action::Allow => [
            rules::mark_set(ctx.marks.accept),
            vec![rules::verdict(Verdict::Return)],
        ]
        .concat(),
        Action::Pass => [
            rules::mark_set(ctx.marks.pass),
            vec![rules::verdict(Verdict::Return)],
        ]
        .concat(),
        Action::Deny => deny(ctx.deny),
        Action::Log => vec![exprs::log(ctx.log_prefix)],
    }
}

/// Drop or reject.
pub fn deny(d: Deny) -> Vec<Expr> {
    match d {
        Deny::Drop => vec![rules::verdict(Verdict::Drop)],
        Deny::Reject => vec![exprs::reject()],
    }
}

fn entity_has_addresses(e: &CompiledEntity) -> bool {
    !e.nets.is_empty()
        || !e.not_nets.is_empty()
        || e.ip_set.is_some()
        || e.not_ip_set.is_some()
        || !e.named_port_sets.is_empty()
        || !e.not_named_port_sets.is_empty()
}

/// "Address in set `id`", `set` being its id and whether it is ranged.
fn addr_lookup(f: IpFamily, addr: Addr, (id, ranged): (u32, bool), invert: bool) -> Vec<Expr> {
    exprs::id_lookup(
        selector_set(f, ranged),
        id,
        vec![exprs::load_addr(f, addr, Reg::r32(1))],
        invert,
    )
}

fn port_lookup(addr: Addr, id: u32, invert: bool) -> Vec<Expr> {
    exprs::id_lookup(
        names::PORTS,
        id,
        vec![exprs::load_port(addr, Reg::r32(1))],
        invert,
    )
}

fn named_port_lookup(f: IpFamily, addr: Addr, id: u32, invert: bool) -> Vec<Expr> {
    exprs::id_lookup(
        named_port_set(f),
        id,
        exprs::named_port_loads(f, addr),
        invert,
    )
}

/// "Address in any of `nets`" (or in none, with `negate`); `None` when
/// the rule cannot match in family `f` at all.
fn nets_match(
    nets: &[IpNet],
    f: IpFamily,
    addr: Addr,
    negate: bool,
    held: &mut Held<'_>,
) -> Option<Vec<Expr>> {
    let ours: Vec<IpNet> = nets
        .iter()
        .filter(|n| family_of_net(n) == f)
        .copied()
        .collect();
    match ours.as_slice() {
        [] if negate || nets.is_empty() => Some(Vec::new()),
        [] => None,
        [one] => Some(exprs::addr_in_net(addr, one, negate)),
        _ => Some(addr_lookup(f, addr, held.nets(&ours)?, negate)),
    }
}

/// The ANDed, single-alternative criteria of an entity.
fn entity_fixed(
    e: &CompiledEntity,
    f: Option<IpFamily>,
    addr: Addr,
    held: &mut Held<'_>,
) -> Option<Vec<Expr>> {
    let mut v = Vec::new();
    if let Some(f) = f {
        v.extend(nets_match(&e.nets, f, addr, false, held)?);
        v.extend(nets_match(&e.not_nets, f, addr, true, held)?);
        if let Some(key) = &e.ip_set {
            v.extend(addr_lookup(f, addr, held.addresses(key)?, false));
        }
        if let Some(key) = &e.not_ip_set {
            v.extend(addr_lookup(f, addr, held.addresses(key)?, true));
        }
        for key in &e.not_named_port_sets {
            v.extend(named_port_lookup(
                f,
                addr,
                held.calc(key, SetKind::NamedPorts)?,
                true,
            ));
        }
    } else if entity_has_addresses(e) {
        return None;
    }
    match merge_ports(&e.not_ports).as_slice() {
        [] => {}
        [one] => v.extend(exprs::port_in_range(addr, *one, true)),
        many => v.extend(port_lookup(addr, held.ports(many)?, true)),
    }
    Some(v)
}

/// The OR of an entity's `ports` and named ports: one match per
/// alternative (one empty alternative if the entity has none).
fn entity_alternatives(
    e: &CompiledEntity,
    f: Option<IpFamily>,
    addr: Addr,
    held: &mut Held<'_>,
) -> Option<Vec<Vec<Expr>>> {
    let mut alts = Vec::new();
    match merge_ports(&e.ports).as_slice() {
        [] => {}
        [one] => alts.push(exprs::port_in_range(addr, *one, false)),
        many => alts.push(port_lookup(addr, held.ports(many)?, false)),
    }
    for key in &e.named_port_sets {
        let f = f?;
        alts.push(named_port_lookup(
            f,
            addr,
            held.calc(key, SetKind::NamedPorts)?,
            false,
        ));
    }
    if alts.is_empty() {
        alts.push(Vec::new());
    }
    Some(alts)
}

/// The families a rule renders for (`None`: one rule for both).
fn variants(r: &CompiledRule) -> Vec<Option<IpFamily>> {
    match r.family {
        Some(f) => vec![Some(family(f))],
        None if entity_has_addresses(&r.source) || entity_has_addresses(&r.destination) => {
            vec![Some(IpFamily::V4), Some(IpFamily::V6)]
        }
        None => vec![None],
    }
}

/// One variant of a rule; `None` if it cannot match (or a set id could
/// not be had, which the set table reports).
fn render_variant(
    r: &CompiledRule,
    f: Option<IpFamily>,
    ctx: &RuleContext<'_>,
    held: &mut Held<'_>,
) -> Option<Vec<Vec<Expr>>> {
    let mut common = Vec::new();
    if let Some(f) = f {
        common.extend(rules::nfproto(f));
    }
    if let Some(p) = r.protocol {
        common.extend(rules::l4proto(p));
    }
    if let Some(p) = r.not_protocol {
        common.extend(exprs::l4proto_not(p));
    }
    if let Some(m) = r.icmp {
        common.extend(exprs::icmp(m, false));
    }
    if let Some(m) = r.not_icmp {
        common.extend(exprs::icmp(m, true));
    }
    common.extend(entity_fixed(&r.source, f, Addr::Source, held)?);
    common.extend(entity_fixed(&r.destination, f, Addr::Destination, held)?);
    let src = entity_alternatives(&r.source, f, Addr::Source, held)?;
    let dst = entity_alternatives(&r.destination, f, Addr::Destination, held)?;
    let act = action(r.action, ctx);
    if src.len() * dst.len() == 1 {
        return Some(vec![[common, src.concat(), dst.concat(), act].concat()]);
    }
    let scratch = ctx.marks.scratch;
    let mut out = vec![rules::mark_clear(scratch)];
    for s in &src {
        for d in &dst {
            out.push(
                [
                    common.clone(),
                    s.clone(),
                    d.clone(),
                    rules::mark_set(scratch),
                ]
                .concat(),
            );
        }
    }
    out.push([rules::mark_has(scratch), rules::mark_clear(scratch), act].concat());
    Some(out)
}

/// The nft rules of a rule list, in order.
pub fn render_rules(
    list: &[CompiledRule],
    ctx: &RuleContext<'_>,
    held: &mut Held<'_>,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for r in list {
        let comment = names::comment(&format!("{} rule {}", ctx.label, r.index));
        for f in variants(r) {
            for exprs in render_variant(r, f, ctx, held).unwrap_or_default() {
                out.push(Rule::new(exprs).with_comment(comment.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sets::set_specs;
    use tortie_calc::rules::{IpFamily as CalcFamily, PortRange};
    use tortie_dataplane::nft::expr::{CmpOp, RangeOp};

    fn rule(f: impl FnOnce(&mut CompiledRule)) -> CompiledRule {
        let mut r = CompiledRule {
            index: 0,
            action: Action::Allow,
            family: None,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: CompiledEntity::default(),
            destination: CompiledEntity::default(),
        };
        f(&mut r);
        r
    }

    fn render(r: &CompiledRule, rs: &mut Ruleset, t: &mut SetTable) -> (Vec<Rule>, Vec<String>) {
        let ctx = RuleContext {
            marks: Marks::default(),
            deny: Deny::Drop,
            log_prefix: "calico-packet",
            label: "gnp/x ingress",
        };
        let mut held = Held {
            sets: t,
            ruleset: rs,
            keys: Vec::new(),
        };
        let out = render_rules(std::slice::from_ref(r), &ctx, &mut held);
        (out, held.keys)
    }

    fn setup() -> (Ruleset, SetTable) {
        let mut rs = Ruleset::new();
        for (n, s) in set_specs() {
            rs.put_set(n, s);
        }
        (rs, SetTable::default())
    }

    fn lookups(r: &Rule) -> Vec<(&str, bool)> {
        r.exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Lookup { set, invert, .. } => Some((set.as_str(), *invert)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_unpinned_selector_rule_renders_once_per_family() {
        let (mut rs, mut t) = setup();
        let r = rule(|r| r.source.ip_set = Some("s:abc".into()));
        let (out, keys) = render(&r, &mut rs, &mut t);
        assert_eq!(out.len(), 2);
        assert_eq!(lookups(&out[0]), [(names::SEL4_HOSTS, false)]);
        assert_eq!(lookups(&out[1]), [(names::SEL6_HOSTS, false)]);
        assert_eq!(keys, ["s:abc", "s:abc"]);
        assert_eq!(out[0].comment.as_deref(), Some("gnp/x ingress rule 0"));
    }

    #[test]
    fn a_pinned_rule_without_addresses_renders_once_and_plain_rules_have_no_guard() {
        let (mut rs, mut t) = setup();
        let r = rule(|r| {
            r.family = Some(CalcFamily::V6);
            r.protocol = Some(58);
        });
        let (out, _) = render(&r, &mut rs, &mut t);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].exprs[..2], rules::nfproto(IpFamily::V6)[..]);
        let plain = rule(|r| r.protocol = Some(6));
        let (out, _) = render(&plain, &mut rs, &mut t);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].exprs[..2], rules::l4proto(6)[..]);
    }

    #[test]
    fn lists_become_lookups_and_single_values_inline_matches() {
        let (mut rs, mut t) = setup();
        let r = rule(|r| {
            r.protocol = Some(6);
            r.destination.ports = vec![PortRange { min: 80, max: 80 }];
            r.destination.not_ports =
                vec![PortRange { min: 1, max: 2 }, PortRange { min: 7, max: 7 }];
            r.source.nets = vec!["10.0.0.0/8".parse().expect("net")];
            r.source.not_nets = vec![
                "10.1.0.0/16".parse().expect("net"),
                "10.2.0.0/16".parse().expect("net"),
            ];
            r.family = Some(CalcFamily::V4);
        });
        let (out, keys) = render(&r, &mut rs, &mut t);
        assert_eq!(out.len(), 1);
        assert_eq!(
            lookups(&out[0]),
            [(names::SEL4, true), (names::PORTS, true)]
        );
        assert!(out[0].exprs.iter().any(|e| matches!(
            e,
            Expr::Range {
                op: RangeOp::EQ,
                ..
            }
        )));
        assert!(out[0].exprs.iter().any(|e| matches!(
            e,
            Expr::Cmp { op: CmpOp::EQ, data, .. } if *data == 80u16.to_be_bytes()
        )));
        assert_eq!(keys, ["nets:10.1.0.0/16,10.2.0.0/16", "ports:1-2,7-7"]);
    }

    #[test]
    fn numeric_or_named_ports_use_the_scratch_bit() {
        let (mut rs, mut t) = setup();
        let r = rule(|r| {
            r.family = Some(CalcFamily::V4);
            r.protocol = Some(6);
            r.destination.ports = vec![PortRange { min: 80, max: 80 }];
            r.destination.named_port_sets = vec!["n:http".into()];
        });
        let (out, _) = render(&r, &mut rs, &mut t);
        let scratch = Marks::default().scratch;
        assert_eq!(out.len(), 4, "clear, two alternatives, act");
        assert_eq!(out[0].exprs[..], rules::mark_clear(scratch)[..]);
        assert_eq!(lookups(&out[2]), [(names::NAMED_PORTS4, false)]);
        assert!(out[3].exprs.starts_with(&rules::mark_has(scratch)));
    }

    #[test]
    fn a_rule_whose_nets_are_of_the_other_family_never_renders() {
        let (mut rs, mut t) = setup();
        let r = rule(|r| {
            r.family = Some(CalcFamily::V4);
            r.source.nets = vec!["fd00::/64".parse().expect("net")];
        });
        assert!(render(&r, &mut rs, &mut t).0.is_empty());
    }
}
