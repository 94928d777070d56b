//! Policy and profile rules parsed once into the form both the compiler and
//! the explain engine work from (policy.md §4).
//!
//! Parsing resolves what the stored form leaves implicit: protocol names
//! become numbers; numeric and named ports are split (a named port becomes
//! an IP set of (address, protocol, port) members, keyed by the rule's
//! positive selector — or `all()` — and the protocol the rule implies, TCP
//! when it names none); selectors are rewritten per selectors.md §6.3 and
//! given their IP set IDs; and the rule's address family is pinned from
//! `ipVersion`, an ICMP/ICMPv6 protocol or the family of its nets.
//!
//! Hard cases: a rule with `services` can match only Kubernetes service
//! addresses, which tortie's datastore does not carry, so it never matches;
//! HTTP criteria are enforced only by an application-layer proxy, so the
//! L3/L4 dataplane (and explain, to agree with it) ignore them; any value
//! that does not parse makes the whole resource invalid.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha224};
use tortie_model::rule::{Action, EntityRule, IcmpMatch as ModelIcmp, Rule};
use tortie_model::scalar::{Port, PortValue, Protocol, parse_cidr};
use tortie_selector::Selector;

use crate::selectors::{ScopedSelector, peer_selectors};

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of_net(net: &IpNet) -> IpFamily {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    pub fn of_addr(addr: &std::net::IpAddr) -> IpFamily {
        if addr.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }
}

/// An inclusive port range (a single port has `min == max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.min <= port && port <= self.max
    }
}

/// The protocol of a named-port IP set's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamedPortProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl NamedPortProtocol {
    pub fn from_number(n: u8) -> Option<NamedPortProtocol> {
        match n {
            6 => Some(NamedPortProtocol::Tcp),
            17 => Some(NamedPortProtocol::Udp),
            132 => Some(NamedPortProtocol::Sctp),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            NamedPortProtocol::Tcp => 6,
            NamedPortProtocol::Udp => 17,
            NamedPortProtocol::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NamedPortProtocol::Tcp => "tcp",
            NamedPortProtocol::Udp => "udp",
            NamedPortProtocol::Sctp => "sctp",
        }
    }
}

/// An ICMP type and optional code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IcmpMatch {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

impl IcmpMatch {
    pub fn matches(&self, icmp_type: u8, code: u8) -> bool {
        self.icmp_type == icmp_type && self.code.is_none_or(|c| c == code)
    }
}

/// A reference to an IP set: a selector's set, or a named port's set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetRef {
    /// `s:<hash>` for selectors, `n:<hash>` for named ports (policy.md §6).
    pub uid: String,
    pub selector: ScopedSelector,
    /// For named-port sets: the protocol and port name.
    pub named_port: Option<(NamedPortProtocol, String)>,
}

impl SetRef {
    fn selector(selector: ScopedSelector) -> SetRef {
        SetRef {
            uid: selector.selector.unique_id(),
            selector,
            named_port: None,
        }
    }

    /// The set of (address, protocol, port) for endpoints matching
    /// `selector` that declare port `name` with `protocol`. The ID follows
    /// Calico: `n:` + base64url(SHA-224(`n:<selector id>,<proto>,<name>`)).
    fn named_port(selector: ScopedSelector, protocol: NamedPortProtocol, name: &str) -> SetRef {
        let mut hasher = Sha224::new();
        hasher.update(b"n:");
        hasher.update(selector.selector.unique_id().as_bytes());
        hasher.update(b",");
        hasher.update(protocol.as_str().as_bytes());
        hasher.update(b",");
        hasher.update(name.as_bytes());
        let mut uid = String::from("n:");
        URL_SAFE_NO_PAD.encode_string(hasher.finalize(), &mut uid);
        SetRef {
            uid,
            selector,
            named_port: Some((protocol, name.to_string())),
        }
    }
}

/// A parsed `source` or `destination`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedEntity {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    pub selector: Option<SetRef>,
    pub not_selector: Option<SetRef>,
    pub ports: Vec<PortRange>,
    pub named_ports: Vec<SetRef>,
    pub not_ports: Vec<PortRange>,
    pub not_named_ports: Vec<SetRef>,
}

impl ParsedEntity {
    /// Every IP set this entity references.
    pub fn set_refs(&self) -> impl Iterator<Item = &SetRef> {
        self.selector
            .iter()
            .chain(&self.not_selector)
            .chain(&self.named_ports)
            .chain(&self.not_named_ports)
    }

