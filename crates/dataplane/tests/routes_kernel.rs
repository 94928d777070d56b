//! The routes reconciler against the real kernel, in throwaway network
//! namespaces (needs root): a mix of IPv4/IPv6 device, onlink-gateway and
//! blackhole routes is installed and read back with `ip -j route`; drift
//! behind its back (a route deleted, one changed, a stale one of ours, a
//! foreign one on our interface) is repaired within the resync interval
//! while a foreign route elsewhere survives; routes on a missing or down
//! interface wait and are installed when it comes up; one refused route in
//! a pipelined batch does not stop the others; 100,000 /32s install in one
//! apply.

mod kernel_support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ipnet::IpNet;
use kernel_support::{routes_to, wait_for};
use serde_json::Value;
use tokio::sync::mpsc;
use tortie_dataplane::driver;
use tortie_dataplane::links::{InterfaceEvent, InterfaceStatus};
use tortie_dataplane::routes::{
    Route, RouteConfig, RouteKey, RouteOwnership, RouteReconciler, RouteTarget, RouteUpdate,
};
use tortie_testkit::TestNetns;

const WORKLOAD: &str = "cali0123456789a";
const WORKLOAD_PEER: &str = "pod0";

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn dev(dst: &str, iface: &str) -> Route {
    Route {
        key: RouteKey::new(net(dst), 1024),
        target: RouteTarget::Device {
            iface: iface.to_string(),
        },
        mtu: None,
    }
}

fn via(dst: &str, gw: &str, iface: &str, mtu: Option<u32>) -> Route {
    Route {
        key: RouteKey::new(net(dst), 1024),
        target: RouteTarget::Gateway {
            gateway: ip(gw),
            iface: iface.to_string(),
            onlink: true,
        },
        mtu,
    }
}

fn blackhole(dst: &str) -> Route {
    Route {
        key: RouteKey::new(net(dst), 1024),
        target: RouteTarget::Blackhole,
        mtu: None,
    }
}

/// No grace period, so foreign routes on our interfaces go at once.
fn config() -> RouteConfig {
    RouteConfig {
        ownership: RouteOwnership {
            grace: Duration::ZERO,
            ..RouteOwnership::default()
        },
        ..RouteConfig::default()
    }
}

/// `ip -j [-6] route show proto 80` of both families.
fn ours(ns: &TestNetns) -> Result<Vec<Value>> {
    let mut all = ns.ip_json(&["route", "show", "proto", "80"])?;
    all.extend(ns.ip_json(&["-6", "route", "show", "proto", "80"])?);
    Ok(all)
}

fn dsts(routes: &[Value]) -> BTreeSet<String> {
    routes
        .iter()
        .filter_map(|r| r["dst"].as_str().map(str::to_string))
        .collect()
}

/// A namespace with a workload veth and a parent interface `eth0`.
fn node() -> Result<TestNetns> {
    let ns = TestNetns::new("routes")?;
    ns.veth_up(WORKLOAD, &ns, WORKLOAD_PEER)?;
    ns.veth_up("eth0", &ns, "eth0peer")?;
    ns.ip(&["addr", "add", "192.168.50.1/24", "dev", "eth0"])?;
    ns.ip(&["-6", "addr", "add", "fd00:50::1/64", "dev", "eth0", "nodad"])?;
    Ok(ns)
}

fn the_mix() -> Vec<Route> {
    vec![
        dev("10.65.0.5/32", WORKLOAD),
        dev("fd00:65::5/128", WORKLOAD),
        via("10.66.0.0/26", "192.168.50.2", "eth0", Some(1450)),
        via("fd00:66::/122", "fd00:50::2", "eth0", Some(1430)),
        blackhole("10.65.0.0/26"),
        blackhole("fd00:65::/122"),
    ]
}

const MIX_DSTS: [&str; 6] = [
    "10.65.0.5",
    "fd00:65::5",
    "10.66.0.0/26",
    "fd00:66::/122",
    "10.65.0.0/26",
    "fd00:65::/122",
];

