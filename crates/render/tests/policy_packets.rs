//! Real packets through the ruleset tortie renders (needs root): every
//! worked example of policy.md §8 and the semantics around them, each in
//! its own namespaces (see `support`), with resources written as YAML,
//! calculated by `tortie_calc::Calculator` for node `host1`, rendered by
//! `PolicyRenderer` and applied by the nftables `Reconciler`.

mod support;

use anyhow::{Result, ensure};
use support::{Lab, PodSpec, namespace_profile};
use tortie_model::Kind;

/// Asserts a connectivity matrix: (what, observed, expected).
fn expect(results: &[(&str, bool, bool)]) -> Result<()> {
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: {} (expected {})", verdict(*got), verdict(*want)))
        .collect();
    ensure!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    Ok(())
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "dropped" }
}

#[test]
fn example_a_isolation_by_selection_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("blue"))?;
    lab.put(&namespace_profile("green"))?;
    lab.pod(PodSpec::new("blue", "ui", "10.65.0.2").labels(&[("tier", "ui")]))?;
    lab.pod(PodSpec::new("blue", "api", "10.65.0.3").labels(&[("tier", "api")]))?;
    lab.pod(PodSpec::new("green", "gui", "10.65.0.4").labels(&[("tier", "ui")]))?;
    lab.put(
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
    )?;
    lab.sync()?;
    expect(&[
        ("blue ui -> api:9000", lab.tcp("ui", "api", 9000)?, true),
        ("blue ui -> api:9001", lab.tcp("ui", "api", 9001)?, false),
        ("green ui -> api:9000", lab.tcp("gui", "api", 9000)?, false),
        (
            "api -> ui:80 (no egress type)",
            lab.tcp("api", "ui", 80)?,
            true,
        ),
        ("api -> gui:9000", lab.tcp("api", "gui", 9000)?, true),
        (
            "ui -> api ping (default deny)",
            lab.ping("ui", "api")?,
            false,
        ),
        (
            "gui -> ui udp:53 (no policy)",
            lab.udp("gui", "ui", 53)?,
            true,
        ),
    ])
}

#[test]
fn example_b_pass_and_tiers_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("red"))?;
    lab.put(&namespace_profile("ext"))?;
    lab.pod(PodSpec::new("red", "db", "10.65.0.2").labels(&[("app", "db")]))?;
    lab.pod(PodSpec::new("red", "backend", "10.65.0.3").labels(&[("app", "backend")]))?;
    lab.pod(PodSpec::new("red", "cache", "10.65.0.4").labels(&[("app", "cache")]))?;
    lab.pod(PodSpec::new("red", "web", "10.65.0.5").labels(&[("app", "web")]))?;
    lab.pod(PodSpec::new("ext", "outsider", "192.0.2.9"))?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 50}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.platform-guard}
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
    )?;
    lab.sync()?;
    expect(&[
        ("192.0.2.9 -> db", lab.tcp("outsider", "db", 5432)?, false),
        ("backend -> db", lab.tcp("backend", "db", 5432)?, true),
        ("backend -> db udp", lab.udp("backend", "db", 53)?, true),
        ("cache -> db", lab.tcp("cache", "db", 5432)?, false),
        ("cache -> web", lab.tcp("cache", "web", 80)?, true),
        ("192.0.2.9 -> web", lab.tcp("outsider", "web", 80)?, false),
    ])
}

#[test]
fn example_c_ordering_and_ties_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "a", "10.65.0.2"))?;
    lab.pod(PodSpec::new("ns", "b", "10.65.0.3"))?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: x}
spec: {selector: all(), order: 10, ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: y}
spec: {selector: all(), ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: w}
spec: {selector: all(), order: 10, ingress: [{action: Allow}]}
"#,
    )?;
    lab.sync()?;
    expect(&[
        ("a -> b (w allows first)", lab.tcp("a", "b", 80)?, true),
        ("b -> a ping", lab.ping("b", "a")?, true),
    ])?;
    // Without w, x (order 10) comes before y (no order) and denies.
    lab.delete(Kind::GlobalNetworkPolicy, "", "w")?;
    let (stats, _) = lab.sync()?;
    ensure!(
        stats.policies == 0 && stats.workload_endpoints == 2,
        "a policy delete rewrites the endpoints' chains only: {stats:?}"
    );
    expect(&[("a -> b (x denies)", lab.tcp("a", "b", 80)?, false)])
}

