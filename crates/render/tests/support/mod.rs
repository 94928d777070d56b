//! Harness of the real-packet tests and the benchmark (they need root),
//! on top of `tortie_testkit::TestNetns` (throwaway namespaces deleted on
//! drop, bounded commands inside them, work on a thread `setns`ed into
//! them).
//!
//! - [`Lab`]: a node as Calico plumbs it. A host namespace with an uplink
//!   `eth0` to an `outside` namespace (its default route, which proxy ARP
//!   needs), one namespace per pod behind a `cali…` veth (pod address /32
//!   or /128, `169.254.1.1` / the host's link-local as gateway, host route
//!   `<ip> dev cali…`, proxy ARP), a `tortie_calc::Calculator` for node
//!   `host1` fed YAML resources, a `PolicyRenderer`, and a `Reconciler`
//!   whose socket lives in the host namespace.
//! - Probes with bounded waits: TCP (connect and echo), UDP (echo), ICMP
//!   (`busybox ping`), against echo servers that every pod, the host and
//!   the outside namespace run on fixed ports; the servers stop and are
//!   joined on drop.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tortie_calc::{Calculator, Update};
use tortie_dataplane::nft::{ApplyReport, NftSocket, Reconciler};
use tortie_model::endpoint::{WorkloadEndpointPort, WorkloadEndpointSpec, workload_endpoint_name};
use tortie_model::scalar::Protocol;
use tortie_model::{Kind, ObjectMeta, Resource};
use tortie_render::{PolicyRenderer, RenderStats, names};
use tortie_testkit::TestNetns;

/// How long a probe waits before calling a flow denied.
pub const DENIED_WAIT: Duration = Duration::from_millis(400);
/// Ports every echo server listens on.
pub const TCP_PORTS: [u16; 8] = [22, 80, 443, 5432, 8080, 9000, 9001, 9090];
pub const UDP_PORTS: [u16; 3] = [53, 4789, 5353];
/// The node the calculator runs for.
pub const NODE: &str = "host1";
pub const HOST_V4: &str = "198.51.100.1";
pub const OUTSIDE_V4: &str = "198.51.100.2";
pub const HOST_V6: &str = "2001:db8:ff::1";
pub const OUTSIDE_V6: &str = "2001:db8:ff::2";

/// A namespace for the lab: [`TestNetns`] with IPv6 duplicate address
/// detection off (addresses are usable at once) and ICMP errors (port
/// unreachable) not rate limited.
pub fn namespace(tag: &str) -> Result<TestNetns> {
    let ns = TestNetns::new(tag)?;
    ns.set_sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    ns.set_sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.set_sysctl("net.ipv4.icmp_ratelimit", "0")?;
    Ok(ns)
}

