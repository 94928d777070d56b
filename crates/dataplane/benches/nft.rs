//! The nftables reconciler at scale, against `nft` in the same run (needs
//! root; each side gets a fresh network namespace). Prints a table.
//!
//! Ruleset: 10,000 endpoint chains (8 rules each: clear marks, three
//! policy jumps each followed by a return-if-accepted, drop) dispatched
//! by a verdict map of 10,000 interface names; 1,000 policy chains of 10
//! rules, each rule matching the source by one lookup in a single
//! concatenated `mark . ipv4_addr` interval set of 50,000 elements; a
//! forward base chain accepting established flows first.
//!
//! Measured: loading it from nothing (tortie: one `apply`, one
//! transaction; baseline: `nft -f` of the same ruleset as text); then,
//! with everything loaded, adding one endpoint (its chain, its dispatch
//! entry and 5 selector memberships; tortie: `apply`, baseline: `nft -f`
//! of the 3 commands), adding one selector member (one set element), and
//! adding 100 endpoints in one go; and tortie's read-back of the whole
//! table.
//!
//! `nft` cannot write a constant inside a concatenation, so its rules use
//! `meta mark . ip saddr @sel4` (same set, same lookups, one more
//! expression) — the load cost is the same shape.
//!
//! `TORTIE_NFT_BENCH_SCALE` (default 1.0) scales every count, e.g. 0.1
//! for a quick run.

#[path = "../tests/nft_support/mod.rs"]
mod nft_support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nft_support::layout;
use tortie_dataplane::nft::{Family, NftSocket, Reconciler, TableId};
use tortie_testkit::TestNetns;

struct Scale {
    endpoints: usize,
    policies: usize,
    rules_per_policy: usize,
    selectors: usize,
    members_per_selector: usize,
}

const POLICIES_PER_ENDPOINT: usize = 3;
const ADDS: usize = 15;
const BULK: usize = 100;

fn scale() -> Scale {
    let f: f64 = std::env::var("TORTIE_NFT_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |x: usize| ((x as f64 * f).round() as usize).max(1);
    Scale {
        endpoints: n(10_000),
        policies: n(1_000),
        rules_per_policy: 10,
        selectors: n(1_000),
        members_per_selector: 50,
    }
}

fn iface(e: usize) -> String {
    format!("cali{e:06}")
}

fn addr(e: usize) -> String {
    format!("10.{}.{}.{}", 64 + e / 65536, (e / 256) % 256, e % 256)
}

fn endpoint_policies(s: &Scale, e: usize) -> Vec<String> {
    (0..POLICIES_PER_ENDPOINT)
        .map(|k| format!("pi-{}", (e * (2 * k + 1) + k) % s.policies))
        .collect()
}

fn policy_rules(s: &Scale, p: usize) -> Vec<(u32, u16)> {
    (0..s.rules_per_policy)
        .map(|k| {
            (
                ((p * s.rules_per_policy + k) % s.selectors + 1) as u32,
                8000 + k as u16,
            )
        })
        .collect()
}

/// Selector `sel` (1-based) holds these endpoints.
fn members(s: &Scale, sel: usize) -> impl Iterator<Item = usize> + '_ {
    (0..s.members_per_selector).map(move |j| (sel * s.members_per_selector + j) % s.endpoints)
}

fn build(rec: &mut Reconciler<NftSocket>, s: &Scale) {
    let r = rec.desired_mut();
    layout::skeleton(r);
    for p in 0..s.policies {
        r.put_chain(format!("pi-{p}"), layout::policy_chain(&policy_rules(s, p)));
    }
    for e in 0..s.endpoints {
        layout::add_endpoint_ingress(r, &iface(e), &endpoint_policies(s, e));
    }
    for sel in 1..=s.selectors {
        for e in members(s, sel) {
            layout::select(r, sel as u32, &format!("{}/32", addr(e)));
        }
    }
}

