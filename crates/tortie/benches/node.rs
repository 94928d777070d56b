//! The node daemon end to end (needs root): a real `tortie node run` in a
//! throwaway "host" namespace, pods attached through the real `tortie-cni`,
//! and reachability decided by real packets.
//!
//! - Programming from nothing: daemon start to ready with 10,000 workload
//!   endpoints and 1,000 policies on the node, against the same start on an
//!   empty node (the baseline, measured in the same run).
//! - Endpoint latency: a pod attached by CNI ADD, from the ADD's start and
//!   from its exit (the WorkloadEndpoint is written just before the exit)
//!   until a TCP connection from the host to the pod succeeds, which needs
//!   both its route and its policy rules. On the loaded node against the
//!   empty node.
//!
//! `TORTIE_BENCH_NODE_ENDPOINTS` / `_POLICIES` / `_PODS` change the sizes
//! (defaults 10,000 / 1,000 / 10).

#[path = "../tests/cni_support/mod.rs"]
mod cni_support;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cni_support::{Attach, Lab, Netns, Plugin, result_address, tortie_binary};
use serde_json::json;
use tortie_model::{Kind, Resource};
use tortie_testkit::run_in as in_netns;

const NODE: &str = "bench1";
const NAMESPACE: &str = "bench";
const PORT: u16 = 7070;
/// Bound of one connection attempt: the resolution of the latency figures
/// (a reachable pod on this host answers in well under 0.1 ms; a dropped
/// SYN would otherwise wait for the kernel's 1 s retransmission).
const PROBE_TIMEOUT: Duration = Duration::from_millis(2);
/// Bound of one wait (ready, reachable).
const WAIT: Duration = Duration::from_secs(300);

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running daemon, killed (by its PID) on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(lab: &Lab, log: &str) -> Result<Daemon> {
        let log = File::create(lab.dir.path().join(log))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.host.name])
            .arg(tortie_binary())
            .args(["--datastore", &lab.datastore, "node", "run", "--name", NODE])
            // Extra `node run` flags, e.g. TORTIE_BENCH_NODE_ARGS=--no-fast-path.
            .args(
                std::env::var("TORTIE_BENCH_NODE_ARGS")
                    .ok()
                    .iter()
                    .flat_map(|a| a.split_whitespace()),
            )
            .arg("--mtu-file")
            .arg(lab.dir.path().join("mtu"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tortie node run")?;
        Ok(Daemon { child })
    }

    /// Waits until the daemon reports ready; the time it took.
    fn wait_ready(&self, lab: &Lab, started: Instant) -> Result<Duration> {
        loop {
            let ok = lab
                .host
                .command(tortie_binary())
                .args(["node", "status", "--ready"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(started.elapsed());
            }
            if started.elapsed() > WAIT {
                bail!("the daemon was not ready within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A resource of `kind` from its JSON form.
fn resource(kind: Kind, value: serde_json::Value) -> Result<Resource> {
    Ok(Resource::from_json(kind, &serde_json::to_vec(&value)?)?)
}

fn workload(i: usize) -> Result<Resource> {
    resource(
        Kind::WorkloadEndpoint,
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": format!("{NODE}-k8s-load{i}-eth0"),
                "namespace": NAMESPACE,
                "labels": {
                    "group": format!("g{}", i % 100),
                    "peer": format!("p{}", i % 1000),
                    "projectcalico.org/namespace": NAMESPACE,
                    "projectcalico.org/orchestrator": "k8s",
                },
            },
            "spec": {
                "orchestrator": "k8s",
                "node": NODE,
                "pod": format!("load{i}"),
                "endpoint": "eth0",
                "interfaceName": format!("calild{i:07}"),
                "ipNetworks": [format!("10.200.{}.{}/32", i / 250, i % 250 + 1)],
                "profiles": [format!("kns.{NAMESPACE}")],
            },
        }),
    )
}

fn policy(i: usize) -> Result<Resource> {
    resource(
        Kind::NetworkPolicy,
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkPolicy",
            "metadata": {"name": format!("load-{i}"), "namespace": NAMESPACE},
            "spec": {
                "order": i,
                "selector": format!("group == 'g{}'", i % 100),
                "ingress": [
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": format!("peer == 'p{i}'")},
                     "destination": {"ports": [8000 + (i % 1000)]}},
                    {"action": "Deny", "source": {"nets": [format!("198.18.{}.0/24", i % 250)]}}
                ],
                "egress": [
                    {"action": "Allow", "protocol": "UDP",
                     "destination": {"selector": format!("peer == 'p{}'", (i + 1) % 1000), "ports": [53]}}
                ]
            }
        }),
    )
}

