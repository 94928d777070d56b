//! The links reconciler against the real kernel, in a throwaway network
//! namespace (needs root): a workload veth gets its sysctls when it
//! appears, sysctls changed behind its back are restored within the
//! resync interval, an endpoint allowed to spoof gets `rp_filter=0`, and
//! interface up/down/absent and address changes are reported as events —
//! while a downed workload interface is left down (the CNI plugin owns
//! its admin state).

mod kernel_support;

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use ipnet::IpNet;
use kernel_support::wait_for;
use tokio::sync::mpsc;
use tortie_dataplane::links::{
    InterfaceEvent, InterfaceStatus, LinkConfig, LinkReconciler, LinkUpdate,
};
use tortie_testkit::TestNetns;

const WORKLOAD: &str = "cali0123456789b";
const PEER: &str = "pod0";

type Running = (
    mpsc::Sender<LinkUpdate>,
    std_mpsc::Receiver<InterfaceEvent>,
    std::thread::JoinHandle<Result<Result<(), String>>>,
);

/// Runs the links reconciler in `ns` in the background; its events are
/// forwarded to a std channel the test reads with timeouts.
fn start(ns: &TestNetns) -> Result<Running> {
    let (update_tx, update_rx) = mpsc::channel(16);
    let (event_fwd, event_rx) = std_mpsc::channel();
    let handle = ns.spawn(move || async move {
        let mut reconciler =
            LinkReconciler::open(LinkConfig::default()).map_err(|e| e.to_string())?;
        let (event_tx, mut events) = mpsc::channel(64);
        let forward = async move {
            while let Some(e) = events.recv().await {
                if event_fwd.send(e).is_err() {
                    break;
                }
            }
        };
        let (run, ()) = tokio::join!(reconciler.run(update_rx, event_tx), forward);
        run.map_err(|e| e.to_string())
    })?;
    Ok((update_tx, event_rx, handle))
}

/// Waits for an event about `name` with `status`; returns it.
fn expect_event(
    events: &std_mpsc::Receiver<InterfaceEvent>,
    name: &str,
    status: InterfaceStatus,
) -> Result<InterfaceEvent> {
    expect_event_where(events, name, status, |_| true)
}

/// Waits for an event about `name` with `status` that `also` accepts.
fn expect_event_where(
    events: &std_mpsc::Receiver<InterfaceEvent>,
    name: &str,
    status: InterfaceStatus,
    also: impl Fn(&InterfaceEvent) -> bool,
) -> Result<InterfaceEvent> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if e.name == name && e.status == status && also(&e) => return Ok(e),
            Ok(_) => {}
            Err(_) => bail!("no {status:?} event for {name}"),
        }
    }
}

fn sysctl_is(ns: &TestNetns, name: &str, want: &str) -> Result<Option<()>> {
    Ok((ns.sysctl(name)? == want).then_some(()))
}

