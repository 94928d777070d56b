//! The minimal edit turning a chain's installed rules into its desired
//! rules, as nf_tables rule operations: delete by handle, replace by
//! handle (`NLM_F_REPLACE`, the handle survives), insert before a handle,
//! insert after a handle (`NLM_F_APPEND` with a position), append, or
//! flush the chain.
//!
//! Rules the two lists share (the longest common subsequence, after
//! trimming the common prefix and suffix) stay untouched, so a rule
//! change inside a long chain costs one message. Between two kept rules,
//! removed and added rules pair up as replacements; the rest are deleted
//! or inserted next to a neighbour whose handle is known. When nothing
//! is kept, or rewriting costs fewer messages, the chain is flushed and
//! refilled — which needs no handles at all.
//!
//! Hard cases: rules added since the chain was last read have no handle
//! yet; an edit that must name one returns [`NeedHandles`] and the caller
//! reads the chain first (appending after the last rule needs none).
//! Several rules inserted after the same neighbour go in reverse order so
//! each lands right after it. Very long middles skip the quadratic LCS and
//! are rewritten.

use super::installed::InstalledRule;
use super::model::Rule;

/// One rule operation; `rule` indexes the desired list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleOp {
    Flush,
    Delete { handle: u64 },
    Replace { handle: u64, rule: usize },
    InsertBefore { handle: u64, rule: usize },
    InsertAfter { handle: u64, rule: usize },
    Append { rule: usize },
}

/// The edit, and each desired rule's handle afterwards (if known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainEdit {
    pub ops: Vec<RuleOp>,
    pub handles: Vec<Option<u64>>,
}

/// The edit needs handles of rules added since the chain was last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NeedHandles;

/// Above this many cells the LCS is not computed and the middle rewritten.
const LCS_CELLS: usize = 4_000_000;

/// Computes the edit from `installed` to `desired`.
pub(crate) fn diff(
    installed: &[InstalledRule],
    desired: &[Rule],
) -> Result<ChainEdit, NeedHandles> {
    let anchors = common(installed, desired);
    let rewrite = rewrite(installed, desired);
    if anchors.is_empty() {
        return Ok(rewrite);
    }
    let edit = edit_around(installed, desired, &anchors)?;
    Ok(if edit.ops.len() <= rewrite.ops.len() {
        edit
    } else {
        rewrite
    })
}

fn rewrite(installed: &[InstalledRule], desired: &[Rule]) -> ChainEdit {
    let mut ops = Vec::with_capacity(desired.len() + 1);
    if !installed.is_empty() {
        ops.push(RuleOp::Flush);
    }
    ops.extend((0..desired.len()).map(|rule| RuleOp::Append { rule }));
    ChainEdit {
        ops,
        handles: vec![None; desired.len()],
    }
}

/// Pairs (installed index, desired index) of kept rules, increasing.
fn common(installed: &[InstalledRule], desired: &[Rule]) -> Vec<(usize, usize)> {
    let (n, m) = (installed.len(), desired.len());
    let mut prefix = 0;
    while prefix < n.min(m) && installed[prefix].rule == desired[prefix] {
        prefix += 1;
    }
    let mut suffix = 0;
    while suffix < (n - prefix).min(m - prefix)
        && installed[n - 1 - suffix].rule == desired[m - 1 - suffix]
    {
        suffix += 1;
    }
    let mut pairs: Vec<(usize, usize)> = (0..prefix).map(|i| (i, i)).collect();
    let (mi, md) = (&installed[prefix..n - suffix], &desired[prefix..m - suffix]);
    if !mi.is_empty() && !md.is_empty() && mi.len().saturating_mul(md.len()) <= LCS_CELLS {
        pairs.extend(
            lcs(mi, md)
                .into_iter()
                .map(|(i, j)| (i + prefix, j + prefix)),
        );
    }
    pairs.extend((0..suffix).map(|k| (n - suffix + k, m - suffix + k)));
    pairs
}

