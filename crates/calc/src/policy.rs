//! Policies and tiers as the calculation sees them: parsed once from the
//! stored resources, with their effective selectors, direction types,
//! classes and the ordering rules of policy.md §2-3.
//!
//! Ordering: tiers by ascending `order` (absent sorts after every ordered
//! tier), ties by name; policies within a tier by ascending `order`
//! (absent = +∞), ties by the string `"<name>/<namespace>/<kind>"`
//! compared bytewise. Orders are float64 and compared with a total order.
//!
//! Hard cases: empty `types` in stored data is legacy and means both
//! directions (writes default it, see `tortie_model::policy::infer_types`);
//! a StagedKubernetesNetworkPolicy is converted like a Kubernetes policy;
//! staged policies with `stagedAction` Delete or Ignore take no part (they
//! describe a removal, not a policy); a policy naming a tier that does not
//! exist is placed in an unordered tier of that name with action Deny.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use tortie_model::Resource;
use tortie_model::k8s::{K8sNetworkPolicySpec, StagedKubernetesNetworkPolicySpec};
use tortie_model::policy::{
    DEFAULT_TIER, GlobalNetworkPolicySpec, NetworkPolicySpec, PolicyType, RESERVED_TIERS,
    StagedAction, StagedGlobalNetworkPolicySpec, StagedNetworkPolicySpec, TierSpec,
};

use crate::ids::{PolicyId, PolicyKind};
use crate::rules::{ParsedRule, parse_rules};
use crate::selectors::{ScopedSelector, global_policy_selector, namespaced_policy_selector};

/// A traffic direction relative to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

/// The `AssumeNeededOnEveryNode` performance hint.
pub const ASSUME_NEEDED_HINT: &str = "AssumeNeededOnEveryNode";

/// A parsed policy of any kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub id: PolicyId,
    pub tier: String,
    pub order: Option<f64>,
    /// The effective selector (selectors.md §6.3).
    pub selector: ScopedSelector,
    pub ingress_type: bool,
    pub egress_type: bool,
    pub ingress: Vec<ParsedRule>,
    pub egress: Vec<ParsedRule>,
    pub do_not_track: bool,
    pub pre_dnat: bool,
    pub apply_on_forward: bool,
    pub assume_needed_everywhere: bool,
    /// `"<name>/<namespace>/<kind>"`, the tie-break key.
    sort_name: String,
}

/// The fields every policy kind shares, borrowed from its spec.
struct Common<'a> {
    tier: &'a str,
    order: Option<f64>,
    types: &'a [PolicyType],
    ingress: &'a [tortie_model::rule::Rule],
    egress: &'a [tortie_model::rule::Rule],
    hints: &'a [String],
}

impl Policy {
    /// Parses a policy resource. `Ok(None)` for kinds that are not policies
    /// and for staged policies that stage a deletion or are ignored.
    pub fn from_resource(r: &Resource) -> Result<Option<Policy>, String> {
        let Some(kind) = PolicyKind::from_kind(r.kind()) else {
            return Ok(None);
        };
        let ns = r.metadata.namespace.as_str();
        let id = PolicyId::new(kind, ns, &r.metadata.name);
        let staged_inactive = |a: Option<StagedAction>| {
            matches!(a, Some(StagedAction::Delete | StagedAction::Ignore))
        };
        let (np, gnp): (Option<NetworkPolicySpec>, Option<&GlobalNetworkPolicySpec>) = match kind {
            PolicyKind::NetworkPolicy => (r.spec::<NetworkPolicySpec>().cloned(), None),
            PolicyKind::StagedNetworkPolicy => match r.spec::<StagedNetworkPolicySpec>() {
                Some(s) if staged_inactive(s.staged_action) => return Ok(None),
                s => (s.map(|s| s.policy.clone()), None),
            },
            PolicyKind::StagedKubernetesNetworkPolicy => {
                match r.spec::<StagedKubernetesNetworkPolicySpec>() {
                    Some(s) if staged_inactive(s.staged_action) => return Ok(None),
                    s => (
                        s.map(|s| {
                            K8sNetworkPolicySpec {
                                pod_selector: s.pod_selector.clone(),
                                ingress: s.ingress.clone(),
                                egress: s.egress.clone(),
                                policy_types: s.policy_types.clone(),
                            }
                            .to_calico()
                        }),
                        None,
                    ),
                }
            }
            PolicyKind::GlobalNetworkPolicy => (None, r.spec::<GlobalNetworkPolicySpec>()),
            PolicyKind::StagedGlobalNetworkPolicy => {
                match r.spec::<StagedGlobalNetworkPolicySpec>() {
                    Some(s) if staged_inactive(s.staged_action) => return Ok(None),
                    s => (None, s.map(|s| &s.policy)),
                }
            }
        };
        let policy = if let Some(np) = &np {
            let common = Common {
                tier: &np.tier,
                order: np.order,
                types: &np.types,
                ingress: &np.ingress,
                egress: &np.egress,
                hints: &np.performance_hints,
            };
            let selector =
                namespaced_policy_selector(&np.selector, ns, &np.service_account_selector)?;
            Policy::build(id, common, selector, Some(ns), [false; 3])?
        } else if let Some(g) = gnp {
            let common = Common {
                tier: &g.tier,
                order: g.order,
                types: &g.types,
                ingress: &g.ingress,
                egress: &g.egress,
                hints: &g.performance_hints,
            };
            let selector = global_policy_selector(
                &g.selector,
                &g.namespace_selector,
                &g.service_account_selector,
            )?;
            let flags = [g.do_not_track, g.pre_dnat, g.apply_on_forward];
            Policy::build(id, common, selector, None, flags)?
        } else {
            return Err("spec does not match the resource kind".to_string());
        };
        Ok(Some(policy))
    }

