//! Decoding files: the spec's examples, every document shape calicoctl
//! accepts, Kubernetes NetworkPolicy conversion, and one-line errors that
//! name the document and line.

#[allow(dead_code)]
mod common;

use tortie_model::{Kind, Resource, decode_documents};

fn decode_ok(text: &str) -> Vec<Resource> {
    match decode_documents(text, "in.yaml") {
        Ok(d) => d.into_iter().map(|d| d.resource).collect(),
        Err(errs) => panic!("decode failed: {errs:?}"),
    }
}

fn decode_err(text: &str) -> Vec<String> {
    match decode_documents(text, "in.yaml") {
        Ok(d) => panic!("decoded, but should fail: {d:?}"),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn every_spec_example_applies_and_round_trips() {
    for (fixture, count) in [
        ("spec-examples.yaml", 13),
        ("policy-examples.yaml", 10),
        ("more-kinds.yaml", 7),
    ] {
        let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture exists");
        let decoded = decode_documents(&text, fixture).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(decoded.len(), count, "{fixture}");
        for d in decoded {
            let mut r = d.resource;
            if r.kind().namespaced() && r.metadata.namespace.is_empty() {
                r.metadata.namespace = "default".into();
            }
            r.apply_defaults();
            r.validate().unwrap_or_else(|e| panic!("{}: {e}", d.origin));
            // What is stored decodes back to the same resource, and defaults
            // are idempotent.
            let back = Resource::from_json(r.kind(), &r.to_json()).expect("stored JSON decodes");
            assert_eq!(back, r, "{}", d.origin);
            let mut again = back.clone();
            again.apply_defaults();
            assert_eq!(again, r, "defaults must be idempotent: {}", d.origin);
        }
    }
}

#[test]
fn document_shapes() {
    let pool = |name: &str, cidr: &str| {
        format!(
            "{{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"IPPool\", \"metadata\": {{\"name\": \"{name}\"}}, \"spec\": {{\"cidr\": \"{cidr}\"}}}}"
        )
    };
    let names = |rs: Vec<Resource>| rs.into_iter().map(|r| r.metadata.name).collect::<Vec<_>>();
    // Several YAML documents, with empty and comment-only documents between.
    let multi = "---\n# nothing\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.0.0.0/16}\n---\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n...\n";
    assert_eq!(names(decode_ok(multi)), ["a", "t"]);
    // A JSON array, and a stream of JSON objects.
    assert_eq!(
        names(decode_ok(&format!(
            "[{}, {}]",
            pool("a", "10.0.0.0/16"),
            pool("b", "10.1.0.0/16")
        ))),
        ["a", "b"]
    );
    assert_eq!(
        names(decode_ok(&format!(
            "{}\n{}",
            pool("a", "10.0.0.0/16"),
            pool("b", "10.1.0.0/16")
        ))),
        ["a", "b"]
    );
    // Typed lists, a generic List, and a YAML sequence.
    let typed = "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: a}\n  spec: {cidr: 10.0.0.0/16}\n";
    assert_eq!(names(decode_ok(typed)), ["a"]);
    let generic = format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{}]}}",
        pool("j", "10.9.0.0/16")
    );
    assert_eq!(names(decode_ok(&generic)), ["j"]);
    let seq = "- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: t1}\n- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: t2}\n";
    assert_eq!(names(decode_ok(seq)), ["t1", "t2"]);
    assert!(decode_ok("# only a comment\n").is_empty());
    assert!(decode_ok("").is_empty());
}

