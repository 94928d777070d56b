//! The conformance suite on the etcd backend, each case against its own
//! fresh one-member etcd (cases that count revisions need a store nobody
//! else writes), plus what only the etcd backend has: the connection
//! settings (TLS, authentication), bounded failure when nothing listens,
//! and the status report.
//!
//! Needs the `etcd` binary (Debian package etcd-server); `openssl` and
//! `etcdctl` (etcd-client) for the TLS and authentication case.

#[macro_use]
mod conformance;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tortie_datastore::{
    BackendKind, Datastore, DatastoreError, DatastoreSpec, EtcdConfig, EtcdTimeouts, KeyValue,
};
use tortie_testkit::{EtcdCluster, EtcdOptions, ProxyMode, TcpProxy, TlsFiles};

use conformance::Target;

fn etcd_target() -> Result<(EtcdCluster, Target)> {
    let cluster = EtcdCluster::start(1)?;
    let target = Target {
        spec: cluster.spec(),
        root: "/conformance/".to_owned(),
    };
    Ok((cluster, target))
}

conformance_tests!(etcd_target);

/// Timeouts short enough for tests that wait for failures.
fn short_timeouts() -> EtcdTimeouts {
    EtcdTimeouts {
        dial: Duration::from_millis(500),
        request: Duration::from_millis(500),
        overall: Duration::from_secs(2),
        ..EtcdTimeouts::default()
    }
}

async fn connect(config: EtcdConfig) -> Result<Arc<dyn Datastore>> {
    Ok(tortie_datastore::connect(&DatastoreSpec::Etcd(config)).await?)
}

