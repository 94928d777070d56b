//! The CLI end to end: the real `tortie` binary against a real embedded
//! datastore file in a temporary directory. Each test has its own file.

mod cli_support;

use std::process::Command;

use cli_support::{Cli, Run, fixture, pool};

#[test]
fn spec_examples_apply_and_get_yaml_round_trips_unchanged() {
    let cli = Cli::new();
    let examples = fixture("spec-examples.yaml");
    let out = cli.run(&["apply", "-f", examples.to_str().unwrap()]).ok();
    assert_eq!(out.stdout, "Successfully applied 13 resource(s)\n");
    for (kind, ns, name) in [
        ("ippool", "", "pool-a"),
        ("ipreservation", "", "gateways"),
        ("bgpconfig", "", "default"),
        ("bgppeer", "", "tor-rack1"),
        ("bgpfilter", "", "no-default-route"),
        ("tier", "", "security"),
        ("networkpolicy", "shop", "web-ingress"),
        ("globalnetworkpolicy", "", "block-metadata"),
        ("globalnetworkset", "", "partners"),
        ("hostendpoint", "", "node1-eth0"),
        ("workloadendpoint", "shop", "node1-k8s-web--1-eth0"),
        ("profile", "", "legacy-apps"),
        ("felixconfiguration", "", "default"),
    ] {
        let mut get = vec!["get", kind, name, "-o", "yaml"];
        if !ns.is_empty() {
            get.extend(["-n", ns]);
        }
        let before = cli.run(&get).ok().stdout;
        assert!(before.contains(&format!("name: {name}")), "{before}");
        let applied = cli.apply(&before).ok();
        assert!(
            applied.stdout.starts_with("Successfully applied 1 "),
            "{}",
            applied.stdout
        );
        let after = cli.run(&get).ok().stdout;
        assert_eq!(
            before, after,
            "{kind} {name} changed when its own output was applied again"
        );
    }
}

#[test]
fn a_violating_manifest_is_rejected_naming_the_field_and_nothing_is_stored() {
    let cli = Cli::new();
    let bad = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p1}\nspec: {cidr: 10.0.0.0/16, blockSize: 33}\n";
    let out = cli.apply(bad).fails();
    assert!(
        out.stderr
            .contains("IPPool \"p1\": spec.blockSize 33: must be between 20 and 32"),
        "{}",
        out.stderr
    );
    let get = cli.run(&["get", "ippool", "p1"]).fails();
    assert!(
        get.stderr.contains("resource does not exist: IPPool(p1)"),
        "{}",
        get.stderr
    );
}

#[test]
fn malformed_files_write_nothing_and_name_document_and_line() {
    let cli = Cli::new();
    cli.apply(&pool("existing", "10.9.0.0/16")).ok();
    let before = cli.dump();
    let cases = [
        // bad YAML in the second document
        (format!("{}---\napiVersion: projectcalico.org/v3\nkind: IPPool: x\n", pool("a", "10.1.0.0/16")), "document 2 (line 9): invalid YAML"),
        // unknown kind
        (format!("{}---\napiVersion: projectcalico.org/v3\nkind: Pineapple\nmetadata: {{name: x}}\n", pool("a", "10.1.0.0/16")), "document 2 (line 8): unknown resource type and/or version"),
        // wrong apiVersion
        ("apiVersion: projectcalico.org/v1\nkind: IPPool\nmetadata: {name: x}\n".to_string(), "document 1 (line 1): unknown resource type and/or version"),
        // missing name
        (format!("{}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nspec: {{cidr: 10.3.0.0/16}}\n", pool("a", "10.1.0.0/16")), "document 2 (line 8): IPPool: metadata.name is required"),
        // unknown field
        ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: x}\nspec:\n  cidr: 10.4.0.0/16\n  colour: red\n".to_string(), "document 1 (line 6): field in document is not recognized or is in the wrong location: spec.colour"),
    ];
    for (text, expect) in cases {
        let path = cli.file("bad.yaml", &text);
        let out = cli.run(&["apply", "-f", path.to_str().unwrap()]).fails();
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(first.contains(expect), "expected {expect:?} in {first:?}");
        assert!(
            first.starts_with(&format!("{}: document", path.display())),
            "{first}"
        );
        assert_eq!(cli.dump(), before, "datastore changed by a malformed file");
    }
}

