//! Kubernetes `networking.k8s.io/v1` NetworkPolicy: the document type, its
//! conversion to a Calico NetworkPolicy (policy.md §5), and the
//! StagedKubernetesNetworkPolicy kind that embeds the same spec.
//!
//! A converted policy is named `knp.default.<name>`, sits in tier `default`
//! at order 1000, and gets one Allow rule per (peer × protocol) of each
//! Kubernetes rule. Selector text follows Calico's converter exactly, so the
//! stored policy is the same as Calico's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::endpoint::ORCHESTRATOR_LABEL;
use crate::kind::SpecRules;
use crate::meta::ObjectMeta;
use crate::policy::{NetworkPolicySpec, PolicyType, StagedAction};
use crate::rule::{Action, EntityRule, Rule};
use crate::scalar::{IntOrString, Port, Protocol, validate_port_name};
use crate::validate::{Checker, quoted};

/// The API version of Kubernetes network policies.
pub const K8S_NETWORKING_API_VERSION: &str = "networking.k8s.io/v1";

/// Name prefix of Calico policies converted from Kubernetes ones.
pub const KNP_PREFIX: &str = "knp.default.";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sNetworkPolicySpec {
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<K8sIngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<K8sEgressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sIngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<K8sPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sEgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<K8sPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

/// A whole `networking.k8s.io/v1` NetworkPolicy document.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sNetworkPolicy {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: K8sNetworkPolicySpec,
    #[serde(default, rename = "status")]
    _status: Option<serde_json::Value>,
}

/// Converts a Kubernetes label selector to Calico selector text.
/// Pod selectors get the orchestrator clause first.
fn selector_text(sel: &LabelSelector, pod: bool) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push(format!("{ORCHESTRATOR_LABEL} == 'k8s'"));
    }
    for (k, v) in &sel.match_labels {
        parts.push(format!("{k} == '{v}'"));
    }
    for e in &sel.match_expressions {
        let values = e.values.join("', '");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in {{ '{values}' }}", e.key),
            "NotIn" => format!("{} not in {{ '{values}' }}", e.key),
            "Exists" => format!("has({})", e.key),
            _ => format!("! has({})", e.key),
        });
    }
    parts.join(" && ")
}

/// Groups a rule's ports by protocol (default TCP), keeping first-seen order.
/// `None` in a group's list means "this protocol, any port".
fn ports_by_protocol(ports: &[K8sPort]) -> Vec<(String, Vec<Port>)> {
    let mut groups: Vec<(String, Vec<Port>)> = Vec::new();
    for p in ports {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".to_string());
        let idx = match groups.iter().position(|(g, _)| *g == proto) {
            Some(i) => i,
            None => {
                groups.push((proto, Vec::new()));
                groups.len() - 1
            }
        };
        if let Some(port) = &p.port {
            let port = match (port, p.end_port) {
                (IntOrString::Int(lo), Some(hi)) if hi > *lo => {
                    Port(IntOrString::Str(format!("{lo}:{hi}")))
                }
                _ => Port(port.clone()),
            };
            groups[idx].1.push(port);
        }
    }
    groups
}

fn convert_rules(peers: &[K8sPeer], ports: &[K8sPort], ingress: bool) -> Vec<Rule> {
    let groups = ports_by_protocol(ports);
    let peer_entities: Vec<EntityRule> = if peers.is_empty() {
        vec![EntityRule::default()]
    } else {
        peers
            .iter()
            .map(|peer| {
                let mut e = EntityRule::default();
                if let Some(ps) = &peer.pod_selector {
                    e.selector = selector_text(ps, true);
                }
                if let Some(ns) = &peer.namespace_selector {
                    let text = selector_text(ns, false);
                    e.namespace_selector = if text.is_empty() {
                        "all()".to_string()
                    } else {
                        text
                    };
                }
                if let Some(block) = &peer.ip_block {
                    e.nets = vec![block.cidr.clone()];
                    e.not_nets = block.except.clone();
                }
                e
            })
            .collect()
    };
    let mut rules = Vec::new();
    for peer in &peer_entities {
        let protocol_groups: Vec<Option<&(String, Vec<Port>)>> = if groups.is_empty() {
            vec![None]
        } else {
            groups.iter().map(Some).collect()
        };
        for group in protocol_groups {
            let mut rule = Rule::action(Action::Allow);
            let ports = group.map(|(_, ports)| ports.clone()).unwrap_or_default();
            rule.protocol = group.map(|(proto, _)| Protocol::named(proto));
            if ingress {
                rule.source = peer.clone();
                rule.destination = EntityRule {
                    ports,
                    ..EntityRule::default()
                };
            } else {
                rule.destination = EntityRule {
                    ports,
                    ..peer.clone()
                };
            }
            rules.push(rule);
        }
    }
    rules
}

impl K8sNetworkPolicySpec {
    /// The Calico NetworkPolicy spec equivalent to this Kubernetes one.
    pub fn to_calico(&self) -> NetworkPolicySpec {
        let ingress = self
            .ingress
            .iter()
            .flat_map(|r| convert_rules(&r.from, &r.ports, true))
            .collect();
        let egress = self
            .egress
            .iter()
            .flat_map(|r| convert_rules(&r.to, &r.ports, false))
            .collect();
        NetworkPolicySpec {
            tier: "default".to_string(),
            order: Some(1000.0),
            ingress,
            egress,
            selector: selector_text(&self.pod_selector, true),
            types: if self.policy_types.is_empty() {
                vec![PolicyType::Ingress]
            } else {
                self.policy_types.clone()
            },
            ..NetworkPolicySpec::default()
        }
    }

