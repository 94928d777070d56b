//! Evaluating a selector against a label map (selectors.md §3).
//!
//! [`Labels`] abstracts "look up one label by key" so callers can evaluate
//! against a plain map or against their own layered view (endpoint labels
//! shadowing profile labels, selectors.md §6.2) without building a map.
//!
//! Hard cases: `!=` and `not in` are true when the key is absent; `in {}`
//! is never true; an empty `contains` string matches any present value.
//! Evaluation allocates nothing; recursion depth is bounded by the tree
//! depth, which the parser caps.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::expr::{CompareOp, Expr};

/// Read access to a set of labels (string keys to string values).
pub trait Labels {
    /// The value of label `key`, or `None` if it is absent.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

impl Expr {
    /// True if the labels satisfy this expression.
    pub(crate) fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(key) => labels.get_label(key).is_some(),
            Expr::Compare { key, op, value } => {
                let actual = labels.get_label(key);
                match op {
                    CompareOp::Equals => actual == Some(&**value),
                    CompareOp::NotEquals => actual != Some(&**value),
                    CompareOp::Contains => actual.is_some_and(|a| a.contains(&**value)),
                    CompareOp::StartsWith => actual.is_some_and(|a| a.starts_with(&**value)),
                    CompareOp::EndsWith => actual.is_some_and(|a| a.ends_with(&**value)),
                }
            }
            Expr::InSet { key, negated, set } => {
                let found = labels.get_label(key).is_some_and(|a| set.contains(a));
                found != *negated
            }
            Expr::Not(inner) => !inner.matches(labels),
            Expr::And(operands) => operands.iter().all(|e| e.matches(labels)),
            Expr::Or(operands) => operands.iter().any(|e| e.matches(labels)),
        }
    }
}
