//! `lab up`, `lab down` and `lab status`: the life of a whole lab.
//!
//! `up` is undone step by step if any step fails, and `down` works from the
//! state file and, for anything a crashed `up` never recorded, from the
//! namespace prefix. Daemons are stopped by the PIDs the lab recorded —
//! never by name.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::net::{self, Attachment};
use crate::state::{
    LabState, NodeState, StateLock, lab_dir, mtu_file, netns_prefix, validate_name,
};
use crate::store::{self, EtcdState};

/// How long `up` waits for every node daemon to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `down` gives a daemon to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Lab name (1-12 lower-case letters, digits, '-')
    pub name: String,
    /// Number of nodes
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Cross-node networking: vxlan
    #[arg(long, default_value = "vxlan")]
    pub mode: String,
    /// Datastore for the lab (default: an embedded file in the lab's
    /// directory); it must be reachable from the node namespaces
    #[arg(long, value_name = "URL", conflicts_with = "etcd")]
    pub datastore: Option<String>,
    /// Run a real etcd member in the lab's data-centre network and use it
    /// as the datastore (data on /dev/shm, removed by `lab down`)
    #[arg(long)]
    pub etcd: bool,
    /// The data-centre subnet the nodes sit on
    #[arg(long, default_value = "172.30.0.0/24")]
    pub subnet: String,
    /// The pod IP pool
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: String,
    /// Dual-stack: an IPv6 pool too, IPv6 node addresses, and pods with an
    /// address of each family
    #[arg(long)]
    pub ipv6: bool,
    /// The IPv6 data-centre subnet (with --ipv6)
    #[arg(long, default_value = "fd30::/64", requires = "ipv6")]
    pub subnet6: String,
    /// The IPv6 pod IP pool (with --ipv6)
    #[arg(long, default_value = "fd00:10:244::/48", requires = "ipv6")]
    pub pod_cidr6: String,
    /// Run the node daemons without the established-flow fast path, so
    /// every packet takes the nodes' stacks (for comparison)
    #[arg(long)]
    pub no_fast_path: bool,
    /// MTU of the data-centre network (1280-9000). Pods get it less the
    /// VXLAN overhead: 1550 gives them a full 1500
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1280..=9000))]
    pub mtu: u32,
}

/// The IPv6 half of a dual-stack lab, parsed.
struct Ipv6Plan {
    subnet: Ipv6Net,
    pod_cidr: Ipv6Net,
}

impl Ipv6Plan {
    fn parse(args: &UpArgs) -> Result<Option<Ipv6Plan>> {
        if !args.ipv6 {
            return Ok(None);
        }
        let net = |text: &str, flag: &str| -> Result<Ipv6Net> {
            text.parse::<Ipv6Net>().map(|n| n.trunc()).map_err(|_| {
                anyhow::anyhow!("{flag} {text:?}: expected an IPv6 CIDR, e.g. fd30::/64")
            })
        };
        let plan = Ipv6Plan {
            subnet: net(&args.subnet6, "--subnet6")?,
            pod_cidr: net(&args.pod_cidr6, "--pod-cidr6")?,
        };
        if plan.subnet.prefix_len() > 120 {
            bail!("--subnet6 {}: use a prefix of /120 or shorter", plan.subnet);
        }
        if plan.pod_cidr.prefix_len() > 122 {
            bail!(
                "--pod-cidr6 {}: the pool's blocks are /122, so use a prefix of /122 or shorter",
                plan.pod_cidr
            );
        }
        Ok(Some(plan))
    }

    /// The bridge's address: `::1` of the subnet.
    fn gateway(&self) -> std::net::Ipv6Addr {
        (u128::from(self.subnet.network()) + 1).into()
    }

