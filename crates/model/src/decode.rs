//! Turning files into resources: YAML or JSON, several documents per file,
//! sequences of resources, typed lists (`kind: IPPoolList`, `kind: List`),
//! and Kubernetes NetworkPolicy documents (converted on the way in).
//!
//! Every error carries where it came from (file, document number, list item,
//! line) and is one line long, e.g.
//! `pools.yaml: document 2 (line 14): spec.blockSize: invalid type: string "x", expected i64`.
//! Decoding is strict: an unknown field anywhere is an error. A file either
//! decodes completely or yields its errors; callers write nothing then.

use std::fmt;

use serde::Deserializer;

use crate::k8s::{K8S_NETWORKING_API_VERSION, K8sNetworkPolicy};
use crate::kind::{API_VERSION, Kind, Resource, decode_as};

/// Where a resource or an error came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// A file path, or `stdin`.
    pub source: String,
    /// 1-based document number within the source.
    pub document: usize,
    /// 1-based item number when the document is a list.
    pub item: Option<usize>,
    /// 1-based line where the document (or the error) is, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// A resource and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub origin: Origin,
    pub resource: Resource,
}

/// A document that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct DecodeError {
    pub origin: Origin,
    pub message: String,
}

/// Decodes every resource in `text`. Empty documents are skipped. Either all
/// documents decode, or every error found is returned.
pub fn decode_documents(text: &str, source: &str) -> Result<Vec<Decoded>, Vec<DecodeError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        decode_json_stream(text, source, &mut out, &mut errors);
    } else {
        for (index, chunk) in split_yaml_documents(text).into_iter().enumerate() {
            let origin = Origin {
                source: source.to_string(),
                document: index + 1,
                item: None,
                line: Some(chunk.first_line),
            };
            decode_yaml_document(&chunk, origin, &mut out, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One `---`-separated YAML document and the line it starts on.
struct YamlChunk {
    text: String,
    /// Line number (1-based) of the chunk's first line within the file.
    start_line: usize,
    /// First line with content, for messages.
    first_line: usize,
}

fn split_yaml_documents(text: &str) -> Vec<YamlChunk> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut first_line: Option<usize> = None;
    let mut flush = |current: &mut String, start: usize, first: Option<usize>| {
        if let Some(first_line) = first {
            chunks.push(YamlChunk {
                text: std::mem::take(current),
                start_line: start,
                first_line,
            });
        }
        current.clear();
    };
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line.trim_end() == "...";
        if is_start || is_end {
            flush(&mut current, start_line, first_line);
            first_line = None;
            start_line = lineno + 1;
            if is_start {
                let rest = line[3..].trim();
                if !rest.is_empty() && !rest.starts_with('#') {
                    // Content after the marker belongs to the new document.
                    start_line = lineno;
                    current.push_str(rest);
                    current.push('\n');
                    first_line = Some(lineno);
                }
            }
            continue;
        }
        let content = line.trim();
        if first_line.is_none() && !content.is_empty() && !content.starts_with('#') {
            first_line = Some(lineno);
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut current, start_line, first_line);
    chunks
}

/// Makes serde's messages read like calicoctl's: unknown fields are named by
/// their full path.
fn clean_message(path: &str, message: &str) -> String {
    if let Some(rest) = message.split_once("unknown field `").map(|(_, r)| r)
        && let Some((field, _)) = rest.split_once('`')
    {
        let full = if path.is_empty() || path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return format!("field in document is not recognized or is in the wrong location: {full}");
    }
    if path.is_empty() || path == "." {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// Splits serde_yaml_ng's `path: message at line L column C` into parts.
fn yaml_error_parts(e: &serde_yaml_ng::Error) -> (String, Option<usize>) {
    let text = strip_locations(&e.to_string());
    let without_location = text.as_str();
    let message = match without_location.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') => clean_message(path, msg),
        _ => clean_message("", without_location),
    };
    (message, e.location().map(|l| l.line()))
}

/// Removes the parser's ` at line L column C` fragments: they count lines
/// within one document, and the caller reports the file's line instead.
fn strip_locations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let skip_num = |s: &str| {
            s.trim_start_matches(|c: char| c.is_ascii_digit())
                .to_string()
        };
        let after_line = skip_num(after);
        rest = match after_line.strip_prefix(" column ") {
            Some(col) => &rest[rest.len() - skip_num(col).len()..],
            None => &rest[rest.len() - after_line.len()..],
        };
    }
    out.push_str(rest);
    out
}

/// What a document says it is.
enum DocType {
    Calico(Kind),
    K8sNetworkPolicy,
    List,
}

fn classify(api_version: Option<&str>, kind: Option<&str>) -> Result<DocType, String> {
    let (api, kind) = match (api_version, kind) {
        (Some(a), Some(k)) => (a, k),
        (None, _) => {
            return Err(
                "missing apiVersion: every document needs apiVersion: projectcalico.org/v3".into(),
            );
        }
        (_, None) => return Err("missing kind".into()),
    };
    if kind == "List"
        || (kind.ends_with("List") && Kind::from_document_name(&kind[..kind.len() - 4]).is_some())
    {
        return Ok(DocType::List);
    }
    if api == K8S_NETWORKING_API_VERSION && kind == "NetworkPolicy" {
        return Ok(DocType::K8sNetworkPolicy);
    }
    match Kind::from_document_name(kind) {
        Some(k) if api == API_VERSION => Ok(DocType::Calico(k)),
        Some(k) => Err(format!(
            "unknown resource type and/or version: apiVersion {api:?} is not valid for kind {k}; use {API_VERSION}"
        )),
        None => Err(format!(
            "unknown resource type and/or version: apiVersion {api:?}, kind {kind:?}"
        )),
    }
}

/// Decodes one resource of a classified type with any deserializer.
fn decode_typed<'de, D: Deserializer<'de>>(
    doc_type: &DocType,
    d: D,
) -> Result<Resource, DecodeFailure<D::Error>> {
    match doc_type {
        DocType::Calico(kind) => decode_as(*kind, d).map_err(DecodeFailure::Serde),
        DocType::K8sNetworkPolicy => {
            let k8s: K8sNetworkPolicy =
                serde::Deserialize::deserialize(d).map_err(DecodeFailure::Serde)?;
            let (meta, spec) = k8s
                .to_calico()
                .map_err(|e| DecodeFailure::Invalid(e.to_string()))?;
            Ok(Resource::new(meta, spec))
        }
        DocType::List => Err(DecodeFailure::Invalid(
            "a list may not contain another list".into(),
        )),
    }
}

enum DecodeFailure<E> {
    Serde(E),
    Invalid(String),
}

fn check_name(resource: Resource) -> Result<Resource, String> {
    if resource.metadata.name.is_empty() {
        Err(format!("{}: metadata.name is required", resource.kind()))
    } else {
        Ok(resource)
    }
}

fn decode_yaml_document(
    chunk: &YamlChunk,
    origin: Origin,
    out: &mut Vec<Decoded>,
    errors: &mut Vec<DecodeError>,
) {
    let file_line = |l: usize| chunk.start_line + l - 1;
    let fail =
        |errors: &mut Vec<DecodeError>, origin: &Origin, message: String, line: Option<usize>| {
            let mut origin = origin.clone();
            if line.is_some() {
                origin.line = line;
            }
            errors.push(DecodeError { origin, message });
        };
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&chunk.text) {
        Ok(v) => v,
        Err(e) => {
            let (msg, line) = yaml_error_parts(&e);
            return fail(
                errors,
                &origin,
                format!("invalid YAML: {msg}"),
                line.map(file_line),
            );
        }
    };
    match value {
        serde_yaml_ng::Value::Null => {}
        serde_yaml_ng::Value::Sequence(items) => decode_items(items, &origin, out, errors),
        serde_yaml_ng::Value::Mapping(map) => {
            let field = |name: &str| map.get(name).and_then(|v| v.as_str()).map(str::to_string);
            let doc_type = match classify(field("apiVersion").as_deref(), field("kind").as_deref())
            {
                Ok(t) => t,
                Err(msg) => return fail(errors, &origin, msg, None),
            };
            if let DocType::List = doc_type {
                return match map.get("items") {
                    Some(serde_yaml_ng::Value::Sequence(items)) => {
                        decode_items(items.clone(), &origin, out, errors)
                    }
                    Some(serde_yaml_ng::Value::Null) | None => {}
                    Some(_) => fail(
                        errors,
                        &origin,
                        "items: must be a list of resources".into(),
                        None,
                    ),
                };
            }
            // Decode from the text (not the value) so errors carry lines.
            let de = serde_yaml_ng::Deserializer::from_str(&chunk.text);
            match decode_typed(&doc_type, de).map_err(|f| match f {
                DecodeFailure::Serde(e) => {
                    let (msg, line) = yaml_error_parts(&e);
                    (msg, line.map(file_line))
                }
                DecodeFailure::Invalid(m) => (m, None),
            }) {
                Ok(r) => match check_name(r) {
                    Ok(resource) => out.push(Decoded { origin, resource }),
                    Err(m) => fail(errors, &origin, m, None),
                },
                Err((msg, line)) => fail(errors, &origin, msg, line),
            }
        }
        _ => fail(
            errors,
            &origin,
            "a document must be a resource, a list of resources or a typed list".into(),
            None,
        ),
    }
}

