//! How policy and rule selectors are rewritten before evaluation
//! (selectors.md §6.3), and the namespace *scope* the calculation attaches
//! to a rewritten selector.
//!
//! Policy selectors: a namespaced policy is ANDed with
//! `projectcalico.org/namespace == 'N'`; a global policy's
//! `namespaceSelector` is `pcns.`-prefixed with `all()` becoming
//! `has(projectcalico.org/namespace)`; `serviceAccountSelector` is
//! `pcsa.`-prefixed (and, in global policies only, `all()` becomes
//! `has(projectcalico.org/serviceaccount)`).
//!
//! Rule peers: a namespace part (from `namespaceSelector`, where `global()`
//! means `!has(projectcalico.org/namespace)`, or the policy's own namespace)
//! is ANDed in front of the endpoint part (`selector`, then
//! `serviceAccounts`) whenever the rule uses any of selector,
//! serviceAccounts, notSelector or namespaceSelector. `notSelector` is
//! never scoped or prefixed.
//!
//! Hard cases: a rule with only `notSelector` in a namespaced policy still
//! gets the positive namespace selector (its peers must be in the
//! namespace *and* not match); `global()` must stand alone in a rule's
//! namespaceSelector and is invalid everywhere else.
//!
//! The *scope* is an optimisation the label index uses: when this module
//! itself ANDs `projectcalico.org/namespace == 'N'` into a selector, the
//! selector can only match things whose effective namespace label is `N`,
//! so the index evaluates it only against those.

use std::sync::Arc;

use tortie_model::endpoint::{NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL};
use tortie_model::rule::EntityRule;
use tortie_selector::Selector;

/// Prefix of namespace labels inherited from `kns.<ns>` profiles.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// Prefix of service-account labels inherited from `ksa.<ns>.<sa>` profiles.
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";

/// A selector with the namespace it is known to be restricted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedSelector {
    pub selector: Selector,
    /// `Some(N)`: matches only things whose `projectcalico.org/namespace`
    /// label is `N`. `None`: no known restriction.
    pub namespace: Option<Arc<str>>,
}

impl ScopedSelector {
    pub fn unscoped(selector: Selector) -> ScopedSelector {
        ScopedSelector {
            selector,
            namespace: None,
        }
    }
}

fn parse(field: &str, text: &str) -> Result<Selector, String> {
    let sel = Selector::parse(text).map_err(|e| format!("{field}: {e}"))?;
    if sel.uses_global() {
        return Err(format!("{field}: global() is not allowed here"));
    }
    Ok(sel)
}

fn namespace_equals(namespace: &str) -> Result<Selector, String> {
    Selector::label_equals(NAMESPACE_LABEL, namespace).map_err(|e| e.to_string())
}

fn has_label(label: &str) -> Selector {
    Selector::has(label).expect("the implicit label names are valid selector labels")
}

/// The effective selector of a namespaced policy in `namespace`.
pub fn namespaced_policy_selector(
    selector: &str,
    namespace: &str,
    service_account_selector: &str,
) -> Result<ScopedSelector, String> {
    let ns = namespace_equals(namespace)?;
    let mut sel = if selector.trim().is_empty() {
        ns
    } else {
        Selector::and(&[parse("spec.selector", selector)?, ns])
    };
    if !service_account_selector.trim().is_empty() {
        let sa = parse("spec.serviceAccountSelector", service_account_selector)?
            .with_label_prefix(SERVICE_ACCOUNT_LABEL_PREFIX);
        sel = Selector::and(&[sel, sa]);
    }
    Ok(ScopedSelector {
        selector: sel,
        namespace: Some(namespace.into()),
    })
}

/// The effective selector of a global policy.
pub fn global_policy_selector(
    selector: &str,
    namespace_selector: &str,
    service_account_selector: &str,
) -> Result<ScopedSelector, String> {
    let mut sel = parse("spec.selector", selector)?;
    if !namespace_selector.trim().is_empty() {
        let ns = parse("spec.namespaceSelector", namespace_selector)?
            .with_label_prefix(NAMESPACE_LABEL_PREFIX)
            .with_all_replaced_by(&has_label(NAMESPACE_LABEL));
        sel = Selector::and(&[sel, ns]);
    }
    if !service_account_selector.trim().is_empty() {
        let sa = parse("spec.serviceAccountSelector", service_account_selector)?
            .with_label_prefix(SERVICE_ACCOUNT_LABEL_PREFIX)
            .with_all_replaced_by(&has_label(SERVICE_ACCOUNT_LABEL));
        sel = Selector::and(&[sel, sa]);
    }
    Ok(ScopedSelector::unscoped(sel))
}

