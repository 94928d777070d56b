//! The established-flow fast path against the real kernel (needs root).
//! A host namespace forwards between two pod namespaces over `cali1` and
//! `cali2`, with an nftables forward chain that accepts established
//! flows, allows new TCP connections to port 5000 only, and drops the
//! rest. The links reconciler runs there with the fast path, as in the
//! daemon: it sets conntrack's liberal window and attaches the program to
//! both workload interfaces. Then:
//!
//! - a 32 MiB stream over IPv4 and over IPv6 arrives intact and closes
//!   cleanly (FIN through conntrack), while the host forwards only a
//!   handful of packets itself: the stream took the fast path. Every
//!   packet reached the destination with its TTL or hop limit decremented
//!   once (counted by an nftables input chain in the destination pod,
//!   after the kernel checked the IPv4 header checksum);
//! - a new connection to port 5001, where a server listens, is still
//!   dropped by policy (it times out);
//! - an established connection survives the fast path going away
//!   mid-stream (the daemon exiting): the host's stack carries the rest;
//! - an interface that gets a shaping qdisc (as the CNI bandwidth plugin
//!   adds) leaves the fast path at once, so its flows stay shaped.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

use tortie_dataplane::fastpath::FastPath;
use tortie_dataplane::fastpath::attacher::Attacher;
use tortie_dataplane::links::sysctls::SysctlPolicy;
use tortie_dataplane::links::{
    InterfaceEvent, InterfaceStatus, LinkConfig, LinkReconciler, LinkUpdate,
};
use tortie_testkit::TestNetns;

const ALLOWED: u16 = 5000;
const DENIED: u16 = 5001;
const STREAM: usize = 32 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(20);

struct Topology {
    host: TestNetns,
    pods: [TestNetns; 2],
}

fn v4(pod: usize) -> IpAddr {
    format!("10.66.{pod}.2").parse().expect("address")
}

fn v6(pod: usize) -> IpAddr {
    format!("fd00:66:{pod}::2").parse().expect("address")
}

fn topology() -> Result<Topology> {
    let t = Topology {
        host: TestNetns::new("fastpath")?,
        pods: [TestNetns::new("fastpath")?, TestNetns::new("fastpath")?],
    };
    t.host.set_sysctl("net.ipv4.ip_forward", "1")?;
    t.host.set_sysctl("net.ipv6.conf.all.forwarding", "1")?;
    // No duplicate address detection: link-local addresses (neighbour
    // discovery's sources) are usable at once.
    for ns in [&t.host, &t.pods[0], &t.pods[1]] {
        ns.set_sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    }
    for (n, pod) in [(1, &t.pods[0]), (2, &t.pods[1])] {
        let cali = format!("cali{n}");
        t.host.veth_up(&cali, pod, "eth0")?;
        t.host
            .ip(&["addr", "add", &format!("10.66.{n}.1/24"), "dev", &cali])?;
        t.host.ip(&[
            "addr",
            "add",
            &format!("fd00:66:{n}::1/64"),
            "dev",
            &cali,
            "nodad",
        ])?;
        pod.ip(&["addr", "add", &format!("10.66.{n}.2/24"), "dev", "eth0"])?;
        pod.ip(&[
            "addr",
            "add",
            &format!("fd00:66:{n}::2/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        pod.ip(&["link", "set", "lo", "up"])?;
        pod.ip(&["route", "add", "default", "via", &format!("10.66.{n}.1")])?;
        pod.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("fd00:66:{n}::1"),
        ])?;
    }
    t.host.nft_script(&format!(
        "table inet fastpathtest {{
           chain forward {{
             type filter hook forward priority filter; policy drop;
             ct state established,related accept
             ct state invalid drop
             tcp dport {ALLOWED} accept
           }}
         }}"
    ))?;
    Ok(t)
}

type Running = (
    mpsc::Sender<LinkUpdate>,
    JoinHandle<Result<Result<(), String>>>,
);

