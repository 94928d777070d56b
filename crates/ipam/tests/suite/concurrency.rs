//! Concurrency: many tokio tasks in one process, then several OS processes
//! (this test binary re-executed with a role in the environment), all
//! allocating and releasing on one store — on one node and on three. And a
//! crash test: processes SIGKILLed at arbitrary points of their
//! allocate/release loops must leave no address owned twice, and `check`
//! must find every leak they left, which a report-driven release clears.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tortie_client::TORTIE_VERSION;
use tortie_datastore::DatastoreSpec;
use tortie_ipam::{Ipam, ReleaseRequest};
use tortie_model::Kind;
use tortie_model::endpoint::WorkloadEndpointSpec;
use tortie_testkit::{TestChildren, print_child_result};

use super::fixture::*;

/// The test that runs a child role (see `ipam_suite!`).
const CHILD_TEST_NAME: &str = "ipam_child_process";
const ROLE: &str = "TORTIE_IPAM_CHILD_ROLE";
const SPEC: &str = "TORTIE_IPAM_CHILD_SPEC";
const HOST: &str = "TORTIE_IPAM_CHILD_HOST";
const NAME: &str = "TORTIE_IPAM_CHILD_NAME";
const COUNT: &str = "TORTIE_IPAM_CHILD_COUNT";
const RESULT: &str = "IPAM-CHILD-RESULT ";
const CHILD_DEADLINE: Duration = Duration::from_secs(240);

const HOSTS: [&str; 3] = ["node-a", "node-b", "node-c"];

async fn setup_cluster(t: &Target, pool_cidr: &str, block_size: i64) -> Result<()> {
    let client = t.client().await?;
    client.ensure_initialized().await?;
    for h in HOSTS {
        add_node(&client, h, &[]).await?;
    }
    add_pool(&client, "pool", pool_cidr, |s| {
        s.block_size = Some(block_size)
    })
    .await
}

/// One worker's life: allocate `count` addresses one by one (each under
/// its own handle), release every third by handle as it goes, then top up.
/// Returns what it holds at the end.
async fn worker(
    ipam: &Ipam,
    host: &str,
    name: &str,
    count: usize,
) -> Result<BTreeMap<IpAddr, String>> {
    let mut held = BTreeMap::new();
    for i in 0..count {
        let handle = format!("{name}-{i}");
        let mut req = request(host, &handle, 1, 0);
        // The crash case leaves hosts with many tiny blocks.
        req.max_blocks_per_host = Some(100_000);
        let r = ipam.auto_assign(req).await?;
        ensure!(r.ipv4.ips.len() == 1, "{handle} got {r:?}");
        held.insert(r.ipv4.ips[0].addr(), handle.clone());
        if i % 3 == 2 {
            let victim = format!("{name}-{}", i - 1);
            ipam.release_by_handle(&victim).await?;
            held.retain(|_, h| *h != victim);
        }
    }
    Ok(held)
}

/// Checks the store against what the workers say they hold.
async fn verify(
    t: &Target,
    held: &BTreeMap<IpAddr, String>,
    pool: &str,
    hosts_of: impl Fn(&str) -> &str,
) -> Result<()> {
    let store = t.store().await?;
    let stored = all_allocations(store.as_ref()).await?;
    ensure!(
        &stored == held,
        "the store holds {} allocations, the workers {}",
        stored.len(),
        held.len()
    );
    let pool = net(pool);
    ensure!(held.keys().all(|a| pool.contains(a)));
    // Every block is owned by the node whose workers allocated from it,
    // under a confirmed affinity of that node.
    for b in all_blocks(store.as_ref()).await? {
        let owner = b.owner().context("every block has an owner")?;
        ensure!(
            raw_affinity(store.as_ref(), owner.name(), &b.cidr()).await?
                == Some(tortie_ipam::affinity::AffinityState::Confirmed),
            "block {} without a confirmed affinity of {owner}",
            b.cidr()
        );
        for (ordinal, _) in b.occupied() {
            let ip = tortie_ipam::cidr::address_at(&b.cidr(), ordinal);
            if let Some(handle) = held.get(&ip) {
                ensure!(
                    hosts_of(handle) == owner.name(),
                    "{ip} of {handle} in {owner}'s block"
                );
            }
        }
    }
    let (findings, _) = t.ipam().await?.check().await?;
    ensure!(findings.problem_count() == 0, "{findings:#?}");
    Ok(())
}

async fn tasks_case(t: &Target, hosts: &[&'static str]) -> Result<()> {
    setup_cluster(t, "10.20.0.0/20", 28).await?;
    let ipam = t.ipam().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..24 {
        let ipam = ipam.clone();
        let host = hosts[task % hosts.len()];
        tasks.spawn(async move { worker(&ipam, host, &format!("{host}.t{task}"), 15).await });
    }
    let mut held = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        for (ip, handle) in joined?? {
            if let Some(other) = held.insert(ip, handle.clone()) {
                bail!("{ip} handed to {other} and to {handle}");
            }
        }
    }
    verify(t, &held, "10.20.0.0/20", |h| {
        h.split('.').next().unwrap_or_default()
    })
    .await
}

