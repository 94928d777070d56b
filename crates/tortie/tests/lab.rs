//! End-to-end tests of the node daemon in the lab (needs root): real
//! `tortie node run` daemons in node namespaces on one bridge, pods
//! attached through `tortie-cni`, cross-node traffic over VXLAN, policy
//! applied through the CLI, and real packets deciding every verdict.
//!
//! - The worked examples of spec/policy.md §8 as probes: A-D between pods
//!   across nodes and on one node, E (a host endpoint on a node's `eth0`)
//!   from another node, with pod traffic over VXLAN through that interface.
//! - Every matrix is also checked with `tortie lab check --expect`: each
//!   ordered pair's real verdict must agree with `tortie policy explain`.
//! - Drift: a flushed nftables table and a deleted route come back within
//!   about a second.
//! - A pool that stops using VXLAN takes the running daemon's tunnel
//!   address away, and gives it back when it uses VXLAN again.
//! - Restart: established TCP connections between pods on two nodes and
//!   on one node keep working while each node's daemon is restarted, and
//!   policy is still enforced afterwards. The one-node connection rides
//!   the fast path (the node's stack forwards none of its packets) before
//!   the restarts and again after them.
//! - Dual stack: a lab made with `--ipv6` registers each node's IPv6
//!   address and IPv6 VXLAN tunnel address, gives pods both families and
//!   the IPv6 VXLAN MTU, carries IPv6 between nodes over
//!   `vxlan-v6.calico`, and enforces tiers, Pass, global and namespaced
//!   policy and IPv6 `nets` rules — every IPv6 matrix agreeing with
//!   `policy explain`.

mod lab_support;

use std::time::Duration;

use anyhow::{Result, ensure};
use lab_support::{Connection, Lab};

/// Time a repair may take: one resync interval (0.9 s) plus the apply and
/// the probe's own latency, with room for a loaded 2-core machine.
const REPAIR_WITHIN: Duration = Duration::from_secs(3);

const EXAMPLE_A: &str = "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api-in, namespace: blue}
spec:
  selector: tier == 'api'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: tier == 'ui'}
    destination: {ports: [9000]}
";

const EXAMPLE_B_TIER: &str = "
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 50}
";

const EXAMPLE_B: &str = "
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
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: app == 'backend'}
";

const EXAMPLE_C: &str = "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: x}
spec:
  order: 10
  selector: all()
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: y}
spec:
  selector: all()
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: w}
spec:
  order: 10
  selector: all()
  ingress: [{action: Allow}]
";

const EXAMPLE_D: &str = "
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
";

const EXAMPLE_E: &str = "
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: n1-eth0
  labels: {host: edge}
spec:
  node: node-1
  interfaceName: eth0
  expectedIPs: [172.30.0.11]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: edge}
spec:
  selector: host == 'edge'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [443]}
";

/// Pods of the examples, spread over two nodes so that most pairs cross
/// VXLAN and some stay on one node.
fn example_pods(lab: &Lab) -> Result<()> {
    lab.pod("node-1", "blue/ui", "tier=ui")?;
    lab.pod("node-2", "blue/api", "tier=api")?;
    lab.pod("node-1", "blue/api-local", "tier=api")?;
    lab.pod("node-2", "green/ui", "tier=ui")?;
    lab.pod("node-1", "red/db", "app=db")?;
    lab.pod("node-2", "red/backend", "app=backend")?;
    lab.pod("node-1", "red/cache", "app=cache")?;
    lab.pod("node-2", "red/web", "app=web")?;
    Ok(())
}