    /// True if the entity constrains ports at all.
    pub fn has_ports(&self) -> bool {
        !self.ports.is_empty() || !self.named_ports.is_empty()
    }
}

/// A parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRule {
    pub action: Action,
    /// The only family the rule can match, if it is pinned to one.
    pub family: Option<IpFamily>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: ParsedEntity,
    pub destination: ParsedEntity,
    /// The rule names Kubernetes services, which tortie cannot resolve: it
    /// never matches.
    pub never_matches: bool,
    /// The rule carries HTTP criteria (ignored by the L3/L4 dataplane).
    pub has_http: bool,
}

impl ParsedRule {
    pub fn set_refs(&self) -> impl Iterator<Item = &SetRef> {
        self.source.set_refs().chain(self.destination.set_refs())
    }
}

fn protocol_number(p: &Protocol, field: &str) -> Result<u8, String> {
    p.number().map_err(|e| format!("{field}: {e}"))
}

fn icmp(m: &ModelIcmp, field: &str) -> Result<IcmpMatch, String> {
    let icmp_type = m
        .icmp_type
        .ok_or_else(|| format!("{field}: type is required"))?;
    let icmp_type =
        u8::try_from(icmp_type).map_err(|_| format!("{field}.type: {icmp_type} out of range"))?;
    let code = m
        .code
        .map(|c| u8::try_from(c).map_err(|_| format!("{field}.code: {c} out of range")))
        .transpose()?;
    Ok(IcmpMatch { icmp_type, code })
}

/// Splits ports into numeric ranges and names.
fn split_ports(ports: &[Port], field: &str) -> Result<(Vec<PortRange>, Vec<String>), String> {
    let mut ranges = Vec::new();
    let mut names = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        match p.parse().map_err(|e| format!("{field}[{i}]: {e}"))? {
            PortValue::Range { min, max } => ranges.push(PortRange { min, max }),
            PortValue::Named(n) => names.push(n),
        }
    }
    Ok((ranges, names))
}

fn nets(list: &[String], field: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .enumerate()
        .map(|(i, n)| {
            parse_cidr(n)
                .map(|net| net.trunc())
                .map_err(|e| format!("{field}[{i}]: {e}"))
        })
        .collect()
}

fn parse_entity(
    e: &EntityRule,
    policy_namespace: Option<&str>,
    named_port_protocol: NamedPortProtocol,
    path: &str,
) -> Result<ParsedEntity, String> {
    let sels = peer_selectors(e, policy_namespace, path)?;
    let (ports, named) = split_ports(&e.ports, &format!("{path}.ports"))?;
    let (not_ports, not_named) = split_ports(&e.not_ports, &format!("{path}.notPorts"))?;
    // Named ports are filtered by the positive selector (or all()), also
    // for the negated list: the rule can only match inside that selector.
    let port_selector = sels
        .selector
        .clone()
        .unwrap_or_else(|| ScopedSelector::unscoped(Selector::all()));
    let named_sets = |names: Vec<String>| -> Vec<SetRef> {
        names
            .iter()
            .map(|n| SetRef::named_port(port_selector.clone(), named_port_protocol, n))
            .collect()
    };
    Ok(ParsedEntity {
        nets: nets(&e.nets, &format!("{path}.nets"))?,
        not_nets: nets(&e.not_nets, &format!("{path}.notNets"))?,
        named_ports: named_sets(named),
        not_named_ports: named_sets(not_named),
        selector: sels.selector.map(SetRef::selector),
        not_selector: sels.not_selector.map(SetRef::selector),
        ports,
        not_ports,
    })
}

/// The family a rule is pinned to, or an error if its criteria disagree.
fn rule_family(
    rule: &Rule,
    protocol: Option<u8>,
    entities: [&ParsedEntity; 2],
    path: &str,
) -> Result<Option<IpFamily>, String> {
    let mut family = match rule.ip_version {
        None => None,
        Some(4) => Some(IpFamily::V4),
        Some(6) => Some(IpFamily::V6),
        Some(v) => return Err(format!("{path}.ipVersion: {v} is not 4 or 6")),
    };
    let mut pin = |f: IpFamily, why: &str| match family {
        Some(existing) if existing != f => Err(format!(
            "{path}: {why} conflicts with the rule's other criteria"
        )),
        _ => {
            family = Some(f);
            Ok(())
        }
    };
    match protocol {
        Some(1) => pin(IpFamily::V4, "protocol ICMP")?,
        Some(58) => pin(IpFamily::V6, "protocol ICMPv6")?,
        _ => {}
    }
    for e in entities {
        for net in e.nets.iter().chain(&e.not_nets) {
            pin(IpFamily::of_net(net), "the family of a net")?;
        }
    }
    Ok(family)
}