pub async fn concurrent_tasks_on_one_node(t: &Target) -> Result<()> {
    tasks_case(t, &HOSTS[..1]).await
}

pub async fn concurrent_tasks_on_three_nodes(t: &Target) -> Result<()> {
    tasks_case(t, &HOSTS).await
}

pub async fn concurrent_processes_on_one_and_three_nodes(t: &Target) -> Result<()> {
    setup_cluster(t, "10.30.0.0/20", 28).await?;
    let mut children = TestChildren::new(CHILD_TEST_NAME, RESULT);
    for p in 0..6 {
        // Two processes share node-a with each other and with the three-node mix.
        let host = HOSTS[p % 3];
        let name = format!("{host}.p{p}");
        children.spawn(
            &name,
            &[
                (ROLE, "allocate".into()),
                (SPEC, t.spec.to_string()),
                (HOST, host.into()),
                (NAME, name.clone()),
                (COUNT, "30".into()),
            ],
        )?;
    }
    let mut held = BTreeMap::new();
    for report in children.wait_all(CHILD_DEADLINE).await? {
        let list: Vec<(IpAddr, String)> = serde_json::from_str(&report.result)
            .with_context(|| format!("result of {}", report.name))?;
        for (ip, handle) in list {
            if let Some(other) = held.insert(ip, handle.clone()) {
                bail!("{ip} handed to {other} and to {handle}");
            }
        }
    }
    ensure!(held.len() == 6 * 20, "{}", held.len());
    verify(t, &held, "10.30.0.0/20", |h| {
        h.split('.').next().unwrap_or_default()
    })
    .await
}

pub async fn sigkilled_processes_leave_only_leaks_that_check_finds(t: &Target) -> Result<()> {
    // Blocks of two addresses: claims happen all the time, so kills land
    // in the middle of claims too, not only in assignments and releases.
    setup_cluster(t, "10.40.0.0/21", 31).await?;
    let store = t.store().await?;
    let ipam = t.ipam().await?;
    for round in 0..3 {
        let before = all_allocations(store.as_ref()).await?.len();
        let mut children = TestChildren::new(CHILD_TEST_NAME, RESULT);
        for p in 0..6 {
            let host = HOSTS[p % 3];
            let name = format!("{host}.k{round}{p}");
            children.spawn(
                &name,
                &[
                    (ROLE, "churn".into()),
                    (SPEC, t.spec.to_string()),
                    (HOST, host.into()),
                    (NAME, name.clone()),
                ],
            )?;
        }
        // Let them get going, then kill every one of them mid-flight, at a
        // different moment each round.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the children made no progress"
            );
            if all_allocations(store.as_ref()).await?.len() >= before + 24 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 + 71 * round)).await;
        let killed = children.kill_all();
        ensure!(killed == 6, "only {killed} children were still running");
        verify_after_kill(t, &ipam, round).await?;
    }
    // Life goes on: new processes on the same hosts finish or discard the
    // interrupted claims and allocate normally.
    let mut children = TestChildren::new(CHILD_TEST_NAME, RESULT);
    for (p, host) in HOSTS.iter().enumerate() {
        let name = format!("{host}.r{p}");
        children.spawn(
            &name,
            &[
                (ROLE, "allocate".into()),
                (SPEC, t.spec.to_string()),
                (HOST, (*host).into()),
                (NAME, name.clone()),
                (COUNT, "9".into()),
            ],
        )?;
    }
    children.wait_all(CHILD_DEADLINE).await?;
    let (findings, _) = ipam.check().await?;
    ensure!(
        findings.leaked.is_empty() && findings.leaked_handles.is_empty(),
        "{findings:#?}"
    );
    ensure!(findings.invalid_blocks.is_empty() && findings.missing_handles.is_empty());
    // Whatever remains is bookkeeping a crash left between two writes:
    // over-counting handles and affinities not revisited yet.
    for p in findings
        .handle_mismatches
        .iter()
        .chain(&findings.affinity_problems)
    {
        println!("remaining: {p}");
        ensure!(
            p.contains("records") || p.contains("not confirmed") || p.contains("has no block"),
            "unexpected problem: {p}"
        );
    }
    all_allocations(store.as_ref()).await?;
    Ok(())
}