    /// Node `index`'s address: the decimal digits of its IPv4 host number
    /// (10 + index) read as hex, so node-1 (`172.30.0.11`) is `fd30::11`.
    /// A lab has at most 50 nodes and `--subnet6` is at most a /120, so
    /// the address (at most `::60`) is always inside the subnet.
    fn node_ip(&self, index: usize) -> String {
        let number = 10 + index as u128;
        let host = number / 10 * 16 + number % 10;
        let ip = std::net::Ipv6Addr::from(u128::from(self.subnet.network()) + host);
        format!("{ip}/{}", self.subnet.prefix_len())
    }
}

/// The lab's own CNI plugin links (`bin/tortie-cni`, `bin/tortie-ipam`).
pub fn cni_bin_dir(name: &str) -> std::path::PathBuf {
    lab_dir(name).join("bin")
}

fn link_plugins(name: &str) -> Result<()> {
    let exe = std::env::current_exe().context("locating the tortie binary")?;
    let bin = cni_bin_dir(name);
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for plugin in ["tortie-cni", "tortie-ipam"] {
        let link = bin.join(plugin);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

fn node_ip(subnet: &Ipv4Net, index: usize) -> Result<String> {
    let host = subnet
        .hosts()
        .nth(9 + index)
        .with_context(|| format!("subnet {subnet} is too small for node {index}"))?;
    Ok(format!("{host}/{}", subnet.prefix_len()))
}

/// Writes the lab's IP pools, `lab-pool` and, in a dual-stack lab,
/// `lab-pool-v6` (the datastore is created on first write).
fn create_pools(lab: &LabState, pod_cidr: &str, v6: Option<&Ipv6Plan>) -> Result<()> {
    let vxlan = vxlan_mode(&lab.mode)?;
    let pool = |name: &str, spec: String| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{{spec}, vxlanMode: {vxlan}, natOutgoing: true}}\n"
        )
    };
    let mut yaml = pool("lab-pool", format!("cidr: {pod_cidr}"));
    if let Some(v6) = v6 {
        yaml.push_str("---\n");
        yaml.push_str(&pool(
            "lab-pool-v6",
            format!("cidr: '{}', blockSize: 122", v6.pod_cidr),
        ));
    }
    let netns = lab.datastore_netns();
    store::with_client(&lab.datastore, netns.as_deref(), |client| async move {
        client.ensure_initialized().await?;
        for d in tortie_model::decode_documents(&yaml, "lab pool")
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
        {
            client.apply(d.resource).await?;
        }
        Ok(())
    })
}

/// The pools' `vxlanMode` for `--mode`.
fn vxlan_mode(mode: &str) -> Result<&'static str> {
    match mode {
        "vxlan" => Ok("Always"),
        other => bail!(
            "--mode {other:?}: the lab supports vxlan (BGP mode arrives with the BGP speaker)"
        ),
    }
}

