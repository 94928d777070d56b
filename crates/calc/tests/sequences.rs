//! State-sequence tests (STYLE.md §6): sequences of whole datastore states,
//! applied forwards, backwards and in shuffled per-key order. After every
//! step the incremental state must equal the brute-force computation and a
//! fresh calculation of the same state, reference only what it defines,
//! and be exactly what the deltas handed out so far add up to.

mod common;

use std::net::IpAddr;

use common::states::{self, LOCAL};
use common::{
    Datastore, calculator, check_step, namespace_profile, parse, transition, wep, wep_with_ports,
};
use proptest::prelude::*;
use tortie_calc::policy::TierAction;
use tortie_calc::state::{LocalState, RouteTarget};
use tortie_calc::{Calculator, PolicyId, PolicyKind, Update};

/// A whole datastore state and what its local state must satisfy.
type Step = (Datastore, fn(&LocalState));

/// Runs `states` in the given order from an empty datastore, checking
/// every step and, when given, the step's expectations.
fn run(states: &[Step], order: &[usize], shuffle: Option<u64>) {
    let mut calc = Calculator::new(LOCAL);
    calc.apply(Update::InSync).unwrap();
    let mut replica = LocalState::default();
    let mut current = Datastore::default();
    for (step, &i) in order.iter().enumerate() {
        let (next, expect) = &states[i];
        transition(&mut calc, &current, next, shuffle.map(|s| s ^ step as u64));
        check_step(&mut calc, next, &mut replica);
        expect(calc.local_state());
        current = next.clone();
    }
}

fn run_all_orders(states: &[Step]) {
    let forwards: Vec<usize> = (0..states.len()).collect();
    let backwards: Vec<usize> = forwards.iter().rev().copied().collect();
    run(states, &forwards, None);
    run(states, &backwards, None);
    for seed in 1..=8 {
        run(states, &forwards, Some(seed));
        run(states, &backwards, Some(seed * 7919));
    }
}

// ---- a hand-written sequence with expected output after each state ----

fn base() -> Datastore {
    let mut ds = Datastore::default();
    ds.put(&namespace_profile("shop", &[]));
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16, vxlanMode: Always, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 192.168.0.1/24}, ipv4VXLANTunnelAddr: 10.65.200.1}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n2}
spec: {bgp: {ipv4Address: 192.168.5.2/24}, ipv4VXLANTunnelAddr: 10.65.200.2}
"#,
    ));
    ds.block("10.65.0.0/26", "n1");
    ds.block("10.65.0.64/26", "n2");
    ds
}

fn with_pods(mut ds: Datastore, db_app: &str) -> Datastore {
    ds.put(&wep_with_ports(
        "shop",
        "web",
        "n1",
        "10.65.0.2/32",
        &[("app", "web")],
        &[("http", "TCP", 8080)],
    ));
    ds.put(&wep(
        "shop",
        "db",
        "n2",
        "10.65.0.66/32",
        &[("app", db_app)],
    ));
    ds
}

fn with_policy(mut ds: Datastore) -> Datastore {
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == "db"}
    destination: {ports: [http]}
"#,
    ));
    ds
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

const WEB_IFACE: &str = "calishopweb";
const DB_SET: &str = r#"(projectcalico.org/namespace == "shop" && app == "db")"#;

fn set_id(canonical: &str) -> String {
    tortie_selector::Selector::parse(canonical)
        .unwrap()
        .unique_id()
}

fn expect_empty(s: &LocalState) {
    assert!(s.workload_endpoints.is_empty() && s.policies.is_empty() && s.routes.is_empty());
}

fn expect_infra(s: &LocalState) {
    assert_eq!(
        s.routes.get(&net("10.65.0.0/26")),
        Some(&RouteTarget::Blackhole)
    );
    assert_eq!(
        s.routes.get(&net("10.65.0.64/26")),
        Some(&RouteTarget::Vxlan {
            gateway: "10.65.200.2".parse().unwrap()
        })
    );
    assert_eq!(
        s.routes.get(&net("10.65.200.2/32")),
        Some(&RouteTarget::VxlanTunnelAddress)
    );
    let peer = s.vxlan.peers["n2"].v4.as_ref().unwrap();
    assert_eq!(peer.node_addr, "192.168.5.2".parse::<IpAddr>().unwrap());
    assert_eq!(peer.mac, tortie_calc::vxlan::derived_mac("n2", false));
    let local = s.vxlan.local.v4.as_ref().unwrap();
    assert_eq!(local.tunnel_addr, "10.65.200.1".parse::<IpAddr>().unwrap());
    assert!(
        s.nat_outgoing
            .masquerade_pools
            .contains(&net("10.65.0.0/16"))
    );
    assert!(s.config.vxlan_enabled_v4);
}

