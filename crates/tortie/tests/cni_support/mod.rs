//! Shared harness of the CNI tests (needs root): a "lab" is a temporary
//! directory holding the plugin directory (`tortie-cni` and `tortie-ipam`
//! linked to the real `tortie` binary, next to the reference plugins), a
//! datastore (a fresh embedded file, or an etcd cluster), and a "host"
//! network namespace the plugins run in, so the real host is never
//! touched. Containers are further namespaces.
//!
//! etcd: the cluster runs in the test's own namespace, so every lab host
//! namespace gets a small TCP bridge listening on the same 127.0.0.1
//! ports inside it and forwarding to the cluster; the plugins and the test
//! then use the same datastore string.
//!
//! Cleanup: every namespace is a guard deleted on drop (which takes the
//! veths, routes and sysctls inside with it); the directory is a TempDir.
//! Namespaces left by a test process that was itself killed carry its PID
//! in their name and are swept by the next lab. Every plugin run is
//! bounded by a timeout and killed (by PID: the child we spawned) if it
//! overruns.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tortie_client::Client;
use tortie_datastore::DatastoreSpec;
use tortie_model::ippool::IPPoolSpec;
use tortie_model::{ObjectMeta, Resource};

/// Where Debian installs the reference CNI plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// Bound of one plugin run.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Prefix of every namespace the tests create.
const NETNS_PREFIX: &str = "tcni-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique in this process and across processes: `tcni-<pid>-<n>-<tag>`.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NETNS_PREFIX}{}-{n}-{tag}", std::process::id())
}

