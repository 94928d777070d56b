//! Concurrency and crashes (root): many plugin processes at once on one
//! node and on three nodes sharing a datastore, and plugins SIGKILLed at
//! random points followed by `tortie ipam check` / `ipam release
//! --from-report`. The scenarios take a lab, so they run on the embedded
//! datastore and on a real etcd cluster alike.
//!
//! Invariants checked: every ADD succeeds; every address is unique and
//! inside its pool; every allocation lies in a block affine to the node
//! that made it; after crashes and the release of what `ipam check`
//! reports, no leak remains, no address is held twice, and new ADDs work.

mod cni_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cni_support::{Attach, Backend, Host, Lab, Netns, Plugin, result_address};
use ipnet::IpNet;
use serde_json::{Value, json};
use tortie_model::endpoint::WorkloadEndpointSpec;

const POOL: &str = "10.80.0.0/16";

/// One node of a scenario: its "host" namespace, name and lock file.
struct Node {
    host: Host,
    name: String,
    conf: Value,
}

fn nodes(lab: &Lab, count: usize) -> Result<Vec<Node>> {
    (0..count)
        .map(|i| {
            let host = lab.new_host(&format!("node{i}"))?;
            let name = format!("node-{i}");
            let lock = lab.dir.path().join(format!("ipam-{i}.lock"));
            let conf = lab.conf(
                "1.0.0",
                json!({"nodename": name, "ipam_lock_file": lock, "log_level": "warning"}),
            );
            Ok(Node { host, name, conf })
        })
        .collect()
}

/// One container added by a scenario.
struct Added {
    /// Keeps the container's namespace alive until the scenario ends.
    _netns: Netns,
    attach: Attach,
    node: usize,
    address: IpAddr,
}