fn want_mix(routes: &[Value]) -> Option<()> {
    let got = dsts(routes);
    let want: BTreeSet<String> = MIX_DSTS.iter().map(|s| s.to_string()).collect();
    (got == want).then_some(())
}

/// A reconciler thread's outcome.
type Running = std::thread::JoinHandle<Result<Result<(), String>>>;

/// Runs the routes reconciler's driver loop in `ns` in the background.
fn start(ns: &TestNetns, config: RouteConfig) -> Result<(mpsc::Sender<RouteUpdate>, Running)> {
    let (tx, mut rx) = mpsc::channel(1024);
    let handle = ns.spawn(move || async move {
        let mut reconciler = RouteReconciler::open(config).map_err(|e| e.to_string())?;
        driver::run(&mut reconciler, &mut rx).await;
        Ok(())
    })?;
    Ok((tx, handle))
}

fn stop(tx: mpsc::Sender<RouteUpdate>, handle: Running) -> Result<()> {
    drop(tx);
    let outcome = handle
        .join()
        .map_err(|_| anyhow::anyhow!("reconciler thread panicked"))??;
    outcome.map_err(anyhow::Error::msg)
}

#[test]
fn root_routes_install_a_mix_and_repair_drift() -> Result<()> {
    let ns = node()?;
    let (tx, handle) = start(&ns, config())?;
    for r in the_mix() {
        tx.blocking_send(RouteUpdate::Set(r))?;
    }
    let ((), took) = wait_for("the mix installed", Duration::from_secs(5), || {
        Ok(want_mix(&ours(&ns)?))
    })?;
    println!("mix installed in {took:?}");

    // What the kernel holds is what was asked for.
    let v4 = ns.ip_json(&["route", "show", "proto", "80"])?;
    let r = &routes_to(&v4, "10.65.0.5")[0];
    ensure!(r["dev"] == WORKLOAD && r["scope"] == "link", "{r}");
    let r = &routes_to(&v4, "10.66.0.0/26")[0];
    ensure!(r["gateway"] == "192.168.50.2" && r["dev"] == "eth0", "{r}");
    ensure!(
        r["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "onlink")),
        "{r}"
    );
    ensure!(r["metrics"][0]["mtu"] == 1450, "{r}");
    ensure!(routes_to(&v4, "10.65.0.0/26")[0]["type"] == "blackhole");
    let v6 = ns.ip_json(&["-6", "route", "show", "proto", "80"])?;
    let r = &routes_to(&v6, "fd00:66::/122")[0];
    ensure!(
        r["gateway"] == "fd00:50::2" && r["metrics"][0]["mtu"] == 1430,
        "{r}"
    );
    ensure!(routes_to(&v6, "fd00:65::/122")[0]["type"] == "blackhole");

    // Behind its back: delete one, change one, add a stale one of ours, a
    // foreign one on our interface and a foreign one elsewhere.
    ns.ip(&["route", "del", "10.65.0.5/32", "dev", WORKLOAD])?;
    ns.ip(&[
        "route",
        "replace",
        "10.66.0.0/26",
        "via",
        "192.168.50.3",
        "dev",
        "eth0",
        "onlink",
        "proto",
        "80",
        "metric",
        "1024",
    ])?;
    ns.ip(&["-6", "route", "del", "fd00:65::/122", "proto", "80"])?;
    ns.ip(&["route", "add", "blackhole", "10.97.0.0/24", "proto", "80"])?;
    ns.ip(&[
        "route",
        "add",
        "10.98.0.1/32",
        "dev",
        WORKLOAD,
        "proto",
        "static",
    ])?;
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "dev",
        "eth0",
        "proto",
        "static",
    ])?;
    let changed = Instant::now();
    let ((), took) = wait_for("drift repaired", Duration::from_secs(3), || {
        let all = ours(&ns)?;
        let gw_back = routes_to(&all, "10.66.0.0/26")
            .first()
            .is_some_and(|r| r["gateway"] == "192.168.50.2");
        let foreign_on_ours = !ns
            .ip_json(&["route", "show", "dev", WORKLOAD])?
            .iter()
            .any(|r| r["dst"] == "10.98.0.1");
        Ok((want_mix(&all).is_some() && gw_back && foreign_on_ours).then_some(()))
    })?;
    println!("drift repaired in {took:?}");
    ensure!(
        took <= Duration::from_millis(1500),
        "repair took {took:?}, more than the 1 s resync interval allows"
    );

    // The foreign route elsewhere survives several resyncs.
    std::thread::sleep(Duration::from_millis(2200).saturating_sub(changed.elapsed()));
    let foreign = ns.ip_json(&["route", "show", "proto", "static"])?;
    ensure!(
        routes_to(&foreign, "10.99.0.0/24").len() == 1,
        "foreign route gone: {foreign:?}"
    );

    // Removing desired routes removes them.
    for r in the_mix() {
        tx.blocking_send(RouteUpdate::Remove(r.key))?;
    }
    wait_for("all removed", Duration::from_secs(3), || {
        Ok(ours(&ns)?.is_empty().then_some(()))
    })?;
    stop(tx, handle)
}