#[test]
fn example_d_egress_default_deny_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "a", "10.65.0.2"))?;
    lab.pod(PodSpec::new("ns", "b", "10.65.0.3"))?;
    lab.put(
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
    )?;
    lab.sync()?;
    let outside = support::OUTSIDE_V4.parse()?;
    let host = &lab.host;
    expect(&[
        ("a -> b udp:53", lab.udp("a", "b", 53)?, true),
        (
            "a -> outside udp:53",
            support::udp(lab.pod_ns("a")?, outside, 53)?,
            true,
        ),
        ("a -> b tcp:443", lab.tcp("a", "b", 443)?, false),
        (
            "a -> outside tcp:443",
            support::tcp(lab.pod_ns("a")?, outside, 443)?,
            false,
        ),
        ("a -> b udp:5353", lab.udp("a", "b", 5353)?, false),
        (
            "host -> a tcp:80 (ingress: profile)",
            support::tcp(host, lab.v4("a")?, 80)?,
            true,
        ),
        (
            "outside -> b tcp:80 (ingress: profile)",
            support::tcp(&lab.outside, lab.v4("b")?, 80)?,
            true,
        ),
    ])
}

#[test]
fn ipv6_pod_to_pod_with_a_policy_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    for (name, v4, v6, app) in [
        ("web", "10.65.0.2", "fd00:65::2", "web"),
        ("client", "10.65.0.3", "fd00:65::3", "client"),
        ("other", "10.65.0.4", "fd00:65::4", "other"),
    ] {
        let mut s = PodSpec::new("ns", name, v4);
        s.v6 = Some(v6);
        let labels = [("app", app)];
        lab.pod(s.labels(&labels))?;
    }
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web6}
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == "client"}
    destination: {ports: [80]}
  - action: Allow
    protocol: ICMPv6
    source: {selector: app == "client"}
"#,
    )?;
    lab.sync()?;
    let web6 = lab.v6("web")?;
    let client = lab.pod_ns("client")?;
    let other = lab.pod_ns("other")?;
    expect(&[
        (
            "client -> web [v6]:80",
            support::tcp(client, web6, 80)?,
            true,
        ),
        (
            "client -> web [v6]:443",
            support::tcp(client, web6, 443)?,
            false,
        ),
        (
            "other -> web [v6]:80",
            support::tcp(other, web6, 80)?,
            false,
        ),
        ("client ping6 web", support::ping(client, web6), true),
        ("other ping6 web", support::ping(other, web6), false),
        ("client -> web v4:80", lab.tcp("client", "web", 80)?, true),
        (
            "client ping web (ICMPv6 rule only)",
            lab.ping("client", "web")?,
            false,
        ),
        (
            "web -> other [v6]:80 (no policy)",
            support::tcp(lab.pod_ns("web")?, lab.v6("other")?, 80)?,
            true,
        ),
    ])
}

#[test]
fn named_ports_resolve_per_endpoint_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "client", "10.65.0.2"))?;
    let mut web1 = PodSpec::new("ns", "web1", "10.65.0.3").labels(&[("app", "web")]);
    web1.ports = &[("http", "TCP", 8080)];
    lab.pod(web1)?;
    let mut web2 = PodSpec::new("ns", "web2", "10.65.0.4").labels(&[("app", "web")]);
    web2.ports = &[("http", "TCP", 9090)];
    lab.pod(web2)?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [http, 22]}
