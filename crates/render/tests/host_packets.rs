//! Real packets through host-endpoint policy, NAT outgoing, and the
//! kernel's read-back of everything tortie renders (needs root). The
//! host namespace's `eth0` (a veth to the `outside` namespace, the
//! client) carries the host endpoint, as in policy.md §8 example E.

mod support;

use anyhow::{Result, ensure};
use std::net::IpAddr;
use support::{HOST_V4, Lab, OUTSIDE_V4, PodSpec, namespace_profile};

fn expect(results: &[(&str, bool, bool)]) -> Result<()> {
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: got allowed={got}, expected allowed={want}"))
        .collect();
    ensure!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    Ok(())
}

const HEP: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {host: edge}}
spec: {node: host1, interfaceName: eth0, expectedIPs: [198.51.100.1]}
"#;

#[test]
fn example_e_host_endpoint_with_failsafe_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "open", "10.65.0.2"))?;
    lab.pod(PodSpec::new("ns", "guarded", "10.65.0.3").labels(&[("app", "guarded")]))?;
    lab.put(HEP)?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: edge}
spec:
  selector: host == "edge"
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: guarded}
spec:
  selector: app == "guarded"
  ingress: [{action: Allow, source: {selector: all()}}]
"#,
    )?;
    lab.sync()?;
    let host: IpAddr = HOST_V4.parse()?;
    let outside: IpAddr = OUTSIDE_V4.parse()?;
    let o = &lab.outside;
    expect(&[
        ("outside -> host:443", support::tcp(o, host, 443)?, true),
        (
            "outside -> host:22 (failsafe)",
            support::tcp(o, host, 22)?,
            true,
        ),
        ("outside -> host:8080", support::tcp(o, host, 8080)?, false),
        ("outside -> host udp:53", support::udp(o, host, 53)?, false),
        (
            "outside -> open pod:80 (forwarded, pod policy)",
            support::tcp(o, lab.v4("open")?, 80)?,
            true,
        ),
        (
            "outside -> guarded pod:80 (pod policy denies)",
            support::tcp(o, lab.v4("guarded")?, 80)?,
            false,
        ),
        (
            "host -> outside udp:53 (failsafe out)",
            support::udp(&lab.host, outside, 53)?,
            true,
        ),
        (
            "host -> outside tcp:80 (no egress policy)",
            support::tcp(&lab.host, outside, 80)?,
            false,
        ),
        (
            "open pod -> outside (forwarded, no applyOnForward)",
            support::tcp(lab.pod_ns("open")?, outside, 80)?,
            true,
        ),
    ])?;
    // Workload -> host never passes the named host endpoint.
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
"#,
    )?;
    lab.sync()?;
    expect(&[(
        "open pod -> host:8080 (not through the HEP)",
        support::tcp(lab.pod_ns("open")?, host, 8080)?,
        true,
    )])
}

#[test]
fn forward_pre_dnat_and_untracked_host_endpoint_policy_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "pod", "10.65.0.2"))?;
    lab.put(HEP)?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  selector: host == "edge"
  applyOnForward: true
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
"#,
    )?;
    lab.sync()?;
    let pod = lab.v4("pod")?;
    let host: IpAddr = HOST_V4.parse()?;
    let o = &lab.outside;
    expect(&[
        (
            "outside -> pod:80 (applyOnForward allows)",
            support::tcp(o, pod, 80)?,
            true,
        ),
        (
            "outside -> pod:443 (applyOnForward denies)",
            support::tcp(o, pod, 443)?,
            false,
        ),
        (
            "outside -> host:80 (applyOnForward applies to host too)",
            support::tcp(o, host, 80)?,
            true,
        ),
        ("outside -> host:443", support::tcp(o, host, 443)?, false),
    ])?;

    // Pre-DNAT: an Allow skips the forward check; a Deny drops early.
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre}
spec:
  selector: host == "edge"
  applyOnForward: true
  preDNAT: true
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [443]}}
  - {action: Deny, protocol: TCP, destination: {ports: [9000]}}
"#,
    )?;
    lab.sync()?;
    let o = &lab.outside;
    expect(&[
        (
            "outside -> pod:443 (pre-DNAT Allow skips forward)",
            support::tcp(o, pod, 443)?,
            true,
        ),
        (
            "outside -> pod:80 (forward policy)",
            support::tcp(o, pod, 80)?,
            true,
        ),
        (
            "outside -> pod:9000 (pre-DNAT Deny)",
            support::tcp(o, pod, 9000)?,
            false,
        ),
        (
            "outside -> host:22 (failsafe before pre-DNAT)",
            support::tcp(o, host, 22)?,
            true,
        ),
    ])?;

    // Untracked: allowed both ways by raw policy, no conntrack.
    expect(&[(
        "outside -> host:8080 before",
        support::tcp(o, host, 8080)?,
        false,
    )])?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: raw}