#[test]
fn root_routes_wait_for_their_interface() -> Result<()> {
    let ns = TestNetns::new("pending")?;
    let (tx, handle) = start(&ns, config())?;
    tx.blocking_send(RouteUpdate::Set(dev("10.65.1.5/32", WORKLOAD)))?;
    tx.blocking_send(RouteUpdate::Set(dev("fd00:65::1:5/128", WORKLOAD)))?;
    let installed = || -> Result<Option<()>> { Ok((dsts(&ours(&ns)?).len() == 2).then_some(())) };
    // Absent: nothing is installed (and nothing fails loudly) for a while.
    std::thread::sleep(Duration::from_millis(1200));
    ensure!(ours(&ns)?.is_empty(), "installed without an interface");

    // The interface appears: installed by the next resync.
    ns.veth_up(WORKLOAD, &ns, WORKLOAD_PEER)?;
    let ((), took) = wait_for(
        "installed once the interface exists",
        Duration::from_secs(3),
        installed,
    )?;
    println!("installed {took:?} after the interface appeared");

    // No carrier (peer down): IFF_RUNNING drops, the routes are withdrawn.
    ns.ip(&["link", "set", WORKLOAD_PEER, "down"])?;
    wait_for(
        "withdrawn while not running",
        Duration::from_secs(3),
        || Ok(ours(&ns)?.is_empty().then_some(())),
    )?;
    ns.ip(&["link", "set", WORKLOAD_PEER, "up"])?;
    wait_for("back when running", Duration::from_secs(3), installed)?;

    // An interface event (as the links reconciler sends) is acted on at
    // once, without waiting for the resync: admin down, then up.
    ns.ip(&["link", "set", WORKLOAD, "down"])?;
    let index = ns.ip_json(&["link", "show", WORKLOAD])?[0]["ifindex"]
        .as_u64()
        .context("ifindex")? as u32;
    tx.blocking_send(RouteUpdate::Interface(InterfaceEvent {
        name: WORKLOAD.to_string(),
        index,
        status: InterfaceStatus::Down,
        mtu: 1500,
        addrs: Vec::new(),
    }))?;
    wait_for("gone while down", Duration::from_secs(3), || {
        Ok(ours(&ns)?.is_empty().then_some(()))
    })?;
    ns.ip(&["link", "set", WORKLOAD, "up"])?;
    let event_sent = Instant::now();
    tx.blocking_send(RouteUpdate::Interface(InterfaceEvent {
        name: WORKLOAD.to_string(),
        index,
        status: InterfaceStatus::Up,
        mtu: 1500,
        addrs: Vec::new(),
    }))?;
    wait_for(
        "reinstalled on the up event",
        Duration::from_secs(3),
        installed,
    )?;
    println!("reinstalled {:?} after the up event", event_sent.elapsed());

    // Deleted and recreated (new index): routes follow.
    ns.ip(&["link", "del", WORKLOAD])?;
    wait_for("gone with the interface", Duration::from_secs(3), || {
        Ok(ours(&ns)?.is_empty().then_some(()))
    })?;
    ns.veth_up(WORKLOAD, &ns, WORKLOAD_PEER)?;
    wait_for(
        "back on the new interface",
        Duration::from_secs(3),
        installed,
    )?;
    stop(tx, handle)
}

