//! Decoding never panics, whatever the input: arbitrary text, and valid
//! manifests with bytes cut out, repeated or replaced.

use proptest::prelude::*;
use tortie_model::decode_documents;

const MANIFEST: &str = include_str!("fixtures/spec-examples.yaml");

/// Runs the whole write-side pipeline a CLI would run on the input.
fn admit_all(text: &str) {
    if let Ok(decoded) = decode_documents(text, "fuzz") {
        for d in decoded {
            let mut r = d.resource;
            if r.kind().namespaced() && r.metadata.namespace.is_empty() {
                r.metadata.namespace = "default".into();
            }
            r.apply_defaults();
            let _ = r.validate();
            let _ = r.to_json();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        admit_all(&text);
    }

    #[test]
    fn mutated_manifests_never_panic(
        start in 0usize..MANIFEST.len(),
        len in 0usize..40,
        insert in "[ -~\n]{0,20}",
    ) {
        let mut s = MANIFEST.as_bytes().to_vec();
        let end = (start + len).min(s.len());
        s.splice(start..end, insert.bytes());
        admit_all(&String::from_utf8_lossy(&s));
    }

    #[test]
    fn json_shaped_input_never_panics(text in "[\\[\\]{}\":,a-z0-9 ]{0,200}") {
        admit_all(&text);
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    for text in [
        "[".repeat(100_000),
        "{\"a\":".repeat(50_000),
        "- ".repeat(50_000),
    ] {
        admit_all(&text);
    }
}
