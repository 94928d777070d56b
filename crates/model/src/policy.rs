//! Policy kinds: Tier, NetworkPolicy, GlobalNetworkPolicy, their staged
//! variants, and Profile (resources.md §9-11, §15; policy.md §2-4).
//!
//! On write: `tier` defaults to `default`, `types` is inferred from the rules
//! present (policy.md §3), the label `projectcalico.org/tier=<tier>` is set,
//! ports are stored in canonical form, and the reserved tiers get their
//! fixed order and default action.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::rule::{Direction, Rule, RuleContext, normalise_rules, validate_rules};
use crate::scalar::{go_float, is_dns_label, is_dns_subdomain};
use crate::validate::{Checker, quoted};

/// The label that names a policy's tier on the policy object.
pub const TIER_LABEL: &str = "projectcalico.org/tier";

/// The tier policies go to when they name none.
pub const DEFAULT_TIER: &str = "default";

/// Reserved tiers with their fixed `(order, defaultAction)`.
pub const RESERVED_TIERS: [(&str, f64, &str); 3] = [
    ("kube-admin", 1000.0, "Pass"),
    ("default", 1_000_000.0, "Deny"),
    ("kube-baseline", 10_000_000.0, "Pass"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    #[serde(default, with = "go_float", skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
}

impl SpecRules for TierSpec {
    fn apply_defaults(&mut self, meta: &mut ObjectMeta) {
        if let Some((_, order, action)) = RESERVED_TIERS.iter().find(|(n, _, _)| *n == meta.name) {
            self.order.get_or_insert(*order);
            self.default_action
                .get_or_insert_with(|| action.to_string());
        }
        self.default_action
            .get_or_insert_with(|| "Deny".to_string());
    }

    fn validate_name(name: &str, c: &mut Checker) {
        if !is_dns_label(name) {
            c.bad(
                "metadata.name",
                quoted(name),
                "a tier name must be a DNS label: lower-case letters, digits and '-', no dots, at most 63 characters",
            );
        }
    }

    fn validate(&self, meta: &ObjectMeta, c: &mut Checker) {
        if let Some(a) = &self.default_action {
            c.one_of("spec.defaultAction", a, &["Deny", "Pass"]);
        }
        if let Some(o) = self.order
            && !o.is_finite()
        {
            c.bad("spec.order", o, "must be a finite number");
        }
        if let Some((name, order, action)) = RESERVED_TIERS.iter().find(|(n, _, _)| *n == meta.name)
        {
            if self.order.is_some_and(|o| o != *order) {
                c.fail(
                    "spec.order",
                    format!("the order of the reserved tier {name:?} is fixed at {order}"),
                );
            }
            if self.default_action.as_deref().is_some_and(|a| a != *action) {
                c.fail(
                    "spec.defaultAction",
                    format!(
                        "the default action of the reserved tier {name:?} is fixed at {action}"
                    ),
                );
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    #[serde(default, with = "go_float", skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    #[serde(default, with = "go_float", skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "crate::ippool::is_false")]
    pub do_not_track: bool,
    #[serde(
        default,
        rename = "preDNAT",
        skip_serializing_if = "crate::ippool::is_false"
    )]
    pub pre_dnat: bool,
    #[serde(default, skip_serializing_if = "crate::ippool::is_false")]
    pub apply_on_forward: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

/// `stagedAction` of the staged kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StagedAction {
    Set,
    Delete,
    Learn,
    Ignore,
}

/// A staged policy: an enforced policy's spec plus `stagedAction`. Staged
/// policies are evaluated for reporting only, never enforced.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Staged<P> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
    #[serde(flatten)]
    pub policy: P,
}

pub type StagedNetworkPolicySpec = Staged<NetworkPolicySpec>;
pub type StagedGlobalNetworkPolicySpec = Staged<GlobalNetworkPolicySpec>;

/// What staging needs of the enforced policy kinds.
pub trait TieredPolicy: SpecRules + serde::de::DeserializeOwned {
    fn tier_mut(&mut self) -> &mut String;
    /// True when every field but `tier` is empty (what a staged Delete holds).
    fn non_tier_fields_empty(&self) -> bool;
}

/// Splits `stagedAction` off and decodes the rest strictly as the enforced
/// kind's spec (serde's `flatten` would let unknown fields by).
impl<'de, P: TieredPolicy> Deserialize<'de> for Staged<P> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let staged_action = map
            .remove("stagedAction")
            .map(|v| {
                serde_json::from_value(v)
                    .map_err(|e| D::Error::custom(format!("stagedAction: {e}")))
            })
            .transpose()?;
        let policy =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        Ok(Staged {
            staged_action,
            policy,
        })
    }
}