/// Decodes the items of a list document (no per-item line numbers: the
/// item number locates them).
fn decode_items(
    items: Vec<serde_yaml_ng::Value>,
    origin: &Origin,
    out: &mut Vec<Decoded>,
    errors: &mut Vec<DecodeError>,
) {
    for (i, item) in items.into_iter().enumerate() {
        let origin = Origin {
            item: Some(i + 1),
            ..origin.clone()
        };
        let json = match serde_json::to_value(&item) {
            Ok(v) => v,
            Err(e) => {
                errors.push(DecodeError {
                    origin,
                    message: format!("cannot read item: {e}"),
                });
                continue;
            }
        };
        match decode_json_value(json) {
            Ok(resource) => out.push(Decoded { origin, resource }),
            Err(message) => errors.push(DecodeError { origin, message }),
        }
    }
}

/// Decodes one resource held as a JSON value, naming the field path on error.
fn decode_json_value(value: serde_json::Value) -> Result<Resource, String> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let doc_type = match classify(field("apiVersion").as_deref(), field("kind").as_deref())? {
        DocType::List => return Err("a list may not contain another list".into()),
        t => t,
    };
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    match decode_typed(&doc_type, de) {
        Ok(r) => check_name(r),
        Err(DecodeFailure::Serde(e)) => {
            let path = track.path().to_string();
            Err(clean_message(&path, &e.to_string()))
        }
        Err(DecodeFailure::Invalid(m)) => Err(m),
    }
}

