//! Real packets between pods: `lab probe` (one pair) and `lab check` (the
//! whole matrix), plus the hidden `lab listen` / `lab connect` helpers that
//! run inside pod namespaces.
//!
//! A TCP or UDP probe starts a listener in the destination pod, then makes
//! one bounded attempt from the source: allowed if the listener's answer
//! comes back, denied if nothing does within the timeout. An ICMP probe is
//! one `ping`. Every wait is bounded; every listener is stopped by its PID.
//! With `--ipv6` the packets go between the pods' IPv6 addresses (a
//! dual-stack lab), and `--expect` asks `policy explain` about the IPv6
//! packet (ICMP becomes ICMPv6).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::state::{LabState, PodState, split_pod_id};

/// What a listener answers, so a probe knows it reached the real listener.
const ANSWER: &[u8] = b"tortie-probe-ok\n";

/// How long one probe attempt waits for an answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Probes run at once by `lab check`.
const CHECK_PARALLELISM: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeProto {
    Tcp,
    Udp,
    Icmp,
}

impl ProbeProto {
    fn as_str(self) -> &'static str {
        match self {
            ProbeProto::Tcp => "tcp",
            ProbeProto::Udp => "udp",
            ProbeProto::Icmp => "icmp",
        }
    }
}

/// What every probe of one command sends: protocol, port and family.
#[derive(Args, Debug, Clone, Copy)]
pub struct Packet {
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: ProbeProto,
    /// Destination port (tcp, udp)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Probe between the pods' IPv6 addresses (a lab made with `lab up
    /// --ipv6`)
    #[arg(long)]
    pub ipv6: bool,
}

impl Packet {
    fn describe(&self) -> String {
        let port = match self.proto {
            ProbeProto::Icmp => String::new(),
            _ => format!(" port {}", self.port),
        };
        let family = if self.ipv6 { "IPv6" } else { "IPv4" };
        format!("{}{port}, {family}", self.proto.as_str())
    }
}

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Lab name
    pub lab: String,
    /// Source pod NAMESPACE/POD
    #[arg(long)]
    pub from: String,
    /// Destination pod NAMESPACE/POD
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub packet: Packet,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Lab name
    pub lab: String,
    #[command(flatten)]
    pub packet: Packet,
    /// Also compute every verdict with `tortie policy explain` and fail if
    /// the dataplane disagrees
    #[arg(long)]
    pub expect: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    #[arg(long, value_enum)]
    pub proto: ProbeProto,
    #[arg(long)]
    pub port: u16,
    /// Listen on IPv6 (`[::]`) instead of IPv4
    #[arg(long)]
    pub ipv6: bool,
    /// Stop after this many seconds
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[arg(long, value_enum)]
    pub proto: ProbeProto,
    #[arg(long)]
    pub to: IpAddr,
    #[arg(long)]
    pub port: u16,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 1.5)]
    pub timeout: f64,
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
        bail!("{what} {s}: must be between 0 and 3600 seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// `lab listen`: answers every probe until the timeout.
pub fn listen(args: &ListenArgs) -> Result<ExitCode> {
    let deadline = Instant::now() + seconds(args.timeout, "--timeout")?;
    let addr = SocketAddr::new(unspecified(args.ipv6), args.port);
    match args.proto {
        ProbeProto::Tcp => {
            let listener =
                TcpListener::bind(addr).with_context(|| format!("listening on tcp {addr}"))?;
            listener.set_nonblocking(true)?;
            announce()?;
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(ANSWER);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e).context("accepting a probe"),
                }
            }
        }
        ProbeProto::Udp => {
            let socket =
                UdpSocket::bind(addr).with_context(|| format!("listening on udp {addr}"))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            announce()?;
            let mut buf = [0u8; 64];
            while Instant::now() < deadline {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(ANSWER, from);
                }
            }
        }
        ProbeProto::Icmp => bail!("icmp needs no listener"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The any-address of a family.
fn unspecified(ipv6: bool) -> IpAddr {
    if ipv6 {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    }
}

fn announce() -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "listening")?;
    out.flush()?;
    Ok(())
}

