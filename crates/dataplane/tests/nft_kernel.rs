//! The nftables reconciler against the real kernel, in throwaway network
//! namespaces (needs root). `nft -j list table` is the cross-check: what
//! the kernel holds is what the model says; reading it back and applying
//! again sends nothing. Incremental changes cost what changed (element
//! messages only for elements, one message for one rule in a long chain,
//! handles of untouched rules kept); drift made with `nft` behind the
//! reconciler's back is repaired after a resync while a foreign table
//! survives byte for byte; a restarted reconciler takes the table over in
//! place; refused items stay pending without blocking the rest.

mod nft_support;

use anyhow::{Context, Result, ensure};
use nft_support::layout::{self, SEL4, TO_WL};
use nft_support::{chain_rules, objects};
use serde_json::Value;
use tortie_dataplane::nft::expr::{CmpOp, MetaKey};
use tortie_dataplane::nft::model::ifname_bytes;
use tortie_dataplane::nft::rules::{self, Iface};
use tortie_dataplane::nft::{
    BaseChain, Chain, ChainType, Data, Expr, Family, Hook, Item, Key, KeyField, NftSocket, Policy,
    Reconciler, Reg, Rule, SetSpec, TableId, Verdict,
};
use tortie_testkit::TestNetns;

fn table() -> TableId {
    TableId::new(Family::Inet, "tortie")
}

fn open(ns: &TestNetns) -> Result<Reconciler<NftSocket>> {
    Ok(ns.run(|| Reconciler::open(table()))??)
}

fn policies(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The skeleton, two policies, two endpoints, a few selector members.
fn small_ruleset(rec: &mut Reconciler<NftSocket>) {
    let r = rec.desired_mut();
    layout::skeleton(r);
    r.put_chain("pi-web", layout::policy_chain(&[(1, 80), (2, 443)]));
    r.put_chain("pi-db", layout::policy_chain(&[(3, 5432)]));
    layout::add_endpoint_ingress(r, "cali1", &policies(&["pi-web"]));
    layout::add_endpoint_ingress(r, "cali2", &policies(&["pi-web", "pi-db"]));
    layout::select(r, 1, "10.65.0.1/32");
    layout::select(r, 2, "10.66.0.0/16");
    layout::select(r, 3, "10.65.0.2/32");
}

fn strip_handles(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "handle")
                .map(|(k, v)| (k.clone(), strip_handles(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_handles).collect()),
        other => other.clone(),
    }
}

/// The table as `nft -j` lists it, without handles.
fn listing(ns: &TestNetns) -> Result<Vec<Value>> {
    Ok(ns
        .nft_json("inet", "tortie")?
        .iter()
        .map(strip_handles)
        .collect())
}

fn handles(json: &[Value], chain: &str) -> Vec<u64> {
    chain_rules(json, chain)
        .iter()
        .filter_map(|r| r["handle"].as_u64())
        .collect()
}

fn comments(json: &[Value], chain: &str) -> Vec<String> {
    chain_rules(json, chain)
        .iter()
        .map(|r| r["comment"].as_str().unwrap_or("").to_string())
        .collect()
}

fn set_elements(json: &[Value], set: &str) -> Vec<Value> {
    json.iter()
        .filter_map(|o| o.get("set").or_else(|| o.get("map")))
        .find(|s| s["name"] == set)
        .and_then(|s| s["elem"].as_array().cloned())
        .unwrap_or_default()
}

/// Asserts nothing is left to do after reading the kernel back.
fn assert_converged(rec: &mut Reconciler<NftSocket>) -> Result<()> {
    rec.resync()?;
    let again = rec.apply()?;
    ensure!(
        again.transactions == 0 && again.failures.is_empty(),
        "the kernel's table differs from the model after apply: {again:?}"
    );
    ensure!(rec.in_sync(), "pending work left");
    Ok(())
}

