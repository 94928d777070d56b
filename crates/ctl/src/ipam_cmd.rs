//! `tortie ipam`: `show`, `check`, `release` and `configure`, worded and laid
//! out as calicoctl's `ipam` commands (spec/ipam.md §9).
//!
//! The work is `tortie_ipam::Ipam`'s; this module parses flags, applies the
//! safety checks of `release --from-report` (cluster GUID, version, at
//! least one current report, datastore locked) and renders: the ASCII grid
//! tables calicoctl draws with go-pretty (`+----+` borders, centred
//! headings, `%.5g` counts with rounded `(8%)` percentages), the progress
//! lines and JSON report of `check`.
//!
//! Every command writes to a `Write` so tests read exactly what a user sees.
//! Hard cases: Go's `%g` and `%.f` formatting reproduced for IPv6-sized
//! counts; reports merged so only leaks present in *all* given reports are
//! released, each with the handle and sequence number it was seen with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Subcommand};
use tortie_client::{Client, TORTIE_VERSION};
use tortie_ipam::check::{CheckFindings, CheckReport, Snapshot, StoredBlock, merge_reports};
use tortie_ipam::usage::Usage;
use tortie_ipam::{Ipam, IpamConfig, ReleaseRequest};
use tortie_model::Kind;
use tortie_model::config::ClusterInformationSpec;

use crate::config::GlobalArgs;

#[derive(Subcommand, Debug, Clone)]
pub enum IpamCommand {
    /// Show IP usage per pool and block, one address, borrowed addresses, or the IPAM configuration
    Show(ShowArgs),
    /// Check IPAM for leaked addresses and inconsistencies; optionally write a report
    Check(CheckArgs),
    /// Release one address, or the leaked addresses and handles listed in check reports
    Release(ReleaseArgs),
    /// Change the IPAM configuration
    Configure(ConfigureArgs),
}

