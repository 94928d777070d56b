//! Block unit tests and the allocate/release property test.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn attrs(pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("namespace".to_string(), "default".to_string()),
        ("pod".to_string(), pod.to_string()),
    ])
}

fn host(h: &str) -> AffinityOwner {
    AffinityOwner::host(h)
}

fn release(ordinal: u32) -> OrdinalRelease {
    OrdinalRelease {
        ordinal,
        handle: None,
        sequence: None,
    }
}

#[test]
fn new_block_matches_the_spec_shape() {
    let b = Block::new(net("10.0.0.0/30"), Some(&host("node-1")), t(0), false);
    let v: serde_json::Value = serde_json::from_slice(&b.encode()).expect("json");
    assert_eq!(v["cidr"], "10.0.0.0/30");
    assert_eq!(v["affinity"], "host:node-1");
    assert_eq!(v["affinity_claim_time"], "2023-11-14T22:13:20Z");
    assert_eq!(
        v["allocations"],
        serde_json::json!([null, null, null, null])
    );
    assert_eq!(v["unallocated"], serde_json::json!([0, 1, 2, 3]));
    assert_eq!(v["attributes"], serde_json::json!([]));
    assert_eq!(v["sequenceNumber"], 1_700_000_000_000_000_000u64);
    assert_eq!(v["sequenceNumberForAllocation"], serde_json::json!({}));
    assert_eq!(v["deleted"], false);
    // Fields are written in the order the spec shows them.
    let text = String::from_utf8(b.encode()).expect("utf-8");
    let order = [
        "\"cidr\"",
        "\"affinity\"",
        "\"affinity_claim_time\"",
        "\"allocations\"",
        "\"unallocated\"",
        "\"attributes\"",
        "\"sequenceNumber\"",
        "\"sequenceNumberForAllocation\"",
        "\"deleted\"",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| text.find(k).expect("field present"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn decodes_calico_written_blocks_with_legacy_fields_and_nulls() {
    let text = r#"{
        "cidr": "10.0.0.0/30", "affinity": null, "hostAffinity": "node-7",
        "strictAffinity": false,
        "allocations": [0, null, 1, null], "unallocated": [3, 1],
        "attributes": [
            {"handle_id": "k8s-pod-network.abc", "secondary": {"pod": "web-0"}},
            {"handle_id": null, "secondary": null}
        ],
        "sequenceNumber": 42, "sequenceNumberForAllocation": null, "deleted": false
    }"#;
    let b = Block::decode(text.as_bytes())
        .expect("valid")
        .expect("not deleted");
    assert_eq!(b.affinity(), Some("host:node-7"));
    assert_eq!(b.owner(), Some(host("node-7")));
    assert_eq!(b.unallocated().collect::<Vec<_>>(), vec![3, 1]);
    assert_eq!(
        b.sequence_for(0),
        0,
        "legacy blocks have no per-ordinal numbers"
    );
    // Unknown fields survive a rewrite; the legacy field becomes `affinity`.
    let v: serde_json::Value = serde_json::from_slice(&b.encode()).expect("json");
    assert_eq!(v["strictAffinity"], false);
    assert_eq!(v["affinity"], "host:node-7");
    assert!(v.get("hostAffinity").is_none());
    let deleted = r#"{"cidr":"10.0.0.0/30","allocations":[],"unallocated":[],"deleted":true}"#;
    assert_eq!(Block::decode(deleted.as_bytes()), Ok(None));
}

#[test]
fn structural_problems_are_all_reported() {
    let text = r#"{"cidr": "10.0.0.0/30", "allocations": [5, null, null],
                   "unallocated": [0, 1, 1], "attributes": []}"#;
    let err = Block::decode(text.as_bytes()).expect_err("invalid");
    let all = err.problems.join("\n");
    assert!(
        all.contains("3 allocation entries for a block of 4"),
        "{all}"
    );
    assert!(all.contains("ordinal 0 points at attribute 5"), "{all}");
    assert!(all.contains("lists ordinal 0, which is allocated"), "{all}");
    assert!(all.contains("lists ordinal 1 twice"), "{all}");
    assert!(all.contains("missing from unallocated: [2]"), "{all}");
    assert!(Block::decode(b"not json").is_err());
    assert!(Block::decode(br#"{"cidr":"10.0.0.1/30"}"#).is_err());
}

#[test]
fn allocation_takes_the_head_and_release_goes_to_the_tail() {
    let mut b = Block::new(net("10.0.0.0/30"), Some(&host("n")), t(0), false);
    let r = Reservations::none();
    assert_eq!(b.assign(1, Some("h1"), &attrs("a"), &r), vec![0]);
    b.commit();
    b.release(&[release(0)], t(1), Duration::ZERO)
        .expect("release");
    b.commit();
    // A /30 cycles through all four addresses before repeating one.
    let mut order = Vec::new();
    for i in 0..4 {
        let got = b.assign(1, Some("h"), &attrs(&format!("p{i}")), &r);
        order.extend(got.iter().copied());
        b.commit();
        b.release(&[release(got[0])], t(2), Duration::ZERO)
            .expect("release");
        b.commit();
    }
    assert_eq!(order, vec![1, 2, 3, 0]);
}

#[test]
fn reserved_addresses_stay_queued_but_are_skipped() {
    let mut b = Block::new(net("10.0.0.0/29"), Some(&host("n")), t(0), false);
    let r = Reservations::from_nets([net("10.0.0.0/31"), net("10.0.0.4/32")]);
    assert_eq!(b.usable_free_count(&r), 5);
    assert_eq!(b.assign(3, Some("h"), &attrs("a"), &r), vec![2, 3, 5]);
    assert_eq!(b.unallocated().collect::<Vec<_>>(), vec![0, 1, 4, 6, 7]);
    assert_eq!(b.assign(5, Some("h"), &attrs("a"), &r), vec![6, 7]);
    assert_eq!(b.usable_free_count(&r), 0);
}

#[test]
fn attributes_are_deduplicated_and_pruned() {
    let mut b = Block::new(net("10.0.0.0/29"), Some(&host("n")), t(0), false);
    let r = Reservations::none();
    b.assign(2, Some("h1"), &attrs("a"), &r);
    b.assign(1, Some("h1"), &attrs("a"), &r);
    b.assign(1, Some("h2"), &attrs("b"), &r);
    assert_eq!(b.attributes().len(), 2, "equal handle+attrs share an entry");
    b.release(&[release(0), release(1), release(2)], t(1), Duration::ZERO)
        .expect("release");
    b.commit();
    assert_eq!(b.attributes().len(), 1);
    assert_eq!(b.attributes()[0].handle_id.as_deref(), Some("h2"));
    assert!(
        matches!(b.ordinal_state(3), OrdinalState::Allocated(a) if a.handle_id.as_deref() == Some("h2"))
    );
}

#[test]
fn release_preconditions_fail_the_whole_request() {
    let mut b = Block::new(net("10.0.0.0/29"), Some(&host("n")), t(0), false);
    let r = Reservations::none();
    b.assign(1, Some("h1"), &attrs("a"), &r);
    b.commit();
    b.assign(1, Some("h2"), &attrs("b"), &r);
    let seq0 = b.sequence_for(0);
    let seq1 = b.sequence_for(1);
    assert_ne!(seq0, seq1, "each write records a new number");
    let before = b.clone();
    let err = b
        .release(
            &[
                release(1),
                OrdinalRelease {
                    ordinal: 0,
                    handle: None,
                    sequence: Some(seq0 + 1),
                },
            ],
            t(1),
            Duration::ZERO,
        )
        .expect_err("stale sequence number");
    assert!(matches!(
        err,
        ReleaseConflict::BadSequenceNumber { ordinal: 0, .. }
    ));
    assert_eq!(b, before, "nothing was released");
    let err = b
        .release(
            &[OrdinalRelease {
                ordinal: 1,
                handle: Some("h1".into()),
                sequence: None,
            }],
            t(1),
            Duration::ZERO,
        )
        .expect_err("wrong handle");
    assert!(matches!(err, ReleaseConflict::BadHandle { ordinal: 1, .. }));
    let done = b
        .release(
            &[
                OrdinalRelease {
                    ordinal: 0,
                    handle: Some("h1".into()),
                    sequence: Some(seq0),
                },
                release(0),
                release(5),
            ],
            t(1),
            Duration::ZERO,
        )
        .expect("matching preconditions");
    assert_eq!(done.released, vec![(0, Some("h1".to_string()))]);
    assert_eq!(done.not_allocated, vec![5]);
}

#[test]
fn sequence_numbers_protect_against_aba() {
    let mut b = Block::new(net("10.0.0.0/31"), Some(&host("n")), t(0), false);
    let r = Reservations::none();
    b.assign(2, Some("old"), &attrs("a"), &r);
    b.commit();
    let stale = b.sequence_for(0);
    b.release(&[release(0)], t(1), Duration::ZERO)
        .expect("release");
    b.commit();
    // Reassigned to a new owner: the stale release must be refused.
    assert_eq!(b.assign(1, Some("new"), &attrs("b"), &r), vec![0]);
    b.commit();
    assert!(
        b.release(
            &[OrdinalRelease {
                ordinal: 0,
                handle: None,
                sequence: Some(stale)
            }],
            t(2),
            Duration::ZERO
        )
        .is_err()
    );
}

#[test]
fn cooldown_holds_released_ordinals_until_it_passes() {
    let cooldown = Duration::from_secs(30);
    let mut b = Block::new(net("10.0.0.0/30"), Some(&host("n")), t(0), false);
    let r = Reservations::none();
    assert_eq!(b.assign(4, Some("h"), &attrs("a"), &r), vec![0, 1, 2, 3]);
    b.commit();
    let out = b
        .release(&[release(2), release(1)], t(10), cooldown)
        .expect("release");
    assert_eq!(out.released.len(), 2);
    assert!(
        matches!(b.ordinal_state(2), OrdinalState::CoolingDown(a) if a.released_at.is_some() && a.handle_id.is_none())
    );
    assert!(!b.is_empty());
    assert_eq!(b.in_use_count(), 4);
    assert_eq!(b.cooling_count(), 2);
    // Releasing again reports "not allocated"; by handle skips them too.
    let again = b.release(&[release(2)], t(11), cooldown).expect("release");
    assert_eq!(again.not_allocated, vec![2]);
    assert_eq!(b.allocations_per_handle().get("h"), Some(&2));
    assert!(!b.collect_cooled(t(39), cooldown));
    assert_eq!(b.assign(1, Some("x"), &attrs("x"), &r), Vec::<u32>::new());
    assert!(b.collect_cooled(t(40), cooldown));
    assert_eq!(
        b.unallocated().collect::<Vec<_>>(),
        vec![1, 2],
        "ordinal order, at the tail"
    );
    assert_eq!(b.sequence_for(1), 0);
    b.commit();
    assert_eq!(b.attributes().len(), 1, "the releasedAt entry is pruned");
}

#[test]
fn specific_ordinals_and_windows_reserved_ends() {
    let mut b = Block::new(net("10.0.0.0/29"), Some(&host("win")), t(0), true);
    assert_eq!(b.unallocated().collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    assert!(b.is_empty(), "reserved ends alone count as empty");
    assert_eq!(b.live_count(), 0);
    assert_eq!(
        b.assign_ordinal(1, Some("h"), &attrs("a")),
        Err(OrdinalTaken::Allocated)
    );
    assert_eq!(b.assign_ordinal(5, Some("h"), &attrs("a")), Ok(()));
    assert_eq!(b.unallocated().collect::<Vec<_>>(), vec![3, 4, 6]);
    assert_eq!(
        b.assign_ordinal(8, Some("h"), &attrs("a")),
        Err(OrdinalTaken::OutOfRange)
    );
    assert!(!b.is_empty());
    assert_eq!(
        b.release_by_handle("h", None, t(1), Duration::ZERO),
        vec![5]
    );
    assert!(b.is_empty());
    // Too small for reserved ends: nothing is pre-allocated.
    let tiny = Block::new(net("10.0.0.0/30"), None, t(0), true);
    assert_eq!(tiny.unallocated().count(), 4);
}

#[test]
fn release_by_handle_respects_the_sequence_number() {
    let mut b = Block::new(net("10.0.0.0/29"), Some(&host("n")), t(0), false);
    let r = Reservations::none();
    b.assign(1, Some("h"), &attrs("a"), &r);
    b.commit();
    b.assign(1, Some("h"), &attrs("a"), &r);
    let first = b.sequence_for(0);
    assert_eq!(
        b.release_by_handle("h", Some(first), t(1), Duration::ZERO),
        vec![0]
    );
    assert_eq!(
        b.release_by_handle("other", None, t(1), Duration::ZERO),
        Vec::<u32>::new()
    );
    assert_eq!(
        b.release_by_handle("h", None, t(1), Duration::ZERO),
        vec![1]
    );
}

#[derive(Clone, Debug)]
enum Op {
    Assign { num: usize, handle: u8 },
    AssignOrdinal { ordinal: u32, handle: u8 },
    Release { ordinals: Vec<u32> },
    ReleaseByHandle { handle: u8 },
    Tick { secs: u64 },
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..6, 0u8..4).prop_map(|(num, handle)| Op::Assign { num, handle }),
        1 => (0u32..16, 0u8..4).prop_map(|(ordinal, handle)| Op::AssignOrdinal { ordinal, handle }),
        3 => proptest::collection::vec(0u32..16, 1..4).prop_map(|ordinals| Op::Release { ordinals }),
        1 => (0u8..4).prop_map(|handle| Op::ReleaseByHandle { handle }),
        1 => (0u64..20).prop_map(|secs| Op::Tick { secs }),
        1 => Just(Op::Collect),
    ]
}

/// The reference model: which ordinal belongs to whom, and the free queue.
#[derive(Default)]
struct Model {
    owner: BTreeMap<u32, String>,
    cooling: BTreeMap<u32, SystemTime>,
    queue: VecDeque<u32>,
}

fn check_invariants(b: &Block, m: &Model) -> Result<(), TestCaseError> {
    // Round trip through the stored form.
    let decoded = Block::decode(&b.encode())
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .ok_or_else(|| TestCaseError::fail("deleted"))?;
    prop_assert_eq!(&decoded, b);
    // `unallocated` holds exactly the free ordinals, in the model's order.
    let queue: Vec<u32> = b.unallocated().collect();
    prop_assert_eq!(&queue, &m.queue.iter().copied().collect::<Vec<_>>());
    for o in 0..b.size() {
        match b.ordinal_state(o) {
            OrdinalState::Free => {
                prop_assert!(!m.owner.contains_key(&o) && !m.cooling.contains_key(&o))
            }
            OrdinalState::Allocated(a) => {
                prop_assert_eq!(a.handle_id.as_deref(), m.owner.get(&o).map(String::as_str));
                prop_assert!(b.sequence_for_allocation.contains_key(&o));
            }
            OrdinalState::CoolingDown(_) => prop_assert!(m.cooling.contains_key(&o)),
        }
    }
    prop_assert_eq!(
        b.in_use_count() as usize,
        m.owner.len() + m.cooling.len(),
        "counts agree"
    );
    Ok(())
}

proptest! {
    #[test]
    fn random_operation_sequences_keep_the_invariants(
        ops in proptest::collection::vec(op(), 1..60),
        cooldown_secs in prop_oneof![Just(0u64), 1u64..30],
        reserve_ends in any::<bool>(),
    ) {
        let cooldown = Duration::from_secs(cooldown_secs);
        let mut now = t(0);
        let mut b = Block::new(net("10.0.0.0/28"), Some(&host("n")), now, reserve_ends);
        let mut m = Model { queue: b.unallocated().collect(), ..Model::default() };
        for o in 0..b.size() {
            if let OrdinalState::Allocated(a) = b.ordinal_state(o) {
                m.owner.insert(o, a.handle_id.clone().unwrap_or_default());
            }
        }
        let r = Reservations::none();
        let mut last_seq = b.sequence_number();
        for op in ops {
            match op {
                Op::Assign { num, handle } => {
                    let h = format!("h{handle}");
                    let got = b.assign(num, Some(&h), &attrs(&h), &r);
                    let expected: Vec<u32> = m.queue.iter().take(num).copied().collect();
                    prop_assert_eq!(&got, &expected, "FIFO from the head");
                    for o in got {
                        prop_assert!(m.owner.insert(o, h.clone()).is_none(), "ordinal {} handed out twice", o);
                        m.queue.pop_front();
                    }
                }
                Op::AssignOrdinal { ordinal, handle } => {
                    let h = format!("h{handle}");
                    let free = m.queue.contains(&ordinal);
                    prop_assert_eq!(b.assign_ordinal(ordinal, Some(&h), &attrs(&h)).is_ok(), free);
                    if free {
                        m.queue.retain(|o| *o != ordinal);
                        m.owner.insert(ordinal, h);
                    }
                }
                Op::Release { ordinals } => {
                    let reqs: Vec<OrdinalRelease> = ordinals.iter().map(|o| release(*o)).collect();
                    let out = b.release(&reqs, now, cooldown).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for (o, h) in &out.released {
                        let owner = m.owner.remove(o);
                        prop_assert_eq!(owner.as_deref(), h.as_deref());
                        if cooldown.is_zero() {
                            m.queue.push_back(*o);
                        } else {
                            m.cooling.insert(*o, now);
                        }
                    }
                    for o in &out.not_allocated {
                        prop_assert!(!m.owner.contains_key(o) || m.owner[o] == WINDOWS_RESERVED_HANDLE);
                    }
                }
                Op::ReleaseByHandle { handle } => {
                    let h = format!("h{handle}");
                    let got = b.release_by_handle(&h, None, now, cooldown);
                    let expected: Vec<u32> = m.owner.iter().filter(|(_, v)| **v == h).map(|(o, _)| *o).collect();
                    prop_assert_eq!(&got, &expected);
                    for o in got {
                        m.owner.remove(&o);
                        if cooldown.is_zero() {
                            m.queue.push_back(o);
                        } else {
                            m.cooling.insert(o, now);
                        }
                    }
                }
                Op::Tick { secs } => now += Duration::from_secs(secs),
                Op::Collect => {
                    b.collect_cooled(now, cooldown);
                    let expired: Vec<u32> = m.cooling.iter()
                        .filter(|(_, at)| now.duration_since(**at).is_ok_and(|e| e >= cooldown))
                        .map(|(o, _)| *o)
                        .collect();
                    for o in expired {
                        m.cooling.remove(&o);
                        m.queue.push_back(o);
                    }
                }
            }
            b.commit();
            prop_assert_eq!(b.sequence_number(), last_seq + 1, "every write bumps the number");
            last_seq = b.sequence_number();
            check_invariants(&b, &m)?;
        }
    }
}