#[test]
fn installs_a_ruleset_that_nft_lists_as_modelled_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    let report = rec.apply()?;
    ensure!(report.failures.is_empty(), "{:?}", report.failures);
    ensure!(report.transactions == 1, "one transaction: {report:?}");

    let json = ns.nft_json("inet", "tortie")?;
    let mut chains: Vec<&str> = objects(&json, "chain")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    chains.sort();
    let mut want: Vec<&str> = rec.desired().chains().map(|(n, _)| n.as_str()).collect();
    want.sort();
    ensure!(chains == want, "chains {chains:?}, want {want:?}");
    for (name, chain) in rec.desired().chains() {
        let n = chain_rules(&json, name).len();
        ensure!(
            n == chain.rules.len(),
            "{name}: {n} rules, want {}",
            chain.rules.len()
        );
    }
    let fwd = objects(&json, "chain")
        .into_iter()
        .find(|c| c["name"] == "filter-FORWARD")
        .context("base chain")?;
    ensure!(fwd["hook"] == "forward" && fwd["prio"] == 0 && fwd["policy"] == "accept");
    ensure!(comments(&json, "filter-FORWARD")[0] == "established");
    let first = &chain_rules(&json, "filter-FORWARD")[0]["expr"][0]["match"];
    ensure!(
        first["left"]["ct"]["key"] == "state",
        "ct state first: {first}"
    );
    let sel = set_elements(&json, SEL4);
    ensure!(sel.len() == 3, "selector elements: {sel:?}");
    ensure!(sel.contains(&serde_json::json!({"concat": [1, "10.65.0.1"]})));
    let dispatch = set_elements(&json, TO_WL);
    ensure!(
        dispatch.contains(&serde_json::json!(["cali2", {"goto": {"target": "tw-cali2"}}])),
        "dispatch: {dispatch:?}"
    );
    assert_converged(&mut rec)
}

#[test]
fn set_elements_change_without_touching_rules_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    rec.apply()?;
    let before = ns.nft_json("inet", "tortie")?;

    for i in 0..200u32 {
        layout::select(
            rec.desired_mut(),
            10 + i % 7,
            &format!("10.70.{}.{}/32", i / 250, i % 250),
        );
    }
    let report = rec.apply()?;
    ensure!(
        report.messages == 1,
        "200 elements in one message: {report:?}"
    );
    ensure!(set_elements(&ns.nft_json("inet", "tortie")?, SEL4).len() == 203);

    for i in 0..100u32 {
        layout::unselect(
            rec.desired_mut(),
            10 + i % 7,
            &format!("10.70.{}.{}/32", i / 250, i % 250),
        );
    }
    let report = rec.apply()?;
    ensure!(report.messages == 1, "one delete message: {report:?}");

    // Retargeting a dispatch entry is a delete and an add.
    rec.desired_mut().put_element(
        TO_WL,
        Key::exact(ifname_bytes("cali1")),
        Some(Data::Verdict(Verdict::Goto("tw-cali2".into()))),
    )?;
    let report = rec.apply()?;
    ensure!(report.messages == 2, "{report:?}");
    let after = ns.nft_json("inet", "tortie")?;
    ensure!(set_elements(&after, SEL4).len() == 103);
    ensure!(
        set_elements(&after, TO_WL)
            .contains(&serde_json::json!(["cali1", {"goto": {"target": "tw-cali2"}}]))
    );
    for chain in ["filter-FORWARD", "tw-cali1", "tw-cali2", "pi-web"] {
        ensure!(
            handles(&before, chain) == handles(&after, chain),
            "rules of {chain} untouched"
        );
    }
    assert_converged(&mut rec)
}

fn numbered(n: usize) -> Rule {
    Rule::new(
        [
            rules::ifname(Iface::In, &format!("eth{n}")),
            vec![rules::verdict(Verdict::Accept)],
        ]
        .concat(),
    )
    .with_comment(format!("r{n}"))
}