/// Echo servers (TCP and UDP, dual-stack) in a namespace, stopped on drop.
pub struct Servers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn serve(tcp: Vec<TcpListener>, udp: Vec<UdpSocket>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        for l in &tcp {
            if let Ok((mut s, _)) = l.accept() {
                busy = true;
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(DENIED_WAIT));
                if let Ok(n) = s.read(&mut buf) {
                    let _ = s.write_all(&buf[..n]);
                }
            }
        }
        for u in &udp {
            if let Ok((n, peer)) = u.recv_from(&mut buf) {
                busy = true;
                // "who" asks for the address the packet came from (NAT tests).
                let reply = if &buf[..n] == b"who" {
                    peer.ip().to_canonical().to_string().into_bytes()
                } else {
                    buf[..n].to_vec()
                };
                let _ = u.send_to(&reply, peer);
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Servers {
    pub fn start(ns: &TestNetns) -> Result<Servers> {
        let (tcp, udp) = ns.run(|| -> std::io::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
            let mut tcp = Vec::new();
            for p in TCP_PORTS {
                let l = TcpListener::bind(SocketAddr::from(([0u16; 8], p)))?;
                l.set_nonblocking(true)?;
                tcp.push(l);
            }
            let mut udp = Vec::new();
            for p in UDP_PORTS {
                let u = UdpSocket::bind(SocketAddr::from(([0u16; 8], p)))?;
                u.set_nonblocking(true)?;
                udp.push(u);
            }
            Ok((tcp, udp))
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(tcp, udp, flag));
        Ok(Servers {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True if a TCP connection from `ns` to `to:port` is made and echoes.
pub fn tcp(ns: &TestNetns, to: IpAddr, port: u16) -> Result<bool> {
    let addr = SocketAddr::new(to, port);
    ns.run(move || -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, DENIED_WAIT) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(DENIED_WAIT));
        let mut buf = [0u8; 5];
        s.write_all(b"hello").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"hello"
    })
}

/// The reply to `payload` sent over UDP from `ns` to `to:port`, if any.
pub fn udp_exchange(
    ns: &TestNetns,
    to: IpAddr,
    port: u16,
    payload: &[u8],
) -> Result<Option<String>> {
    let addr = SocketAddr::new(to, port);
    let payload = payload.to_vec();
    ns.run(move || -> Option<String> {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let s = UdpSocket::bind(bind).ok()?;
        s.set_read_timeout(Some(DENIED_WAIT)).ok()?;
        s.send_to(&payload, addr).ok()?;
        let mut buf = [0u8; 512];
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, from)) if from == addr => {
                    return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    })
}

/// True if a UDP datagram from `ns` to `to:port` is echoed.
pub fn udp(ns: &TestNetns, to: IpAddr, port: u16) -> Result<bool> {
    Ok(udp_exchange(ns, to, port, b"hello")?.as_deref() == Some("hello"))
}

/// True if one ping from `ns` to `to` is answered within a second.
pub fn ping(ns: &TestNetns, to: IpAddr) -> bool {
    let family = if to.is_ipv4() { "-4" } else { "-6" };
    ns.exec(&[
        "busybox",
        "ping",
        family,
        "-c",
        "1",
        "-W",
        "1",
        &to.to_string(),
    ])
    .is_ok()
}

/// A pod: its namespace, addresses and host-side interface.
pub struct Pod {
    pub ns: TestNetns,
    pub v4: IpAddr,
    pub v6: Option<IpAddr>,
    pub iface: String,
    _servers: Servers,
}

/// Decodes YAML documents, fills defaults and validates them.
pub fn parse(yaml: &str) -> Result<Vec<Resource>> {
    let docs = tortie_model::decode_documents(yaml, "test")
        .map_err(|e| anyhow::anyhow!("fixture does not decode: {e:?}"))?;
    docs.into_iter()
        .map(|d| {
            let mut r = d.resource;
            r.apply_defaults();
            r.validate()
                .map_err(|e| anyhow::anyhow!("fixture is invalid: {e}"))?;
            Ok(r)
        })
        .collect()
}

/// A pod to create with [`Lab::pod`].
pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub v4: &'a str,
    pub v6: Option<&'a str>,
    pub labels: &'a [(&'a str, &'a str)],
    /// Named ports: (name, protocol, port).
    pub ports: &'a [(&'a str, &'a str, u16)],
}

impl<'a> PodSpec<'a> {
    pub fn new(namespace: &'a str, name: &'a str, v4: &'a str) -> PodSpec<'a> {
        PodSpec {
            namespace,
            name,
            v4,
            v6: None,
            labels: &[],
            ports: &[],
        }
    }

    pub fn labels(mut self, labels: &'a [(&'a str, &'a str)]) -> PodSpec<'a> {
        self.labels = labels;
        self
    }
}

/// The node under test. Field order is drop order: pods, then the
/// outside and host namespaces.
pub struct Lab {
    pub pods: BTreeMap<String, Pod>,
    pub outside: TestNetns,
    _outside_servers: Servers,
    _host_servers: Servers,
    pub host: TestNetns,
    pub calc: Calculator,
    pub renderer: PolicyRenderer,
    pub rec: Reconciler<NftSocket>,
    in_sync: bool,
    next_if: usize,
}

/// The allow-all profile of a Kubernetes namespace.
pub fn namespace_profile(ns: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: kns.{ns}}}\nspec:\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n  labelsToApply: {{pcns.projectcalico.org/name: {ns}}}\n"
    )
}

