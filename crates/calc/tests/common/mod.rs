//! Shared test helpers: resource fixtures (validated like real writes),
//! whole datastore states as key/value maps, transitions between states in
//! any key order, invariants of a local state, and a small interpreter of
//! the compiled local state (what a faithful dataplane would do) to check
//! explain against.

#![allow(dead_code)]

pub mod sim;
pub mod states;

use std::collections::{BTreeMap, BTreeSet};
use std::time::UNIX_EPOCH;

use ipnet::IpNet;
use tortie_calc::state::LocalState;
use tortie_calc::{Calculator, ClusterModel, Update};
use tortie_client::{codec, keys};
use tortie_ipam::affinity::{AffinityOwner, AffinityRecord, AffinityState};
use tortie_ipam::block::Block;
use tortie_model::endpoint::{WorkloadEndpointPort, WorkloadEndpointSpec, workload_endpoint_name};
use tortie_model::scalar::Protocol;
use tortie_model::{ObjectMeta, Resource};

/// Decodes YAML documents, fills defaults and validates them, like a write.
pub fn parse(yaml: &str) -> Vec<Resource> {
    let docs = tortie_model::decode_documents(yaml, "test")
        .unwrap_or_else(|e| panic!("fixture does not decode: {e:?}\n{yaml}"));
    docs.into_iter()
        .map(|d| {
            let mut r = d.resource;
            r.apply_defaults();
            if let Err(e) = r.validate() {
                panic!("fixture is invalid: {e}\n{yaml}");
            }
            r
        })
        .collect()
}

/// A Kubernetes-style workload endpoint on `node` with one address.
pub fn wep(ns: &str, pod: &str, node: &str, ip: &str, labels: &[(&str, &str)]) -> Resource {
    wep_with_ports(ns, pod, node, ip, labels, &[])
}

/// Same, declaring named ports `(name, protocol, port)`.
pub fn wep_with_ports(
    ns: &str,
    pod: &str,
    node: &str,
    ip: &str,
    labels: &[(&str, &str)],
    ports: &[(&str, &str, i64)],
) -> Resource {
    let name = workload_endpoint_name(node, "k8s", pod, "eth0");
    let mut meta = ObjectMeta::namespaced(ns, &name);
    meta.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spec = WorkloadEndpointSpec {
        orchestrator: "k8s".into(),
        node: node.into(),
        pod: pod.into(),
        endpoint: "eth0".into(),
        ip_networks: ip.split(',').map(|s| s.trim().to_string()).collect(),
        profiles: vec![format!("kns.{ns}")],
        interface_name: iface(ns, pod),
        mac: "ee:ee:ee:ee:ee:01".into(),
        ports: ports
            .iter()
            .map(|(n, p, port)| WorkloadEndpointPort {
                name: n.to_string(),
                protocol: Some(Protocol::named(p)),
                port: *port,
                ..WorkloadEndpointPort::default()
            })
            .collect(),
        ..WorkloadEndpointSpec::default()
    };
    let mut r = Resource::new(meta, spec);
    r.apply_defaults();
    if let Err(e) = r.validate() {
        panic!("workload fixture is invalid: {e}");
    }
    r
}

/// A stand-in for the CNI interface name (unique per pod, ≤ 15 chars).
pub fn iface(ns: &str, pod: &str) -> String {
    let mut s = format!("cali{ns}{pod}");
    s.truncate(15);
    s
}

/// The `kns.<ns>` profile: allow all, with namespace labels.
pub fn namespace_profile(ns: &str, labels: &[(&str, &str)]) -> Resource {
    let mut yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: kns.{ns}}}\nspec:\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n  labelsToApply:\n    pcns.projectcalico.org/name: {ns}\n"
    );
    for (k, v) in labels {
        yaml.push_str(&format!("    pcns.{k}: {v}\n"));
    }
    parse(&yaml).remove(0)
}

