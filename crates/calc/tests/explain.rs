//! `explain` against policy.md §8's worked examples and the other cases
//! the specs single out: ordering and ties, direction types, selector
//! scoping (selectors.md §6.3), named ports, notSelector vs `!has`, ICMP,
//! IPv6, staged policies, Log and Pass, host endpoints and failsafes.

mod common;

use std::net::IpAddr;

use common::{model_of, namespace_profile, parse, wep, wep_with_ports};
use tortie_calc::explain::{Decision, Peer, Request, Step, Verdict, explain, resolve_peer};
use tortie_calc::policy::Direction;
use tortie_calc::{ClusterModel, PolicyId, PolicyKind, Update, WorkloadId};
use tortie_model::Resource;
use tortie_model::endpoint::workload_endpoint_name;
use tortie_model::rule::Action;

const N1: &str = "n1";

fn wid(ns: &str, pod: &str) -> Peer {
    Peer::Workload(WorkloadId::new(
        ns,
        &workload_endpoint_name(N1, "k8s", pod, "eth0"),
    ))
}

fn ip(s: &str) -> Peer {
    Peer::Address(s.parse::<IpAddr>().unwrap())
}

fn tcp(from: Peer, to: Peer, port: u16) -> Request {
    Request {
        from,
        to,
        protocol: 6,
        dst_port: Some(port),
        src_port: Some(40000),
        icmp: None,
        family: None,
    }
}

fn np(ns: &str, name: &str) -> PolicyId {
    PolicyId::new(PolicyKind::NetworkPolicy, ns, name)
}

fn gnp(name: &str) -> PolicyId {
    PolicyId::new(PolicyKind::GlobalNetworkPolicy, "", name)
}

fn verdict(m: &ClusterModel, r: &Request) -> Verdict {
    explain(m, r).unwrap().verdict
}

fn ingress_decision(m: &ClusterModel, r: &Request) -> Decision {
    explain(m, r)
        .unwrap()
        .ingress
        .expect("destination is an endpoint")
        .decided_by
}

fn egress_decision(m: &ClusterModel, r: &Request) -> Decision {
    explain(m, r)
        .unwrap()
        .egress
        .expect("source is an endpoint")
        .decided_by
}

fn rule(tier: &str, policy: PolicyId, rule: usize, action: Action) -> Decision {
    Decision::Rule {
        tier: tier.into(),
        policy,
        rule,
        action,
    }
}

fn end_of(tier: &str) -> Decision {
    Decision::EndOfTier { tier: tier.into() }
}

fn profile_allow(ns: &str) -> Decision {
    Decision::Profile {
        profile: format!("kns.{ns}"),
        rule: 0,
        action: Action::Allow,
    }
}

fn namespaces(list: &[(&str, &[(&str, &str)])]) -> Vec<Resource> {
    list.iter()
        .map(|(ns, l)| namespace_profile(ns, l))
        .collect()
}

// ---- policy.md §8 ----

fn example_a() -> ClusterModel {
    let mut rs = namespaces(&[("blue", &[]), ("green", &[])]);
    rs.push(wep("blue", "ui", N1, "10.65.0.2/32", &[("tier", "ui")]));
    rs.push(wep("blue", "api", N1, "10.65.0.3/32", &[("tier", "api")]));
    rs.push(wep("green", "ui", N1, "10.65.1.2/32", &[("tier", "ui")]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api-in, namespace: blue}
spec:
  selector: tier == "api"
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: tier == "ui"}
    destination: {ports: [9000]}
"#,
    ));
    model_of(&rs)
}

#[test]
fn example_a_isolation_by_selection() {
    let m = example_a();
    let ok = tcp(wid("blue", "ui"), wid("blue", "api"), 9000);
    let e = explain(&m, &ok).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    assert_eq!(e.egress.unwrap().decided_by, profile_allow("blue"));
    assert_eq!(
        e.ingress.unwrap().decided_by,
        rule("default", np("blue", "api-in"), 0, Action::Allow)
    );
    let wrong_port = tcp(wid("blue", "ui"), wid("blue", "api"), 9001);
    assert_eq!(verdict(&m, &wrong_port), Verdict::Deny);
    assert_eq!(ingress_decision(&m, &wrong_port), end_of("default"));
    let other_ns = tcp(wid("green", "ui"), wid("blue", "api"), 9000);
    assert_eq!(verdict(&m, &other_ns), Verdict::Deny);
    assert_eq!(ingress_decision(&m, &other_ns), end_of("default"));
    let api_out = tcp(wid("blue", "api"), ip("1.1.1.1"), 443);
    assert_eq!(verdict(&m, &api_out), Verdict::Allow);
    assert_eq!(egress_decision(&m, &api_out), profile_allow("blue"));
}