spec:
  selector: host == "edge"
  applyOnForward: true
  doNotTrack: true
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]
  egress: [{action: Allow, protocol: TCP, source: {ports: [8080]}}]
"#,
    )?;
    lab.sync()?;
    let o = &lab.outside;
    expect(&[
        (
            "outside -> host:8080 (untracked)",
            support::tcp(o, host, 8080)?,
            true,
        ),
        (
            "outside -> host:9090 (still denied)",
            support::tcp(o, host, 9090)?,
            false,
        ),
    ])
}

#[test]
fn nat_outgoing_masquerades_to_outside_only_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    lab.pod(PodSpec::new("ns", "a", "10.65.0.2"))?;
    lab.pod(PodSpec::new("ns", "b", "10.65.0.3"))?;
    lab.sync()?;
    let outside: IpAddr = OUTSIDE_V4.parse()?;
    let who = |lab: &Lab, to: IpAddr| -> Result<Option<String>> {
        support::udp_exchange(lab.pod_ns("a")?, to, 53, b"who")
    };
    ensure!(
        who(&lab, outside)?.as_deref() == Some("10.65.0.2"),
        "no pool: not translated"
    );
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16, natOutgoing: true}
"#,
    )?;
    lab.sync()?;
    let seen = who(&lab, outside)?;
    ensure!(seen.as_deref() == Some(HOST_V4), "masqueraded: {seen:?}");
    let seen = who(&lab, lab.v4("b")?)?;
    ensure!(
        seen.as_deref() == Some("10.65.0.2"),
        "inside the pools: {seen:?}"
    );
    lab.host
        .ip(&["addr", "add", "198.51.100.10/24", "dev", "eth0"])?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {natOutgoingAddress: 198.51.100.10}
"#,
    )?;
    lab.sync()?;
    let seen = who(&lab, outside)?;
    ensure!(
        seen.as_deref() == Some("198.51.100.10"),
        "SNAT to natOutgoingAddress: {seen:?}"
    );
    Ok(())
}

#[test]
fn the_kernel_reads_back_exactly_what_was_rendered_needs_root() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.put(&namespace_profile("ns"))?;
    let mut web = PodSpec::new("ns", "web", "10.65.0.2").labels(&[("app", "web")]);
    web.v6 = Some("fd00:65::2");
    web.ports = &[("http", "TCP", 8080), ("dns", "UDP", 53)];
    lab.pod(web)?;
    lab.pod(PodSpec::new("ns", "client", "10.65.0.3").labels(&[("app", "client")]))?;
    lab.put(HEP)?;
    lab.put(
        r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {iptablesFilterDenyAction: Reject, natOutgoingAddress: 198.51.100.1, logPrefix: tortie-test}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v4}
spec: {cidr: 10.65.0.0/16, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd00:65::/112", natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: corp, labels: {net: corp}}
spec: {nets: [10.0.0.0/8, 172.16.0.0/12]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: everything}
spec:
  selector: app == "web"
  ingress:
  - {action: Log, protocol: TCP}
  - {action: Allow, protocol: TCP, source: {selector: net == "corp" || app == "client", notNets: [10.9.0.0/16, 10.8.0.0/16]}, destination: {ports: [http, 80, "1000:2000"], notPorts: [1500, 1600]}}
  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}
  - {action: Deny, protocol: ICMPv6, notICMP: {type: 128}}
  - {action: Allow, notProtocol: TCP, source: {nets: ["fd00::/8", "fc00::/8"]}}
  - {action: Pass, protocol: UDP, destination: {notPorts: [dns]}}
  egress:
  - {action: Deny, destination: {notSelector: app == "client"}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre}
spec:
  selector: host == "edge"
  applyOnForward: true
  preDNAT: true
  ingress: [{action: Deny, source: {nets: [192.0.2.0/24]}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: raw}
spec:
  selector: host == "edge"
  applyOnForward: true
  doNotTrack: true
  ingress: [{action: Deny, protocol: UDP, destination: {ports: [9999]}}]
"#,
    )?;
    let (stats, report) = lab.sync()?;
    ensure!(report.messages > 0, "{stats:?}");
    lab.rec.resync()?;
    let again = lab.rec.apply()?;
    ensure!(
        again.messages == 0 && again.failures.is_empty(),
        "after a resync nothing differs: {again:?}\n{}",
        lab.ruleset()?
    );
    Ok(())
}
