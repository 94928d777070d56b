//! `tortie lab`: an N-node cluster of network namespaces on one host, with
//! real node daemons and real pods, for trying tortie and for end-to-end
//! tests.
//!
//! `up` builds the data-centre bridge and the node namespaces, creates the
//! datastore's IP pool and starts `tortie node run` in every node; `pod add`
//! attaches a pod namespace through the real CNI plugin the way Kubernetes
//! does; `probe` and `check` send real packets; `down` removes everything,
//! also after a crash. Layout and naming: see `state` and `net`.

mod cluster;
mod net;
mod pods;
mod probe;
mod state;
mod store;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

pub use probe::ProbeProto;

#[derive(Subcommand, Debug, Clone)]
pub enum LabCommand {
    /// Create a lab: nodes on one bridge, each running `tortie node run`
    Up(cluster::UpArgs),
    /// Remove a lab and everything it created (also after a crash)
    Down {
        /// Lab name
        name: String,
    },
    /// Restart one node's daemon (what it programmed stays in place), or
    /// kill and restart the lab's etcd
    Restart {
        /// Lab name
        name: String,
        /// Node name, e.g. node-2, or `etcd`
        node: String,
    },
    /// Run a tortie command against the lab's datastore, e.g.
    /// `tortie lab ctl demo -- apply -f policy.yaml`
    Ctl {
        /// Lab name
        name: String,
        /// The command and its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Show labs, their nodes and pods
    Status {
        /// Lab name (default: every lab)
        name: Option<String>,
    },
    /// Add or remove pods
    #[command(subcommand)]
    Pod(pods::PodCommand),
    /// Run a command inside a pod's network namespace
    Exec(pods::ExecArgs),
    /// Send real packets from one pod to another: prints allowed or denied
    Probe(probe::ProbeArgs),
    /// Probe every pair of pods and print the connectivity matrix
    Check(probe::CheckArgs),
    /// (internal) accept probe connections inside a pod
    #[command(hide = true)]
    Listen(probe::ListenArgs),
    /// (internal) make one probe connection from inside a pod
    #[command(hide = true)]
    Connect(probe::ConnectArgs),
}

pub fn run(cmd: &LabCommand) -> Result<ExitCode> {
    match cmd {
        LabCommand::Up(args) => cluster::up(args),
        LabCommand::Down { name } => cluster::down(name),
        LabCommand::Restart { name, node } => cluster::restart(name, node),
        LabCommand::Ctl { name, args } => cluster::ctl(name, args),
        LabCommand::Status { name } => cluster::status(name.as_deref()),
        LabCommand::Pod(cmd) => pods::run(cmd),
        LabCommand::Exec(args) => pods::exec(args),
        LabCommand::Probe(args) => probe::probe(args),
        LabCommand::Check(args) => probe::check(args),
        LabCommand::Listen(args) => probe::listen(args),
        LabCommand::Connect(args) => probe::connect(args),
    }
}