#[test]
fn a_rule_edit_in_a_long_chain_is_one_message_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    let mut rules: Vec<Rule> = (0..50).map(numbered).collect();
    rec.desired_mut()
        .put_chain("long", Chain::regular(rules.clone()));
    rec.apply()?;
    let before = ns.nft_json("inet", "tortie")?;

    // Changed in place: replaced, keeping its handle.
    rules[25] = numbered(1025);
    rec.desired_mut()
        .put_chain("long", Chain::regular(rules.clone()));
    let report = rec.apply()?;
    ensure!(report.messages == 1, "{report:?}");
    let after = ns.nft_json("inet", "tortie")?;
    ensure!(
        handles(&before, "long") == handles(&after, "long"),
        "every handle kept"
    );
    ensure!(comments(&after, "long")[25] == "r1025");

    // Inserted in the middle (its neighbours' handles are unknown to the
    // reconciler until it reads the chain), then removed.
    rules.insert(10, numbered(2000));
    rules.insert(11, numbered(2001));
    rec.desired_mut()
        .put_chain("long", Chain::regular(rules.clone()));
    let report = rec.apply()?;
    ensure!(report.messages == 2, "{report:?}");
    let want: Vec<String> = rules
        .iter()
        .map(|r| r.comment.clone().unwrap_or_default())
        .collect();
    ensure!(comments(&ns.nft_json("inet", "tortie")?, "long") == want);
    rules.remove(40);
    rec.desired_mut()
        .put_chain("long", Chain::regular(rules.clone()));
    let report = rec.apply()?;
    ensure!(report.messages == 1, "{report:?}");
    let want: Vec<String> = rules
        .iter()
        .map(|r| r.comment.clone().unwrap_or_default())
        .collect();
    ensure!(comments(&ns.nft_json("inet", "tortie")?, "long") == want);
    assert_converged(&mut rec)
}

#[test]
fn drift_is_repaired_and_foreign_tables_survive_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    ns.nft_script(
        "table ip foreign {\n\
           set s { type ipv4_addr; elements = { 192.0.2.1 } }\n\
           chain c { type filter hook input priority 0; policy accept; ip saddr @s counter accept; }\n\
         }\n",
    )?;
    let foreign = ns.nft(&["list", "table", "ip", "foreign"])?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    rec.apply()?;
    let good = listing(&ns)?;

    let json = ns.nft_json("inet", "tortie")?;
    let victim = handles(&json, "tw-cali2")[1].to_string();
    ns.nft(&[
        "delete", "rule", "inet", "tortie", "tw-cali2", "handle", &victim,
    ])?;
    // (nft 1.0.6 cannot delete one element of a concatenated interval
    // set, even one it added itself; it can empty the set.)
    ns.nft(&["flush", "set", "inet", "tortie", SEL4])?;
    ns.nft(&[
        "delete",
        "element",
        "inet",
        "tortie",
        TO_WL,
        "{ \"cali1\" }",
    ])?;
    ns.nft(&["add", "rule", "inet", "tortie", "tw-cali1", "accept"])?;
    ns.nft(&["insert", "rule", "inet", "tortie", "pi-web", "counter"])?;
    ns.nft(&["add", "chain", "inet", "tortie", "intruder"])?;
    ns.nft(&[
        "add",
        "set",
        "inet",
        "tortie",
        "intruder-set",
        "{ type ipv4_addr; }",
    ])?;
    ns.nft(&[
        "add",
        "element",
        "inet",
        "tortie",
        SEL4,
        "{ 0x00000009 . 192.0.2.0/24 }",
    ])?;
    ensure!(listing(&ns)? != good);
    rec.resync()?;
    let report = rec.apply()?;
    ensure!(report.failures.is_empty(), "{:?}", report.failures);
    ensure!(listing(&ns)? == good, "drift repaired");
    assert_converged(&mut rec)?;

    ns.nft(&["flush", "table", "inet", "tortie"])?;
    rec.resync()?;
    rec.apply()?;
    ensure!(listing(&ns)? == good, "flushed table refilled");

    ns.nft(&["delete", "table", "inet", "tortie"])?;
    rec.resync()?;
    rec.apply()?;
    ensure!(listing(&ns)? == good, "deleted table recreated");
    ensure!(
        ns.nft(&["list", "table", "ip", "foreign"])? == foreign,
        "foreign table untouched"
    );
    assert_converged(&mut rec)
}