#[test]
fn example_b_pass_and_tiers() {
    let mut rs = namespaces(&[("red", &[])]);
    for (pod, app, n) in [
        ("db", "db", 2),
        ("be", "backend", 3),
        ("cache", "cache", 4),
        ("web", "web", 5),
    ] {
        rs.push(wep(
            "red",
            pod,
            N1,
            &format!("10.65.2.{n}/32"),
            &[("app", app)],
        ));
    }
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 50}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform-guard}
spec:
  tier: platform
  selector: all()
  ingress:
  - action: Deny
    source: {nets: [192.0.2.0/24]}
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-in, namespace: red}
spec:
  selector: app == "db"
  ingress:
  - action: Allow
    source: {selector: app == "backend"}
"#,
    ));
    let m = model_of(&rs);
    let from_net = tcp(ip("192.0.2.9"), wid("red", "db"), 5432);
    assert_eq!(verdict(&m, &from_net), Verdict::Deny);
    assert_eq!(
        ingress_decision(&m, &from_net),
        rule("platform", gnp("platform-guard"), 0, Action::Deny)
    );
    let backend = tcp(wid("red", "be"), wid("red", "db"), 5432);
    let e = explain(&m, &backend).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    let ing = e.ingress.unwrap();
    assert_eq!(
        ing.decided_by,
        rule("default", np("red", "db-in"), 0, Action::Allow)
    );
    assert_eq!(
        ing.steps,
        [Step::PassedByRule {
            tier: "platform".into(),
            policy: gnp("platform-guard"),
            rule: 1
        }]
    );
    let cache = tcp(wid("red", "cache"), wid("red", "db"), 5432);
    assert_eq!(ingress_decision(&m, &cache), end_of("default"));
    let to_web = tcp(wid("red", "cache"), wid("red", "web"), 80);
    assert_eq!(verdict(&m, &to_web), Verdict::Allow);
    assert_eq!(ingress_decision(&m, &to_web), profile_allow("red"));
}

fn gnps(defs: &str) -> Vec<Resource> {
    parse(defs)
}

#[test]
fn example_c_ordering_and_ties() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.3.2/32", &[]));
    rs.extend(gnps(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: x}
spec: {order: 10, selector: all(), ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: y}
spec: {selector: all(), ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: w}
spec: {order: 10, selector: all(), ingress: [{action: Allow}]}
"#,
    ));
    let m = model_of(&rs);
    let r = tcp(ip("10.1.1.1"), wid("ns", "p"), 80);
    assert_eq!(
        ingress_decision(&m, &r),
        rule("default", gnp("w"), 0, Action::Allow)
    );
}

#[test]
fn example_d_egress_default_deny() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.4.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: egress-lock}
spec:
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination: {ports: [53]}
"#,
    ));
    let m = model_of(&rs);
    let dns = Request {
        protocol: 17,
        ..tcp(wid("ns", "p"), ip("10.0.0.10"), 53)
    };
    assert_eq!(
        egress_decision(&m, &dns),
        rule("default", gnp("egress-lock"), 0, Action::Allow)
    );
    let https = tcp(wid("ns", "p"), ip("1.1.1.1"), 443);
    assert_eq!(verdict(&m, &https), Verdict::Deny);
    assert_eq!(egress_decision(&m, &https), end_of("default"));
    let inbound = tcp(ip("1.1.1.1"), wid("ns", "p"), 443);
    assert_eq!(verdict(&m, &inbound), Verdict::Allow);
    assert_eq!(ingress_decision(&m, &inbound), profile_allow("ns"));
}

