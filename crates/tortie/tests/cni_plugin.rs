//! The `tortie-cni` and `tortie-ipam` plugins end to end (root): the real
//! binary run by a runtime-like harness in namespaces it creates, against
//! a real embedded datastore — every CNI version, the kernel state and
//! WorkloadEndpoint an ADD leaves, idempotent DEL, CHECK drift reports,
//! GC, STATUS, the locked datastore, bad input rolled back completely, and
//! pods reaching each other.

mod cni_support;

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use cni_support::{Attach, Lab, Netns, Plugin, result_address};
use serde_json::{Value, json};
use tortie_model::endpoint::WorkloadEndpointSpec;
use tortie_model::policy::ProfileSpec;
use tortie_model::{Kind, Resource};

const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn lab_with_pools(dual: bool) -> Result<Lab> {
    let lab = Lab::new()?;
    lab.pools(&[("pool4", "10.77.0.0/16", 26)])?;
    if dual {
        lab.pools(&[("pool6", "fd77::/64", 122)])?;
    }
    Ok(lab)
}

fn dual_conf(lab: &Lab, version: &str) -> Value {
    lab.conf(
        version,
        json!({"mtu": 1400, "ipam": {"type": "tortie-ipam", "assign_ipv6": "true"}}),
    )
}

/// The expected host veth of a pod, computed independently (sha1sum).
fn k8s_veth(namespace: &str, pod: &str) -> Result<String> {
    let out = cni_support::run_checked(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("printf '%s' \"$1\" | sha1sum")
            .arg("sh")
            .arg(format!("{namespace}.{pod}")),
    )?;
    Ok(format!("cali{}", &out[..11]))
}

fn wep_spec(r: &Resource) -> Result<&WorkloadEndpointSpec> {
    r.spec::<WorkloadEndpointSpec>()
        .context("not a WorkloadEndpoint")
}

/// Asserts the lab holds no endpoint, no allocation, and no link in the
/// host namespace beyond `links`.
fn assert_clean(lab: &Lab, links: &[String]) -> Result<()> {
    let weps = lab.workload_endpoints()?;
    ensure!(weps.is_empty(), "endpoints left: {weps:?}");
    let allocations = lab.allocations()?;
    ensure!(allocations.is_empty(), "allocations left: {allocations:?}");
    let now = lab.host.link_names()?;
    ensure!(now == links, "host links changed: {links:?} -> {now:?}");
    Ok(())
}

#[test]
fn root_add_check_del_every_version_k8s_and_plain() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let baseline = lab.host.link_names()?;
    for (n, version) in VERSIONS.iter().enumerate() {
        for k8s in [true, false] {
            let ns = Netns::create("c")?;
            let cid = format!("cid{n}{k8s}0123456789");
            let attach = if k8s {
                Attach::k8s(&cid, &ns, "ns1", &format!("pod-{n}"))
            } else {
                Attach::new(&cid, &ns)
            };
            let conf = lab.conf(version, json!({}));
            let result = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
            ensure!(result["cniVersion"] == *version, "{version}: {result}");
            let v4 = if version.starts_with("0.1") || version.starts_with("0.2") {
                let ip = result["ip4"]["ip"].as_str().context("legacy ip4.ip")?;
                ensure!(ip.ends_with("/32"), "{version}: {result}");
                ensure!(
                    result["ip4"].get("gateway").is_none(),
                    "gateway cleared: {result}"
                );
                ensure!(result.get("interfaces").is_none(), "{result}");
                ip.trim_end_matches("/32").to_string()
            } else {
                let ip = &result["ips"][0];
                ensure!(
                    ip["address"].as_str().is_some_and(|a| a.ends_with("/32")),
                    "{result}"
                );
                ensure!(ip["interface"] == 1, "{result}");
                ensure!(ip.get("gateway").is_none(), "gateway cleared: {result}");
                let carries_version = matches!(*version, "0.3.0" | "0.3.1" | "0.4.0");
                ensure!(
                    ip.get("version").is_some() == carries_version,
                    "{version}: {result}"
                );
                ensure!(result["interfaces"][1]["sandbox"] == ns.path(), "{result}");
                ensure!(
                    result["interfaces"][1].get("mtu").is_some() == (*version == "1.1.0"),
                    "{version}: {result}"
                );
                ensure!(result["routes"][0]["gw"] == "169.254.1.1", "{result}");
                result_address(&result, true).context("an IPv4 address")?
            };
            let check = lab.run(
                Plugin::Cni,
                "CHECK",
                &attach,
                &Lab::with_prev(&conf, &result),
            )?;
            if matches!(*version, "0.4.0" | "1.0.0" | "1.1.0") {
                check.ok()?;
            } else {
                ensure!(check.error()?["code"] == 1, "{version}: {:?}", check);
            }
            let weps = lab.workload_endpoints()?;
            ensure!(weps.len() == 1, "{weps:?}");
            ensure!(wep_spec(&weps[0])?.ip_networks == [format!("{v4}/32")]);
            lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
            assert_clean(&lab, &baseline).with_context(|| format!("{version} k8s={k8s}"))?;
        }
    }
    Ok(())
}