/// `lab connect`: exit 0 if the listener answered, 1 if not.
pub fn connect(args: &ConnectArgs) -> Result<ExitCode> {
    let timeout = seconds(args.timeout, "--timeout")?;
    let addr = SocketAddr::new(args.to, args.port);
    let answered = match args.proto {
        ProbeProto::Tcp => TcpStream::connect_timeout(&addr, timeout)
            .and_then(|mut s| {
                s.set_read_timeout(Some(timeout))?;
                let mut buf = Vec::new();
                s.read_to_end(&mut buf)?;
                Ok(buf == ANSWER)
            })
            .unwrap_or(false),
        ProbeProto::Udp => {
            let socket = UdpSocket::bind(SocketAddr::new(unspecified(args.to.is_ipv6()), 0))?;
            socket.set_read_timeout(Some(Duration::from_millis(200)))?;
            let deadline = Instant::now() + timeout;
            let mut buf = [0u8; 64];
            let mut got = false;
            while !got && Instant::now() < deadline {
                let _ = socket.send_to(b"probe", addr);
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    got = &buf[..n] == ANSWER;
                }
            }
            got
        }
        ProbeProto::Icmp => bail!("use ping for icmp"),
    };
    Ok(if answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NO_ANSWER)
    })
}

/// Exit code of `lab connect` when nothing answered (any other non-zero
/// code is a failure of the probe itself, not a verdict).
const NO_ANSWER: u8 = 3;
/// Exit code of `ping` when no reply came (2 and others are errors).
const PING_NO_REPLY: i32 = 1;

/// A listener running in a pod, stopped (by PID) when dropped.
struct Listener {
    child: Child,
}