#[derive(Args, Debug, Clone, Default)]
#[command(group(ArgGroup::new("view").args(["ip", "show_blocks", "show_borrowed", "show_configuration"])))]
pub struct ShowArgs {
    /// Report whether this address is in use, and by whom
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Show each pool's blocks as well
    #[arg(long)]
    pub show_blocks: bool,
    /// Show addresses borrowed from blocks affine to other nodes
    #[arg(long)]
    pub show_borrowed: bool,
    /// Show the IPAM configuration
    #[arg(long)]
    pub show_configuration: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CheckArgs {
    /// Write a machine-readable report (for `ipam release --from-report`)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print every address that is checked
    #[arg(long)]
    pub show_all_ips: bool,
    /// Print every address that is leaked or not allocated properly
    #[arg(long)]
    pub show_problem_ips: bool,
    /// Accepted for calicoctl compatibility; tortie has no Kubernetes API to read
    #[arg(long, value_name = "KUBECONFIG", hide = true)]
    pub kubeconfig: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
#[command(group(ArgGroup::new("what").args(["ip", "from_report"]).required(true)))]
pub struct ReleaseArgs {
    /// Address to release (no handle or sequence-number check)
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Release the leaks listed in this check report; repeat to release only
    /// what every report lists
    #[arg(long = "from-report", value_name = "FILE")]
    pub from_report: Vec<PathBuf>,
    /// Release even if the report's version differs or the datastore is not locked
    #[arg(long, requires = "from_report")]
    pub force: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ConfigureArgs {
    /// true: never borrow addresses from blocks affine to other nodes
    #[arg(long = "strictaffinity", value_name = "true/false")]
    pub strict_affinity: Option<String>,
    /// Maximum number of blocks affine to one node (0 = no limit; needs strict affinity)
    #[arg(long, value_name = "NUMBER")]
    pub max_blocks_per_host: Option<String>,
    /// Seconds a released address waits before it is handed out again (0-1200)
    #[arg(long, value_name = "SECONDS")]
    pub ip_cooldown_seconds: Option<String>,
    /// Whether KubeVirt VMs keep their addresses across restarts
    #[arg(long, value_name = "Enabled|Disabled")]
    pub kubevirt_ip_persistence: Option<String>,
}

/// Runs an `ipam` command, printing to stdout.
pub async fn run(global: &GlobalArgs, cmd: &IpamCommand) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        IpamCommand::Show(args) => {
            let ipam = Ipam::new(global.reading_client().await?);
            show(&ipam, args, &mut out).await?;
        }
        IpamCommand::Check(args) => {
            let ipam = Ipam::new(global.reading_client().await?);
            check(&ipam, args, &mut out).await?;
        }
        IpamCommand::Release(args) => {
            let ipam = Ipam::new(global.writing_client().await?);
            release(&ipam, args, &mut out).await?;
        }
        IpamCommand::Configure(args) => {
            let ipam = Ipam::new(global.writing_client().await?);
            configure(&ipam, args, &mut out).await?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- tables

/// Column alignment in a grid table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// An ASCII grid table as go-pretty's default style draws it: `+---+`
/// rules above and below the heading and at the end, `| cell |` rows,
/// headings centred (extra space on the right), cells aligned per column.
pub fn render_grid(header: &[&str], rows: &[Vec<String>], aligns: &[Align]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - width(h);
        let left = pad / 2;
        let _ = write!(out, " {}{h}{} |", " ".repeat(left), " ".repeat(pad - left));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w - width(cell));
            match aligns.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => {
                    let _ = write!(out, " {cell}{pad} |");
                }
                Align::Right => {
                    let _ = write!(out, " {pad}{cell} |");
                }
            }
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}

fn trim_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Go's `%.5g`: five significant digits, scientific notation when the
/// exponent is below -4 or at least 5 (`65536`, `1.0486e+06`, `1.2089e+24`).
pub fn go_g5(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{x:.4e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..5).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim_fraction_zeros(mantissa),
            exponent.abs()
        )
    } else {
        let decimals = usize::try_from(4 - exponent).unwrap_or(0);
        trim_fraction_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

/// `5 (8%)`: the count, and its share of `total` rounded as Go's `%.f`.
pub fn count_with_percent(n: u128, total: u128) -> String {
    let share = 100.0 * n as f64 / total as f64;
    format!("{} ({share:.0}%)", go_g5(n as f64))
}

fn usage_row(grouping: &str, u: &Usage) -> Vec<String> {
    vec![
        grouping.to_string(),
        u.cidr.to_string(),
        go_g5(u.total as f64),
        count_with_percent(u.in_use, u.total),
        count_with_percent(u.reserved, u.total),
        count_with_percent(u.free, u.total),
    ]
}

// ------------------------------------------------------------------ show

/// `ipam show` and its views.
pub async fn show(ipam: &Ipam, args: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(text) = &args.ip {
        return show_ip(ipam, text, out).await;
    }
    if args.show_borrowed {
        return show_borrowed(ipam, out).await;
    }
    if args.show_configuration {
        let c = ipam.config().await?;
        write!(out, "{}", configuration_table(&c))?;
        return Ok(());
    }
    let usage = ipam.utilisation().await?;
    let mut rows = Vec::new();
    for group in &usage {
        if let Some(pool) = &group.pool {
            rows.push(usage_row("IP Pool", pool));
        }
        if args.show_blocks {
            rows.extend(group.blocks.iter().map(|b| usage_row("Block", b)));
        }
    }
    let header = [
        "GROUPING",
        "CIDR",
        "IPS TOTAL",
        "IPS IN USE",
        "IPS RESERVED",
        "IPS FREE",
    ];
    let aligns = [
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Left,
        Align::Left,
        Align::Left,
    ];
    write!(out, "{}", render_grid(&header, &rows, &aligns))?;
    Ok(())
}

fn parse_ip(text: &str) -> Result<IpAddr> {
    text.trim()
        .parse()
        .with_context(|| format!("invalid IP address {text:?}"))
}

fn owner_attrs(title: &str, attrs: &BTreeMap<String, String>) -> String {
    let mut s = format!("{title}:\n");
    for (k, v) in attrs {
        let _ = writeln!(s, "  {k}: {v}");
    }
    s
}

async fn show_ip(ipam: &Ipam, text: &str, out: &mut dyn Write) -> Result<()> {
    let ip = parse_ip(text)?;
    let Some(info) = ipam.allocation(ip).await? else {
        writeln!(out, "{ip} is not assigned")?;
        return Ok(());
    };
    if info.cooling_down {
        writeln!(
            out,
            "IP {ip} was released and is cooling down (released at {}); it is not handed out until the cooldown passes",
            info.released_at.as_deref().unwrap_or("an unknown time")
        )?;
        return Ok(());
    }
    writeln!(out, "IP {ip} is in use")?;
    writeln!(
        out,
        "Handle ID: {}",
        info.handle_id.as_deref().unwrap_or("<none>")
    )?;
    if info.active_owner_attrs.is_empty() {
        writeln!(out, "No Active Owner attributes defined")?;
    } else {
        write!(
            out,
            "{}",
            owner_attrs("Active Owner Attributes", &info.active_owner_attrs)
        )?;
    }
    if !info.alternate_owner_attrs.is_empty() {
        write!(
            out,
            "{}",
            owner_attrs("Alternate Owner Attributes", &info.alternate_owner_attrs)
        )?;
    }
    Ok(())
}

async fn show_borrowed(ipam: &Ipam, out: &mut dyn Write) -> Result<()> {
    let (list, unclassified) = ipam.borrowed().await?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.ip.to_string(),
                b.borrowing_node.clone(),
                b.block.to_string(),
                b.block_owner.clone(),
                b.kind.clone(),
                b.allocated_to.clone(),
            ]
        })
        .collect();
    let header = [
        "IP",
        "BORROWING-NODE",
        "BLOCK",
        "BLOCK OWNER",
        "TYPE",
        "ALLOCATED-TO",
    ];
    write!(out, "{}", render_grid(&header, &rows, &[]))?;
    if unclassified > 0 {
        writeln!(
            out,
            "\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed."
        )?;
    }
    Ok(())
}

