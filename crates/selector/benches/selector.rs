//! Selector parse and evaluation benchmarks.
//!
//! Evaluation runs each selector over 1,000 synthetic endpoints (6–8
//! labels each, like a real pod: app, tier, env, version, namespace,
//! orchestrator, optional service account and team), with
//! `Throughput::Elements(1000)`, so criterion's "elem/s" figure converts to
//! nanoseconds per evaluation as 1e9 / rate.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tortie_selector::Selector;

const PARSE_CASES: &[(&str, &str)] = &[
    ("equality", r#"app == "web""#),
    (
        "namespaced_policy",
        r#"(role == "frontend" && tier in {"web", "api", "edge"}) && projectcalico.org/namespace == 'prod'"#,
    ),
    (
        "mixed",
        r#"!has(pcns.quarantine) && (env starts with "prod" || version not in {"v1", "v2"}) && app != "db""#,
    ),
];

const EVAL_CASES: &[(&str, &str)] = &[
    ("equality", r#"app == "web""#),
    (
        "in_set",
        r#"tier in {"frontend", "backend", "cache", "edge"}"#,
    ),
    ("has", "has(projectcalico.org/serviceaccount)"),
    (
        "four_clause_and_or",
        r#"(app == "web" || app == "api") && env != "dev" && projectcalico.org/namespace starts with "team-""#,
    ),
    ("all", "all()"),
];

fn endpoints() -> Vec<BTreeMap<String, String>> {
    const APPS: &[&str] = &["web", "api", "db", "cache", "worker", "auth", "search"];
    const TIERS: &[&str] = &["frontend", "backend", "cache", "batch"];
    const ENVS: &[&str] = &["prod", "staging", "dev"];
    (0..1000)
        .map(|i: usize| {
            let mut labels = BTreeMap::new();
            let mut put = |k: &str, v: String| labels.insert(k.to_string(), v);
            put("app", APPS[i % APPS.len()].to_string());
            put("tier", TIERS[(i / 7) % TIERS.len()].to_string());
            put("env", ENVS[(i / 3) % ENVS.len()].to_string());
            put("version", format!("v{}", i % 5));
            put("projectcalico.org/namespace", format!("team-{}", i % 40));
            put("projectcalico.org/orchestrator", "k8s".to_string());
            if i.is_multiple_of(2) {
                put("projectcalico.org/serviceaccount", format!("sa-{}", i % 11));
            }
            if i.is_multiple_of(3) {
                put("team", format!("t{}", i % 9));
            }
            labels
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, text) in PARSE_CASES {
        group.bench_function(*name, |b| b.iter(|| Selector::parse(black_box(text))));
    }
    group.finish();
}

fn evaluate(c: &mut Criterion) {
    let btree = endpoints();
    let hash: Vec<HashMap<String, String>> = btree
        .iter()
        .map(|m| m.clone().into_iter().collect())
        .collect();
    let mut group = c.benchmark_group("eval_1000_endpoints");
    group.throughput(Throughput::Elements(btree.len() as u64));
    // Baseline: the equality test written by hand, the least any engine can do.
    group.bench_function("btreemap/baseline_handwritten_equality", |b| {
        b.iter(|| {
            btree
                .iter()
                .filter(|l| l.get("app").map(String::as_str) == Some(black_box("web")))
                .count()
        })
    });
    for (name, text) in EVAL_CASES {
        let selector = Selector::parse(text).expect("benchmark selectors are valid");
        group.bench_function(format!("btreemap/{name}"), |b| {
            b.iter(|| btree.iter().filter(|l| selector.matches(*l)).count())
        });
        group.bench_function(format!("hashmap/{name}"), |b| {
            b.iter(|| hash.iter().filter(|l| selector.matches(*l)).count())
        });
    }
    group.finish();
}

fn unique_id(c: &mut Criterion) {
    let selector = Selector::parse(PARSE_CASES[1].1).expect("benchmark selectors are valid");
    c.bench_function("unique_id", |b| b.iter(|| black_box(&selector).unique_id()));
}

criterion_group!(benches, parse, evaluate, unique_id);
criterion_main!(benches);