/// Runs `total` ADDs spread over `nodes`, `parallel` at a time; returns
/// what was added (all of them, or an error naming the first failure).
fn add_many(lab: &Lab, nodes: &[Node], total: usize, parallel: usize) -> Result<Vec<Added>> {
    let next = AtomicUsize::new(0);
    let added = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let node = i % nodes.len();
                    let outcome = (|| {
                        let netns = Netns::create("s")?;
                        let attach = Attach::k8s(
                            &format!("stress{i:04}"),
                            &netns,
                            "stress",
                            &format!("p{i}"),
                        );
                        let result = lab
                            .run_in(
                                &nodes[node].host,
                                Plugin::Cni,
                                "ADD",
                                &attach,
                                &nodes[node].conf,
                            )?
                            .ok()?;
                        let address = result_address(&result, true)
                            .context("an address")?
                            .parse()?;
                        anyhow::Ok(Added {
                            _netns: netns,
                            attach,
                            node,
                            address,
                        })
                    })();
                    match outcome {
                        Ok(a) => added.lock().expect("not poisoned").push(a),
                        Err(e) => failures
                            .lock()
                            .expect("not poisoned")
                            .push(format!("ADD {i}: {e:#}")),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("not poisoned");
    ensure!(
        failures.is_empty(),
        "{} ADDs failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    Ok(added.into_inner().expect("not poisoned"))
}

/// DELs everything, `parallel` at a time.
fn del_many(lab: &Lab, nodes: &[Node], added: &[Added], parallel: usize) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(a) = added.get(i) else { break };
                    let node = &nodes[a.node];
                    let outcome = lab
                        .run_in(&node.host, Plugin::Cni, "DEL", &a.attach, &node.conf)
                        .and_then(|o| o.ok());
                    if let Err(e) = outcome {
                        failures
                            .lock()
                            .expect("not poisoned")
                            .push(format!("DEL {i}: {e:#}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("not poisoned");
    ensure!(failures.is_empty(), "{failures:?}");
    Ok(())
}

/// Addresses unique and in the pool; each in a block affine to its node.
fn check_allocations(lab: &Lab, nodes: &[Node], added: &[Added]) -> Result<()> {
    let pool: IpNet = POOL.parse()?;
    let mut seen = BTreeSet::new();
    for a in added {
        ensure!(seen.insert(a.address), "{} was handed out twice", a.address);
        ensure!(pool.contains(&a.address), "{} is outside {POOL}", a.address);
    }
    let allocations = lab.allocations()?;
    ensure!(
        allocations.len() == added.len(),
        "{} allocations for {} ADDs",
        allocations.len(),
        added.len()
    );
    for a in added {
        let stored = allocations.get(&a.address).context("allocated")?;
        let node = &nodes[a.node].name;
        ensure!(stored.attrs.get("node") == Some(node), "{stored:?}");
        ensure!(
            stored.block_affinity.as_deref() == Some(&format!("host:{node}")),
            "{} lies in {} owned by {:?}, not {node}",
            a.address,
            stored.block,
            stored.block_affinity
        );
    }
    let weps = lab.workload_endpoints()?;
    ensure!(weps.len() == added.len());
    for wep in &weps {
        let spec = wep.spec::<WorkloadEndpointSpec>().context("wep")?;
        let ip: IpAddr = spec.ip_networks[0].trim_end_matches("/32").parse()?;
        let a = added
            .iter()
            .find(|a| a.address == ip)
            .context("a WEP for an added address")?;
        ensure!(spec.node == nodes[a.node].name, "{spec:?}");
    }
    Ok(())
}

fn concurrency_scenario(lab: &Lab, node_count: usize, total: usize, parallel: usize) -> Result<()> {
    lab.pools(&[("stress", POOL, 26)])?;
    let nodes = nodes(lab, node_count)?;
    let started = std::time::Instant::now();
    let added = add_many(lab, &nodes, total, parallel)?;
    eprintln!(
        "{total} ADDs on {node_count} node(s), {parallel} at a time: {:?}",
        started.elapsed()
    );
    check_allocations(lab, &nodes, &added)?;
    del_many(lab, &nodes, &added, parallel)?;
    ensure!(lab.allocations()?.is_empty(), "DEL released everything");
    ensure!(lab.workload_endpoints()?.is_empty());
    Ok(())
}

#[test]
fn root_200_adds_16_at_a_time_on_one_node() -> Result<()> {
    concurrency_scenario(&Lab::new()?, 1, 200, 16)
}

#[test]
fn root_adds_on_three_nodes_sharing_a_datastore() -> Result<()> {
    concurrency_scenario(&Lab::new()?, 3, 150, 16)
}

/// A small deterministic generator (no dependency needed for test jitter).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn tortie_cli(lab: &Lab, args: &[&str]) -> Result<String> {
    let mut cmd = std::process::Command::new(cni_support::tortie_binary());
    cmd.env_clear()
        .arg("--datastore")
        .arg(&lab.datastore)
        .args(args);
    let out = cni_support::run_bounded(&mut cmd, b"", Duration::from_secs(120))?;
    ensure!(
        out.status == Some(0),
        "tortie {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

fn crash_scenario(lab: &Lab) -> Result<()> {
    lab.pools(&[("crash", POOL, 28)])?;
    let nodes = nodes(lab, 1)?;
    let node = &nodes[0];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos() as u64
        | 1;
    // Kill points spread over a whole ADD: time one first.
    let probe_ns = Netns::create("probe")?;
    let probe = Attach::k8s("probe", &probe_ns, "crash", "probe");
    let started = std::time::Instant::now();
    lab.run_in(&node.host, Plugin::Cni, "ADD", &probe, &node.conf)?
        .ok()?;
    let span_ms = (started.elapsed().as_millis() as u64 * 6 / 5).max(5);
    lab.run_in(&node.host, Plugin::Cni, "DEL", &probe, &node.conf)?
        .ok()?;
    eprintln!("crash scenario seed {seed}, kills within {span_ms} ms");
    let rng = Mutex::new(XorShift(seed));
    let next = AtomicUsize::new(0);
    let containers = Mutex::new(Vec::new());
    let killed = AtomicUsize::new(0);
    let one = |i: usize| -> Result<()> {
        let netns = Netns::create("k")?;
        let attach = Attach::k8s(&format!("crash{i:03}"), &netns, "crash", &format!("p{i}"));
        let delay = rng.lock().expect("not poisoned").next() % span_ms;
        let mut cmd = lab.plugin_command(&node.host, Plugin::Cni, "ADD", &attach);
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(&serde_json::to_vec(&node.conf)?);
        }
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL the child we started (by its PID), wherever it is.
        let was_killed = child.try_wait()?.is_none();
        if was_killed {
            child.kill()?;
            killed.fetch_add(1, Ordering::Relaxed);
        }
        child.wait()?;
        // A killed ADD's sandbox is torn down without a DEL (the worst
        // case: the runtime died too); its namespace goes, and with it the
        // veth and its routes. Only the datastore keeps what the plugin
        // wrote.
        let netns = if was_killed { None } else { Some(netns) };
        containers
            .lock()
            .expect("not poisoned")
            .push((netns, attach));
        Ok(())
    };
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= 100 {
                        break;
                    }
                    if let Err(e) = one(i) {
                        failures
                            .lock()
                            .expect("not poisoned")
                            .push(format!("{i}: {e:#}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("not poisoned");
    ensure!(failures.is_empty(), "{failures:?}");
    let containers = containers.into_inner().expect("not poisoned");
    eprintln!("{} of 100 ADDs killed", killed.load(Ordering::Relaxed));

    // Calico's leak procedure: lock, check with a report, release, unlock.
    let report = lab.dir.path().join("report.json");
    let report_path = report.to_str().context("path")?;
    tortie_cli(lab, &["datastore", "migrate", "lock"])?;
    let text = tortie_cli(lab, &["ipam", "check", "-o", report_path])?;
    eprintln!("{text}");
    tortie_cli(lab, &["ipam", "release", "--from-report", report_path])?;
    tortie_cli(lab, &["datastore", "migrate", "unlock"])?;

    let ipam = tortie_ipam::Ipam::new(lab.client.clone());
    let (findings, _) = lab.block_on(ipam.check())?;
    ensure!(
        findings.leaked.is_empty(),
        "leaks remain: {:?}",
        findings.leaked
    );
    ensure!(
        findings.leaked_handles.is_empty(),
        "{:?}",
        findings.leaked_handles
    );
    ensure!(
        findings.multiple_owners.is_empty(),
        "{:?}",
        findings.multiple_owners
    );
    ensure!(
        findings.not_allocated.is_empty(),
        "in use but not allocated: {:?}",
        findings.not_allocated
    );
    if findings.problem_count() > 0 {
        eprintln!(
            "remaining findings (not leaks): handle mismatches {:?}, affinity problems {:?}",
            findings.handle_mismatches, findings.affinity_problems
        );
    }
    // Every remaining allocation belongs to an endpoint of its own handle.
    let allocations = lab.allocations()?;
    let mut by_ip = BTreeMap::new();
    for wep in lab.workload_endpoints()? {
        let spec = wep.spec::<WorkloadEndpointSpec>().context("wep")?;
        for net in &spec.ip_networks {
            let ip: IpAddr = net.split('/').next().context("address")?.parse()?;
            if by_ip.insert(ip, spec.container_id.clone()).is_some() {
                bail!("{ip} is listed by two endpoints");
            }
        }
    }
    for (ip, a) in &allocations {
        let owner = by_ip
            .get(ip)
            .with_context(|| format!("{ip} ({a:?}) has no endpoint"))?;
        ensure!(
            a.handle == format!("tnet.{owner}"),
            "{ip}: handle {} vs container {owner}",
            a.handle
        );
    }

    // Later ADDs succeed, and the runtime's DELs (also for the sandboxes
    // it lost) clean everything.
    let fresh = add_many(lab, &nodes, 10, 4)?;
    for (_netns, attach) in &containers {
        lab.run_in(&node.host, Plugin::Cni, "DEL", attach, &node.conf)?
            .ok()?;
    }
    del_many(lab, &nodes, &fresh, 4)?;
    ensure!(lab.allocations()?.is_empty(), "{:?}", lab.allocations()?);
    ensure!(lab.workload_endpoints()?.is_empty());
    let links = node.host.link_names()?;
    ensure!(links.iter().all(|l| !l.starts_with("cali")), "{links:?}");
    Ok(())
}

#[test]
fn root_sigkill_during_adds_then_ipam_check_and_release() -> Result<()> {
    crash_scenario(&Lab::new()?)
}

#[test]
fn root_etcd_add_del_concurrency_and_crashes() -> Result<()> {
    // Each scenario gets a fresh cluster (they create overlapping pools).
    {
        let cluster = tortie_testkit::EtcdCluster::start(1)?;
        let lab = Lab::with_backend(Backend::Etcd(Box::new(cluster.spec())))?;
        lab.pools(&[("pool4", "10.77.0.0/16", 26)])?;
        let ns = Netns::create("c")?;
        let conf = lab.conf("1.0.0", json!({}));
        let attach = Attach::k8s("etcd0123", &ns, "ns1", "p1");
        let result = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
        lab.run(
            Plugin::Cni,
            "CHECK",
            &attach,
            &Lab::with_prev(&conf, &result),
        )?
        .ok()?;
        ensure!(lab.workload_endpoints()?.len() == 1);
        lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
        ensure!(lab.allocations()?.is_empty() && lab.workload_endpoints()?.is_empty());
    }
    {
        let cluster = tortie_testkit::EtcdCluster::start(1)?;
        concurrency_scenario(
            &Lab::with_backend(Backend::Etcd(Box::new(cluster.spec())))?,
            3,
            60,
            16,
        )?;
    }
    let cluster = tortie_testkit::EtcdCluster::start(1)?;
    crash_scenario(&Lab::with_backend(Backend::Etcd(Box::new(cluster.spec())))?)
}
