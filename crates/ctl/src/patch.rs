//! `patch` and `label`: read-modify-write of one resource, as one
//! compare-and-swap retried if another writer gets in between.
//!
//! Patch types: `merge` (RFC 7386), `json` (RFC 6902) and `strategic`. v3
//! resources declare no merge keys, so a strategic patch merges objects and
//! replaces lists, exactly like a merge patch.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use tortie_client::ClientError;
use tortie_model::kind::decode_as;
use tortie_model::{Kind, Resource};

use crate::config::GlobalArgs;
use crate::kinds::{namespace_for, parse_kind};

#[derive(Args, Debug, Clone)]
pub struct PatchArgs {
    /// Kind of the resource
    pub kind: String,
    /// Name of the resource
    pub name: String,
    /// The patch, as JSON
    #[arg(short = 'p', long)]
    pub patch: String,
    /// Patch type: strategic, merge or json
    #[arg(short = 't', long = "type", default_value = "strategic")]
    pub patch_type: String,
    /// Namespace of a namespaced resource
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Clone, Copy)]
enum PatchType {
    Merge,
    Json,
}

fn apply_patch(
    current: &Resource,
    patch: &serde_json::Value,
    patch_type: PatchType,
) -> Result<Resource, String> {
    let kind = current.kind();
    let mut doc = serde_json::to_value(current).map_err(|e| e.to_string())?;
    match patch_type {
        PatchType::Merge => json_patch::merge(&mut doc, patch),
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("invalid JSON patch: {e}"))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| format!("the JSON patch does not apply: {e}"))?;
        }
    }
    if doc.get("kind").and_then(|k| k.as_str()) != Some(kind.name()) {
        return Err("a patch cannot change the kind".to_string());
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(doc, &mut track);
    decode_as(kind, de)
        .map_err(|e| format!("the patched resource is invalid: {}: {e}", track.path()))
}

pub async fn run_patch(global: &GlobalArgs, args: &PatchArgs) -> Result<ExitCode> {
    let kind = parse_kind(&args.kind)?;
    let patch_type = match args.patch_type.as_str() {
        "strategic" | "merge" => PatchType::Merge,
        "json" => PatchType::Json,
        other => bail!("unknown patch type {other:?}: use strategic, merge or json"),
    };
    let patch: serde_json::Value = match serde_json::from_str(&args.patch) {
        Ok(p) => p,
        Err(e) => bail!("invalid patch {:?}: {e}", args.patch),
    };
    let ns = namespace_for(kind, args.namespace.as_deref())?;
    let client = global.writing_client().await?;
    let result = client
        .modify(kind, &ns, &args.name, |current| {
            let id = current.id();
            apply_patch(&current, &patch, patch_type)
                .map_err(|reason| ClientError::Rejected { id, reason })
        })
        .await;
    match result {
        Ok(_) => {
            println!("Successfully patched 1 '{kind}' resource");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("Failed to patch '{kind}' resource: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct LabelArgs {
    /// Kind of the resource
    pub kind: String,
    /// Name of the resource
    pub name: String,
    /// key=value to set, or key with --remove
    pub label: String,
    /// Replace the value of a label that is already set
    #[arg(long)]
    pub overwrite: bool,
    /// Remove the label
    #[arg(long)]
    pub remove: bool,
    /// Namespace of a namespaced resource
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

pub async fn run_label(global: &GlobalArgs, args: &LabelArgs) -> Result<ExitCode> {
    let kind: Kind = parse_kind(&args.kind)?;
    let (key, value) = match (args.remove, args.label.split_once('=')) {
        (true, None) => (args.label.clone(), None),
        (true, Some(_)) => bail!("--remove takes a label key, not key=value"),
        (false, Some((k, v))) => (k.to_string(), Some(v.to_string())),
        (false, None) => bail!(
            "label {:?}: use key=value to set a label, or key --remove",
            args.label
        ),
    };
    let ns = namespace_for(kind, args.namespace.as_deref())?;
    let client = global.writing_client().await?;
    let (what, target) = (args.kind.as_str(), args.name.as_str());
    let mut verb = "set";
    let result = client
        .modify(kind, &ns, &args.name, |mut r| {
            let labels = &mut r.metadata.labels;
            let reject = |reason: String| ClientError::Rejected { id: String::new(), reason };
            match &value {
                None => {
                    if labels.remove(&key).is_none() {
                        return Err(reject(format!(
                            "cannot remove label of {what} {target}, key {key} does not exist"
                        )));
                    }
                    verb = "removed";
                }
                Some(v) => {
                    if labels.contains_key(&key) {
                        if !args.overwrite {
                            return Err(reject(format!(
                                "failed to update label of {what} {target}, key {key} is already present. please use '--overwrite' to set a new value"
                            )));
                        }
                        verb = "updated";
                    }
                    labels.insert(key.clone(), v.clone());
                }
            }
            Ok(r)
        })
        .await;
    match result {
        Ok(_) => {
            println!("Successfully {verb} label {key} on {what} {target}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Rejected { id, reason }) if id.is_empty() => {
            eprintln!("{reason}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