#[test]
fn root_add_programs_kernel_and_endpoint() -> Result<()> {
    let lab = lab_with_pools(true)?;
    let ns = Netns::create("c")?;
    let mut attach = Attach::k8s("feedface0123", &ns, "prod", "web-7d9f");
    attach.args.push_str(";K8S_POD_SERVICEACCOUNT=api");
    let mut conf = dual_conf(&lab, "1.0.0");
    conf["runtimeConfig"] = json!({"labels": {"app": "web"}});
    let result = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    let veth = k8s_veth("prod", "web-7d9f")?;
    ensure!(result["interfaces"][0]["name"] == veth.as_str(), "{result}");
    let v4 = result_address(&result, true).context("v4")?;
    let v6 = result_address(&result, false).context("v6")?;

    // Host side.
    let host_link = &lab.host.ip_json(&["link", "show", &veth])?[0];
    ensure!(host_link["address"] == "ee:ee:ee:ee:ee:ee", "{host_link}");
    ensure!(host_link["mtu"] == 1400, "{host_link}");
    for (path, want) in [
        (format!("net/ipv4/conf/{veth}/proxy_arp"), "1"),
        (format!("net/ipv4/conf/{veth}/forwarding"), "1"),
        (format!("net/ipv4/conf/{veth}/route_localnet"), "1"),
        (format!("net/ipv4/neigh/{veth}/proxy_delay"), "0"),
        (format!("net/ipv6/conf/{veth}/accept_ra"), "0"),
        (format!("net/ipv6/conf/{veth}/proxy_ndp"), "1"),
        (format!("net/ipv6/conf/{veth}/forwarding"), "1"),
        (format!("net/ipv6/conf/{veth}/accept_dad"), "0"),
        (format!("net/ipv6/conf/{veth}/disable_ipv6"), "0"),
    ] {
        ensure!(lab.host.sysctl(&path)? == want, "{path}");
    }
    let host_routes = lab.host.routes(false)?;
    ensure!(
        host_routes
            .iter()
            .any(|r| r["dst"] == v4.as_str() && r["dev"] == veth.as_str() && r["scope"] == "link"),
        "{host_routes:?}"
    );
    let host_routes6 = lab.host.routes(true)?;
    ensure!(
        host_routes6
            .iter()
            .any(|r| r["dst"] == v6.as_str() && r["dev"] == veth.as_str()),
        "{host_routes6:?}"
    );

    // Container side.
    let eth0 = &ns.ip_json(&["addr", "show", "eth0"])?[0];
    ensure!(eth0["mtu"] == 1400, "{eth0}");
    let mac = eth0["address"].as_str().context("mac")?.to_string();
    ensure!(result["interfaces"][1]["mac"] == mac.as_str(), "{result}");
    let addrs: Vec<(String, u64)> = eth0["addr_info"]
        .as_array()
        .context("addr_info")?
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| {
            (
                a["local"].as_str().unwrap_or_default().to_string(),
                a["prefixlen"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    ensure!(
        addrs.contains(&(v4.clone(), 32)) && addrs.contains(&(v6.clone(), 128)),
        "{addrs:?}"
    );
    let routes = ns.routes(false)?;
    ensure!(
        routes
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["scope"] == "link" && r["dev"] == "eth0"),
        "{routes:?}"
    );
    ensure!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1"),
        "{routes:?}"
    );
    let routes6 = ns.routes(true)?;
    ensure!(
        routes6
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fe80::ecee:eeff:feee:eeee"),
        "{routes6:?}"
    );
    ensure!(ns.sysctl("net/ipv4/ip_forward")? == "0");

    // The endpoint.
    let weps = lab.workload_endpoints()?;
    ensure!(weps.len() == 1, "{weps:?}");
    let wep = &weps[0];
    ensure!(wep.metadata.name == "node--a-k8s-web--7d9f-eth0", "{wep:?}");
    ensure!(wep.metadata.namespace == "prod");
    let labels = &wep.metadata.labels;
    for (k, v) in [
        ("app", "web"),
        ("projectcalico.org/namespace", "prod"),
        ("projectcalico.org/orchestrator", "k8s"),
        ("projectcalico.org/serviceaccount", "api"),
    ] {
        ensure!(labels.get(k).map(String::as_str) == Some(v), "{labels:?}");
    }
    let spec = wep_spec(wep)?;
    ensure!(spec.container_id == "feedface0123");
    ensure!(spec.pod == "web-7d9f" && spec.node == "node-a" && spec.orchestrator == "k8s");
    ensure!(spec.endpoint == "eth0" && spec.interface_name == veth);
    ensure!(spec.mac == mac, "{} vs {mac}", spec.mac);
    ensure!(
        spec.ip_networks == [format!("{v4}/32"), format!("{v6}/128")],
        "{:?}",
        spec.ip_networks
    );
    ensure!(
        spec.profiles == ["kns.prod", "ksa.prod.api"],
        "{:?}",
        spec.profiles
    );

    // The allocation.
    let allocations = lab.allocations()?;
    ensure!(allocations.len() == 2, "{allocations:?}");
    for a in allocations.values() {
        ensure!(a.handle == "tnet.feedface0123", "{a:?}");
        ensure!(
            a.attrs.get("pod").map(String::as_str) == Some("web-7d9f"),
            "{a:?}"
        );
        ensure!(
            a.attrs.get("namespace").map(String::as_str) == Some("prod"),
            "{a:?}"
        );
        ensure!(a.block_affinity.as_deref() == Some("host:node-a"), "{a:?}");
    }

    lab.run(
        Plugin::Cni,
        "CHECK",
        &attach,
        &Lab::with_prev(&conf, &result),
    )?
    .ok()?;
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    ensure!(!lab.host.link_names()?.contains(&veth));
    ensure!(lab.allocations()?.is_empty());
    Ok(())
}

#[test]
fn root_container_forwarding_follows_the_setting() -> Result<()> {
    let lab = lab_with_pools(true)?;
    let ns = Netns::create("c")?;
    let mut conf = dual_conf(&lab, "1.0.0");
    conf["container_settings"] = json!({"allow_ip_forwarding": true});
    let attach = Attach::new("fwd0123", &ns);
    lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    ensure!(ns.sysctl("net/ipv4/ip_forward")? == "1");
    ensure!(ns.sysctl("net/ipv6/conf/all/forwarding")? == "1");
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    Ok(())
}

#[test]
fn root_pods_reach_each_other_dual_stack() -> Result<()> {
    let lab = lab_with_pools(true)?;
    let conf = dual_conf(&lab, "1.0.0");
    let a = Netns::create("a")?;
    let b = Netns::create("b")?;
    let ra = lab
        .run(
            Plugin::Cni,
            "ADD",
            &Attach::k8s("aaaa", &a, "ns", "a"),
            &conf,
        )?
        .ok()?;
    let rb = lab
        .run(Plugin::Cni, "ADD", &Attach::new("bbbb", &b), &conf)?
        .ok()?;
    for (from, to) in [(&a, &rb), (&b, &ra)] {
        from.ping_eventually(&result_address(to, true).context("v4")?, 3)?;
        from.ping_eventually(&result_address(to, false).context("v6")?, 3)?;
    }
    lab.run(
        Plugin::Cni,
        "DEL",
        &Attach::k8s("aaaa", &a, "ns", "a"),
        &conf,
    )?
    .ok()?;
    lab.run(Plugin::Cni, "DEL", &Attach::new("bbbb", &b), &conf)?
        .ok()?;
    Ok(())
}

#[test]
fn root_repeated_add_and_old_sandbox_del() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let conf = lab.conf("1.0.0", json!({}));
    let veth = k8s_veth("ns1", "web")?;
    let old_ns = Netns::create("old")?;
    let old = Attach::k8s("sandbox1", &old_ns, "ns1", "web");
    let first = lab.run(Plugin::Cni, "ADD", &old, &conf)?.ok()?;
    // The runtime retries ADD for the same sandbox: same address, one veth.
    let again = lab.run(Plugin::Cni, "ADD", &old, &conf)?.ok()?;
    ensure!(
        result_address(&first, true) == result_address(&again, true),
        "{first} {again}"
    );
    ensure!(lab.allocations()?.len() == 1);
    ensure!(
        lab.host
            .link_names()?
            .iter()
            .filter(|l| **l == veth)
            .count()
            == 1
    );

    // A new sandbox of the same pod takes the endpoint and the veth name.
    let new_ns = Netns::create("new")?;
    let new = Attach::k8s("sandbox2", &new_ns, "ns1", "web");
    let second = lab.run(Plugin::Cni, "ADD", &new, &conf)?.ok()?;
    let weps = lab.workload_endpoints()?;
    ensure!(
        weps.len() == 1 && wep_spec(&weps[0])?.container_id == "sandbox2",
        "{weps:?}"
    );
    ensure!(
        lab.allocations()?.len() == 2,
        "the old sandbox's DEL has not run yet"
    );

    // DEL of the old sandbox leaves the new endpoint and veth alone.
    lab.run(Plugin::Cni, "DEL", &old, &conf)?.ok()?;
    let weps = lab.workload_endpoints()?;
    ensure!(
        weps.len() == 1 && wep_spec(&weps[0])?.container_id == "sandbox2",
        "{weps:?}"
    );
    ensure!(
        lab.host.link_names()?.contains(&veth),
        "the new sandbox's veth survives"
    );
    let allocations = lab.allocations()?;
    ensure!(allocations.len() == 1, "{allocations:?}");
    ensure!(allocations.values().all(|a| a.handle == "tnet.sandbox2"));
    lab.run(Plugin::Cni, "CHECK", &new, &Lab::with_prev(&conf, &second))?
        .ok()?;
    let v4 = result_address(&second, true).context("v4")?;
    ensure!(
        lab.host
            .routes(false)?
            .iter()
            .any(|r| r["dst"] == v4.as_str() && r["dev"] == veth.as_str()),
        "the new pod's host route survives"
    );

    lab.run(Plugin::Cni, "DEL", &new, &conf)?.ok()?;
    ensure!(lab.workload_endpoints()?.is_empty());
    ensure!(lab.allocations()?.is_empty());
    ensure!(!lab.host.link_names()?.contains(&veth));
    Ok(())
}