#[test]
fn example_e_host_endpoint_with_failsafe() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.5.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {host: edge}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.10]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: edge}
spec:
  selector: host == "edge"
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [443]}
"#,
    ));
    let m = model_of(&rs);
    let hep = Peer::Host("n1-eth0".into());
    let https = tcp(ip("198.51.100.1"), hep.clone(), 443);
    assert_eq!(
        ingress_decision(&m, &https),
        rule("default", gnp("edge"), 0, Action::Allow)
    );
    let ssh = tcp(ip("198.51.100.1"), hep.clone(), 22);
    assert_eq!(verdict(&m, &ssh), Verdict::Allow);
    assert_eq!(
        ingress_decision(&m, &ssh),
        Decision::Failsafe {
            protocol: 6,
            port: 22
        }
    );
    let other = tcp(ip("198.51.100.1"), hep, 8080);
    assert_eq!(verdict(&m, &other), Verdict::Deny);
    assert_eq!(ingress_decision(&m, &other), end_of("default"));
    // Forwarded to a pod behind eth0: the pod's policy decides.
    let forwarded = tcp(ip("198.51.100.1"), wid("ns", "p"), 8080);
    assert_eq!(verdict(&m, &forwarded), Verdict::Allow);
    assert_eq!(ingress_decision(&m, &forwarded), profile_allow("ns"));
}

// ---- ordering ----

#[test]
fn ties_break_on_name_then_namespace_then_kind_and_orders_are_floats() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.6.2/32", &[]));
    // Same name and order: "a//GlobalNetworkPolicy" < "a/ns/NetworkPolicy".
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a, namespace: ns}
spec: {order: 5, ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a}
spec: {order: 5, selector: all(), ingress: [{action: Allow, protocol: TCP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: float-low}
spec: {order: 4.25, selector: all(), ingress: [{action: Deny, protocol: UDP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: float-high}
spec: {order: 4.5, selector: all(), ingress: [{action: Allow, protocol: UDP}]}
"#,
    ));
    let m = model_of(&rs);
    let r = tcp(ip("10.1.1.1"), wid("ns", "p"), 80);
    assert_eq!(
        ingress_decision(&m, &r),
        rule("default", gnp("a"), 0, Action::Allow)
    );
    let icmp = Request {
        protocol: 1,
        dst_port: None,
        ..r.clone()
    };
    assert_eq!(
        ingress_decision(&m, &icmp),
        rule("default", np("ns", "a"), 0, Action::Deny)
    );
    let udp = Request { protocol: 17, ..r };
    assert_eq!(
        ingress_decision(&m, &udp),
        rule("default", gnp("float-low"), 0, Action::Deny)
    );
}

#[test]
fn tiers_without_order_come_after_every_ordered_tier_then_by_name() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.7.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: bb}
spec: {}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: aa}
spec: {defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: in-bb}
spec: {tier: bb, selector: all(), ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: in-aa}
spec: {tier: aa, selector: all(), ingress: [{action: Deny, protocol: UDP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: in-baseline}
spec: {tier: kube-baseline, selector: all(), ingress: [{action: Deny, protocol: SCTP}]}
"#,
    ));
    let m = model_of(&rs);
    let tcp_in = tcp(ip("10.1.1.1"), wid("ns", "p"), 80);
    let e = explain(&m, &tcp_in).unwrap().ingress.unwrap();
    // kube-baseline (ordered, 1e7) passes by default, then aa, then bb.
    assert_eq!(e.decided_by, rule("bb", gnp("in-bb"), 0, Action::Allow));
    assert_eq!(
        e.steps,
        [
            Step::TierDefaultPass {
                tier: "kube-baseline".into()
            },
            Step::TierDefaultPass { tier: "aa".into() }
        ]
    );
    let udp = Request {
        protocol: 17,
        ..tcp_in.clone()
    };
    assert_eq!(
        ingress_decision(&m, &udp),
        rule("aa", gnp("in-aa"), 0, Action::Deny)
    );
    let sctp = Request {
        protocol: 132,
        ..tcp_in
    };
    assert_eq!(
        ingress_decision(&m, &sctp),
        rule("kube-baseline", gnp("in-baseline"), 0, Action::Deny)
    );
}

// ---- types ----

