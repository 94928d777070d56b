//! Selector guards: one label condition that every item a selector matches
//! must meet, so the label index can find a selector's candidates (and an
//! item's candidate selectors) by label value instead of evaluating every
//! selector against every item.
//!
//! A guard comes from the selector itself — the whole selector, or one
//! top-level `&&` operand, being `key == "v"`, `key in {…}` or `has(key)`
//! — and from the namespace scope the calculation attached to it, alone or
//! together with the selector's own value condition. Which operand is used
//! is a cost choice only: any operand of a conjunction is implied by it,
//! so the guard never changes what matches.
//!
//! Hard cases: the selector crate keeps its syntax tree private, so the
//! structure is read back from the canonical form (selectors.md §4), whose
//! grammar is fixed: label names hold no spaces, quotes or brackets, and a
//! value is quoted with `"` unless it contains one, then with `'`. Every
//! reading is checked by rebuilding the selector from the pieces and
//! comparing canonical forms; anything that does not rebuild identically
//! (including label names too long to re-parse, which prefixing can make)
//! gets no guard and is evaluated against every item, as before.

use std::collections::BTreeMap;

use tortie_model::endpoint::NAMESPACE_LABEL;
use tortie_selector::Selector;

use crate::selectors::ScopedSelector;

/// A condition on an item's labels implied by a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// The label `key` is present with one of `values` (none: the selector
    /// matches nothing).
    Values {
        key: Box<str>,
        values: Vec<Box<str>>,
    },
    /// The item is in `namespace` and its label `key` has one of `values`:
    /// a namespaced selector's own condition within its scope. Every
    /// policy of a namespace shares the scope, so the scope alone would
    /// make each of them a candidate for every endpoint of the namespace.
    Scoped {
        namespace: Box<str>,
        key: Box<str>,
        values: Vec<Box<str>>,
    },
    /// The label `key` is present.
    Has { key: Box<str> },
    /// No usable condition: every item is a candidate.
    Unguarded,
}

impl Guard {
    /// The guard the index files `selector` under. Among the selector's
    /// own conditions: a value condition on the label with the most
    /// distinct values among the items indexed so far (`distinct_values`,
    /// a proxy for selectivity), then presence. A namespace scope is
    /// combined with the own value condition ([`Guard::Scoped`]), or used
    /// alone when there is none.
    pub(crate) fn of(selector: &ScopedSelector, distinct_values: impl Fn(&str) -> usize) -> Guard {
        let rank = |g: &Guard| match g {
            Guard::Values { key, .. } => (0, usize::MAX - distinct_values(key)),
            Guard::Has { .. } => (1, 0),
            Guard::Scoped { .. } | Guard::Unguarded => (2, 0),
        };
        let scope = selector.namespace.as_ref();
        // Under a scope the namespace condition is the scope's part.
        let own = conjunct_guards(&selector.selector)
            .into_iter()
            .filter(|g| {
                scope.is_none()
                    || !matches!(g, Guard::Values { key, .. } if &**key == NAMESPACE_LABEL)
            })
            .min_by_key(rank);
        let Some(namespace) = scope else {
            return own.unwrap_or(Guard::Unguarded);
        };
        match own {
            Some(Guard::Values { key, values }) => Guard::Scoped {
                namespace: namespace.as_ref().into(),
                key,
                values,
            },
            _ => Guard::Values {
                key: NAMESPACE_LABEL.into(),
                values: vec![namespace.as_ref().into()],
            },
        }
    }

    /// Whether `labels` meet the guard (those of every item the selector
    /// matches do).
    pub(crate) fn admits(&self, labels: &BTreeMap<String, String>) -> bool {
        let value_in = |key: &str, values: &[Box<str>]| {
            labels
                .get(key)
                .is_some_and(|v| values.iter().any(|x| **x == **v))
        };
        match self {
            Guard::Values { key, values } => value_in(key, values),
            Guard::Scoped {
                namespace,
                key,
                values,
            } => {
                labels
                    .get(NAMESPACE_LABEL)
                    .is_some_and(|n| **n == **namespace)
                    && value_in(key, values)
            }
            Guard::Has { key } => labels.contains_key(&**key),
            Guard::Unguarded => true,
        }
    }
}

/// The guards of the selector's leaf, or of its top-level `&&` operands
/// that are guard leaves; empty when none is found or the reading does not
/// rebuild the selector exactly.
fn conjunct_guards(selector: &Selector) -> Vec<Guard> {
    let text = selector.canonical();
    if let Some(g) = leaf_guard(text) {
        return vec![g];
    }
    let Some(operands) = top_level_and(text) else {
        return Vec::new();
    };
    let mut parsed = Vec::with_capacity(operands.len());
    for op in &operands {
        match Selector::parse(op) {
            Ok(s) => parsed.push(s),
            Err(_) => return Vec::new(),
        }
    }
    if Selector::and(&parsed).canonical() != text {
        return Vec::new();
    }
    operands.iter().filter_map(|op| leaf_guard(op)).collect()
}