#[test]
fn root_del_tolerates_missing_pieces() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let baseline = lab.host.link_names()?;
    let conf = lab.conf("1.0.0", json!({}));

    // The namespace is gone (its veth went with it).
    let ns = Netns::create("gone")?;
    let attach = Attach::k8s("c-netns-gone", &ns, "ns1", "p1");
    lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    drop(ns);
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    assert_clean(&lab, &baseline)?;

    // Endpoint and host veth removed behind our back.
    let ns = Netns::create("c")?;
    let attach = Attach::new("c-parts-gone", &ns);
    lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    let wep = lab.workload_endpoints()?.pop().context("an endpoint")?;
    lab.block_on(lab.client.delete(
        Kind::WorkloadEndpoint,
        &wep.metadata.namespace,
        &wep.metadata.name,
        None,
    ))?;
    lab.host
        .sh(&format!("ip link del {}", wep_spec(&wep)?.interface_name))?;
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    // Twice, and for a container never added, and with an empty netns.
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    lab.run(Plugin::Cni, "DEL", &Attach::new("never-added", &ns), &conf)?
        .ok()?;
    let mut no_netns = Attach::new("no-netns", &ns);
    no_netns.netns = String::new();
    lab.run(Plugin::Cni, "DEL", &no_netns, &conf)?.ok()?;
    lab.run(Plugin::Ipam, "DEL", &Attach::new("never-added", &ns), &conf)?
        .ok()?;
    assert_clean(&lab, &baseline)?;
    Ok(())
}

