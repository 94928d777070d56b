//! Tree rewrites used when policy selectors are scoped (selectors.md §6.3):
//! prefixing every label name (`pcns.`, `pcsa.`) and replacing the `all()`
//! or `global()` leaves with another expression.
//!
//! Hard cases: label names inside `has()` are prefixed too, while `all()`
//! and `global()` are not labels and are left alone; a replacement placed
//! under a `!` goes through [`Expr::negate`] so that `!global()` rewritten
//! to `!has(x)` becomes `has(x)`, never `!!has(x)`, keeping the tree
//! invariants that make the canonical form re-parse identically.

use crate::expr::Expr;

/// Which special leaf to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecialLeaf {
    All,
    Global,
}

impl Expr {
    /// A copy of the tree with `prefix` prepended to every label name.
    pub(crate) fn with_label_prefix(&self, prefix: &str) -> Expr {
        let prefixed = |key: &str| -> Box<str> { format!("{prefix}{key}").into() };
        match self {
            Expr::All => Expr::All,
            Expr::Global => Expr::Global,
            Expr::Has(key) => Expr::Has(prefixed(key)),
            Expr::Compare { key, op, value } => Expr::Compare {
                key: prefixed(key),
                op: *op,
                value: value.clone(),
            },
            Expr::InSet { key, negated, set } => Expr::InSet {
                key: prefixed(key),
                negated: *negated,
                set: set.clone(),
            },
            Expr::Not(inner) => Expr::Not(Box::new(inner.with_label_prefix(prefix))),
            Expr::And(operands) => Expr::And(
                operands
                    .iter()
                    .map(|e| e.with_label_prefix(prefix))
                    .collect(),
            ),
            Expr::Or(operands) => Expr::Or(
                operands
                    .iter()
                    .map(|e| e.with_label_prefix(prefix))
                    .collect(),
            ),
        }
    }

    /// A copy of the tree with every `leaf` replaced by `replacement`.
    pub(crate) fn replace_leaf(&self, leaf: SpecialLeaf, replacement: &Expr) -> Expr {
        match (self, leaf) {
            (Expr::All, SpecialLeaf::All) | (Expr::Global, SpecialLeaf::Global) => {
                replacement.clone()
            }
            (Expr::Not(inner), _) => inner.replace_leaf(leaf, replacement).negate(),
            (Expr::And(operands), _) => Expr::And(
                operands
                    .iter()
                    .map(|e| e.replace_leaf(leaf, replacement))
                    .collect(),
            ),
            (Expr::Or(operands), _) => Expr::Or(
                operands
                    .iter()
                    .map(|e| e.replace_leaf(leaf, replacement))
                    .collect(),
            ),
            (other, _) => other.clone(),
        }
    }
}