impl Lab {
    pub fn new() -> Result<Lab> {
        let host = namespace("host")?;
        let outside = namespace("outside")?;
        host.set_sysctl("net.ipv4.ip_forward", "1")?;
        host.set_sysctl("net.ipv6.conf.all.forwarding", "1")?;
        host.veth("eth0", &outside, "eth0")?;
        host.ip(&["addr", "add", &format!("{HOST_V4}/24"), "dev", "eth0"])?;
        host.ip(&[
            "addr",
            "add",
            &format!("{HOST_V6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        outside.ip(&["addr", "add", &format!("{OUTSIDE_V4}/24"), "dev", "eth0"])?;
        outside.ip(&[
            "addr",
            "add",
            &format!("{OUTSIDE_V6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        host.ip(&["link", "set", "eth0", "up"])?;
        outside.ip(&["link", "set", "eth0", "up"])?;
        host.ip(&["route", "add", "default", "via", OUTSIDE_V4])?;
        host.ip(&["-6", "route", "add", "default", "via", OUTSIDE_V6])?;
        outside.ip(&["route", "add", "default", "via", HOST_V4])?;
        outside.ip(&["-6", "route", "add", "default", "via", HOST_V6])?;
        let host_servers = Servers::start(&host)?;
        let outside_servers = Servers::start(&outside)?;
        let rec = host.run(|| Reconciler::open(names::table()))??;
        Ok(Lab {
            pods: BTreeMap::new(),
            outside,
            _outside_servers: outside_servers,
            _host_servers: host_servers,
            host,
            calc: Calculator::new(NODE),
            renderer: PolicyRenderer::new(),
            rec,
            in_sync: false,
            next_if: 0,
        })
    }

    /// Puts every resource of a YAML stream into the calculator.
    pub fn put(&mut self, yaml: &str) -> Result<()> {
        for r in parse(yaml)? {
            self.put_resource(r)?;
        }
        Ok(())
    }

    pub fn put_resource(&mut self, r: Resource) -> Result<()> {
        self.calc
            .apply(Update::Put(Box::new(r)))
            .map_err(|e| anyhow::anyhow!("calc refused a resource: {e}"))
    }

    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Result<()> {
        self.calc
            .apply(Update::Delete {
                kind,
                namespace: namespace.into(),
                name: name.into(),
            })
            .map_err(|e| anyhow::anyhow!("calc refused a delete: {e}"))
    }

    fn wep(&self, s: &PodSpec<'_>, iface: &str) -> Result<Resource> {
        let name = workload_endpoint_name(NODE, "k8s", s.name, "eth0");
        let mut meta = ObjectMeta::namespaced(s.namespace, &name);
        meta.labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut nets = vec![format!("{}/32", s.v4)];
        if let Some(v6) = s.v6 {
            nets.push(format!("{v6}/128"));
        }
        let spec = WorkloadEndpointSpec {
            orchestrator: "k8s".into(),
            node: NODE.into(),
            pod: s.name.into(),
            endpoint: "eth0".into(),
            ip_networks: nets,
            profiles: vec![format!("kns.{}", s.namespace)],
            interface_name: iface.into(),
            mac: "ee:ee:ee:ee:ee:01".into(),
            ports: s
                .ports
                .iter()
                .map(|(n, p, port)| WorkloadEndpointPort {
                    name: n.to_string(),
                    protocol: Some(Protocol::named(p)),
                    port: i64::from(*port),
                    ..WorkloadEndpointPort::default()
                })
                .collect(),
            ..WorkloadEndpointSpec::default()
        };
        let mut r = Resource::new(meta, spec);
        r.apply_defaults();
        r.validate()
            .map_err(|e| anyhow::anyhow!("workload {} is invalid: {e}", s.name))?;
        Ok(r)
    }

    /// Creates a pod (namespace, veth, addresses, routes, echo servers)
    /// and puts its WorkloadEndpoint into the calculator.
    pub fn pod(&mut self, s: PodSpec<'_>) -> Result<()> {
        let iface = format!("calitest{:04}", self.next_if);
        self.next_if += 1;
        let ns = namespace(&format!("pod-{}", s.name))?;
        self.host.veth(&iface, &ns, "eth0")?;
        let h = &self.host;
        h.ip(&["link", "set", &iface, "address", "ee:ee:ee:ee:ee:ee"])?;
        h.set_sysctl(&format!("net.ipv4.conf.{iface}.proxy_arp"), "1")?;
        h.set_sysctl(&format!("net.ipv4.neigh.{iface}.proxy_delay"), "0")?;
        h.set_sysctl(&format!("net.ipv6.conf.{iface}.accept_dad"), "0")?;
        h.ip(&["link", "set", &iface, "up"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["addr", "add", &format!("{}/32", s.v4), "dev", "eth0"])?;
        ns.ip(&[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ])?;
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ])?;
        h.ip(&["route", "add", &format!("{}/32", s.v4), "dev", &iface])?;
        if let Some(v6) = s.v6 {
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/128"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            ns.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                "fe80::ecee:eeff:feee:eeee",
                "dev",
                "eth0",
            ])?;
            h.ip(&["-6", "route", "add", &format!("{v6}/128"), "dev", &iface])?;
        }
        let servers = Servers::start(&ns)?;
        let wep = self.wep(&s, &iface)?;
        self.put_resource(wep)?;
        self.pods.insert(
            s.name.to_string(),
            Pod {
                ns,
                v4: s.v4.parse()?,
                v6: s.v6.map(str::parse).transpose()?,
                iface,
                _servers: servers,
            },
        );
        Ok(())
    }

    /// Re-puts a pod's WorkloadEndpoint with new labels.
    pub fn relabel(&mut self, s: PodSpec<'_>) -> Result<()> {
        let iface = self
            .pods
            .get(s.name)
            .context("relabel: no such pod")?
            .iface
            .clone();
        let wep = self.wep(&s, &iface)?;
        self.put_resource(wep)
    }

    /// Takes the calculator's delta, renders it and applies it.
    pub fn sync(&mut self) -> Result<(RenderStats, ApplyReport)> {
        if !self.in_sync {
            self.calc
                .apply(Update::InSync)
                .map_err(|e| anyhow::anyhow!("in sync: {e}"))?;
            self.in_sync = true;
        }
        let delta = self.calc.take_delta().context("calculator not in sync")?;
        let stats = self.renderer.apply(&delta, self.rec.desired_mut())?;
        let report = self.rec.apply()?;
        ensure!(
            report.failures.is_empty(),
            "kernel refused: {:?}\n{}",
            report.failures,
            self.ruleset().unwrap_or_default()
        );
        Ok((stats, report))
    }

    /// `nft list table inet tortie` in the host namespace.
    pub fn ruleset(&self) -> Result<String> {
        self.host.nft(&["list", "table", "inet", "tortie"])
    }

    pub fn pod_ns(&self, pod: &str) -> Result<&TestNetns> {
        Ok(&self.pods.get(pod).context("no such pod")?.ns)
    }

    pub fn v4(&self, pod: &str) -> Result<IpAddr> {
        Ok(self.pods.get(pod).context("no such pod")?.v4)
    }

    pub fn v6(&self, pod: &str) -> Result<IpAddr> {
        self.pods
            .get(pod)
            .context("no such pod")?
            .v6
            .context("pod has no IPv6 address")
    }

    /// TCP from pod `from` to pod `to` (IPv4).
    pub fn tcp(&self, from: &str, to: &str, port: u16) -> Result<bool> {
        tcp(self.pod_ns(from)?, self.v4(to)?, port)
    }

    pub fn udp(&self, from: &str, to: &str, port: u16) -> Result<bool> {
        udp(self.pod_ns(from)?, self.v4(to)?, port)
    }

    pub fn ping(&self, from: &str, to: &str) -> Result<bool> {
        Ok(ping(self.pod_ns(from)?, self.v4(to)?))
    }
}