fn expect_pods(s: &LocalState) {
    expect_infra(s);
    let web = &s.workload_endpoints[WEB_IFACE];
    assert!(web.ingress.tiers.is_empty());
    assert_eq!(web.ingress.profiles, ["kns.shop"]);
    assert_eq!(
        s.routes.get(&net("10.65.0.2/32")),
        Some(&RouteTarget::Workload {
            iface: WEB_IFACE.into()
        })
    );
    // The remote pod is inside its node's block: no /32 of its own.
    assert!(!s.routes.contains_key(&net("10.65.0.66/32")));
    assert!(s.policies.is_empty() && s.ip_sets.is_empty());
    assert!(s.profiles.contains_key("kns.shop"));
}

fn expect_policy(s: &LocalState) {
    expect_infra(s);
    let web = &s.workload_endpoints[WEB_IFACE];
    let id = PolicyId::new(PolicyKind::NetworkPolicy, "shop", "web-in");
    assert_eq!(web.ingress.tiers.len(), 1);
    assert_eq!(web.ingress.tiers[0].name, "default");
    assert_eq!(web.ingress.tiers[0].default_action, TierAction::Deny);
    assert_eq!(web.ingress.tiers[0].policies, std::slice::from_ref(&id));
    assert!(web.egress.tiers.is_empty());
    let rule = &s.policies[&id].ingress[0];
    assert_eq!(rule.protocol, Some(6));
    let set = rule.source.ip_set.as_ref().unwrap();
    assert_eq!(*set, set_id(DB_SET));
    let named = &s.named_port_sets[&rule.destination.named_port_sets[0]];
    assert_eq!(named.len(), 1, "web declares http on TCP 8080");
    assert_eq!(named.iter().next().unwrap().port, 8080);
}

fn expect_db_member(s: &LocalState) {
    expect_policy(s);
    assert!(s.ip_sets[&set_id(DB_SET)].contains(&net("10.65.0.66/32")));
}

fn expect_db_relabelled(s: &LocalState) {
    expect_policy(s);
    assert!(s.ip_sets[&set_id(DB_SET)].is_empty());
}

fn expect_web_gone(s: &LocalState) {
    expect_infra(s);
    assert!(s.workload_endpoints.is_empty());
    assert!(s.policies.is_empty(), "no local endpoint uses the policy");
    assert!(s.ip_sets.is_empty() && s.named_port_sets.is_empty());
    assert!(!s.routes.contains_key(&net("10.65.0.2/32")));
}

#[test]
fn a_workload_a_policy_and_a_relabel() {
    let web_gone = {
        let mut ds = with_policy(with_pods(base(), "db"));
        ds.remove_prefix("/calico/resources/v3/projectcalico.org/workloadendpoints/shop/n1-");
        ds
    };
    let states: Vec<Step> = vec![
        (Datastore::default(), expect_empty),
        (base(), expect_infra),
        (with_pods(base(), "db"), expect_pods),
        (with_policy(with_pods(base(), "db")), expect_db_member),
        (
            with_policy(with_pods(base(), "cache")),
            expect_db_relabelled,
        ),
        (web_gone, expect_web_gone),
    ];
    run_all_orders(&states);
}

fn cross_subnet_and_borrowed() -> Datastore {
    let mut ds = base();
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16, vxlanMode: CrossSubnet}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n3}
spec: {bgp: {ipv4Address: 192.168.0.3/24}, ipv4VXLANTunnelAddr: 10.65.200.3}
"#,
    ));
    ds.block("10.65.0.128/26", "n3");
    // A pod on n3 borrowing an address from n2's block.
    ds.put(&wep("shop", "borrower", "n3", "10.65.0.70/32", &[]));
    ds
}