#[test]
fn a_generation_gated_resync_reads_only_after_a_change_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    rec.apply()?;
    let good = listing(&ns)?;
    // Our own commit moved the generation; it is known, so nothing is read.
    ensure!(!rec.resync_if_changed()?, "read after our own commit");
    ensure!(!rec.resync_if_changed()?, "read with nothing changed");

    ns.nft(&["flush", "table", "inet", "tortie"])?;
    ensure!(rec.resync_if_changed()?, "a flush must trigger a read");
    let report = rec.apply()?;
    ensure!(
        report.transactions == 1,
        "one repair transaction: {report:?}"
    );
    ensure!(listing(&ns)? == good, "flushed table refilled");
    ensure!(!rec.resync_if_changed()?, "read after the repair commit");
    assert_converged(&mut rec)
}

#[test]
fn a_plain_concatenated_set_holds_exact_elements_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    let spec = SetSpec::plain(vec![KeyField::IPV4_ADDR, KeyField::INET_SERVICE]);
    rec.desired_mut().put_set("addr-port", spec);
    let key = |a: [u8; 4], p: u16| {
        Key::exact(tortie_dataplane::nft::model::concat_key(&[
            &a,
            &p.to_be_bytes(),
        ]))
    };
    rec.desired_mut()
        .put_element("addr-port", key([10, 0, 0, 1], 80), None)?;
    rec.desired_mut()
        .put_element("addr-port", key([10, 0, 0, 2], 443), None)?;
    let report = rec.apply()?;
    ensure!(report.failures.is_empty(), "{:?}", report.failures);
    let elements = set_elements(&ns.nft_json("inet", "tortie")?, "addr-port");
    ensure!(elements.len() == 2, "elements: {elements:?}");
    ensure!(
        elements.contains(&serde_json::json!({"concat": ["10.0.0.2", 443]})),
        "elements: {elements:?}"
    );
    assert_converged(&mut rec)
}

#[test]
fn a_restarted_reconciler_takes_the_table_over_in_place_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut first = open(&ns)?;
    small_ruleset(&mut first);
    first.apply()?;
    let before = ns.nft_json("inet", "tortie")?;
    drop(first);

    let mut second = open(&ns)?;
    small_ruleset(&mut second);
    let report = second.apply()?;
    ensure!(report.transactions == 0, "nothing to do: {report:?}");
    ensure!(
        ns.nft_json("inet", "tortie")? == before,
        "not one handle changed"
    );

    // A change while the daemon was down is applied as a delta.
    second
        .desired_mut()
        .put_chain("pi-db", layout::policy_chain(&[(3, 5432), (4, 5433)]));
    let report = second.apply()?;
    ensure!(report.messages == 1, "{report:?}");
    let after = ns.nft_json("inet", "tortie")?;
    ensure!(handles(&before, "filter-FORWARD") == handles(&after, "filter-FORWARD"));
    assert_converged(&mut second)
}

#[test]
fn refused_items_stay_pending_without_blocking_the_rest_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    // The kernel has no meta key 200: this chain is refused.
    let bad = Rule::new(vec![
        Expr::Meta {
            key: MetaKey(200),
            dreg: Reg::r32(0),
        },
        Expr::Cmp {
            sreg: Reg::r32(0),
            op: CmpOp::EQ,
            data: vec![1],
        },
    ]);
    rec.desired_mut()
        .put_chain("bad", Chain::regular(vec![bad]));
    // Refused before the kernel: jumps to a chain that is not desired.
    rec.desired_mut().put_chain(
        "dangling",
        Chain::regular(vec![Rule::new(vec![rules::verdict(Verdict::Jump(
            "nowhere".into(),
        ))])]),
    );
    // Overlapping ranges in one selector: the kernel refuses the second.
    for i in 0..100u32 {
        layout::select(rec.desired_mut(), 7, &format!("10.80.0.{i}/32"));
    }
    layout::select(rec.desired_mut(), 7, "10.80.0.0/24");
    let report = rec.apply()?;
    let failed: Vec<&Item> = report.failures.iter().map(|f| &f.item).collect();
    ensure!(failed.contains(&&Item::Chain("bad".into())), "{report:?}");
    ensure!(
        failed.contains(&&Item::Chain("dangling".into())),
        "{report:?}"
    );
    ensure!(
        failed.contains(&&Item::Elements {
            set: SEL4.into(),
            count: 1
        }),
        "one element isolated: {report:?}"
    );
    ensure!(
        report.failures.len() == 3,
        "only these: {:?}",
        report.failures
    );
    ensure!(!rec.in_sync());
    let json = ns.nft_json("inet", "tortie")?;
    ensure!(
        chain_rules(&json, "tw-cali2").len() == 6,
        "the rest is installed"
    );
    ensure!(
        set_elements(&json, SEL4).len() == 103,
        "{:?}",
        set_elements(&json, SEL4).len()
    );

    // Fixed: the pending items go in.
    rec.desired_mut().remove_chain("bad");
    rec.desired_mut()
        .put_chain("nowhere", Chain::regular(vec![]));
    layout::unselect(rec.desired_mut(), 7, "10.80.0.0/24");
    let report = rec.apply()?;
    ensure!(report.failures.is_empty(), "{report:?}");
    ensure!(chain_rules(&ns.nft_json("inet", "tortie")?, "dangling").len() == 1);
    assert_converged(&mut rec)
}

