//! The main loop of `tortie node run`.
//!
//! Start-up: serve health and metrics at once (not ready yet), connect to
//! the datastore (retrying until it answers), register the Node resource and
//! the tunnel addresses, probe the kernel (IPIP), then follow the
//! datastore with the syncer. Nothing is applied to the kernel before the
//! syncer reports in-sync; after that every batch of updates goes through
//! the calculation and the reconcilers, and a timer resyncs the reconcilers
//! so drift is repaired.
//!
//! The loop owns all mutable state; the HTTP endpoints see snapshots.
//! SIGTERM and SIGINT stop the daemon without touching what it programmed:
//! a restarted daemon takes the installed state over.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::FutureExt as _;
use ipnet::IpNet;
use tokio::sync::{Notify, watch};
use tortie_calc::{Calculator, LocalState, Update};
use tortie_client::Client;
use tortie_dataplane::fastpath::FastPath;
use tortie_dataplane::ipip::IpipSupport;
use tortie_datastore::sync::{SyncEvent, Syncer, SyncerConfig};
use tortie_datastore::{Datastore, DatastoreSpec, Revision};

use crate::http::{self, Shared};
use crate::metrics::Metrics;
use crate::pipeline::translate::HostFacts;
use crate::pipeline::{Dataplane, DataplaneConfig};
use crate::registration::{self, NodeAddresses, TunnelAddresses};
use crate::status::NodeStatus;
use crate::{DEFAULT_HEALTH_PORT, detect};

/// The prefixes the daemon follows: every v3 resource and the IPAM blocks
/// and affinities (for routes).
const SYNC_PREFIXES: [&str; 3] = [
    "/calico/resources/v3/projectcalico.org/",
    "/calico/ipam/v2/assignment/",
    "/calico/ipam/v2/host/",
];

/// Where IP pools live in the datastore.
const POOL_PREFIX: &str = "/calico/resources/v3/projectcalico.org/ippools/";

/// Pause between attempts to reach the datastore at start-up.
const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// How often counts, readiness and the MTU file are refreshed.
const STATUS_INTERVAL: Duration = Duration::from_millis(200);
/// Syncer events folded into one calculation pass at most.
const MAX_EVENTS_PER_PASS: usize = 10_000;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// This node's name (default: the host name)
    #[arg(long)]
    pub name: Option<String>,
    /// This node's address with prefix, e.g. 10.0.0.5/24 (default: the
    /// address the Node resource already has, while it is on this host;
    /// else detected)
    #[arg(long, value_parser = parse_ipv4_net)]
    pub ip: Option<IpNet>,
    /// This node's IPv6 address with prefix, e.g. fd30::11/64, or `none`
    /// to register none (default: the address the Node resource already
    /// has, while it is on this host; IPv6 pools that use VXLAN need one)
    #[arg(long, value_parser = parse_ip6_choice)]
    pub ip6: Option<Ip6Choice>,
    /// Address the health and status endpoints listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub health_host: IpAddr,
    /// Port of /liveness, /readiness and /status
    #[arg(long, default_value_t = DEFAULT_HEALTH_PORT)]
    pub health_port: u16,
    /// Port of /metrics (0: no metrics endpoint)
    #[arg(long, default_value_t = 9091)]
    pub metrics_port: u16,
    /// How often the reconcilers re-read the kernel to repair drift (seconds)
    #[arg(long, default_value_t = 0.9, value_parser = parse_interval)]
    pub resync_interval: f64,
    /// Where the pod MTU is written for the CNI plugin
    #[arg(long, default_value = "/var/lib/calico/mtu")]
    pub mtu_file: std::path::PathBuf,
    /// Do not attach the established-flow fast path (tc-BPF) to workload
    /// interfaces; every packet then takes the host's stack
    #[arg(long)]
    pub no_fast_path: bool,
}

/// `--resync-interval`: seconds, 0.05 to 3600.
fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.05..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0.05 and 3600"
        )),
    }
}

