//! The VXLAN reconciler against the real kernel (needs root): two "nodes"
//! (namespaces on a bridge in a third, the data centre) each run the
//! VXLAN, routes and links reconcilers wired as the daemon wires them
//! (link events feed the routes reconciler). Pods behind each node — a
//! namespace on a `cali…` veth with the 169.254.1.1 gateway trick for IPv4,
//! an address on the node's `lo` for IPv6 — reach each other through
//! `vxlan.calico` / `vxlan-v6.calico` (a TCP exchange, both ways through
//! the tunnel). Then drift: the FDB entry, the neighbour entry, the admin
//! state and the MTU changed behind the reconciler's back, and the device
//! replaced by one with another VNI, are all repaired; a change of the
//! desired port recreates the devices; traffic flows after each.

mod kernel_support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ipnet::IpNet;
use kernel_support::{routes_to, wait_for};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tortie_dataplane::driver;
use tortie_dataplane::links::{LinkConfig, LinkReconciler};
use tortie_dataplane::routes::{
    Route, RouteConfig, RouteKey, RouteReconciler, RouteTarget, RouteUpdate,
};
use tortie_dataplane::vxlan::{
    DEVICE_V4, DEVICE_V6, Vtep, VxlanConfig, VxlanDevice, VxlanReconciler, VxlanUpdate,
};
use tortie_testkit::TestNetns;

/// One node's addressing.
#[derive(Clone, Copy)]
struct Plan {
    node_ip: &'static str,
    node_ip6: &'static str,
    tunnel: &'static str,
    tunnel6: &'static str,
    block: &'static str,
    block6: &'static str,
    pod: &'static str,
    pod6: &'static str,
    mac: [u8; 6],
    mac6: [u8; 6],
    workload: &'static str,
}

const A: Plan = Plan {
    node_ip: "192.168.60.1",
    node_ip6: "fd00:60::1",
    tunnel: "10.244.0.0",
    tunnel6: "fd00:244::",
    block: "10.244.0.0/26",
    block6: "fd00:244::/122",
    pod: "10.244.0.5",
    pod6: "fd00:244::5",
    mac: [0x66, 0xaa, 0, 0, 0, 1],
    mac6: [0x66, 0xaa, 0, 0, 0, 6],
    workload: "caliaaaaaaaaaaa",
};

const B: Plan = Plan {
    node_ip: "192.168.60.2",
    node_ip6: "fd00:60::2",
    tunnel: "10.244.1.0",
    tunnel6: "fd00:244:0:1::",
    block: "10.244.1.0/26",
    block6: "fd00:244:0:1::/122",
    pod: "10.244.1.5",
    pod6: "fd00:244:0:1::5",
    mac: [0x66, 0xbb, 0, 0, 0, 2],
    mac6: [0x66, 0xbb, 0, 0, 0, 6],
    workload: "calibbbbbbbbbbb",
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

fn mac_str(m: [u8; 6]) -> String {
    tortie_dataplane::links::format_mac(&m)
}

fn device(me: Plan, v6: bool, port: u16) -> VxlanDevice {
    let mut d = if v6 {
        VxlanDevice::new(ip(me.node_ip6), ip(me.tunnel6), me.mac6, 1430)
    } else {
        VxlanDevice::new(ip(me.node_ip), ip(me.tunnel), me.mac, 1450)
    };
    d.port = port;
    d
}

/// The desired routes of `me` with `peer` remote.
fn routes(me: Plan, peer: Plan) -> Vec<Route> {
    let key = |s: &str| RouteKey::new(net(s), 1024);
    vec![
        Route {
            key: key(&format!("{}/32", me.pod)),
            target: RouteTarget::Device {
                iface: me.workload.into(),
            },
            mtu: None,
        },
        Route {
            key: key(me.block),
            target: RouteTarget::Blackhole,
            mtu: None,
        },
        Route {
            key: key(peer.block),
            target: RouteTarget::Gateway {
                gateway: ip(peer.tunnel),
                iface: DEVICE_V4.into(),
                onlink: true,
            },
            mtu: Some(1450),
        },
        Route {
            key: key(peer.block6),
            target: RouteTarget::Gateway {
                gateway: ip(peer.tunnel6),
                iface: DEVICE_V6.into(),
                onlink: true,
            },
            mtu: Some(1430),
        },
    ]
}

/// A node: its namespace, its pod's namespace, and the reconcilers'
/// update channels (dropping them stops the node's reconcilers).
struct Node {
    ns: TestNetns,
    pod: TestNetns,
    routes: mpsc::Sender<RouteUpdate>,
    vxlan: mpsc::Sender<VxlanUpdate>,
    vxlan6: mpsc::Sender<VxlanUpdate>,
    links: mpsc::Sender<tortie_dataplane::links::LinkUpdate>,
    handle: std::thread::JoinHandle<Result<Result<(), String>>>,
}

impl Node {
    fn stop(self) -> Result<()> {
        drop((self.routes, self.vxlan, self.vxlan6, self.links));
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("node thread panicked"))??
            .map_err(anyhow::Error::msg)
    }
}