#[test]
fn root_check_names_every_drift() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let ns = Netns::create("c")?;
    let conf = lab.conf("1.0.0", json!({}));
    let attach = Attach::new("drift0123456", &ns);
    let result = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    let with_prev = Lab::with_prev(&conf, &result);
    lab.run(Plugin::Cni, "CHECK", &attach, &with_prev)?.ok()?;
    let veth = result["interfaces"][0]["name"]
        .as_str()
        .context("veth")?
        .to_string();
    let v4 = result_address(&result, true).context("v4")?;

    ns.sh("ip route del default")?;
    lab.host.sh(&format!(
        "ip route del {v4}/32 && ip link set {veth} address ee:ee:ee:00:00:01"
    ))?;
    let mut wep = lab.workload_endpoints()?.pop().context("wep")?;
    if let Some(spec) = wep.spec_mut::<WorkloadEndpointSpec>() {
        spec.mac = "02:00:00:00:00:09".to_string();
    }
    lab.block_on(lab.client.update(wep))?;

    let err = lab
        .run(Plugin::Cni, "CHECK", &attach, &with_prev)?
        .error()?;
    let msg = err["msg"].as_str().context("msg")?;
    for needle in [
        "4 problem(s)",
        "container route 0.0.0.0/0 via 169.254.1.1 dev eth0 is missing",
        &format!("host route {v4}/32 dev {veth} scope link is missing"),
        &format!("host interface {veth} has MAC ee:ee:ee:00:00:01"),
        "has mac \"02:00:00:00:00:09\"",
    ] {
        ensure!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    // The allocation is gone too.
    lab.run(Plugin::Ipam, "DEL", &attach, &conf)?.ok()?;
    let err = lab
        .run(Plugin::Cni, "CHECK", &attach, &with_prev)?
        .error()?;
    ensure!(
        err["msg"]
            .as_str()
            .is_some_and(|m| m.contains("IPAM handle tnet.drift0123456 does not exist")),
        "{err}"
    );
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    Ok(())
}