#[test]
fn each_document_is_handled_on_its_own_with_a_summary() {
    let cli = Cli::new();
    let text = format!(
        "{}---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: bad}}\nspec: {{cidr: 10.1.0.0/16, blockSize: 40}}\n---\n{}",
        pool("one", "10.0.0.0/16"),
        pool("two", "10.2.0.0/16")
    );
    let out = cli.apply(&text).fails();
    assert_eq!(
        out.stdout,
        "Partial success: applied 2 out of 3 'IPPool' resources:\n"
    );
    assert!(
        out.stderr
            .contains("hit error: stdin: document 2 (line 8): IPPool \"bad\": spec.blockSize 40"),
        "{}",
        out.stderr
    );
    cli.run(&["get", "ippool", "one"]).ok();
    cli.run(&["get", "ippool", "two"]).ok();
    cli.run(&["get", "ippool", "bad"]).fails();
    // All failing: calicoctl's wording.
    let out = cli
        .run_stdin(&["create", "-f", "-"], &pool("one", "10.0.0.0/16"))
        .fails();
    assert_eq!(
        out.stderr.trim(),
        "failed to create 'IPPool' resource: stdin: document 1 (line 1): resource already exists: IPPool(one)"
    );
    cli.run_stdin(
        &["create", "-f", "-", "--skip-exists"],
        &pool("one", "10.0.0.0/16"),
    )
    .ok();
}

#[test]
fn create_replace_delete_and_their_flags() {
    let cli = Cli::new();
    let out = cli
        .run_stdin(&["replace", "-f", "-"], &pool("p", "10.0.0.0/16"))
        .fails();
    assert!(
        out.stderr.contains("resource does not exist: IPPool(p)"),
        "{}",
        out.stderr
    );
    cli.run_stdin(&["create", "-f", "-"], &pool("p", "10.0.0.0/16"))
        .ok();
    let out = cli
        .run_stdin(
            &["replace", "-f", "-"],
            &pool("p", "10.0.0.0/16").replace(
                "cidr: 10.0.0.0/16",
                "cidr: 10.0.0.0/16\n  natOutgoing: true",
            ),
        )
        .ok();
    assert_eq!(out.stdout, "Successfully replaced 1 'IPPool' resource(s)\n");
    let yaml = cli.run(&["get", "ippool", "p", "-o", "yaml"]).ok().stdout;
    assert!(yaml.contains("natOutgoing: true"), "{yaml}");
    // A stale resourceVersion is refused with calicoctl's message.
    let stale = yaml.replace("natOutgoing: true", "natOutgoing: false");
    cli.apply(&yaml.replace("natOutgoing: true", "disabled: true"))
        .ok();
    let out = cli.apply(&stale).fails();
    assert!(
        out.stderr.contains("is out of date (latest: "),
        "{}",
        out.stderr
    );
    // Immutable fields and overlaps are checked against what is stored.
    let out = cli.apply(&pool("p", "10.1.0.0/16")).fails();
    assert!(
        out.stderr
            .contains("spec.cidr \"10.1.0.0/16\": is immutable"),
        "{}",
        out.stderr
    );
    let out = cli.apply(&pool("q", "10.0.128.0/17")).fails();
    assert!(
        out.stderr
            .contains("spec.cidr 10.0.128.0/17: overlaps IPPool \"p\""),
        "{}",
        out.stderr
    );
    // Delete by name, including several and missing ones.
    let out = cli.run(&["delete", "ippool", "p", "nope"]).fails();
    assert_eq!(
        out.stdout,
        "Partial success: deleted 1 out of 2 'IPPool' resources:\n"
    );
    cli.run(&["delete", "ippool", "nope", "--skip-not-exists"])
        .ok();
    let out = cli.run(&["delete", "bananas", "x"]).fails();
    assert!(
        out.stderr
            .contains("resource type 'bananas' is not supported"),
        "{}",
        out.stderr
    );
    // Delete by file.
    cli.apply(&pool("r", "10.5.0.0/16")).ok();
    let out = cli
        .run_stdin(&["delete", "-f", "-"], &pool("r", "10.5.0.0/16"))
        .ok();
    assert_eq!(out.stdout, "Successfully deleted 1 'IPPool' resource(s)\n");
}