#[tokio::test]
async fn nothing_listening_is_unavailable_within_the_deadline() -> Result<()> {
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut config = EtcdConfig::new([endpoint.clone()]);
    config.timeouts = short_timeouts();
    let started = Instant::now();
    let store = connect(config).await?;
    ensure!(
        started.elapsed() < Duration::from_millis(200),
        "connect does no I/O, took {:?}",
        started.elapsed()
    );
    for call in ["get", "watch", "revision"] {
        let started = Instant::now();
        let result = match call {
            "get" => store.get("/k").await.map(drop),
            "watch" => store.watch("/k", 1).await.map(drop),
            _ => store.revision().await.map(drop),
        };
        let elapsed = started.elapsed();
        let err = result.err().context("a call succeeded without etcd")?;
        let message = err.to_string();
        ensure!(
            matches!(err, DatastoreError::Unavailable { .. }),
            "{call}: {err:?}"
        );
        ensure!(
            message.starts_with(&format!("cannot reach etcd at {endpoint}: ")),
            "{call}: {message}"
        );
        ensure!(
            elapsed <= Duration::from_millis(2_500),
            "{call} took {elapsed:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn status_reports_the_member() -> Result<()> {
    let cluster = EtcdCluster::start(1)?;
    let store = tortie_datastore::connect(&cluster.spec()).await?;
    let revision = store.put("/status/k", b"v".to_vec()).await?;
    let status = store.status().await?;
    assert_eq!(status.kind, BackendKind::Etcd);
    assert_eq!(status.location, cluster.spec().to_string());
    assert_eq!(status.revision, revision);
    assert_eq!(status.compacted_revision, Some(0));
    ensure!(
        status.server_version.starts_with("etcd 3."),
        "{}",
        status.server_version
    );
    assert_eq!(status.members.len(), 1);
    let member = &status.members[0];
    ensure!(member.healthy && member.leader, "{member:?}");
    assert_eq!(member.endpoint, cluster.endpoint(0));

    for _ in 0..5 {
        store.put("/status/k", b"w".to_vec()).await?;
    }
    store.compact(revision + 2).await?;
    assert_eq!(store.status().await?.compacted_revision, Some(revision + 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_dead_members_with_their_error() -> Result<()> {
    let cluster = EtcdCluster::start(3)?;
    let mut config = cluster.config();
    config.timeouts = short_timeouts();
    let store = connect(config).await?;
    let leader = cluster.leader()?;
    let victim = (leader + 1) % 3;
    cluster.kill(victim)?;
    let status = store.status().await?;
    assert_eq!(status.members.len(), 3);
    for index in 0..3 {
        let expected_endpoint = cluster.endpoint(index);
        let member = status
            .members
            .iter()
            .find(|member| member.endpoint == expected_endpoint)
            .with_context(|| format!("member {index} missing from {status:?}"))?;
        if index == victim {
            ensure!(!member.healthy && member.error.is_some(), "{member:?}");
        } else {
            ensure!(member.healthy, "{member:?}");
            assert_eq!(member.leader, index == leader, "{member:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_password_authentication() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tls = TlsFiles::generate(dir.path())?;
    let mut options = EtcdOptions::new(1);
    options.tls = Some(tls.clone());
    let cluster = EtcdCluster::start_with(options)?;
    cluster.enable_auth("root-secret")?;

    // Right settings: the CA, the client certificate, root's password.
    let mut good = cluster.config();
    good.username = Some("root".to_owned());
    good.password = Some("root-secret".to_owned());
    good.timeouts = short_timeouts();
    let store = connect(good.clone()).await?;
    let revision = store.create("/tls/k", b"v".to_vec()).await?;
    assert_eq!(
        store.get("/tls/k").await?.map(|kv| kv.mod_revision),
        Some(revision)
    );
    let mut watch = store.watch("/tls/", revision).await?;
    assert_eq!(
        conformance::next_event(&mut watch).await?.mod_revision,
        revision
    );
    ensure!(store.status().await?.members[0].healthy);

    // A wrong password is a configuration error, reported at once.
    let mut wrong_password = good.clone();
    wrong_password.password = Some("guess".to_owned());
    let err = expect_failure(wrong_password).await?;
    ensure!(
        matches!(err, DatastoreError::InvalidConfig(_))
            && err.to_string().contains("authentication failed"),
        "{err:?}"
    );

    // No credentials: etcd refuses the request.
    let mut anonymous = good.clone();
    anonymous.username = None;
    anonymous.password = None;
    let err = expect_failure(anonymous).await?;
    ensure!(
        !matches!(err, DatastoreError::Unavailable { .. }),
        "{err:?}"
    );

    // A CA that did not sign the server's certificate.
    let mut wrong_ca = good.clone();
    wrong_ca.ca_file = Some(tls.other_ca_cert.clone());
    let err = expect_failure(wrong_ca).await?;
    let message = err.to_string();
    ensure!(
        message.starts_with(&format!("cannot reach etcd at {}", cluster.endpoint(0))),
        "{message}"
    );
    ensure!(message.contains("certificate"), "{message}");

    // No client certificate, which the server requires.
    let mut no_client_cert = good.clone();
    no_client_cert.cert_file = None;
    no_client_cert.key_file = None;
    expect_failure(no_client_cert).await?;

    // A file that does not exist is reported by connect, naming the file.
    let mut missing = good.clone();
    missing.ca_file = Some(dir.path().join("nope.pem"));
    match tortie_datastore::connect(&DatastoreSpec::Etcd(missing)).await {
        Err(DatastoreError::InvalidConfig(message)) => {
            ensure!(message.contains("nope.pem"), "{message}");
        }
        Err(other) => bail!("expected InvalidConfig, got {other:?}"),
        Ok(_) => bail!("connected with a missing CA file"),
    }

    // Plain http to a TLS port fails too.
    let mut plain = EtcdConfig::new([cluster.endpoint(0).replace("https://", "http://")]);
    plain.timeouts = short_timeouts();
    expect_failure(plain).await?;
    Ok(())
}

/// A get that must fail; returns the error after checking it came in time.
async fn expect_failure(config: EtcdConfig) -> Result<DatastoreError> {
    let deadline = config.timeouts.overall + Duration::from_millis(500);
    let started = Instant::now();
    let store = connect(config).await?;
    let result = store.get("/tls/k").await;
    let elapsed = started.elapsed();
    ensure!(elapsed <= deadline, "failing took {elapsed:?}");
    match result {
        Ok(found) => bail!("a get succeeded: {found:?}"),
        Err(err) => {
            println!("failed as expected after {elapsed:?}: {err}");
            Ok(err)
        }
    }
}

/// Runs `write` through a proxy that lets the request reach etcd but
/// swallows the answer, so the client cannot know whether it applied.
/// Once `applied` sees the write in the store, `meanwhile` lets another
/// client act, then the proxy cuts the connection and forwards again, and
/// the write's own result is returned.
async fn with_lost_answer<T: Send + 'static>(
    proxy: &TcpProxy,
    direct: &Arc<dyn Datastore>,
    write: impl Future<Output = Result<T, DatastoreError>> + Send + 'static,
    applied: impl Fn(Option<KeyValue>) -> bool,
    meanwhile: impl AsyncFnOnce(&dyn Datastore) -> Result<()>,
    key: &str,
) -> Result<Result<T, DatastoreError>> {
    proxy.set_mode(ProxyMode::SwallowResponses);
    let write = tokio::spawn(write);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !applied(direct.get(key).await?) {
        ensure!(Instant::now() < deadline, "the write never reached etcd");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    meanwhile(direct.as_ref()).await?;
    // Let the client's attempt time out on the silent connection first.
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.set_mode(ProxyMode::Forward);
    proxy.reset_connections();
    Ok(tokio::time::timeout(Duration::from_secs(20), write)
        .await
        .context("the write never returned")??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_answer_was_lost_are_resolved_from_history() -> Result<()> {
    let cluster = EtcdCluster::start(1)?;
    let direct = connect(cluster.config()).await?;
    let proxy = TcpProxy::start(cluster.client_address(0))?;
    let mut config = EtcdConfig::new([proxy.url()]);
    config.timeouts = EtcdTimeouts {
        dial: Duration::from_millis(300),
        request: Duration::from_millis(300),
        overall: Duration::from_secs(20),
        ..EtcdTimeouts::default()
    };
    let proxied = connect(config).await?;

    // An update that applied, then another client updated on top of it
    // before we could look: still our success, at our revision.
    let key = "/lost/update".to_owned();
    let first = direct.create(&key, b"0".to_vec()).await?;
    proxied.get(&key).await?;
    let store = Arc::clone(&proxied);
    let task_key = key.clone();
    let result = with_lost_answer(
        &proxy,
        &direct,
        async move { store.update(&task_key, b"1 ours".to_vec(), first).await },
        |kv| kv.is_some_and(|kv| kv.value == b"1 ours"),
        async |direct: &dyn Datastore| {
            let ours = direct.get("/lost/update").await?.context("key")?;
            direct
                .update("/lost/update", b"2 theirs".to_vec(), ours.mod_revision)
                .await?;
            Ok(())
        },
        &key,
    )
    .await?;
    let theirs = direct.get(&key).await?.context("key")?;
    assert_eq!(
        result?,
        theirs.mod_revision - 1,
        "our update, reported at its revision"
    );

    // An update that never reached etcd (black-holed) while another
    // client updated the key: a conflict. (Had the other client written
    // the very same bytes, the write would count as ours: callers that
    // must tell them apart write unique bytes.)
    let key = "/lost/conflict".to_owned();
    let first = direct.create(&key, b"0".to_vec()).await?;
    let store = Arc::clone(&proxied);
    let task_key = key.clone();
    proxy.set_mode(ProxyMode::Blackhole);
    let write = tokio::spawn(async move { store.update(&task_key, b"ours".to_vec(), first).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let winner = direct.update(&key, b"theirs".to_vec(), first).await?;
    proxy.set_mode(ProxyMode::Forward);
    proxy.reset_connections();
    match tokio::time::timeout(Duration::from_secs(20), write).await?? {
        Err(DatastoreError::Conflict { actual, .. }) => assert_eq!(actual, winner),
        other => bail!("expected a conflict, got {other:?}"),
    }

    // A create that applied, then was updated by another client.
    let key = "/lost/create".to_owned();
    let store = Arc::clone(&proxied);
    let task_key = key.clone();
    let result = with_lost_answer(
        &proxy,
        &direct,
        async move { store.create(&task_key, b"created by us".to_vec()).await },
        |kv| kv.is_some(),
        async |direct: &dyn Datastore| {
            let ours = direct.get("/lost/create").await?.context("key")?;
            direct
                .update("/lost/create", b"changed".to_vec(), ours.mod_revision)
                .await?;
            Ok(())
        },
        &key,
    )
    .await?;
    let now = direct.get(&key).await?.context("key")?;
    assert_eq!(result?, now.create_revision);

    // A conditional delete that applied, then the key was created again.
    let key = "/lost/delete".to_owned();
    let first = direct.create(&key, b"doomed".to_vec()).await?;
    let store = Arc::clone(&proxied);
    let task_key = key.clone();
    let result = with_lost_answer(
        &proxy,
        &direct,
        async move { store.delete(&task_key, Some(first)).await },
        |kv| kv.is_none(),
        async |direct: &dyn Datastore| {
            direct.create("/lost/delete", b"reborn".to_vec()).await?;
            Ok(())
        },
        &key,
    )
    .await?;
    let deleted = result?;
    assert_eq!(
        (deleted.value, deleted.mod_revision),
        (b"doomed".to_vec(), first)
    );

    // A put that applied: not applied twice.
    let key = "/lost/put".to_owned();
    let before = direct.revision().await?;
    let store = Arc::clone(&proxied);
    let task_key = key.clone();
    let result = with_lost_answer(
        &proxy,
        &direct,
        async move { store.put(&task_key, b"put once".to_vec()).await },
        |kv| kv.is_some(),
        async |_: &dyn Datastore| Ok(()),
        &key,
    )
    .await?;
    assert_eq!(result?, before + 1);
    assert_eq!(
        direct.revision().await?,
        before + 1,
        "the put was applied twice"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_are_paged_at_one_revision() -> Result<()> {
    let cluster = EtcdCluster::start(1)?;
    let store = connect(cluster.config()).await?;
    // 2,500 keys: three pages of 1,000. Neighbours outside the prefix.
    let mut writes = Vec::new();
    for i in 0..2_500 {
        let store = Arc::clone(&store);
        writes.push(tokio::spawn(async move {
            store
                .put(&format!("/paged/{i:05}"), i.to_string().into_bytes())
                .await
        }));
    }
    for write in writes {
        write.await??;
    }
    store.put("/paged", b"not under /paged/".to_vec()).await?;
    store.put("/paged0", b"after the prefix".to_vec()).await?;

    // Keys keep arriving while the list pages through.
    let writer_store = Arc::clone(&store);
    let writer = tokio::spawn(async move {
        let mut created = Vec::new();
        for i in 0..300 {
            let key = format!("/paged/{:05}-late", i * 8);
            created.push((key.clone(), writer_store.put(&key, b"late".to_vec()).await?));
        }
        anyhow::Ok(created)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let list = store.list("/paged/").await?;
    let created = writer.await??;

    let keys: Vec<&str> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "keys are in byte order");
    ensure!(
        list.items.iter().all(|kv| kv.mod_revision <= list.revision),
        "an item is newer than the list's revision"
    );
    let late_before = created
        .iter()
        .filter(|(_, revision)| *revision <= list.revision)
        .count();
    assert_eq!(
        list.items.len(),
        2_500 + late_before,
        "exactly the keys that existed at revision {}",
        list.revision
    );
    println!(
        "listed {} keys at revision {} while {} more arrived",
        list.items.len(),
        list.revision,
        created.len() - late_before
    );

    // The empty prefix lists everything, the neighbours included.
    let everything = store.list("").await?;
    assert_eq!(everything.items.len(), 2_500 + created.len() + 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_too_large_to_decode_are_asked_again_smaller() -> Result<()> {
    let cluster = EtcdCluster::start(1)?;
    let store = connect(cluster.config()).await?;
    // 70 values of 1 MiB: 70 MiB in one page, over the 64 MiB a response
    // may have, so the page is halved until it fits.
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    for i in 0..70 {
        store.put(&format!("/big/{i:02}"), value.clone()).await?;
    }
    let list = store.list("/big/").await?;
    assert_eq!(list.items.len(), 70);
    ensure!(list.items.iter().all(|kv| kv.value == value));
    assert_eq!(list.items[69].key, "/big/69");
    Ok(())
}
