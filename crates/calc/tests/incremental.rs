//! The cost of an update, pinned with the engine's counters: a label change
//! on one endpoint evaluates each active selector in its scope once — not
//! every endpoint against every selector — and an edit that keeps a
//! policy's selectors re-evaluates nothing. Deltas stay proportional to
//! the change.

mod common;

use common::{Datastore, calculator, namespace_profile, parse, wep};
use tortie_calc::{Calculator, Update};
use tortie_model::Resource;

const NAMESPACES: usize = 20;
const PER_NAMESPACE: usize = 100;
/// Every 7th pod is local: local pods then cover every app and tier, so
/// every policy is already active and the tests measure steady-state cost.
const LOCAL_EVERY: usize = 7;

fn pod_ip(ns: usize, i: usize) -> String {
    format!("10.{}.{}.{}/32", 64 + ns, i / 250, 1 + i % 250)
}

fn pod(ns: usize, i: usize, app: &str) -> Resource {
    let node = if i.is_multiple_of(LOCAL_EVERY) {
        "n1"
    } else {
        "n2"
    };
    wep(
        &format!("ns{ns}"),
        &format!("pod{i}"),
        node,
        &pod_ip(ns, i),
        &[
            ("app", app),
            ("tier", if i.is_multiple_of(2) { "fe" } else { "be" }),
        ],
    )
}

/// 2,000 endpoints (300 local) in 20 namespaces, 2 policies per namespace
/// plus 5 global ones.
fn cluster() -> Datastore {
    let mut ds = Datastore::default();
    for ns in 0..NAMESPACES {
        ds.put(&namespace_profile(
            &format!("ns{ns}"),
            &[("team", &format!("t{}", ns % 4))],
        ));
        for i in 0..PER_NAMESPACE {
            ds.put(&pod(ns, i, &format!("app{}", i % 5)));
        }
        ds.put_all(&parse(&format!(
            r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: fe, namespace: ns{ns}}}
spec:
  selector: tier == "fe"
  ingress: [{{action: Allow, source: {{selector: app == "app1"}}}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: be, namespace: ns{ns}}}
spec:
  selector: tier == "be"
  ingress: [{{action: Allow, protocol: TCP, source: {{selector: tier == "fe"}}, destination: {{ports: [5432]}}}}]
"#
        )));
    }
    for g in 0..5 {
        ds.put_all(&parse(&format!(
            r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: g{g}}}
spec:
  order: {g}
  selector: app == "app{g}"
  egress: [{{action: Allow, destination: {{namespaceSelector: team == "t{g}"}}}}]
"#
        )));
    }
    ds
}

fn counts(c: &Calculator) -> (u64, u64) {
    let s = c.stats();
    (s.policy_selector_evaluations, s.ipset_selector_evaluations)
}

#[test]
fn a_label_change_costs_one_evaluation_per_active_selector_in_scope() {
    let mut c = calculator("n1", &cluster());
    c.take_delta();
    let stats = c.stats().clone();
    let endpoints = (NAMESPACES * PER_NAMESPACE) as u64;
    let (p0, i0) = counts(&c);
    // Relabel a local endpoint in ns3: app4 -> app1.
    assert_eq!(stats.active_policies, 2 * NAMESPACES + 5);
    c.apply(Update::Put(Box::new(pod(3, 14, "app1")))).unwrap();
    let (p1, i1) = counts(&c);
    // Policy selectors scoped to ns3 (2) plus the unscoped global ones (5).
    assert!(p1 - p0 <= 7, "policy evaluations: {}", p1 - p0);
    // IP-set selectors: those scoped to ns3 plus the unscoped ones.
    assert!(
        i1 - i0 <= stats.active_ipset_selectors as u64,
        "ipset evaluations {} > active selectors {}",
        i1 - i0,
        stats.active_ipset_selectors
    );
    assert!(i1 - i0 <= 10, "ipset evaluations: {}", i1 - i0);
    assert!(
        (i1 - i0) * 100 < endpoints,
        "not O(endpoints x selectors): {}",
        i1 - i0
    );
    // The delta is small: the endpoint's tiers, its membership changes.
    let d = c.take_delta().unwrap();
    assert!(d.len() <= 6, "delta too large: {} changes: {d:?}", d.len());
    assert!(d.ip_sets_added.is_empty() && d.ip_sets_removed.is_empty());
    // A remote endpoint's relabel touches no policy selector at all.
    c.apply(Update::Put(Box::new(pod(3, 15, "app1")))).unwrap();
    let (p2, i2) = counts(&c);
    assert_eq!(
        p2, p1,
        "remote endpoints are not matched against policy selectors"
    );
    assert!(i2 - i1 <= 10);
}