#[test]
fn namespaces_follow_calicoctl_rules() {
    let cli = Cli::new();
    let np = |ns: &str| {
        let ns_line = if ns.is_empty() {
            String::new()
        } else {
            format!("\n  namespace: {ns}")
        };
        format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: np1{ns_line}\nspec:\n  selector: all()\n"
        )
    };
    cli.apply(&np("")).ok();
    cli.run(&["get", "np", "np1", "-n", "default"]).ok();
    cli.run_stdin(&["apply", "-f", "-", "-n", "prod"], &np(""))
        .ok();
    cli.run(&["get", "np", "np1", "-n", "prod"]).ok();
    let out = cli
        .run_stdin(&["apply", "-f", "-", "-n", "prod"], &np("dev"))
        .fails();
    assert!(
        out.stderr
            .contains("resource namespace does not match client namespace. dev != prod"),
        "{}",
        out.stderr
    );
    let out = cli.apply("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p, namespace: x}\nspec: {cidr: 10.0.0.0/16}\n").fails();
    assert!(
        out.stderr.contains("namespace should not be specified for a non-namespaced resource. IPPool is not a namespaced resource"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["get", "ippools", "-n", "x"]).fails();
    assert!(
        out.stderr.contains("IPPool is not namespaced"),
        "{}",
        out.stderr
    );
    let all = cli.run(&["get", "networkpolicies", "-A"]).ok().stdout;
    assert_eq!(
        all,
        "NAMESPACE   NAME   TIER      \ndefault     np1    default   \nprod        np1    default   \n"
    );
}

