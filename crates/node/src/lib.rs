//! `tortie node`: the node daemon (`node run`) that turns the datastore into
//! kernel state on one host and keeps it there, and `node status`, which
//! asks a running daemon how it is.
//!
//! Layout: `daemon` is the main loop (syncer → calculation → reconcilers),
//! `registration` the Node resource and tunnel address, `detect` the node's
//! address, `http` the health/status/metrics endpoints, `metrics` and
//! `status` what they serve.

mod daemon;
mod detect;
mod http;
mod metrics;
pub mod pipeline;
mod registration;
mod status;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

pub use daemon::RunArgs;
pub use status::NodeStatus;

/// The health port every tortie daemon listens on by default.
pub const DEFAULT_HEALTH_PORT: u16 = 9099;

#[derive(Subcommand, Debug, Clone)]
pub enum NodeCommand {
    /// Run the node daemon (in the foreground)
    Run(RunArgs),
    /// Show the status of the node daemon running on this host
    Status(StatusArgs),
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The daemon's health port
    #[arg(long, default_value_t = DEFAULT_HEALTH_PORT)]
    pub health_port: u16,
    /// Print nothing; exit 0 if the daemon is ready, 1 if not
    #[arg(long)]
    pub ready: bool,
    /// Output format: text or json
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

/// Fetches `/status` from the daemon on this host.
async fn fetch_status(port: u16) -> Result<NodeStatus> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper::body::Bytes;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| {
            format!(
                "no tortie node daemon answers on 127.0.0.1:{port}; is `tortie node run` running?"
            )
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/status")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .context("asking the daemon for its status")?;
    let body = response.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).context("reading the daemon's status")
}

async fn status(args: &StatusArgs) -> Result<ExitCode> {
    let timeout = std::time::Duration::from_secs(5);
    let status = match tokio::time::timeout(timeout, fetch_status(args.health_port)).await {
        Ok(r) => r,
        Err(_) => bail!(
            "the daemon on 127.0.0.1:{} did not answer within {timeout:?}",
            args.health_port
        ),
    };
    if args.ready {
        return Ok(match status {
            Ok(s) if s.ready() => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        });
    }
    let status = status?;
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&status)?),
        "text" => print!("{}", status.render()),
        other => bail!("unrecognized output format '{other}': use text or json"),
    }
    Ok(if status.ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs a `tortie node` command. `datastore` is the global `--datastore`.
pub fn run(cmd: &NodeCommand, datastore: tortie_datastore::DatastoreSpec) -> Result<ExitCode> {
    match cmd {
        NodeCommand::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(daemon::run(args.clone(), datastore))
        }
        NodeCommand::Status(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(status(args))
        }
    }
}
