//! Per-endpoint chains: the walk over an endpoint's tiers and profiles in
//! one direction (policy.md §1 and §6), for workloads (`tw-`/`fw-`
//! group chains) and
//! for every class of host-endpoint chain (§7).
//!
//! The walk: clear the ACCEPT/PASS/scratch bits; per tier, clear PASS,
//! then for each policy jump to its chain while PASS is clear and return
//! once ACCEPT is set; a tier whose default action is Deny ends with a
//! drop while PASS is clear; then each profile (return once ACCEPT is
//! set); then drop. The caller (dispatch) treats a return as allowed.
//!
//! Hard cases: pre-DNAT and untracked chains end their tiers with Pass
//! and have no profiles and no final drop — a packet no policy decided
//! goes on to normal policy; host-endpoint forward chains exist only when
//! some applyOnForward policy applies in that direction (otherwise the
//! host-endpoint layer allows forwarded traffic); workload egress drops
//! VXLAN and IPIP packets unless configuration allows them.

use tortie_calc::policy::{Direction, TierAction};
use tortie_calc::state::{LocalHostEndpoint, LocalWorkloadEndpoint, PolicyChain, TierPolicies};
use tortie_dataplane::nft::rules;
use tortie_dataplane::nft::{Chain, Expr, Rule, Verdict};

use crate::exprs;
use crate::marks::Marks;
use crate::names::{self, HepClass};
use crate::rule::{Deny, deny};

/// The configuration endpoint chains depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    pub marks: Marks,
    pub deny: Deny,
    pub vxlan_port: u16,
    pub allow_vxlan_from_workloads: bool,
    pub allow_ipip_from_workloads: bool,
}

/// How a walk ends when nothing allowed the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Drop (or reject): "no policy or profile allowed".
    Deny(Deny),
    /// Return undecided (pre-DNAT and untracked chains).
    Return,
}

fn rule(parts: Vec<Vec<Expr>>, comment: Option<String>) -> Rule {
    let r = Rule::new(parts.concat());
    match comment {
        Some(c) => r.with_comment(names::comment(&c)),
        None => r,
    }
}

fn jump(chain: String) -> Vec<Expr> {
    vec![rules::verdict(Verdict::Jump(chain))]
}

fn return_if_accepted(m: Marks) -> Rule {
    rule(
        vec![
            rules::mark_has(m.accept),
            vec![rules::verdict(Verdict::Return)],
        ],
        None,
    )
}

fn tier_rules(t: &TierPolicies, dir: Direction, m: Marks, tier_deny: Deny, out: &mut Vec<Rule>) {
    out.push(rule(
        vec![rules::mark_clear(m.pass)],
        Some(format!("start of tier {}", t.name)),
    ));
    for (i, p) in t.policies.iter().enumerate() {
        let target = jump(names::policy_chain(p, dir));
        // The first policy runs right after PASS was cleared.
        let guarded = if i == 0 {
            vec![target]
        } else {
            vec![exprs::mark_none(m.pass), target]
        };
        out.push(rule(guarded, Some(format!("policy {p}"))));
        out.push(return_if_accepted(m));
    }
    if t.default_action == TierAction::Deny && !t.policies.is_empty() {
        out.push(rule(
            vec![exprs::mark_none(m.pass), deny(tier_deny)],
            Some(format!("end of tier {}", t.name)),
        ));
    }
}

/// The walk over `tiers` then `profiles` in direction `dir`.
pub fn walk(
    tiers: &[TierPolicies],
    profiles: &[String],
    dir: Direction,
    m: Marks,
    end: End,
) -> Vec<Rule> {
    let tier_deny = match end {
        End::Deny(d) => d,
        End::Return => Deny::Drop,
    };
    let mut out = vec![rule(vec![rules::mark_clear(m.all())], None)];
    for t in tiers {
        tier_rules(t, dir, m, tier_deny, &mut out);
    }
    for p in profiles {
        out.push(rule(
            vec![jump(names::profile_chain(p, dir))],
            Some(format!("profile {p}")),
        ));
        out.push(return_if_accepted(m));
    }
    if let End::Deny(d) = end {
        out.push(rule(
            vec![deny(d)],
            Some("no policy or profile allowed".into()),
        ));
    }
    out
}

fn walk_chain(c: &PolicyChain, dir: Direction, cfg: &EndpointConfig) -> Vec<Rule> {
    walk(&c.tiers, &c.profiles, dir, cfg.marks, End::Deny(cfg.deny))
}