/// The load: `endpoints` workloads on the node (interfaces that do not
/// exist, so their rules are programmed and their routes wait), and
/// `policies` policies over them, each with selector-based rules.
fn load(lab: &Lab, endpoints: usize, policies: usize) -> Result<()> {
    let started = Instant::now();
    lab.block_on(async {
        for i in 0..endpoints {
            lab.client.create(workload(i)?).await?;
        }
        for i in 0..policies {
            lab.client.create(policy(i)?).await?;
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "  wrote {endpoints} endpoints and {policies} policies in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Attaches `pods` pods through CNI; for each, the time from ADD start and
/// from ADD exit until the host reaches it over TCP.
fn attach_and_time(lab: &Lab, pods: usize, tag: &str) -> Result<Vec<(Duration, Duration)>> {
    let conf = lab.conf("1.0.0", json!({"nodename": NODE, "mtu": 1500}));
    let mut out = Vec::new();
    let mut keep = Vec::new();
    for i in 0..pods {
        let ns = Netns::create(&format!("{tag}{i}"))?;
        // The kernel completes handshakes into the backlog: no accept
        // needed for a connect to succeed.
        let listener = in_netns(&ns.name, || Ok(TcpListener::bind(("0.0.0.0", PORT))?))?;
        let attach = Attach::k8s(&format!("{tag}{i}"), &ns, NAMESPACE, &format!("{tag}{i}"));
        let started = Instant::now();
        let result = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
        let exited = Instant::now();
        let ip = result_address(&result, true).context("no IPv4 address")?;
        let ip = ip.split('/').next().unwrap_or(&ip).to_string();
        let addr: SocketAddr = format!("{ip}:{PORT}").parse()?;
        let live = in_netns(&lab.host.name, || {
            loop {
                if TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
                    return Ok(Instant::now());
                }
                if started.elapsed() > WAIT {
                    bail!("pod {ip} not reachable within {WAIT:?}");
                }
            }
        })?;
        out.push((live - started, live - exited));
        keep.push((listener, ns));
    }
    // The namespaces (and their veths) go now; the endpoints stay in the
    // datastore, which is thrown away with the lab.
    Ok(out)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Figures {
    ready: Duration,
    from_start: Duration,
    from_exit: Duration,
}

fn scenario(endpoints: usize, policies: usize, pods: usize, tag: &str) -> Result<Figures> {
    let lab = Lab::new()?;
    lab.pools(&[("bench-pool", "10.96.0.0/16", 26)])?;
    lab.block_on(async {
        let profile = resource(
            Kind::Profile,
            json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "Profile",
                "metadata": {"name": format!("kns.{NAMESPACE}")},
                "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}
            }),
        )?;
        lab.client.create(profile).await?;
        anyhow::Ok(())
    })?;
    load(&lab, endpoints, policies)?;
    let started = Instant::now();
    let daemon = Daemon::start(&lab, &format!("{tag}.log"))?;
    let ready = daemon.wait_ready(&lab, started)?;
    let times = attach_and_time(&lab, pods, tag)?;
    Ok(Figures {
        ready,
        from_start: median(times.iter().map(|t| t.0).collect()),
        from_exit: median(times.iter().map(|t| t.1).collect()),
    })
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let endpoints = size("TORTIE_BENCH_NODE_ENDPOINTS", 10_000);
    let policies = size("TORTIE_BENCH_NODE_POLICIES", 1_000);
    let pods = size("TORTIE_BENCH_NODE_PODS", 10);
    eprintln!("node daemon: empty node (baseline)");
    let empty = scenario(0, 0, pods, "e")?;
    eprintln!("node daemon: {endpoints} endpoints, {policies} policies");
    let loaded = scenario(endpoints, policies, pods, "l")?;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!();
    println!(
        "{:<52} {:>12} {:>14} {:>8}",
        "node daemon (median of pods)", "empty node", "loaded node", "ratio"
    );
    println!(
        "{:<52} {:>10.0}ms {:>12.0}ms {:>8.1}",
        "start to ready (programming from nothing)",
        ms(empty.ready),
        ms(loaded.ready),
        ratio(loaded.ready, empty.ready)
    );
    println!(
        "{:<52} {:>10.1}ms {:>12.1}ms {:>8.2}",
        "CNI ADD start to pod reachable",
        ms(empty.from_start),
        ms(loaded.from_start),
        ratio(loaded.from_start, empty.from_start)
    );
    println!(
        "{:<52} {:>10.1}ms {:>12.1}ms {:>8.2}",
        "CNI ADD exit (endpoint written) to pod reachable",
        ms(empty.from_exit),
        ms(loaded.from_exit),
        ratio(loaded.from_exit, empty.from_exit)
    );
    Ok(())
}