/// `--ip`: an IPv4 address with prefix.
fn parse_ipv4_net(text: &str) -> Result<IpNet, String> {
    match text.parse::<IpNet>() {
        Ok(net @ IpNet::V4(_)) => Ok(net),
        _ => Err(format!(
            "{text:?} is not an IPv4 address with prefix, e.g. 10.0.0.5/24"
        )),
    }
}

/// What `--ip6` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip6Choice {
    /// `none`: register no IPv6 address (one registered before is cleared).
    None,
    Address(IpNet),
}

/// `--ip6`: an IPv6 address with prefix, or `none`.
fn parse_ip6_choice(text: &str) -> Result<Ip6Choice, String> {
    if text == "none" {
        return Ok(Ip6Choice::None);
    }
    match text.parse::<IpNet>() {
        Ok(net @ IpNet::V6(_)) => Ok(Ip6Choice::Address(net)),
        _ => Err(format!(
            "{text:?} is not an IPv6 address with prefix, e.g. fd30::11/64, or none"
        )),
    }
}

/// An address the Node resource already has, and whether it is still on
/// one of this host's interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Registered {
    address: IpNet,
    on_host: bool,
}

/// The addresses to register, as Calico's node decides them: a flag wins;
/// without one the registered address stays while it is on this host; an
/// IPv4 address is otherwise detected (`detected`, called only then), an
/// IPv6 one dropped.
async fn choose_addresses<F: Future<Output = Result<IpNet>>>(
    ip: Option<IpNet>,
    ip6: Option<Ip6Choice>,
    registered: [Option<Registered>; 2],
    detected: impl FnOnce() -> F,
) -> Result<NodeAddresses> {
    let [registered_v4, registered_v6] = registered;
    let kept = |r: Option<Registered>, family: &str| match r {
        Some(r) if r.on_host => Some(r.address),
        Some(r) => {
            tracing::warn!(address = %r.address, "the {family} address the Node resource has is not on this host any more");
            None
        }
        None => None,
    };
    let v4 = match ip.or_else(|| kept(registered_v4, "IPv4")) {
        Some(ip) => ip,
        None => detected().await?,
    };
    let v6 = match ip6 {
        Some(Ip6Choice::None) => None,
        Some(Ip6Choice::Address(ip6)) => Some(ip6),
        None => kept(registered_v6, "IPv6"),
    };
    Ok(NodeAddresses { v4, v6 })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Connects, retrying until the datastore answers; problems go to the status.
async fn connect(spec: &DatastoreSpec, status: &watch::Sender<NodeStatus>) -> Arc<dyn Datastore> {
    loop {
        match tortie_datastore::connect(spec).await {
            Ok(ds) => match ds.revision().await {
                Ok(_) => return ds,
                Err(e) => report(status, format!("datastore {spec} not reachable yet: {e}")),
            },
            Err(e) => report(status, format!("cannot open datastore {spec}: {e}")),
        }
        tokio::time::sleep(CONNECT_RETRY).await;
    }
}

fn report(status: &watch::Sender<NodeStatus>, problem: String) {
    tracing::warn!(problem, "node daemon");
    status.send_modify(|s| s.add_problem(problem));
}

pub async fn run(args: RunArgs, spec: DatastoreSpec) -> Result<std::process::ExitCode> {
    let name = args.name.clone().unwrap_or_else(host_name);
    let (metrics, registry) = Metrics::new();
    let (status_tx, status_rx) = watch::channel(NodeStatus {
        node: name.clone(),
        version: tortie_client::TORTIE_VERSION.to_string(),
        datastore: spec.to_string(),
        ..NodeStatus::default()
    });
    let shared = Shared {
        status: status_rx,
        registry: Arc::new(registry),
    };
    let _health = http::serve(
        SocketAddr::new(args.health_host, args.health_port),
        shared.clone(),
        &["/liveness", "/readiness", "/status"],
    )
    .await?;
    let _metrics_server = if args.metrics_port != 0 {
        Some(
            http::serve(
                SocketAddr::new(args.health_host, args.metrics_port),
                shared,
                &["/metrics"],
            )
            .await?,
        )
    } else {
        None
    };
    tracing::info!(node = %name, datastore = %spec, "tortie node starting");
    // Reading the kernel's type information and verifying the program take
    // tens of milliseconds: done beside the start-up, needed only when the
    // kernel is first programmed.
    let no_fast_path = args.no_fast_path;
    let mut fast_path_opening = Some(tokio::task::spawn_blocking(move || {
        open_fast_path(no_fast_path)
    }));

    let ds = connect(&spec, &status_tx).await;
    let client = Client::new(Arc::clone(&ds));
    let on_host = detect::host_addresses().await?;
    let registered = registration::registered_addresses(&client, &name)
        .await?
        .map(|address| {
            address.map(|address| Registered {
                address,
                on_host: on_host.contains(&address.addr()),
            })
        });
    let ips = choose_addresses(args.ip, args.ip6, registered, detect::node_address).await?;
    let ip = ips.v4;
    // The IPv6 VTEP's parent is the interface holding it.
    if let Some(ip6) = ips.v6
        && !on_host.contains(&ip6.addr())
    {
        bail!("no interface of this host holds the node address {ip6}; check --ip6");
    }
    registration::register(&client, &name, &ips).await?;
    let tunnels = registration::ensure_tunnel_addresses(&client, &name).await?;
    status_tx.send_modify(|s| {
        s.node_ip = ip.to_string();
        s.node_ip6 = ips.v6.map(|ip6| ip6.to_string());
    });
    publish_tunnels(&status_tx, &tunnels);
    tracing::info!(node = %name, %ip, ip6 = ?ips.v6, tunnels = ?tunnels, "node registered");

    let ipip = probe_ipip().await;
    status_tx.send_modify(|s| match &ipip {
        IpipSupport::Supported => s.ipip_supported = Some(true),
        IpipSupport::Unsupported { reason } => {
            s.ipip_supported = Some(false);
            s.ipip_detail = reason.clone();
        }
    });
    if let IpipSupport::Unsupported { reason } = &ipip {
        tracing::warn!(%reason, "IPIP is not available on this host; IPIP pools cannot be programmed");
    }
    let (node_iface, host_mtu) = detect::interface_holding(ip.addr()).await?;
    let mut host = HostFacts {
        node_iface,
        host_mtu,
        ipip_supported: ipip == IpipSupport::Supported,
    };
    let resync_interval = Duration::from_secs_f64(args.resync_interval);

    let mut calc = Calculator::new(&name);
    let mut syncer = Syncer::start(Arc::clone(&ds), SyncerConfig::new(SYNC_PREFIXES));
    let mut tunnel_refresh = TunnelRefresh {
        due: false,
        pools_seen: tunnels.pools_revision,
    };
    let mut dataplane: Option<Dataplane> = None;
    let mut written_mtu = None;
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    // Readiness is published as soon as a reconciler catches up, not on
    // the next tick.
    let mut caught_up: Option<Arc<Notify>> = None;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            event = syncer.next() => {
                let Some(event) = event else {
                    report(&status_tx, "the datastore syncer stopped".to_string());
                    break;
                };
                // Everything already queued goes into one calculation pass.
                let mut next = Some(event);
                let mut taken = 0;
                while let Some(event) = next.take() {
                    tunnel_refresh.note(&event);
                    handle_event(event, &mut calc, &metrics, &status_tx);
                    taken += 1;
                    if taken < MAX_EVENTS_PER_PASS {
                        next = syncer.next().now_or_never().flatten();
                    }
                }
                // A pool created, changed or deleted after start may give a
                // tunnel an address or take it away, as Calico's allocator
                // does. Recording it updates this node's Node resource,
                // which comes back through the syncer to the dataplane.
                tunnel_refresh.run_if_due(&client, &name, &status_tx).await;
                let Some(delta) = calc.take_delta() else { continue };
                if delta.is_empty() {
                    continue;
                }
                match dataplane.as_mut() {
                    Some(dp) => {
                        for problem in dp.apply(delta).await {
                            report(&status_tx, problem);
                        }
                    }
                    None => {
                        // The host MTU follows FelixConfiguration's
                        // mtuIfacePattern, known only now.
                        let pattern = &calc.local_state().config.mtu_iface_pattern;
                        match detect::host_mtu(pattern).await {
                            Ok(mtu) => {
                                tracing::info!(mtu, pattern = %pattern, "host MTU");
                                host.host_mtu = mtu;
                            }
                            Err(e) => report(&status_tx, format!("host MTU: {e:#}; using {}", host.host_mtu)),
                        }
                        let config = DataplaneConfig {
                            host: host.clone(),
                            resync_interval,
                            interface_prefixes: calc.local_state().config.interface_prefixes.clone(),
                            fast_path: opened_fast_path(fast_path_opening.take(), &status_tx).await,
                        };
                        tracing::info!(changes = delta.len(), "in sync; programming the kernel");
                        let dp = Dataplane::start(config, delta, &metrics).await?;
                        caught_up = Some(dp.caught_up());
                        dataplane = Some(dp);
                    }
                }
            }
            // The MTU file first: a pod created the moment the node is
            // ready must find it.
            () = notified(caught_up.clone()) => {
                write_mtu(dataplane.as_ref(), &args.mtu_file, &mut written_mtu, &status_tx);
                refresh_status(&calc, dataplane.as_ref(), &metrics, &status_tx);
            }
            _ = tick.tick() => {
                tunnel_refresh.run_if_due(&client, &name, &status_tx).await;
                write_mtu(dataplane.as_ref(), &args.mtu_file, &mut written_mtu, &status_tx);
                refresh_status(&calc, dataplane.as_ref(), &metrics, &status_tx);
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if let Some(dp) = dataplane {
        dp.stop();
    }
    tracing::info!(node = %name, "tortie node stopping; the kernel state it programmed stays in place");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Waits for `notify` (forever without one).
async fn notified(notify: Option<Arc<Notify>>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Whether the tunnel addresses must be ensured again: an IP pool was
/// created, changed or deleted after the pool list they were last chosen
/// from (so the start-up choice is not redone for the initial snapshot).
/// A failed run stays due, and the status tick retries it.
struct TunnelRefresh {
    due: bool,
    pools_seen: Revision,
}

impl TunnelRefresh {
    fn note(&mut self, event: &SyncEvent) {
        if let SyncEvent::Update { key, revision, .. } = event {
            self.due |= key.starts_with(POOL_PREFIX) && *revision > self.pools_seen;
        }
    }

    /// Ensures and publishes the tunnel addresses when due and in sync.
    async fn run_if_due(
        &mut self,
        client: &Client,
        name: &str,
        status: &watch::Sender<NodeStatus>,
    ) {
        if !self.due || !status.borrow().in_sync {
            return;
        }
        match registration::ensure_tunnel_addresses(client, name).await {
            Ok(tunnels) => {
                publish_tunnels(status, &tunnels);
                self.due = false;
                self.pools_seen = tunnels.pools_revision;
            }
            Err(e) => report(status, format!("tunnel addresses: {e:#}; retrying")),
        }
    }
}

/// The tunnel addresses in the status.
fn publish_tunnels(status: &watch::Sender<NodeStatus>, tunnels: &TunnelAddresses) {
    let text = |t: Option<IpNet>| t.map(|t| t.addr().to_string());
    status.send_modify(|s| {
        s.vxlan_tunnel_address = text(tunnels.vxlan);
        s.vxlan_v6_tunnel_address = text(tunnels.vxlan_v6);
        s.ipip_tunnel_address = text(tunnels.ipip);
    });
}

/// Feeds one syncer event to the calculation.
fn handle_event(
    event: SyncEvent,
    calc: &mut Calculator,
    metrics: &Metrics,
    status: &watch::Sender<NodeStatus>,
) {
    match event {
        SyncEvent::Update { key, value, .. } => {
            metrics.datastore_updates.inc();
            if let Err(e) = calc.apply_kv(&key, value.as_deref()) {
                metrics.errors.inc();
                report(status, format!("ignoring {key}: {e}"));
            }
        }
        SyncEvent::InSync => {
            if let Err(e) = calc.apply(Update::InSync) {
                report(status, format!("marking the calculation in sync: {e}"));
            }
            metrics.in_sync.set(1);
            status.send_modify(|s| s.in_sync = true);
            tracing::info!("datastore in sync");
        }
    }
}

/// Publishes counts and the programmed flag.
fn refresh_status(
    calc: &Calculator,
    dataplane: Option<&Dataplane>,
    metrics: &Metrics,
    status: &watch::Sender<NodeStatus>,
) {
    let state = calc.local_state();
    let endpoints = state.workload_endpoints.len() + state.host_endpoints.len();
    let policies = state.policies.len() + state.profiles.len();
    let members: usize = state
        .ip_sets
        .values()
        .map(|m| m.v4.len() + m.v6.len())
        .sum::<usize>()
        + state
            .named_port_sets
            .values()
            .map(|m| m.len())
            .sum::<usize>();
    metrics.endpoints.set(endpoints as i64);
    metrics.policies.set(policies as i64);
    metrics.set_members.set(members as i64);
    let (endpoints_up, endpoints_down, down_endpoints) = endpoint_status(state, dataplane);
    let behind = dataplane.map_or_else(|| vec!["all (not in sync yet)"], Dataplane::behind);
    let programmed = behind.is_empty();
    let render_errors = dataplane.map_or(0, Dataplane::render_errors);
    status.send_if_modified(|s| {
        let before = s.clone();
        s.programmed = programmed;
        s.behind = behind.iter().map(|b| b.to_string()).collect();
        s.endpoints_up = endpoints_up;
        s.endpoints_down = endpoints_down;
        s.down_endpoints = down_endpoints;
        s.local_endpoints = endpoints;
        s.active_policies = policies;
        s.render_errors = render_errors;
        *s != before
    });
}

/// Local workload endpoints whose interface is up (a count), and those
/// whose interface is down or missing (spec/dataplane.md §6), by name.
fn endpoint_status(
    state: &LocalState,
    dataplane: Option<&Dataplane>,
) -> (usize, usize, Vec<String>) {
    let Some(dp) = dataplane else {
        return (0, 0, Vec::new());
    };
    let weps = &state.workload_endpoints;
    let up = dp.interfaces_up(weps.keys().map(String::as_str));
    let mut down = Vec::new();
    let mut down_count = 0;
    for ((iface, wep), up) in weps.iter().zip(&up) {
        if !up {
            if down.len() < crate::status::MAX_LISTED {
                down.push(format!("{} ({iface})", wep.id));
            }
            down_count += 1;
        }
    }
    (up.len() - down_count, down_count, down)
}

/// Writes the pod MTU file when the dataplane's pod MTU differs from the
/// one last written.
fn write_mtu(
    dataplane: Option<&Dataplane>,
    path: &std::path::Path,
    written: &mut Option<u32>,
    status: &watch::Sender<NodeStatus>,
) {
    let Some(dp) = dataplane else {
        return;
    };
    let mtu = dp.pod_mtu();
    if *written != Some(mtu) {
        match write_mtu_file(path, mtu) {
            Ok(()) => *written = Some(mtu),
            Err(e) => report(status, e),
        }
    }
}

/// Writes the pod MTU where the CNI plugin reads it (decimal, no newline).
fn write_mtu_file(path: &std::path::Path, mtu: u32) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, mtu.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write the pod MTU to {}: {e}", path.display()))
}

/// The fast path opened beside the start-up, its state published.
async fn opened_fast_path(
    opening: Option<tokio::task::JoinHandle<Result<FastPath, String>>>,
    status: &watch::Sender<NodeStatus>,
) -> Option<FastPath> {
    let opened = match opening {
        Some(handle) => handle
            .await
            .unwrap_or_else(|e| Err(format!("opening it failed: {e}"))),
        None => Err("already opened".to_string()),
    };
    status.send_modify(|s| {
        s.fast_path = Some(opened.is_ok());
        s.fast_path_detail = opened.as_ref().err().cloned().unwrap_or_default();
    });
    opened.ok()
}

/// The fast path, or why there is none (logged).
fn open_fast_path(turned_off: bool) -> Result<FastPath, String> {
    if turned_off {
        tracing::info!("the fast path is turned off (--no-fast-path)");
        return Err("turned off (--no-fast-path)".to_string());
    }
    match FastPath::open() {
        Ok(fast_path) => {
            tracing::info!("established pod-to-pod flows take the fast path (tc-BPF)");
            Ok(fast_path)
        }
        Err(e) => {
            tracing::warn!(reason = %e, "the fast path is not available; every packet takes the host's stack");
            Err(e.to_string())
        }
    }
}

/// Whether this kernel can do IPIP (a failed probe counts as "no").
async fn probe_ipip() -> IpipSupport {
    let probe = async {
        let mut socket = tortie_dataplane::netlink::RtSocket::open()?;
        tortie_dataplane::ipip::probe(&mut socket).await
    };
    match probe.await {
        Ok(support) => support,
        Err(e) => IpipSupport::Unsupported {
            reason: format!("could not probe for IPIP: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("net")
    }

    fn registered(text: &str, on_host: bool) -> Option<Registered> {
        Some(Registered {
            address: net(text),
            on_host,
        })
    }

    async fn choose(
        ip: Option<IpNet>,
        ip6: Option<Ip6Choice>,
        registered: [Option<Registered>; 2],
    ) -> NodeAddresses {
        choose_addresses(ip, ip6, registered, || async { Ok(net("192.0.2.9/24")) })
            .await
            .expect("addresses")
    }

    #[tokio::test]
    async fn registered_addresses_stay_unless_a_flag_changes_them_or_they_left_the_host() {
        let both = [
            registered("172.30.0.11/24", true),
            registered("fd30::11/64", true),
        ];
        // A plain restart keeps what the Node has (a Node migrated from
        // Calico keeps its IPv6 address).
        let kept = choose(None, None, both).await;
        assert_eq!(
            (kept.v4, kept.v6),
            (net("172.30.0.11/24"), Some(net("fd30::11/64")))
        );
        // Flags win; `--ip6 none` clears.
        let flagged = choose(Some(net("10.0.0.5/24")), Some(Ip6Choice::None), both).await;
        assert_eq!((flagged.v4, flagged.v6), (net("10.0.0.5/24"), None));
        let v6 = Ip6Choice::Address(net("fd30::12/64"));
        assert_eq!(
            choose(None, Some(v6), both).await.v6,
            Some(net("fd30::12/64"))
        );
        // Addresses no longer on the host: IPv4 detected again, IPv6 gone.
        let stale = [
            registered("172.30.0.11/24", false),
            registered("fd30::11/64", false),
        ];
        let moved = choose(None, None, stale).await;
        assert_eq!((moved.v4, moved.v6), (net("192.0.2.9/24"), None));
        // A new node: detected IPv4, no IPv6.
        let new = choose(None, None, [None, None]).await;
        assert_eq!((new.v4, new.v6), (net("192.0.2.9/24"), None));
    }

    #[test]
    fn ip6_takes_an_address_or_none() {
        assert_eq!(parse_ip6_choice("none"), Ok(Ip6Choice::None));
        assert_eq!(
            parse_ip6_choice("fd30::11/64"),
            Ok(Ip6Choice::Address(net("fd30::11/64")))
        );
        assert!(parse_ip6_choice("10.0.0.1/24").is_err());
    }
}