#[test]
fn root_plain_cni_profile_and_existing_endpoint() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let ns = Netns::create("c")?;
    let conf = lab.conf("1.0.0", json!({}));
    let attach = Attach::new("plain0123456", &ns);
    let first = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    ensure!(
        first["interfaces"][0]["name"] == "caliplain012345",
        "{first}"
    );
    let profile = lab.block_on(lab.client.get(Kind::Profile, "", "tnet"))?;
    let spec = profile.spec::<ProfileSpec>().context("profile")?;
    ensure!(spec.labels_to_apply.contains_key("tnet"), "{spec:?}");
    ensure!(spec.ingress[0].source.selector == "has(tnet)", "{spec:?}");
    let again = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    ensure!(result_address(&first, true) == result_address(&again, true));
    ensure!(
        first["interfaces"][1]["mac"] == again["interfaces"][1]["mac"],
        "{again}"
    );
    ensure!(lab.allocations()?.len() == 1);
    let weps = lab.workload_endpoints()?;
    ensure!(weps.len() == 1 && wep_spec(&weps[0])?.profiles == ["tnet"]);
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    Ok(())
}

#[test]
fn root_locked_datastore_refuses_add_and_del() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let ns = Netns::create("c")?;
    let conf = lab.conf("1.1.0", json!({}));
    let attach = Attach::new("locked012345", &ns);
    let baseline = lab.host.link_names()?;
    lab.block_on(lab.client.set_datastore_ready(false))?;
    for command in ["ADD", "DEL"] {
        let err = lab.run(Plugin::Cni, command, &attach, &conf)?.error()?;
        ensure!(err["code"] == 11, "{command}: {err}");
        ensure!(
            err["msg"]
                .as_str()
                .is_some_and(|m| m.contains("try again later")),
            "{err}"
        );
    }
    let err = lab.run(Plugin::Ipam, "ADD", &attach, &conf)?.error()?;
    ensure!(err["code"] == 11, "{err}");
    let err = lab.run(Plugin::Cni, "STATUS", &attach, &conf)?.error()?;
    ensure!(err["code"] == 50, "{err}");
    assert_clean(&lab, &baseline)?;
    lab.block_on(lab.client.set_datastore_ready(true))?;
    lab.run(Plugin::Cni, "STATUS", &attach, &conf)?.ok()?;
    let log_file = lab.dir.path().join("logs/cni.log");
    let mut logged = conf.clone();
    logged["log_file_path"] = json!(log_file);
    let result = lab.run(Plugin::Cni, "ADD", &attach, &logged)?.ok()?;
    let log = std::fs::read_to_string(&log_file)?;
    ensure!(log.contains("workload networked"), "{log}");

    // A DEL that cannot reach the datastore touches nothing.
    let mut missing = conf.clone();
    missing["datastore"] = json!("embedded:/nonexistent/tortie.db");
    let err = lab.run(Plugin::Cni, "DEL", &attach, &missing)?.error()?;
    ensure!(err["code"] == 11, "{err}");
    ensure!(lab.workload_endpoints()?.len() == 1);
    ensure!(lab.allocations()?.len() == 1);
    let veth = result["interfaces"][0]["name"].as_str().context("veth")?;
    ensure!(lab.host.link_names()?.iter().any(|l| l == veth));
    lab.run(
        Plugin::Cni,
        "CHECK",
        &attach,
        &Lab::with_prev(&conf, &result),
    )?
    .ok()?;
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    assert_clean(&lab, &baseline)?;
    Ok(())
}