pub fn model_of(resources: &[Resource]) -> ClusterModel {
    let mut m = ClusterModel::new();
    for r in resources {
        m.apply(Update::Put(Box::new(r.clone())))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    m.apply(Update::InSync).expect("in sync");
    m
}

/// A whole datastore state: key → stored value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Datastore(pub BTreeMap<String, Vec<u8>>);

impl Datastore {
    pub fn put(&mut self, r: &Resource) {
        let key = keys::resource_key(r.kind(), &r.metadata.namespace, &r.metadata.name);
        self.0.insert(key, codec::encode(r));
    }

    pub fn put_all(&mut self, rs: &[Resource]) {
        for r in rs {
            self.put(r);
        }
    }

    /// A block affine to `node` (with a confirmed affinity record).
    pub fn block(&mut self, cidr: &str, node: &str) {
        let net: IpNet = cidr.parse().expect("test CIDR");
        let owner = AffinityOwner::host(node);
        let block = Block::new(net, Some(&owner), UNIX_EPOCH, false);
        self.0
            .insert(tortie_ipam::keys::block_key(&net), block.encode());
        self.0.insert(
            tortie_ipam::keys::affinity_key(&owner, &net),
            AffinityRecord::with_state(AffinityState::Confirmed).encode(),
        );
    }

    pub fn remove_prefix(&mut self, prefix: &str) {
        self.0.retain(|k, _| !k.starts_with(prefix));
    }
}

/// A calculator for `node` fed `ds` in key order, then in sync.
pub fn calculator(node: &str, ds: &Datastore) -> Calculator {
    let mut c = Calculator::new(node);
    for (k, v) in &ds.0 {
        c.apply_kv(k, Some(v)).unwrap_or_else(|e| panic!("{e}"));
    }
    c.apply(Update::InSync).expect("in sync");
    c
}

/// A small deterministic generator (xorshift64*), seeded by proptest.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Applies the per-key updates that turn `from` into `to`, in the order
/// `order` gives (a seed to shuffle with, or `None` for key order).
pub fn transition(calc: &mut Calculator, from: &Datastore, to: &Datastore, order: Option<u64>) {
    let keys: BTreeSet<&String> = from.0.keys().chain(to.0.keys()).collect();
    let mut changed: Vec<&String> = keys
        .into_iter()
        .filter(|k| from.0.get(*k) != to.0.get(*k))
        .collect();
    if let Some(seed) = order {
        Rng::new(seed).shuffle(&mut changed);
    }
    for k in changed {
        calc.apply_kv(k, to.0.get(k).map(Vec::as_slice))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Every ID the state references is defined in it.
pub fn check_integrity(s: &LocalState) {
    let chains = s
        .workload_endpoints
        .values()
        .flat_map(|w| [&w.ingress, &w.egress])
        .chain(
            s.host_endpoints
                .values()
                .flat_map(|h| [&h.ingress, &h.egress]),
        );
    for chain in chains {
        for t in &chain.tiers {
            for p in &t.policies {
                assert!(
                    s.policies.contains_key(p),
                    "policy {p} referenced but absent"
                );
            }
        }
        for p in &chain.profiles {
            assert!(
                s.profiles.contains_key(p),
                "profile {p} referenced but absent"
            );
        }
    }
    let rules = s
        .policies
        .values()
        .flat_map(|p| p.ingress.iter().chain(&p.egress))
        .chain(
            s.profiles
                .values()
                .flat_map(|p| p.ingress.iter().chain(&p.egress)),
        );
    for r in rules {
        for e in [&r.source, &r.destination] {
            for id in e.ip_set.iter().chain(&e.not_ip_set) {
                assert!(
                    s.ip_sets.contains_key(id),
                    "ip set {id} referenced but absent"
                );
            }
            for id in e.named_port_sets.iter().chain(&e.not_named_port_sets) {
                assert!(
                    s.named_port_sets.contains_key(id),
                    "named port set {id} referenced but absent"
                );
            }
        }
    }
}

/// The checks run after every step of a sequence: the engine's state
/// equals the brute-force one and a fresh calculation of `expected`, is
/// referentially intact, and `replica` (built from deltas only) matches.
pub fn check_step(calc: &mut Calculator, expected: &Datastore, replica: &mut LocalState) {
    let node = calc.node().to_string();
    let state = calc.local_state().clone();
    let brute = tortie_calc::reference::compute_from_scratch(calc.model(), &node);
    assert_eq!(state, brute, "incremental state differs from brute force");
    let fresh = calculator(&node, expected);
    assert_eq!(
        state,
        *fresh.local_state(),
        "incremental state differs from a fresh calculation"
    );
    check_integrity(&state);
    let delta = calc.take_delta().expect("in sync");
    replica.apply_delta(&delta);
    assert_eq!(*replica, state, "state rebuilt from deltas differs");
    assert!(
        calc.take_delta().expect("in sync").is_empty(),
        "a second delta is empty"
    );
}