/// Splits `(a && b && …)` into its operands; `None` if `text` is not one
/// conjunction group.
fn top_level_and(text: &str) -> Option<Vec<&str>> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let bytes = inner.as_bytes();
    let mut operands = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'(' | b'{' => depth += 1,
            b')' | b'}' => depth = depth.checked_sub(1)?,
            b' ' if depth == 0 => {
                let rest = &inner[i..];
                if rest.starts_with(" || ") {
                    return None;
                }
                if rest.starts_with(" && ") {
                    operands.push(&inner[start..i]);
                    i += 4;
                    start = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 || quote.is_some() || operands.is_empty() {
        return None;
    }
    operands.push(&inner[start..]);
    Some(operands)
}

/// The guard `text` is, if it is exactly `has(k)`, `k == "v"` or
/// `k in {…}` in canonical form.
fn leaf_guard(text: &str) -> Option<Guard> {
    if let Some(key) = text.strip_prefix("has(").and_then(|t| t.strip_suffix(')')) {
        let rebuilt = Selector::has(key).ok()?;
        return (rebuilt.canonical() == text).then(|| Guard::Has { key: key.into() });
    }
    let (key, rest) = text.split_once(' ')?;
    let values: Vec<&str> = if let Some(quoted) = rest.strip_prefix("== ") {
        let (value, tail) = unquote(quoted)?;
        if !tail.is_empty() {
            return None;
        }
        let rebuilt = Selector::label_equals(key, value).ok()?;
        if rebuilt.canonical() != text {
            return None;
        }
        vec![value]
    } else {
        let mut list = rest.strip_prefix("in {")?.strip_suffix('}')?;
        let mut values = Vec::new();
        while !list.is_empty() {
            let (value, tail) = unquote(list)?;
            values.push(value);
            list = match tail.strip_prefix(", ") {
                Some(t) => t,
                None if tail.is_empty() => tail,
                None => return None,
            };
        }
        let rebuilt = Selector::label_in(key, &values).ok()?;
        if rebuilt.canonical() != text {
            return None;
        }
        values
    };
    Some(Guard::Values {
        key: key.into(),
        values: values.into_iter().map(Box::from).collect(),
    })
}

/// Splits a leading quoted value off `text`: (value, the rest).
fn unquote(text: &str) -> Option<(&str, &str)> {
    let q = text.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &text[1..];
    let end = body.find(q)?;
    Some((&body[..end], &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn guard(text: &str, ns: Option<&str>) -> Guard {
        let distinct = |key: &str| usize::from(key == "tier");
        Guard::of(
            &ScopedSelector {
                selector: Selector::parse(text).expect("test selectors parse"),
                namespace: ns.map(Arc::from),
            },
            distinct,
        )
    }

    fn values(key: &str, vs: &[&str]) -> Guard {
        Guard::Values {
            key: key.into(),
            values: vs.iter().map(|v| Box::from(*v)).collect(),
        }
    }

    #[test]
    fn leaves_and_conjunctions_give_guards() {
        assert_eq!(guard("app == 'x'", None), values("app", &["x"]));
        assert_eq!(guard("app in {'b', 'a'}", None), values("app", &["a", "b"]));
        assert_eq!(guard("app in {}", None), values("app", &[]));
        assert_eq!(guard("has(app)", None), Guard::Has { key: "app".into() });
        // Values beat has(); among values, the label with more distinct
        // values wins.
        assert_eq!(
            guard(
                "projectcalico.org/namespace == 'n' && has(x) && tier == 'web'",
                None
            ),
            values("tier", &["web"])
        );
        // A scope combines with the selector's own value condition.
        assert_eq!(
            guard("app == 'a' && has(x)", Some("n")),
            Guard::Scoped {
                namespace: "n".into(),
                key: "app".into(),
                values: vec!["a".into()],
            }
        );
        assert_eq!(
            guard("app == 'a' && has(x) && tier == 'web'", None),
            values("tier", &["web"])
        );
        assert_eq!(guard("has(x) && app == 'a'", None), values("app", &["a"]));
        assert_eq!(
            guard("has(x) && !(a == 'b')", Some("n")),
            values(NAMESPACE_LABEL, &["n"])
        );
        assert_eq!(
            guard("has(x) && (a == 'b' || c == 'd')", None),
            Guard::Has { key: "x".into() }
        );
        // Quoted text that looks like syntax stays a value.
        assert_eq!(
            guard("a == 'x && b == \"y\"' && c != 'z'", None),
            values("a", &["x && b == \"y\""])
        );
        assert_eq!(guard("a == 'p) || (q'", None), values("a", &["p) || (q"]));
    }

    #[test]
    fn disjunctions_negations_and_others_are_unguarded() {
        for text in [
            "",
            "all()",
            "a == 'x' || b == 'y'",
            "!(a == 'x')",
            "a != 'x'",
            "a not in {'x'}",
            "a contains 'x'",
            "(a == 'x' || b == 'y') && c starts with 'z'",
        ] {
            assert_eq!(guard(text, None), Guard::Unguarded, "{text}");
        }
    }

    #[test]
    fn guards_never_exclude_a_match() {
        let selectors = [
            "app == 'x' && tier in {'web', 'db'}",
            "has(tier) && app == 'y'",
            "(app == 'x' && has(v)) && tier == 'db'",
            "app in {'x', 'y'} && !has(v)",
        ];
        let label_sets: Vec<std::collections::BTreeMap<String, String>> = [
            &[("app", "x"), ("tier", "web")][..],
            &[("app", "y"), ("tier", "db"), ("v", "1")],
            &[("app", "x"), ("tier", "db"), ("v", "2")],
            &[("tier", "db")],
            &[],
        ]
        .iter()
        .map(|ls| {
            ls.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
        for text in selectors {
            let s = Selector::parse(text).expect("test selectors parse");
            let g = guard(text, None);
            assert_ne!(g, Guard::Unguarded, "{text}");
            for labels in &label_sets {
                assert!(
                    g.admits(labels) || !s.matches(labels),
                    "{text} vs {labels:?}"
                );
            }
        }
    }
}
