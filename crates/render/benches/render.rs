//! The renderer at scale: 10,000 workload endpoints and 1,000 policies,
//! then 10,000 and 10,000 (kernel figures only; `TORTIE_RENDER_BENCH_SCALE`
//! scales all, e.g. 0.1 for a quick run).
//!
//! Printed (manual timing; the kernel parts need root and a fresh network
//! namespace each):
//! - calc from nothing (baseline) vs render from nothing (the first delta);
//! - kernel apply of the rendered table from nothing (one `Reconciler::apply`:
//!   messages, bytes, seconds) vs reading the same table back (`resync`,
//!   baseline);
//! - one workload endpoint added on top: calc + render + apply latency vs
//!   the smallest change through the same path (baseline: an endpoint
//!   moving to another selector — set elements only, no chain);
//! - at 10,000 × 1,000, that endpoint's transaction split by part, each
//!   part applied alone: for an endpoint joining an existing chain group
//!   and one needing a new group (`groups` in the crate), and a lone new
//!   jump rule (what any new jump costs: the kernel's loop check).
//!
//! Criterion (pure, no root): rendering one endpoint added and removed on
//! top of the full state, against rendering an empty delta.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use criterion::Criterion;
use tortie_calc::{Calculator, Delta, Update};
use tortie_dataplane::nft::{NftSocket, Reconciler, Ruleset};
use tortie_model::endpoint::{WorkloadEndpointSpec, workload_endpoint_name};
use tortie_model::{Kind, ObjectMeta, Resource};
use tortie_render::{PolicyRenderer, names};
use tortie_testkit::TestNetns;

const NODE: &str = "bench";

struct Scale {
    endpoints: usize,
    policies: usize,
}

fn scale() -> Scale {
    let f: f64 = std::env::var("TORTIE_RENDER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |x: usize| ((x as f64 * f).round() as usize).max(1);
    Scale {
        endpoints: n(10_000),
        policies: n(1_000),
    }
}

fn wep(s: &Scale, e: usize) -> Resource {
    wep_with_role(s, e, e % (s.policies / 2).max(1))
}

fn wep_with_role(s: &Scale, e: usize, role: usize) -> Resource {
    let pod = format!("p{e}");
    let mut meta =
        ObjectMeta::namespaced("bench", &workload_endpoint_name(NODE, "k8s", &pod, "eth0"));
    meta.labels = [
        ("app".to_string(), format!("app{}", e % s.policies)),
        ("role".to_string(), format!("r{role}")),
    ]
    .into_iter()
    .collect();
    let spec = WorkloadEndpointSpec {
        orchestrator: "k8s".into(),
        node: NODE.into(),
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

fn policies_yaml(s: &Scale) -> String {
    let roles = (s.policies / 2).max(1);
    let mut y = String::from(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: kns.bench}\nspec: {ingress: [{action: Allow}], egress: [{action: Allow}]}\n",
    );
    for k in 0..s.policies {
        y.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: pol{k}}}\nspec:\n  selector: app == \"app{k}\"\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: role == \"r{a}\"}}, destination: {{ports: [80]}}}}\n  - {{action: Allow, protocol: TCP, source: {{selector: role == \"r{b}\"}}, destination: {{ports: [443, 8443]}}}}\n  - {{action: Allow, protocol: UDP, source: {{nets: [10.0.0.0/8, 172.16.0.0/12]}}, destination: {{ports: [53]}}}}\n  egress:\n  - {{action: Deny, destination: {{nets: [192.0.2.0/24]}}}}\n  - {{action: Allow}}\n",
            a = (k * 7) % roles,
            b = (k * 13 + 1) % roles,
        ));
    }
    y
}

