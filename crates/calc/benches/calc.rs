//! Calculation benchmarks at the scale the node daemon targets: 10,000
//! workload endpoints (1,000 on this node) on 100 nodes, 1,000 policies
//! (4 namespaced per namespace plus 200 global), 200 namespaces, VXLAN
//! routing over 214 blocks.
//!
//! - `from_scratch/build`: every update of the snapshot applied to a new
//!   calculator, then the first delta taken. Baseline in the same run:
//!   `from_scratch/baseline_clone_input` (only cloning the updates).
//! - `loaded/*`: with that state loaded, one change and the delta the
//!   dataplane would take: a workload added then deleted (two updates), a
//!   label flipped and flipped back (two updates). Baseline in the same
//!   run: `loaded/baseline_full_recompute`, the brute-force computation a
//!   non-incremental design would redo per change.
//!
//! - `dense/*`: the render benchmark's shape (crates/render/benches): 10,000
//!   local endpoints and 1,000 or 10,000 global policies, each selecting
//!   `app == "appK"` with rules on `role == "rN"` peers; policies first,
//!   then endpoints, then in-sync and the first delta. Baseline in the same
//!   run: the 10,000 × 1,000 build, against which the 10,000 × 10,000 one
//!   is printed as a ratio; and `dense/label_change_and_back_10k_x_10k`,
//!   one endpoint's label flipped and back on the loaded 10,000 × 10,000
//!   state (compare with `loaded/label_change_and_back`).
//!
//! After the criterion runs, the shape of the loaded state is printed.

use std::hint::black_box;

use criterion::{BatchSize, Criterion};
use tortie_calc::reference::compute_from_scratch;
use tortie_calc::{Calculator, Decoded, Update, decode_kv};
use tortie_client::{codec, keys};
use tortie_ipam::affinity::{AffinityOwner, AffinityRecord, AffinityState};
use tortie_ipam::block::Block;
use tortie_model::endpoint::{WorkloadEndpointPort, WorkloadEndpointSpec, workload_endpoint_name};
use tortie_model::scalar::Protocol;
use tortie_model::{ObjectMeta, Resource};

const NAMESPACES: usize = 200;
const PODS_PER_NAMESPACE: usize = 50;
const NODES: usize = 100;
const LOCAL: &str = "node-0";

fn parse(yaml: &str) -> Vec<Resource> {
    tortie_model::decode_documents(yaml, "bench")
        .expect("benchmark fixtures decode")
        .into_iter()
        .map(|d| {
            let mut r = d.resource;
            r.apply_defaults();
            r
        })
        .collect()
}

/// Where pod `n` runs and its address: every 10th pod is local (1,000 in
/// 10.64.0.0/22, sixteen blocks); the others spread over node-1..node-99,
/// each with two blocks 10.65.<k>.0/26 and 10.65.<k>.64/26.
fn placement(n: usize) -> (String, String) {
    if n.is_multiple_of(10) {
        let slot = n / 10;
        (
            LOCAL.to_string(),
            format!("10.64.{}.{}/32", slot / 256, slot % 256),
        )
    } else {
        let k = 1 + n % (NODES - 1);
        (
            format!("node-{k}"),
            format!("10.65.{k}.{}/32", n / (NODES - 1)),
        )
    }
}

fn blocks_of(node: usize) -> Vec<String> {
    if node == 0 {
        (0..16)
            .map(|b| format!("10.64.{}.{}/26", b / 4, (b % 4) * 64))
            .collect()
    } else {
        vec![format!("10.65.{node}.0/26"), format!("10.65.{node}.64/26")]
    }
}

