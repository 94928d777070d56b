//! [`Selector`]: a parsed selector together with its canonical string.
//!
//! The canonical form is computed once when a selector is built and is the
//! selector's identity: equality, ordering and hashing all use it, so
//! `a == "x"` and `a=='x'` are equal selectors.
//!
//! Hard cases:
//! - selectors built in code must be printable and re-parseable, so the
//!   leaf constructors reject label names the lexer would not accept and
//!   values containing both quote characters;
//! - composition (`and`, `or`, `negated`, the rewrites) keeps the tree
//!   invariants described in `expr.rs`, so even composed selectors print in
//!   a form that parses back to the same canonical string. The exception is
//!   [`Selector::with_label_prefix`], whose result may hold label names
//!   longer than the 512 bytes the parser accepts; it is meant for
//!   evaluation and identity (canonical form, unique ID), like Calico's;
//! - parsing bounds tree depth; composing selectors in code does not, so
//!   callers should not nest compositions thousands of levels deep.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{BuildError, ParseError};
use crate::eval::Labels;
use crate::expr::{CompareOp, Expr, ValueSet};
use crate::lexer::check_label_name;
use crate::rewrite::SpecialLeaf;
use crate::{id, parser, print};

/// A selector: a boolean expression over labels (selectors.md).
///
/// Cheap to clone (shared). Compared, ordered and hashed by canonical form.
#[derive(Clone)]
pub struct Selector {
    inner: Arc<Built>,
}

struct Built {
    expr: Expr,
    canonical: Box<str>,
}

impl Selector {
    fn from_expr(expr: Expr) -> Selector {
        let canonical = print::canonical(&expr).into_boxed_str();
        Selector {
            inner: Arc::new(Built { expr, canonical }),
        }
    }

    /// Parses selector text. Empty or whitespace-only text is `all()`.
    pub fn parse(text: &str) -> Result<Selector, ParseError> {
        parser::parse(text).map(Selector::from_expr)
    }

    /// `all()`: matches everything.
    pub fn all() -> Selector {
        Selector::from_expr(Expr::All)
    }

    /// `global()`: matches everything; its meaning depends on where it is
    /// used (selectors.md §6.3).
    pub fn global() -> Selector {
        Selector::from_expr(Expr::Global)
    }

    /// `has(key)`.
    pub fn has(key: &str) -> Result<Selector, BuildError> {
        Ok(Selector::from_expr(Expr::Has(label(key)?)))
    }

    /// `key == "value"`.
    pub fn label_equals(key: &str, value: &str) -> Result<Selector, BuildError> {
        compare(key, CompareOp::Equals, value)
    }

    /// `key != "value"`.
    pub fn label_not_equals(key: &str, value: &str) -> Result<Selector, BuildError> {
        compare(key, CompareOp::NotEquals, value)
    }

    /// `key contains "value"`.
    pub fn label_contains(key: &str, value: &str) -> Result<Selector, BuildError> {
        compare(key, CompareOp::Contains, value)
    }

    /// `key starts with "value"`.
    pub fn label_starts_with(key: &str, value: &str) -> Result<Selector, BuildError> {
        compare(key, CompareOp::StartsWith, value)
    }

    /// `key ends with "value"`.
    pub fn label_ends_with(key: &str, value: &str) -> Result<Selector, BuildError> {
        compare(key, CompareOp::EndsWith, value)
    }