"#,
    )?;
    lab.sync()?;
    expect(&[
        (
            "client -> web1:8080 (http)",
            lab.tcp("client", "web1", 8080)?,
            true,
        ),
        (
            "client -> web1:9090",
            lab.tcp("client", "web1", 9090)?,
            false,
        ),
        (
            "client -> web2:9090 (http)",
            lab.tcp("client", "web2", 9090)?,
            true,
        ),
        (
            "client -> web2:8080",
            lab.tcp("client", "web2", 8080)?,
            false,
        ),
        (
            "client -> web2:22 (numeric)",
            lab.tcp("client", "web2", 22)?,
            true,
        ),
        ("client -> web1:80", lab.tcp("client", "web1", 80)?, false),
    ])
}

#[test]
fn not_selector_matches_unknown_addresses_too_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "server", "10.65.0.2").labels(&[("app", "server")]))?;
    lab.pod(PodSpec::new("ns", "good", "10.65.0.3").labels(&[("role", "good")]))?;
    lab.pod(PodSpec::new("ns", "bad", "10.65.0.4").labels(&[("role", "bad")]))?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: no-bad}
spec:
  selector: app == "server"
  ingress:
  - action: Allow
    source: {notSelector: role == "bad"}
"#,
    )?;
    lab.sync()?;
    let server = lab.v4("server")?;
    expect(&[
        ("good -> server", lab.tcp("good", "server", 80)?, true),
        ("bad -> server", lab.tcp("bad", "server", 80)?, false),
        ("bad -> server udp", lab.udp("bad", "server", 53)?, false),
        (
            "outside (unknown) -> server",
            support::tcp(&lab.outside, server, 80)?,
            true,
        ),
    ])
}

#[test]
fn default_deny_once_a_policy_applies_and_delete_restores_the_profile_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "locked", "10.65.0.2").labels(&[("lock", "yes")]))?;
    lab.pod(PodSpec::new("ns", "open", "10.65.0.3"))?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: lock, namespace: ns}
spec:
  selector: lock == "yes"
  types: [Ingress]
"#,
    )?;
    lab.sync()?;
    expect(&[
        ("open -> locked tcp", lab.tcp("open", "locked", 80)?, false),
        ("open -> locked udp", lab.udp("open", "locked", 53)?, false),
        ("open -> locked ping", lab.ping("open", "locked")?, false),
        ("locked -> open tcp", lab.tcp("locked", "open", 80)?, true),
    ])?;
    lab.delete(Kind::NetworkPolicy, "ns", "lock")?;
    let (stats, _) = lab.sync()?;
    // pi-, po- and locked's ingress group chain (locked now shares open's).
    ensure!(
        stats.chains_removed == 3,
        "pi-, po- and a group chain removed: {stats:?}"
    );
    expect(&[
        (
            "open -> locked tcp (profile)",
            lab.tcp("open", "locked", 80)?,
            true,
        ),
        (
            "open -> locked ping (profile)",
            lab.ping("open", "locked")?,
            true,
        ),
    ])
}

/// The server (`app == "server"`) admits only `role == "friend"`.
const FRIENDS_ONLY: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: friends}
spec:
  selector: app == "server"
  ingress:
  - action: Allow
    source: {selector: role == "friend"}
"#;

#[test]
fn a_label_change_flips_a_verdict_through_set_elements_only_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "server", "10.65.0.2").labels(&[("app", "server")]))?;
    lab.pod(PodSpec::new("ns", "client", "10.65.0.3").labels(&[("role", "stranger")]))?;
    lab.put(FRIENDS_ONLY)?;
    lab.sync()?;
    expect(&[(
        "stranger -> server",
        lab.tcp("client", "server", 80)?,
        false,
    )])?;
    lab.relabel(PodSpec::new("ns", "client", "10.65.0.3").labels(&[("role", "friend")]))?;
    let (stats, report) = lab.sync()?;
    ensure!(
        stats.chains_written == 0 && stats.set_elements_added == 1,
        "only a set element: {stats:?}"
    );
    ensure!(report.messages == 1, "one element message: {report:?}");
    expect(&[("friend -> server", lab.tcp("client", "server", 80)?, true)])?;
    lab.relabel(PodSpec::new("ns", "client", "10.65.0.3").labels(&[("role", "ex")]))?;
    let (stats, _) = lab.sync()?;
    ensure!(
        stats.chains_written == 0 && stats.set_elements_removed == 1,
        "{stats:?}"
    );
    expect(&[(
        "ex-friend -> server",
        lab.tcp("client", "server", 80)?,
        false,
    )])
}