/// The same ruleset as `nft` text.
fn nft_text(s: &Scale) -> String {
    let mut t = String::with_capacity(32 << 20);
    t.push_str(
        "table inet tortie {\n  set sel4 { type mark . ipv4_addr; flags interval; elements = {\n",
    );
    let mut first = true;
    for sel in 1..=s.selectors {
        for e in members(s, sel) {
            let sep = if first { "" } else { ",\n" };
            first = false;
            let _ = write!(t, "{sep}    0x{sel:08x} . {}", addr(e));
        }
    }
    t.push_str(" } }\n  map from-wl { type ifname : verdict; }\n");
    t.push_str("  map to-wl { type ifname : verdict; elements = {\n");
    for e in 0..s.endpoints {
        let sep = if e == 0 { "" } else { ",\n" };
        let _ = write!(t, "{sep}    \"{}\" : goto tw-{}", iface(e), iface(e));
    }
    t.push_str(" } }\n");
    for p in 0..s.policies {
        let _ = writeln!(t, "  chain pi-{p} {{");
        for (sel, port) in policy_rules(s, p) {
            let _ = writeln!(
                t,
                "    meta mark . ip saddr @sel4 meta l4proto tcp th dport {port} meta mark set meta mark | 0x10000 return comment \"sel {sel}\""
            );
        }
        t.push_str("  }\n");
    }
    for e in 0..s.endpoints {
        t.push_str(&endpoint_text(&iface(e), &endpoint_policies(s, e)));
    }
    t.push_str(
        "  chain from-wl-dispatch { iifname vmap @from-wl; drop comment \"unknown interface\"; }\n\
         \x20 chain to-wl-dispatch { oifname vmap @to-wl; drop comment \"unknown interface\"; }\n\
         \x20 chain filter-FORWARD { type filter hook forward priority 0; policy accept;\n\
         \x20   ct state established,related accept comment \"established\"\n\
         \x20   ct state invalid drop\n\
         \x20   meta mark set meta mark & 0xfffcffff\n\
         \x20   iifname \"cali*\" jump from-wl-dispatch\n\
         \x20   oifname \"cali*\" jump to-wl-dispatch\n\
         \x20 }\n}\n",
    );
    t
}

fn endpoint_text(iface: &str, policies: &[String]) -> String {
    let mut t = format!("  chain tw-{iface} {{\n    meta mark set meta mark & 0xfffcffff\n");
    for p in policies {
        let _ = writeln!(t, "    jump {p}\n    meta mark & 0x10000 == 0x10000 return");
    }
    t.push_str("    drop comment \"no policy allowed\"\n  }\n");
    t
}

/// One new endpoint: chain, dispatch entry, 5 selector memberships.
fn new_endpoint(s: &Scale, i: usize) -> (usize, Vec<usize>) {
    let e = s.endpoints + i;
    (
        e,
        (0..5)
            .map(|k| (i * 37 + k * 101) % s.selectors + 1)
            .collect(),
    )
}

fn add_endpoint_tortie(rec: &mut Reconciler<NftSocket>, s: &Scale, i: usize) {
    let (e, sels) = new_endpoint(s, i);
    let r = rec.desired_mut();
    layout::add_endpoint_ingress(r, &iface(e), &endpoint_policies(s, e));
    for sel in sels {
        layout::select(r, sel as u32, &format!("{}/32", addr(e)));
    }
}

