//! `version`: the client's version and the cluster's (ClusterInformation).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tortie_client::TORTIE_VERSION;

use crate::config::GlobalArgs;

/// The commit tortie was built from (set by build.rs; `unknown` outside git).
pub const GIT_COMMIT: &str = env!("TORTIE_GIT_COMMIT");

#[derive(Args, Debug, Clone)]
pub struct VersionArgs {
    /// Print only the client's version
    #[arg(long)]
    pub client: bool,
}

pub async fn run(global: &GlobalArgs, args: &VersionArgs) -> Result<ExitCode> {
    println!("Client Version:    {TORTIE_VERSION}");
    println!("Git commit:        {GIT_COMMIT}");
    if args.client {
        return Ok(ExitCode::SUCCESS);
    }
    let client = global.client().await?;
    match client.cluster_information().await {
        Ok(Some(info)) => {
            println!("Cluster Version:   {}", info.calico_version);
            println!("Cluster Type:      {}", info.cluster_type);
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            eprintln!(
                "Unable to detect installed tortie version: the datastore has not been initialised yet (any write initialises it)"
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("Unable to detect installed tortie version: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