#[test]
fn a_network_set_joining_a_selector_moves_it_to_ranges_and_back_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "server", "10.65.0.2").labels(&[("app", "server")]))?;
    lab.pod(PodSpec::new("ns", "client", "10.65.0.3").labels(&[("role", "friend")]))?;
    lab.pod(PodSpec::new("ns", "other", "10.65.0.4").labels(&[("role", "stranger")]))?;
    lab.put(FRIENDS_ONLY)?;
    lab.sync()?;
    let friends = |lab: &Lab| -> Result<Vec<(&'static str, bool, bool)>> {
        Ok(vec![
            ("client -> server", lab.tcp("client", "server", 80)?, true),
            ("other -> server", lab.tcp("other", "server", 80)?, false),
        ])
    };
    expect(&friends(&lab)?)?;
    ensure!(
        lab.ruleset()?.contains("@sel4h"),
        "a selector of workloads is looked up in the hash"
    );
    // A network set of friends covering `other`: the selector now holds
    // a CIDR, so it and its rules move to the interval set.
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: office, labels: {role: friend}}
spec: {nets: [10.65.0.4/30]}
"#,
    )?;
    let (stats, _) = lab.sync()?;
    ensure!(stats.chains_written >= 1, "the rule follows: {stats:?}");
    expect(&[
        ("client -> server", lab.tcp("client", "server", 80)?, true),
        (
            "other (in the network set) -> server",
            lab.tcp("other", "server", 80)?,
            true,
        ),
    ])?;
    let listing = lab.ruleset()?;
    ensure!(
        listing.contains("@sel4 ") && !listing.contains("@sel4h"),
        "the rule looks up the interval set:\n{listing}"
    );
    lab.delete(Kind::GlobalNetworkSet, "", "office")?;
    lab.sync()?;
    expect(&friends(&lab)?)?;
    ensure!(lab.ruleset()?.contains("@sel4h"), "and back to the hash");
    Ok(())
}

#[test]
fn workload_to_host_encapsulation_and_unknown_interfaces_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "a", "10.65.0.2"))?;
    lab.pod(PodSpec::new("ns", "b", "10.65.0.3"))?;
    lab.sync()?;
    let host = support::HOST_V4.parse()?;
    expect(&[
        ("a -> b udp:53", lab.udp("a", "b", 53)?, true),
        ("a -> b udp:4789 (VXLAN)", lab.udp("a", "b", 4789)?, false),
        (
            "a -> host tcp:80 (defaultEndpointToHostAction Drop)",
            support::tcp(lab.pod_ns("a")?, host, 80)?,
            false,
        ),
    ])?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept, allowVXLANPacketsFromWorkloads: true}
"#,
    )?;
    lab.sync()?;
    expect(&[
        (
            "a -> b udp:4789 (allowed by config)",
            lab.udp("a", "b", 4789)?,
            true,
        ),
        (
            "a -> host tcp:80 (Accept)",
            support::tcp(lab.pod_ns("a")?, host, 80)?,
            true,
        ),
    ])?;
    // The endpoint of b goes: its interface is an unknown cali* one.
    let b_name = tortie_model::endpoint::workload_endpoint_name(support::NODE, "k8s", "b", "eth0");
    lab.delete(Kind::WorkloadEndpoint, "ns", &b_name)?;
    let (stats, _) = lab.sync()?;
    ensure!(
        // b shared a's group chains: only its two dispatch elements go.
        stats.chains_removed == 0 && stats.dispatch_elements_removed == 2,
        "{stats:?}"
    );
    expect(&[
        ("a -> b (unknown interface)", lab.tcp("a", "b", 80)?, false),
        (
            "b -> outside (unknown interface)",
            support::tcp(lab.pod_ns("b")?, support::OUTSIDE_V4.parse()?, 80)?,
            false,
        ),
    ])
}