/// Runs the links reconciler with the fast path in `host` until the
/// returned sender is dropped; returns once both workload interfaces have
/// been reported up (and so have the program attached).
fn start_reconciler(host: &TestNetns) -> Result<Running> {
    let fast_path = host.run(FastPath::open)??;
    let attacher = host.run(move || Attacher::start(fast_path, Duration::from_millis(50)))??;
    let attached = attacher.attached();
    let (update_tx, update_rx) = mpsc::channel(4);
    let (up_tx, up_rx) = std_mpsc::channel();
    let handle = host.spawn(move || async move {
        let config = LinkConfig::default();
        let config = LinkConfig {
            sysctls: SysctlPolicy {
                conntrack_be_liberal: true,
                ..config.sysctls
            },
            ..config
        };
        let mut reconciler = LinkReconciler::open(config)
            .map_err(|e| e.to_string())?
            .with_fast_path(attacher);
        let (event_tx, mut events) = mpsc::channel::<InterfaceEvent>(64);
        let forward = async move {
            while let Some(e) = events.recv().await {
                if e.status == InterfaceStatus::Up && up_tx.send(e.name).is_err() {
                    break;
                }
            }
        };
        let (run, ()) = tokio::join!(reconciler.run(update_rx, event_tx), forward);
        run.map_err(|e| e.to_string())
    })?;
    let mut waiting = vec!["cali1".to_string(), "cali2".to_string()];
    while !waiting.is_empty() {
        let name = up_rx
            .recv_timeout(Duration::from_secs(5))
            .context("the workload interfaces were never reported up")?;
        waiting.retain(|w| *w != name);
    }
    // The attacher works on its own thread, a little after the events.
    for _ in 0..200 {
        if attached.load(Ordering::Relaxed) == 2 {
            return Ok((update_tx, handle));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the fast path was never attached to both interfaces")
}

/// Stops the reconciler, and with it the fast path.
fn stop_reconciler((updates, handle): Running) -> Result<()> {
    drop(updates);
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the reconciler panicked"))??
        .map_err(anyhow::Error::msg)
}

/// Packets the host forwarded itself (IPv4 and IPv6), from its counters.
fn forwarded(host: &TestNetns) -> Result<u64> {
    let snmp = host.exec(&["cat", "/proc/net/snmp"])?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (
        lines.next().context("Ip header")?,
        lines.next().context("Ip values")?,
    );
    let at = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .context("ForwDatagrams")?;
    let v4: u64 = values
        .split_whitespace()
        .nth(at)
        .context("value")?
        .parse()?;
    let snmp6 = host.exec(&["cat", "/proc/net/snmp6"])?;
    let v6: u64 = snmp6
        .lines()
        .find_map(|l| l.strip_prefix("Ip6OutForwDatagrams"))
        .context("Ip6OutForwDatagrams")?
        .trim()
        .parse()?;
    Ok(v4 + v6)
}

/// A server in `pod` that, for each of `connections` connections, reads
/// to EOF and answers with the byte count and a checksum of what it read,
/// then closes.
fn digest_server(
    pod: &TestNetns,
    addr: IpAddr,
    port: u16,
    connections: usize,
) -> Result<JoinHandle<()>> {
    let listener = pod.run(move || TcpListener::bind(SocketAddr::new(addr, port)))??;
    Ok(std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let mut digest = Digest::default();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => digest.feed(&buf[..n]),
                        Err(_) => return,
                    }
                }
                let _ = s.write_all(&digest.bytes());
            });
        }
    }))
}

#[derive(Default)]
struct Digest {
    count: u64,
    sum: u64,
}

impl Digest {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            self.count += 1;
            self.sum = self.sum.wrapping_mul(31).wrapping_add(u64::from(b));
        }
    }

    fn bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.count.to_be_bytes());
        out[8..].copy_from_slice(&self.sum.to_be_bytes());
        out
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// Connects from `pod` to `to:port`.
fn connect(pod: &TestNetns, to: IpAddr, port: u16) -> Result<std::io::Result<TcpStream>> {
    pod.run(move || {
        let s = TcpStream::connect_timeout(&SocketAddr::new(to, port), Duration::from_millis(700))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(s)
    })
}

/// Half-closes `stream` after `sent` and checks the server's digest of
/// it, then that the server's close arrives.
fn finish(mut stream: TcpStream, sent: &Digest) -> Result<()> {
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .context("reading the server's digest and close")?;
    ensure!(
        answer == sent.bytes(),
        "the server read {answer:?}, the client sent {:?}",
        sent.bytes()
    );
    Ok(())
}

fn stream_through(pod: &TestNetns, to: IpAddr) -> Result<()> {
    let mut stream = connect(pod, to, ALLOWED)?.with_context(|| format!("connecting to {to}"))?;
    let data = pattern(STREAM, 3);
    let mut sent = Digest::default();
    for chunk in data.chunks(1 << 20) {
        stream.write_all(chunk)?;
        sent.feed(chunk);
    }
    finish(stream, &sent)
}