impl<P: TieredPolicy> SpecRules for Staged<P> {
    fn apply_defaults(&mut self, meta: &mut ObjectMeta) {
        self.staged_action.get_or_insert(StagedAction::Set);
        if self.staged_action == Some(StagedAction::Delete) {
            let tier = self.policy.tier_mut();
            if tier.is_empty() {
                *tier = DEFAULT_TIER.to_string();
            }
            meta.labels.insert(TIER_LABEL.to_string(), tier.clone());
        } else {
            self.policy.apply_defaults(meta);
        }
    }

    fn validate_name(name: &str, c: &mut Checker) {
        P::validate_name(name, c);
    }

    fn validate(&self, meta: &ObjectMeta, c: &mut Checker) {
        if self.staged_action == Some(StagedAction::Delete) && !self.policy.non_tier_fields_empty()
        {
            c.fail(
                "spec",
                "with stagedAction Delete, every field other than tier and stagedAction must be empty",
            );
        }
        self.policy.validate(meta, c);
    }
}

/// The fields NetworkPolicy and GlobalNetworkPolicy share, borrowed for
/// validation.
struct PolicyFields<'a> {
    tier: &'a str,
    order: Option<f64>,
    ingress: &'a [Rule],
    egress: &'a [Rule],
    selector: &'a str,
    types: &'a [PolicyType],
    service_account_selector: &'a str,
    performance_hints: &'a [String],
    global: bool,
}

/// Defaults shared by every policy kind: tier, inferred types, the tier
/// label and canonical ports.
fn default_policy(
    meta: &mut ObjectMeta,
    tier: &mut String,
    types: &mut Vec<PolicyType>,
    ingress: &mut [Rule],
    egress: &mut [Rule],
) {
    if tier.is_empty() {
        *tier = DEFAULT_TIER.to_string();
    }
    if types.is_empty() {
        *types = infer_types(!ingress.is_empty(), !egress.is_empty());
    }
    normalise_rules(ingress);
    normalise_rules(egress);
    meta.labels.insert(TIER_LABEL.to_string(), tier.clone());
}

/// Policy `types` when none are written (policy.md §3).
pub fn infer_types(has_ingress: bool, has_egress: bool) -> Vec<PolicyType> {
    match (has_ingress, has_egress) {
        (_, false) => vec![PolicyType::Ingress],
        (false, true) => vec![PolicyType::Egress],
        (true, true) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

impl PolicyFields<'_> {
    fn validate(&self, c: &mut Checker) {
        if !is_dns_label(self.tier) {
            c.bad(
                "spec.tier",
                quoted(self.tier),
                "must name a tier (a DNS label)",
            );
        }
        if let Some(o) = self.order
            && !o.is_finite()
        {
            c.bad("spec.order", o, "must be a finite number");
        }
        c.opt_selector("spec.selector", self.selector, false);
        c.opt_selector(
            "spec.serviceAccountSelector",
            self.service_account_selector,
            false,
        );
        if self.types.len() > 2 {
            c.fail(
                "spec.types",
                "at most 2 entries (Ingress, Egress) are allowed",
            );
        }
        for (i, t) in self.types.iter().enumerate() {
            if self.types[..i].contains(t) {
                c.bad(
                    format!("spec.types[{i}]"),
                    format!("{t:?}"),
                    "duplicate entry",
                );
            }
        }
        for (i, h) in self.performance_hints.iter().enumerate() {
            c.one_of(
                &format!("spec.performanceHints[{i}]"),
                h,
                &["AssumeNeededOnEveryNode"],
            );
        }
        let ctx = |direction| RuleContext {
            direction,
            global_policy: self.global,
        };
        validate_rules(c, "spec.ingress", self.ingress, ctx(Direction::Ingress));
        validate_rules(c, "spec.egress", self.egress, ctx(Direction::Egress));
    }
}

impl NetworkPolicySpec {
    fn fields(&self) -> PolicyFields<'_> {
        PolicyFields {
            tier: &self.tier,
            order: self.order,
            ingress: &self.ingress,
            egress: &self.egress,
            selector: &self.selector,
            types: &self.types,
            service_account_selector: &self.service_account_selector,
            performance_hints: &self.performance_hints,
            global: false,
        }
    }
}

