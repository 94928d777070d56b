//! Random whole-cluster states for property tests. A state is built from
//! one seed per component (each workload, each policy, the pools, …), so
//! changing a few seeds gives a *nearby* state — the small label and policy
//! churn the incremental paths must get right — while changing all gives
//! an unrelated one. Every resource goes through `parse`/validation, so the
//! states are ones a real datastore could hold.

use super::{Datastore, Rng, namespace_profile, parse, wep_with_ports};

pub const COMPONENTS: usize = 20;
const WEPS: usize = 7;
const POLICIES: usize = 6;

/// The node every generated state is calculated for.
pub const LOCAL: &str = "n1";

fn yaml_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn entity(r: &mut Rng, ports_ok: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    match r.below(12) {
        0 => parts.push("selector: app == 'x'".into()),
        1 => parts.push("selector: \"!has(role)\"".into()),
        2 => parts.push("notSelector: role == 'fe'".into()),
        3 => parts.push("namespaceSelector: env == 'dev'".into()),
        4 => parts.push("namespaceSelector: all()".into()),
        5 => parts.push("namespaceSelector: global()".into()),
        6 => parts.push("nets: [10.65.0.0/26]".into()),
        7 => parts.push("notNets: [10.65.0.64/26]".into()),
        8 => parts.push("serviceAccounts: {names: [robot]}".into()),
        9 => parts.push("selector: trust == 'partner'".into()),
        _ => {}
    }
    if ports_ok {
        match r.below(6) {
            0 => parts.push("ports: [80]".into()),
            1 => parts.push("ports: [8080, http]".into()),
            2 => parts.push("ports: [\"1000:9000\"]".into()),
            3 => parts.push("notPorts: [443, http]".into()),
            _ => {}
        }
    }
    format!("{{{}}}", parts.join(", "))
}

fn rule(r: &mut Rng, allow_pass: bool) -> String {
    let actions: &[&str] = if allow_pass {
        &["Allow", "Deny", "Pass", "Log", "Allow"]
    } else {
        &["Allow", "Deny", "Log"]
    };
    let action = *r.pick(actions);
    let (protocol, ports_ok) = match r.below(5) {
        0 => ("protocol: TCP, ", true),
        1 => ("protocol: UDP, ", true),
        2 => ("protocol: ICMP, icmp: {type: 8}, ", false),
        _ => ("", false),
    };
    // Without a protocol only named ports are valid; keep it simple.
    let src = entity(r, false);
    let dst = entity(r, ports_ok);
    format!("{{action: {action}, {protocol}source: {src}, destination: {dst}}}")
}

fn policy(seed: u64, index: usize) -> Option<String> {
    let mut r = Rng::new(seed);
    if r.chance(30) {
        return None;
    }
    let name = format!("p{index}");
    let staged = r.chance(15);
    let global = r.chance(50);
    let kind = match (staged, global) {
        (false, false) => "NetworkPolicy",
        (false, true) => "GlobalNetworkPolicy",
        (true, false) => "StagedNetworkPolicy",
        (true, true) => "StagedGlobalNetworkPolicy",
    };
    let ns = *r.pick(&["a", "b"]);
    let meta = if global {
        format!("{{name: {name}}}")
    } else {
        format!("{{name: {name}, namespace: {ns}}}")
    };
    let mut spec: Vec<String> = Vec::new();
    spec.push(format!(
        "tier: {}",
        r.pick(&["default", "default", "t1", "t2"])
    ));
    if let Some(o) = *r.pick(&[None, Some("1"), Some("10.5"), Some("10.5")]) {
        spec.push(format!("order: {o}"));
    }
    spec.push(format!(
        "selector: {}",
        r.pick(&[
            "all()",
            "\"app == 'x'\"",
            "has(role)",
            "\"app in {'x', 'y'}\"",
            "\"\""
        ])
    ));
    let mut egress_allowed = true;
    if global {
        if r.chance(20) {
            spec.push("namespaceSelector: env == 'prod'".into());
        }
        match r.below(6) {
            0 => {
                spec.push("applyOnForward: true".into());
            }
            1 => {
                spec.push("applyOnForward: true".into());
                spec.push("preDNAT: true".into());
                egress_allowed = false;
            }
            2 => {
                spec.push("applyOnForward: true".into());
                spec.push("doNotTrack: true".into());
            }
            _ => {}
        }
    }
    if r.chance(10) {
        spec.push("performanceHints: [AssumeNeededOnEveryNode]".into());
    }
    let ingress: Vec<String> = (0..r.below(3)).map(|_| rule(&mut r, true)).collect();
    let egress: Vec<String> = if egress_allowed {
        (0..r.below(3)).map(|_| rule(&mut r, true)).collect()
    } else {
        Vec::new()
    };
    match r.below(4) {
        0 if egress_allowed => spec.push("types: [Ingress, Egress]".into()),
        1 => spec.push("types: [Ingress]".into()),
        _ => {}
    }
    if !ingress.is_empty() {
        spec.push(format!("ingress: {}", yaml_list(&ingress)));
    }
    if !egress.is_empty() {
        spec.push(format!("egress: {}", yaml_list(&egress)));
    }
    Some(format!(
        "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {meta}\nspec: {{{}}}\n",
        spec.join(", ")
    ))
}