#[test]
fn types_defaulted_explicit_and_legacy() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep(
        "ns",
        "e",
        N1,
        "10.65.8.2/32",
        &[("role", "egress-only")],
    ));
    rs.push(wep("ns", "x", N1, "10.65.8.3/32", &[("role", "explicit")]));
    rs.push(wep("ns", "b", N1, "10.65.8.4/32", &[("role", "both")]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: defaulted, namespace: ns}
spec:
  selector: role == "egress-only"
  egress: [{action: Deny, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: explicit, namespace: ns}
spec:
  selector: role == "explicit"
  types: [Egress]
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: both, namespace: ns}
spec:
  selector: role == "both"
  types: [Ingress, Egress]
  ingress: [{action: Allow}]
"#,
    ));
    let mut m = model_of(&rs);
    // Defaulted to [Egress]: ingress is untouched, TCP egress hits end of tier.
    assert_eq!(
        ingress_decision(&m, &tcp(ip("10.9.9.9"), wid("ns", "e"), 80)),
        profile_allow("ns")
    );
    assert_eq!(
        egress_decision(&m, &tcp(wid("ns", "e"), ip("10.9.9.9"), 80)),
        end_of("default")
    );
    // Explicit [Egress] with only ingress rules: the ingress rules are ignored.
    assert_eq!(
        ingress_decision(&m, &tcp(ip("10.9.9.9"), wid("ns", "x"), 80)),
        profile_allow("ns")
    );
    assert_eq!(
        egress_decision(&m, &tcp(wid("ns", "x"), ip("10.9.9.9"), 80)),
        end_of("default")
    );
    // [Ingress, Egress] without egress rules denies all egress.
    assert_eq!(
        egress_decision(&m, &tcp(wid("ns", "b"), ip("10.9.9.9"), 80)),
        end_of("default")
    );
    // Legacy data with no types at all (not defaulted on write): both.
    let legacy = parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: legacy, namespace: ns}
spec:
  selector: role == "both"
  ingress: [{action: Allow}]
"#,
    );
    let mut raw = legacy[0].clone();
    if let Some(spec) = raw.spec_mut::<tortie_model::policy::NetworkPolicySpec>() {
        spec.types.clear();
    }
    m.apply(Update::Put(Box::new(raw))).unwrap();
    let pol = m.policy(&np("ns", "legacy")).unwrap();
    assert!(pol.ingress_type && pol.egress_type);
}

// ---- selector scoping (selectors.md §6.3) ----

fn scoping_model(policy: &str) -> ClusterModel {
    let mut rs = namespaces(&[("blue", &[("env", "prod")]), ("green", &[("env", "dev")])]);
    rs.push(wep("blue", "dst", N1, "10.65.9.2/32", &[("app", "dst")]));
    rs.push(wep("blue", "fe", N1, "10.65.9.3/32", &[("role", "fe")]));
    rs.push(wep("blue", "bad", N1, "10.65.9.4/32", &[("role", "bad")]));
    rs.push(wep("green", "fe", N1, "10.65.9.5/32", &[("role", "fe")]));
    let mut sa = wep("green", "sa", N1, "10.65.9.6/32", &[]);
    if let Some(s) = sa.spec_mut::<tortie_model::endpoint::WorkloadEndpointSpec>() {
        s.service_account_name = "robot".into();
    }
    rs.push(sa);
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {trust: partner}}
spec: {nets: [198.51.100.0/24]}
"#,
    ));
    rs.extend(parse(policy));
    model_of(&rs)
}

fn from(m: &ClusterModel, src: Peer) -> Verdict {
    verdict(m, &tcp(src, wid("blue", "dst"), 80))
}

#[test]
fn namespaced_rule_selectors_stay_in_their_namespace() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: blue}
spec:
  selector: app == "dst"
  ingress: [{action: Allow, source: {selector: role == "fe"}}]
"#,
    );
    assert_eq!(from(&m, wid("blue", "fe")), Verdict::Allow);
    assert_eq!(from(&m, wid("green", "fe")), Verdict::Deny);
}

#[test]
fn namespace_selector_all_means_any_namespaced_workload() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: blue}
spec:
  selector: app == "dst"
  ingress: [{action: Allow, source: {namespaceSelector: all()}}]