fn add_endpoint_nft(s: &Scale, i: usize) -> String {
    let (e, sels) = new_endpoint(s, i);
    let name = iface(e);
    let mut t = format!(
        "table inet tortie {{\n{}}}\n",
        endpoint_text(&name, &endpoint_policies(s, e))
    );
    let _ = writeln!(
        t,
        "add element inet tortie to-wl {{ \"{name}\" : goto tw-{name} }}"
    );
    let elems: Vec<String> = sels
        .iter()
        .map(|sel| format!("0x{sel:08x} . {}", addr(e)))
        .collect();
    let _ = writeln!(t, "add element inet tortie sel4 {{ {} }}", elems.join(", "));
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` asks for a listing.
    }
    let s = scale();
    let rules = s.endpoints * (2 + 2 * POLICIES_PER_ENDPOINT) + s.policies * s.rules_per_policy + 9;
    let elements = s.selectors * s.members_per_selector;
    println!(
        "nftables ruleset: {} endpoint chains + {} dispatch entries, {} policy chains x {} rules, \
         {} selector elements in one concatenated set; {} rules in all",
        s.endpoints, s.endpoints, s.policies, s.rules_per_policy, elements, rules
    );

    // tortie
    let ns = TestNetns::new("nftbench")?;
    let mut rec = ns.run(|| Reconciler::open(TableId::new(Family::Inet, "tortie")))??;
    build(&mut rec, &s);
    let t0 = Instant::now();
    let load = rec.apply()?;
    let tortie_load = t0.elapsed();
    ensure!(load.failures.is_empty(), "load failed: {:?}", load.failures);
    let mut adds = Vec::new();
    let mut add_msgs = 0;
    for i in 0..ADDS {
        add_endpoint_tortie(&mut rec, &s, i);
        let t = Instant::now();
        let r = rec.apply()?;
        adds.push(t.elapsed());
        ensure!(r.failures.is_empty(), "add failed: {:?}", r.failures);
        add_msgs = r.messages;
    }
    let tortie_add = median(adds);
    let mut members = Vec::new();
    for i in 0..ADDS {
        layout::select(rec.desired_mut(), 1, &format!("10.200.0.{i}/32"));
        let t = Instant::now();
        rec.apply()?;
        members.push(t.elapsed());
    }
    let tortie_member = median(members);
    for i in 0..BULK {
        add_endpoint_tortie(&mut rec, &s, ADDS + i);
    }
    let t = Instant::now();
    let bulk = rec.apply()?;
    let tortie_bulk = t.elapsed();
    ensure!(
        bulk.failures.is_empty() && bulk.transactions == 1,
        "{bulk:?}"
    );
    let t = Instant::now();
    rec.resync()?;
    let resync = t.elapsed();
    let t = Instant::now();
    let noop = rec.apply()?;
    let noop_apply = t.elapsed();
    ensure!(
        noop.transactions == 0,
        "read back differs from the model: {noop:?}"
    );
    let listed = ns.nft(&["list", "table", "inet", "tortie"])?;
    ensure!(listed.contains(&format!("chain tw-{}", iface(s.endpoints))));
    drop(rec);
    drop(ns);

    // nft
    let ns = TestNetns::new("nftbench")?;
    let text = nft_text(&s);
    let t = Instant::now();
    ns.nft_script(&text)?;
    let nft_load = t.elapsed();
    let mut adds = Vec::new();
    for i in 0..ADDS.min(7) {
        let script = add_endpoint_nft(&s, i);
        let t = Instant::now();
        ns.nft_script(&script).context("nft add endpoint")?;
        adds.push(t.elapsed());
    }
    let nft_add = median(adds);
    let mut members = Vec::new();
    for i in 0..ADDS.min(7) {
        let t = Instant::now();
        ns.nft(&[
            "add",
            "element",
            "inet",
            "tortie",
            "sel4",
            &format!("{{ 0x00000001 . 10.200.0.{i} }}"),
        ])?;
        members.push(t.elapsed());
    }
    let nft_member = median(members);
    let script: String = (0..BULK).map(|i| add_endpoint_nft(&s, ADDS + i)).collect();
    let t = Instant::now();
    ns.nft_script(&script)?;
    let nft_bulk = t.elapsed();

    println!();
    println!("{:44} {:>14} {:>14} {:>8}", "", "tortie", "nft -f", "ratio");
    println!(
        "{:44} {:>12.2} s {:>12.2} s {:>7.1}x",
        "load from nothing",
        tortie_load.as_secs_f64(),
        nft_load.as_secs_f64(),
        nft_load.as_secs_f64() / tortie_load.as_secs_f64()
    );
    println!(
        "{:44} {:>14} {:>14}",
        "  sent",
        format!("{:.1} MB", load.bytes as f64 / 1e6),
        format!("{:.1} MB text", text.len() as f64 / 1e6)
    );
    println!(
        "{:44} {:>14} {:>14}",
        "  messages / transactions",
        format!("{} / {}", load.messages, load.transactions),
        "-"
    );
    println!(
        "{:44} {:>11.2} ms {:>11.1} ms {:>7.0}x",
        "add one endpoint (median)",
        ms(tortie_add),
        ms(nft_add),
        nft_add.as_secs_f64() / tortie_add.as_secs_f64()
    );
    println!("{:44} {:>14}", "  messages", add_msgs);
    println!(
        "{:44} {:>11.2} ms {:>11.1} ms {:>7.0}x",
        "add one selector member (median)",
        ms(tortie_member),
        ms(nft_member),
        nft_member.as_secs_f64() / tortie_member.as_secs_f64()
    );
    println!(
        "{:44} {:>11.1} ms {:>11.1} ms {:>7.0}x",
        format!("add {BULK} endpoints at once"),
        ms(tortie_bulk),
        ms(nft_bulk),
        nft_bulk.as_secs_f64() / tortie_bulk.as_secs_f64()
    );
    println!(
        "{:44} {:>11.0} ms",
        "read the whole table back (resync)",
        ms(resync)
    );
    println!(
        "{:44} {:>11.0} ms",
        "apply after resync (nothing to do)",
        ms(noop_apply)
    );
    Ok(())
}
