//! `tortie policy explain`: would a packet from A to B be allowed, and which
//! tier, policy and rule (or default deny, or profile) decided it — egress
//! at the source and ingress at the destination, computed from the
//! datastore with the same calculation the node daemon programs from.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tortie_calc::explain::{Peer, Request, resolve_peer};
use tortie_calc::rules::IpFamily;
use tortie_calc::{ClusterModel, Explanation};
use tortie_client::Client;

use crate::config::GlobalArgs;

#[derive(Subcommand, Debug, Clone)]
pub enum PolicyCommand {
    /// Explain the verdict for one packet between two endpoints, sets or IPs
    Explain(ExplainArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// Source: NAMESPACE/NAME (workload endpoint or pod, else NetworkSet),
    /// NAME (host endpoint, else GlobalNetworkSet), or an IP address
    #[arg(long)]
    pub from: String,
    /// Destination, in the same forms as --from
    #[arg(long)]
    pub to: String,
    /// Protocol: tcp, udp, sctp, icmp, icmpv6 or a number
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// Destination port (tcp, udp, sctp)
    #[arg(long)]
    pub port: Option<u16>,
    /// Source port, for rules that match source ports
    #[arg(long)]
    pub src_port: Option<u16>,
    /// ICMP type (and --icmp-code)
    #[arg(long)]
    pub icmp_type: Option<u8>,
    #[arg(long, default_value_t = 0)]
    pub icmp_code: u8,
    /// Explain the IPv6 packet: endpoints and sets stand for their IPv6
    /// address (without it, IPv4 when both ends have IPv4)
    #[arg(long)]
    pub ipv6: bool,
    /// Output format: text or json
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

/// The IP protocol number of a `--proto` value.
pub fn protocol_number(text: &str) -> Result<u8> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "icmpv6" => 58,
        "udplite" => 136,
        other => match other.parse::<u8>() {
            Ok(n) if n > 0 => n,
            _ => bail!(
                "--proto {text:?}: use tcp, udp, sctp, icmp, icmpv6, udplite or a number 1-255"
            ),
        },
    })
}

/// Reads every resource of the cluster into a calculation model.
pub async fn load_model(client: &Client) -> Result<ClusterModel> {
    let listed = client
        .datastore()
        .list(tortie_client::keys::RESOURCES_PREFIX)
        .await
        .context("reading the cluster's resources")?;
    let mut model = ClusterModel::new();
    for kv in &listed.items {
        // A value calc cannot use is skipped, as the daemon skips it.
        let _ = model.apply_kv(&kv.key, Some(&kv.value));
    }
    Ok(model)
}

/// The family `--ipv6` asks for (`None`: the first both ends have).
pub fn family(ipv6: bool) -> Option<IpFamily> {
    ipv6.then_some(IpFamily::V6)
}

/// Explains one packet in an already loaded model.
pub fn explain_in(
    model: &ClusterModel,
    from: &str,
    to: &str,
    protocol: u8,
    port: Option<u16>,
    family: Option<IpFamily>,
) -> Result<Explanation> {
    let request = Request {
        from: resolve_peer(model, from)?,
        to: resolve_peer(model, to)?,
        protocol,
        dst_port: port,
        src_port: None,
        icmp: None,
        family,
    };
    Ok(tortie_calc::explain(model, &request)?)
}

async fn explain(global: &GlobalArgs, args: &ExplainArgs) -> Result<ExitCode> {
    let protocol = protocol_number(&args.proto)?;
    if args.port.is_some() && !matches!(protocol, 6 | 17 | 132 | 136) {
        bail!("--port is only meaningful for tcp, udp, sctp or udplite");
    }
    let client = global.reading_client().await?;
    let model = load_model(&client).await?;
    let peer = |text: &str| -> Result<Peer> {
        resolve_peer(&model, text).with_context(|| {
            format!("{text:?}: no workload endpoint, pod, host endpoint, network set or IP address by that name")
        })
    };
    let request = Request {
        from: peer(&args.from)?,
        to: peer(&args.to)?,
        protocol,
        dst_port: args.port,
        src_port: args.src_port,
        icmp: args.icmp_type.map(|t| (t, args.icmp_code)),
        family: family(args.ipv6),
    };
    let explanation = tortie_calc::explain(&model, &request)?;
    match args.output.as_str() {
        "text" => print!("{explanation}"),
        "json" => println!("{}", serde_json::to_string_pretty(&explanation)?),
        other => bail!("unrecognized output format '{other}': use text or json"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(global: &GlobalArgs, cmd: &PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Explain(args) => explain(global, args).await,
    }
}