#[test]
fn established_streams_take_the_fast_path_and_policy_still_decides() -> Result<()> {
    let t = topology()?;
    let reconciler = start_reconciler(&t.host)?;
    ensure!(t.host.sysctl("net.netfilter.nf_conntrack_tcp_be_liberal")? == "1");
    let _servers = [
        digest_server(&t.pods[1], v4(2), ALLOWED, 1)?,
        digest_server(&t.pods[1], v6(2), ALLOWED, 1)?,
    ];
    // Listening, so a connection policy let through would succeed.
    let _listeners = [
        t.pods[1].run(move || TcpListener::bind(SocketAddr::new(v4(2), DENIED)))??,
        t.pods[1].run(move || TcpListener::bind(SocketAddr::new(v6(2), DENIED)))??,
    ];
    t.pods[1].nft_script(&format!(
        "table inet hops {{
           chain input {{
             type filter hook input priority filter; policy accept;
             tcp dport {ALLOWED} ip ttl 63 counter name once
             tcp dport {ALLOWED} ip6 hoplimit 63 counter name once
             tcp dport {ALLOWED} counter name total
           }}
           counter once {{ }}
           counter total {{ }}
         }}"
    ))?;

    for to in [v4(2), v6(2)] {
        let before = forwarded(&t.host)?;
        stream_through(&t.pods[0], to)?;
        let by_host = forwarded(&t.host)? - before;
        // 32 MiB is at least 512 GSO segments plus their ACKs; the host
        // itself should only see the handshake, FINs and their ACKs.
        ensure!(
            by_host < 40,
            "the host forwarded {by_host} packets of the stream to {to}"
        );
    }

    let (once, all) = (counted(&t.pods[1], "once")?, counted(&t.pods[1], "total")?);
    ensure!(
        all > 1000 && once == all,
        "{once} of {all} packets arrived with their TTL decremented once"
    );

    for to in [v4(2), v6(2)] {
        match connect(&t.pods[0], to, DENIED)? {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => bail!("a new connection to {to}:{DENIED}, denied by policy: {other:?}"),
        }
    }
    stop_reconciler(reconciler)
}

/// Packets counted by the named counter of table `inet hops` in `ns`.
fn counted(ns: &TestNetns, counter: &str) -> Result<u64> {
    let listing = ns.nft(&["list", "counter", "inet", "hops", counter])?;
    let packets = listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .with_context(|| format!("no packet count in {listing}"))?;
    Ok(packets.parse()?)
}

#[test]
fn a_shaped_interface_leaves_the_fast_path() -> Result<()> {
    let t = topology()?;
    let reconciler = start_reconciler(&t.host)?;
    let _server = digest_server(&t.pods[1], v4(2), ALLOWED, 2)?;
    let before = forwarded(&t.host)?;
    stream_through(&t.pods[0], v4(2))?;
    ensure!(
        forwarded(&t.host)? - before < 40,
        "the first stream missed the fast path"
    );

    // What the bandwidth plugin does for a pod's ingress limit.
    t.host.exec(&[
        "tc", "qdisc", "add", "dev", "cali2", "root", "tbf", "rate", "10gbit", "burst", "4mb",
        "latency", "50ms",
    ])?;
    let before = forwarded(&t.host)?;
    stream_through(&t.pods[0], v4(2))?;
    let by_host = forwarded(&t.host)? - before;
    ensure!(
        by_host > 100,
        "the host forwarded only {by_host} packets to a shaped interface"
    );
    stop_reconciler(reconciler)
}

#[test]
fn an_established_stream_survives_the_fast_path_going_away() -> Result<()> {
    let t = topology()?;
    let reconciler = start_reconciler(&t.host)?;
    let _server = digest_server(&t.pods[1], v4(2), ALLOWED, 1)?;

    let mut stream = connect(&t.pods[0], v4(2), ALLOWED)??;
    let data = pattern(STREAM, 9);
    let (first, second) = data.split_at(STREAM / 2);
    let mut sent = Digest::default();
    stream.write_all(first)?;
    sent.feed(first);
    // Let the first half drain, so it is the fast path that carried it.
    let mut drained = false;
    for _ in 0..100 {
        let queued =
            t.pods[0].exec(&["ss", "-tnH", "state", "established", "dport", "=", ":5000"])?;
        if queued.split_whitespace().nth(1) == Some("0") {
            drained = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !drained {
        bail!("the first half never drained");
    }
    let before = forwarded(&t.host)?;
    stop_reconciler(reconciler)?;
    stream.write_all(second)?;
    sent.feed(second);
    finish(stream, &sent)?;
    let by_host = forwarded(&t.host)? - before;
    ensure!(
        by_host > 100,
        "the host forwarded only {by_host} packets after the fast path went"
    );
    Ok(())
}
