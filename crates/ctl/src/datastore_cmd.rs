//! `datastore migrate` and `datastore check`.
//!
//! Migrate copies every resource and IPAM object — the raw keys and values,
//! so uids, timestamps and IPAM state survive — from one datastore to
//! another, e.g. from the embedded file to etcd when a deployment grows. It
//! refuses a target that already holds tortie data unless `--force`, in
//! which case the target is made to mirror the source. Check reports
//! connectivity, the backend's version, the revision and what is stored.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tortie_client::Client;
use tortie_client::keys::{IPAM_CONFIG_KEY, RESOURCES_PREFIX, parse_key};
use tortie_datastore::{Datastore, DatastoreError, DatastoreSpec, KeyValue};
use tortie_model::Kind;

use crate::config::GlobalArgs;
use crate::output::render_table;

/// What migrate copies: v3 resources and IPAM state. Status keys are
/// rewritten by the daemons that own them and are not copied.
const MIGRATED_PREFIXES: [&str; 2] = [RESOURCES_PREFIX, "/calico/ipam/v2/"];

/// How often migrate reports progress, in keys.
const PROGRESS_EVERY: usize = 500;

#[derive(Subcommand, Debug, Clone)]
pub enum DatastoreCommand {
    /// Copy every resource and IPAM object from one datastore to another
    /// (or lock/unlock the datastore for maintenance)
    Migrate(MigrateArgs),
    /// Check connectivity and show the backend, its revision and what it holds
    Check,
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: Option<MigrateAction>,
    /// Source datastore: embedded:PATH or etcd:URL[,URL...]
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Target datastore: embedded:PATH or etcd:URL[,URL...]
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Overwrite a target that already holds data, making it mirror the source
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum MigrateAction {
    /// Mark the datastore not ready: CNI ADD/DEL and writers wait until unlocked
    Lock,
    /// Mark the datastore ready again
    Unlock,
}

async fn open(url: &str, role: &str) -> Result<Arc<dyn Datastore>> {
    let spec = DatastoreSpec::parse(url).with_context(|| format!("--{role} {url:?}"))?;
    tortie_datastore::connect(&spec)
        .await
        .with_context(|| format!("cannot open the {role} datastore {spec}"))
}

async fn list_all(ds: &dyn Datastore) -> Result<Vec<KeyValue>, DatastoreError> {
    let mut all = Vec::new();
    for prefix in MIGRATED_PREFIXES {
        all.extend(ds.list(prefix).await?.items);
    }
    Ok(all)
}

async fn migrate(args: &MigrateArgs, from: &str, to: &str) -> Result<ExitCode> {
    let source = open(from, "from").await?;
    let target = open(to, "to").await?;
    if source.describe() == target.describe() {
        bail!(
            "--from and --to name the same datastore ({})",
            source.describe()
        );
    }
    let items = list_all(source.as_ref())
        .await
        .with_context(|| format!("reading {}", source.describe()))?;
    let existing = list_all(target.as_ref())
        .await
        .with_context(|| format!("reading {}", target.describe()))?;
    if !existing.is_empty() && !args.force {
        bail!(
            "the target {} is not empty: it holds {} keys (e.g. {}); use --force to make it a copy of the source",
            target.describe(),
            existing.len(),
            existing[0].key
        );
    }
    eprintln!(
        "Copying {} keys from {} to {}",
        items.len(),
        source.describe(),
        target.describe()
    );
    for (i, kv) in items.iter().enumerate() {
        let result = if args.force {
            target.put(&kv.key, kv.value.clone()).await.map(drop)
        } else {
            target.create(&kv.key, kv.value.clone()).await.map(drop)
        };
        result.with_context(|| {
            format!(
                "writing {} to {} (copied {i} of {} keys so far; run again with --force to finish)",
                kv.key,
                target.describe(),
                items.len()
            )
        })?;
        if (i + 1) % PROGRESS_EVERY == 0 {
            eprintln!("  copied {} of {} keys", i + 1, items.len());
        }
    }
    let mut removed = 0;
    if args.force {
        let wanted: std::collections::HashSet<&str> =
            items.iter().map(|kv| kv.key.as_str()).collect();
        for kv in existing
            .iter()
            .filter(|kv| !wanted.contains(kv.key.as_str()))
        {
            match target.delete(&kv.key, None).await {
                Ok(_) | Err(DatastoreError::NotFound { .. }) => removed += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {} from the target", kv.key));
                }
            }
        }
    }
    // Verify: the target now holds exactly the source's bytes.
    let copied = list_all(target.as_ref()).await?;
    let mismatches = items
        .iter()
        .filter(|kv| {
            !copied
                .iter()
                .any(|c| c.key == kv.key && c.value == kv.value)
        })
        .count();
    if mismatches > 0 || copied.len() != items.len() {
        bail!(
            "verification failed: {mismatches} keys differ and the target holds {} keys for the source's {}; was something writing to either datastore?",
            copied.len(),
            items.len()
        );
    }
    let resources = items
        .iter()
        .filter(|kv| kv.key.starts_with(RESOURCES_PREFIX) || kv.key == IPAM_CONFIG_KEY)
        .count();
    println!(
        "Successfully migrated {} keys ({} resources, {} IPAM objects) from {} to {}{}",
        items.len(),
        resources,
        items.len() - resources,
        source.describe(),
        target.describe(),
        if removed > 0 {
            format!("; removed {removed} keys the source does not have")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(global: &GlobalArgs) -> Result<ExitCode> {
    let client: Client = global.client().await?;
    let ds = client.datastore();
    let status = ds
        .status()
        .await
        .with_context(|| format!("checking {}", ds.describe()))?;
    println!("Datastore:   {}", ds.describe());
    println!("Backend:     {} ({})", status.kind, status.server_version);
    for m in &status.members {
        let state = match (&m.error, m.healthy) {
            (Some(e), _) => format!("UNHEALTHY: {e}"),
            (None, true) => "healthy".to_string(),
            (None, false) => "UNHEALTHY".to_string(),
        };
        println!(
            "  member {} {}: {state}{}",
            if m.name.is_empty() { "-" } else { &m.name },
            m.endpoint,
            if m.leader { " (leader)" } else { "" }
        );
    }
    match status.compacted_revision {
        Some(c) if c > 0 => println!(
            "Revision:    {} (history compacted up to {c})",
            status.revision
        ),
        _ => println!("Revision:    {}", status.revision),
    }
    match client.cluster_information().await? {
        Some(info) => println!(
            "Cluster:     {} {} (GUID {}, {})",
            info.cluster_type,
            info.calico_version,
            info.cluster_guid,
            if info.datastore_ready == Some(false) {
                "locked: not ready"
            } else {
                "ready"
            }
        ),
        None => println!("Cluster:     not initialised yet (the first write initialises it)"),
    }
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let n = client.list(*kind, None).await?.items.len();
        let n = if *kind == Kind::Profile { n - 1 } else { n };
        if n > 0 {
            rows.push(vec![kind.name().to_string(), n.to_string()]);
        }
    }
    let ipam = ds.list("/calico/ipam/v2/").await?;
    let count = |part: &str| ipam.items.iter().filter(|kv| kv.key.contains(part)).count();
    for (name, n) in [
        ("IPAM blocks", count("/assignment/")),
        (
            "IPAM block affinities",
            count("/block/") - count("/assignment/"),
        ),
        ("IPAM handles", count("/handle/")),
    ] {
        if n > 0 {
            rows.push(vec![name.to_string(), n.to_string()]);
        }
    }
    println!();
    print!(
        "{}",
        render_table(&["KIND".to_string(), "COUNT".to_string()], &rows)
    );
    let unknown = ds
        .list(RESOURCES_PREFIX)
        .await?
        .items
        .iter()
        .filter(|kv| parse_key(&kv.key).is_none())
        .count();
    if unknown > 0 {
        println!(
            "\n{unknown} keys under {RESOURCES_PREFIX} are not resources tortie knows; they are left alone."
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(global: &GlobalArgs, cmd: &DatastoreCommand) -> Result<ExitCode> {
    match cmd {
        DatastoreCommand::Migrate(args) => match (&args.action, &args.from, &args.to) {
            (Some(action), _, _) => {
                let ready = matches!(action, MigrateAction::Unlock);
                global.client().await?.set_datastore_ready(ready).await?;
                println!("Datastore {}", if ready { "unlocked" } else { "locked" });
                Ok(ExitCode::SUCCESS)
            }
            (None, Some(from), Some(to)) => migrate(args, from, to).await,
            _ => bail!(
                "datastore migrate needs --from URL and --to URL (or: datastore migrate lock|unlock)"
            ),
        },
        DatastoreCommand::Check => check(global).await,
    }
}