"#,
    );
    assert_eq!(from(&m, wid("green", "fe")), Verdict::Allow);
    assert_eq!(from(&m, ip("198.51.100.7")), Verdict::Deny, "global set");
    assert_eq!(
        from(&m, ip("203.0.113.1")),
        Verdict::Deny,
        "unknown address"
    );
}

#[test]
fn namespace_selector_global_means_only_non_namespaced_things() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: blue}
spec:
  selector: app == "dst"
  ingress: [{action: Allow, source: {namespaceSelector: global(), selector: trust == "partner"}}]
"#,
    );
    assert_eq!(from(&m, ip("198.51.100.7")), Verdict::Allow);
    assert_eq!(from(&m, wid("blue", "fe")), Verdict::Deny);
}

#[test]
fn namespace_selectors_match_namespace_labels() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: blue}
spec:
  selector: app == "dst"
  ingress: [{action: Allow, source: {namespaceSelector: env == "dev", selector: role == "fe"}}]
"#,
    );
    assert_eq!(from(&m, wid("green", "fe")), Verdict::Allow);
    assert_eq!(from(&m, wid("blue", "fe")), Verdict::Deny);
}

#[test]
fn global_policy_namespace_selector_limits_where_it_applies() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: prod-lock}
spec:
  namespaceSelector: env == "prod"
  ingress: [{action: Deny}]
"#,
    );
    assert_eq!(from(&m, wid("green", "fe")), Verdict::Deny, "blue is prod");
    let to_green = tcp(wid("blue", "fe"), wid("green", "fe"), 80);
    assert_eq!(verdict(&m, &to_green), Verdict::Allow, "green is dev");
}

#[test]
fn service_account_names_match_the_implicit_label() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: robots}
spec:
  selector: app == "dst"
  ingress: [{action: Allow, source: {serviceAccounts: {names: [robot]}}}]
"#,
    );
    assert_eq!(from(&m, wid("green", "sa")), Verdict::Allow);
    assert_eq!(from(&m, wid("green", "fe")), Verdict::Deny);
}

#[test]
fn not_selector_is_not_scoped_but_the_namespace_part_is() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: blue}
spec:
  selector: app == "dst"
  ingress: [{action: Allow, source: {notSelector: role == "bad"}}]
"#,
    );
    assert_eq!(from(&m, wid("blue", "fe")), Verdict::Allow);
    assert_eq!(from(&m, wid("blue", "bad")), Verdict::Deny);
    assert_eq!(
        from(&m, wid("green", "fe")),
        Verdict::Deny,
        "outside the namespace"
    );
}

#[test]
fn not_selector_matches_unknown_addresses_but_a_negated_selector_does_not() {
    let m = scoping_model(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == "dst"
  ingress:
  - {action: Allow, protocol: TCP, source: {notSelector: has(role)}}
  - {action: Allow, protocol: UDP, source: {selector: "!has(role)"}}
"#,
    );
    let unknown = ip("203.0.113.1");
    assert_eq!(from(&m, unknown.clone()), Verdict::Allow);
    assert_eq!(from(&m, wid("blue", "fe")), Verdict::Deny);
    let udp = |src| Request {
        protocol: 17,
        ..tcp(src, wid("blue", "dst"), 53)
    };
    assert_eq!(verdict(&m, &udp(unknown)), Verdict::Deny);
    assert_eq!(verdict(&m, &udp(wid("green", "sa"))), Verdict::Allow);
    // An address inside a selected network set matches, as in the dataplane.
    assert_eq!(verdict(&m, &udp(ip("198.51.100.9"))), Verdict::Allow);
}

// ---- named ports, ICMP, IPv6 ----

#[test]
fn named_ports_resolve_per_destination_endpoint() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep_with_ports(
        "ns",
        "a",
        N1,
        "10.65.10.2/32",
        &[("app", "web")],
        &[("http", "TCP", 8080)],
    ));
    rs.push(wep_with_ports(
        "ns",
        "b",
        N1,
        "10.65.10.3/32",
        &[("app", "web")],
        &[("http", "TCP", 9090)],
    ));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: ns}
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [http]}
"#,
    ));
    let m = model_of(&rs);
    let src = || ip("10.9.9.9");
    assert_eq!(
        verdict(&m, &tcp(src(), wid("ns", "a"), 8080)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&m, &tcp(src(), wid("ns", "a"), 9090)),
        Verdict::Deny
    );
    assert_eq!(
        verdict(&m, &tcp(src(), wid("ns", "b"), 9090)),
        Verdict::Allow
    );
    let udp = Request {
        protocol: 17,
        ..tcp(src(), wid("ns", "a"), 8080)
    };
    assert_eq!(verdict(&m, &udp), Verdict::Deny);
}