#[test]
fn root_bad_input_leaves_nothing_behind() -> Result<()> {
    let lab = Lab::new()?;
    lab.pools(&[("tiny", "10.88.0.0/30", 30)])?;
    let baseline = lab.host.link_names()?;
    let ns = Netns::create("c")?;
    let conf = lab.conf("1.0.0", json!({}));
    let attach = Attach::k8s("bad0123456", &ns, "ns1", "p");
    let run_raw = |stdin: &[u8], env: &[(&str, &str)]| -> Result<Value> {
        let mut cmd = lab.plugin_command(&lab.host, Plugin::Cni, "ADD", &attach);
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let out = cni_support::run_bounded(&mut cmd, stdin, cni_support::PLUGIN_TIMEOUT)?;
        ensure!(out.status == Some(1), "{out:?}");
        Ok(serde_json::from_str(&out.stdout)?)
    };
    let expect = |err: Value, code: u64, needle: &str| -> Result<()> {
        ensure!(err["code"] == code, "expected code {code}: {err}");
        ensure!(
            err["msg"].as_str().is_some_and(|m| m.contains(needle)),
            "{needle:?} not in {err}"
        );
        assert_clean(&lab, &baseline)
    };

    expect(run_raw(b"{\"name\": ", &[])?, 6, "failed to decode")?;
    expect(run_raw(br#"{"name": "n", "mtu": "x"}"#, &[])?, 6, "mtu")?;
    expect(
        run_raw(
            br#"{"cniVersion": "9.9.9", "name": "n", "type": "tortie-cni"}"#,
            &[],
        )?,
        1,
        "9.9.9",
    )?;
    let conf_bytes = serde_json::to_vec(&conf)?;
    expect(
        run_raw(&conf_bytes, &[("CNI_IFNAME", "")])?,
        4,
        "CNI_IFNAME",
    )?;
    expect(
        run_raw(&conf_bytes, &[("CNI_ARGS", "garbage")])?,
        4,
        "invalid pair",
    )?;
    expect(
        run_raw(
            &conf_bytes,
            &[("CNI_NETNS", "/var/run/netns/tcni-does-not-exist")],
        )?,
        3,
        "does not exist",
    )?;
    let mut unreachable = conf.clone();
    unreachable["datastore"] = json!("etcd:http://127.0.0.1:9");
    expect(
        lab.run(Plugin::Cni, "ADD", &attach, &unreachable)?
            .error()?,
        11,
        "127.0.0.1:9",
    )?;
    let mut bad_label = conf.clone();
    bad_label["runtimeConfig"] = json!({"labels": {"bad key!": "x"}});
    expect(
        lab.run(Plugin::Cni, "ADD", &attach, &bad_label)?.error()?,
        7,
        "bad key!",
    )?;

    // A host route to the requested address through another interface.
    lab.host.sh("ip route add 10.88.0.1/32 dev up0")?;
    let mut specific = attach.clone();
    specific.args.push_str(";IP=10.88.0.1");
    expect(
        lab.run(Plugin::Cni, "ADD", &specific, &conf)?.error()?,
        999,
        "already exists for an interface other than",
    )?;
    lab.host.sh("ip route del 10.88.0.1/32 dev up0")?;

    // Pool exhausted: the /30 block holds four addresses.
    let mut held = Vec::new();
    for i in 0..4 {
        let c = Netns::create("fill")?;
        let a = Attach::new(&format!("fill{i}"), &c);
        lab.run(Plugin::Cni, "ADD", &a, &conf)?.ok()?;
        held.push((c, a));
    }
    let before = lab.host.link_names()?;
    let err = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.error()?;
    ensure!(err["code"] == 999, "{err}");
    ensure!(
        err["msg"].as_str().is_some_and(|m| m.starts_with(
            "failed to request IPv4 addresses: Assigned 0 out of 1 requested IPv4 addresses"
        )),
        "{err}"
    );
    ensure!(lab.host.link_names()? == before);
    ensure!(lab.allocations()?.len() == 4);
    for (_, a) in &held {
        lab.run(Plugin::Cni, "DEL", a, &conf)?.ok()?;
    }
    drop(held);
    assert_clean(&lab, &baseline)?;
    Ok(())
}

#[test]
fn root_ipam_plugin_alone() -> Result<()> {
    let lab = lab_with_pools(true)?;
    let ns = Netns::create("c")?;
    let attach = Attach::new("ipamonly01", &ns);
    let mut conf = lab.conf(
        "1.0.0",
        json!({"type": "ptp", "ipam": {"type": "tortie-ipam", "assign_ipv6": "true",
               "routes": [{"dst": "10.96.0.0/12"}]}}),
    );
    let result = lab.run(Plugin::Ipam, "ADD", &attach, &conf)?.ok()?;
    let ips = result["ips"].as_array().context("ips")?;
    ensure!(ips.len() == 2, "{result}");
    ensure!(
        ips[0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.77.") && a.ends_with("/26")),
        "{result}"
    );
    ensure!(ips[0]["gateway"] == "169.254.1.1", "{result}");
    ensure!(
        ips[1]["address"]
            .as_str()
            .is_some_and(|a| a.ends_with("/122")),
        "{result}"
    );
    ensure!(ips[1]["gateway"] == "fe80::ecee:eeff:feee:eeee", "{result}");
    ensure!(
        result["routes"] == json!([{"dst": "10.96.0.0/12"}]),
        "{result}"
    );
    ensure!(result.get("interfaces").is_none(), "{result}");
    lab.run(
        Plugin::Ipam,
        "CHECK",
        &attach,
        &Lab::with_prev(&conf, &result),
    )?
    .ok()?;
    let mut wrong = result.clone();
    wrong["ips"][0]["address"] = json!("10.77.99.99/26");
    let err = lab
        .run(
            Plugin::Ipam,
            "CHECK",
            &attach,
            &Lab::with_prev(&conf, &wrong),
        )?
        .error()?;
    ensure!(
        err["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not hold 10.77.99.99")),
        "{err}"
    );
    // A repeated ADD returns the same addresses.
    let again = lab.run(Plugin::Ipam, "ADD", &attach, &conf)?.ok()?;
    ensure!(again["ips"] == result["ips"], "{again}");
    lab.run(Plugin::Ipam, "DEL", &attach, &conf)?.ok()?;
    lab.run(Plugin::Ipam, "DEL", &attach, &conf)?.ok()?;
    ensure!(lab.allocations()?.is_empty());

    // A specific address, as /32.
    let mut specific = attach.clone();
    specific.args = "IP=10.77.200.7".to_string();
    conf["ipam"] = json!({"type": "tortie-ipam"});
    let result = lab.run(Plugin::Ipam, "ADD", &specific, &conf)?.ok()?;
    ensure!(result["ips"][0]["address"] == "10.77.200.7/32", "{result}");
    lab.run(Plugin::Ipam, "DEL", &specific, &conf)?.ok()?;

    // Legacy result shape.
    let legacy = lab.conf("0.2.0", json!({"ipam": {"type": "tortie-ipam"}}));
    let result = lab.run(Plugin::Ipam, "ADD", &attach, &legacy)?.ok()?;
    ensure!(result["ip4"]["gateway"] == "169.254.1.1", "{result}");
    lab.run(Plugin::Ipam, "DEL", &attach, &legacy)?.ok()?;
    ensure!(lab.allocations()?.is_empty());
    Ok(())
}

#[test]
fn root_dual_stack_is_all_or_nothing() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let ns = Netns::create("c")?;
    let attach = Attach::new("dual0123", &ns);
    let conf = dual_conf(&lab, "1.0.0");
    let baseline = lab.host.link_names()?;
    // No IPv6 pool at all: IPAM's own error, and the IPv4 address is not kept.
    for plugin in [Plugin::Ipam, Plugin::Cni] {
        let err = lab.run(plugin, "ADD", &attach, &conf)?.error()?;
        ensure!(
            err["msg"]
                .as_str()
                .is_some_and(|m| m.contains("no configured Calico pools for node node-a")),
            "{err}"
        );
        assert_clean(&lab, &baseline)?;
    }
    // An exhausted IPv6 pool: Calico's shortfall text.
    lab.pools(&[("pool6", "fd77::/126", 126)])?;
    let v6_only = lab.conf(
        "1.0.0",
        json!({"ipam": {"type": "tortie-ipam", "assign_ipv4": "false", "assign_ipv6": "true"}}),
    );
    for i in 0..4 {
        lab.run(
            Plugin::Ipam,
            "ADD",
            &Attach::new(&format!("fill{i}"), &ns),
            &v6_only,
        )?
        .ok()?;
    }
    for plugin in [Plugin::Ipam, Plugin::Cni] {
        let err = lab.run(plugin, "ADD", &attach, &conf)?.error()?;
        ensure!(
            err["msg"].as_str().is_some_and(|m| m.starts_with(
                "failed to request IPv6 addresses: Assigned 0 out of 1 requested IPv6 addresses"
            )),
            "{err}"
        );
        let allocations = lab.allocations()?;
        ensure!(allocations.len() == 4, "only the fillers: {allocations:?}");
        ensure!(allocations.keys().all(|ip| ip.is_ipv6()), "{allocations:?}");
        ensure!(lab.host.link_names()? == baseline);
    }
    Ok(())
}

#[test]
fn root_gc_and_status() -> Result<()> {
    let lab = lab_with_pools(false)?;
    let conf = lab.conf("1.1.0", json!({}));
    let mut keep = Vec::new();
    for cid in ["keep1", "drop1", "drop2"] {
        let ns = Netns::create("c")?;
        let attach = Attach::k8s(cid, &ns, "ns1", cid);
        lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
        keep.push((ns, attach));
    }
    // An allocation of another network must survive this network's GC.
    let other = Attach::new("othernet", &keep[0].0);
    let mut other_conf = conf.clone();
    other_conf["name"] = json!("tnet.x");
    lab.run(Plugin::Ipam, "ADD", &other, &other_conf)?.ok()?;

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep1", "ifname": "eth0"}]);
    let none = Attach {
        container_id: String::new(),
        netns: String::new(),
        ifname: String::new(),
        args: String::new(),
    };
    lab.run(Plugin::Cni, "GC", &none, &gc)?.ok()?;
    let weps = lab.workload_endpoints()?;
    ensure!(
        weps.len() == 1 && wep_spec(&weps[0])?.container_id == "keep1",
        "{weps:?}"
    );
    let handles: BTreeSet<String> = lab
        .allocations()?
        .values()
        .map(|a| a.handle.clone())
        .collect();
    ensure!(
        handles == BTreeSet::from(["tnet.keep1".to_string(), "tnet.x.othernet".to_string()]),
        "{handles:?}"
    );
    // GC needs 1.1.0 and the attachment list.
    let err = lab
        .run(Plugin::Cni, "GC", &none, &lab.conf("1.0.0", json!({})))?
        .error()?;
    ensure!(err["code"] == 1, "{err}");
    let err = lab.run(Plugin::Cni, "GC", &none, &conf)?.error()?;
    ensure!(err["code"] == 7, "{err}");

    lab.run(Plugin::Cni, "STATUS", &none, &conf)?.ok()?;
    lab.run(Plugin::Ipam, "STATUS", &none, &conf)?.ok()?;
    let mut v6 = conf.clone();
    v6["ipam"] = json!({"type": "tortie-ipam", "assign_ipv4": "false", "assign_ipv6": "true"});
    let err = lab.run(Plugin::Cni, "STATUS", &none, &v6)?.error()?;
    ensure!(err["code"] == 50, "{err}");
    ensure!(
        err["msg"].as_str().is_some_and(|m| m.contains("IPv6")),
        "{err}"
    );
    let mut missing = conf.clone();
    missing["datastore"] = json!("embedded:/nonexistent/tortie.db");
    let err = lab.run(Plugin::Cni, "STATUS", &none, &missing)?.error()?;
    ensure!(err["code"] == 50, "{err}");

    lab.run(Plugin::Ipam, "DEL", &other, &other_conf)?.ok()?;
    for (_, attach) in &keep {
        lab.run(Plugin::Cni, "DEL", attach, &conf)?.ok()?;
    }
    ensure!(lab.allocations()?.is_empty());
    Ok(())
}

#[test]
fn root_delegated_host_local_ipam() -> Result<()> {
    let lab = Lab::new()?;
    let ns = Netns::create("c")?;
    let data_dir = lab.dir.path().join("host-local");
    let conf = lab.conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": data_dir,
                        "routes": [{"dst": "10.96.0.0/12"}]}}),
    );
    let attach = Attach::new("hostlocal1", &ns);
    let result = lab.run(Plugin::Cni, "ADD", &attach, &conf)?.ok()?;
    let v4 = result_address(&result, true).context("v4")?;
    ensure!(v4.starts_with("10.99.0."), "{result}");
    ensure!(
        result["ips"][0]["address"] == format!("{v4}/32").as_str(),
        "{result}"
    );
    // host-local's routes replace the default route.
    let routes = ns.routes(false)?;
    ensure!(
        routes
            .iter()
            .any(|r| r["dst"] == "10.96.0.0/12" && r["gateway"] == "169.254.1.1"),
        "{routes:?}"
    );
    ensure!(!routes.iter().any(|r| r["dst"] == "default"), "{routes:?}");
    lab.run(
        Plugin::Cni,
        "CHECK",
        &attach,
        &Lab::with_prev(&conf, &result),
    )?
    .ok()?;
    let reserved = data_dir.join("tnet").join(&v4);
    ensure!(reserved.exists(), "host-local recorded {reserved:?}");
    lab.run(Plugin::Cni, "DEL", &attach, &conf)?.ok()?;
    ensure!(!reserved.exists(), "host-local released the address");
    ensure!(lab.workload_endpoints()?.is_empty());
    Ok(())
}