#[test]
fn policy_examples_hold_for_real_packets_needs_root() -> Result<()> {
    let lab = Lab::up("ex", 2)?;
    example_pods(&lab)?;

    // No policy: profiles kns.<ns> allow everything, across nodes too.
    lab.expect("blue/ui", "blue/api", "tcp", 9001, true)?;
    lab.expect("green/ui", "red/db", "icmp", 0, true)?;
    lab.check_agrees("tcp", 9000)?;

    // Example A: isolation by selection.
    lab.apply(EXAMPLE_A)?;
    lab.expect("blue/ui", "blue/api", "tcp", 9000, true)?;
    lab.expect("blue/ui", "blue/api-local", "tcp", 9000, true)?;
    lab.expect("blue/ui", "blue/api", "tcp", 9001, false)?;
    lab.expect("green/ui", "blue/api", "tcp", 9000, false)?;
    lab.expect("blue/api", "green/ui", "tcp", 9000, true)?;
    lab.expect("blue/ui", "blue/api", "icmp", 0, false)?;
    lab.check_agrees("tcp", 9000)?;
    lab.check_agrees("tcp", 9001)?;

    // Example B: Pass and tiers.
    lab.apply(EXAMPLE_B_TIER)?;
    lab.apply(EXAMPLE_B)?;
    lab.expect("red/backend", "red/db", "tcp", 5432, true)?;
    lab.expect("red/cache", "red/db", "tcp", 5432, false)?;
    lab.expect("red/cache", "red/web", "tcp", 5432, true)?;
    lab.check_agrees("tcp", 5432)?;
    lab.delete(EXAMPLE_B)?;
    lab.delete(EXAMPLE_B_TIER)?;
    lab.expect("red/cache", "red/db", "tcp", 5432, true)?;

    // Example C: ordering and ties: w (order 10, name first) allows.
    lab.apply(EXAMPLE_C)?;
    lab.expect("green/ui", "blue/api", "tcp", 9001, true)?;
    lab.expect("red/cache", "red/web", "udp", 7000, true)?;
    lab.check_agrees("tcp", 9001)?;
    lab.delete(EXAMPLE_C)?;
    lab.delete(EXAMPLE_A)?;

    // Example D: egress default deny, UDP 53 allowed.
    lab.apply(EXAMPLE_D)?;
    lab.expect("red/web", "blue/ui", "udp", 53, true)?;
    lab.expect("red/web", "blue/ui", "tcp", 443, false)?;
    lab.expect("red/web", "blue/ui", "icmp", 0, false)?;
    lab.check_agrees("udp", 53)?;
    lab.check_agrees("tcp", 443)?;
    lab.delete(EXAMPLE_D)?;
    lab.expect("red/web", "blue/ui", "tcp", 443, true)?;
    Ok(())
}