/// The `--show-configuration` table.
pub fn configuration_table(c: &IpamConfig) -> String {
    let rows = vec![
        vec!["StrictAffinity".to_string(), c.strict_affinity.to_string()],
        vec![
            "AutoAllocateBlocks".to_string(),
            c.auto_allocate_blocks.to_string(),
        ],
        vec![
            "MaxBlocksPerHost".to_string(),
            c.max_blocks_per_host.to_string(),
        ],
        vec![
            "IPCooldownSeconds".to_string(),
            c.ip_cooldown_seconds.to_string(),
        ],
        vec![
            "KubeVirtVMAddressPersistence".to_string(),
            c.kubevirt_vm_address_persistence
                .clone()
                .unwrap_or_else(|| "<unset>".to_string()),
        ],
    ];
    render_grid(&["PROPERTY", "VALUE"], &rows, &[])
}

// ----------------------------------------------------------------- check

/// `ipam check`: progress lines, findings, and the optional report.
pub async fn check(ipam: &Ipam, args: &CheckArgs, out: &mut dyn Write) -> Result<()> {
    let (findings, snapshot) = ipam.check().await?;
    write!(out, "{}", check_text(&findings, &snapshot, args))?;
    if let Some(path) = &args.output {
        let report = findings.report(TORTIE_VERSION, &snapshot.cluster);
        let mut json = serde_json::to_string_pretty(&report)?;
        json.push('\n');
        std::fs::write(path, json)
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(())
}

/// The text `ipam check` prints.
pub fn check_text(f: &CheckFindings, snapshot: &Snapshot, args: &CheckArgs) -> String {
    let show_all = args.show_all_ips;
    let show_problems = show_all || args.show_problem_ips;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "Checking IPAM for inconsistencies...\n");
    let _ = writeln!(w, "Loading all IPAM blocks...");
    let _ = writeln!(w, "Found {} IPAM blocks.", f.block_count);
    let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
    for stored in &snapshot.blocks {
        if let StoredBlock::Valid(b) = stored {
            let _ = writeln!(
                w,
                " IPAM block {} affinity={}:",
                b.cidr(),
                b.affinity().unwrap_or("<none>")
            );
            if show_all {
                for (ordinal, _) in b.occupied() {
                    let ip = tortie_ipam::cidr::address_at(&b.cidr(), ordinal);
                    for r in f.allocations.get(&ip).into_iter().flatten() {
                        let _ = writeln!(
                            w,
                            "  {ip} allocated; handle {} node {}",
                            display(&r.handle),
                            display(&r.node)
                        );
                    }
                }
            }
        }
    }
    for records in f.allocations.values() {
        for r in records.iter().filter(|r| !r.cooling_down) {
            *by_node.entry(r.node.as_str()).or_insert(0) += 1;
        }
    }
    let _ = writeln!(
        w,
        "IPAM blocks record {} allocations.\n",
        f.allocation_count
    );
    let _ = writeln!(w, "Loading all IPAM pools...");
    for p in &f.active_pools {
        let _ = writeln!(w, "  {p}");
    }
    let _ = writeln!(w, "Found {} active IP pools.\n", f.active_pools.len());
    let _ = writeln!(w, "Loading all nodes.");
    if show_all {
        for (node, ip) in &snapshot.node_ips {
            let _ = writeln!(w, "  {ip} belongs to Node({node})");
        }
    }
    let _ = writeln!(w, "Found {} node tunnel IPs.\n", f.node_ip_count);
    let _ = writeln!(w, "Loading all workload endpoints.");
    if show_all {
        for (wep, ip) in &snapshot.workload_ips {
            let _ = writeln!(w, "  {ip} belongs to Workload({wep})");
        }
    }
    let _ = writeln!(w, "Found {} workload IPs.", f.workload_ip_count);
    let _ = writeln!(
        w,
        "Workloads and nodes are using {} IPs.\n",
        f.in_use_ip_count
    );
    let _ = writeln!(w, "Loading all handles");
    const TOP_NODES: usize = 20;
    let _ = writeln!(
        w,
        "Looking for top (up to {TOP_NODES}) nodes by allocations..."
    );
    let mut nodes: Vec<(&str, usize)> = by_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (node, n) in nodes.iter().take(TOP_NODES) {
        let _ = writeln!(w, "  {} has {n} allocations", display(node));
    }
    if let Some((_, most)) = nodes.first() {
        let median = nodes[nodes.len() / 2].1;
        let _ = writeln!(
            w,
            "Node with most allocations has {most}; median is {median}"
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(
        w,
        "Scanning for IPs that are allocated but not actually in use..."
    );
    if show_problems {
        for (ip, attrs) in &f.leaked {
            let _ = writeln!(w, "  {ip} leaked; attrs {attrs}");
        }
    }
    let _ = writeln!(
        w,
        "Found {} IPs that are allocated in IPAM but not actually in use.",
        f.leaked.len()
    );
    let _ = writeln!(
        w,
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."
    );
    if show_problems {
        for a in &f.multiple_owners {
            let _ = writeln!(w, "  {} has multiple owners.", a.ip);
        }
        for a in &f.not_in_pool {
            for owner in &a.owners {
                let _ = writeln!(
                    w,
                    "  {} in use by {owner} is not in any active IP pool.",
                    a.ip
                );
            }
        }
        for a in &f.not_allocated {
            for owner in &a.owners {
                let _ = writeln!(
                    w,
                    "  {} in use by {owner} and in active IPAM pool but has no IPAM allocation.",
                    a.ip
                );
            }
        }
    }
    let _ = writeln!(
        w,
        "Found {} in-use IPs that are not in active IP pools.",
        f.not_in_pool.len()
    );
    let _ = writeln!(
        w,
        "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.",
        f.not_allocated.len()
    );
    let _ = writeln!(
        w,
        "Found {} in-use IPs with multiple owners.\n",
        f.multiple_owners.len()
    );

    let _ = writeln!(w, "Scanning for IPAM handles with no matching IPs...");
    if show_all {
        for h in &f.leaked_handles {
            let _ = writeln!(w, "  {} doesn't have any active IPs.", h.id);
        }
    }
    let _ = writeln!(
        w,
        "Found {} handles with no matching IPs (and {} handles with matches).",
        f.leaked_handles.len(),
        f.good_handle_count
    );
    let _ = writeln!(w, "Scanning for IPs with missing handle...");
    if show_problems {
        for h in &f.missing_handles {
            let _ = writeln!(w, "  {h} is in use in a block but doesn't exist.");
        }
    }
    let _ = writeln!(
        w,
        "Found {} handles mentioned in blocks with no matching handle resource.",
        f.missing_handles.len()
    );
    let _ = writeln!(
        w,
        "Scanning for handles whose counts disagree with the blocks..."
    );
    if show_problems {
        for m in &f.handle_mismatches {
            let _ = writeln!(w, "  {m}");
        }
    }
    let _ = writeln!(
        w,
        "Found {} handle count mismatches.",
        f.handle_mismatches.len()
    );
    let _ = writeln!(w, "Scanning for structurally invalid blocks...");
    for (key, problems) in &f.invalid_blocks {
        let _ = writeln!(w, "  {key}: {}", problems.join("; "));
    }
    let _ = writeln!(w, "Found {} invalid blocks.", f.invalid_blocks.len());
    let _ = writeln!(w, "Scanning for inconsistent block affinities...");
    for p in &f.affinity_problems {
        let _ = writeln!(w, "  {p}");
    }
    let _ = writeln!(w, "Found {} affinity problems.", f.affinity_problems.len());
    let _ = writeln!(w, "Check complete; found {} problems.", f.problem_count());
    s
}

fn display(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

// --------------------------------------------------------------- release

/// `ipam release`.
pub async fn release(ipam: &Ipam, args: &ReleaseArgs, out: &mut dyn Write) -> Result<()> {
    if !args.from_report.is_empty() {
        release_from_reports(ipam, &args.from_report, args.force, out).await?;
        writeln!(out, "You may now unlock the data store.")?;
        return Ok(());
    }
    let Some(text) = &args.ip else {
        bail!("ipam release needs --ip=<IP> or --from-report=<FILE>");
    };
    let ip = parse_ip(text)?;
    let outcome = ipam
        .release_ips(&[ReleaseRequest::address(ip)])
        .await
        .map_err(|e| anyhow::anyhow!("error: {e}"))?;
    if let Some(e) = outcome.first_error() {
        bail!("error: {e}");
    }
    if outcome.released.is_empty() {
        bail!("IP address {ip} is not assigned");
    }
    writeln!(out, "Successfully released IP address {ip}")?;
    Ok(())
}

async fn cluster_information(client: &Client) -> Result<(ClusterInformationSpec, String)> {
    let info = client
        .get(Kind::ClusterInformation, "", "default")
        .await
        .context("reading ClusterInformation")?;
    let spec = info
        .spec::<ClusterInformationSpec>()
        .cloned()
        .context("ClusterInformation has no spec")?;
    Ok((spec, info.metadata.resource_version))
}

async fn release_from_reports(
    ipam: &Ipam,
    files: &[PathBuf],
    force: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let (cluster, revision) = cluster_information(ipam.client()).await?;
    let mut reports = Vec::new();
    let mut found_current = false;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the report {}", file.display()))?;
        let report: CheckReport = serde_json::from_str(&text).with_context(|| {
            format!("the report {} is not an ipam check report", file.display())
        })?;
        if report.cluster_guid != cluster.cluster_guid {
            bail!(
                "cluster does not match the provided report ({}): mismatched cluster GUID. Refusing to release",
                file.display()
            );
        }
        if report.version != TORTIE_VERSION {
            if !force {
                bail!(
                    "the provided report ({}) was produced using a different version ({}) of tortie. Refusing to release",
                    file.display(),
                    report.version
                );
            }
            writeln!(
                out,
                "WARNING: Report was produced using a different version of tortie. Ignoring due to --force option"
            )?;
        }
        found_current |= report.cluster_information_revision == revision;
        reports.push(report);
    }
    if !found_current {
        bail!(
            "the provided reports are all stale - at least one should be up-to-date. Please generate a new report while the data store is locked and try again"
        );
    }
    if cluster.datastore_ready != Some(false) {
        if !force {
            bail!("data store is not locked. Either lock the data store, or re-run with --force");
        }
        writeln!(
            out,
            "WARNING: Data store is not locked. Ignoring due to --force option"
        )?;
    }
    let merged = merge_reports(&reports)?;
    if merged.ips.is_empty() {
        writeln!(out, "Report didn't contain any leaked IPs to clean up.")?;
    } else {
        let requests: Vec<ReleaseRequest> = merged.ips.values().cloned().collect();
        writeln!(out, "Releasing {} old IPs...", requests.len())?;
        let outcome = ipam.release_ips(&requests).await?;
        if let Some(e) = outcome.first_error() {
            writeln!(
                out,
                "An error occurred while releasing some IPs: {e}.  Problems are often caused by an out-of-date IPAM report.  Try regenerating the IPAM report and retry."
            )?;
        } else {
            writeln!(out, "Released {} IPs successfully", outcome.released.len())?;
        }
        if !outcome.not_allocated.is_empty() {
            writeln!(
                out,
                "{} addresses marked as leaked in the report had already been cleaned up.",
                outcome.not_allocated.len()
            )?;
        }
    }
    if merged.handles.is_empty() {
        writeln!(out, "Report didn't contain any handles to clean up.")?;
        return Ok(());
    }
    writeln!(out, "Deleting {} handles...", merged.handles.len())?;
    writeln!(
        out,
        "Key: '.' = Deleted OK; 'x' = skip, handle missing/changed."
    )?;
    let (mut deleted, mut skipped, mut errors) = (0, 0, 0);
    let mut failures = Vec::new();
    for h in merged.handles.values() {
        let Ok(rev) = h.revision.parse::<i64>() else {
            skipped += 1;
            write!(out, "x")?;
            continue;
        };
        match ipam.delete_handle_if_unchanged(&h.id, rev).await {
            Ok(true) => {
                deleted += 1;
                write!(out, ".")?;
            }
            Ok(false) => {
                skipped += 1;
                write!(out, "x")?;
            }
            Err(e) => {
                errors += 1;
                failures.push(format!("Deleting handle {} failed: {e}.", h.id));
            }
        }
    }
    writeln!(out)?;
    for f in failures {
        writeln!(out, "{f}")?;
    }
    writeln!(
        out,
        "Released {deleted} handles; {skipped} skipped; {errors} errors."
    )?;
    Ok(())
}

// ------------------------------------------------------------- configure

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `ipam configure`.
pub async fn configure(ipam: &Ipam, args: &ConfigureArgs, out: &mut dyn Write) -> Result<()> {
    let strict = match &args.strict_affinity {
        Some(v) => Some(
            parse_go_bool(v).context("invalid value. Use true or false to set strictaffinity")?,
        ),
        None => None,
    };
    let max_blocks = match &args.max_blocks_per_host {
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .context("invalid value for maxblockhost. Use a valid number")?,
        ),
        None => None,
    };
    let cooldown = match &args.ip_cooldown_seconds {
        Some(v) => Some(v.trim().parse::<u32>().ok().context(
            "invalid value for ipcooldownseconds. Use a number of seconds from 0 to 1200",
        )?),
        None => None,
    };
    let persistence = match args.kubevirt_ip_persistence.as_deref() {
        Some(v @ ("Enabled" | "Disabled")) => Some(v.to_string()),
        Some(_) => bail!("invalid value for --kubevirt-ip-persistence. Use Enabled or Disabled"),
        None => None,
    };
    if strict.is_none() && max_blocks.is_none() && cooldown.is_none() && persistence.is_none() {
        bail!("at least one configuration option must be specified");
    }
    ipam.update_config(|c| {
        if let Some(s) = strict {
            c.strict_affinity = s;
        }
        if let Some(m) = max_blocks {
            c.max_blocks_per_host = m;
        }
        if let Some(s) = cooldown {
            c.ip_cooldown_seconds = s;
        }
        if let Some(p) = &persistence {
            c.kubevirt_vm_address_persistence = Some(p.clone());
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("error: {e}"))?;
    if let Some(s) = strict {
        writeln!(out, "Successfully set StrictAffinity to: {s}")?;
    }
    if let Some(m) = max_blocks {
        writeln!(out, "Successfully set MaxBlocksPerHost to: {m}")?;
    }
    if let Some(s) = cooldown {
        writeln!(out, "Successfully set IPCooldownSeconds to: {s}")?;
    }
    if let Some(p) = persistence {
        writeln!(out, "Successfully set KubeVirtVMAddressPersistence to: {p}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_tables_look_like_go_pretty() {
        let rows = vec![
            vec![
                "IP Pool".into(),
                "10.0.0.0/16".into(),
                "65536".into(),
                "5 (0%)".into(),
            ],
            vec![
                "Block".into(),
                "10.0.0.0/26".into(),
                "64".into(),
                "5 (8%)".into(),
            ],
        ];
        let t = render_grid(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE"],
            &rows,
            &[Align::Left, Align::Left, Align::Right, Align::Left],
        );
        assert_eq!(
            t,
            "+----------+-------------+-----------+------------+\n\
             | GROUPING |    CIDR     | IPS TOTAL | IPS IN USE |\n\
             +----------+-------------+-----------+------------+\n\
             | IP Pool  | 10.0.0.0/16 |     65536 | 5 (0%)     |\n\
             | Block    | 10.0.0.0/26 |        64 | 5 (8%)     |\n\
             +----------+-------------+-----------+------------+\n"
        );
        assert_eq!(
            render_grid(&["A"], &[], &[]),
            "+---+\n| A |\n+---+\n",
            "an empty table is just the heading"
        );
    }

    #[test]
    fn counts_format_like_go() {
        assert_eq!(go_g5(65536.0), "65536");
        assert_eq!(go_g5(64.0), "64");
        assert_eq!(go_g5(100000.0), "1e+05");
        assert_eq!(go_g5(1048576.0), "1.0486e+06");
        assert_eq!(go_g5(2f64.powi(80)), "1.2089e+24");
        assert_eq!(go_g5(2f64.powi(64)), "1.8447e+19");
        assert_eq!(go_g5(99999.5), "1e+05");
        assert_eq!(go_g5(0.0), "0");
        assert_eq!(count_with_percent(5, 64), "5 (8%)");
        assert_eq!(count_with_percent(59, 64), "59 (92%)");
        assert_eq!(
            count_with_percent(1, 8),
            "1 (12%)",
            "12.5 rounds to even like Go"
        );
        assert_eq!(
            count_with_percent(3, 8),
            "3 (38%)",
            "37.5 rounds to even like Go"
        );
        assert_eq!(count_with_percent(1, 1u128 << 80), "1 (0%)");
        assert_eq!(
            count_with_percent(1u128 << 80, 1u128 << 80),
            "1.2089e+24 (100%)"
        );
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_go_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_go_bool(f), Some(false));
        }
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn configuration_table_lists_every_property() {
        let t = configuration_table(&IpamConfig::default());
        assert!(
            t.contains("|           PROPERTY           |  VALUE  |"),
            "{t}"
        );
        assert!(
            t.contains("| StrictAffinity               | false   |"),
            "{t}"
        );
        assert!(
            t.contains("| MaxBlocksPerHost             | 0       |"),
            "{t}"
        );
    }

    /// The trimmed cells of a grid table's heading and rows.
    fn grid_cells(text: &str) -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect()
    }

    /// The commands against a real embedded store.
    #[tokio::test]
    async fn commands_end_to_end() -> Result<()> {
        let dir = tempfile::Builder::new()
            .prefix("tortie-ipam-cmd-")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })?;
        let ds = tortie_datastore::connect(&tortie_datastore::DatastoreSpec::Embedded {
            path: dir.path().join("ds.db"),
        })
        .await?;
        let client = Client::new(ds);
        client.ensure_initialized().await?;
        client
            .create(tortie_model::Resource::new(
                tortie_model::ObjectMeta::named("p"),
                tortie_model::ippool::IPPoolSpec {
                    cidr: "10.0.0.0/24".into(),
                    ..Default::default()
                },
            ))
            .await?;
        let ipam = Ipam::new(client.clone());
        let mut req = tortie_ipam::AutoAssignRequest {
            num_v4: 5,
            handle_id: "k8s-pod-network.c1".into(),
            hostname: "node-1".into(),
            ..Default::default()
        };
        req.attrs.insert("pod".into(), "web-0".into());
        req.attrs.insert("namespace".into(), "default".into());
        req.attrs.insert("node".into(), "node-1".into());
        let got = ipam.auto_assign(req).await?;
        let first = got.ipv4.ips[0].addr();

        let mut out = Vec::new();
        show(
            &ipam,
            &ShowArgs {
                show_blocks: true,
                ..Default::default()
            },
            &mut out,
        )
        .await?;
        let text = String::from_utf8(out)?;
        let rows = grid_cells(&text);
        assert_eq!(
            rows[0],
            [
                "GROUPING",
                "CIDR",
                "IPS TOTAL",
                "IPS IN USE",
                "IPS RESERVED",
                "IPS FREE"
            ],
            "{text}"
        );
        assert_eq!(
            rows[1],
            [
                "IP Pool",
                "10.0.0.0/24",
                "256",
                "5 (2%)",
                "0 (0%)",
                "251 (98%)"
            ],
            "{text}"
        );
        assert_eq!(rows[2][0], "Block");
        assert_eq!(rows[2][1], got.ipv4.ips[0].trunc().to_string());
        assert_eq!(
            rows[2][2..],
            ["64", "5 (8%)", "0 (0%)", "59 (92%)"],
            "{text}"
        );
        assert_eq!(rows.len(), 3);

        let mut out = Vec::new();
        show(
            &ipam,
            &ShowArgs {
                ip: Some(first.to_string()),
                ..Default::default()
            },
            &mut out,
        )
        .await?;
        assert_eq!(
            String::from_utf8(out)?,
            format!(
                "IP {first} is in use\nHandle ID: k8s-pod-network.c1\nActive Owner Attributes:\n  namespace: default\n  node: node-1\n  pod: web-0\n"
            )
        );
        let mut out = Vec::new();
        show(
            &ipam,
            &ShowArgs {
                ip: Some("10.0.0.250".into()),
                ..Default::default()
            },
            &mut out,
        )
        .await?;
        assert_eq!(String::from_utf8(out)?, "10.0.0.250 is not assigned\n");

        // Check: five leaked pod addresses (no endpoints), node-1 has no Node.
        let report_path = dir.path().join("report.json");
        let mut out = Vec::new();
        let args = CheckArgs {
            output: Some(report_path.clone()),
            show_problem_ips: true,
            ..Default::default()
        };
        check(&ipam, &args, &mut out).await?;
        let text = String::from_utf8(out)?;
        assert!(text.contains("Found 1 IPAM blocks.\n"), "{text}");
        assert!(
            text.contains("IPAM blocks record 5 allocations.\n"),
            "{text}"
        );
        assert!(text.contains(&format!("  {first} leaked; attrs Main:k8s-pod-network.c1 Extra:namespace=default,node=node-1,pod=web-0\n")), "{text}");
        assert!(
            text.contains("Found 5 IPs that are allocated in IPAM but not actually in use.\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Check complete; found 6 problems.\n"),
            "{text}"
        );

        // Release from the report: refused until the datastore is locked
        // and the report is current.
        let args = ReleaseArgs {
            from_report: vec![report_path.clone()],
            ..Default::default()
        };
        let err = release(&ipam, &args, &mut Vec::new())
            .await
            .expect_err("not locked");
        assert!(
            err.to_string().contains("data store is not locked"),
            "{err}"
        );
        client.set_datastore_ready(false).await?;
        let err = release(&ipam, &args, &mut Vec::new())
            .await
            .expect_err("stale");
        assert!(
            err.to_string()
                .contains("the provided reports are all stale"),
            "{err}"
        );
        check(
            &ipam,
            &CheckArgs {
                output: Some(report_path.clone()),
                ..Default::default()
            },
            &mut Vec::new(),
        )
        .await?;
        let mut out = Vec::new();
        release(&ipam, &args, &mut out).await?;
        let text = String::from_utf8(out)?;
        assert_eq!(
            text,
            "Releasing 5 old IPs...\nReleased 5 IPs successfully\nReport didn't contain any handles to clean up.\nYou may now unlock the data store.\n"
        );
        let mut other =
            serde_json::from_str::<CheckReport>(&std::fs::read_to_string(&report_path)?)?;
        other.cluster_guid = "someone-else".into();
        let foreign = dir.path().join("foreign.json");
        std::fs::write(&foreign, serde_json::to_string(&other)?)?;
        let err = release(
            &ipam,
            &ReleaseArgs {
                from_report: vec![foreign],
                force: true,
                ..Default::default()
            },
            &mut Vec::new(),
        )
        .await
        .expect_err("foreign cluster");
        assert!(err.to_string().contains("mismatched cluster GUID"), "{err}");

        // Release by address.
        let err = release(
            &ipam,
            &ReleaseArgs {
                ip: Some(first.to_string()),
                ..Default::default()
            },
            &mut Vec::new(),
        )
        .await
        .expect_err("already released");
        assert_eq!(
            err.to_string(),
            format!("IP address {first} is not assigned")
        );

        // Configure.
        let mut out = Vec::new();
        configure(
            &ipam,
            &ConfigureArgs {
                strict_affinity: Some("true".into()),
                max_blocks_per_host: Some("4".into()),
                ..Default::default()
            },
            &mut out,
        )
        .await?;
        assert_eq!(
            String::from_utf8(out)?,
            "Successfully set StrictAffinity to: true\nSuccessfully set MaxBlocksPerHost to: 4\n"
        );
        let err = configure(
            &ipam,
            &ConfigureArgs {
                strict_affinity: Some("false".into()),
                ..Default::default()
            },
            &mut Vec::new(),
        )
        .await
        .expect_err("max blocks needs strict affinity");
        assert!(err.to_string().contains("requires strictAffinity"), "{err}");
        let err = configure(&ipam, &ConfigureArgs::default(), &mut Vec::new())
            .await
            .expect_err("nothing");
        assert_eq!(
            err.to_string(),
            "at least one configuration option must be specified"
        );
        let err = configure(
            &ipam,
            &ConfigureArgs {
                strict_affinity: Some("maybe".into()),
                ..Default::default()
            },
            &mut Vec::new(),
        )
        .await
        .expect_err("bad bool");
        assert_eq!(
            err.to_string(),
            "invalid value. Use true or false to set strictaffinity"
        );
        let mut out = Vec::new();
        show(
            &ipam,
            &ShowArgs {
                show_configuration: true,
                ..Default::default()
            },
            &mut out,
        )
        .await?;
        assert!(String::from_utf8(out)?.contains("| StrictAffinity               | true    |"));
        Ok(())
    }
}