/// Parses one rule; `policy_namespace` scopes its selectors.
pub fn parse_rule(
    rule: &Rule,
    policy_namespace: Option<&str>,
    path: &str,
) -> Result<ParsedRule, String> {
    let protocol = rule
        .protocol
        .as_ref()
        .map(|p| protocol_number(p, &format!("{path}.protocol")))
        .transpose()?;
    let not_protocol = rule
        .not_protocol
        .as_ref()
        .map(|p| protocol_number(p, &format!("{path}.notProtocol")))
        .transpose()?;
    let named_port_protocol = protocol
        .and_then(NamedPortProtocol::from_number)
        .unwrap_or(NamedPortProtocol::Tcp);
    let source = parse_entity(
        &rule.source,
        policy_namespace,
        named_port_protocol,
        &format!("{path}.source"),
    )?;
    let destination = parse_entity(
        &rule.destination,
        policy_namespace,
        named_port_protocol,
        &format!("{path}.destination"),
    )?;
    let family = rule_family(rule, protocol, [&source, &destination], path)?;
    Ok(ParsedRule {
        action: rule.action,
        family,
        protocol,
        not_protocol,
        icmp: rule
            .icmp
            .as_ref()
            .map(|m| icmp(m, &format!("{path}.icmp")))
            .transpose()?,
        not_icmp: rule
            .not_icmp
            .as_ref()
            .map(|m| icmp(m, &format!("{path}.notICMP")))
            .transpose()?,
        never_matches: rule.source.services.is_some() || rule.destination.services.is_some(),
        has_http: rule.http.is_some(),
        source,
        destination,
    })
}

/// Parses a rule list at `path` (e.g. `spec.ingress`).
pub fn parse_rules(
    rules: &[Rule],
    policy_namespace: Option<&str>,
    path: &str,
) -> Result<Vec<ParsedRule>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| parse_rule(r, policy_namespace, &format!("{path}[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_model::scalar::IntOrString;

    fn rule(f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule::action(Action::Allow);
        f(&mut r);
        r
    }

    #[test]
    fn family_is_pinned_by_protocol_version_and_nets() {
        let r = parse_rule(
            &rule(|r| r.protocol = Some(Protocol::named("ICMPv6"))),
            None,
            "r",
        )
        .unwrap();
        assert_eq!(r.family, Some(IpFamily::V6));
        let r = parse_rule(
            &rule(|r| r.destination.nets = vec!["10.0.0.0/8".into()]),
            None,
            "r",
        )
        .unwrap();
        assert_eq!(r.family, Some(IpFamily::V4));
        let r = parse_rule(&rule(|_| {}), None, "r").unwrap();
        assert_eq!(r.family, None);
        assert!(
            parse_rule(
                &rule(|r| {
                    r.ip_version = Some(6);
                    r.source.nets = vec!["10.0.0.0/8".into()];
                }),
                None,
                "r"
            )
            .is_err()
        );
    }

    #[test]
    fn named_ports_become_sets_filtered_by_the_positive_selector() {
        let r = parse_rule(
            &rule(|r| {
                r.protocol = Some(Protocol::named("UDP"));
                r.destination.selector = "app == 'dns'".into();
                r.destination.ports = vec![
                    Port(IntOrString::Str("dns".into())),
                    Port::number(53),
                    Port(IntOrString::Str("1000:2000".into())),
                ];
            }),
            Some("kube-system"),
            "r",
        )
        .unwrap();
        let d = &r.destination;
        assert_eq!(
            d.ports,
            [
                PortRange { min: 53, max: 53 },
                PortRange {
                    min: 1000,
                    max: 2000
                }
            ]
        );
        assert_eq!(d.named_ports.len(), 1);
        let np = &d.named_ports[0];
        assert!(np.uid.starts_with("n:"));
        assert_eq!(np.named_port, Some((NamedPortProtocol::Udp, "dns".into())));
        assert_eq!(np.selector, d.selector.as_ref().unwrap().selector);
        // Without a protocol, named ports are TCP; without a selector, all().
        let r = parse_rule(
            &rule(|r| r.destination.ports = vec![Port(IntOrString::Str("http".into()))]),
            None,
            "r",
        )
        .unwrap();
        let np = &r.destination.named_ports[0];
        assert_eq!(np.named_port, Some((NamedPortProtocol::Tcp, "http".into())));
        assert!(np.selector.selector.is_all());
    }
}