/// Builds the state the component seeds describe.
pub fn state(seeds: &[u64; COMPONENTS]) -> Datastore {
    let mut ds = Datastore::default();
    let mut yaml: Vec<String> = Vec::new();
    // 0: namespaces (kns profiles with an env label).
    let mut r = Rng::new(seeds[0]);
    for ns in ["a", "b"] {
        if r.chance(85) {
            ds.put(&namespace_profile(
                ns,
                &[("env", *r.pick(&["dev", "prod"]))],
            ));
        }
        // Service-account profiles, sometimes without labels (so creating
        // one changes no endpoint's labels, only its profile list).
        if r.chance(50) {
            let labels = if r.chance(50) {
                "labelsToApply: {pcsa.projectcalico.org/name: robot}, "
            } else {
                ""
            };
            let rule = r.pick(&["Allow", "Deny", "Pass"]);
            ds.put_all(&parse(&format!(
                "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: ksa.{ns}.robot}}\nspec: {{{labels}ingress: [{{action: {rule}, protocol: UDP, source: {{selector: \"app == 'y'\"}}}}]}}\n"
            )));
        }
    }
    // 1: tiers.
    let mut r = Rng::new(seeds[1]);
    if r.chance(60) {
        yaml.push("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t1}\nspec: {order: 10, defaultAction: Pass}\n".into());
    }
    if r.chance(60) {
        yaml.push(
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t2}\nspec: {}\n".into(),
        );
    }
    // 2: nodes.
    let mut r = Rng::new(seeds[2]);
    for (node, last) in [("n1", 1), ("n2", 2), ("n3", 3)] {
        if node != LOCAL && r.chance(20) {
            continue;
        }
        let subnet = if node == LOCAL { 0 } else { r.below(2) };
        let ipip = if r.chance(50) {
            format!(", ipv4IPIPTunnelAddr: 10.65.201.{last}")
        } else {
            String::new()
        };
        let mut spec = vec![format!(
            "bgp: {{ipv4Address: 192.168.{subnet}.{last}/24{ipip}}}"
        )];
        if r.chance(80) {
            spec.push(format!("ipv4VXLANTunnelAddr: 10.65.{}.{last}", 200 + last));
        }
        if r.chance(30) {
            spec.push("vxlanTunnelMACAddr: \"66:00:00:00:00:0a\"".into());
        }
        yaml.push(format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {node}}}\nspec: {{{}}}\n",
            spec.join(", ")
        ));
    }
    // 3: pools.
    let mut r = Rng::new(seeds[3]);
    let encap = match r.below(5) {
        0 => "vxlanMode: Always",
        1 => "vxlanMode: CrossSubnet",
        2 => "ipipMode: Always",
        3 => "ipipMode: CrossSubnet",
        _ => "vxlanMode: Never",
    };
    yaml.push(format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pool}}\nspec: {{cidr: 10.65.0.0/16, {encap}, natOutgoing: {}}}\n",
        r.chance(50)
    ));
    if r.chance(40) {
        yaml.push("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool6}\nspec: {cidr: \"fd00::/112\", vxlanMode: Always}\n".into());
    }
    // 4: blocks and affinities.
    let mut r = Rng::new(seeds[4]);
    for (cidr, default_owner) in [
        ("10.65.0.0/26", "n1"),
        ("10.65.0.64/26", "n2"),
        ("10.65.0.128/26", "n3"),
    ] {
        if r.chance(80) {
            let owner = if r.chance(80) {
                default_owner
            } else {
                *r.pick(&["n1", "n2", "n3"])
            };
            ds.block(cidr, owner);
        }
    }
    // 5: configuration.
    let mut r = Rng::new(seeds[5]);
    match r.below(4) {
        0 => yaml.push("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {programClusterRoutes: Enabled}\n".into()),
        1 => yaml.push("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {vxlanEnabled: true, defaultEndpointToHostAction: Accept}\n".into()),
        _ => {}
    }
    // 6..13: workloads.
    for i in 0..WEPS {
        let mut r = Rng::new(seeds[6 + i]);
        if r.chance(25) {
            continue;
        }
        let ns = *r.pick(&["a", "b"]);
        let node = *r.pick(&["n1", "n1", "n2", "n3"]);
        let host = 2 + i * 9 + r.below(3);
        let mut ips = format!("10.65.0.{host}/32");
        if r.chance(20) {
            ips.push_str(&format!(", fd00::{host:x}/128"));
        }
        let mut labels: Vec<(&str, &str)> = vec![("app", *r.pick(&["x", "y", "z"]))];
        if r.chance(50) {
            labels.push(("role", *r.pick(&["fe", "be"])));
        }
        let ports: Vec<(&str, &str, i64)> = match r.below(3) {
            0 => vec![("http", "TCP", 8080)],
            1 => vec![("http", "TCP", 80), ("dns", "UDP", 53)],
            _ => vec![],
        };
        let pod = format!("w{i}");
        let mut w = wep_with_ports(ns, &pod, node, &ips, &labels, &ports);
        if let Some(s) = w.spec_mut::<tortie_model::endpoint::WorkloadEndpointSpec>() {
            if r.chance(15) {
                s.interface_name = "calishared".into();
            }
            if r.chance(30) {
                s.service_account_name = "robot".into();
                s.profiles.push(format!("ksa.{ns}.robot"));
            }
        }
        ds.put(&w);
    }
    // 13: host endpoint and network sets.
    let mut r = Rng::new(seeds[13]);
    if r.chance(60) {
        let iface = *r.pick(&["eth0", "\"*\""]);
        yaml.push(format!(
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: n1-eth0, labels: {{app: {}}}}}\nspec: {{node: n1, interfaceName: {iface}, expectedIPs: [192.168.0.1], ports: [{{name: http, protocol: TCP, port: 8443}}]{}}}\n",
            r.pick(&["x", "y"]),
            if r.chance(50) { ", profiles: [projectcalico-default-allow]" } else { "" }
        ));
    }
    if r.chance(60) {
        yaml.push("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: partners, labels: {trust: partner}}\nspec: {nets: [198.51.100.0/24, 10.65.0.0/28]}\n".into());
    }
    if r.chance(50) {
        yaml.push(format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {{name: office, namespace: a, labels: {{app: {}}}}}\nspec: {{nets: [203.0.113.0/28]}}\n",
            r.pick(&["x", "y"])
        ));
    }
    // 14..19: policies.
    for i in 0..POLICIES {
        if let Some(p) = policy(seeds[14 + i], i) {
            yaml.push(p);
        }
    }
    for doc in yaml {
        ds.put_all(&parse(&doc));
    }
    ds
}

/// Seeds for a nearby state: `changes` components re-seeded.
pub fn nearby(seeds: &[u64; COMPONENTS], r: &mut Rng, changes: usize) -> [u64; COMPONENTS] {
    let mut out = *seeds;
    for _ in 0..changes {
        let i = r.below(COMPONENTS);
        out[i] = r.next();
    }
    out
}

/// A sequence of `len` states, each near the previous one.
pub fn sequence(seed: u64, len: usize) -> Vec<Datastore> {
    let mut r = Rng::new(seed);
    let mut seeds = [0u64; COMPONENTS];
    for s in &mut seeds {
        *s = r.next();
    }
    let mut out = vec![state(&seeds)];
    for _ in 1..len {
        let changes = 1 + r.below(3);
        seeds = nearby(&seeds, &mut r, changes);
        out.push(state(&seeds));
    }
    out
}