#[test]
fn root_links_sysctls_and_interface_events() -> Result<()> {
    let ns = TestNetns::new("links")?;
    let default_rp = ns.sysctl("net.ipv4.conf.default.rp_filter")?;
    let (updates, events, handle) = start(&ns)?;
    expect_event(&events, "lo", InterfaceStatus::Up)?;
    // Globals are ensured at start.
    wait_for("ip_forward", Duration::from_secs(3), || {
        sysctl_is(&ns, "net.ipv4.ip_forward", "1")
    })?;
    ensure!(ns.sysctl("net.ipv6.conf.all.forwarding")? == "1");

    // A workload interface appears and comes up.
    let created = Instant::now();
    ns.veth_up(WORKLOAD, &ns, PEER)?;
    let up = expect_event(&events, WORKLOAD, InterfaceStatus::Up)?;
    println!("up event {:?} after creation", created.elapsed());
    ensure!(up.index > 0);
    for (name, want) in [
        ("route_localnet", "1"),
        ("proxy_arp", "1"),
        ("forwarding", "1"),
        ("rp_filter", default_rp.as_str()),
    ] {
        let key = format!("net.ipv4.conf.{WORKLOAD}.{name}");
        wait_for(&key, Duration::from_secs(2), || sysctl_is(&ns, &key, want))?;
    }
    for (name, want) in [("accept_ra", "0"), ("proxy_ndp", "1"), ("forwarding", "1")] {
        let key = format!("net.ipv6.conf.{WORKLOAD}.{name}");
        wait_for(&key, Duration::from_secs(2), || sysctl_is(&ns, &key, want))?;
    }
    ensure!(ns.sysctl(&format!("net.ipv4.neigh.{WORKLOAD}.proxy_delay"))? == "0");
    // Not a workload interface: untouched.
    ensure!(ns.sysctl(&format!("net.ipv4.conf.{PEER}.proxy_arp"))? == "0");

    // Changed behind its back: restored within the resync interval.
    let proxy_arp = format!("net.ipv4.conf.{WORKLOAD}.proxy_arp");
    ns.set_sysctl(&proxy_arp, "0")?;
    ns.set_sysctl("net.ipv4.ip_forward", "0")?;
    let ((), took) = wait_for("sysctls restored", Duration::from_secs(3), || {
        Ok(
            (ns.sysctl(&proxy_arp)? == "1" && ns.sysctl("net.ipv4.ip_forward")? == "1")
                .then_some(()),
        )
    })?;
    println!("sysctl drift repaired in {took:?}");
    ensure!(took <= Duration::from_millis(1500), "took {took:?}");

    // An endpoint allowed to spoof its source: rp_filter 0, then back.
    let rp = format!("net.ipv4.conf.{WORKLOAD}.rp_filter");
    ns.set_sysctl("net.ipv4.conf.default.rp_filter", "1")?;
    updates.blocking_send(LinkUpdate::AllowSpoofedSources {
        iface: WORKLOAD.into(),
        allowed: true,
    })?;
    wait_for("rp_filter 0", Duration::from_secs(2), || {
        sysctl_is(&ns, &rp, "0")
    })?;
    ns.set_sysctl(&rp, "2")?;
    wait_for("rp_filter 0 again", Duration::from_secs(3), || {
        sysctl_is(&ns, &rp, "0")
    })?;
    updates.blocking_send(LinkUpdate::AllowSpoofedSources {
        iface: WORKLOAD.into(),
        allowed: false,
    })?;
    wait_for("rp_filter default", Duration::from_secs(2), || {
        sysctl_is(&ns, &rp, &default_rp)
    })?;

    // Addresses are reported.
    let addr: IpNet = "10.0.0.1/32".parse()?;
    ns.ip(&["addr", "add", "10.0.0.1/32", "dev", WORKLOAD])?;
    expect_event_where(&events, WORKLOAD, InterfaceStatus::Up, |e| {
        e.addrs.contains(&addr)
    })?;
    ns.ip(&["addr", "del", "10.0.0.1/32", "dev", WORKLOAD])?;
    expect_event_where(&events, WORKLOAD, InterfaceStatus::Up, |e| {
        !e.addrs.contains(&addr)
    })?;

    // Downed: reported, and left down (the CNI plugin's business).
    ns.ip(&["link", "set", WORKLOAD, "down"])?;
    expect_event(&events, WORKLOAD, InterfaceStatus::Down)?;
    std::thread::sleep(Duration::from_millis(1500));
    let link = ns.ip_json(&["link", "show", WORKLOAD])?;
    ensure!(
        link[0]["flags"]
            .as_array()
            .is_some_and(|f| !f.iter().any(|x| x == "UP")),
        "brought back up: {link:?}"
    );
    ns.ip(&["link", "set", WORKLOAD, "up"])?;
    expect_event(&events, WORKLOAD, InterfaceStatus::Up)?;

    // Peer down: no carrier, reported down although admin up.
    ns.ip(&["link", "set", PEER, "down"])?;
    expect_event(&events, WORKLOAD, InterfaceStatus::Down)?;

    // Deleted: absent.
    ns.ip(&["link", "del", WORKLOAD])?;
    let gone = expect_event(&events, WORKLOAD, InterfaceStatus::Absent)?;
    ensure!(gone.index == up.index);

    drop(updates);
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("reconciler thread panicked"))??
        .map_err(anyhow::Error::msg)
}