#[test]
fn icmp_type_and_code() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.11.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: ping}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}
  - {action: Allow, protocol: ICMP, notICMP: {type: 5}}
"#,
    ));
    let m = model_of(&rs);
    let icmp = |t, c| Request {
        protocol: 1,
        dst_port: None,
        src_port: None,
        icmp: Some((t, c)),
        ..tcp(ip("10.9.9.9"), wid("ns", "p"), 0)
    };
    assert_eq!(
        ingress_decision(&m, &icmp(8, 0)),
        rule("default", gnp("ping"), 0, Action::Allow)
    );
    assert_eq!(
        ingress_decision(&m, &icmp(0, 0)),
        rule("default", gnp("ping"), 1, Action::Allow)
    );
    assert_eq!(ingress_decision(&m, &icmp(5, 1)), end_of("default"));
}

#[test]
fn ipv6_families_are_respected() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep(
        "ns",
        "a",
        N1,
        "10.65.12.2/32, fd00::2/128",
        &[("app", "a")],
    ));
    rs.push(wep("ns", "b", N1, "fd00::3/128", &[("app", "b")]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: v6}
spec:
  selector: app == "b"
  ingress:
  - {action: Allow, protocol: ICMPv6}
  - {action: Deny, ipVersion: 4}
  - {action: Allow, protocol: TCP, source: {nets: ["fd00::/64"]}}
"#,
    ));
    let m = model_of(&rs);
    // Only IPv6 is common to a and b.
    let e = explain(&m, &tcp(wid("ns", "a"), wid("ns", "b"), 80)).unwrap();
    assert_eq!(e.src_addr, "fd00::2".parse::<IpAddr>().unwrap());
    assert_eq!(
        e.ingress.unwrap().decided_by,
        rule("default", gnp("v6"), 2, Action::Allow)
    );
    let ping6 = Request {
        protocol: 58,
        dst_port: None,
        icmp: Some((128, 0)),
        ..tcp(wid("ns", "a"), wid("ns", "b"), 0)
    };
    assert_eq!(
        ingress_decision(&m, &ping6),
        rule("default", gnp("v6"), 0, Action::Allow)
    );
    // The ICMP (v4) protocol number on a v6 packet does not match ICMPv6.
    let v4proto = Request {
        protocol: 1,
        ..ping6
    };
    assert_eq!(ingress_decision(&m, &v4proto), end_of("default"));
}

// ---- staged, log, profiles, special paths ----

#[test]
fn staged_policies_report_but_never_decide() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.13.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: lockdown, namespace: ns}
spec: {ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: logger}
spec:
  tier: kube-admin
  selector: all()
  ingress: [{action: Log}, {action: Pass}]
"#,
    ));
    let m = model_of(&rs);
    let e = explain(&m, &tcp(ip("10.9.9.9"), wid("ns", "p"), 80)).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    let ing = e.ingress.unwrap();
    assert_eq!(ing.decided_by, profile_allow("ns"));
    assert_eq!(
        ing.steps,
        [
            Step::Logged {
                policy: "gnp/logger".into(),
                rule: 0
            },
            Step::PassedByRule {
                tier: "kube-admin".into(),
                policy: gnp("logger"),
                rule: 1
            },
            Step::StagedOnlyTier {
                tier: "default".into()
            }
        ]
    );
    assert_eq!(ing.staged.len(), 1);
    assert_eq!(
        ing.staged[0].policy,
        PolicyId::new(PolicyKind::StagedNetworkPolicy, "ns", "lockdown")
    );
    assert_eq!(ing.staged[0].rule, Some((0, Action::Deny)));
}