/// The rules of the workload's ingress and egress chains (shared with
/// every workload with the same rules, `groups`).
pub fn workload_rules(w: &LocalWorkloadEndpoint, cfg: &EndpointConfig) -> [Vec<Rule>; 2] {
    let to = walk_chain(&w.ingress, Direction::Ingress, cfg);
    let mut from = walk_chain(&w.egress, Direction::Egress, cfg);
    let mut guards = Vec::new();
    if !cfg.allow_vxlan_from_workloads {
        guards.push(rule(
            vec![
                rules::l4proto(17),
                rules::dport(cfg.vxlan_port),
                vec![rules::verdict(Verdict::Drop)],
            ],
            Some("drop VXLAN from workload".into()),
        ));
    }
    if !cfg.allow_ipip_from_workloads {
        guards.push(rule(
            vec![rules::l4proto(4), vec![rules::verdict(Verdict::Drop)]],
            Some("drop IPIP from workload".into()),
        ));
    }
    // After the mark clear, before any policy.
    from.splice(1..1, guards);
    [to, from]
}

/// A host endpoint's chains, by class; classes with nothing to enforce
/// (forward, pre-DNAT, untracked without policies) are absent.
pub fn host_chains(
    name: &str,
    h: &LocalHostEndpoint,
    cfg: &EndpointConfig,
) -> Vec<(HepClass, String, Chain)> {
    let mut out = Vec::new();
    let mut put = |class: HepClass, rules: Vec<Rule>| {
        out.push((class, class.chain(name), Chain::regular(rules)));
    };
    put(
        HepClass::FromHost,
        walk_chain(&h.ingress, Direction::Ingress, cfg),
    );
    put(
        HepClass::ToHost,
        walk_chain(&h.egress, Direction::Egress, cfg),
    );
    let only_tiers = |tiers: &[TierPolicies], class: HepClass, end: End| {
        (!tiers.is_empty()).then(|| walk(tiers, &[], class.direction(), cfg.marks, end))
    };
    let classes = [
        (
            HepClass::FromForward,
            &h.forward.ingress,
            End::Deny(cfg.deny),
        ),
        (HepClass::ToForward, &h.forward.egress, End::Deny(cfg.deny)),
        (HepClass::FromPreDnat, &h.pre_dnat.ingress, End::Return),
        (HepClass::FromRaw, &h.untracked.ingress, End::Return),
        (HepClass::ToRaw, &h.untracked.egress, End::Return),
    ];
    for (class, tiers, end) in classes {
        if let Some(rules) = only_tiers(tiers, class, end) {
            put(class, rules);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_calc::{PolicyId, PolicyKind};

    fn tier(name: &str, action: TierAction, policies: &[&str]) -> TierPolicies {
        TierPolicies {
            name: name.into(),
            default_action: action,
            policies: policies
                .iter()
                .map(|p| PolicyId::new(PolicyKind::GlobalNetworkPolicy, "", p))
                .collect(),
        }
    }

    fn jumps(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .flat_map(|r| r.chain_refs().map(String::from).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn tiers_then_profiles_then_drop() {
        let m = Marks::default();
        let tiers = [
            tier("platform", TierAction::Pass, &["a", "b"]),
            tier("default", TierAction::Deny, &["c"]),
        ];
        let rules = walk(
            &tiers,
            &["kns.red".into()],
            Direction::Ingress,
            m,
            End::Deny(Deny::Drop),
        );
        assert_eq!(
            jumps(&rules),
            ["pi-gnp/a", "pi-gnp/b", "pi-gnp/c", "pri-kns.red"]
        );
        assert_eq!(rules[0].exprs[..], rules::mark_clear(m.all())[..]);
        // The second policy of a tier only runs while PASS is clear.
        let b = rules
            .iter()
            .find(|r| r.chain_refs().any(|c| c == "pi-gnp/b"))
            .expect("jump to b");
        assert!(b.exprs.starts_with(&exprs::mark_none(m.pass)));
        let end_of_tier: Vec<_> = rules
            .iter()
            .filter(|r| {
                r.comment
                    .as_deref()
                    .is_some_and(|c| c.starts_with("end of tier"))
            })
            .collect();
        assert_eq!(end_of_tier.len(), 1, "only the Deny tier drops at its end");
        let last = rules.last().expect("rules");
        assert_eq!(last.exprs[..], [rules::verdict(Verdict::Drop)]);
    }

    #[test]
    fn pass_ending_walks_return_undecided() {
        let m = Marks::default();
        let rules = walk(
            &[tier("t", TierAction::Pass, &["p"])],
            &[],
            Direction::Ingress,
            m,
            End::Return,
        );
        assert!(
            !rules
                .iter()
                .any(|r| { r.exprs.iter().any(|e| *e == rules::verdict(Verdict::Drop)) })
        );
    }
}