impl GlobalNetworkPolicySpec {
    fn fields(&self) -> PolicyFields<'_> {
        PolicyFields {
            tier: &self.tier,
            order: self.order,
            ingress: &self.ingress,
            egress: &self.egress,
            selector: &self.selector,
            types: &self.types,
            service_account_selector: &self.service_account_selector,
            performance_hints: &self.performance_hints,
            global: true,
        }
    }

    fn validate_global_only(&self, c: &mut Checker) {
        c.opt_selector("spec.namespaceSelector", &self.namespace_selector, false);
        if self.do_not_track && self.pre_dnat {
            c.fail("spec", "doNotTrack and preDNAT cannot both be true");
        }
        if (self.do_not_track || self.pre_dnat) && !self.apply_on_forward {
            c.fail(
                "spec.applyOnForward",
                "must be true when doNotTrack or preDNAT is set",
            );
        }
        if self.pre_dnat {
            if !self.egress.is_empty() {
                c.fail("spec.egress", "a preDNAT policy may not have egress rules");
            }
            if self.types.contains(&PolicyType::Egress) {
                c.fail(
                    "spec.types",
                    "a preDNAT policy may not have the Egress type",
                );
            }
        }
    }
}

/// NetworkPolicy names: a label, `label.label`, or the reserved
/// `knp.default.<subdomain>` / `ossg.default.<subdomain>` forms.
fn validate_namespaced_policy_name(name: &str, c: &mut Checker) {
    let reserved = ["knp.default.", "ossg.default."]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(is_dns_subdomain));
    if name.len() > 253 || !(reserved || is_one_or_two_labels(name)) {
        c.bad(
            "metadata.name",
            quoted(name),
            "must be a DNS label or two labels joined by one '.' (lower-case letters, digits, '-'), at most 253 characters",
        );
    }
}

fn is_one_or_two_labels(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| is_dns_label(p))
}

fn validate_global_policy_name(name: &str, c: &mut Checker) {
    if name.len() > 253 || !is_one_or_two_labels(name) {
        c.bad(
            "metadata.name",
            quoted(name),
            "must be a DNS label or two labels joined by one '.' (lower-case letters, digits, '-'), at most 253 characters",
        );
    }
}

impl TieredPolicy for NetworkPolicySpec {
    fn tier_mut(&mut self) -> &mut String {
        &mut self.tier
    }

    fn non_tier_fields_empty(&self) -> bool {
        NetworkPolicySpec {
            tier: String::new(),
            ..self.clone()
        } == NetworkPolicySpec::default()
    }
}

impl TieredPolicy for GlobalNetworkPolicySpec {
    fn tier_mut(&mut self) -> &mut String {
        &mut self.tier
    }

    fn non_tier_fields_empty(&self) -> bool {
        GlobalNetworkPolicySpec {
            tier: String::new(),
            ..self.clone()
        } == GlobalNetworkPolicySpec::default()
    }
}

impl SpecRules for NetworkPolicySpec {
    fn apply_defaults(&mut self, meta: &mut ObjectMeta) {
        default_policy(
            meta,
            &mut self.tier,
            &mut self.types,
            &mut self.ingress,
            &mut self.egress,
        );
    }

    fn validate_name(name: &str, c: &mut Checker) {
        validate_namespaced_policy_name(name, c);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        self.fields().validate(c);
    }
}

impl SpecRules for GlobalNetworkPolicySpec {
    fn apply_defaults(&mut self, meta: &mut ObjectMeta) {
        default_policy(
            meta,
            &mut self.tier,
            &mut self.types,
            &mut self.ingress,
            &mut self.egress,
        );
    }

    fn validate_name(name: &str, c: &mut Checker) {
        validate_global_policy_name(name, c);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        self.fields().validate(c);
        self.validate_global_only(c);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl SpecRules for ProfileSpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        normalise_rules(&mut self.ingress);
        normalise_rules(&mut self.egress);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        let ctx = |direction| RuleContext {
            direction,
            global_policy: true,
        };
        validate_rules(c, "spec.ingress", &self.ingress, ctx(Direction::Ingress));
        validate_rules(c, "spec.egress", &self.egress, ctx(Direction::Egress));
        c.labels("spec.labelsToApply", &self.labels_to_apply);
    }
}
