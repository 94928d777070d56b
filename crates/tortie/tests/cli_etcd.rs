//! The CLI on a real etcd cluster started by the test: the same commands as
//! on the embedded file, migration from the embedded file to etcd, and the
//! errors a user sees when etcd cannot be reached.

mod cli_support;

use std::time::{Duration, Instant};

use cli_support::{Cli, fixture, pool};
use tortie_testkit::EtcdCluster;

fn etcd_cli(cluster: &EtcdCluster) -> Cli {
    Cli::with_datastore(&format!("etcd:{}", cluster.endpoints().join(",")))
}

/// `get -o yaml` of every kind, with resource versions (each backend's own
/// revisions) left out.
fn every_kind_yaml(cli: &Cli, datastore: &str) -> Vec<(String, String)> {
    let kinds = [
        "ippools",
        "ipreservations",
        "bgpconfig",
        "bgppeers",
        "bgpfilters",
        "tiers",
        "gnp",
        "gnetsets",
        "heps",
        "profiles",
        "felixconfig",
        "clusterinfo",
        "nodes",
        "kubecontrollersconfig",
    ];
    let namespaced = [
        "networkpolicies",
        "networksets",
        "weps",
        "stagednetworkpolicies",
    ];
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.contains("resourceVersion"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = Vec::new();
    for kind in kinds {
        let yaml = cli
            .run(&["--datastore", datastore, "get", kind, "-o", "yaml"])
            .ok()
            .stdout;
        out.push((kind.to_string(), strip(yaml)));
    }
    for kind in namespaced {
        let yaml = cli
            .run(&["--datastore", datastore, "get", kind, "-A", "-o", "yaml"])
            .ok()
            .stdout;
        out.push((kind.to_string(), strip(yaml)));
    }
    out
}

#[test]
fn resource_commands_work_on_etcd() {
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let cli = etcd_cli(&cluster);
    let out = cli
        .run(&[
            "apply",
            "-f",
            fixture("spec-examples.yaml").to_str().unwrap(),
        ])
        .ok();
    assert_eq!(out.stdout, "Successfully applied 13 resource(s)\n");
    let yaml = cli
        .run(&["get", "ippool", "pool-a", "-o", "yaml"])
        .ok()
        .stdout;
    cli.apply(&yaml).ok();
    assert_eq!(
        cli.run(&["get", "ippool", "pool-a", "-o", "yaml"])
            .ok()
            .stdout,
        yaml,
        "own output applies unchanged"
    );
    let out = cli.apply(&pool("overlap", "10.244.128.0/17")).fails();
    assert!(
        out.stderr.contains("overlaps IPPool \"pool-a\""),
        "{}",
        out.stderr
    );
    cli.run(&["label", "ippool", "pool-a", "zone=west"]).ok();
    cli.run(&[
        "patch",
        "ippool",
        "pool-a",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ])
    .ok();
    let check = cli.run(&["datastore", "check"]).ok().stdout;
    assert!(check.contains("Backend:     etcd (etcd 3."), "{check}");
    assert!(check.contains("healthy (leader)"), "{check}");
    cli.run(&["delete", "ippool", "pool-a"]).ok();
    cli.run(&["get", "ippool", "pool-a"]).fails();
}

#[test]
fn migrate_from_the_embedded_file_to_etcd_keeps_every_resource() {
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let cli = Cli::new();
    cli.run(&[
        "apply",
        "-f",
        fixture("spec-examples.yaml").to_str().unwrap(),
    ])
    .ok();
    cli.run(&[
        "apply",
        "-f",
        fixture("policy-examples.yaml").to_str().unwrap(),
    ])
    .ok();
    cli.run(&["apply", "-f", fixture("more-kinds.yaml").to_str().unwrap()])
        .ok();
    cli.run(&["ipam", "configure", "--strictaffinity=true"])
        .ok();
    let etcd = format!("etcd:{}", cluster.endpoints().join(","));
    let out = cli
        .run(&[
            "datastore",
            "migrate",
            "--from",
            &cli.datastore(),
            "--to",
            &etcd,
        ])
        .ok();
    assert!(
        out.stdout.starts_with("Successfully migrated "),
        "{}",
        out.stdout
    );
    let before = every_kind_yaml(&cli, &cli.datastore());
    let after = every_kind_yaml(&cli, &etcd);
    for ((kind, a), (_, b)) in before.iter().zip(&after) {
        assert!(
            a.contains("name:"),
            "{kind}: the source holds none, so the comparison would prove nothing"
        );
        assert_eq!(a, b, "{kind} differs after migration");
    }
    let cfg = cli
        .run(&["--datastore", &etcd, "ipam", "show", "--show-configuration"])
        .ok()
        .stdout;
    assert!(
        cfg.contains("| StrictAffinity ") && cfg.contains("| true "),
        "{cfg}"
    );
    // The target now holds data: a second migration needs --force.
    let out = cli
        .run(&[
            "datastore",
            "migrate",
            "--from",
            &cli.datastore(),
            "--to",
            &etcd,
        ])
        .fails();
    assert!(out.stderr.contains("is not empty"), "{}", out.stderr);
}

#[test]
fn unreachable_etcd_gives_a_clear_error_within_the_timeout() {
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let cli = etcd_cli(&cluster);
    cli.apply(&pool("p", "10.0.0.0/16")).ok();
    cluster.stop_all().expect("stop etcd");
    let started = Instant::now();
    let out = cli.run(&["--timeout", "2", "get", "ippools"]).fails();
    let took = started.elapsed();
    assert!(
        out.stderr
            .contains(&format!("cannot reach etcd at {}", cluster.endpoint(0))),
        "{}",
        out.stderr
    );
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} with --timeout 2"
    );
    assert!(
        !out.stderr.contains('\n') || out.stderr.trim_end().lines().count() == 1,
        "{}",
        out.stderr
    );
    cluster.start_all().expect("restart etcd");
    let table = cli.run(&["get", "ippools"]).ok().stdout;
    assert!(table.contains("10.0.0.0/16"), "{table}");
}
