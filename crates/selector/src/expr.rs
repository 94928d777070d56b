//! The selector syntax tree and the invariants every tree keeps.
//!
//! Trees come from the parser or from the constructors on
//! [`Selector`](crate::Selector). Both keep three invariants, which are what
//! make printing canonical and `parse(print(t))` print identically:
//!
//! - `And`/`Or` nodes have at least two operands (a one-operand group is
//!   just its operand);
//! - there is never a `Not` directly inside a `Not` (`!` is collapsed by
//!   parity, see [`Expr::negate`]);
//! - set literals are sorted in byte order and de-duplicated ([`ValueSet`]).
//!
//! Nested `And`-in-`And` (from explicit parentheses) is kept, not
//! flattened: the canonical form preserves the tree shape (selectors.md §4).

/// The comparison operators between a label's value and a string literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CompareOp {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
}

/// Sets up to this size are searched linearly, larger ones by binary search.
const SMALL_SET: usize = 8;

/// A sorted, de-duplicated set of values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ValueSet(Box<[Box<str>]>);

impl ValueSet {
    /// Builds the set, sorting and removing duplicates.
    pub(crate) fn new(mut values: Vec<Box<str>>) -> Self {
        values.sort_unstable();
        values.dedup();
        ValueSet(values.into_boxed_slice())
    }

    /// True if `value` is in the set. Small sets (the usual case) are
    /// scanned: string equality rejects on length first, and the
    /// `eval_1000_endpoints/*/in_set` benchmark ran about a third faster
    /// than with binary search for a 4-item set.
    pub(crate) fn contains(&self, value: &str) -> bool {
        if self.0.len() <= SMALL_SET {
            self.0.iter().any(|v| **v == *value)
        } else {
            self.0.binary_search_by(|v| (**v).cmp(value)).is_ok()
        }
    }

    /// The values in canonical (byte) order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|v| &**v)
    }
}

/// A selector expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Expr {
    /// `all()`, also the empty selector.
    All,
    /// `global()`.
    Global,
    /// `has(key)`.
    Has(Box<str>),
    /// `key <op> "value"`.
    Compare {
        key: Box<str>,
        op: CompareOp,
        value: Box<str>,
    },
    /// `key in {…}`, or `key not in {…}` when `negated`.
    InSet {
        key: Box<str>,
        negated: bool,
        set: ValueSet,
    },
    /// `!expr`; never directly contains another `Not`.
    Not(Box<Expr>),
    /// `(a && b && …)` with at least two operands.
    And(Vec<Expr>),
    /// `(a || b || …)` with at least two operands.
    Or(Vec<Expr>),
}

impl Expr {
    /// The negation of `self`, cancelling a `Not` instead of stacking a
    /// second one.
    pub(crate) fn negate(self) -> Expr {
        match self {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// A conjunction of `operands`: `all()` when empty, the operand itself
    /// when there is one.
    pub(crate) fn and(operands: Vec<Expr>) -> Expr {
        Self::group(operands, Expr::And, Expr::All)
    }

    /// A disjunction of `operands`: `!all()` when empty, the operand itself
    /// when there is one.
    pub(crate) fn or(operands: Vec<Expr>) -> Expr {
        Self::group(operands, Expr::Or, Expr::All.negate())
    }

    fn group(mut operands: Vec<Expr>, node: fn(Vec<Expr>) -> Expr, empty: Expr) -> Expr {
        match operands.len() {
            0 => empty,
            1 => operands.pop().expect("length was checked to be 1"),
            _ => node(operands),
        }
    }

    /// True if `global()` appears anywhere in the tree.
    pub(crate) fn uses_global(&self) -> bool {
        match self {
            Expr::Global => true,
            Expr::All | Expr::Has(_) | Expr::Compare { .. } | Expr::InSet { .. } => false,
            Expr::Not(inner) => inner.uses_global(),
            Expr::And(operands) | Expr::Or(operands) => operands.iter().any(Expr::uses_global),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_set_sorts_dedups_and_searches() {
        let set = ValueSet::new(vec!["z".into(), "a".into(), "z".into(), "".into()]);
        assert_eq!(set.iter().collect::<Vec<_>>(), ["", "a", "z"]);
        assert!(set.contains(""));
        assert!(set.contains("z"));
        assert!(!set.contains("b"));
        assert!(!ValueSet::new(Vec::new()).contains(""));
    }

    #[test]
    fn small_and_large_sets_search_alike() {
        for size in [SMALL_SET, SMALL_SET + 1, 100] {
            let set = ValueSet::new((0..size).rev().map(|i| format!("v{i}").into()).collect());
            for i in 0..size {
                assert!(set.contains(&format!("v{i}")), "size {size}, v{i}");
            }
            for absent in ["", "v", &format!("v{size}"), "w0"] {
                assert!(!set.contains(absent), "size {size}, {absent:?}");
            }
        }
    }

    #[test]
    fn negate_cancels_by_parity() {
        let has = Expr::Has("a".into());
        assert_eq!(has.clone().negate().negate(), has);
        assert_eq!(has.clone().negate(), Expr::Not(Box::new(has)));
    }

    #[test]
    fn groups_of_zero_and_one() {
        let has = Expr::Has("a".into());
        assert_eq!(Expr::and(vec![]), Expr::All);
        assert_eq!(Expr::or(vec![]), Expr::Not(Box::new(Expr::All)));
        assert_eq!(Expr::and(vec![has.clone()]), has);
        assert_eq!(Expr::or(vec![has.clone()]), has);
    }
}