fn expect_cross_subnet(s: &LocalState) {
    // n3 shares n1's subnet: no encapsulation; n2 does not: VXLAN.
    assert_eq!(
        s.routes.get(&net("10.65.0.128/26")),
        Some(&RouteTarget::NoEncap {
            gateway: "192.168.0.3".parse().unwrap()
        })
    );
    assert_eq!(
        s.routes.get(&net("10.65.0.64/26")),
        Some(&RouteTarget::Vxlan {
            gateway: "10.65.200.2".parse().unwrap()
        })
    );
    assert_eq!(
        s.routes.get(&net("10.65.0.70/32")),
        Some(&RouteTarget::NoEncap {
            gateway: "192.168.0.3".parse().unwrap()
        }),
        "a borrowed address is routed to the node that uses it"
    );
    assert!(
        !s.nat_outgoing
            .masquerade_pools
            .contains(&net("10.65.0.0/16"))
    );
}

fn ipip_owned_by_felix() -> Datastore {
    let mut ds = cross_subnet_and_borrowed();
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16, ipipMode: Always}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 192.168.0.1/24, ipv4IPIPTunnelAddr: 10.65.201.1}, ipv4VXLANTunnelAddr: 10.65.200.1}
"#,
    ));
    ds
}

fn expect_ipip(s: &LocalState) {
    assert_eq!(
        s.routes.get(&net("10.65.0.64/26")),
        Some(&RouteTarget::Ipip {
            gateway: "192.168.5.2".parse().unwrap()
        })
    );
    assert!(s.vxlan.peers.is_empty(), "no VXLAN pool: no VTEPs");
    assert!(!s.routes.contains_key(&net("10.65.200.2/32")));
    assert!(s.config.ipip_enabled && !s.config.vxlan_enabled_v4);
    assert!(s.ipip.enabled);
    assert_eq!(s.ipip.tunnel_addr, Some("10.65.201.1".parse().unwrap()));
}

fn bgp_owned() -> Datastore {
    let mut ds = cross_subnet_and_borrowed();
    ds.put_all(&parse(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16}
"#,
    ));
    ds
}

fn expect_bgp_owned(s: &LocalState) {
    // No encapsulation: the BGP daemon programs remote blocks by default.
    assert!(!s.routes.contains_key(&net("10.65.0.64/26")));
    assert_eq!(
        s.routes.get(&net("10.65.0.0/26")),
        Some(&RouteTarget::Blackhole)
    );
}

#[test]
fn routes_follow_pool_encapsulation() {
    let states: Vec<Step> = vec![
        (base(), expect_infra),
        (cross_subnet_and_borrowed(), expect_cross_subnet),
        (ipip_owned_by_felix(), expect_ipip),
        (bgp_owned(), expect_bgp_owned),
    ];
    run_all_orders(&states);
}

// ---- random sequences ----

fn run_random(seed: u64, len: usize, shuffle: Option<u64>, backwards: bool) {
    let mut seq = states::sequence(seed, len);
    if backwards {
        seq.reverse();
    }
    let mut calc = calculator(LOCAL, &Datastore::default());
    let mut replica = LocalState::default();
    let mut current = Datastore::default();
    for (step, next) in seq.iter().enumerate() {
        transition(
            &mut calc,
            &current,
            next,
            shuffle.map(|s| s.wrapping_add(step as u64)),
        );
        check_step(&mut calc, next, &mut replica);
        current = next.clone();
    }
    assert_eq!(calc.stats().errors, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_sequences_forwards(seed in any::<u64>()) {
        run_random(seed, 6, None, false);
    }

    #[test]
    fn random_sequences_backwards(seed in any::<u64>()) {
        run_random(seed, 6, None, true);
    }

    #[test]
    fn random_sequences_shuffled(seed in any::<u64>(), order in any::<u64>()) {
        run_random(seed, 6, Some(order), false);
    }

    /// Delivering one whole state in any key order gives the same result.
    #[test]
    fn one_state_in_any_order(seed in any::<u64>(), order in any::<u64>()) {
        let state = states::sequence(seed, 1).remove(0);
        let sorted = calculator(LOCAL, &state);
        let mut shuffled = Calculator::new(LOCAL);
        transition(&mut shuffled, &Datastore::default(), &state, Some(order));
        prop_assert_eq!(sorted.local_state(), shuffled.local_state());
    }
}