/// Builds a node on the bridge of `dc` with a pod, and starts its
/// reconcilers.
fn node(dc: &TestNetns, tag: &str, me: Plan) -> Result<Node> {
    let ns = TestNetns::new(tag)?;
    let pod = TestNetns::new(&format!("{tag}pod"))?;
    let dc_end = format!("to{tag}");
    dc.veth(&dc_end, &ns, "eth0")?;
    dc.ip(&["link", "set", &dc_end, "master", "br0", "up"])?;
    ns.ip(&["addr", "add", &format!("{}/24", me.node_ip), "dev", "eth0"])?;
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/64", me.node_ip6),
        "dev",
        "eth0",
        "nodad",
    ])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    // Proxy ARP answers for 169.254.1.1 only if the host routes it
    // elsewhere: a default route, as every real node has.
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.168.60.254",
        "dev",
        "eth0",
    ])?;
    // The IPv6 "pod" is an address on the node's lo.
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/128", me.pod6),
        "dev",
        "lo",
    ])?;
    // The IPv4 pod, plumbed as the CNI plugin does.
    ns.veth(me.workload, &pod, "eth0")?;
    ns.ip(&[
        "link",
        "set",
        me.workload,
        "address",
        "ee:ee:ee:ee:ee:ee",
        "up",
    ])?;
    pod.ip(&["addr", "add", &format!("{}/32", me.pod), "dev", "eth0"])?;
    pod.ip(&["link", "set", "eth0", "up"])?;
    pod.ip(&[
        "route",
        "add",
        "169.254.1.1",
        "dev",
        "eth0",
        "scope",
        "link",
    ])?;
    pod.ip(&[
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ])?;

    let (routes_tx, mut routes_rx) = mpsc::channel(256);
    let (vxlan_tx, mut vxlan_rx) = mpsc::channel(64);
    let (vxlan6_tx, mut vxlan6_rx) = mpsc::channel(64);
    let (links_tx, links_rx) = mpsc::channel(64);
    let events_to_routes = routes_tx.clone();
    let handle = ns.spawn(move || async move {
        let fail = |e: tortie_dataplane::netlink::NetlinkError| e.to_string();
        let mut routes = RouteReconciler::open(RouteConfig::default()).map_err(fail)?;
        let mut vxlan = VxlanReconciler::open(VxlanConfig::default()).map_err(fail)?;
        let mut vxlan6 = VxlanReconciler::open(VxlanConfig {
            ipv6: true,
            ..VxlanConfig::default()
        })
        .map_err(fail)?;
        let mut links = LinkReconciler::open(LinkConfig::default()).map_err(fail)?;
        let (events_tx, mut events_rx) = mpsc::channel(64);
        let forward = async move {
            while let Some(event) = events_rx.recv().await {
                if events_to_routes
                    .send(RouteUpdate::Interface(event))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let (linked, (), (), (), ()) = tokio::join!(
            links.run(links_rx, events_tx),
            forward,
            driver::run(&mut routes, &mut routes_rx),
            driver::run(&mut vxlan, &mut vxlan_rx),
            driver::run(&mut vxlan6, &mut vxlan6_rx),
        );
        linked.map_err(fail)
    })?;
    Ok(Node {
        ns,
        pod,
        routes: routes_tx,
        vxlan: vxlan_tx,
        vxlan6: vxlan6_tx,
        links: links_tx,
        handle,
    })
}

fn program(node: &Node, me: Plan, peer: Plan, port: u16) -> Result<()> {
    node.vxlan
        .blocking_send(VxlanUpdate::Device(Some(device(me, false, port))))?;
    node.vxlan6
        .blocking_send(VxlanUpdate::Device(Some(device(me, true, port))))?;
    node.vxlan.blocking_send(VxlanUpdate::SetVtep {
        node: "peer".into(),
        vtep: Vtep {
            node_ip: ip(peer.node_ip),
            tunnel_ip: ip(peer.tunnel),
            mac: peer.mac,
        },
    })?;
    node.vxlan6.blocking_send(VxlanUpdate::SetVtep {
        node: "peer".into(),
        vtep: Vtep {
            node_ip: ip(peer.node_ip6),
            tunnel_ip: ip(peer.tunnel6),
            mac: peer.mac6,
        },
    })?;
    for r in routes(me, peer) {
        node.routes.blocking_send(RouteUpdate::Set(r))?;
    }
    Ok(())
}

/// A TCP exchange from `client_ns` (bound to `from`) to `to`:7777 served
/// in `server_ns`; retried until it works or `limit` passes. Returns how
/// long it took.
fn tcp_exchange(
    server_ns: &TestNetns,
    client_ns: &TestNetns,
    from: IpAddr,
    to: IpAddr,
    limit: Duration,
) -> Result<Duration> {
    let addr = SocketAddr::new(to, 7777);
    let server = server_ns.spawn(move || async move {
        let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + limit + Duration::from_secs(2);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, peer)) => {
                    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
                    conn.set_read_timeout(Some(Duration::from_secs(2)))
                        .map_err(|e| e.to_string())?;
                    let mut buf = [0u8; 4];
                    conn.read_exact(&mut buf).map_err(|e| e.to_string())?;
                    conn.write_all(&buf).map_err(|e| e.to_string())?;
                    return Ok(peer.ip());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        Err("no connection".to_string())
    })?;
    let start = Instant::now();
    let client = client_ns.block_on(move || async move {
        let mut last = String::new();
        while start.elapsed() < limit {
            match exchange(from, addr).await {
                Ok(buf) if &buf == b"ping" => return Ok(start.elapsed()),
                Ok(buf) => last = format!("bad echo {buf:?}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    })?;
    let took = client.map_err(|e| anyhow::anyhow!("{from} -> {to}: {e}"))?;
    let seen = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??
        .map_err(anyhow::Error::msg)?;
    ensure!(seen == from, "the server saw {seen}, not {from}");
    Ok(took)
}

/// One connection from `from` (bound, so the server sees the pod's
/// address) to `to`: "ping" out, the echo back.
async fn exchange(from: IpAddr, to: SocketAddr) -> std::io::Result<[u8; 4]> {
    let timed_out =
        |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string());
    let socket = if to.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.bind(SocketAddr::new(from, 0))?;
    let mut conn = tokio::time::timeout(Duration::from_millis(500), socket.connect(to))
        .await
        .map_err(|_| timed_out("connect timed out"))??;
    conn.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(1), conn.read_exact(&mut buf))
        .await
        .map_err(|_| timed_out("no echo"))??;
    Ok(buf)
}

fn vxlan_info(ns: &TestNetns, dev: &str) -> Result<(u64, Value)> {
    let link = ns.ip_json(&["-d", "link", "show", dev])?;
    let l = link.first().context("no device")?;
    Ok((l["ifindex"].as_u64().context("ifindex")?, l.clone()))
}

fn fdb_has(ns: &TestNetns, dev: &str, mac: [u8; 6], dst: &str) -> Result<bool> {
    // A device not there (yet) has no entries.
    let Ok(fdb) = ns.bridge_json(&["fdb", "show", "dev", dev]) else {
        return Ok(false);
    };
    Ok(fdb.iter().any(|e| {
        e["mac"] == mac_str(mac).as_str()
            && e["dst"] == dst
            && e["state"] == "permanent"
            && e["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "self"))
    }))
}

fn neigh_has(ns: &TestNetns, dev: &str, ip: &str, mac: [u8; 6]) -> Result<bool> {
    let Ok(n) = ns.ip_json(&["neigh", "show", "dev", dev]) else {
        return Ok(false);
    };
    Ok(n.iter().any(|e| {
        e["dst"] == ip
            && e["lladdr"] == mac_str(mac).as_str()
            && e["state"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))
    }))
}

/// Packets a device has sent.
fn tx_packets(ns: &TestNetns, dev: &str) -> Result<u64> {
    let link = ns.ip_json(&["-s", "link", "show", dev])?;
    link.first()
        .and_then(|l| l["stats64"]["tx"]["packets"].as_u64())
        .context("no tx counter")
}

/// Prints the nodes' kernel state, for a failed connectivity check.
fn dump_state(nodes: &[&Node]) {
    for n in nodes {
        for args in [
            &["route"][..],
            &["-6", "route"],
            &["neigh"],
            &["-d", "addr"],
        ] {
            eprintln!(
                "{} ip {args:?}:\n{}",
                n.ns.name(),
                n.ns.ip(args).unwrap_or_default()
            );
        }
        eprintln!(
            "{} pod routes:\n{}",
            n.pod.name(),
            n.pod.ip(&["route"]).unwrap_or_default()
        );
        eprintln!(
            "{} pod neighbours:\n{}",
            n.pod.name(),
            n.pod.ip(&["neigh"]).unwrap_or_default()
        );
    }
}

fn both_ways(a: &Node, b: &Node) -> Result<Duration> {
    let limit = Duration::from_secs(5);
    let t1 = tcp_exchange(&b.pod, &a.pod, ip(A.pod), ip(B.pod), limit)?;
    let t2 = tcp_exchange(&a.pod, &b.pod, ip(B.pod), ip(A.pod), limit)?;
    let t3 = tcp_exchange(&b.ns, &a.ns, ip(A.pod6), ip(B.pod6), limit)?;
    let t4 = tcp_exchange(&a.ns, &b.ns, ip(B.pod6), ip(A.pod6), limit)?;
    Ok(t1.max(t2).max(t3).max(t4))
}

#[test]
fn root_vxlan_pods_talk_through_the_tunnel_and_drift_is_repaired() -> Result<()> {
    let dc = TestNetns::new("dc")?;
    dc.ip(&["link", "add", "br0", "type", "bridge"])?;
    dc.ip(&["addr", "add", "192.168.60.254/24", "dev", "br0"])?;
    dc.ip(&["link", "set", "br0", "up"])?;
    let a = node(&dc, "a", A)?;
    let b = node(&dc, "b", B)?;
    program(&a, A, B, 4789)?;
    program(&b, B, A, 4789)?;

    // The device as specified.
    let ((), took) = wait_for("devices and entries", Duration::from_secs(5), || {
        Ok((fdb_has(&a.ns, DEVICE_V4, B.mac, B.node_ip)?
            && neigh_has(&a.ns, DEVICE_V4, B.tunnel, B.mac)?
            && fdb_has(&b.ns, DEVICE_V6, A.mac6, A.node_ip6)?
            && neigh_has(&b.ns, DEVICE_V6, A.tunnel6, A.mac6)?)
        .then_some(()))
    })?;
    println!("VXLAN programmed in {took:?}");
    let (index, link) = vxlan_info(&a.ns, DEVICE_V4)?;
    let info = &link["linkinfo"]["info_data"];
    ensure!(link["linkinfo"]["info_kind"] == "vxlan", "{link}");
    ensure!(info["id"] == 4096 && info["port"] == 4789, "{info}");
    ensure!(
        info["local"] == A.node_ip && info["link"] == "eth0",
        "{info}"
    );
    ensure!(info["learning"] == false, "{info}");
    ensure!(
        link["mtu"] == 1450 && link["address"] == mac_str(A.mac).as_str(),
        "{link}"
    );
    let addrs = a.ns.ip_json(&["-4", "addr", "show", "dev", DEVICE_V4])?;
    ensure!(
        addrs[0]["addr_info"][0]["local"] == A.tunnel
            && addrs[0]["addr_info"][0]["prefixlen"] == 32,
        "{addrs:?}"
    );
    let (_, link6) = vxlan_info(&a.ns, DEVICE_V6)?;
    ensure!(
        link6["linkinfo"]["info_data"]["local6"] == A.node_ip6,
        "{link6}"
    );
    let v4 = a.ns.ip_json(&["route", "show", "proto", "80"])?;
    let r = &routes_to(&v4, B.block)[0];
    ensure!(r["gateway"] == B.tunnel && r["dev"] == DEVICE_V4, "{r}");

    let sent_before = [tx_packets(&a.ns, DEVICE_V4)?, tx_packets(&a.ns, DEVICE_V6)?];
    let took = both_ways(&a, &b).inspect_err(|_| dump_state(&[&a, &b]))?;
    // The packets went through the tunnel devices.
    ensure!(
        tx_packets(&a.ns, DEVICE_V4)? > sent_before[0],
        "nothing sent on {DEVICE_V4}"
    );
    ensure!(
        tx_packets(&a.ns, DEVICE_V6)? > sent_before[1],
        "nothing sent on {DEVICE_V6}"
    );
    println!("pods talk through the tunnel (slowest exchange {took:?})");

    // Drift: FDB entry deleted.
    a.ns.exec(&[
        "bridge",
        "fdb",
        "del",
        &mac_str(B.mac),
        "dev",
        DEVICE_V4,
        "self",
        "dst",
        B.node_ip,
    ])?;
    let ((), took) = wait_for("FDB entry back", Duration::from_secs(3), || {
        Ok(fdb_has(&a.ns, DEVICE_V4, B.mac, B.node_ip)?.then_some(()))
    })?;
    println!("FDB entry restored in {took:?}");
    ensure!(took <= Duration::from_millis(1500), "took {took:?}");

    // Drift: neighbour deleted, device downed, MTU changed.
    a.ns.ip(&["neigh", "del", B.tunnel, "dev", DEVICE_V4])?;
    a.ns.ip(&["link", "set", DEVICE_V4, "down"])?;
    a.ns.ip(&["link", "set", DEVICE_V6, "mtu", "1300"])?;
    let ((), took) = wait_for("device repaired in place", Duration::from_secs(3), || {
        let (Ok((i, link)), Ok((_, link6))) =
            (vxlan_info(&a.ns, DEVICE_V4), vxlan_info(&a.ns, DEVICE_V6))
        else {
            return Ok(None);
        };
        let up = link["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        Ok((i == index
            && up
            && link6["mtu"] == 1430
            && neigh_has(&a.ns, DEVICE_V4, B.tunnel, B.mac)?
            && !routes_to(&a.ns.ip_json(&["route", "show", "proto", "80"])?, B.block).is_empty())
        .then_some(()))
    })?;
    println!("neighbour, admin state and MTU restored in {took:?}");
    both_ways(&a, &b)?;

    // Drift: someone replaces the device with one of another VNI.
    a.ns.ip(&["link", "del", DEVICE_V4])?;
    a.ns.ip(&[
        "link", "add", DEVICE_V4, "type", "vxlan", "id", "5000", "dstport", "4789", "local",
        A.node_ip, "dev", "eth0",
    ])?;
    let ((), took) = wait_for("device recreated", Duration::from_secs(4), || {
        let Ok((_, link)) = vxlan_info(&a.ns, DEVICE_V4) else {
            return Ok(None);
        };
        Ok((link["linkinfo"]["info_data"]["id"] == 4096
            && link["linkinfo"]["info_data"]["learning"] == false
            && fdb_has(&a.ns, DEVICE_V4, B.mac, B.node_ip)?)
        .then_some(()))
    })?;
    println!("foreign-parameter device recreated in {took:?}");
    let took = both_ways(&a, &b)?;
    println!("traffic flows again ({took:?})");

    // A desired parameter change: both sides move to port 4790.
    program(&a, A, B, 4790)?;
    program(&b, B, A, 4790)?;
    wait_for("devices on the new port", Duration::from_secs(4), || {
        let ports: Vec<Value> = [
            (&a, DEVICE_V4),
            (&a, DEVICE_V6),
            (&b, DEVICE_V4),
            (&b, DEVICE_V6),
        ]
        .iter()
        .map(|(n, d)| {
            vxlan_info(&n.ns, d)
                .map(|(_, l)| l["linkinfo"]["info_data"]["port"].clone())
                .unwrap_or(Value::Null)
        })
        .collect();
        Ok(ports.iter().all(|p| *p == 4790).then_some(()))
    })?;
    both_ways(&a, &b)?;

    a.stop()?;
    b.stop()
}
