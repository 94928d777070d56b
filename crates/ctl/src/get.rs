//! `get`: read resources by kind (all, or by name) or by `-f`, and print
//! them as a table, wide table, custom columns, YAML or JSON.
//!
//! YAML/JSON of a list is a typed list (`kind: <Kind>List`) carrying the
//! datastore revision; a single named resource prints bare, so its output
//! can be edited and applied again.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;
use tortie_client::Client;
use tortie_model::bgp::BGPConfigurationSpec;
use tortie_model::{API_VERSION, Kind, Resource};

use crate::columns::{CellContext, all_headings, cell, headings};
use crate::config::GlobalArgs;
use crate::input::{FileArgs, Input, resolve_namespace};
use crate::kinds::{namespace_for, parse_kind};
use crate::output::{OutputFormat, render_table, to_json, to_yaml};

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Kind of resource (e.g. ippools, gnp, wep)
    pub kind: Option<String>,

    /// Names to get (default: list all)
    pub names: Vec<String>,

    /// Output format: ps, wide, yaml, json, custom-columns=COL,...
    #[arg(short = 'o', long = "output", default_value = "ps")]
    pub output: String,

    /// Namespace (namespaced kinds; default "default")
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// List across all namespaces
    #[arg(short = 'A', long, visible_short_alias = 'a')]
    pub all_namespaces: bool,

    /// Strip cluster-specific metadata (resourceVersion, uid, creationTimestamp)
    #[arg(long)]
    pub export: bool,

    /// Get the resources named in a file instead
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Option<String>,
}

/// `{apiVersion, kind: <Kind>List, metadata: {resourceVersion}, items}`.
#[derive(Serialize)]
struct TypedList<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: ListMeta,
    items: &'a [Resource],
}

#[derive(Serialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

/// What `get` read, for printing.
struct Fetched {
    kind: Kind,
    items: Vec<Resource>,
    revision: i64,
    /// A single resource asked for by name prints bare, not as a list.
    single: bool,
}

async fn fetch(client: &Client, args: &GetArgs, errors: &mut Vec<String>) -> Result<Fetched> {
    if let Some(filename) = &args.filename {
        let files = FileArgs {
            filename: filename.clone(),
            recursive: false,
            skip_empty: false,
        };
        let decoded = match files.read()? {
            Input::Resources(r) => r,
            Input::Malformed(errs) => bail!("{}", errs.join("\n")),
        };
        let Some(kind) = decoded.first().map(|d| d.resource.kind()) else {
            bail!("No resources specified");
        };
        let mut items = Vec::new();
        for mut d in decoded {
            if let Err(e) = resolve_namespace(&mut d.resource, args.namespace.as_deref()) {
                errors.push(format!("{}: {e}", d.origin));
                continue;
            }
            let m = &d.resource.metadata;
            match client.get(d.resource.kind(), &m.namespace, &m.name).await {
                Ok(r) => items.push(r),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let single = items.len() == 1;
        return Ok(Fetched {
            kind,
            items,
            revision: 0,
            single,
        });
    }
    let Some(kind_arg) = &args.kind else {
        bail!("get needs a resource type, e.g. tortie get ippools; or -f FILE");
    };
    let kind = parse_kind(kind_arg)?;
    if args.all_namespaces && args.namespace.is_some() {
        bail!("-A and -n cannot be used together");
    }
    if args.names.is_empty() {
        let ns = if args.all_namespaces || !kind.namespaced() {
            if args.namespace.is_some() && !kind.namespaced() {
                bail!("{kind} is not namespaced");
            }
            None
        } else {
            Some(namespace_for(kind, args.namespace.as_deref())?)
        };
        let list = client.list(kind, ns.as_deref()).await?;
        return Ok(Fetched {
            kind,
            items: list.items,
            revision: list.revision,
            single: false,
        });
    }
    let ns = namespace_for(kind, args.namespace.as_deref())?;
    let mut items = Vec::new();
    for name in &args.names {
        match client.get(kind, &ns, name).await {
            Ok(r) => items.push(r),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let revision = client.datastore().revision().await?;
    let single = args.names.len() == 1;
    Ok(Fetched {
        kind,
        items,
        revision,
        single,
    })
}

async fn cell_context(client: &Client, kind: Kind) -> CellContext {
    let mut global_as = "64512".to_string();
    if kind == Kind::Node
        && let Ok(r) = client.get(Kind::BGPConfiguration, "", "default").await
        && let Some(a) = r
            .spec::<BGPConfigurationSpec>()
            .and_then(|s| s.as_number.as_ref())
    {
        global_as = a.to_string();
    }
    CellContext { global_as }
}

pub async fn run(global: &GlobalArgs, args: &GetArgs) -> Result<ExitCode> {
    let format = OutputFormat::parse(&args.output)?;
    let client = global.reading_client().await?;
    let mut errors = Vec::new();
    let mut fetched = fetch(&client, args, &mut errors).await?;
    if args.export {
        for r in &mut fetched.items {
            r.metadata.resource_version.clear();
            r.metadata.uid.clear();
            r.metadata.creation_timestamp = None;
        }
    }
    let kind = fetched.kind;
    let text = match &format {
        OutputFormat::Yaml | OutputFormat::Json => {
            let list = TypedList {
                kind: format!("{kind}List"),
                api_version: API_VERSION,
                metadata: ListMeta {
                    resource_version: fetched.revision.to_string(),
                },
                items: &fetched.items,
            };
            match (&format, fetched.single, fetched.items.first()) {
                (OutputFormat::Yaml, true, Some(r)) => to_yaml(r)?,
                (OutputFormat::Json, true, Some(r)) => to_json(r)?,
                (_, true, None) => String::new(),
                (OutputFormat::Yaml, _, _) => to_yaml(&list)?,
                _ => to_json(&list)?,
            }
        }
        OutputFormat::Table | OutputFormat::Wide | OutputFormat::CustomColumns(_) => {
            let mut cols: Vec<String> = match &format {
                OutputFormat::CustomColumns(cols) => {
                    let known = all_headings(kind);
                    for c in cols {
                        if !known.contains(&c.as_str()) {
                            bail!(
                                "unknown heading {c}, valid values are: {}",
                                known.join(", ")
                            );
                        }
                    }
                    cols.clone()
                }
                _ => headings(kind, format == OutputFormat::Wide)
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            if args.all_namespaces && kind.namespaced() {
                cols.insert(0, "NAMESPACE".to_string());
            }
            let ctx = cell_context(&client, kind).await;
            let rows: Vec<Vec<String>> = fetched
                .items
                .iter()
                .map(|r| cols.iter().map(|h| cell(r, h, &ctx)).collect())
                .collect();
            if fetched.items.is_empty() && !errors.is_empty() {
                String::new()
            } else {
                render_table(&cols, &rows)
            }
        }
    };
    print!("{text}");
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &errors {
            eprintln!("failed to get resources: {e}");
        }
        Ok(ExitCode::FAILURE)
    }
}