fn lcs(a: &[InstalledRule], b: &[Rule]) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    // table[i][j] = LCS length of a[i..], b[j..].
    let w = m + 1;
    let mut table = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * w + j] = if a[i].rule == b[j] {
                table[(i + 1) * w + j + 1] + 1
            } else {
                table[(i + 1) * w + j].max(table[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i].rule == b[j] {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if table[(i + 1) * w + j] >= table[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn edit_around(
    installed: &[InstalledRule],
    desired: &[Rule],
    anchors: &[(usize, usize)],
) -> Result<ChainEdit, NeedHandles> {
    let mut ops = Vec::new();
    let mut handles = vec![None; desired.len()];
    for &(i, j) in anchors {
        handles[j] = installed[i].handle;
    }
    // Gaps: before the first anchor, between anchors, after the last.
    type Anchor = Option<(usize, usize)>;
    let mut bounds: Vec<(Anchor, Anchor)> = Vec::new();
    let mut prev = None;
    for &a in anchors {
        bounds.push((prev, Some(a)));
        prev = Some(a);
    }
    bounds.push((prev, None));
    for (before, after) in bounds {
        let (i0, j0) = before.map_or((0, 0), |(i, j)| (i + 1, j + 1));
        let (i1, j1) = after.unwrap_or((installed.len(), desired.len()));
        let dels = &installed[i0..i1];
        let adds: Vec<usize> = (j0..j1).collect();
        let replaced = dels.len().min(adds.len());
        for (d, &rule) in dels.iter().zip(&adds) {
            let handle = d.handle.ok_or(NeedHandles)?;
            ops.push(RuleOp::Replace { handle, rule });
            handles[rule] = Some(handle);
        }
        for d in &dels[replaced..] {
            ops.push(RuleOp::Delete {
                handle: d.handle.ok_or(NeedHandles)?,
            });
        }
        let extra = &adds[replaced..];
        if extra.is_empty() {
            continue;
        }
        // The rule just before the insertion point, if any.
        let left = if replaced > 0 {
            Some(dels[replaced - 1].handle)
        } else {
            before.map(|(i, _)| installed[i].handle)
        };
        match (left, after) {
            // After the last rule: appending needs no handle.
            (_, None) if dels.len() <= replaced => {
                ops.extend(extra.iter().map(|&rule| RuleOp::Append { rule }));
            }
            (Some(h), _) => {
                let handle = h.ok_or(NeedHandles)?;
                ops.extend(
                    extra
                        .iter()
                        .rev()
                        .map(|&rule| RuleOp::InsertAfter { handle, rule }),
                );
            }
            (None, Some((i, _))) => {
                let handle = installed[i].handle.ok_or(NeedHandles)?;
                ops.extend(
                    extra
                        .iter()
                        .map(|&rule| RuleOp::InsertBefore { handle, rule }),
                );
            }
            (None, None) => ops.extend(extra.iter().map(|&rule| RuleOp::Append { rule })),
        }
    }
    Ok(ChainEdit { ops, handles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::expr::{Data, Expr, Reg, Verdict};
    use proptest::prelude::*;

    fn rule(n: u8) -> Rule {
        Rule::new(vec![Expr::Immediate {
            dreg: Reg::r32(0),
            data: Data::Value(vec![n]),
        }])
        .with_comment(format!("r{n}"))
    }

    fn installed(ids: &[u8]) -> Vec<InstalledRule> {
        ids.iter()
            .enumerate()
            .map(|(i, &n)| InstalledRule {
                handle: Some(100 + i as u64),
                rule: rule(n),
            })
            .collect()
    }

    /// Applies an edit the way the kernel would, returning the rule ids.
    fn apply(inst: &[InstalledRule], desired: &[Rule], edit: &ChainEdit) -> Vec<(u64, Rule)> {
        let mut chain: Vec<(u64, Rule)> = inst
            .iter()
            .map(|r| (r.handle.expect("test rules have handles"), r.rule.clone()))
            .collect();
        let mut next = 1000;
        let pos = |c: &Vec<(u64, Rule)>, h: u64| {
            c.iter().position(|(x, _)| *x == h).expect("handle exists")
        };
        for op in &edit.ops {
            match *op {
                RuleOp::Flush => chain.clear(),
                RuleOp::Delete { handle } => {
                    let p = pos(&chain, handle);
                    chain.remove(p);
                }
                RuleOp::Replace { handle, rule } => {
                    let p = pos(&chain, handle);
                    chain[p].1 = desired[rule].clone();
                }
                RuleOp::InsertBefore { handle, rule } => {
                    let p = pos(&chain, handle);
                    next += 1;
                    chain.insert(p, (next, desired[rule].clone()));
                }
                RuleOp::InsertAfter { handle, rule } => {
                    let p = pos(&chain, handle);
                    next += 1;
                    chain.insert(p + 1, (next, desired[rule].clone()));
                }
                RuleOp::Append { rule } => {
                    next += 1;
                    chain.push((next, desired[rule].clone()));
                }
            }
        }
        chain
    }

    #[test]
    fn one_changed_rule_in_a_long_chain_is_one_replace() {
        let inst = installed(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let desired: Vec<Rule> = [1, 2, 3, 9, 5, 6, 7, 8].map(rule).to_vec();
        let edit = diff(&inst, &desired).expect("handles known");
        assert_eq!(
            edit.ops,
            vec![RuleOp::Replace {
                handle: 103,
                rule: 3
            }]
        );
        assert_eq!(edit.handles[3], Some(103));
    }

    #[test]
    fn inserting_in_the_middle_keeps_order() {
        let inst = installed(&[1, 2, 3]);
        let desired: Vec<Rule> = [1, 7, 8, 2, 3].map(rule).to_vec();
        let edit = diff(&inst, &desired).expect("handles known");
        assert_eq!(edit.ops.len(), 2);
        let got: Vec<Rule> = apply(&inst, &desired, &edit)
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(got, desired);
    }

    #[test]
    fn appending_needs_no_handles_but_deleting_does() {
        let mut inst = installed(&[1, 2]);
        inst[1].handle = None;
        let desired: Vec<Rule> = [1, 2, 3].map(rule).to_vec();
        let edit = diff(&inst, &desired).expect("append only");
        assert_eq!(edit.ops, vec![RuleOp::Append { rule: 2 }]);
        let inst3 = {
            let mut v = installed(&[1, 2, 3, 4, 5, 6]);
            v[2].handle = None;
            v
        };
        let desired: Vec<Rule> = [1, 2, 4, 5, 6].map(rule).to_vec();
        assert_eq!(diff(&inst3, &desired), Err(NeedHandles));
    }

    #[test]
    fn nothing_in_common_is_a_flush_and_refill() {
        let inst = installed(&[1, 2, 3]);
        let desired: Vec<Rule> = [4, 5].map(rule).to_vec();
        let edit = diff(&inst, &desired).expect("no handles needed");
        assert_eq!(
            edit.ops,
            vec![
                RuleOp::Flush,
                RuleOp::Append { rule: 0 },
                RuleOp::Append { rule: 1 }
            ]
        );
    }

    #[test]
    fn equal_chains_need_nothing() {
        let inst = installed(&[1, 2, 2, 3]);
        let desired: Vec<Rule> = [1, 2, 2, 3].map(rule).to_vec();
        assert!(diff(&inst, &desired).expect("equal").ops.is_empty());
        assert!(diff(&[], &[]).expect("empty").ops.is_empty());
    }

    #[test]
    fn verdict_rules_compare_by_content() {
        let a = Rule::new(vec![Expr::Immediate {
            dreg: Reg::VERDICT,
            data: Data::Verdict(Verdict::Jump("x".into())),
        }]);
        let mut b = a.clone();
        assert_eq!(a, b);
        b.comment = Some("c".into());
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn any_edit_produces_the_desired_chain(
            from in proptest::collection::vec(0u8..6, 0..14),
            to in proptest::collection::vec(0u8..6, 0..14),
        ) {
            let inst = installed(&from);
            let desired: Vec<Rule> = to.iter().map(|&n| rule(n)).collect();
            let edit = diff(&inst, &desired).expect("all handles known");
            let got = apply(&inst, &desired, &edit);
            let rules: Vec<Rule> = got.iter().map(|x| x.1.clone()).collect();
            prop_assert_eq!(&rules, &desired);
            // Known handles are the ones the rules really have.
            for (j, h) in edit.handles.iter().enumerate() {
                if let Some(h) = h {
                    prop_assert_eq!(*h, got[j].0);
                }
            }
            // Never more messages than rewriting.
            prop_assert!(edit.ops.len() <= desired.len() + 1);
        }
    }
}
