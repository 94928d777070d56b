//! The lab's network plumbing: namespaces, the data-centre bridge and the
//! links that put each node on it, built with iproute2.
//!
//! Layout: one namespace `tl-<lab>-dc` holds bridge `br0` (the data-centre
//! network, `.1` of the lab subnet, and `::1` of the IPv6 subnet in a
//! dual-stack lab); each node is a namespace `tl-<lab>-n<i>` whose `eth0`
//! is a veth into that bridge, with a default route per family via the
//! bridge (without one, proxy ARP never answers for 169.254.1.1) and
//! forwarding on for each family it has. IPv6 addresses are added without
//! duplicate address detection, so they are usable at once; pods are
//! namespaces `tl-<lab>-p<hash>` attached by the CNI plugin. The host's own
//! namespace is never touched. These are one-off set-up steps, so running
//! `ip` is fine here; the node daemon programs its dataplane over netlink.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// Runs a program, failing with a message that names it and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} (is it installed? iproute2 provides ip)"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program ARGS` inside namespace `netns`.
pub fn in_netns(netns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["netns", "exec", netns, program];
    all.extend_from_slice(args);
    ip(&all)
}

/// Every namespace whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let listing = ip(&["netns", "list"])?;
    Ok(listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/var/run/netns").join(name).exists()
}

pub fn add_netns(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    in_netns(name, "ip", &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a namespace; one that is already gone is fine.
pub fn del_netns(name: &str) -> Result<()> {
    if !netns_exists(name) {
        return Ok(());
    }
    ip(&["netns", "del", name]).map(drop)
}

/// An address of a namespace on the data-centre network and the gateway
/// of its family's default route (the bridge).
pub struct Attachment {
    /// Address with prefix, e.g. `172.30.0.11/24` or `fd30::11/64`.
    pub cidr: String,
    pub gateway: String,
}

fn is_ipv6(cidr: &str) -> bool {
    cidr.contains(':')
}

/// Adds `cidr` to `dev` inside `netns` and turns on forwarding for its
/// family there.
fn add_address(netns: &str, dev: &str, cidr: &str) -> Result<()> {
    let mut args = vec!["addr", "add", cidr, "dev", dev];
    let forwarding = if is_ipv6(cidr) {
        args.push("nodad");
        "net.ipv6.conf.all.forwarding=1"
    } else {
        "net.ipv4.ip_forward=1"
    };
    in_netns(netns, "ip", &args)?;
    in_netns(netns, "sysctl", &["-q", "-w", forwarding]).map(drop)
}

/// The data-centre namespace with its bridge at each of `gateway_cidrs`
/// (one per family), with MTU `mtu`.
pub fn create_dc(netns: &str, gateway_cidrs: &[String], mtu: u32) -> Result<()> {
    add_netns(netns)?;
    let mtu = mtu.to_string();
    in_netns(
        netns,
        "ip",
        &["link", "add", "br0", "mtu", &mtu, "type", "bridge"],
    )?;
    for cidr in gateway_cidrs {
        add_address(netns, "br0", cidr)?;
    }
    in_netns(netns, "ip", &["link", "set", "br0", "up"]).map(drop)
}

/// A node namespace whose `eth0` sits on the data-centre bridge with
/// `addresses` (one per family), both ends of the link with MTU `mtu`.
pub fn create_node(
    dc: &str,
    netns: &str,
    port: &str,
    addresses: &[Attachment],
    mtu: u32,
) -> Result<()> {
    add_netns(netns)?;
    let mtu = mtu.to_string();
    in_netns(
        dc,
        "ip",
        &[
            "link", "add", port, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu", &mtu,
            "netns", netns,
        ],
    )?;
    in_netns(dc, "ip", &["link", "set", port, "master", "br0", "up"])?;
    for a in addresses {
        add_address(netns, "eth0", &a.cidr)?;
    }
    in_netns(netns, "ip", &["link", "set", "eth0", "up"])?;
    for a in addresses {
        in_netns(netns, "ip", &["route", "add", "default", "via", &a.gateway])?;
    }
    Ok(())
}
