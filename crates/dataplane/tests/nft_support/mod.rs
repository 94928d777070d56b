//! nftables helpers of the nft tests and benchmark (they need root) on
//! top of `tortie_testkit::TestNetns` (the namespaces, `nft` run inside
//! them, reconcilers opened on a thread `setns`ed into them): picking
//! objects out of `nft -j` listings, and [`layout`], a Calico-shaped
//! ruleset to install.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use serde_json::Value;

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