#[test]
fn adding_a_workload_is_cheap_and_its_delta_small() {
    let mut c = calculator("n1", &cluster());
    c.take_delta();
    let (p0, i0) = counts(&c);
    c.apply(Update::Put(Box::new(pod(7, 504, "app1")))).unwrap();
    let (p1, i1) = counts(&c);
    assert!(p1 - p0 <= 7 && i1 - i0 <= 10, "{} {}", p1 - p0, i1 - i0);
    let d = c.take_delta().unwrap();
    assert_eq!(d.workload_endpoints_upserted.len(), 1);
    assert_eq!(d.routes_upserted.len(), 1);
    assert!(d.len() <= 6, "delta: {d:?}");
}

#[test]
fn an_edit_that_keeps_selectors_evaluates_nothing() {
    let mut c = calculator("n1", &cluster());
    c.take_delta();
    let (p0, i0) = counts(&c);
    // Same selectors, different action and port: rules recompiled only.
    c.apply(Update::Put(Box::new(
        parse(
            r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: be, namespace: ns4}
spec:
  selector: tier == "be"
  ingress: [{action: Deny, protocol: TCP, source: {selector: tier == "fe"}, destination: {ports: [5433]}}]
"#,
        )
        .remove(0),
    )))
    .unwrap();
    assert_eq!(counts(&c), (p0, i0), "no selector was re-evaluated");
    let d = c.take_delta().unwrap();
    assert_eq!(d.policies_upserted.len(), 1);
    assert_eq!(d.len(), 1, "only the policy changed: {d:?}");
    // Changing only the order re-sorts endpoints but evaluates nothing.
    c.apply(Update::Put(Box::new(
        parse(
            r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: be, namespace: ns4}
spec:
  order: 3
  selector: tier == "be"
  ingress: [{action: Deny, protocol: TCP, source: {selector: tier == "fe"}, destination: {ports: [5433]}}]
"#,
        )
        .remove(0),
    )))
    .unwrap();
    assert_eq!(counts(&c), (p0, i0));
    let d = c.take_delta().unwrap();
    assert!(d.policies_upserted.is_empty());
    assert_eq!(
        d.workload_endpoints_upserted.len(),
        0,
        "order within a one-policy tier: no change"
    );
}

#[test]
fn a_namespace_label_change_touches_only_that_namespace() {
    let mut c = calculator("n1", &cluster());
    c.take_delta();
    let (_, i0) = counts(&c);
    c.apply(Update::Put(Box::new(namespace_profile(
        "ns5",
        &[("team", "t9")],
    ))))
    .unwrap();
    let (_, i1) = counts(&c);
    // Each of ns5's 100 endpoints against the selectors in its scope.
    assert!(i1 - i0 <= 100 * 10, "{}", i1 - i0);
    let d = c.take_delta().unwrap();
    // ns5 moved from team t1 to t9: its addresses leave g1's set.
    let removed: usize = d.ip_set_members_removed.values().map(|m| m.v4.len()).sum();
    assert_eq!(removed, PER_NAMESPACE);
}

/// Many endpoints and many policies in one namespace (the node bench's
/// shape): each policy selects one `group` value, its rule one `peer`.
fn one_big_namespace() -> Datastore {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("big", &[]));
    for i in 0..1000 {
        ds.put(&big_pod(i));
    }
    for i in 0..200 {
        ds.put_all(&parse(&format!(
            r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: p{i}, namespace: big}}
spec:
  selector: group == "g{}"
  ingress: [{{action: Allow, source: {{selector: peer == "p{i}"}}}}]
"#,
            i % 50
        )));
    }
    ds
}

fn big_pod(i: usize) -> Resource {
    wep(
        "big",
        &format!("pod{i}"),
        "n1",
        &format!("10.70.{}.{}/32", i / 250, 1 + i % 250),
        &[
            ("group", &format!("g{}", i % 50)),
            ("peer", &format!("p{}", i % 200)),
        ],
    )
}

#[test]
fn one_namespace_full_of_policies_evaluates_only_each_selectors_own_matches() {
    let mut c = calculator("n1", &one_big_namespace());
    c.take_delta();
    let (p0, i0) = counts(&c);
    // Building it: each endpoint against the policies of its group and the
    // rule selectors of its peer, not against all 400 selectors of the
    // namespace (which was 400,000 evaluations).
    assert!(p0 + i0 <= 20_000, "building cost {p0} + {i0} evaluations");
    c.apply(Update::Put(Box::new(big_pod(1007)))).unwrap();
    let (p1, i1) = counts(&c);
    // Group g7: policies 7, 57, 107, 157. Peer p7: one rule selector.
    assert!(p1 - p0 <= 4, "policy evaluations: {}", p1 - p0);
    assert!(i1 - i0 <= 2, "ipset evaluations: {}", i1 - i0);
    let d = c.take_delta().unwrap();
    assert_eq!(d.workload_endpoints_upserted.len(), 1);
}