#[test]
fn a_jump_loop_is_refused_without_blocking_the_rest_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    rec.apply()?;
    let jump = |to: &str| {
        Chain::regular(vec![Rule::new(vec![rules::verdict(Verdict::Jump(
            to.into(),
        ))])])
    };
    rec.desired_mut().put_chain("loop-a", jump("loop-b"));
    rec.desired_mut().put_chain("loop-b", jump("loop-a"));
    rec.desired_mut()
        .put_chain("pi-web", layout::policy_chain(&[(1, 8080)]));
    rec.desired_mut().put_chain(
        "tw-cali1",
        layout::endpoint_chain(&policies(&["loop-a", "pi-web"])),
    );
    let report = rec.apply()?;
    ensure!(
        !report.failures.is_empty(),
        "the loop is refused: {report:?}"
    );
    let json = ns.nft_json("inet", "tortie")?;
    let pi_web = chain_rules(&json, "pi-web");
    ensure!(
        pi_web.len() == 1,
        "the unrelated change went in: {pi_web:?}"
    );
    Ok(())
}

#[test]
fn a_set_whose_shape_changes_is_recreated_with_its_users_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    let r = rec.desired_mut();
    r.put_set("ports", SetSpec::plain(vec![KeyField::INET_SERVICE]));
    r.put_element("ports", Key::exact(80u16.to_be_bytes().to_vec()), None)?;
    let lookup = Rule::new(
        [
            rules::l4proto(6),
            vec![
                Expr::Payload {
                    base: tortie_dataplane::nft::expr::PayloadBase::TRANSPORT,
                    offset: 2,
                    len: 2,
                    dreg: Reg::r32(0),
                },
                Expr::Lookup {
                    set: "ports".into(),
                    sreg: Reg::r32(0),
                    dreg: None,
                    invert: false,
                },
                rules::verdict(Verdict::Accept),
            ],
        ]
        .concat(),
    );
    r.put_chain("user", Chain::regular(vec![lookup]));
    rec.apply()?;

    let r = rec.desired_mut();
    r.put_set("ports", SetSpec::interval(vec![KeyField::INET_SERVICE]));
    r.put_element(
        "ports",
        Key::range(
            8000u16.to_be_bytes().to_vec(),
            8999u16.to_be_bytes().to_vec(),
        ),
        None,
    )?;
    r.put_element("ports", Key::range(vec![0, 80], vec![0, 80]), None)?;
    let report = rec.apply()?;
    ensure!(
        report.failures.is_empty() && report.transactions == 1,
        "{report:?}"
    );
    let json = ns.nft_json("inet", "tortie")?;
    let set = objects(&json, "set")
        .into_iter()
        .find(|s| s["name"] == "ports")
        .context("set")?;
    ensure!(set["flags"] == serde_json::json!(["interval"]), "{set}");
    ensure!(
        set["elem"] == serde_json::json!([80, {"range": [8000, 8999]}]),
        "{}",
        set["elem"]
    );
    ensure!(chain_rules(&json, "user").len() == 1);
    assert_converged(&mut rec)
}

