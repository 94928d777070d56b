//! Canonical printing (selectors.md §4).
//!
//! The canonical string is what selectors are compared, hashed and
//! identified by, so every rule here is normative: single spaces around
//! operators, two-word operator spellings, `"` quoting unless the value
//! contains `"`, sorted de-duplicated sets, `!` glued to its operand, and
//! every `&&`/`||` node wrapped in one pair of parentheses.
//!
//! Hard case: a value containing both quote characters cannot be printed.
//! The parser cannot produce one (a literal ends at its first matching
//! quote) and the constructors reject one, so it never reaches here.

use crate::expr::{CompareOp, Expr};

/// Renders `expr` in canonical form.
pub(crate) fn canonical(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(expr, &mut out);
    out
}

fn write_expr(expr: &Expr, out: &mut String) {
    match expr {
        Expr::All => out.push_str("all()"),
        Expr::Global => out.push_str("global()"),
        Expr::Has(key) => {
            out.push_str("has(");
            out.push_str(key);
            out.push(')');
        }
        Expr::Compare { key, op, value } => {
            out.push_str(key);
            out.push_str(match op {
                CompareOp::Equals => " == ",
                CompareOp::NotEquals => " != ",
                CompareOp::Contains => " contains ",
                CompareOp::StartsWith => " starts with ",
                CompareOp::EndsWith => " ends with ",
            });
            write_quoted(value, out);
        }
        Expr::InSet { key, negated, set } => {
            out.push_str(key);
            out.push_str(if *negated { " not in {" } else { " in {" });
            for (i, value) in set.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_quoted(value, out);
            }
            out.push('}');
        }
        Expr::Not(inner) => {
            out.push('!');
            write_expr(inner, out);
        }
        Expr::And(operands) => write_group(operands, " && ", out),
        Expr::Or(operands) => write_group(operands, " || ", out),
    }
}

fn write_group(operands: &[Expr], joiner: &str, out: &mut String) {
    out.push('(');
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            out.push_str(joiner);
        }
        write_expr(operand, out);
    }
    out.push(')');
}

/// Quotes with `"` unless the value contains `"`, then with `'`.
fn write_quoted(value: &str, out: &mut String) {
    let quote = if value.contains('"') { '\'' } else { '"' };
    out.push(quote);
    out.push_str(value);
    out.push(quote);
}