#[test]
fn example_e_host_endpoint_with_failsafe_needs_root() -> Result<()> {
    let lab = Lab::up("he", 2)?;
    lab.pod("node-1", "web/a", "app=web")?;
    lab.pod("node-2", "web/b", "app=client")?;
    let (n1, n2) = (lab.netns("node-1")?, lab.netns("node-2")?);
    let to_node1 = |port| lab_support::tcp_reaches(&n2, &n1, "172.30.0.11", port);
    ensure!(to_node1(8080)?, "no host endpoint yet: the host is open");

    lab.apply(EXAMPLE_E)?;
    lab.wait_for(REPAIR_WITHIN, || Ok(!to_node1(8080)?))?;
    ensure!(to_node1(443)?, "TCP 443 to the host: allowed by edge");
    ensure!(to_node1(22)?, "TCP 22 to the host: allowed (failsafe)");
    ensure!(!to_node1(8080)?, "TCP 8080 to the host: dropped");
    // Forwarded to a pod behind eth0 (over VXLAN from node-2): not subject
    // to edge, which has no applyOnForward; the tunnel itself is accepted
    // from known peers before host-endpoint policy.
    lab.expect("web/b", "web/a", "tcp", 8080, true)?;
    lab.expect("web/a", "web/b", "tcp", 8080, true)?;

    lab.delete(EXAMPLE_E)?;
    lab.wait_for(REPAIR_WITHIN, || to_node1(8080))?;

    // An IPv4-only lab has no IPv6 to probe: said so, not a verdict.
    let out = lab_support::run(
        &[
            "lab", "probe", &lab.name, "--from", "web/b", "--to", "web/a", "--ipv6",
        ],
        "",
    )?;
    ensure!(
        out.status == Some(1) && out.stderr.contains("has no IPv6 address"),
        "{:?}: {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[test]
fn drift_is_repaired_and_restarts_keep_connections_needs_root() -> Result<()> {
    let lab = Lab::up("dr", 2)?;
    lab.pod("node-1", "app/a", "role=server")?;
    lab.pod("node-2", "app/b", "role=client")?;
    lab.pod("node-1", "app/c", "role=other")?;
    lab.pod("node-1", "app/d", "role=client")?;
    lab.apply(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: server-in, namespace: app}
spec:
  selector: role == 'server'
  ingress:
  - action: Allow
    source: {selector: role == 'client'}
",
    )?;
    lab.expect("app/b", "app/a", "tcp", 8080, true)?;
    lab.expect("app/c", "app/a", "tcp", 8080, false)?;
    let mut held = Connection::open(&lab, "app/b", "app/a", 7777)?;
    held.exchange(1)?;
    let mut local = Connection::open(&lab, "app/d", "app/a", 7778)?;
    local.exchange(1)?;
    fast_path_carries(&lab, &mut local, 2)?;

    // Someone flushes tortie's table: policy comes back by itself.
    lab.in_node("node-1", &["nft", "flush", "table", "inet", "tortie"])?;
    lab.wait_for(REPAIR_WITHIN, || {
        let listing = lab.in_node("node-1", &["nft", "list", "table", "inet", "tortie"])?;
        Ok(listing.contains("ct state"))
    })?;
    lab.expect("app/c", "app/a", "tcp", 8080, false)?;
    held.exchange(2)?;

    // Someone deletes a pod's route: it comes back.
    let a_ip = lab.pod_ip("app/a")?;
    lab.in_node("node-1", &["ip", "route", "del", &a_ip])?;
    lab.wait_for(REPAIR_WITHIN, || {
        let routes = lab.in_node("node-1", &["ip", "route", "show", &a_ip])?;
        Ok(!routes.trim().is_empty())
    })?;
    lab.expect("app/b", "app/a", "tcp", 8080, true)?;

    // Restart each node's daemon: the held connection never breaks, and
    // policy is still enforced by the new daemons.
    for node in ["node-1", "node-2"] {
        let before = lab.in_node(node, &["nft", "list", "table", "inet", "tortie"])?;
        lab_support::ok(&["lab", "restart", &lab.name, node])?;
        held.exchange(3)?;
        local.exchange(3)?;
        let after = lab.in_node(node, &["nft", "list", "table", "inet", "tortie"])?;
        ensure!(
            strip_handles(&before) == strip_handles(&after),
            "{node}: the restarted daemon changed the ruleset it took over"
        );
    }
    lab.expect("app/c", "app/a", "tcp", 8080, false)?;
    lab.expect("app/b", "app/a", "tcp", 8080, true)?;
    held.exchange(4)?;
    lab.wait_for(REPAIR_WITHIN, || {
        let status = lab.in_node("node-1", &[env!("CARGO_BIN_EXE_tortie"), "node", "status"])?;
        Ok(status.contains("Fast path:   on"))
    })?;
    fast_path_carries(&lab, &mut local, 5)?;

    // The pool stops using VXLAN: the running daemon releases node-1's
    // tunnel address; when the pool uses VXLAN again it gets one back.
    for (mode, has_address) in [("Never", false), ("Always", true)] {
        lab.ctl(&[
            "patch",
            "ippool",
            "lab-pool",
            "-p",
            &format!("{{\"spec\": {{\"vxlanMode\": \"{mode}\"}}}}"),
        ])?;
        // `node status` exits 1 while the node is not ready (the VXLAN
        // device is being reprogrammed): that is "not yet".
        lab.wait_for(Duration::from_secs(5), || {
            let tortie = env!("CARGO_BIN_EXE_tortie");
            let Ok(status) = lab.in_node("node-1", &[tortie, "node", "status", "-o", "json"])
            else {
                return Ok(false);
            };
            let status: serde_json::Value = serde_json::from_str(&status)?;
            Ok(status["vxlan_tunnel_address"].is_string() == has_address)
        })?;
    }
    lab.wait_for(REPAIR_WITHIN, || {
        let tortie = env!("CARGO_BIN_EXE_tortie");
        Ok(lab
            .in_node("node-1", &[tortie, "node", "status", "--ready"])
            .is_ok())
    })?;
    lab.expect("app/b", "app/a", "tcp", 8080, true)?;
    Ok(())
}

/// Packets node-1's own stack forwarded (IPv4).
fn forwarded_by_node_1(lab: &Lab) -> Result<u64> {
    let snmp = lab.in_node("node-1", &["cat", "/proc/net/snmp"])?;
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
    let at = names.split_whitespace().position(|n| n == "ForwDatagrams");
    at.and_then(|at| values.split_whitespace().nth(at)?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no ForwDatagrams in node-1's /proc/net/snmp"))
}

/// An exchange over `connection` (two pods of node-1) that node-1's stack
/// forwards no packet of: the fast path carried it. Retried a few times
/// (bounded), as the new daemon attaches the program just after start.
fn fast_path_carries(lab: &Lab, connection: &mut Connection, tag: u8) -> Result<()> {
    let mut forwarded = 0;
    for attempt in 0..5 {
        let before = forwarded_by_node_1(lab)?;
        connection.exchange(tag + attempt)?;
        forwarded = forwarded_by_node_1(lab)? - before;
        if forwarded == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("node-1's stack forwarded {forwarded} packets of an established one-node flow")
}

#[test]
fn a_lab_on_etcd_rides_out_an_etcd_crash_needs_root() -> Result<()> {
    let lab = Lab::up_with("et", 2, &["--etcd"])?;
    ensure!(lab.datastore.starts_with("etcd:"), "{}", lab.datastore);
    lab.pod("node-1", "app/a", "role=server")?;
    lab.pod("node-2", "app/b", "role=client")?;
    lab.expect("app/b", "app/a", "tcp", 8080, true)?;
    let wep = lab.ctl(&["get", "workloadendpoints", "-n", "app"])?;
    ensure!(wep.contains("node-1") && wep.contains("node-2"), "{wep}");

    // etcd dies (SIGKILL) and comes back from its data: the daemons'
    // watches resume by themselves and the next policy takes effect.
    lab_support::ok(&["lab", "restart", &lab.name, "etcd"])?;
    lab.apply(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: server-closed, namespace: app}
spec:
  selector: role == 'server'
  ingress: [{action: Deny}]
",
    )?;
    lab.wait_for(Duration::from_secs(15), || {
        Ok(!lab.probe("app/b", "app/a", "tcp", 8080)?)
    })?;
    lab.check_agrees("tcp", 8080)?;
    Ok(())
}

/// The extra argument of an IPv6 probe.
const IPV6: &[&str] = &["--ipv6"];

/// The dual-stack test's policy: a `security` tier whose global policy
/// denies ingress from one IPv6 address (`denied`) and passes the rest
/// on, and a namespaced policy in the default tier opening shop/web to
/// the clients of namespace `other` only (TCP).
fn dual_stack_policy(denied: &str) -> String {
    format!(
        "
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: security}}
spec: {{order: 50}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.v6-guard}}
spec:
  tier: security
  selector: all()
  types: [Ingress]
  ingress:
  - action: Deny
    source: {{nets: ['{denied}/128']}}
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: web-in, namespace: shop}}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {{selector: app == 'client', namespaceSelector: projectcalico.org/name == 'other'}}
"
    )
}