#[test]
fn root_routes_one_refusal_does_not_block_a_batch() -> Result<()> {
    let ns = node()?;
    let report = ns
        .block_on(|| async {
            let mut r = RouteReconciler::open(config()).map_err(|e| e.to_string())?;
            r.resync().await.map_err(|e| e.to_string())?;
            for i in 0..2000u32 {
                let dst = format!("10.70.{}.{}/32", i / 256, i % 256);
                r.set(dev(&dst, WORKLOAD));
            }
            // Not onlink and not reachable: the kernel refuses this one.
            r.set(Route {
                key: RouteKey::new(net("10.71.0.0/24"), 1024),
                target: RouteTarget::Gateway {
                    gateway: ip("203.0.113.9"),
                    iface: "eth0".into(),
                    onlink: false,
                },
                mtu: None,
            });
            let report = r.apply().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(report)
        })?
        .map_err(anyhow::Error::msg)?;
    ensure!(report.applied == 2000 && report.failed == 1, "{report:?}");
    let v4 = ns.ip_json(&["route", "show", "proto", "80"])?;
    ensure!(v4.len() == 2000, "{} routes", v4.len());
    ensure!(routes_to(&v4, "10.71.0.0/24").is_empty());
    Ok(())
}

#[test]
fn root_routes_bulk_100k() -> Result<()> {
    const N: u32 = 100_000;
    let ns = node()?;
    let name = ns.name().to_string();
    let (install, resync, remove) = ns
        .block_on(move || async move {
            let mut r = RouteReconciler::open(config()).map_err(|e| e.to_string())?;
            r.resync().await.map_err(|e| e.to_string())?;
            for i in 0..N {
                let dst = format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256);
                r.set(dev(&dst, WORKLOAD));
            }
            let start = Instant::now();
            let report = r.apply().await.map_err(|e| e.to_string())?;
            let install = start.elapsed();
            if report.applied != N as usize || report.failed != 0 {
                return Err(format!("{report:?}"));
            }
            let listed = tortie_testkit::run_command(
                std::process::Command::new("ip")
                    .args(["-n", &name, "route", "show", "proto", "80"]),
            )
            .map_err(|e| format!("{e:#}"))?;
            let count = listed.lines().count();
            if count != N as usize {
                return Err(format!("the kernel holds {count} of our routes"));
            }
            let start = Instant::now();
            r.resync().await.map_err(|e| e.to_string())?;
            let resync = start.elapsed();
            let report = r.apply().await.map_err(|e| e.to_string())?;
            if report.applied != 0 {
                return Err(format!("a resync of our own routes changed {report:?}"));
            }
            for i in 0..N {
                let dst = format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256);
                r.remove(&RouteKey::new(net(&dst), 1024));
            }
            let start = Instant::now();
            r.apply().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((install, resync, start.elapsed()))
        })?
        .map_err(anyhow::Error::msg)?;
    println!("100,000 /32s: install {install:?}, resync (dump) {resync:?}, remove {remove:?}");
    let left = ns.ip(&["route", "show", "proto", "80"])?;
    ensure!(
        left.trim().is_empty(),
        "left behind: {}",
        left.lines().count()
    );
    Ok(())
}