    fn build(
        id: PolicyId,
        c: Common<'_>,
        selector: ScopedSelector,
        namespace: Option<&str>,
        [do_not_track, pre_dnat, apply_on_forward]: [bool; 3],
    ) -> Result<Policy, String> {
        if let Some(o) = c.order
            && !o.is_finite()
        {
            return Err(format!("spec.order: {o} is not a finite number"));
        }
        let (ingress_type, egress_type) = if c.types.is_empty() {
            (true, true)
        } else {
            (
                c.types.contains(&PolicyType::Ingress),
                c.types.contains(&PolicyType::Egress),
            )
        };
        let tier = if c.tier.is_empty() {
            DEFAULT_TIER.to_string()
        } else {
            c.tier.to_string()
        };
        Ok(Policy {
            sort_name: format!("{}/{}/{}", id.name, id.namespace, id.kind.name()),
            tier,
            order: c.order,
            selector,
            ingress_type,
            egress_type,
            ingress: parse_rules(c.ingress, namespace, "spec.ingress")?,
            egress: parse_rules(c.egress, namespace, "spec.egress")?,
            do_not_track,
            pre_dnat,
            apply_on_forward,
            assume_needed_everywhere: c.hints.iter().any(|h| h == ASSUME_NEEDED_HINT),
            id,
        })
    }

    pub fn staged(&self) -> bool {
        self.id.kind.is_staged()
    }

    /// True if the policy takes part in `direction` (its `types`).
    pub fn applies_in(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress_type,
            Direction::Egress => self.egress_type,
        }
    }

    pub fn rules(&self, direction: Direction) -> &[ParsedRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// True if the policy can apply to workload endpoints: namespaced and
    /// global kinds, but not preDNAT or doNotTrack policies (policy.md §3).
    pub fn applies_to_workloads(&self) -> bool {
        !self.pre_dnat && !self.do_not_track
    }

    /// True if the policy can apply to host endpoints: global kinds only.
    pub fn applies_to_hosts(&self) -> bool {
        !self.id.kind.is_namespaced()
    }

    /// The host-endpoint policy classes this policy belongs to (§7).
    pub fn host_classes(&self) -> &'static [HostPolicyClass] {
        if self.pre_dnat {
            &[HostPolicyClass::PreDnat]
        } else if self.do_not_track {
            &[HostPolicyClass::Untracked]
        } else if self.apply_on_forward {
            &[HostPolicyClass::Normal, HostPolicyClass::Forward]
        } else {
            &[HostPolicyClass::Normal]
        }
    }

    /// True if `other` places the same endpoints in the same tiers at the
    /// same position (only rules may differ).
    pub fn same_placement(&self, other: &Policy) -> bool {
        self.selector.selector == other.selector.selector
            && self.tier == other.tier
            && self.order.map(f64::to_bits) == other.order.map(f64::to_bits)
            && self.ingress_type == other.ingress_type
            && self.egress_type == other.egress_type
            && self.host_classes() == other.host_classes()
    }

    /// The order key within a tier (policy.md §2).
    pub fn compare_in_tier(&self, other: &Policy) -> Ordering {
        let a = self.order.unwrap_or(f64::INFINITY);
        let b = other.order.unwrap_or(f64::INFINITY);
        a.total_cmp(&b)
            .then_with(|| self.sort_name.as_bytes().cmp(other.sort_name.as_bytes()))
    }
}