#[test]
fn a_dual_stack_lab_enforces_policy_on_ipv6_across_nodes_needs_root() -> Result<()> {
    let lab = Lab::up_with("v6", 2, &["--ipv6"])?;
    lab.pod("node-1", "shop/web", "app=web")?;
    lab.pod("node-2", "shop/api", "app=api")?;
    lab.pod("node-2", "other/client", "app=client")?;
    lab.pod("node-1", "other/batch", "app=batch")?;

    // Each node registered its IPv6 address and an IPv6 VXLAN tunnel
    // address from the IPv6 pool; IPv6 to other nodes' blocks leaves
    // through vxlan-v6.calico.
    let node = lab.ctl(&["get", "node", "node-1", "-o", "yaml"])?;
    ensure!(node.contains("ipv6Address: fd30::11/64"), "{node}");
    ensure!(node.contains("ipv6VXLANTunnelAddr: fd00:10:244:"), "{node}");
    let routes = lab.in_node(
        "node-1",
        &["ip", "-6", "route", "show", "dev", "vxlan-v6.calico"],
    )?;
    ensure!(routes.contains("/122 via fd00:10:244:"), "{routes}");
    // Pods get the IPv6 VXLAN MTU (1500 - 70), the smallest of the two.
    let link = lab_support::ok(&[
        "lab", "exec", &lab.name, "shop/web", "--", "ip", "link", "show", "eth0",
    ])?;
    ensure!(link.contains("mtu 1430 "), "{link}");
    ensure!(
        lab.pod_ip6("shop/web")?.starts_with("fd00:10:244:"),
        "no IPv6 pod address"
    );

    // No policy: the namespace profiles allow everything, over IPv6 too.
    lab.expect_with(("other/batch", "shop/api", "tcp", 8080), true, IPV6)?;
    lab.check_agrees6("tcp", 8080)?;

    lab.apply(&dual_stack_policy(&lab.pod_ip6("other/batch")?))?;
    for (case, allowed) in [
        // Across nodes: passed by the security tier, then allowed by
        // web-in, or denied at the end of the default tier (web-in selects
        // web and allows TCP only).
        (("other/client", "shop/web", "tcp", 8080), true),
        (("shop/api", "shop/web", "tcp", 8080), false),
        (("other/client", "shop/web", "udp", 8080), false),
        // Denied by the IPv6 nets rule (checked over IPv4 below).
        (("other/batch", "shop/api", "tcp", 8080), false),
        // Passed, and no policy of the default tier selects client: its
        // profile allows (on one node).
        (("shop/api", "other/client", "tcp", 8080), true),
    ] {
        lab.expect_with(case, allowed, IPV6)?;
    }
    // The IPv6 rule leaves the same pods' IPv4 alone.
    lab.expect("other/batch", "shop/api", "tcp", 8080, true)?;
    for proto in ["tcp", "udp", "icmp"] {
        lab.check_agrees6(proto, 8080)?;
    }
    lab.check_agrees("tcp", 8080)?;
    Ok(())
}

/// An `nft list` without rule handles and counters (which differ between
/// equal rulesets).
fn strip_handles(listing: &str) -> String {
    listing
        .lines()
        .map(|l| match l.find(" # handle") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
