//! Policy rules: `Rule` and `EntityRule` (policy.md §4), shared by network
//! policies, global network policies, their staged variants and profiles.
//!
//! Validation here covers everything that depends on the rule alone plus its
//! direction and whether the owning policy is global: protocol/port
//! compatibility, ICMP, address families across `nets`/`notNets`/`ipVersion`,
//! `namespaceSelector: global()` standing alone, service matches and HTTP.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::scalar::{Port, PortValue, Protocol};
use crate::validate::{Checker, quoted};

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    Log,
    Pass,
}

/// One ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    /// A rule with only an action, matching everything.
    pub fn action(action: Action) -> Rule {
        Rule {
            action,
            ip_version: None,
            protocol: None,
            icmp: None,
            not_protocol: None,
            not_icmp: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            http: None,
            metadata: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpMatch {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The `source` or `destination` of a rule. Every criterion present must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

impl EntityRule {
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }

    /// True when any criterion that picks peers by address or identity is set
    /// (everything but ports and services).
    fn has_peer_match(&self) -> bool {
        !self.nets.is_empty()
            || !self.not_nets.is_empty()
            || !self.selector.is_empty()
            || !self.not_selector.is_empty()
            || !self.namespace_selector.is_empty()
            || self.service_accounts.is_some()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// Which list a rule sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// What the rule's owner imposes on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuleContext {
    pub direction: Direction,
    /// Rules of global policies must name the namespace of a service.
    pub global_policy: bool,
}

/// Normalises what is stored: ports in canonical form.
pub(crate) fn normalise_rules(rules: &mut [Rule]) {
    for rule in rules {
        for entity in [&mut rule.source, &mut rule.destination] {
            for p in entity.ports.iter_mut().chain(entity.not_ports.iter_mut()) {
                *p = p.normalised();
            }
        }
    }
}

/// Validates a list of rules (at most 1024) at `path` (e.g. `spec.ingress`).
pub(crate) fn validate_rules(c: &mut Checker, path: &str, rules: &[Rule], ctx: RuleContext) {
    if rules.len() > 1024 {
        c.fail(
            path,
            format!("has {} rules: at most 1024 are allowed", rules.len()),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        validate_rule(c, &format!("{path}[{i}]"), rule, ctx);
    }
}

fn validate_rule(c: &mut Checker, path: &str, rule: &Rule, ctx: RuleContext) {
    if let Some(v) = rule.ip_version
        && v != 4
        && v != 6
    {
        c.bad(format!("{path}.ipVersion"), v, "must be 4 or 6");
    }
    let proto_num = rule.protocol.as_ref().and_then(|p| match p.number() {
        Ok(n) => Some(n),
        Err(e) => {
            c.bad(format!("{path}.protocol"), p, e);
            None
        }
    });
    if let Some(p) = &rule.not_protocol
        && let Err(e) = p.number()
    {
        c.bad(format!("{path}.notProtocol"), p, e);
    }

    // The address family the rule is pinned to, and by what.
    let mut family: Option<(u8, String)> = rule.ip_version.and_then(|v| match v {
        4 => Some((4, "ipVersion 4".to_string())),
        6 => Some((6, "ipVersion 6".to_string())),
        _ => None,
    });
    let mut pin_family = |c: &mut Checker, fam: u8, why: String, field: &str| match &family {
        Some((f, first)) if *f != fam => {
            c.fail(field.to_string(), format!("{why} conflicts with {first}"));
        }
        Some(_) => {}
        None => family = Some((fam, why)),
    };
    match proto_num {
        Some(1) => pin_family(c, 4, "protocol ICMP".into(), &format!("{path}.protocol")),
        Some(58) => pin_family(c, 6, "protocol ICMPv6".into(), &format!("{path}.protocol")),
        _ => {}
    }

    for (field, icmp) in [("icmp", &rule.icmp), ("notICMP", &rule.not_icmp)] {
        let Some(icmp) = icmp else { continue };
        let p = format!("{path}.{field}");
        if !matches!(proto_num, Some(1 | 58)) {
            c.fail(&p, "requires protocol ICMP or ICMPv6");
        }
        if let Some(t) = icmp.icmp_type {
            c.range(&format!("{p}.type"), t, 0, 254);
        }
        match icmp.code {
            Some(code) if icmp.icmp_type.is_none() => {
                c.bad(format!("{p}.code"), code, "requires type to be set");
            }
            Some(code) => c.range(&format!("{p}.code"), code, 0, 255),
            None => {}
        }
    }

    for (name, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        let p = format!("{path}.{name}");
        for (field, nets) in [("nets", &entity.nets), ("notNets", &entity.not_nets)] {
            if nets.len() > 256 {
                c.fail(format!("{p}.{field}"), "at most 256 entries are allowed");
            }
            for (i, n) in nets.iter().enumerate() {
                let fp = format!("{p}.{field}[{i}]");
                let Some(net) = c.strict_cidr(&fp, n) else {
                    continue;
                };
                if field == "notNets" && net.prefix_len() == 0 {
                    c.bad(&fp, quoted(n), "notNets may not match every address");
                }
                let fam = if net.addr().is_ipv4() { 4 } else { 6 };
                pin_family(c, fam, format!("{field} {n}"), &fp);
            }
        }
        validate_entity_selectors(c, &p, entity);
        validate_ports(
            c,
            &p,
            "ports",
            &entity.ports,
            rule.protocol.as_ref(),
            proto_num,
        );
        validate_ports(
            c,
            &p,
            "notPorts",
            &entity.not_ports,
            rule.protocol.as_ref(),
            proto_num,
        );
        if let Some(svc) = &entity.services {
            let sp = format!("{p}.services");
            let allowed_here = matches!(
                (name, ctx.direction),
                ("source", Direction::Ingress) | ("destination", Direction::Egress)
            );
            if !allowed_here {
                c.fail(
                    &sp,
                    if name == "source" {
                        "source services are only allowed in ingress rules"
                    } else {
                        "destination services are only allowed in egress rules"
                    },
                );
            }
            if svc.name.is_empty() {
                c.fail(format!("{sp}.name"), "is required");
            }
            if ctx.global_policy && svc.namespace.is_empty() {
                c.fail(format!("{sp}.namespace"), "is required in a global policy");
            }
            if entity.has_peer_match() {
                c.fail(
                    &sp,
                    "cannot be combined with nets, notNets, selector, notSelector, namespaceSelector or serviceAccounts",
                );
            }
            if name == "destination" && (!entity.ports.is_empty() || !entity.not_ports.is_empty()) {
                c.fail(
                    &sp,
                    "cannot be combined with ports: the service defines them",
                );
            }
        }
    }
    if rule.source.services.is_some()
        && (rule.destination.has_peer_match() || rule.destination.services.is_some())
    {
        c.fail(
            format!("{path}.destination"),
            "with source services, the destination may only specify ports",
        );
    }

    if let Some(http) = &rule.http {
        let hp = format!("{path}.http");
        if ctx.direction != Direction::Ingress {
            c.fail(&hp, "HTTP matches are only allowed in ingress rules");
        }
        if rule.action != Action::Allow {
            c.fail(&hp, "HTTP matches are only allowed in Allow rules");
        }
        if proto_num.is_some_and(|n| n != 6) {
            c.fail(&hp, "HTTP matches require protocol TCP or no protocol");
        }
        let mut seen = BTreeSet::new();
        for (i, m) in http.methods.iter().enumerate() {
            if !seen.insert(m) {
                c.bad(
                    format!("{hp}.methods[{i}]"),
                    quoted(m),
                    "duplicate HTTP method",
                );
            }
        }
        for (i, path_match) in http.paths.iter().enumerate() {
            let pp = format!("{hp}.paths[{i}]");
            match (&path_match.exact, &path_match.prefix) {
                (Some(v), None) | (None, Some(v)) => {
                    if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
                        c.bad(
                            &pp,
                            quoted(v),
                            "must start with '/' and contain no '?', '#' or space",
                        );
                    }
                }
                _ => c.fail(&pp, "exactly one of exact or prefix must be set"),
            }
        }
    }
}

fn validate_entity_selectors(c: &mut Checker, p: &str, entity: &EntityRule) {
    c.opt_selector(&format!("{p}.selector"), &entity.selector, false);
    c.opt_selector(&format!("{p}.notSelector"), &entity.not_selector, false);
    let ns_path = format!("{p}.namespaceSelector");
    if let Some(sel) = c.opt_selector(&ns_path, &entity.namespace_selector, true)
        && sel.uses_global()
        && !sel.is_global()
    {
        c.bad(
            &ns_path,
            quoted(&entity.namespace_selector),
            "global() must stand alone in a namespaceSelector",
        );
    }
    if let Some(sa) = &entity.service_accounts {
        for (i, n) in sa.names.iter().enumerate() {
            c.subdomain(&format!("{p}.serviceAccounts.names[{i}]"), n);
        }
        c.opt_selector(
            &format!("{p}.serviceAccounts.selector"),
            &sa.selector,
            false,
        );
    }
}

fn validate_ports(
    c: &mut Checker,
    entity_path: &str,
    field: &str,
    ports: &[Port],
    protocol: Option<&Protocol>,
    proto_num: Option<u8>,
) {
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{entity_path}.{field}[{i}]");
        match port.parse() {
            Err(e) => c.bad(&p, port, e),
            Ok(PortValue::Range { .. }) => match (protocol, proto_num) {
                (None, _) => c.bad(&p, port, "numeric ports require protocol TCP, UDP or SCTP"),
                (Some(_), Some(6 | 17 | 132)) | (Some(_), None) => {}
                (Some(proto), Some(_)) => {
                    c.bad(&p, port, format!("protocol {proto} does not have ports"));
                }
            },
            Ok(PortValue::Named(_)) => {
                if let (Some(proto), Some(n)) = (protocol, proto_num)
                    && !matches!(n, 6 | 17 | 132)
                {
                    c.bad(&p, port, format!("protocol {proto} does not have ports"));
                }
            }
        }
    }
}