impl Listener {
    fn start(pod: &PodState, packet: Packet, lifetime: Duration) -> Result<Listener> {
        let exe = std::env::current_exe().context("locating the tortie binary")?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &pod.netns])
            .arg(exe)
            .args([
                "lab",
                "listen",
                "--proto",
                packet.proto.as_str(),
                "--port",
                &packet.port.to_string(),
            ])
            .args(["--timeout", &lifetime.as_secs_f64().to_string()]);
        if packet.ipv6 {
            command.arg("--ipv6");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a probe listener")?;
        let stdout = child.stdout.take().context("listener stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut listener = Listener { child };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.trim() == "listening" => Ok(listener),
            _ => {
                let _ = listener.child.kill();
                let _ = listener.child.wait();
                let mut err = String::new();
                if let Some(mut stderr) = listener.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                bail!(
                    "the probe listener in {} did not start: {}",
                    pod.id(),
                    err.trim()
                )
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pod's first address of the packet's family.
fn address(pod: &PodState, ipv6: bool) -> Result<IpAddr> {
    pod.ips
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv6() == ipv6)
        .with_context(|| {
            if ipv6 {
                format!(
                    "pod {} has no IPv6 address (only pods of a lab made with `tortie lab up NAME --ipv6` have one)",
                    pod.id()
                )
            } else {
                format!("pod {} has no IPv4 address", pod.id())
            }
        })
}

/// One attempt from `src` to `dst` (whose listener is already running).
fn attempt(src: &PodState, dst: &PodState, packet: Packet) -> Result<bool> {
    let Packet { proto, port, ipv6 } = packet;
    let to = address(dst, ipv6)?.to_string();
    let (output, no_answer) = match proto {
        ProbeProto::Icmp => (
            Command::new("ip")
                .args([
                    "netns", "exec", &src.netns, "ping", "-c", "1", "-W", "1", &to,
                ])
                .output()
                .context("running ping")?,
            PING_NO_REPLY,
        ),
        _ => (
            Command::new("ip")
                .args(["netns", "exec", &src.netns])
                .arg(std::env::current_exe()?)
                .args([
                    "lab",
                    "connect",
                    "--proto",
                    proto.as_str(),
                    "--to",
                    &to,
                    "--port",
                    &port.to_string(),
                ])
                .args(["--timeout", &ATTEMPT_TIMEOUT.as_secs_f64().to_string()])
                .output()
                .context("running the probe")?,
            i32::from(NO_ANSWER),
        ),
    };
    match output.status.code() {
        Some(0) => Ok(true),
        Some(code) if code == no_answer => Ok(false),
        code => bail!(
            "the {} probe from {} could not run (exit {code:?}): {}{}",
            proto.as_str(),
            src.id(),
            String::from_utf8_lossy(&output.stderr).trim(),
            if proto == ProbeProto::Icmp {
                " (is the iputils-ping package installed?)"
            } else {
                ""
            }
        ),
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

pub fn probe(args: &ProbeArgs) -> Result<ExitCode> {
    let lab = LabState::load(&args.lab)?;
    let src = lab.pod(&join(split_pod_id(&args.from)?))?;
    let dst = lab.pod(&join(split_pod_id(&args.to)?))?;
    // Both ends have an address of the family before anything starts.
    address(src, args.packet.ipv6)?;
    address(dst, args.packet.ipv6)?;
    let _listener = match args.packet.proto {
        ProbeProto::Icmp => None,
        _ => Some(Listener::start(dst, args.packet, Duration::from_secs(10))?),
    };
    println!("{}", verdict(attempt(src, dst, args.packet)?));
    Ok(ExitCode::SUCCESS)
}

fn join((ns, pod): (String, String)) -> String {
    format!("{ns}/{pod}")
}

/// Probes every ordered pair of pods; `result[i][j]` is i → j.
pub fn matrix(lab: &LabState, packet: Packet) -> Result<Vec<Vec<Option<bool>>>> {
    let pods = &lab.pods;
    for pod in pods {
        address(pod, packet.ipv6)?;
    }
    let lifetime = Duration::from_secs(10 + pods.len() as u64 * pods.len() as u64);
    let _listeners: Vec<Listener> = match packet.proto {
        ProbeProto::Icmp => Vec::new(),
        _ => pods
            .iter()
            .map(|p| Listener::start(p, packet, lifetime))
            .collect::<Result<_>>()?,
    };
    let pairs: Vec<(usize, usize)> = (0..pods.len())
        .flat_map(|i| {
            (0..pods.len())
                .filter(move |j| *j != i)
                .map(move |j| (i, j))
        })
        .collect();
    let mut result = vec![vec![None; pods.len()]; pods.len()];
    for chunk in pairs.chunks(CHECK_PARALLELISM) {
        let outcomes: Vec<((usize, usize), Result<bool>)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, j)| s.spawn(move || ((i, j), attempt(&pods[i], &pods[j], packet))))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for ((i, j), outcome) in outcomes {
            result[i][j] = Some(outcome?);
        }
    }
    Ok(result)
}

pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let lab = LabState::load(&args.lab)?;
    if lab.pods.len() < 2 {
        bail!(
            "lab {} has {} pod(s); add at least two with tortie lab pod add",
            lab.name,
            lab.pods.len()
        );
    }
    let result = matrix(&lab, args.packet)?;
    let ids: Vec<String> = lab.pods.iter().map(PodState::id).collect();
    let width = ids.iter().map(String::len).max().unwrap_or(4).max(9) + 2;
    println!(
        "Connectivity ({}); rows are sources, columns destinations:",
        args.packet.describe()
    );
    print!("{:width$}", "FROM \\ TO");
    for id in &ids {
        print!("{id:width$}");
    }
    println!();
    for (i, row) in result.iter().enumerate() {
        print!("{:width$}", ids[i]);
        for cell in row {
            print!("{:width$}", cell.map(verdict).unwrap_or("-"));
        }
        println!();
    }
    if !args.expect {
        return Ok(ExitCode::SUCCESS);
    }
    let expected = explained(&lab, args.packet)?;
    let mut mismatches = 0;
    for (i, row) in result.iter().enumerate() {
        for (j, cell) in row.iter().enumerate() {
            let (Some(seen), Some((wanted, why))) = (cell, &expected[i][j]) else {
                continue;
            };
            if seen != wanted {
                mismatches += 1;
                println!(
                    "MISMATCH {} -> {}: the dataplane {} it, policy explain says {}:\n{why}",
                    ids[i],
                    ids[j],
                    verdict(*seen),
                    verdict(*wanted)
                );
            }
        }
    }
    if mismatches == 0 {
        println!(
            "The dataplane agrees with policy explain on all {} pairs.",
            ids.len() * (ids.len() - 1)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{mismatches} pair(s) disagree.");
        Ok(ExitCode::FAILURE)
    }
}

/// One cell of an explained matrix: allowed or not, and why. `None` on
/// the diagonal.
pub type ExplainedCell = Option<(bool, String)>;

/// What `policy explain` says of every ordered pair: verdict and reasoning.
pub fn explained(lab: &LabState, packet: Packet) -> Result<Vec<Vec<ExplainedCell>>> {
    use tortie_ctl::explain_cmd;
    let netns = lab.datastore_netns();
    let model = crate::store::with_client(&lab.datastore, netns.as_deref(), |client| async move {
        explain_cmd::load_model(&client).await
    })?;
    let (protocol, port) = match (packet.proto, packet.ipv6) {
        (ProbeProto::Tcp, _) => (6, Some(packet.port)),
        (ProbeProto::Udp, _) => (17, Some(packet.port)),
        (ProbeProto::Icmp, false) => (1, None),
        (ProbeProto::Icmp, true) => (58, None),
    };
    let family = explain_cmd::family(packet.ipv6);
    let pods = &lab.pods;
    let mut out = vec![vec![None; pods.len()]; pods.len()];
    for (i, src) in pods.iter().enumerate() {
        for (j, dst) in pods.iter().enumerate() {
            if i == j {
                continue;
            }
            let e = explain_cmd::explain_in(&model, &src.id(), &dst.id(), protocol, port, family)?;
            out[i][j] = Some((
                e.verdict == tortie_calc::explain::Verdict::Allow,
                e.to_string(),
            ));
        }
    }
    Ok(out)
}