fn pod(ns: usize, i: usize, app: usize) -> Resource {
    let n = ns * PODS_PER_NAMESPACE + i;
    let (node, ip) = placement(n);
    let pod = format!("pod-{i}");
    let name = workload_endpoint_name(&node, "k8s", &pod, "eth0");
    let namespace = format!("ns-{ns}");
    let mut meta = ObjectMeta::namespaced(&namespace, &name);
    meta.labels = [
        ("app", format!("app-{app}")),
        ("tier", ["web", "api", "db"][n % 3].to_string()),
        ("version", format!("v{}", (n / 10) % 4)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let spec = WorkloadEndpointSpec {
        orchestrator: "k8s".into(),
        node,
        pod,
        endpoint: "eth0".into(),
        ip_networks: vec![ip],
        profiles: vec![format!("kns.{namespace}")],
        interface_name: format!("cali{n:011}"),
        ports: vec![WorkloadEndpointPort {
            name: "http".into(),
            protocol: Some(Protocol::named("TCP")),
            port: 8080,
            ..WorkloadEndpointPort::default()
        }],
        ..WorkloadEndpointSpec::default()
    };
    Resource::new(meta, spec)
}

/// The snapshot as key → value, like the syncer delivers it.
fn snapshot() -> Vec<(String, Vec<u8>)> {
    let mut resources = Vec::new();
    resources.extend(parse(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool}\nspec: {cidr: 10.64.0.0/14, vxlanMode: Always, natOutgoing: true}\n",
    ));
    for n in 0..NODES {
        resources.extend(parse(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: node-{n}}}\nspec: {{bgp: {{ipv4Address: 192.168.{}.{}/16}}, ipv4VXLANTunnelAddr: 10.67.255.{n}}}\n",
            n / 200,
            1 + n % 200
        )));
    }
    for ns in 0..NAMESPACES {
        resources.extend(parse(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: kns.ns-{ns}}}\nspec:\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n  labelsToApply: {{pcns.projectcalico.org/name: ns-{ns}, pcns.team: team-{}}}\n",
            ns % 20
        )));
        for i in 0..PODS_PER_NAMESPACE {
            // Local pods (every 10th) still cover most apps, so most
            // policies are in use on this node.
            resources.push(pod(ns, i, (i / 10 * 3 + i + ns) % 10));
        }
        for p in 0..4 {
            resources.extend(parse(&format!(
                r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: np-{p}, namespace: ns-{ns}}}
spec:
  order: {p}
  selector: app == "app-{a}"
  ingress:
  - action: Allow
    protocol: TCP
    source: {{selector: app == "app-{b}"}}
    destination: {{ports: [http, 9000]}}
  - action: Allow
    source: {{namespaceSelector: team == "team-{t}", selector: tier == "web"}}
  egress:
  - action: Allow
    destination: {{selector: tier == "db"}}
"#,
                a = (p * 2 + ns) % 10,
                b = (p * 2 + ns + 1) % 10,
                t = (ns + p) % 20
            )));
        }
    }
    for g in 0..200 {
        resources.extend(parse(&format!(
            r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: gnp-{g}}}
spec:
  order: {order}
  selector: version == "v{v}" && app == "app-{a}"
  ingress:
  - action: Deny
    source: {{nets: [192.0.2.{g}/32]}}
  - action: Pass
    source: {{namespaceSelector: team == "team-{t}"}}
  egress:
  - action: Allow
    destination: {{notSelector: app == "app-{a}"}}
"#,
            order = 100 + g,
            v = g % 4,
            a = g % 10,
            t = g % 20
        )));
    }
    let mut kv: Vec<(String, Vec<u8>)> = resources
        .iter()
        .map(|r| {
            (
                keys::resource_key(r.kind(), &r.metadata.namespace, &r.metadata.name),
                codec::encode(r),
            )
        })
        .collect();
    for n in 0..NODES {
        let owner = AffinityOwner::host(&format!("node-{n}"));
        for cidr in blocks_of(n) {
            let cidr = cidr.parse().expect("block CIDR");
            let block = Block::new(cidr, Some(&owner), std::time::UNIX_EPOCH, false);
            kv.push((tortie_ipam::keys::block_key(&cidr), block.encode()));
            kv.push((
                tortie_ipam::keys::affinity_key(&owner, &cidr),
                AffinityRecord::with_state(AffinityState::Confirmed).encode(),
            ));
        }
    }
    kv.sort();
    kv
}

fn updates(kv: &[(String, Vec<u8>)]) -> Vec<Update> {
    kv.iter()
        .map(|(k, v)| match decode_kv(k, Some(v)) {
            Decoded::Update(u) => u,
            other => panic!("{k}: {other:?}"),
        })
        .chain(std::iter::once(Update::InSync))
        .collect()
}

