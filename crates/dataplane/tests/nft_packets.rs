//! Real packets through tortie's nftables table (needs root). A host
//! namespace forwards between workload namespaces over veths named like
//! Calico's (`cali1`, `cali2`, `cali3`); its forward hook accepts
//! established flows first, dispatches by interface name through verdict
//! maps to per-endpoint chains, and those jump to policy chains matching
//! the source by one lookup in the concatenated selector set. The
//! allow/deny matrix is checked with TCP connections and pings, then
//! changed by set element updates only: adding a member opens a flow,
//! removing one closes new connections while an established one keeps
//! working, and an interface with no dispatch entry is dropped until its
//! endpoint appears.

mod nft_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nft_support::layout;
use tortie_dataplane::nft::rules::{self};
use tortie_dataplane::nft::{Chain, Family, NftSocket, Reconciler, Rule, TableId, Verdict};
use tortie_testkit::TestNetns;

const W1: &str = "10.65.1.2";
const W2: &str = "10.65.2.2";
const W3: &str = "10.65.3.2";
const DENIED_WAIT: Duration = Duration::from_millis(700);

struct Topology {
    host: TestNetns,
    w1: TestNetns,
    w2: TestNetns,
    w3: TestNetns,
}

fn topology() -> Result<Topology> {
    let t = Topology {
        host: TestNetns::new("nftpkt")?,
        w1: TestNetns::new("nftpkt")?,
        w2: TestNetns::new("nftpkt")?,
        w3: TestNetns::new("nftpkt")?,
    };
    t.host.set_sysctl("net.ipv4.ip_forward", "1")?;
    for (n, w) in [(1, &t.w1), (2, &t.w2), (3, &t.w3)] {
        let cali = format!("cali{n}");
        t.host.veth_up(&cali, w, "eth0")?;
        t.host
            .ip(&["addr", "add", &format!("10.65.{n}.1/24"), "dev", &cali])?;
        w.ip(&["addr", "add", &format!("10.65.{n}.2/24"), "dev", "eth0"])?;
        w.ip(&["route", "add", "default", "via", &format!("10.65.{n}.1")])?;
    }
    Ok(t)
}

/// An echo server on `port` in `ns`, accepting until the test ends.
fn echo_server(ns: &TestNetns, addr: &str, port: u16) -> Result<JoinHandle<()>> {
    let bind: SocketAddr = format!("{addr}:{port}").parse()?;
    let listener = ns.run(move || TcpListener::bind(bind))??;
    Ok(std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    }))
}

fn connect(from: &TestNetns, to: &str, port: u16) -> Result<std::io::Result<TcpStream>> {
    let addr: SocketAddr = format!("{to}:{port}").parse()?;
    from.run(move || TcpStream::connect_timeout(&addr, DENIED_WAIT))
}

/// True if a new connection gets through and echoes.
fn tcp_allowed(from: &TestNetns, to: &str, port: u16) -> Result<bool> {
    match connect(from, to, port)? {
        Ok(mut s) => Ok(echoes(&mut s)?),
        Err(_) => Ok(false),
    }
}

fn echoes(s: &mut TcpStream) -> Result<bool> {
    s.set_read_timeout(Some(DENIED_WAIT))?;
    if s.write_all(b"hello").is_err() {
        return Ok(false);
    }
    let mut buf = [0u8; 5];
    Ok(s.read_exact(&mut buf).is_ok() && &buf == b"hello")
}

fn ping(from: &TestNetns, to: &str) -> bool {
    from.exec(&["busybox", "ping", "-c", "1", "-W", "1", to])
        .is_ok()
}

fn allow_all() -> Chain {
    Chain::regular(vec![Rule::new(
        [
            rules::mark_set(layout::ACCEPT_MARK),
            vec![rules::verdict(Verdict::Return)],
        ]
        .concat(),
    )])
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn policy_verdicts_follow_set_elements_and_established_flows_survive_needs_root() -> Result<()> {
    let t = topology()?;
    let _w2_http = echo_server(&t.w2, W2, 8080)?;
    let _w2_other = echo_server(&t.w2, W2, 9090)?;
    let _w3_http = echo_server(&t.w3, W3, 8080)?;
    // Before any policy: everything flows.
    ensure!(tcp_allowed(&t.w1, W2, 9090)?, "the topology forwards");

    let mut rec: Reconciler<NftSocket> = t
        .host
        .run(|| Reconciler::open(TableId::new(Family::Inet, "tortie")))??;
    let r = rec.desired_mut();
    layout::skeleton(r);
    r.put_chain("allow-all", allow_all());
    // Selector 1: TCP clients of w2; 2: may ping w2; 3: may ping w1.
    r.put_chain("pi-w2-tcp", layout::policy_chain(&[(1, 8080)]));
    r.put_chain("pi-w2-icmp", layout::policy_chain_proto(2, 1));
    r.put_chain("pi-w1-icmp", layout::policy_chain_proto(3, 1));
    layout::add_endpoint_egress(r, "cali1", &names(&["allow-all"]));
    layout::add_endpoint_egress(r, "cali2", &names(&["allow-all"]));
    layout::add_endpoint_ingress(r, "cali1", &names(&["pi-w1-icmp"]));
    layout::add_endpoint_ingress(r, "cali2", &names(&["pi-w2-tcp", "pi-w2-icmp"]));
    layout::select(r, 1, &format!("{W1}/32"));
    layout::select(r, 3, &format!("{W2}/32"));
    let report = rec.apply()?;
    ensure!(report.failures.is_empty(), "{:?}", report.failures);

    ensure!(
        tcp_allowed(&t.w1, W2, 8080)?,
        "w1 -> w2:8080 allowed (selector 1)"
    );
    ensure!(
        !tcp_allowed(&t.w1, W2, 9090)?,
        "w1 -> w2:9090 denied (no rule)"
    );
    ensure!(!ping(&t.w1, W2), "w1 -> w2 ping denied (selector 2 empty)");
    ensure!(ping(&t.w2, W1), "w2 -> w1 ping allowed (selector 3)");
    ensure!(
        !tcp_allowed(&t.w3, W2, 8080)?,
        "w3 -> w2:8080 denied (not in selector 1)"
    );
    ensure!(!ping(&t.w2, W3), "w2 -> cali3 dropped: no dispatch entry");

    // One element opens pings.
    layout::select(rec.desired_mut(), 2, &format!("{W1}/32"));
    let report = rec.apply()?;
    ensure!(report.messages == 1, "an element add only: {report:?}");
    ensure!(
        ping(&t.w1, W2),
        "w1 -> w2 ping allowed once w1 is in selector 2"
    );

    // An established connection survives its selector losing the client.
    let mut open = connect(&t.w1, W2, 8080)?.context("connect while allowed")?;
    ensure!(echoes(&mut open)?);
    layout::unselect(rec.desired_mut(), 1, &format!("{W1}/32"));
    let report = rec.apply()?;
    ensure!(report.messages == 1, "an element delete only: {report:?}");
    ensure!(!tcp_allowed(&t.w1, W2, 8080)?, "new connections denied");
    ensure!(echoes(&mut open)?, "the established connection still flows");

    // The endpoint behind cali3 appears: dispatch entry plus chain.
    layout::add_endpoint_ingress(rec.desired_mut(), "cali3", &names(&["allow-all"]));
    layout::add_endpoint_egress(rec.desired_mut(), "cali3", &names(&["allow-all"]));
    rec.apply()?;
    ensure!(ping(&t.w2, W3), "w2 -> w3 allowed once cali3 is dispatched");
    ensure!(tcp_allowed(&t.w2, W3, 8080)?);
    Ok(())
}