    fn validate(&self, c: &mut Checker) {
        validate_label_selector(c, "spec.podSelector", &self.pod_selector);
        let rules = self
            .ingress
            .iter()
            .map(|r| ("ingress", "from", &r.from, &r.ports))
            .chain(
                self.egress
                    .iter()
                    .map(|r| ("egress", "to", &r.to, &r.ports)),
            );
        let mut counts = BTreeMap::new();
        for (list, peers_field, peers, ports) in rules {
            let i = counts.entry(list).or_insert(0usize);
            let p = format!("spec.{list}[{i}]");
            *i += 1;
            for (j, peer) in peers.iter().enumerate() {
                let pp = format!("{p}.{peers_field}[{j}]");
                if let Some(s) = &peer.pod_selector {
                    validate_label_selector(c, &format!("{pp}.podSelector"), s);
                }
                if let Some(s) = &peer.namespace_selector {
                    validate_label_selector(c, &format!("{pp}.namespaceSelector"), s);
                }
                if let Some(b) = &peer.ip_block {
                    if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                        c.fail(
                            &pp,
                            "ipBlock cannot be combined with podSelector or namespaceSelector",
                        );
                    }
                    let cidr = c.cidr(&format!("{pp}.ipBlock.cidr"), &b.cidr);
                    for (k, e) in b.except.iter().enumerate() {
                        let ep = format!("{pp}.ipBlock.except[{k}]");
                        if let (Some(outer), Some(inner)) = (cidr, c.cidr(&ep, e))
                            && !outer.contains(&inner)
                        {
                            c.bad(&ep, quoted(e), format!("must lie within {}", b.cidr));
                        }
                    }
                }
            }
            for (j, port) in ports.iter().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                if let Some(proto) = &port.protocol {
                    c.one_of(&format!("{pp}.protocol"), proto, &["TCP", "UDP", "SCTP"]);
                }
                match &port.port {
                    Some(IntOrString::Int(n)) => {
                        c.range(&format!("{pp}.port"), *n, 1, 65535);
                        if let Some(end) = port.end_port
                            && (end < *n || end > 65535)
                        {
                            c.bad(
                                format!("{pp}.endPort"),
                                end,
                                "must be between port and 65535",
                            );
                        }
                    }
                    Some(IntOrString::Str(name)) => {
                        if let Err(e) = validate_port_name(name) {
                            c.bad(format!("{pp}.port"), quoted(name), e);
                        }
                        if port.end_port.is_some() {
                            c.fail(format!("{pp}.endPort"), "requires a numeric port");
                        }
                    }
                    None if port.end_port.is_some() => {
                        c.fail(format!("{pp}.endPort"), "requires port")
                    }
                    None => {}
                }
            }
        }
    }
}

fn validate_label_selector(c: &mut Checker, path: &str, sel: &LabelSelector) {
    c.labels(&format!("{path}.matchLabels"), &sel.match_labels);
    for (i, e) in sel.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        if let Err(err) = tortie_selector::labels::validate_label_key(&e.key) {
            c.bad(format!("{p}.key"), quoted(&e.key), err);
        }
        match e.operator.as_str() {
            "In" | "NotIn" if e.values.is_empty() => {
                c.fail(format!("{p}.values"), "must not be empty for In and NotIn")
            }
            "Exists" | "DoesNotExist" if !e.values.is_empty() => c.fail(
                format!("{p}.values"),
                "must be empty for Exists and DoesNotExist",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => c.one_of(
                &format!("{p}.operator"),
                other,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            ),
        }
        for (j, v) in e.values.iter().enumerate() {
            if let Err(err) = tortie_selector::labels::validate_label_value(v) {
                c.bad(format!("{p}.values[{j}]"), quoted(v), err);
            }
        }
    }
}

impl K8sNetworkPolicy {
    /// Validates the Kubernetes document, then converts it to the Calico
    /// NetworkPolicy `knp.default.<name>` that tortie stores.
    pub fn to_calico(&self) -> Result<(ObjectMeta, NetworkPolicySpec), crate::ValidationError> {
        let mut c = Checker::default();
        self.spec.validate(&mut c);
        if !c.errors.is_empty() {
            return Err(crate::ValidationError {
                resource: format!("Kubernetes NetworkPolicy {:?}", self.metadata.name),
                errors: c.errors,
            });
        }
        let meta = ObjectMeta {
            name: format!("{KNP_PREFIX}{}", self.metadata.name),
            namespace: self.metadata.namespace.clone(),
            labels: self.metadata.labels.clone(),
            annotations: self.metadata.annotations.clone(),
            ..ObjectMeta::default()
        };
        Ok((meta, self.spec.to_calico()))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedKubernetesNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<K8sIngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<K8sEgressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
}

impl StagedKubernetesNetworkPolicySpec {
    fn as_k8s(&self) -> K8sNetworkPolicySpec {
        K8sNetworkPolicySpec {
            pod_selector: self.pod_selector.clone(),
            ingress: self.ingress.clone(),
            egress: self.egress.clone(),
            policy_types: self.policy_types.clone(),
        }
    }
}

impl SpecRules for StagedKubernetesNetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &mut ObjectMeta) {
        self.staged_action.get_or_insert(StagedAction::Set);
    }

    fn validate(&self, _meta: &ObjectMeta, c: &mut Checker) {
        self.as_k8s().validate(c);
        if self.staged_action == Some(StagedAction::Delete)
            && self.as_k8s() != K8sNetworkPolicySpec::default()
        {
            c.fail(
                "spec",
                "with stagedAction Delete, every other field must be empty",
            );
        }
    }
}
