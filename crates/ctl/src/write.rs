//! `create`, `apply`, `replace`, `delete` and `validate`.
//!
//! All input is decoded first; if any document is malformed nothing is
//! written. Then each resource is handled on its own — one datastore
//! compare-and-swap each, so none is ever half-written — and a summary says
//! which succeeded and which failed, naming the file, document and line.
//! The exit status is 1 if any failed.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use tortie_client::{Client, ClientError};
use tortie_model::{Decoded, Kind};

use crate::config::GlobalArgs;
use crate::input::{FileArgs, Input, resolve_namespace};
use crate::kinds::parse_kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Create,
    Apply,
    Replace,
    Delete,
    Validate,
}

impl Verb {
    fn present(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Apply => "apply",
            Verb::Replace => "replace",
            Verb::Delete => "delete",
            Verb::Validate => "validate",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Verb::Create => "created",
            Verb::Apply => "applied",
            Verb::Replace => "replaced",
            Verb::Delete => "deleted",
            Verb::Validate => "validated",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    #[command(flatten)]
    pub files: FileArgs,

    /// Namespace for namespaced resources that name none
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    pub write: WriteArgs,

    /// Succeed for resources that already exist (they are left unchanged)
    #[arg(long)]
    pub skip_exists: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DeleteArgs {
    /// Kind of the resources to delete (when not using -f)
    pub kind: Option<String>,

    /// Names of the resources to delete
    pub names: Vec<String>,

    /// File, directory or - (stdin) naming the resources to delete
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Option<String>,

    /// Process the directory given with -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Namespace of namespaced resources
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Succeed for resources that do not exist
    #[arg(short = 's', long)]
    pub skip_not_exists: bool,
}

/// Counts and failures of a multi-resource command, and its report.
struct Outcome {
    verb: Verb,
    kinds: Vec<Kind>,
    succeeded: usize,
    failures: Vec<String>,
}

impl Outcome {
    fn new(verb: Verb) -> Outcome {
        Outcome {
            verb,
            kinds: Vec::new(),
            succeeded: 0,
            failures: Vec::new(),
        }
    }

    fn record(&mut self, kind: Kind, result: Result<(), String>) {
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        match result {
            Ok(()) => self.succeeded += 1,
            Err(e) => self.failures.push(e),
        }
    }

    /// Prints the calicoctl-style summary and returns the exit status.
    fn report(self) -> ExitCode {
        let total = self.succeeded + self.failures.len();
        let kind_label = match self.kinds.as_slice() {
            [k] => format!(" '{k}'"),
            _ => String::new(),
        };
        let (verb, past) = (self.verb.present(), self.verb.past());
        if self.failures.is_empty() {
            println!("Successfully {past} {total}{kind_label} resource(s)");
            return ExitCode::SUCCESS;
        }
        if self.succeeded > 0 {
            println!(
                "Partial success: {past} {} out of {total}{kind_label} resources:",
                self.succeeded
            );
            for f in &self.failures {
                eprintln!("hit error: {f}");
            }
        } else if total == 1 {
            eprintln!(
                "failed to {verb}{kind_label} resource: {}",
                self.failures[0]
            );
        } else {
            eprintln!("failed to {verb} any{kind_label} resources:");
            for f in &self.failures {
                eprintln!("hit error: {f}");
            }
        }
        ExitCode::FAILURE
    }
}

/// Reads `-f` input, or prints why it is malformed (nothing is written then).
fn read_input(files: &FileArgs) -> Result<Option<Vec<Decoded>>> {
    match files.read()? {
        Input::Resources(r) => Ok(Some(r)),
        Input::Malformed(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("Nothing was written: fix the document(s) above and run again.");
            Ok(None)
        }
    }
}

async fn write_one(
    client: Option<&Client>,
    verb: Verb,
    skip: bool,
    d: Decoded,
) -> Result<(), ClientError> {
    let r = d.resource;
    let Some(client) = client else {
        // validate: admit the resource the way a write would, write nothing.
        let mut r = r;
        r.apply_defaults();
        return r.validate().map_err(ClientError::from);
    };
    let result = match verb {
        Verb::Create => client.create(r).await.map(drop),
        Verb::Apply => client.apply(r).await.map(drop),
        Verb::Replace => client.replace(r).await.map(drop),
        Verb::Delete => {
            let rv = Some(r.metadata.resource_version.as_str()).filter(|v| !v.is_empty());
            delete_one(
                client,
                r.kind(),
                &r.metadata.namespace,
                &r.metadata.name,
                rv,
            )
            .await
        }
        Verb::Validate => Ok(()),
    };
    match result {
        Err(ClientError::AlreadyExists { .. }) if skip && verb == Verb::Create => Ok(()),
        Err(ClientError::NotFound { .. }) if skip && verb == Verb::Delete => Ok(()),
        other => other,
    }
}

/// Deletes one resource. IP pools go through IPAM, which disables the pool
/// and releases its block affinities first (ipam.md §1.1).
async fn delete_one(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    rv: Option<&str>,
) -> Result<(), ClientError> {
    if kind != Kind::IPPool || rv.is_some() {
        return client.delete(kind, namespace, name, rv).await.map(drop);
    }
    match tortie_ipam::Ipam::new(client.clone())
        .delete_pool(name)
        .await
    {
        Ok(_) => Ok(()),
        Err(tortie_ipam::IpamError::Client(e)) => Err(e),
        Err(e) => Err(ClientError::Rejected {
            id: tortie_model::resource_id(kind, namespace, name),
            reason: e.to_string(),
        }),
    }
}

/// Runs a file-driven command.
pub async fn run_files(
    global: &GlobalArgs,
    verb: Verb,
    write: &WriteArgs,
    skip: bool,
) -> Result<ExitCode> {
    let Some(resources) = read_input(&write.files)? else {
        return Ok(ExitCode::FAILURE);
    };
    let client = match verb {
        Verb::Validate => None,
        _ => Some(global.writing_client().await?),
    };
    let mut outcome = Outcome::new(verb);
    for mut d in in_dependency_order(resources, verb) {
        let kind = d.resource.kind();
        let origin = d.origin.to_string();
        if let Err(e) = resolve_namespace(&mut d.resource, write.namespace.as_deref()) {
            outcome.record(kind, Err(format!("{origin}: {} {e}", d.resource.id())));
            continue;
        }
        let result = write_one(client.as_ref(), verb, skip, d).await;
        outcome.record(kind, result.map_err(|e| format!("{origin}: {e}")));
    }
    Ok(outcome.report())
}

/// The order a file's resources are written in: tiers before the other
/// resources (policies must name an existing tier), and on delete after
/// them (a tier still holding policies cannot go), so the file that
/// created a tier and its policies also deletes them. Otherwise the
/// file's order (the sort is stable).
fn in_dependency_order(mut resources: Vec<Decoded>, verb: Verb) -> Vec<Decoded> {
    let is_tier = |d: &Decoded| d.resource.kind() == Kind::Tier;
    match verb {
        Verb::Delete => resources.sort_by_key(is_tier),
        _ => resources.sort_by_key(|d| !is_tier(d)),
    }
    resources
}

/// `delete`: by `-f`, or by kind and names.
pub async fn run_delete(global: &GlobalArgs, args: &DeleteArgs) -> Result<ExitCode> {
    if let Some(filename) = &args.filename {
        if args.kind.is_some() {
            bail!("delete takes either -f FILE or KIND NAME..., not both");
        }
        let write = WriteArgs {
            files: FileArgs {
                filename: filename.clone(),
                recursive: args.recursive,
                skip_empty: false,
            },
            namespace: args.namespace.clone(),
        };
        return run_files(global, Verb::Delete, &write, args.skip_not_exists).await;
    }
    let Some(kind_arg) = &args.kind else {
        bail!("delete needs -f FILE or KIND NAME...; e.g. tortie delete ippool pool1");
    };
    let kind = parse_kind(kind_arg)?;
    if args.names.is_empty() {
        bail!("delete {kind_arg}: name at least one resource to delete");
    }
    let namespace = crate::kinds::namespace_for(kind, args.namespace.as_deref())?;
    let client = global.writing_client().await?;
    let mut outcome = Outcome::new(Verb::Delete);
    for name in &args.names {
        let result = match delete_one(&client, kind, &namespace, name, None).await {
            Err(ClientError::NotFound { .. }) if args.skip_not_exists => Ok(()),
            other => other,
        };
        outcome.record(kind, result.map_err(|e| e.to_string()));
    }
    Ok(outcome.report())
}
