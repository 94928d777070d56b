//! The lab's network plumbing: namespaces, the data-centre bridge and the
//! links that put each node on it, built with iproute2.
//!
//! Layout: one namespace `tl-<lab>-dc` holds bridge `br0` (the data-centre
//! network, `.1` of the lab subnet); each node is a namespace `tl-<lab>-n<i>`
//! whose `eth0` is a veth into that bridge, with a default route via the
//! bridge (without one, proxy ARP never answers for 169.254.1.1); pods are
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

fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    in_netns(netns, "sysctl", &["-q", "-w", &format!("{key}={value}")]).map(drop)
}

/// The data-centre namespace with its bridge at `gateway/prefix`.
pub fn create_dc(netns: &str, gateway_cidr: &str) -> Result<()> {
    add_netns(netns)?;
    in_netns(netns, "ip", &["link", "add", "br0", "type", "bridge"])?;
    in_netns(netns, "ip", &["addr", "add", gateway_cidr, "dev", "br0"])?;
    in_netns(netns, "ip", &["link", "set", "br0", "up"])?;
    sysctl(netns, "net.ipv4.ip_forward", "1")
}

/// A node namespace whose `eth0` sits on the data-centre bridge.
pub fn create_node(
    dc: &str,
    netns: &str,
    port: &str,
    node_cidr: &str,
    gateway: &str,
) -> Result<()> {
    add_netns(netns)?;
    in_netns(
        dc,
        "ip",
        &[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )?;
    in_netns(dc, "ip", &["link", "set", port, "master", "br0", "up"])?;
    in_netns(netns, "ip", &["addr", "add", node_cidr, "dev", "eth0"])?;
    in_netns(netns, "ip", &["link", "set", "eth0", "up"])?;
    in_netns(netns, "ip", &["route", "add", "default", "via", gateway])?;
    sysctl(netns, "net.ipv4.ip_forward", "1")
}