fn build(updates: Vec<Update>) -> Calculator {
    let mut c = Calculator::new(LOCAL);
    for u in updates {
        c.apply(u).expect("benchmark data is valid");
    }
    c.take_delta();
    c
}

/// An endpoint of the dense shape: `app` picks its policy, `role` the
/// rule peers that include it.
fn dense_wep(policies: usize, e: usize, role: usize) -> Resource {
    let pod = format!("p{e}");
    let mut meta =
        ObjectMeta::namespaced("bench", &workload_endpoint_name(LOCAL, "k8s", &pod, "eth0"));
    meta.labels = [
        ("app".to_string(), format!("app{}", e % policies)),
        ("role".to_string(), format!("r{role}")),
    ]
    .into_iter()
    .collect();
    let spec = WorkloadEndpointSpec {
        orchestrator: "k8s".into(),
        node: LOCAL.into(),
        pod,
        endpoint: "eth0".into(),
        ip_networks: vec![format!(
            "10.{}.{}.{}/32",
            64 + e / 65536,
            (e / 256) % 256,
            e % 256
        )],
        profiles: vec!["kns.bench".into()],
        interface_name: format!("cali{e:07}"),
        ..WorkloadEndpointSpec::default()
    };
    let mut r = Resource::new(meta, spec);
    r.apply_defaults();
    r
}

/// The dense snapshot as updates: a profile and `policies` global
/// policies, then `endpoints` endpoints, then in-sync.
fn dense_updates(endpoints: usize, policies: usize) -> Vec<Update> {
    let roles = (policies / 2).max(1);
    let mut y = String::from(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: kns.bench}\nspec: {ingress: [{action: Allow}], egress: [{action: Allow}]}\n",
    );
    for k in 0..policies {
        y.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: pol{k}}}\nspec:\n  selector: app == \"app{k}\"\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: role == \"r{a}\"}}, destination: {{ports: [80]}}}}\n  - {{action: Allow, protocol: TCP, source: {{selector: role == \"r{b}\"}}, destination: {{ports: [443, 8443]}}}}\n  - {{action: Allow, protocol: UDP, source: {{nets: [10.0.0.0/8, 172.16.0.0/12]}}, destination: {{ports: [53]}}}}\n  egress:\n  - {{action: Deny, destination: {{nets: [192.0.2.0/24]}}}}\n  - {{action: Allow}}\n",
            a = (k * 7) % roles,
            b = (k * 13 + 1) % roles,
        ));
    }
    parse(&y)
        .into_iter()
        .chain((0..endpoints).map(|e| dense_wep(policies, e, e % roles)))
        .map(|r| Update::Put(Box::new(r)))
        .chain(std::iter::once(Update::InSync))
        .collect()
}