/// Runs a command to completion with a bound; fails on a non-zero exit.
pub fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = run_bounded(cmd, b"", PLUGIN_TIMEOUT)?;
    ensure!(
        out.status == Some(0),
        "{cmd:?} failed ({:?}): {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

/// What a process printed and how it ended (`None`: killed by a signal).
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Spawns `cmd` with `stdin`, waits at most `timeout` (then kills it).
pub fn run_bounded(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> Result<Finished> {
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    finish(child, stdin, timeout)
}

/// Feeds `stdin` to a spawned child and collects its output, bounded.
pub fn finish(mut child: Child, stdin: &[u8], timeout: Duration) -> Result<Finished> {
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    if let Some(mut input) = child.stdin.take() {
        // A child that exits without reading gives EPIPE; its output says why.
        let _ = input.write_all(stdin);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().context("kill an overrunning child")?;
            child.wait()?;
            bail!(
                "the process {} did not finish within {timeout:?}",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Ok(Finished {
        status: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Deletes namespaces left by test processes that no longer exist.
pub fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(tag: &str) -> Result<Netns> {
        let name = unique(tag);
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns { name })
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// A command run inside this namespace (nsenter keeps the cgroup and
    /// sysfs views, unlike `ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// `sh -c script` inside the namespace; fails on a non-zero exit.
    pub fn sh(&self, script: &str) -> Result<String> {
        run_checked(self.command("sh").args(["-c", script]))
    }

    /// `ip -j <args>` inside the namespace, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Result<Value> {
        let out = run_checked(self.command("ip").arg("-j").args(args))?;
        if out.trim().is_empty() {
            return Ok(json!([]));
        }
        serde_json::from_str(&out).with_context(|| format!("ip -j {args:?}: {out}"))
    }

    pub fn link_names(&self) -> Result<Vec<String>> {
        Ok(self
            .ip_json(&["link", "show"])?
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `ip -j [-6] route show`.
    pub fn routes(&self, v6: bool) -> Result<Vec<Value>> {
        let args: &[&str] = if v6 {
            &["-6", "route", "show"]
        } else {
            &["route", "show"]
        };
        Ok(self.ip_json(args)?.as_array().cloned().unwrap_or_default())
    }

    pub fn sysctl(&self, path: &str) -> Result<String> {
        Ok(self
            .sh(&format!("cat /proc/sys/{path}"))?
            .trim()
            .to_string())
    }

    /// Pings `address` from this namespace (busybox's ping), bounded.
    pub fn ping(&self, address: &str) -> Result<()> {
        let out = run_bounded(
            self.command("busybox")
                .args(["ping", "-c", "1", "-W", "2", address]),
            b"",
            Duration::from_secs(10),
        )?;
        ensure!(
            out.status == Some(0),
            "ping {address} from {} failed: {}{}",
            self.name,
            out.stdout,
            out.stderr
        );
        Ok(())
    }

    /// Pings until one answer arrives (the first packets may wait for
    /// neighbour discovery), at most `tries` times.
    pub fn ping_eventually(&self, address: &str, tries: usize) -> Result<()> {
        let mut last = None;
        for _ in 0..tries {
            match self.ping(address) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no ping attempted")))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Makes `ns` a usable "host": loopback up, an uplink veth (both ends in
/// the namespace) carrying default routes so proxy ARP has a route to
/// 169.254.1.1 through another interface, and forwarding on.
pub fn make_host(ns: &Netns) -> Result<()> {
    ns.sh(
        "ip link set lo up && \
         ip link add up0 type veth peer name up0p && ip link set up0 up && ip link set up0p up && \
         ip addr add 192.0.2.1/24 dev up0 && ip route add default via 192.0.2.254 && \
         ip -6 addr add 2001:db8::1/64 dev up0 nodad && ip -6 route add default via 2001:db8::fe && \
         echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
    )?;
    Ok(())
}

/// Forwards 127.0.0.1:<port> inside a namespace to 127.0.0.1:<port> in
/// the test's namespace. Stops accepting when dropped; open connections
/// end when their client (a plugin process) exits.
pub struct Bridge {
    stop: Arc<AtomicBool>,
}

impl Bridge {
    pub fn start(ns: &Netns, ports: &[u16]) -> Result<Bridge> {
        let file = std::fs::File::open(ns.path())?;
        let wanted = ports.to_vec();
        // Sockets belong to the namespace of the thread that creates them.
        let listeners = std::thread::spawn(move || -> Result<Vec<(u16, TcpListener)>> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            wanted
                .iter()
                .map(|p| Ok((*p, TcpListener::bind(("127.0.0.1", *p))?)))
                .collect()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the bridge's bind thread panicked"))??;
        let stop = Arc::new(AtomicBool::new(false));
        for (port, listener) in listeners {
            listener.set_nonblocking(true)?;
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((inside, _)) => {
                            let _ = inside.set_nonblocking(false);
                            if let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) {
                                // gRPC's small frames would otherwise wait
                                // for delayed ACKs (Nagle) at every hop.
                                let _ = inside.set_nodelay(true);
                                let _ = outside.set_nodelay(true);
                                splice(inside, outside);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Ok(Bridge { stop })
    }
}

/// Copies both ways until either side closes.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A "host" namespace (see [`make_host`]), bridged to etcd when the lab
/// uses it.
pub struct Host {
    pub ns: Netns,
    _bridge: Option<Bridge>,
}

impl Deref for Host {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// Which datastore a lab uses.
pub enum Backend {
    Embedded,
    Etcd(Box<DatastoreSpec>),
}

/// A plugin to run.
#[derive(Clone, Copy, Debug)]
pub enum Plugin<'a> {
    Cni,
    Ipam,
    Reference(&'a str),
}

/// One attachment's CNI_* values.
#[derive(Clone, Debug)]
pub struct Attach {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Attach {
    pub fn new(container_id: &str, netns: &Netns) -> Attach {
        Attach {
            container_id: container_id.to_string(),
            netns: netns.path(),
            ifname: "eth0".to_string(),
            args: String::new(),
        }
    }

    pub fn k8s(container_id: &str, netns: &Netns, namespace: &str, pod: &str) -> Attach {
        Attach {
            args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}"),
            ..Attach::new(container_id, netns)
        }
    }
}

/// A plugin run's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout is not JSON: {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The end of stderr (errors quote it; logs can be long).
    pub fn stderr_tail(&self) -> &str {
        let start = self.stderr.len().saturating_sub(1500);
        let start = (start..self.stderr.len())
            .find(|i| self.stderr.is_char_boundary(*i))
            .unwrap_or(self.stderr.len());
        &self.stderr[start..]
    }

    /// The result of a successful run (`Null` when it printed nothing).
    pub fn ok(&self) -> Result<Value> {
        ensure!(
            self.status == Some(0),
            "plugin failed ({:?}): {}\nstderr (end): {}",
            self.status,
            self.stdout,
            self.stderr_tail()
        );
        if self.stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        self.json()
    }

    /// The error object of a failed run.
    pub fn error(&self) -> Result<Value> {
        ensure!(
            self.status.is_some_and(|s| s != 0),
            "expected a failure, got {:?}: {}",
            self.status,
            self.stdout
        );
        self.json()
    }
}

/// A test lab (see the module comment).
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub bin_dir: PathBuf,
    pub datastore: String,
    pub lock_file: PathBuf,
    pub host: Host,
    /// Ports of the etcd endpoints to bridge into host namespaces.
    etcd_ports: Vec<u16>,
    pub runtime: tokio::runtime::Runtime,
    pub client: Client,
}

pub fn tortie_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tortie"))
}

impl Lab {
    pub fn new() -> Result<Lab> {
        Lab::with_backend(Backend::Embedded)
    }

    pub fn with_backend(backend: Backend) -> Result<Lab> {
        sweep_leftovers();
        let dir = tempfile::tempdir()?;
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir)?;
        for name in ["tortie-cni", "tortie-ipam"] {
            std::os::unix::fs::symlink(tortie_binary(), bin_dir.join(name))?;
        }
        for entry in std::fs::read_dir(REFERENCE_PLUGINS)? {
            let entry = entry?;
            std::os::unix::fs::symlink(entry.path(), bin_dir.join(entry.file_name()))?;
        }
        let spec = match backend {
            Backend::Embedded => DatastoreSpec::Embedded {
                path: dir.path().join("ds.db"),
            },
            Backend::Etcd(spec) => *spec,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let ds = tortie_datastore::connect(&spec).await?;
            let client = Client::new(ds);
            client.ensure_initialized().await?;
            anyhow::Ok(client)
        })?;
        let etcd_ports = match &spec {
            DatastoreSpec::Etcd(config) => config
                .endpoints
                .iter()
                .filter_map(|e| e.rsplit(':').next()?.trim_end_matches('/').parse().ok())
                .collect(),
            DatastoreSpec::Embedded { .. } => Vec::new(),
        };
        let host = Lab::make_host_ns("host", &etcd_ports)?;
        Ok(Lab {
            lock_file: dir.path().join("ipam.lock"),
            datastore: spec.to_string(),
            bin_dir,
            dir,
            host,
            etcd_ports,
            runtime,
            client,
        })
    }

    fn make_host_ns(tag: &str, etcd_ports: &[u16]) -> Result<Host> {
        let ns = Netns::create(tag)?;
        make_host(&ns)?;
        let bridge = if etcd_ports.is_empty() {
            None
        } else {
            Some(Bridge::start(&ns, etcd_ports)?)
        };
        Ok(Host {
            ns,
            _bridge: bridge,
        })
    }

    /// Another "host" namespace (another node) for this lab.
    pub fn new_host(&self, tag: &str) -> Result<Host> {
        Lab::make_host_ns(tag, &self.etcd_ports)
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Creates IP pools: (name, cidr, block size).
    pub fn pools(&self, pools: &[(&str, &str, i64)]) -> Result<()> {
        self.block_on(async {
            for (name, cidr, block) in pools {
                let pool = Resource::new(
                    ObjectMeta::named(name),
                    IPPoolSpec {
                        cidr: cidr.to_string(),
                        block_size: Some(*block),
                        ..IPPoolSpec::default()
                    },
                );
                self.client.create(pool).await?;
            }
            anyhow::Ok(())
        })
    }

    /// The main plugin's network configuration for `version`, merged with
    /// `extra` (top-level keys; objects replace).
    pub fn conf(&self, version: &str, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": version,
            "name": "tnet",
            "type": "tortie-cni",
            "datastore": self.datastore,
            "nodename": "node-a",
            "ipam_lock_file": self.lock_file,
            "log_level": "info",
            "ipam": {"type": "tortie-ipam"},
        });
        merge(&mut conf, extra);
        conf
    }

    pub fn plugin_path(&self, plugin: Plugin<'_>) -> PathBuf {
        match plugin {
            Plugin::Cni => self.bin_dir.join("tortie-cni"),
            Plugin::Ipam => self.bin_dir.join("tortie-ipam"),
            Plugin::Reference(name) => self.bin_dir.join(name),
        }
    }

    /// The command for one plugin run in `host` (CNI_* set, environment
    /// otherwise cleared but for PATH).
    pub fn plugin_command(
        &self,
        host: &Netns,
        plugin: Plugin<'_>,
        command: &str,
        attach: &Attach,
    ) -> Command {
        let mut c = host.command(self.plugin_path(plugin));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &attach.container_id)
            .env("CNI_NETNS", &attach.netns)
            .env("CNI_IFNAME", &attach.ifname)
            .env("CNI_ARGS", &attach.args)
            .env("CNI_PATH", &self.bin_dir);
        c
    }

    /// Runs a plugin in the lab's host namespace.
    pub fn run(
        &self,
        plugin: Plugin<'_>,
        command: &str,
        attach: &Attach,
        conf: &Value,
    ) -> Result<Outcome> {
        self.run_in(&self.host, plugin, command, attach, conf)
    }

    /// Runs a plugin in `host`.
    pub fn run_in(
        &self,
        host: &Netns,
        plugin: Plugin<'_>,
        command: &str,
        attach: &Attach,
        conf: &Value,
    ) -> Result<Outcome> {
        let stdin = serde_json::to_vec(conf)?;
        let out = run_bounded(
            &mut self.plugin_command(host, plugin, command, attach),
            &stdin,
            PLUGIN_TIMEOUT,
        )?;
        Ok(Outcome {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// `conf` with `prevResult` set.
    pub fn with_prev(conf: &Value, prev: &Value) -> Value {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        c
    }

    pub fn workload_endpoints(&self) -> Result<Vec<Resource>> {
        self.block_on(async {
            Ok(self
                .client
                .list(tortie_model::Kind::WorkloadEndpoint, None)
                .await?
                .items)
        })
    }

    /// Every allocated address with its handle, from the blocks.
    pub fn allocations(&self) -> Result<BTreeMap<std::net::IpAddr, Allocation>> {
        use tortie_ipam::block::OrdinalState;
        use tortie_ipam::check::StoredBlock;
        let ipam = tortie_ipam::Ipam::new(self.client.clone());
        let blocks = self.block_on(ipam.blocks())?;
        let mut out = BTreeMap::new();
        for stored in blocks {
            let StoredBlock::Valid(block) = stored else {
                bail!("an invalid block is stored: {stored:?}");
            };
            let cidr = block.cidr();
            for (ordinal, state) in block.occupied() {
                let OrdinalState::Allocated(attr) = state else {
                    continue;
                };
                let ip = tortie_ipam::cidr::address_at(&cidr, ordinal);
                let previous = out.insert(
                    ip,
                    Allocation {
                        block: cidr,
                        block_affinity: block.affinity().map(str::to_string),
                        handle: attr.handle_id.clone().unwrap_or_default(),
                        attrs: attr.active_owner_attrs.clone(),
                    },
                );
                ensure!(previous.is_none(), "{ip} is allocated twice");
            }
        }
        Ok(out)
    }
}

/// One allocated address as stored.
#[derive(Clone, Debug)]
pub struct Allocation {
    pub block: ipnet::IpNet,
    pub block_affinity: Option<String>,
    pub handle: String,
    pub attrs: BTreeMap<String, String>,
}

/// Shallow merge of `extra`'s keys into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
}

/// The address of the first `ips` entry of the given family, without prefix.
pub fn result_address(result: &Value, v4: bool) -> Option<String> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let addr = ip["address"].as_str()?.split('/').next()?.to_string();
        (addr.contains('.') == v4).then_some(addr)
    })
}

/// A network configuration list run the way libcni runs one: ADD through
/// the plugins in order, each given the previous result; CHECK and DEL
/// given the chain's final result, DEL in reverse order.
pub struct Chain {
    pub conflist: Value,
}

impl Chain {
    fn plugin_conf(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = self.conflist["name"].clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn run_one(
        &self,
        lab: &Lab,
        plugin: &Value,
        command: &str,
        attach: &Attach,
        prev: Option<&Value>,
    ) -> Result<Outcome> {
        let kind = plugin["type"].as_str().context("plugin type")?;
        lab.run(
            Plugin::Reference(kind),
            command,
            attach,
            &self.plugin_conf(plugin, prev),
        )
    }

    /// ADD through the chain; on a failure, DEL of the plugins already
    /// added (as libcni does), then the error.
    pub fn add(&self, lab: &Lab, attach: &Attach) -> Result<Value> {
        let mut prev: Option<Value> = None;
        let plugins = self.plugins();
        for (i, plugin) in plugins.iter().enumerate() {
            let outcome = self.run_one(lab, plugin, "ADD", attach, prev.as_ref())?;
            match outcome.ok() {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    for done in plugins[..i].iter().rev() {
                        let _ = self.run_one(lab, done, "DEL", attach, prev.as_ref());
                    }
                    return Err(e.context(format!("ADD of {}", plugin["type"])));
                }
            }
        }
        prev.context("an empty chain")
    }

    /// CHECK through the chain, skipping the plugin types in `skip`.
    pub fn check(&self, lab: &Lab, attach: &Attach, result: &Value, skip: &[&str]) -> Result<()> {
        for plugin in self.plugins() {
            if skip.iter().any(|s| plugin["type"] == *s) {
                continue;
            }
            self.run_one(lab, &plugin, "CHECK", attach, Some(result))?
                .ok()
                .with_context(|| format!("CHECK of {}", plugin["type"]))?;
        }
        Ok(())
    }

    /// DEL through the chain in reverse; every plugin runs even if one fails.
    pub fn del(&self, lab: &Lab, attach: &Attach, result: Option<&Value>) -> Result<()> {
        let mut failures = Vec::new();
        for plugin in self.plugins().iter().rev() {
            let outcome = self.run_one(lab, plugin, "DEL", attach, result)?;
            if let Err(e) = outcome.ok() {
                failures.push(format!("{}: {e:#}", plugin["type"]));
            }
        }
        ensure!(failures.is_empty(), "DEL failed: {failures:?}");
        Ok(())
    }
}