/// After a kill: no address owned twice, check finds exactly the leaks,
/// and a report-driven release (handles and sequence numbers) clears them.
async fn verify_after_kill(t: &Target, ipam: &Ipam, round: u64) -> Result<()> {
    let store = t.store().await?;
    // 1. The blocks decode and list each address once; endpoints never
    //    share an address; each endpoint's address is allocated to that
    //    endpoint's handle.
    let allocations = all_allocations(store.as_ref()).await?;
    let client = t.client().await?;
    let mut wep_ips = BTreeMap::new();
    for wep in client.list(Kind::WorkloadEndpoint, None).await?.items {
        let spec = wep.spec::<WorkloadEndpointSpec>().context("a WEP")?;
        for n in &spec.ip_networks {
            let ip: IpAddr = n.parse::<ipnet::IpNet>()?.addr();
            let handle = format!("k8s-pod-network.{}", spec.pod);
            ensure!(
                wep_ips.insert(ip, handle.clone()).is_none(),
                "{ip} in two endpoints"
            );
            ensure!(
                allocations.get(&ip) == Some(&handle),
                "{ip} of {handle} is allocated to {:?}",
                allocations.get(&ip)
            );
        }
    }
    // 2. Check sees only the kinds of damage a crash can do, and every leak.
    let (findings, snapshot) = ipam.check().await?;
    ensure!(
        findings.invalid_blocks.is_empty(),
        "{:?}",
        findings.invalid_blocks
    );
    ensure!(
        findings.multiple_owners.is_empty()
            && findings.not_allocated.is_empty()
            && findings.not_in_pool.is_empty(),
        "{findings:#?}"
    );
    ensure!(
        findings.missing_handles.is_empty(),
        "{:?}",
        findings.missing_handles
    );
    let leaked: BTreeSet<IpAddr> = findings.leaked.iter().map(|(ip, _)| *ip).collect();
    let expected: BTreeSet<IpAddr> = allocations
        .keys()
        .filter(|ip| !wep_ips.contains_key(ip))
        .copied()
        .collect();
    ensure!(
        leaked == expected,
        "check found {leaked:?}, expected {expected:?}"
    );
    println!(
        "round {round} after SIGKILL: {} allocations, {} endpoints, {} leaked addresses, {} leaked handles, {} handle mismatches, {} affinity problems",
        allocations.len(),
        wep_ips.len(),
        leaked.len(),
        findings.leaked_handles.len(),
        findings.handle_mismatches.len(),
        findings.affinity_problems.len()
    );
    for p in &findings.affinity_problems {
        println!("  {p}");
    }
    // 3. Release what the report lists, with its handles and sequence numbers.
    let report = findings.report(TORTIE_VERSION, &snapshot.cluster);
    let requests: Vec<ReleaseRequest> = report
        .allocations
        .values()
        .flatten()
        .filter(|a| !a.in_use && !a.cooling_down)
        .map(|a| ReleaseRequest {
            address: a.ip.parse().expect("report address"),
            handle: Some(a.handle.clone()).filter(|h| !h.is_empty()),
            sequence: a.sequence_number,
        })
        .collect();
    let out = ipam.release_ips(&requests).await?;
    ensure!(
        out.failed.is_empty() && out.released.len() == requests.len(),
        "{out:?}"
    );
    for h in &report.leaked_handles {
        ipam.delete_handle_if_unchanged(&h.id, h.revision.parse()?)
            .await?;
    }
    let (findings, _) = ipam.check().await?;
    ensure!(
        findings.leaked.is_empty() && findings.leaked_handles.is_empty(),
        "{findings:#?}"
    );
    Ok(())
}

/// Runs a child role if this process was started as a child.
pub fn child_entry() -> Result<()> {
    let Ok(role) = std::env::var(ROLE) else {
        return Ok(());
    };
    let spec: DatastoreSpec = env(SPEC)?.parse()?;
    // The CNI plugin runs on a current_thread runtime: so do the children.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the child runtime")?;
    let result = runtime.block_on(async {
        let target = Target { spec };
        let ipam = target.ipam().await?;
        let host = env(HOST)?;
        let name = env(NAME)?;
        match role.as_str() {
            "allocate" => {
                let count: usize = env(COUNT)?.parse()?;
                let held = worker(&ipam, &host, &name, count).await?;
                let list: Vec<(IpAddr, String)> = held.into_iter().collect();
                Ok(serde_json::to_string(&list)?)
            }
            "churn" => churn(&target, &ipam, &host, &name).await,
            other => bail!("unknown child role {other:?}"),
        }
    })?;
    print_child_result(RESULT, &result);
    Ok(())
}

/// Allocates, creates an endpoint, and now and then deletes an endpoint
/// and releases its handle (the CNI DEL order), until killed.
async fn churn(target: &Target, ipam: &Ipam, host: &str, name: &str) -> Result<String> {
    let client = target.client().await?;
    let mut live: Vec<(String, String)> = Vec::new();
    for i in 0.. {
        let pod = format!("{}-{i}", name.replace('.', "-"));
        let handle = format!("k8s-pod-network.{pod}");
        let mut req = request(host, &handle, 1, 0);
        req.attrs = pod_attrs("default", &pod, host);
        req.max_blocks_per_host = Some(100_000);
        let r = ipam.auto_assign(req).await?;
        let ips: Vec<IpAddr> = r.ipv4.ips.iter().map(|n| n.addr()).collect();
        ensure!(ips.len() == 1, "{r:?}");
        add_wep(&client, "default", &pod, host, &ips).await?;
        live.push((pod, handle));
        if i % 4 == 3 {
            let (pod, handle) = live.remove(0);
            let wep = tortie_model::endpoint::workload_endpoint_name(host, "k8s", &pod, "eth0");
            client
                .delete(Kind::WorkloadEndpoint, "default", &wep, None)
                .await?;
            ipam.release_by_handle(&handle).await?;
        }
    }
    Ok(String::new())
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("child variable {name}"))
}
