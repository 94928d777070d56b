//! Harness of the nftables tests and benchmark (they need root):
//! throwaway network namespaces deleted on drop even when a test fails or
//! panics; work run on a thread `setns`ed into one (a socket opened there
//! stays in that namespace, so it can be used from any thread after);
//! `nft` and `ip` run inside with a time bound.
//!
//! Namespaces are named `tnft-<pid>-<n>`; ones left by a test process
//! that was itself killed are swept when the next one is created.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sched::{CloneFlags, setns};
use serde_json::Value;

const PREFIX: &str = "tnft-";
static COUNTER: AtomicUsize = AtomicUsize::new(0);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Runs a command with a time bound; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<String> {
    run_with_input(cmd, None)
}

/// Like [`run`], feeding `input` on standard input.
pub fn run_with_input(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    use std::io::{Read, Write};
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    // Output is drained while the command runs: a full pipe would stall it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    if let Some(text) = input {
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(text.as_bytes())?;
    }
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    ensure!(
        status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&err).trim()
    );
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A network namespace, deleted on drop.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> Result<TestNetns> {
        sweep_leftovers();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `work` on a thread inside the namespace.
    pub fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        let handle = std::thread::spawn(move || -> Result<R> {
            setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
            Ok(work())
        });
        match handle.join() {
            Ok(r) => r,
            Err(_) => bail!("the worker in {} panicked", self.name),
        }
    }

    pub fn exec(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `nft <args>` inside the namespace.
    pub fn nft(&self, args: &[&str]) -> Result<String> {
        self.exec(&[&["nft"], args].concat())
    }

    /// `nft -f -` with `script` inside the namespace.
    pub fn nft_script(&self, script: &str) -> Result<String> {
        run_with_input(
            Command::new("ip").args(["netns", "exec", &self.name, "nft", "-f", "-"]),
            Some(script),
        )
    }

    /// `nft -j list table <family> <name>`, as JSON objects (the
    /// `nftables` array without its metainfo entry).
    pub fn nft_json(&self, family: &str, table: &str) -> Result<Vec<Value>> {
        let out = self.nft(&["-j", "list", "table", family, table])?;
        let v: Value = serde_json::from_str(&out).context("nft -j output")?;
        Ok(v["nftables"]
            .as_array()
            .context("nftables array")?
            .iter()
            .filter(|o| o.get("metainfo").is_none())
            .cloned()
            .collect())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Objects of one kind (`chain`, `rule`, `set`, `map`) in `nft -j` output.
pub fn objects<'a>(json: &'a [Value], kind: &str) -> Vec<&'a Value> {
    json.iter().filter_map(|o| o.get(kind)).collect()
}

/// Rules of one chain in `nft -j` output, in order.
pub fn chain_rules<'a>(json: &'a [Value], chain: &str) -> Vec<&'a Value> {
    objects(json, "rule")
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .collect()
}

/// A veth pair `a` (in namespace `ns_a`) <-> `b` (in `ns_b`), both up.
pub fn veth(ns_a: &TestNetns, a: &str, ns_b: &TestNetns, b: &str) -> Result<()> {
    ns_a.ip(&[
        "link", "add", a, "type", "veth", "peer", "name", b, "netns", &ns_b.name,
    ])?;
    ns_a.ip(&["link", "set", a, "up"])?;
    ns_b.ip(&["link", "set", b, "up"])?;
    Ok(())
}

/// A Calico-shaped ruleset for tests and the benchmark: a forward base
/// chain accepting established flows first, dispatch by interface name
/// through verdict maps to per-endpoint chains, which jump to policy
/// chains matching sources by selector id in one concatenated set.
pub mod layout {
    use ipnet::IpNet;
    use tortie_dataplane::nft::rules::{
        self, Addr, CT_ESTABLISHED, CT_INVALID, CT_RELATED, Iface, IpFamily,
    };
    use tortie_dataplane::nft::{
        BaseChain, Chain, ChainType, Data, Hook, KeyField, Policy, Rule, Ruleset, SetSpec, Verdict,
    };

    pub const SEL4: &str = "sel4";
    pub const TO_WL: &str = "to-wl";
    pub const FROM_WL: &str = "from-wl";
    pub const ACCEPT_MARK: u32 = 0x10000;
    pub const PASS_MARK: u32 = 0x20000;

    fn rule(parts: Vec<Vec<tortie_dataplane::nft::Expr>>) -> Rule {
        Rule::new(parts.concat())
    }

    fn v(verdict: Verdict) -> Vec<tortie_dataplane::nft::Expr> {
        vec![rules::verdict(verdict)]
    }

