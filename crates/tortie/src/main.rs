//! The one tortie binary: argument parsing and dispatch only.
//!
//! Each command's arguments and behaviour live in the crate that owns it
//! (`tortie-ctl` for the CLI); this file composes them into one command
//! line. Errors are printed once, as one message, with exit status 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tortie_ctl::config::GlobalArgs;
use tortie_ctl::datastore_cmd::DatastoreCommand;
use tortie_ctl::get::GetArgs;
use tortie_ctl::ipam_cmd::IpamCommand;
use tortie_ctl::patch::{LabelArgs, PatchArgs};
use tortie_ctl::selector::SelectorCommand;
use tortie_ctl::version::VersionArgs;
use tortie_ctl::write::{CreateArgs, DeleteArgs, Verb, WriteArgs};

#[derive(Parser, Debug)]
#[command(
    name = "tortie",
    version,
    about = "Container, VM and host networking with network policy"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create resources from a file; fails for resources that exist
    Create(CreateArgs),
    /// Create or update resources from a file
    Apply(WriteArgs),
    /// Update existing resources from a file
    Replace(WriteArgs),
    /// Delete resources by file or by kind and name
    Delete(DeleteArgs),
    /// Show resources
    Get(GetArgs),
    /// Patch one resource
    Patch(PatchArgs),
    /// Set or remove a label on one resource
    Label(LabelArgs),
    /// Check resources in a file without writing them
    Validate(WriteArgs),
    /// Show client and cluster versions
    Version(VersionArgs),
    /// Check and evaluate selector expressions
    #[command(subcommand)]
    Selector(SelectorCommand),
    /// The node daemon and its status
    #[command(subcommand)]
    Node(tortie_node::NodeCommand),
    /// Clusters of network namespaces on this host, for trying tortie and for tests
    #[command(subcommand)]
    Lab(tortie_lab::LabCommand),
    /// Explain policy verdicts
    #[command(subcommand)]
    Policy(tortie_ctl::explain_cmd::PolicyCommand),
    /// IP address management: show, check, release, configure
    #[command(subcommand)]
    Ipam(IpamCommand),
    /// Migrate between datastores, or check one
    #[command(subcommand)]
    Datastore(DatastoreCommand),
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match &cli.command {
        Command::Create(a) => {
            tortie_ctl::write::run_files(g, Verb::Create, &a.write, a.skip_exists).await
        }
        Command::Apply(a) => tortie_ctl::write::run_files(g, Verb::Apply, a, false).await,
        Command::Replace(a) => tortie_ctl::write::run_files(g, Verb::Replace, a, false).await,
        Command::Validate(a) => tortie_ctl::write::run_files(g, Verb::Validate, a, false).await,
        Command::Delete(a) => tortie_ctl::write::run_delete(g, a).await,
        Command::Get(a) => tortie_ctl::get::run(g, a).await,
        Command::Patch(a) => tortie_ctl::patch::run_patch(g, a).await,
        Command::Label(a) => tortie_ctl::patch::run_label(g, a).await,
        Command::Version(a) => tortie_ctl::version::run(g, a).await,
        Command::Selector(c) => Ok(tortie_ctl::selector::run(c)),
        Command::Ipam(c) => tortie_ctl::ipam_cmd::run(g, c).await,
        Command::Policy(c) => tortie_ctl::explain_cmd::run(g, c).await,
        // Both run their own runtimes; main() dispatches them before this.
        Command::Node(_) | Command::Lab(_) => unreachable!("dispatched in main"),
        Command::Datastore(c) => tortie_ctl::datastore_cmd::run(g, c).await,
    }
}

fn main() -> ExitCode {
    // Run as `tortie-cni`/`calico` or `tortie-ipam`/`calico-ipam` (links to
    // this binary), it is a CNI plugin: environment and stdin in, JSON out.
    if let Some(kind) = std::env::args_os()
        .next()
        .and_then(|argv0| tortie_cni::plugin_kind_from_argv0(&argv0))
    {
        return tortie_cni::run_plugin(kind);
    }
    // calicoctl exits 1 on any error, bad arguments included; help and
    // --version still exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(e) = cli.global.init_logging() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // A command that only prints dies of SIGPIPE when its reader goes
    // away (`| head`, `| grep -q`), like any Unix tool; Rust ignores
    // SIGPIPE, which turns that into a panic in `println!`. The daemon
    // and the lab keep ignoring it: they own sockets and children.
    let prints_only = match &cli.command {
        Command::Node(c) => !matches!(c, tortie_node::NodeCommand::Run(_)),
        Command::Lab(_) => false,
        _ => true,
    };
    if prints_only {
        die_quietly_on_sigpipe();
    }
    // The daemon and the lab manage their own runtimes and processes.
    let direct = match &cli.command {
        Command::Node(c) => Some(
            cli.global
                .datastore_spec()
                .and_then(|spec| tortie_node::run(c, spec)),
        ),
        Command::Lab(c) => Some(tortie_lab::run(c)),
        _ => None,
    };
    if let Some(result) = direct {
        return match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Restores SIGPIPE's default action (terminate, silently).
#[allow(unsafe_code)] // the one libc call std offers no safe wrapper for
fn die_quietly_on_sigpipe() {
    // SAFETY: runs before any other thread exists; setting a signal's
    // disposition to SIG_DFL installs no handler and touches no memory.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