/// The classes of host-endpoint policy (policy.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HostPolicyClass {
    /// Traffic to or from the host itself (filter table).
    Normal,
    /// Traffic forwarded through the interface (`applyOnForward`).
    Forward,
    /// Before DNAT, ingress only (`preDNAT`).
    PreDnat,
    /// Untracked, raw table (`doNotTrack`).
    Untracked,
}

/// What happens at the end of a tier when no policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TierAction {
    Deny,
    Pass,
}

/// A tier's place and end-of-tier action.
#[derive(Clone, Debug, PartialEq)]
pub struct TierInfo {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: TierAction,
}

impl TierInfo {
    /// The settings of a stored tier. The reserved tiers keep their fixed
    /// order and action whatever the stored spec says (resources.md §9).
    pub fn from_spec(name: &str, spec: &TierSpec) -> Result<TierInfo, String> {
        if RESERVED_TIERS.iter().any(|(n, _, _)| *n == name) {
            return Ok(TierInfo::implicit(name));
        }
        let default_action = match spec.default_action.as_deref() {
            None | Some("Deny") => TierAction::Deny,
            Some("Pass") => TierAction::Pass,
            Some(other) => return Err(format!("spec.defaultAction: unknown action {other:?}")),
        };
        if let Some(o) = spec.order
            && !o.is_finite()
        {
            return Err(format!("spec.order: {o} is not a finite number"));
        }
        Ok(TierInfo {
            name: name.to_string(),
            order: spec.order,
            default_action,
        })
    }

    /// The tier assumed when no Tier resource exists: the reserved tiers'
    /// fixed settings, else unordered with action Deny.
    pub fn implicit(name: &str) -> TierInfo {
        match RESERVED_TIERS.iter().find(|(n, _, _)| *n == name) {
            Some((_, order, action)) => TierInfo {
                name: name.to_string(),
                order: Some(*order),
                default_action: if *action == "Pass" {
                    TierAction::Pass
                } else {
                    TierAction::Deny
                },
            },
            None => TierInfo {
                name: name.to_string(),
                order: None,
                default_action: TierAction::Deny,
            },
        }
    }

    /// Tier order (policy.md §2).
    pub fn compare(&self, other: &TierInfo) -> Ordering {
        let a = self.order.unwrap_or(f64::INFINITY);
        let b = other.order.unwrap_or(f64::INFINITY);
        a.total_cmp(&b)
            .then_with(|| self.name.as_bytes().cmp(other.name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_tiers_keep_their_settings() {
        let stored = TierSpec {
            order: None,
            default_action: Some("Pass".into()),
        };
        let t = TierInfo::from_spec("default", &stored).unwrap();
        assert_eq!(
            (t.order, t.default_action),
            (Some(1_000_000.0), TierAction::Deny)
        );
        let t = TierInfo::from_spec("mine", &stored).unwrap();
        assert_eq!((t.order, t.default_action), (None, TierAction::Pass));
        assert_eq!(
            TierInfo::implicit("kube-admin").default_action,
            TierAction::Pass
        );
        assert_eq!(TierInfo::implicit("unknown").order, None);
    }

    #[test]
    fn unordered_tiers_sort_last_then_by_name() {
        let t = |n: &str, o: Option<f64>| TierInfo {
            name: n.into(),
            order: o,
            default_action: TierAction::Deny,
        };
        let mut v = [
            t("b", None),
            t("z", Some(1e7)),
            t("a", None),
            t("y", Some(0.5)),
        ];
        v.sort_by(|a, b| a.compare(b));
        let names: Vec<&str> = v.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["y", "z", "a", "b"]);
    }
}

/// One participating tier with its applicable policies in order.
#[derive(Clone, Debug)]
pub struct TierGroup<'a> {
    pub tier: TierInfo,
    pub policies: Vec<&'a Policy>,
}

/// Groups the policies that take part in `direction` by tier, both in
/// evaluation order. Tiers with no such policy do not participate.
pub fn ordered_tiers<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    direction: Direction,
    tier_info: impl Fn(&str) -> TierInfo,
) -> Vec<TierGroup<'a>> {
    let mut groups: Vec<TierGroup<'a>> = Vec::new();
    for p in policies.into_iter().filter(|p| p.applies_in(direction)) {
        match groups.iter_mut().find(|g| g.tier.name == p.tier) {
            Some(g) => g.policies.push(p),
            None => groups.push(TierGroup {
                tier: tier_info(&p.tier),
                policies: vec![p],
            }),
        }
    }
    groups.sort_by(|a, b| a.tier.compare(&b.tier));
    for g in &mut groups {
        g.policies.sort_by(|a, b| a.compare_in_tier(b));
    }
    groups
}