#[test]
fn get_formats() {
    let cli = Cli::new();
    cli.apply(&format!(
        "{}---\n{}",
        pool("b-pool", "10.1.0.0/16"),
        pool("a-pool", "10.0.0.0/16")
    ))
    .ok();
    let table = cli.run(&["get", "pools"]).ok().stdout;
    assert_eq!(
        table,
        "NAME     CIDR          SELECTOR   \na-pool   10.0.0.0/16   all()      \nb-pool   10.1.0.0/16   all()      \n"
    );
    let custom = cli
        .run(&["get", "ipp", "-o", "custom-columns=CIDR,NAT"])
        .ok()
        .stdout;
    assert_eq!(
        custom,
        "CIDR          NAT     \n10.0.0.0/16   false   \n10.1.0.0/16   false   \n"
    );
    let out = cli
        .run(&["get", "ipp", "-o", "custom-columns=NOPE"])
        .fails();
    assert!(
        out.stderr
            .contains("unknown heading NOPE, valid values are: NAME, CIDR, SELECTOR, NAT"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["get", "ipp", "-o", "xml"]).fails();
    assert!(
        out.stderr.contains("unrecognized output format 'xml'"),
        "{}",
        out.stderr
    );
    // A list is a typed list with the store revision; JSON and YAML agree.
    let json: serde_json::Value =
        serde_json::from_str(&cli.run(&["get", "ippools", "-o", "json"]).ok().stdout).unwrap();
    assert_eq!(json["kind"], "IPPoolList");
    assert_eq!(json["apiVersion"], "projectcalico.org/v3");
    assert!(
        json["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&cli.run(&["get", "ippools", "-o", "yaml"]).ok().stdout).unwrap();
    assert_eq!(yaml, json);
    // --export strips cluster-specific metadata.
    let exported = cli
        .run(&["get", "ippool", "a-pool", "-o", "yaml", "--export"])
        .ok()
        .stdout;
    assert!(
        !exported.contains("resourceVersion")
            && !exported.contains("uid")
            && !exported.contains("creationTimestamp"),
        "{exported}"
    );
    // Kinds by any alias, any case.
    for alias in ["IPPool", "ippools", "ipp", "IPPS", "pool", "pools"] {
        cli.run(&["get", alias]).ok();
    }
    // The virtual profile is always there.
    let profiles = cli.run(&["get", "profiles"]).ok().stdout;
    assert!(
        profiles.contains("projectcalico-default-allow"),
        "{profiles}"
    );
}

#[test]
fn patch_and_label() {
    let cli = Cli::new();
    cli.apply(&pool("p", "10.0.0.0/16")).ok();
    let out = cli
        .run(&[
            "patch",
            "ippool",
            "p",
            "-p",
            r#"{"spec":{"natOutgoing":true}}"#,
        ])
        .ok();
    assert_eq!(out.stdout, "Successfully patched 1 'IPPool' resource\n");
    assert!(
        cli.run(&["get", "ippool", "p", "-o", "yaml"])
            .ok()
            .stdout
            .contains("natOutgoing: true")
    );
    cli.run(&[
        "patch",
        "ippool",
        "p",
        "-t",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/disabled","value":true}]"#,
    ])
    .ok();
    assert!(
        cli.run(&["get", "ippool", "p", "-o", "yaml"])
            .ok()
            .stdout
            .contains("disabled: true")
    );
    let out = cli
        .run(&["patch", "ippool", "p", "-p", r#"{"spec":{"blockSize":40}}"#])
        .fails();
    assert!(out.stderr.contains("spec.blockSize 40"), "{}", out.stderr);
    let out = cli
        .run(&["patch", "ippool", "p", "-p", "{not json"])
        .fails();
    assert!(out.stderr.contains("invalid patch"), "{}", out.stderr);

    let out = cli.run(&["label", "ippool", "p", "env=prod"]).ok();
    assert_eq!(out.stdout, "Successfully set label env on ippool p\n");
    let out = cli.run(&["label", "ippool", "p", "env=dev"]).fails();
    assert_eq!(
        out.stderr.trim(),
        "failed to update label of ippool p, key env is already present. please use '--overwrite' to set a new value"
    );
    let out = cli
        .run(&["label", "ippool", "p", "env=dev", "--overwrite"])
        .ok();
    assert_eq!(out.stdout, "Successfully updated label env on ippool p\n");
    let out = cli.run(&["label", "ippool", "p", "env", "--remove"]).ok();
    assert_eq!(out.stdout, "Successfully removed label env on ippool p\n");
    let out = cli
        .run(&["label", "ippool", "p", "env", "--remove"])
        .fails();
    assert_eq!(
        out.stderr.trim(),
        "cannot remove label of ippool p, key env does not exist"
    );
    let out = cli.run(&["label", "ippool", "p", "bad key=x"]).fails();
    assert!(out.stderr.contains("metadata.labels"), "{}", out.stderr);
}

#[test]
fn tiers_and_policies_depend_on_each_other() {
    let cli = Cli::new();
    let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {tier: security, selector: all()}\n";
    let out = cli.apply(gnp).fails();
    assert!(
        out.stderr
            .contains("spec.tier \"security\": tier does not exist"),
        "{}",
        out.stderr
    );
    cli.apply("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n").ok();
    cli.apply(gnp).ok();
    let labels = cli.run(&["get", "gnp", "g", "-o", "yaml"]).ok().stdout;
    assert!(
        labels.contains("projectcalico.org/tier: security"),
        "{labels}"
    );
    let out = cli.run(&["delete", "tier", "security"]).fails();
    assert!(
        out.stderr
            .contains("tier \"security\" is still used by 1 policy"),
        "{}",
        out.stderr
    );
    cli.run(&["delete", "gnp", "g"]).ok();
    cli.run(&["delete", "tier", "security"]).ok();
    let out = cli.run(&["delete", "tier", "default"]).fails();
    assert!(
        out.stderr.contains("reserved and cannot be deleted"),
        "{}",
        out.stderr
    );
    let out = cli.apply("apiVersion: projectcalico.org/v3\nkind: ClusterInformation\nmetadata: {name: default}\nspec: {}\n").fails();
    assert!(out.stderr.contains("read-only"), "{}", out.stderr);
    // One file with the policy before its tier: applied tier first,
    // deleted tier last.
    let both = cli.file(
        "tiered.yaml",
        &format!(
            "{gnp}---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 100}}\n"
        ),
    );
    let both = both.to_str().expect("utf-8 path");
    let out = cli.run(&["apply", "-f", both]).ok();
    assert_eq!(out.stdout, "Successfully applied 2 resource(s)\n");
    let out = cli.run(&["delete", "-f", both]).ok();
    assert_eq!(out.stdout, "Successfully deleted 2 resource(s)\n");
    cli.run(&["get", "tier", "security"]).fails();
}

#[test]
fn input_from_directories_and_validate() {
    let cli = Cli::new();
    cli.file("manifests/a.yaml", &pool("a", "10.0.0.0/16"));
    cli.file("manifests/sub/b.json", r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"b"},"spec":{"cidr":"10.1.0.0/16"}}"#);
    cli.file("manifests/notes.txt", "not a manifest");
    let dir = cli.dir.path().join("manifests");
    let out = cli.run(&["validate", "-f", dir.to_str().unwrap()]).ok();
    assert_eq!(
        out.stdout,
        "Successfully validated 1 'IPPool' resource(s)\n"
    );
    let out = cli.run(&["apply", "-f", dir.to_str().unwrap(), "-R"]).ok();
    assert_eq!(out.stdout, "Successfully applied 2 'IPPool' resource(s)\n");
    let out = cli
        .run_stdin(&["apply", "-f", "-"], "# nothing here\n")
        .fails();
    assert_eq!(out.stderr.trim(), "No resources specified");
    let out = cli.run_stdin(&["validate", "-f", "-"], "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v}\nspec: {cidr: 10.0.0.1/16}\n").fails();
    assert!(out.stderr.contains("spec.cidr"), "{}", out.stderr);
    cli.run(&["get", "ippool", "v"]).fails();
    let out = cli.run(&["apply", "-f", "/nonexistent/file.yaml"]).fails();
    assert!(
        out.stderr.contains("cannot read /nonexistent/file.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn selector_commands() {
    let cli = Cli::new();
    let out = cli
        .run(&["selector", "check", "a in {\"z\", \"x\"} && has(b)"])
        .ok();
    assert_eq!(out.stdout, "(a in {\"x\", \"z\"} && has(b))\n");
    let out = cli.run(&["selector", "check", "a = 'b'"]).fails();
    assert!(out.stderr.contains("invalid selector"), "{}", out.stderr);
    let out = cli
        .run(&[
            "selector",
            "match",
            "app == 'web'",
            "--labels",
            r#"{"app": "web"}"#,
        ])
        .ok();
    assert_eq!(out.stdout, "true\n");
    let out = cli
        .run(&[
            "selector",
            "match",
            "app == 'web'",
            "--labels",
            r#"{"app": "db"}"#,
        ])
        .ok();
    assert_eq!(out.stdout, "false\n");
    cli.run(&["selector", "match", "app ==", "--labels", "{}"])
        .fails();
    let out = cli
        .run(&["selector", "match", "all()", "--labels", "[1]"])
        .fails();
    assert!(out.stderr.contains("invalid --labels"), "{}", out.stderr);
}

#[test]
fn datastore_selection_and_version() {
    let cli = Cli::new();
    cli.apply(&pool("p", "10.0.0.0/16")).ok();
    let out = cli.run(&["version"]).ok().stdout;
    assert!(
        out.contains("Client Version:    v")
            && out.contains("Cluster Version:   v")
            && out.contains("Cluster Type:      tortie,bgp"),
        "{out}"
    );
    let out = cli
        .run(&["--datastore", "etcd:http://127.0.0.1:1", "get", "ippools"])
        .fails();
    assert!(out.stderr.contains("etcd"), "{}", out.stderr);
    let out = cli
        .run(&["--datastore", "mysql:x", "get", "ippools"])
        .fails();
    assert!(out.stderr.contains("mysql:x"), "{}", out.stderr);
    // The config file applies when no datastore is given at all.
    let mut c = Command::new(env!("CARGO_BIN_EXE_tortie"));
    c.env_clear()
        .args(["-c", "/nonexistent.cfg", "get", "ippools"]);
    let out = Run::from(c.output().unwrap()).fails();
    assert!(
        out.stderr
            .contains("Error reading config file: /nonexistent.cfg"),
        "{}",
        out.stderr
    );
    let cfg = cli.file("k8s.cfg", "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec: {datastoreType: kubernetes}\n");
    let mut c = Command::new(env!("CARGO_BIN_EXE_tortie"));
    c.env_clear()
        .args(["-c", cfg.to_str().unwrap(), "get", "ippools"]);
    let out = Run::from(c.output().unwrap()).fails();
    assert!(
        out.stderr.contains("kubernetes datastore is not supported"),
        "{}",
        out.stderr
    );
    // A cluster written by another version is refused unless overridden.
    let key = "/calico/resources/v3/projectcalico.org/clusterinformations/default";
    let path = cli.dir.path().join("ds.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tortie_datastore::Datastore as _;
        let ds = tortie_datastore::embedded::EmbeddedDatastore::open(&path, Default::default())
            .await
            .unwrap();
        let kv = ds
            .get(key)
            .await
            .unwrap()
            .expect("cluster information exists");
        let text = String::from_utf8(kv.value)
            .unwrap()
            .replace("\"calicoVersion\":\"v", "\"calicoVersion\":\"v9");
        ds.put(key, text.into_bytes()).await.unwrap();
    });
    let out = cli.run(&["get", "ippools"]).fails();
    assert!(
        out.stderr
            .starts_with("version mismatch.\nClient Version:   v"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Use --allow-version-mismatch to override"),
        "{}",
        out.stderr
    );
    cli.run(&["get", "ippools", "--allow-version-mismatch"])
        .ok();
    let out = cli.run(&["get", "ippools", "--log-level", "shout"]).fails();
    assert!(out.stderr.contains("invalid log level"), "{}", out.stderr);
}

#[test]
fn migrate_between_embedded_files_and_lock() {
    let cli = Cli::new();
    cli.run(&[
        "apply",
        "-f",
        fixture("spec-examples.yaml").to_str().unwrap(),
    ])
    .ok();
    let target = format!("embedded:{}", cli.dir.path().join("target.db").display());
    let out = cli
        .run(&[
            "datastore",
            "migrate",
            "--from",
            &cli.datastore(),
            "--to",
            &target,
        ])
        .ok();
    assert!(
        out.stdout.starts_with("Successfully migrated "),
        "{}",
        out.stdout
    );
    // Every kind reads back the same from the target (resource versions
    // are the target's own revisions).
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.contains("resourceVersion"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for kind in [
        "ippools",
        "tiers",
        "gnp",
        "bgpconfig",
        "bgppeers",
        "bgpfilters",
        "gnetsets",
        "heps",
        "profiles",
        "felixconfig",
        "ipreservations",
        "clusterinfo",
    ] {
        let from = cli.run(&["get", kind, "-o", "yaml"]).ok().stdout;
        let to = cli
            .run(&["--datastore", &target, "get", kind, "-o", "yaml"])
            .ok()
            .stdout;
        assert_eq!(strip(from), strip(to), "{kind}");
    }
    for kind in ["networkpolicies", "weps"] {
        let from = cli.run(&["get", kind, "-A", "-o", "yaml"]).ok().stdout;
        let to = cli
            .run(&["--datastore", &target, "get", kind, "-A", "-o", "yaml"])
            .ok()
            .stdout;
        assert_eq!(strip(from), strip(to), "{kind}");
    }
    // A non-empty target is refused unless --force.
    let out = cli
        .run(&[
            "datastore",
            "migrate",
            "--from",
            &cli.datastore(),
            "--to",
            &target,
        ])
        .fails();
    assert!(
        out.stderr.contains("is not empty") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    cli.run(&[
        "datastore",
        "migrate",
        "--from",
        &cli.datastore(),
        "--to",
        &target,
        "--force",
    ])
    .ok();
    let out = cli
        .run(&["datastore", "migrate", "--from", &cli.datastore()])
        .fails();
    assert!(out.stderr.contains("--to"), "{}", out.stderr);

    let check = cli.run(&["datastore", "check"]).ok().stdout;
    assert!(check.contains("Backend:     embedded"), "{check}");
    assert!(
        check.contains("IPPool ") && check.contains("GlobalNetworkPolicy "),
        "{check}"
    );

    cli.run(&["datastore", "migrate", "lock"]).ok();
    let info = cli.run(&["get", "clusterinfo", "-o", "wide"]).ok().stdout;
    assert!(info.contains("false"), "{info}");
    cli.run(&["datastore", "migrate", "unlock"]).ok();
    let info = cli.run(&["get", "clusterinfo", "-o", "wide"]).ok().stdout;
    assert!(info.contains("true"), "{info}");
}

#[test]
fn ipam_commands() {
    let cli = Cli::new();
    cli.apply(&pool("p", "10.77.0.0/16")).ok();
    let show = cli.run(&["ipam", "show"]).ok().stdout;
    assert!(
        show.contains("| GROUPING |") && show.contains("| IP Pool  | 10.77.0.0/16 |"),
        "{show}"
    );
    let out = cli
        .run(&["ipam", "configure", "--strictaffinity=true"])
        .ok();
    assert_eq!(out.stdout, "Successfully set StrictAffinity to: true\n");
    let cfg = cli
        .run(&["ipam", "show", "--show-configuration"])
        .ok()
        .stdout;
    assert!(
        cfg.contains("| StrictAffinity ") && cfg.contains("| true "),
        "{cfg}"
    );
    let check = cli.run(&["ipam", "check"]).ok().stdout;
    assert!(
        check.ends_with("Check complete; found 0 problems.\n"),
        "{check}"
    );
    let out = cli.run(&["ipam", "release", "--ip", "10.77.0.9"]).fails();
    assert!(
        out.stderr.contains("IP address 10.77.0.9 is not assigned"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["ipam", "show", "--ip", "10.77.0.9"]).ok();
    assert_eq!(out.stdout.trim(), "10.77.0.9 is not assigned");
    // Bad flags exit 1, as every error does.
    cli.run(&["ipam", "bogus"]).fails();
    // Deleting a pool goes through IPAM and leaves no block affinity behind.
    cli.run(&["delete", "ippool", "p"]).ok();
    cli.run(&["get", "ippool", "p"]).fails();
}

#[test]
fn node_and_lab_flags_are_checked_before_anything_runs() {
    let cli = Cli::new();
    for bad in ["nan", "0", "-1", "inf", "soon"] {
        let flag = format!("--resync-interval={bad}");
        let run = cli.run(&["node", "run", &flag]);
        assert_ne!(run.code, 0, "--resync-interval {bad} accepted");
        assert!(
            run.stderr.contains("between 0.05 and 3600"),
            "--resync-interval {bad}: {}",
            run.stderr
        );
    }
    let run = cli.run(&["lab", "up", "BAD NAME"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("lab name"), "{}", run.stderr);
    let run = cli.run(&[
        "lab",
        "up",
        "x",
        "--etcd",
        "--datastore",
        "embedded:/tmp/x.db",
    ]);
    assert_ne!(run.code, 0, "--etcd with --datastore accepted");
    for (flag, value, wanted) in [
        ("--ip", "fd30::11/64", "not an IPv4 address"),
        ("--ip6", "172.30.0.11/24", "not an IPv6 address"),
        ("--ip6", "fd30::11", "not an IPv6 address"),
    ] {
        let run = cli.run(&["node", "run", flag, value]);
        assert_ne!(run.code, 0, "{flag} {value} accepted");
        assert!(
            run.stderr.contains(wanted),
            "{flag} {value}: {}",
            run.stderr
        );
    }
    for (args, wanted) in [
        (
            &["--ipv6", "--pod-cidr6", "10.0.0.0/8"][..],
            "--pod-cidr6 \"10.0.0.0/8\": expected an IPv6 CIDR",
        ),
        (
            &["--ipv6", "--subnet6", "fd30::/126"],
            "--subnet6 fd30::/126",
        ),
        (&["--pod-cidr6", "fd00::/48"], "--ipv6"),
        (&["--mode", "bgp"], "--mode \"bgp\""),
        (&["--mtu", "100"], "--mtu"),
        (&["--mtu", "9001"], "--mtu"),
    ] {
        let mut all = vec!["lab", "up", "nosuchlab1"];
        all.extend_from_slice(args);
        let run = cli.run(&all);
        assert_ne!(run.code, 0, "{args:?} accepted");
        assert!(run.stderr.contains(wanted), "{args:?}: {}", run.stderr);
        assert!(
            !std::path::Path::new("/run/tortie/lab/nosuchlab1").exists(),
            "{args:?}: a refused lab up left a lab directory behind"
        );
    }
    let run = cli.run(&["lab", "restart", "nosuchlab0", "node-1"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("no lab"), "{}", run.stderr);
    assert!(
        !std::path::Path::new("/run/tortie/lab/nosuchlab0").exists(),
        "a failed restart left a lab directory behind"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let cli = Cli::new();
    let many: Vec<String> = (0..200)
        .map(|i| pool(&format!("p{i}"), &format!("10.{i}.0.0/16")))
        .collect();
    cli.apply(&many.join("---\n")).ok();
    // The reader is gone before tortie writes (`| head -0`, `| grep -q`).
    let mut child = cli
        .command()
        .args(["get", "ippools", "-o", "yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tortie");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("tortie ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn policy_explain_takes_the_ipv6_packet_of_dual_stack_endpoints_with_ipv6() {
    let cli = Cli::new();
    let wep = |name: &str, v4: &str, v6: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: node1-k8s-{name}-eth0\n  namespace: shop\n  labels: {{app: {name}, projectcalico.org/namespace: shop, projectcalico.org/orchestrator: k8s}}\nspec:\n  orchestrator: k8s\n  node: node1\n  pod: {name}\n  endpoint: eth0\n  interfaceName: cali{name}0\n  ipNetworks: [{v4}/32, {v6}/128]\n  profiles: [kns.shop]\n---\n"
        )
    };
    let manifest = format!(
        "{}{}apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: kns.shop}}\nspec:\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: no-v6-from-client}}\nspec:\n  selector: app == 'web'\n  ingress:\n  - action: Deny\n    source: {{nets: ['fd00:10:244::/120']}}\n  - action: Allow\n",
        wep("client", "10.244.0.1", "fd00:10:244::1"),
        wep("web", "10.244.0.2", "fd00:10:244::2"),
    );
    cli.apply(&manifest).ok();
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--from",
            "shop/client",
            "--to",
            "shop/web",
            "--port",
            "80",
        ];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let v4 = explain(&[]).ok().stdout;
    assert!(
        v4.starts_with("10.244.0.1 ") && v4.contains(": ALLOW"),
        "{v4}"
    );
    let v6 = explain(&["--ipv6"]).ok().stdout;
    assert!(
        v6.starts_with("fd00:10:244::1 ") && v6.contains(": DENY"),
        "{v6}"
    );
    assert!(v6.contains("no-v6-from-client, rule 0 (Deny)"), "{v6}");
    // An IPv4-only peer has no IPv6 packet to explain.
    let out = cli
        .run(&[
            "policy",
            "explain",
            "--from",
            "10.244.0.9",
            "--to",
            "shop/web",
            "--ipv6",
        ])
        .fails();
    assert!(
        out.stderr.contains("10.244.0.9 has no V6 address"),
        "{}",
        out.stderr
    );
}