    /// The fixed part: sets, maps, base chain and dispatch chains.
    pub fn skeleton(r: &mut Ruleset) {
        r.put_set(SEL4, rules::selector_set(IpFamily::V4));
        r.put_set(TO_WL, SetSpec::verdict_map(vec![KeyField::IFNAME]));
        r.put_set(FROM_WL, SetSpec::verdict_map(vec![KeyField::IFNAME]));
        r.put_chain(
            "filter-FORWARD",
            Chain::base(
                BaseChain {
                    hook: Hook::Forward,
                    chain_type: ChainType::Filter,
                    priority: 0,
                    policy: Policy::Accept,
                },
                vec![
                    rule(vec![
                        rules::ct_state(CT_ESTABLISHED | CT_RELATED),
                        v(Verdict::Accept),
                    ])
                    .with_comment("established"),
                    rule(vec![rules::ct_state(CT_INVALID), v(Verdict::Drop)]),
                    rule(vec![rules::mark_clear(ACCEPT_MARK | PASS_MARK)]),
                    rule(vec![
                        rules::ifname(Iface::In, "cali*"),
                        v(Verdict::Jump("from-wl-dispatch".into())),
                    ]),
                    rule(vec![
                        rules::ifname(Iface::Out, "cali*"),
                        v(Verdict::Jump("to-wl-dispatch".into())),
                    ]),
                ],
            ),
        );
        for (chain, dir, map) in [
            ("from-wl-dispatch", Iface::In, FROM_WL),
            ("to-wl-dispatch", Iface::Out, TO_WL),
        ] {
            r.put_chain(
                chain,
                Chain::regular(vec![
                    rule(vec![rules::dispatch(dir, map)]),
                    rule(vec![v(Verdict::Drop)]).with_comment("unknown interface"),
                ]),
            );
        }
    }

    /// A policy chain: each rule allows TCP to a port from a selector.
    pub fn policy_chain(allow: &[(u32, u16)]) -> Chain {
        Chain::regular(
            allow
                .iter()
                .map(|&(selector, port)| {
                    rule(vec![
                        rules::addr_in_selector(IpFamily::V4, Addr::Source, SEL4, selector, false),
                        rules::l4proto(6),
                        rules::dport(port),
                        rules::mark_set(ACCEPT_MARK),
                        v(Verdict::Return),
                    ])
                })
                .collect(),
        )
    }

    /// A policy chain allowing one protocol (ICMP, UDP) from a selector.
    pub fn policy_chain_proto(selector: u32, proto: u8) -> Chain {
        Chain::regular(vec![rule(vec![
            rules::addr_in_selector(IpFamily::V4, Addr::Source, SEL4, selector, false),
            rules::l4proto(proto),
            rules::mark_set(ACCEPT_MARK),
            v(Verdict::Return),
        ])])
    }

    /// An endpoint chain: clear marks, each policy in turn (return once
    /// one accepted), else drop.
    pub fn endpoint_chain(policies: &[String]) -> Chain {
        let mut rs = vec![rule(vec![rules::mark_clear(ACCEPT_MARK | PASS_MARK)])];
        for p in policies {
            rs.push(rule(vec![v(Verdict::Jump(p.clone()))]));
            rs.push(rule(vec![rules::mark_has(ACCEPT_MARK), v(Verdict::Return)]));
        }
        rs.push(rule(vec![v(Verdict::Drop)]).with_comment("no policy allowed"));
        Chain::regular(rs)
    }

    /// Installs an endpoint: its ingress (`tw-`) chain and dispatch entry.
    pub fn add_endpoint_ingress(r: &mut Ruleset, iface: &str, policies: &[String]) {
        let chain = format!("tw-{iface}");
        r.put_chain(chain.clone(), endpoint_chain(policies));
        r.put_element(
            TO_WL,
            tortie_dataplane::nft::Key::exact(tortie_dataplane::nft::model::ifname_bytes(iface)),
            Some(Data::Verdict(Verdict::Goto(chain))),
        )
        .expect("a dispatch element fits its map");
    }

    /// Installs an endpoint's egress (`fw-`) chain and dispatch entry.
    pub fn add_endpoint_egress(r: &mut Ruleset, iface: &str, policies: &[String]) {
        let chain = format!("fw-{iface}");
        r.put_chain(chain.clone(), endpoint_chain(policies));
        r.put_element(
            FROM_WL,
            tortie_dataplane::nft::Key::exact(tortie_dataplane::nft::model::ifname_bytes(iface)),
            Some(Data::Verdict(Verdict::Goto(chain))),
        )
        .expect("a dispatch element fits its map");
    }

    /// Puts `net` in selector `id`.
    pub fn select(r: &mut Ruleset, id: u32, net: &str) {
        let net: IpNet = net.parse().expect("a valid network");
        r.put_element(SEL4, rules::selector_key(id, net), None)
            .expect("a selector element fits its set");
    }

    /// Takes `net` out of selector `id`.
    pub fn unselect(r: &mut Ruleset, id: u32, net: &str) {
        let net: IpNet = net.parse().expect("a valid network");
        r.remove_element(SEL4, &rules::selector_key(id, net));
    }
}