/// A calculator in sync with the whole state, and the time it took.
fn calculator(s: &Scale) -> Result<(Calculator, Duration)> {
    let docs = tortie_model::decode_documents(&policies_yaml(s), "bench")
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut resources: Vec<Resource> = docs.into_iter().map(|d| d.resource).collect();
    for r in &mut resources {
        r.apply_defaults();
    }
    resources.extend((0..s.endpoints).map(|e| wep(s, e)));
    let start = Instant::now();
    let mut c = Calculator::new(NODE);
    for r in resources {
        c.apply(Update::Put(Box::new(r)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    c.apply(Update::InSync)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((c, start.elapsed()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The kernel figures at scale `s`; `parts` adds the per-part breakdown
/// of one endpoint's transaction.
fn kernel(s: &Scale, parts_too: bool) -> Result<()> {
    let (mut calc, calc_time) = calculator(s)?;
    let first = calc.take_delta().context("in sync")?;
    let mut renderer = PolicyRenderer::new();
    let mut ruleset = Ruleset::new();
    let start = Instant::now();
    let stats = renderer.apply(&first, &mut ruleset)?;
    let render_time = start.elapsed();

    let ns = TestNetns::new("renderbench")?;
    let mut rec: Reconciler<NftSocket> = ns.run(|| Reconciler::open(names::table()))??;
    *rec.desired_mut() = ruleset;
    let start = Instant::now();
    let report = rec.apply()?;
    let apply_time = start.elapsed();
    anyhow::ensure!(report.failures.is_empty(), "{:?}", report.failures);
    let start = Instant::now();
    rec.resync()?;
    let resync_time = start.elapsed();
    rec.apply()?; // compare after the read (nothing to send)

    // One endpoint at a time on top, then the same path with nothing new.
    let rounds = 15;
    let (mut add, mut add_calc, mut add_render, mut add_apply) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let start = Instant::now();
        calc.apply(Update::Put(Box::new(wep(s, s.endpoints + i))))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let delta = calc.take_delta().context("in sync")?;
        let t1 = Instant::now();
        renderer.apply(&delta, rec.desired_mut())?;
        let t2 = Instant::now();
        let r = rec.apply()?;
        add.push(start.elapsed());
        add_calc.push(t1 - start);
        add_render.push(t2 - t1);
        add_apply.push(t2.elapsed());
        anyhow::ensure!(r.failures.is_empty(), "{:?}", r.failures);
    }
    // Baseline: the smallest change through the same path — one endpoint
    // moving to another role selector (two set elements, no chain).
    let mut relabel = Vec::new();
    for i in 0..rounds {
        let start = Instant::now();
        calc.apply(Update::Put(Box::new(wep_with_role(s, i, s.policies + i))))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let delta = calc.take_delta().context("in sync")?;
        renderer.apply(&delta, rec.desired_mut())?;
        let r = rec.apply()?;
        relabel.push(start.elapsed());
        anyhow::ensure!(r.failures.is_empty(), "{:?}", r.failures);
    }
    let (add, relabel) = (median(add), median(relabel));
    let mut parts = Vec::new();
    if parts_too {
        parts = one_endpoint_parts(
            "existing group",
            wep(s, s.endpoints + 1000),
            &mut calc,
            &mut renderer,
            &mut rec,
        )?;
        // No policy selects it: a profile-only chain, a group of its own.
        let mut lone = wep(s, s.endpoints + 1001);
        lone.metadata
            .labels
            .insert("app".to_string(), "unselected".to_string());
        parts.extend(one_endpoint_parts(
            "new group",
            lone,
            &mut calc,
            &mut renderer,
            &mut rec,
        )?);
    }

    println!(
        "render bench: {} endpoints, {} policies; {} chains, {} rules, {} set elements, {} dispatch elements",
        s.endpoints,
        s.policies,
        stats.chains_written,
        stats.rules_written,
        stats.set_elements_added,
        stats.dispatch_elements_put
    );
    println!(
        "  render from nothing      {:>12}   baseline calc from nothing {:>12}   ratio {:.3}",
        secs(render_time),
        secs(calc_time),
        render_time.as_secs_f64() / calc_time.as_secs_f64()
    );
    println!(
        "  kernel apply (1 txn)     {:>12}   baseline read-back (resync) {:>11}   ratio {:.2}   [{} messages, {} bytes, {} transaction(s)]",
        secs(apply_time),
        secs(resync_time),
        apply_time.as_secs_f64() / resync_time.as_secs_f64(),
        report.messages,
        report.bytes,
        report.transactions
    );
    println!(
        "  one WEP: calc+render+apply {:>10}   baseline one relabel (elements only) {:>8}   ratio {:.2}",
        ms(add),
        ms(relabel),
        add.as_secs_f64() / relabel.as_secs_f64()
    );
    println!(
        "    of which calc {}, render {}, kernel apply {} (medians)",
        ms(median(add_calc)),
        ms(median(add_render)),
        ms(median(add_apply))
    );
    if parts_too {
        println!("    one WEP by part (each alone; add / remove kernel apply, medians):");
    }
    for (name, count, add, remove) in parts {
        println!(
            "      {name:<44} {count:>3} item(s)  add {:>10}  remove {:>10}",
            ms(add),
            ms(remove)
        );
    }
    Ok(())
}

/// What one endpoint's render adds to the table, split by kind: new or
/// changed chains, then new elements per set.
struct Parts {
    chains: Vec<(String, tortie_dataplane::nft::Chain)>,
    elements: std::collections::BTreeMap<
        String,
        Vec<(
            tortie_dataplane::nft::Key,
            Option<tortie_dataplane::nft::Data>,
        )>,
    >,
}

fn parts_of(before: &Ruleset, after: &Ruleset) -> Parts {
    let chains = after
        .chains()
        .filter(|(n, c)| before.chain(n) != Some(*c))
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    let mut elements = std::collections::BTreeMap::new();
    for (name, set) in after.sets() {
        let old = before.set(name);
        let new: Vec<_> = set
            .elements
            .iter()
            .filter(|(k, v)| old.and_then(|o| o.elements.get(*k)) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !new.is_empty() {
            elements.insert(name.clone(), new);
        }
    }
    Parts { chains, elements }
}

type PartTiming = (String, usize, Duration, Duration);

/// Applies each part of one endpoint's change alone (and takes it out
/// again), timing the kernel apply of each: which part costs the time.
fn one_endpoint_parts(
    case: &str,
    endpoint: Resource,
    calc: &mut Calculator,
    renderer: &mut PolicyRenderer,
    rec: &mut Reconciler<NftSocket>,
) -> Result<Vec<PartTiming>> {
    let before = rec.desired().clone();
    let mut after = before.clone();
    calc.apply(Update::Put(Box::new(endpoint)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let delta = calc.take_delta().context("in sync")?;
    renderer.apply(&delta, &mut after)?;
    let parts = parts_of(&before, &after);
    let mut out = Vec::new();
    let mut time = |name: String,
                    chains: &[(String, tortie_dataplane::nft::Chain)],
                    elems: &[(
        &str,
        &(
            tortie_dataplane::nft::Key,
            Option<tortie_dataplane::nft::Data>,
        ),
    )]|
     -> Result<()> {
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            for (n, c) in chains {
                rec.desired_mut().put_chain(n.clone(), c.clone());
            }
            for (set, (k, v)) in elems {
                rec.desired_mut().put_element(set, k.clone(), v.clone())?;
            }
            let t = Instant::now();
            let r = rec.apply()?;
            adds.push(t.elapsed());
            anyhow::ensure!(r.failures.is_empty(), "{:?}", r.failures);
            for (set, (k, _)) in elems {
                rec.desired_mut().remove_element(set, k);
            }
            for (n, _) in chains {
                match before.chain(n) {
                    Some(c) => rec.desired_mut().put_chain(n.clone(), c.clone()),
                    None => {
                        rec.desired_mut().remove_chain(n);
                    }
                }
            }
            let t = Instant::now();
            let r = rec.apply()?;
            removes.push(t.elapsed());
            anyhow::ensure!(r.failures.is_empty(), "{:?}", r.failures);
        }
        out.push((
            name,
            chains.len() + elems.len(),
            median(adds),
            median(removes),
        ));
        Ok(())
    };
    if parts.chains.is_empty() {
        time(format!("{case}: nothing (empty apply)"), &[], &[])?;
    } else {
        time(
            format!("{case}: chains only (unreferenced)"),
            &parts.chains,
            &[],
        )?;
    }
    let all: Vec<(
        &str,
        &(
            tortie_dataplane::nft::Key,
            Option<tortie_dataplane::nft::Data>,
        ),
    )> = parts
        .elements
        .iter()
        .flat_map(|(set, v)| v.iter().map(move |e| (set.as_str(), e)))
        .collect();
    for (set, v) in &parts.elements {
        let e: Vec<_> = v.iter().map(|e| (set.as_str(), e)).collect();
        let is_vmap = v
            .iter()
            .any(|(_, d)| matches!(d, Some(tortie_dataplane::nft::Data::Verdict(_))));
        if is_vmap {
            time(
                format!("{case}: chains + {set} elements"),
                &parts.chains,
                &e,
            )?;
        } else {
            time(format!("{case}: {set} elements"), &[], &e)?;
        }
    }
    time(format!("{case}: everything"), &parts.chains, &all)?;
    // A lone jump: a new chain jumping to an existing policy chain,
    // unreferenced itself.
    if case == "new group"
        && let Some((target, _)) = before.chains().find(|(n, _)| n.starts_with("pi-"))
    {
        let c =
            tortie_dataplane::nft::Chain::regular(vec![tortie_dataplane::nft::Rule::new(vec![
                tortie_dataplane::nft::rules::verdict(tortie_dataplane::nft::Verdict::Jump(
                    target.clone(),
                )),
            ])]);
        time(
            "any: one jump rule in a new chain".into(),
            &[("probe".into(), c)],
            &[],
        )?;
    }
    Ok(out)
}

fn delete_wep(e: usize) -> Update {
    Update::Delete {
        kind: Kind::WorkloadEndpoint,
        namespace: "bench".into(),
        name: workload_endpoint_name(NODE, "k8s", &format!("p{e}"), "eth0"),
    }
}

fn criterion_benches(c: &mut Criterion, s: &Scale) -> Result<()> {
    let (mut calc, _) = calculator(s)?;
    let first = calc.take_delta().context("in sync")?;
    let mut renderer = PolicyRenderer::new();
    let mut ruleset = Ruleset::new();
    renderer.apply(&first, &mut ruleset)?;
    // Deltas that add and remove one endpoint, captured once.
    calc.apply(Update::Put(Box::new(wep(s, s.endpoints))))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let add = calc.take_delta().context("in sync")?;
    calc.apply(delete_wep(s.endpoints))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let remove = calc.take_delta().context("in sync")?;
    let empty = Delta::default();
    let mut g = c.benchmark_group("render");
    g.bench_function("one_wep_add_and_remove", |b| {
        b.iter(|| {
            let a = renderer.apply(black_box(&add), &mut ruleset);
            let r = renderer.apply(black_box(&remove), &mut ruleset);
            black_box((a.is_ok(), r.is_ok()))
        })
    });
    g.bench_function("baseline_empty_delta_twice", |b| {
        b.iter(|| {
            let a = renderer.apply(black_box(&empty), &mut ruleset);
            let r = renderer.apply(black_box(&empty), &mut ruleset);
            black_box((a.is_ok(), r.is_ok()))
        })
    });
    g.finish();
    Ok(())
}

fn main() -> Result<()> {
    let s = scale();
    let mut c = Criterion::default().sample_size(20).configure_from_args();
    kernel(&s, true)?;
    // Ten times the policies: every endpoint its own policy (and group).
    kernel(
        &Scale {
            endpoints: s.endpoints,
            policies: s.policies * 10,
        },
        false,
    )?;
    criterion_benches(&mut c, &s)?;
    c.final_summary();
    Ok(())
}