#[test]
fn interval_sets_hold_adjacent_and_open_ranges_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    let r = rec.desired_mut();
    r.put_set("nets", SetSpec::interval(vec![KeyField::IPV4_ADDR]));
    for (a, b) in [
        ([10, 0, 0, 0], [10, 0, 0, 255]),
        ([10, 0, 1, 0], [10, 0, 1, 127]),
        ([192, 168, 0, 1], [192, 168, 0, 1]),
        ([255, 255, 255, 0], [255, 255, 255, 255]),
    ] {
        r.put_element("nets", Key::range(a.to_vec(), b.to_vec()), None)?;
    }
    rec.apply()?;
    assert_converged(&mut rec)?;
    let elems = set_elements(&ns.nft_json("inet", "tortie")?, "nets");
    ensure!(elems.len() == 4, "{elems:?}");
    rec.desired_mut()
        .remove_element("nets", &Key::range(vec![10, 0, 0, 0], vec![10, 0, 0, 255]));
    let report = rec.apply()?;
    ensure!(report.messages == 1, "{report:?}");
    let elems = set_elements(&ns.nft_json("inet", "tortie")?, "nets");
    ensure!(
        elems
            == vec![
                serde_json::json!({"prefix": {"addr": "10.0.1.0", "len": 25}}),
                serde_json::json!("192.168.0.1"),
                serde_json::json!({"prefix": {"addr": "255.255.255.0", "len": 24}}),
            ],
        "{elems:?}"
    );
    assert_converged(&mut rec)
}

#[test]
fn a_base_chain_policy_changes_in_place_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    let base = |policy| {
        Chain::base(
            BaseChain {
                hook: Hook::Input,
                chain_type: ChainType::Filter,
                priority: 10,
                policy,
            },
            vec![Rule::new(
                [
                    rules::ifname(Iface::In, "lo"),
                    vec![rules::verdict(Verdict::Accept)],
                ]
                .concat(),
            )],
        )
    };
    rec.desired_mut()
        .put_chain("filter-INPUT", base(Policy::Accept));
    rec.apply()?;
    let before = ns.nft_json("inet", "tortie")?;
    rec.desired_mut()
        .put_chain("filter-INPUT", base(Policy::Drop));
    let report = rec.apply()?;
    ensure!(report.messages == 1, "{report:?}");
    let after = ns.nft_json("inet", "tortie")?;
    let chain = objects(&after, "chain")
        .into_iter()
        .next()
        .context("chain")?;
    ensure!(chain["policy"] == "drop", "{chain}");
    ensure!(handles(&before, "filter-INPUT") == handles(&after, "filter-INPUT"));
    // A different priority cannot be changed in place: recreated.
    let mut moved = base(Policy::Drop);
    if let Some(b) = moved.base.as_mut() {
        b.priority = -5;
    }
    rec.desired_mut().put_chain("filter-INPUT", moved);
    rec.apply()?;
    let chain = objects(&ns.nft_json("inet", "tortie")?, "chain")
        .into_iter()
        .next()
        .cloned()
        .context("chain")?;
    ensure!(chain["prio"] == -5, "{chain}");
    assert_converged(&mut rec)
}

#[test]
fn removing_everything_leaves_an_empty_table_needs_root() -> Result<()> {
    let ns = TestNetns::new("nft")?;
    let mut rec = open(&ns)?;
    small_ruleset(&mut rec);
    rec.apply()?;
    let r = rec.desired_mut();
    let chains: Vec<String> = r.chains().map(|(n, _)| n.clone()).collect();
    let sets: Vec<String> = r.sets().map(|(n, _)| n.clone()).collect();
    for c in chains {
        r.remove_chain(&c);
    }
    for s in sets {
        r.remove_set(&s);
    }
    let report = rec.apply()?;
    ensure!(
        report.failures.is_empty() && report.transactions == 1,
        "{report:?}"
    );
    let json = ns.nft_json("inet", "tortie")?;
    ensure!(json.len() == 1, "only the table is left: {json:?}");
    // The byte form of an interface name as a cmp operand, for reference.
    ensure!(
        rules::ifname(Iface::Out, "cali1")[1]
            == Expr::Cmp {
                sreg: Reg::r32(0),
                op: CmpOp::EQ,
                data: ifname_bytes("cali1"),
            }
    );
    assert_converged(&mut rec)
}