/// Starts `tortie node run` inside a node's namespace, detached from this
/// process (its own process group), logging to the lab directory.
fn start_daemon(lab: &LabState, node: &NodeState) -> Result<u32> {
    let exe = std::env::current_exe().context("locating the tortie binary")?;
    let log_path = lab_dir(&lab.name).join(format!("{}.log", node.name));
    // Appended to, so a restarted daemon's log follows the previous one's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &node.netns])
        .arg(&exe)
        .args([
            "--datastore",
            &lab.datastore,
            "node",
            "run",
            "--name",
            &node.name,
        ])
        .arg("--mtu-file")
        .arg(mtu_file(&lab.name, &node.name));
    if let Some(ip6) = &node.ip6 {
        command.args(["--ip6", ip6]);
    }
    if lab.no_fast_path {
        command.arg("--no-fast-path");
    }
    let child = command
        .args(["--log-level", "info"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting tortie node run")?;
    Ok(child.id())
}

/// Waits until the node daemon answers ready inside its namespace and
/// has written the pod MTU.
fn wait_ready(lab: &LabState, node: &NodeState) -> Result<()> {
    let exe = std::env::current_exe().context("locating the tortie binary")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mtu = mtu_file(&lab.name, &node.name);
    loop {
        let ok = mtu.exists()
            && Command::new("ip")
                .args(["netns", "exec", &node.netns])
                .arg(&exe)
                .args(["node", "status", "--ready"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if node.pid.is_some_and(|pid| !process_alive(pid)) {
            bail!(
                "the daemon of {} exited; see {}",
                node.name,
                lab_dir(&lab.name)
                    .join(format!("{}.log", node.name))
                    .display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not become ready within {READY_TIMEOUT:?}",
                node.name
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True while PID names a running (not zombie) process.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Kills a recorded process at once and waits (bounded) until it is gone.
pub fn kill_and_wait(pid: u32) {
    signal(pid, "-KILL");
    let deadline = Instant::now() + STOP_GRACE;
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a recorded daemon: SIGTERM, then SIGKILL after the grace period.
fn stop_daemon(pid: u32) {
    if !process_alive(pid) {
        return;
    }
    signal(pid, "-TERM");
    let deadline = Instant::now() + STOP_GRACE;
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if process_alive(pid) {
        signal(pid, "-KILL");
    }
}

pub fn up(args: &UpArgs) -> Result<ExitCode> {
    validate_name(&args.name)?;
    if args.nodes == 0 || args.nodes > 50 {
        bail!("--nodes {}: a lab has 1 to 50 nodes", args.nodes);
    }
    let subnet: Ipv4Net = args
        .subnet
        .parse()
        .with_context(|| format!("--subnet {:?}", args.subnet))?;
    vxlan_mode(&args.mode)?;
    let v6 = Ipv6Plan::parse(args)?;
    if LabState::exists(&args.name)
        || !net::netns_with_prefix(&netns_prefix(&args.name))?.is_empty()
    {
        bail!(
            "lab {:?} already exists; remove it first with: tortie lab down {}",
            args.name,
            args.name
        );
    }
    let dir = lab_dir(&args.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = StateLock::acquire(&args.name)?;
    let gateway = subnet
        .hosts()
        .next()
        .context("the subnet has no addresses")?;
    let etcd = args
        .etcd
        .then(|| EtcdState::new(&args.name, &gateway.to_string()));
    let datastore = match (&args.datastore, &etcd) {
        (Some(url), _) => url.clone(),
        (None, Some(etcd)) => format!("etcd:{}", etcd.client_url),
        (None, None) => format!(
            "embedded:{}",
            lab_dir(&args.name).join("datastore.db").display()
        ),
    };
    let prefix = netns_prefix(&args.name);
    let mut lab = LabState {
        name: args.name.clone(),
        datastore,
        mode: args.mode.clone(),
        subnet: subnet.to_string(),
        subnet6: v6.as_ref().map(|v6| v6.subnet.to_string()),
        nodes: Vec::new(),
        pods: Vec::new(),
        etcd,
        no_fast_path: args.no_fast_path,
    };
    let result = (|| -> Result<()> {
        link_plugins(&lab.name)?;
        let dc = format!("{prefix}dc");
        let mut gateways = vec![format!("{gateway}/{}", subnet.prefix_len())];
        if let Some(v6) = &v6 {
            gateways.push(format!("{}/{}", v6.gateway(), v6.subnet.prefix_len()));
        }
        net::create_dc(&dc, &gateways, args.mtu)?;
        lab.save()?;
        if let Some(etcd) = lab.etcd.as_mut() {
            eprintln!("Starting etcd at {} in namespace {dc}", etcd.client_url);
            let started = etcd.start(&lab.name, &dc);
            lab.save()?;
            started?;
        }
        let pools = match &v6 {
            Some(v6) => format!("{} and {}", args.pod_cidr, v6.pod_cidr),
            None => args.pod_cidr.clone(),
        };
        eprintln!(
            "Creating the datastore and IP pools {pools} ({})",
            lab.datastore
        );
        create_pools(&lab, &args.pod_cidr, v6.as_ref())?;
        for i in 1..=args.nodes {
            let node = NodeState {
                name: format!("node-{i}"),
                netns: format!("{prefix}n{i}"),
                ip: node_ip(&subnet, i)?,
                ip6: v6.as_ref().map(|v6| v6.node_ip(i)),
                pid: None,
            };
            let mut addresses = vec![Attachment {
                cidr: node.ip.clone(),
                gateway: gateway.to_string(),
            }];
            if let (Some(v6), Some(ip6)) = (&v6, &node.ip6) {
                addresses.push(Attachment {
                    cidr: ip6.clone(),
                    gateway: v6.gateway().to_string(),
                });
            }
            let ips: Vec<&str> = addresses.iter().map(|a| a.cidr.as_str()).collect();
            eprintln!(
                "Creating {} ({}) in namespace {}",
                node.name,
                ips.join(", "),
                node.netns
            );
            net::create_node(&dc, &node.netns, &format!("n{i}"), &addresses, args.mtu)?;
            lab.nodes.push(node);
            lab.save()?;
        }
        for i in 0..lab.nodes.len() {
            let pid = start_daemon(&lab, &lab.nodes[i])?;
            lab.nodes[i].pid = Some(pid);
            lab.save()?;
        }
        for node in &lab.nodes {
            eprintln!("Waiting for {} to be ready", node.name);
            wait_ready(&lab, node)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!(
            "Lab {} could not be created; removing what was built",
            lab.name
        );
        let _ = lab.save();
        teardown(&lab.name);
        return Err(e);
    }
    let subnets = match &lab.subnet6 {
        Some(subnet6) => format!("{subnet} and {subnet6}"),
        None => subnet.to_string(),
    };
    println!(
        "Lab {} is up: {} nodes on {subnets} (datastore {})",
        lab.name,
        lab.nodes.len(),
        lab.datastore
    );
    println!(
        "Add pods with: tortie lab pod add {} node-1 default/web --labels app=web",
        lab.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes everything of lab `name`; errors are reported, not fatal.
fn teardown(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(lab) = LabState::load(name) {
        for node in &lab.nodes {
            if let Some(pid) = node.pid {
                stop_daemon(pid);
            }
        }
        if let Some(mut etcd) = lab.etcd {
            problems.extend(etcd.remove());
        }
    }
    // A crashed `up` may have started etcd without recording it.
    problems.extend(EtcdState::new(name, "").remove());
    match net::netns_with_prefix(&netns_prefix(name)) {
        Ok(all) => {
            for ns in all {
                if let Err(e) = net::del_netns(&ns) {
                    problems.push(e.to_string());
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    let dir = lab_dir(name);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        problems.push(format!("removing {}: {e}", dir.display()));
    }
    problems
}

/// Stops one node's daemon (SIGTERM, as an upgrade or crash-loop would)
/// and starts it again, waiting until it is ready. What it programmed
/// stays in the kernel meanwhile; the new daemon takes it over.
pub fn restart(name: &str, node_name: &str) -> Result<ExitCode> {
    validate_name(name)?;
    let _lock = StateLock::acquire(name)?;
    let mut lab = LabState::load(name)?;
    if node_name == "etcd" {
        return restart_etcd(&mut lab);
    }
    let Some(index) = lab.nodes.iter().position(|n| n.name == node_name) else {
        bail!(
            "lab {name} has no node {node_name:?}; its nodes: {}",
            lab.nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if let Some(pid) = lab.nodes[index].pid.take() {
        eprintln!("Stopping tortie node run on {node_name} (pid {pid})");
        stop_daemon(pid);
    }
    lab.save()?;
    let pid = start_daemon(&lab, &lab.nodes[index])?;
    lab.nodes[index].pid = Some(pid);
    lab.save()?;
    eprintln!("Started tortie node run on {node_name} (pid {pid}); waiting until ready");
    wait_ready(&lab, &lab.nodes[index])?;
    println!("Node {node_name} restarted");
    Ok(ExitCode::SUCCESS)
}

/// Kills the lab's etcd member (SIGKILL, as a crash would) and starts it
/// again from its data directory; the node daemons ride it out.
fn restart_etcd(lab: &mut LabState) -> Result<ExitCode> {
    let netns = lab.datastore_netns();
    let (Some(etcd), Some(netns)) = (lab.etcd.as_mut(), netns) else {
        bail!(
            "lab {} has no etcd of its own (create one with tortie lab up --etcd)",
            lab.name
        );
    };
    eprintln!("Killing etcd (pid {:?})", etcd.pid);
    etcd.kill();
    let started = etcd.start(&lab.name, &netns);
    lab.save()?;
    started?;
    println!("etcd restarted");
    Ok(ExitCode::SUCCESS)
}

/// Runs `tortie ARGS` against the lab's datastore, from where it can be
/// reached (inside the data-centre namespace for a lab-hosted etcd).
pub fn ctl(name: &str, args: &[String]) -> Result<ExitCode> {
    let lab = LabState::load(name)?;
    let exe = std::env::current_exe().context("locating the tortie binary")?;
    let mut cmd = match lab.datastore_netns() {
        Some(netns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &netns]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let status = cmd
        .args(["--datastore", &lab.datastore])
        .args(args)
        .status()
        .context("running tortie")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

pub fn down(name: &str) -> Result<ExitCode> {
    validate_name(name)?;
    let known = LabState::exists(name) || !net::netns_with_prefix(&netns_prefix(name))?.is_empty();
    if !known && !Path::new(&lab_dir(name)).exists() {
        println!("There is no lab {name:?}; nothing to remove");
        return Ok(ExitCode::SUCCESS);
    }
    let problems = teardown(name);
    if problems.is_empty() {
        println!("Lab {name} removed");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        bail!("lab {name} was only partly removed; run tortie lab down {name} again")
    }
}

pub fn status(name: Option<&str>) -> Result<ExitCode> {
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => LabState::all_names(),
    };
    if names.is_empty() {
        println!("No labs. Create one with: tortie lab up demo --nodes 3");
        return Ok(ExitCode::SUCCESS);
    }
    for n in names {
        let lab = LabState::load(&n)?;
        let subnets = match &lab.subnet6 {
            Some(subnet6) => format!("subnets {} and {subnet6}", lab.subnet),
            None => format!("subnet {}", lab.subnet),
        };
        println!(
            "Lab {} ({} mode, {subnets}, datastore {})",
            lab.name, lab.mode, lab.datastore
        );
        for node in &lab.nodes {
            let state = match node.pid {
                Some(pid) if process_alive(pid) => format!("running (pid {pid})"),
                Some(pid) => format!("STOPPED (pid {pid} is gone)"),
                None => "not started".to_string(),
            };
            let ips = match &node.ip6 {
                Some(ip6) => format!("{}, {ip6}", node.ip),
                None => node.ip.clone(),
            };
            println!("  node {:<8} {:<18} {state}", node.name, ips);
        }
        for pod in &lab.pods {
            println!(
                "  pod  {:<24} on {:<8} {}",
                pod.id(),
                pod.node,
                pod.ips.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_node_addresses_repeat_the_ipv4_digits() {
        let plan = |subnet: &str| Ipv6Plan {
            subnet: subnet.parse().expect("subnet"),
            pod_cidr: "fd00:10:244::/48".parse().expect("pool"),
        };
        let v6 = plan("fd30::/64");
        assert_eq!(v6.gateway().to_string(), "fd30::1");
        assert_eq!(v6.node_ip(1), "fd30::11/64");
        assert_eq!(v6.node_ip(12), "fd30::22/64");
        assert_eq!(v6.node_ip(50), "fd30::60/64");
        let smallest = plan("fd30::100/120");
        assert_eq!(smallest.gateway().to_string(), "fd30::101");
        assert_eq!(smallest.node_ip(50), "fd30::160/120");
        assert!(
            smallest
                .subnet
                .contains(&"fd30::160".parse::<std::net::Ipv6Addr>().expect("ip"))
        );
    }
}