/// Median wall time of `runs` builds of `updates`.
fn median_build(updates: &[Update], runs: usize) -> std::time::Duration {
    let mut times: Vec<std::time::Duration> = (0..runs)
        .map(|_| {
            let input = updates.to_vec();
            let start = std::time::Instant::now();
            black_box(build(input));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn dense(c: &mut Criterion) {
    let small = dense_updates(10_000, 1_000);
    let large = dense_updates(10_000, 10_000);
    let mut group = c.benchmark_group("dense");
    group.sample_size(10);
    group.bench_function("build_10k_x_1k", |b| {
        b.iter_batched(|| small.clone(), build, BatchSize::LargeInput)
    });
    group.bench_function("build_10k_x_10k", |b| {
        b.iter_batched(|| large.clone(), build, BatchSize::LargeInput)
    });
    let mut calc = build(large.clone());
    let before = dense_wep(10_000, 42, 42);
    let after = dense_wep(10_000, 42, 43);
    group.bench_function("label_change_and_back_10k_x_10k", |b| {
        b.iter(|| {
            put(&mut calc, &after);
            black_box(calc.take_delta());
            put(&mut calc, &before);
            black_box(calc.take_delta());
        })
    });
    group.finish();
    // The ratio, from runs back to back so both see the same machine load.
    let small_t = median_build(&small, 3);
    let large_t = median_build(&large, 3);
    println!(
        "\ndense from nothing (median of 3, with the first delta): 10k x 1k {:.3} s, 10k x 10k {:.3} s = {:.2} x the 1k-policy baseline",
        small_t.as_secs_f64(),
        large_t.as_secs_f64(),
        large_t.as_secs_f64() / small_t.as_secs_f64()
    );
}

fn put(c: &mut Calculator, r: &Resource) {
    c.apply(Update::Put(Box::new(r.clone()))).expect("valid");
}

fn benches(c: &mut Criterion) {
    let kv = snapshot();
    let ups = updates(&kv);

    let mut group = c.benchmark_group("from_scratch");
    group.sample_size(10);
    group.bench_function("baseline_clone_input", |b| {
        b.iter(|| black_box(ups.clone()))
    });
    group.bench_function("build", |b| {
        b.iter_batched(|| ups.clone(), build, BatchSize::LargeInput)
    });
    group.finish();

    let mut calc = build(ups.clone());
    // A new local workload, and an existing local one to relabel.
    let extra = {
        let mut r = pod(7, PODS_PER_NAMESPACE + 100, 3);
        r.metadata.name = workload_endpoint_name(LOCAL, "k8s", "extra", "eth0");
        if let Some(s) = r.spec_mut::<WorkloadEndpointSpec>() {
            s.node = LOCAL.into();
            s.pod = "extra".into();
            s.interface_name = "caliextra".into();
            s.ip_networks = vec!["10.64.3.240/32".into()];
        }
        r
    };
    let delete_extra = Update::Delete {
        kind: tortie_model::Kind::WorkloadEndpoint,
        namespace: extra.metadata.namespace.clone(),
        name: extra.metadata.name.clone(),
    };
    let local_pod = pod(2, 0, 0);
    assert_eq!(
        local_pod
            .spec::<WorkloadEndpointSpec>()
            .map(|s| s.node.as_str()),
        Some(LOCAL)
    );
    let relabelled = pod(2, 0, 5);

    let mut group = c.benchmark_group("loaded");
    group.sample_size(20);
    group.bench_function("wep_add_then_delete", |b| {
        b.iter(|| {
            put(&mut calc, &extra);
            black_box(calc.take_delta());
            calc.apply(delete_extra.clone()).expect("valid");
            black_box(calc.take_delta());
        })
    });
    group.bench_function("label_change_and_back", |b| {
        b.iter(|| {
            put(&mut calc, &relabelled);
            black_box(calc.take_delta());
            put(&mut calc, &local_pod);
            black_box(calc.take_delta());
        })
    });
    group.bench_function("baseline_full_recompute", |b| {
        b.iter(|| black_box(compute_from_scratch(calc.model(), LOCAL)))
    });
    group.finish();

    // The shape of what was measured, and one timed change with its delta.
    let s = calc.local_state();
    let stats = calc.stats();
    println!(
        "\nloaded state: {} local workloads, {} policies and {} profiles compiled, {} IP sets ({} members), {} named-port sets, {} routes, {} VTEPs",
        s.workload_endpoints.len(),
        s.policies.len(),
        s.profiles.len(),
        s.ip_sets.len(),
        s.ip_sets
            .values()
            .map(|m| m.v4.len() + m.v6.len())
            .sum::<usize>(),
        s.named_port_sets.len(),
        s.routes.len(),
        s.vxlan.peers.len()
    );
    println!(
        "active selectors: {} policy, {} IP set; cumulative evaluations (build and every benchmark iteration): {} policy, {} IP set",
        stats.active_policy_selectors,
        stats.active_ipset_selectors,
        stats.policy_selector_evaluations,
        stats.ipset_selector_evaluations
    );
    let before = calc.stats().clone();
    put(&mut calc, &extra);
    let d = calc.take_delta().unwrap_or_default();
    println!(
        "one WEP add: {} policy + {} IP-set selector evaluations, a delta of {} changes",
        calc.stats().policy_selector_evaluations - before.policy_selector_evaluations,
        calc.stats().ipset_selector_evaluations - before.ipset_selector_evaluations,
        d.len()
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    dense(&mut c);
    c.final_summary();
}