#[test]
fn malformed_documents_give_one_line_errors_with_document_and_line() {
    let good = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n";
    // Bad YAML in document 2.
    let errs = decode_err(&format!(
        "{good}---\napiVersion: projectcalico.org/v3\nkind: Tier: x\nmetadata: {{name: y}}\n"
    ));
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0],
        "in.yaml: document 2 (line 6): invalid YAML: mapping values are not allowed in this context"
    );
    // Unknown kind, wrong apiVersion, missing name, missing kind.
    let errs = decode_err("apiVersion: projectcalico.org/v3\nkind: Banana\nmetadata: {name: b}\n");
    assert!(
        errs[0].contains("document 1") && errs[0].contains("unknown resource type and/or version"),
        "{}",
        errs[0]
    );
    let errs = decode_err("apiVersion: projectcalico.org/v2\nkind: IPPool\nmetadata: {name: p}\n");
    assert!(
        errs[0].contains("apiVersion \"projectcalico.org/v2\" is not valid for kind IPPool"),
        "{}",
        errs[0]
    );
    let errs = decode_err(&format!(
        "{good}---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{labels: {{a: b}}}}\n"
    ));
    assert!(
        errs[0].contains("document 2") && errs[0].contains("metadata.name is required"),
        "{}",
        errs[0]
    );
    let errs = decode_err("metadata: {name: x}\nkind: Tier\n");
    assert!(errs[0].contains("missing apiVersion"), "{}", errs[0]);
    // Unknown field: named by its full path, with its line.
    let errs = decode_err(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec:\n  cidr: 10.0.0.0/16\n  bogus: 1\n",
    );
    assert_eq!(
        errs[0],
        "in.yaml: document 1 (line 6): field in document is not recognized or is in the wrong location: spec.bogus"
    );
    let errs = decode_err(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec:\n  cidr: 10.0.0.0/16\n  blockSize: big\n",
    );
    assert!(
        errs[0].contains("(line 6): spec.blockSize: invalid type"),
        "{}",
        errs[0]
    );
    // Errors inside a list name the item.
    let errs = decode_err(
        "[{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"Tier\", \"metadata\": {\"name\": \"t\"}, \"spec\": {\"oops\": 1}}]",
    );
    assert!(
        errs[0].contains("document 1 item 1") && errs[0].contains("spec.oops"),
        "{}",
        errs[0]
    );
    // Bad JSON.
    let errs = decode_err("{\"apiVersion\": \n\n  \"x\",,}");
    assert!(
        errs[0].contains("invalid JSON") && errs[0].contains("line 3"),
        "{}",
        errs[0]
    );
    // Every error is one line.
    for e in &errs {
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn kubernetes_network_policy_is_stored_as_its_calico_equivalent() {
    let k8s = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web, tier: front}
    matchExpressions:
    - {key: env, operator: In, values: [prod, stage]}
    - {key: legacy, operator: DoesNotExist}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: lb}}
    - namespaceSelector: {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 80}
    - {protocol: UDP, port: 53}
    - {port: 8000, endPort: 8080}
  egress:
  - {}
"#;
    let r = common::admit(k8s).expect("k8s policy admitted");
    assert_eq!(r.kind(), Kind::NetworkPolicy);
    assert_eq!(r.metadata.name, "knp.default.web");
    assert_eq!(r.metadata.namespace, "shop");
    let v = serde_json::to_value(&r).unwrap();
    let spec = &v["spec"];
    assert_eq!(spec["tier"], "default");
    assert_eq!(spec["order"], 1000);
    assert_eq!(
        spec["selector"],
        "projectcalico.org/orchestrator == 'k8s' && app == 'web' && tier == 'front' && env in { 'prod', 'stage' } && ! has(legacy)"
    );
    assert_eq!(spec["types"], serde_json::json!(["Ingress", "Egress"]));
    let ingress = spec["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 6, "3 peers x 2 protocols");
    assert_eq!(
        ingress[0],
        serde_json::json!({"action": "Allow", "protocol": "TCP",
            "source": {"selector": "projectcalico.org/orchestrator == 'k8s' && role == 'lb'"},
            "destination": {"ports": [80, "8000:8080"]}})
    );
    assert_eq!(
        ingress[1],
        serde_json::json!({"action": "Allow", "protocol": "UDP",
            "source": {"selector": "projectcalico.org/orchestrator == 'k8s' && role == 'lb'"},
            "destination": {"ports": [53]}})
    );
    assert_eq!(
        ingress[2]["source"],
        serde_json::json!({"namespaceSelector": "all()"})
    );
    assert_eq!(
        ingress[4]["source"],
        serde_json::json!({"nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]})
    );
    assert_eq!(
        spec["egress"],
        serde_json::json!([{"action": "Allow"}]),
        "no peers and no ports: allow all"
    );
    // Invalid Kubernetes policies are rejected with the field named.
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: w}\nspec:\n  ingress:\n  - ports: [{port: 80, endPort: 70}]\n";
    let err = common::admit(bad).unwrap_err();
    assert!(err.contains("spec.ingress[0].ports[0].endPort 70"), "{err}");
}
