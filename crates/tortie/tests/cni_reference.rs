//! tortie's plugins together with the reference CNI plugins (root): the
//! reference `ptp` plugin using `tortie-ipam` for its addresses, and
//! `tortie-cni` chained with `portmap`, `bandwidth` and `tuning` the way
//! libcni runs a configuration list.

mod cni_support;

use std::process::Child;

use anyhow::{Context, Result, ensure};
use cni_support::{Attach, Chain, Lab, Netns, Plugin, result_address};
use serde_json::json;

/// A process we started, killed by its PID when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn root_ptp_with_tortie_ipam() -> Result<()> {
    let lab = Lab::new()?;
    lab.pools(&[("pool4", "10.77.0.0/16", 26)])?;
    let baseline = lab.host.link_names()?;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "ptpnet",
        "type": "ptp",
        "datastore": lab.datastore,
        "nodename": "node-a",
        "ipam_lock_file": lab.lock_file,
        "ipam": {"type": "tortie-ipam"},
    });
    let a = Netns::create("a")?;
    let b = Netns::create("b")?;
    let attach_a = Attach::new("ptp-a", &a);
    let attach_b = Attach::new("ptp-b", &b);
    let ra = lab
        .run(Plugin::Reference("ptp"), "ADD", &attach_a, &conf)?
        .ok()?;
    let rb = lab
        .run(Plugin::Reference("ptp"), "ADD", &attach_b, &conf)?
        .ok()?;
    for r in [&ra, &rb] {
        let ip = r["ips"].as_array().and_then(|l| l.first()).context("ips")?;
        ensure!(
            ip["address"].as_str().is_some_and(|a| a.ends_with("/26")),
            "{r}"
        );
        ensure!(ip["gateway"] == "169.254.1.1", "{r}");
    }
    a.ping_eventually(&result_address(&rb, true).context("b")?, 3)?;
    b.ping_eventually(&result_address(&ra, true).context("a")?, 3)?;
    lab.run(
        Plugin::Reference("ptp"),
        "CHECK",
        &attach_a,
        &Lab::with_prev(&conf, &ra),
    )?
    .ok()?;
    lab.run(Plugin::Reference("ptp"), "DEL", &attach_a, &conf)?
        .ok()?;
    lab.run(Plugin::Reference("ptp"), "DEL", &attach_b, &conf)?
        .ok()?;
    ensure!(
        lab.allocations()?.is_empty(),
        "ptp's DEL released through tortie-ipam"
    );
    ensure!(lab.host.link_names()? == baseline);
    Ok(())
}

#[test]
fn root_chain_with_portmap_bandwidth_and_tuning() -> Result<()> {
    let lab = Lab::new()?;
    lab.pools(&[("pool4", "10.77.0.0/16", 26)])?;
    // bandwidth speaks 0.3.0 and later; CHECK exists from 0.4.0.
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        chain_scenario(&lab, version).with_context(|| format!("cniVersion {version}"))?;
    }
    Ok(())
}

fn chain_scenario(lab: &Lab, version: &str) -> Result<()> {
    let baseline = lab.host.link_names()?;
    let mut first = lab.conf(version, json!({}));
    if let Some(o) = first.as_object_mut() {
        o.remove("name");
        o.remove("cniVersion");
    }
    let chain = Chain {
        conflist: json!({
            "cniVersion": version,
            "name": "tnet",
            "plugins": [
                first,
                {"type": "portmap", "capabilities": {"portMappings": true},
                 "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}},
                {"type": "bandwidth", "capabilities": {"bandwidth": true},
                 "runtimeConfig": {"bandwidth": {"ingressRate": 100000000, "ingressBurst": 1000000,
                                                 "egressRate": 100000000, "egressBurst": 1000000}}},
                {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}},
            ],
        }),
    };
    let ns = Netns::create("c")?;
    let attach = Attach::new(&format!("chain{}", version.replace('.', "")), &ns);
    let result = chain.add(lab, &attach)?;
    ensure!(result["cniVersion"] == version, "{result}");
    let veth = result["interfaces"][0]["name"]
        .as_str()
        .context("veth")?
        .to_string();

    // Each plugin did its part.
    let nat = lab.host.sh("iptables -t nat -S")?;
    ensure!(nat.contains("--dport 8080"), "{nat}");
    let qdisc = lab.host.sh(&format!("tc qdisc show dev {veth}"))?;
    ensure!(qdisc.contains("tbf"), "{qdisc}");
    let links = lab.host.link_names()?;
    ensure!(
        links.iter().any(|l| l.starts_with("bwp")),
        "bandwidth's ifb: {links:?}"
    );
    ensure!(ns.sysctl("net/core/somaxconn")? == "512");

    // The published port answers from the host.
    let www = lab.dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "hello-through-portmap\n")?;
    ns.sh("ip link set lo up")?;
    let _server = Started(
        ns.command("busybox")
            .args(["httpd", "-f", "-p", "80", "-h"])
            .arg(&www)
            .spawn()?,
    );
    let mut body = String::new();
    for _ in 0..50 {
        let out = cni_support::run_bounded(
            lab.host
                .command("curl")
                .args(["-s", "-m", "2", "http://192.0.2.1:8080/index.html"]),
            b"",
            std::time::Duration::from_secs(10),
        )?;
        body = out.stdout;
        if body.contains("hello-through-portmap") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ensure!(body.contains("hello-through-portmap"), "curl got {body:?}");

    // Debian's portmap 1.1.1 fails CHECK on IPv4-only results (upstream bug).
    if version != "0.3.1" {
        chain.check(lab, &attach, &result, &["portmap"])?;
    }
    chain.del(lab, &attach, Some(&result))?;
    ensure!(lab.host.link_names()? == baseline, "veth and ifb removed");
    let nat = lab.host.sh("iptables -t nat -S")?;
    ensure!(!nat.contains("--dport 8080"), "{nat}");
    ensure!(lab.workload_endpoints()?.is_empty());
    ensure!(lab.allocations()?.is_empty());
    Ok(())
}
