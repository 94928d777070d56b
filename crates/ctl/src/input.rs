//! Reading `-f` input: a file, `-` for stdin, or a directory (its `.yaml`,
//! `.yml` and `.json` files; with `-R` also those below it). All input is
//! decoded before anything is written: one malformed document anywhere
//! means nothing is written at all.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use tortie_model::{Decoded, Resource, decode_documents};

#[derive(Args, Debug, Clone)]
pub struct FileArgs {
    /// File, directory or - (stdin) holding the resources
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: String,

    /// Process the directory given with -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Do not fail when the input holds no resources
    #[arg(long)]
    pub skip_empty: bool,
}

fn collect_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                collect_files(&path, recursive, out)?;
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The outcome of reading input: resources, or every decode error found.
pub enum Input {
    Resources(Vec<Decoded>),
    Malformed(Vec<String>),
}

impl FileArgs {
    /// Reads and decodes everything named by `-f`.
    pub fn read(&self) -> Result<Input> {
        let mut sources: Vec<(String, String)> = Vec::new();
        if self.filename == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            sources.push(("stdin".to_string(), text));
        } else {
            let path = Path::new(&self.filename);
            let files = if path.is_dir() {
                let mut files = Vec::new();
                collect_files(path, self.recursive, &mut files)?;
                files
            } else {
                vec![path.to_path_buf()]
            };
            for file in files {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                sources.push((file.display().to_string(), text));
            }
        }
        let mut resources = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in &sources {
            match decode_documents(text, name) {
                Ok(decoded) => resources.extend(decoded),
                Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
            }
        }
        if !errors.is_empty() {
            return Ok(Input::Malformed(errors));
        }
        if resources.is_empty() && !self.skip_empty {
            bail!("No resources specified");
        }
        Ok(Input::Resources(resources))
    }
}

/// Applies calicoctl's namespace rules to one resource read from a file:
/// the resource's own namespace wins, then `-n`, then `default`; cluster
/// kinds take none.
pub fn resolve_namespace(r: &mut Resource, cli_namespace: Option<&str>) -> Result<(), String> {
    let kind = r.kind();
    if !kind.namespaced() {
        if !r.metadata.namespace.is_empty() {
            return Err(format!(
                "namespace should not be specified for a non-namespaced resource. {kind} is not a namespaced resource"
            ));
        }
        return Ok(());
    }
    match (r.metadata.namespace.is_empty(), cli_namespace) {
        (true, Some(ns)) => r.metadata.namespace = ns.to_string(),
        (true, None) => r.metadata.namespace = "default".to_string(),
        (false, Some(ns)) if ns != r.metadata.namespace => {
            return Err(format!(
                "resource namespace does not match client namespace. {} != {ns}",
                r.metadata.namespace
            ));
        }
        _ => {}
    }
    Ok(())
}