/// The selectors of one rule entity after rewriting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSelectors {
    /// Peers must be in this selector's set (when present).
    pub selector: Option<ScopedSelector>,
    /// Peers must not be in this selector's set (when present).
    pub not_selector: Option<ScopedSelector>,
}

/// Rewrites a rule entity's selectors; `policy_namespace` is the namespace
/// of a namespaced policy, `None` for global policies and profiles.
pub fn peer_selectors(
    entity: &EntityRule,
    policy_namespace: Option<&str>,
    path: &str,
) -> Result<PeerSelectors, String> {
    // 1. The namespace part, and the scope it implies.
    let (ns_part, scope): (Option<Selector>, Option<Arc<str>>) =
        if !entity.namespace_selector.trim().is_empty() {
            let field = format!("{path}.namespaceSelector");
            let raw =
                Selector::parse(&entity.namespace_selector).map_err(|e| format!("{field}: {e}"))?;
            let part = if raw.is_global() {
                has_label(NAMESPACE_LABEL).negated()
            } else if raw.uses_global() {
                return Err(format!("{field}: global() must stand alone"));
            } else {
                raw.with_label_prefix(NAMESPACE_LABEL_PREFIX)
                    .with_all_replaced_by(&has_label(NAMESPACE_LABEL))
            };
            (Some(part), None)
        } else if let Some(ns) = policy_namespace {
            (Some(namespace_equals(ns)?), Some(ns.into()))
        } else {
            (None, None)
        };

    // 2. The endpoint part: selector, then service accounts.
    let mut endpoint_parts = Vec::new();
    if !entity.selector.trim().is_empty() {
        endpoint_parts.push(parse(&format!("{path}.selector"), &entity.selector)?);
    }
    if let Some(sa) = &entity.service_accounts {
        let mut sa_parts = Vec::new();
        if !sa.selector.trim().is_empty() {
            sa_parts.push(
                parse(&format!("{path}.serviceAccounts.selector"), &sa.selector)?
                    .with_label_prefix(SERVICE_ACCOUNT_LABEL_PREFIX),
            );
        }
        if !sa.names.is_empty() {
            sa_parts.push(
                Selector::label_in(SERVICE_ACCOUNT_LABEL, &sa.names)
                    .map_err(|e| format!("{path}.serviceAccounts.names: {e}"))?,
            );
        }
        if !sa_parts.is_empty() {
            endpoint_parts.push(Selector::and(&sa_parts));
        }
    }
    let endpoint_part = (!endpoint_parts.is_empty()).then(|| Selector::and(&endpoint_parts));

    let not_selector = if entity.not_selector.trim().is_empty() {
        None
    } else {
        Some(ScopedSelector::unscoped(parse(
            &format!("{path}.notSelector"),
            &entity.not_selector,
        )?))
    };

    // 3. Combine.
    let uses_peer_match = endpoint_part.is_some()
        || not_selector.is_some()
        || !entity.namespace_selector.trim().is_empty();
    let selector = match (ns_part, endpoint_part) {
        (Some(ns), Some(ep)) if uses_peer_match => Some(ScopedSelector {
            selector: Selector::and(&[ns, ep]),
            namespace: scope,
        }),
        (Some(ns), None) if uses_peer_match => Some(ScopedSelector {
            selector: ns,
            namespace: scope,
        }),
        (_, Some(ep)) => Some(ScopedSelector::unscoped(ep)),
        _ => None,
    };
    Ok(PeerSelectors {
        selector,
        not_selector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_model::rule::ServiceAccountMatch;

    fn entity(f: impl FnOnce(&mut EntityRule)) -> EntityRule {
        let mut e = EntityRule::default();
        f(&mut e);
        e
    }

    fn canon(s: &Option<ScopedSelector>) -> Option<&str> {
        s.as_ref().map(|s| s.selector.canonical())
    }

    #[test]
    fn policy_selectors_are_scoped_and_prefixed() {
        let np = namespaced_policy_selector("app == 'a'", "prod", "").unwrap();
        assert_eq!(
            np.selector.canonical(),
            r#"(app == "a" && projectcalico.org/namespace == "prod")"#
        );
        assert_eq!(np.namespace.as_deref(), Some("prod"));
        let np = namespaced_policy_selector("", "prod", "role == 'x'").unwrap();
        assert_eq!(
            np.selector.canonical(),
            r#"(projectcalico.org/namespace == "prod" && pcsa.role == "x")"#
        );
        let gnp = global_policy_selector("app == 'a'", "all()", "all()").unwrap();
        assert_eq!(
            gnp.selector.canonical(),
            r#"((app == "a" && has(projectcalico.org/namespace)) && has(projectcalico.org/serviceaccount))"#
        );
        assert_eq!(gnp.namespace, None);
        let gnp = global_policy_selector("", "env == 'dev'", "").unwrap();
        assert_eq!(gnp.selector.canonical(), r#"(all() && pcns.env == "dev")"#);
        assert!(global_policy_selector("global()", "", "").is_err());
    }

    #[test]
    fn rule_selectors_follow_the_spec_consequences() {
        // In a namespaced policy a plain selector only matches the same namespace.
        let p = peer_selectors(
            &entity(|e| e.selector = "role == 'fe'".into()),
            Some("n"),
            "r",
        )
        .unwrap();
        assert_eq!(
            canon(&p.selector),
            Some(r#"(projectcalico.org/namespace == "n" && role == "fe")"#)
        );
        assert_eq!(p.selector.unwrap().namespace.as_deref(), Some("n"));
        // namespaceSelector all() alone: any workload in any namespace.
        let p = peer_selectors(
            &entity(|e| e.namespace_selector = "all()".into()),
            Some("n"),
            "r",
        )
        .unwrap();
        assert_eq!(canon(&p.selector), Some("has(projectcalico.org/namespace)"));
        assert_eq!(p.selector.unwrap().namespace, None);
        // global(): only non-namespaced things, with or without a selector.
        let p = peer_selectors(
            &entity(|e| {
                e.namespace_selector = "global()".into();
                e.selector = "a == 'b'".into();
            }),
            Some("n"),
            "r",
        )
        .unwrap();
        assert_eq!(
            canon(&p.selector),
            Some(r#"(!has(projectcalico.org/namespace) && a == "b")"#)
        );
        assert!(
            peer_selectors(
                &entity(|e| e.namespace_selector = "global() || a == 'b'".into()),
                None,
                "r"
            )
            .is_err()
        );
        // notSelector is not scoped, but still brings in the namespace part.
        let p = peer_selectors(
            &entity(|e| e.not_selector = "x == 'y'".into()),
            Some("n"),
            "r",
        )
        .unwrap();
        assert_eq!(
            canon(&p.selector),
            Some(r#"projectcalico.org/namespace == "n""#)
        );
        assert_eq!(canon(&p.not_selector), Some(r#"x == "y""#));
        // A rule with no peer match has no selector at all, even when namespaced.
        let p = peer_selectors(
            &entity(|e| e.nets = vec!["10.0.0.0/8".into()]),
            Some("n"),
            "r",
        )
        .unwrap();
        assert_eq!(p, PeerSelectors::default());
        // Global policy, no namespace selector: unscoped.
        let p = peer_selectors(&entity(|e| e.selector = "a == 'b'".into()), None, "r").unwrap();
        assert_eq!(canon(&p.selector), Some(r#"a == "b""#));
        // Service accounts: selector then names, ANDed, after the selector.
        let p = peer_selectors(
            &entity(|e| {
                e.selector = "app == 'x'".into();
                e.service_accounts = Some(ServiceAccountMatch {
                    names: vec!["b".into(), "a".into()],
                    selector: "role == 'r'".into(),
                });
            }),
            Some("n"),
            "r",
        )
        .unwrap();
        assert_eq!(
            canon(&p.selector),
            Some(
                r#"(projectcalico.org/namespace == "n" && (app == "x" && (pcsa.role == "r" && projectcalico.org/serviceaccount in {"a", "b"})))"#
            )
        );
    }
}