    /// `key in {values…}`; order and duplicates in `values` do not matter.
    pub fn label_in<I, S>(key: &str, values: I) -> Result<Selector, BuildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        in_set(key, false, values)
    }

    /// `key not in {values…}`; order and duplicates in `values` do not matter.
    pub fn label_not_in<I, S>(key: &str, values: I) -> Result<Selector, BuildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        in_set(key, true, values)
    }

    /// The negation of this selector (`!x`; `!!x` collapses to `x`).
    pub fn negated(&self) -> Selector {
        Selector::from_expr(self.inner.expr.clone().negate())
    }

    /// The conjunction of `operands`. With two or more it prints as
    /// `(a && b …)`, one operand is returned as itself, and none gives
    /// `all()`. Operands that are themselves conjunctions stay nested.
    pub fn and(operands: &[Selector]) -> Selector {
        Selector::from_expr(Expr::and(
            operands.iter().map(|s| s.inner.expr.clone()).collect(),
        ))
    }

    /// The disjunction of `operands`. With two or more it prints as
    /// `(a || b …)`, one operand is returned as itself, and none gives
    /// `!all()` (matches nothing).
    pub fn or(operands: &[Selector]) -> Selector {
        Selector::from_expr(Expr::or(
            operands.iter().map(|s| s.inner.expr.clone()).collect(),
        ))
    }

    /// True if `labels` satisfy the selector.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.inner.expr.matches(labels)
    }

    /// The canonical form (selectors.md §4); computed once, free to call.
    pub fn canonical(&self) -> &str {
        &self.inner.canonical
    }

    /// `"s:" + base64url_nopad(SHA-224("s:" + canonical))`.
    pub fn unique_id(&self) -> String {
        id::unique_id(self.canonical())
    }

    /// True if `global()` appears anywhere in the selector.
    pub fn uses_global(&self) -> bool {
        self.inner.expr.uses_global()
    }

    /// True if the whole selector is exactly `global()`.
    pub fn is_global(&self) -> bool {
        self.inner.expr == Expr::Global
    }

    /// True if the whole selector is exactly `all()` (or was empty).
    pub fn is_all(&self) -> bool {
        self.inner.expr == Expr::All
    }

    /// This selector with `prefix` prepended to every label name, including
    /// those in `has()` (e.g. `pcns.` for namespace selectors, selectors.md
    /// §6.3). `all()` and `global()` are unchanged. `prefix` should consist
    /// of label bytes (`[A-Za-z0-9_./-]`).
    pub fn with_label_prefix(&self, prefix: &str) -> Selector {
        Selector::from_expr(self.inner.expr.with_label_prefix(prefix))
    }

    /// This selector with every `all()` leaf (including an empty selector)
    /// replaced by `replacement`, e.g. `has(projectcalico.org/namespace)`.
    /// Apply after [`Selector::with_label_prefix`], or the replacement's
    /// labels get prefixed too.
    pub fn with_all_replaced_by(&self, replacement: &Selector) -> Selector {
        self.replace(SpecialLeaf::All, replacement)
    }

    /// This selector with every `global()` leaf replaced by `replacement`,
    /// e.g. `!has(projectcalico.org/namespace)`.
    pub fn with_global_replaced_by(&self, replacement: &Selector) -> Selector {
        self.replace(SpecialLeaf::Global, replacement)
    }

    fn replace(&self, leaf: SpecialLeaf, replacement: &Selector) -> Selector {
        Selector::from_expr(self.inner.expr.replace_leaf(leaf, &replacement.inner.expr))
    }
}

/// Trims surrounding whitespace, parses and returns the canonical form; if
/// the text does not parse it is returned trimmed but otherwise unchanged.
pub fn normalise(text: &str) -> String {
    let trimmed = text.trim();
    match Selector::parse(trimmed) {
        Ok(selector) => selector.canonical().to_owned(),
        Err(_) => trimmed.to_owned(),
    }
}

fn label(key: &str) -> Result<Box<str>, BuildError> {
    check_label_name(key).map_err(|reason| BuildError::InvalidLabel {
        name: key.to_owned(),
        reason,
    })?;
    Ok(key.into())
}

fn value(value: &str) -> Result<Box<str>, BuildError> {
    if value.contains('"') && value.contains('\'') {
        return Err(BuildError::UnquotableValue {
            value: value.to_owned(),
        });
    }
    Ok(value.into())
}

fn compare(key: &str, op: CompareOp, text: &str) -> Result<Selector, BuildError> {
    Ok(Selector::from_expr(Expr::Compare {
        key: label(key)?,
        op,
        value: value(text)?,
    }))
}

fn in_set<I, S>(key: &str, negated: bool, values: I) -> Result<Selector, BuildError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let key = label(key)?;
    let values = values
        .into_iter()
        .map(|v| value(v.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Selector::from_expr(Expr::InSet {
        key,
        negated,
        set: ValueSet::new(values),
    }))
}

impl Default for Selector {
    /// `all()`, the meaning of an empty selector.
    fn default() -> Self {
        Selector::all()
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Selector::parse(text)
    }
}

impl fmt::Display for Selector {
    /// Writes the canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical())
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Selector").field(&self.canonical()).finish()
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.canonical() == other.canonical()
    }
}

impl Eq for Selector {}

impl PartialOrd for Selector {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Selector {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.canonical().cmp(other.canonical())
    }
}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical().hash(state);
    }
}
