//! Helpers shared by the model's integration tests.

use tortie_model::{Kind, Resource, decode_documents};

/// Decodes one document, fills defaults and validates it, the way a write
/// does. Returns the resource or the one-line error a user would see.
pub fn admit(yaml: &str) -> Result<Resource, String> {
    let mut decoded = decode_documents(yaml, "test.yaml").map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    assert_eq!(decoded.len(), 1, "expected exactly one resource in {yaml}");
    let mut r = decoded.remove(0).resource;
    if r.kind().namespaced() && r.metadata.namespace.is_empty() {
        r.metadata.namespace = "default".into();
    }
    r.apply_defaults();
    r.validate().map_err(|e| e.to_string())?;
    Ok(r)
}

/// A document of `kind` named `name` with the given flow-style spec.
pub fn doc(kind: &str, name: &str, spec: &str) -> String {
    let ns = Kind::from_document_name(kind)
        .filter(|k| k.namespaced())
        .map(|_| ", namespace: ns1")
        .unwrap_or("");
    format!(
        "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {{name: {name}{ns}}}\nspec: {spec}\n"
    )
}