#[test]
fn profiles_in_order_with_pass_then_final_drop() {
    let mut rs = parse(
        r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: first}
spec:
  ingress: [{action: Pass, protocol: TCP}, {action: Deny, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: second}
spec:
  ingress: [{action: Allow, protocol: TCP}]
"#,
    );
    let mut w = wep("ns", "p", N1, "10.65.14.2/32", &[]);
    if let Some(s) = w.spec_mut::<tortie_model::endpoint::WorkloadEndpointSpec>() {
        s.profiles = vec!["first".into(), "missing".into(), "second".into()];
    }
    rs.push(w);
    let m = model_of(&rs);
    let t = tcp(ip("10.9.9.9"), wid("ns", "p"), 80);
    let e = explain(&m, &t).unwrap().ingress.unwrap();
    assert_eq!(
        e.decided_by,
        Decision::Profile {
            profile: "second".into(),
            rule: 0,
            action: Action::Allow
        }
    );
    let udp = Request {
        protocol: 17,
        ..t.clone()
    };
    assert_eq!(
        ingress_decision(&m, &udp),
        Decision::Profile {
            profile: "first".into(),
            rule: 1,
            action: Action::Deny
        }
    );
    let sctp = Request { protocol: 132, ..t };
    assert_eq!(ingress_decision(&m, &sctp), Decision::NoProfileAllowed);
}

#[test]
fn host_and_local_workload_paths() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "p", N1, "10.65.15.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.10]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-in}
spec: {selector: all(), ingress: [{action: Deny}]}
"#,
    ));
    let mut m = model_of(&rs);
    let hep = Peer::Host("n1-eth0".into());
    // Host to its own workload: never blocked, whatever the workload's policy.
    let e = explain(&m, &tcp(hep.clone(), wid("ns", "p"), 80)).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    assert_eq!(e.ingress.unwrap().decided_by, Decision::HostToLocalWorkload);
    // Workload to its host: defaultEndpointToHostAction (Drop by default).
    let up = tcp(wid("ns", "p"), hep.clone(), 10250);
    assert_eq!(verdict(&m, &up), Verdict::Deny);
    let cfg = parse(
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {defaultEndpointToHostAction: Accept}\n",
    );
    m.apply(Update::Put(Box::new(cfg[0].clone()))).unwrap();
    assert_eq!(verdict(&m, &up), Verdict::Allow);
    // A host endpoint with no policy and no profile drops (except failsafe).
    let from_outside = tcp(ip("198.51.100.1"), hep.clone(), 80);
    assert_eq!(verdict(&m, &from_outside), Verdict::Deny);
    assert_eq!(
        verdict(&m, &tcp(ip("198.51.100.1"), hep, 22)),
        Verdict::Allow
    );
}

#[test]
fn peers_resolve_by_name_pod_set_or_address() {
    let mut rs = namespaces(&[("ns", &[])]);
    rs.push(wep("ns", "web-1", N1, "10.65.16.2/32", &[]));
    rs.extend(parse(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: office, namespace: ns}
spec: {nets: [203.0.113.0/28]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: world}
spec: {nets: [0.0.0.0/0]}
"#,
    ));
    let m = model_of(&rs);
    assert_eq!(resolve_peer(&m, "ns/web-1").unwrap(), wid("ns", "web-1"));
    assert!(matches!(
        resolve_peer(&m, "ns/office").unwrap(),
        Peer::NetworkSet(_)
    ));
    assert!(matches!(
        resolve_peer(&m, "world").unwrap(),
        Peer::NetworkSet(_)
    ));
    assert_eq!(resolve_peer(&m, "10.0.0.1").unwrap(), ip("10.0.0.1"));
    assert!(resolve_peer(&m, "ns/nope").is_err());
    let e = explain(
        &m,
        &tcp(
            resolve_peer(&m, "ns/office").unwrap(),
            wid("ns", "web-1"),
            80,
        ),
    )
    .unwrap();
    assert_eq!(e.src_addr, "203.0.113.0".parse::<IpAddr>().unwrap());
    assert!(e.egress.is_none(), "a network set has no egress policy");
    let text = e.to_string();
    assert!(text.contains("ALLOW"), "{text}");
    assert!(text.contains("ingress at WorkloadEndpoint ns/"), "{text}");
    let d = explain(&m, &tcp(ip("10.0.0.1"), wid("ns", "web-1"), 80)).unwrap();
    assert_eq!(d.ingress.unwrap().direction, Direction::Ingress);
}