fn decode_json_stream(
    text: &str,
    source: &str,
    out: &mut Vec<Decoded>,
    errors: &mut Vec<DecodeError>,
) {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let mut document = 0;
    loop {
        let start = stream.byte_offset();
        let next = stream.next();
        let Some(next) = next else { break };
        document += 1;
        let leading_ws = text[start..].len() - text[start..].trim_start().len();
        let origin = Origin {
            source: source.to_string(),
            document,
            item: None,
            line: Some(line_of(start + leading_ws)),
        };
        let value = match next {
            Ok(v) => v,
            Err(e) => {
                errors.push(DecodeError {
                    origin: Origin {
                        line: Some(e.line()),
                        ..origin
                    },
                    message: format!("invalid JSON: {e}"),
                });
                return;
            }
        };
        let items = match value {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(ref map)
                if map
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .is_some_and(|k| k.ends_with("List")) =>
            {
                let field = |n: &str| map.get(n).and_then(|v| v.as_str());
                if let Err(message) = classify(field("apiVersion"), field("kind")) {
                    errors.push(DecodeError { origin, message });
                    continue;
                }
                match map.get("items") {
                    Some(serde_json::Value::Array(items)) => items.clone(),
                    Some(serde_json::Value::Null) | None => Vec::new(),
                    Some(_) => {
                        errors.push(DecodeError {
                            origin,
                            message: "items: must be a list of resources".into(),
                        });
                        continue;
                    }
                }
            }
            single => {
                match decode_json_value(single) {
                    Ok(resource) => out.push(Decoded { origin, resource }),
                    Err(message) => errors.push(DecodeError { origin, message }),
                }
                continue;
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            let origin = Origin {
                item: Some(i + 1),
                ..origin.clone()
            };
            match decode_json_value(item) {
                Ok(resource) => out.push(Decoded { origin, resource }),
                Err(message) => errors.push(DecodeError { origin, message }),
            }
        }
    }
}
