//! Single-process cases: key-value semantics, revisions, compare-and-swap,
//! prefix lists, watches and compaction.

use anyhow::{Context, Result, ensure};
use tortie_datastore::{DatastoreError, EventKind, KeyValue, WatchEvent};

use super::{Target, expect_compacted, expect_quiet, next_event};

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

pub async fn crud(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("crud/a");
    assert_eq!(store.get(&key).await?, None);

    let created = store.create(&key, bytes("v1")).await?;
    assert_eq!(
        store.get(&key).await?,
        Some(KeyValue {
            key: key.clone(),
            value: bytes("v1"),
            create_revision: created,
            mod_revision: created,
            version: 1,
        })
    );

    let updated = store.update(&key, bytes("v2"), created).await?;
    let put = store.put(&key, bytes("v3")).await?;
    let current = store.get(&key).await?.context("key after put")?;
    assert_eq!(
        current,
        KeyValue {
            key: key.clone(),
            value: bytes("v3"),
            create_revision: created,
            mod_revision: put,
            version: 3,
        }
    );
    assert!(created < updated && updated < put);

    let deleted = store.delete(&key, None).await?;
    assert_eq!(deleted, current);
    assert_eq!(store.get(&key).await?, None);

    // A key can be created again; it starts a new life.
    let recreated = store.create(&key, bytes("again")).await?;
    let again = store.get(&key).await?.context("recreated key")?;
    assert_eq!((again.create_revision, again.version), (recreated, 1));

    // Put creates absent keys too.
    let other = t.key("crud/b");
    let put_created = store.put(&other, bytes("p")).await?;
    let kv = store.get(&other).await?.context("put-created key")?;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (put_created, put_created, 1)
    );
    Ok(())
}

pub async fn revisions_increment_by_one(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("rev/k");
    let start = store.revision().await?;
    ensure!(start >= 1, "revisions start at 1, got {start}");

    assert_eq!(store.create(&key, bytes("1")).await?, start + 1);
    assert_eq!(store.update(&key, bytes("2"), start + 1).await?, start + 2);
    assert_eq!(store.put(&key, bytes("3")).await?, start + 3);
    assert_eq!(store.put(&t.key("rev/other"), bytes("x")).await?, start + 4);
    let deleted = store.delete(&key, Some(start + 3)).await?;
    assert_eq!(deleted.mod_revision, start + 3);
    assert_eq!(store.revision().await?, start + 5);

    // Rejected writes consume no revision.
    let other = t.key("rev/other");
    assert!(store.create(&other, bytes("y")).await.is_err());
    assert!(store.update(&other, bytes("y"), start).await.is_err());
    assert!(store.update(&key, bytes("y"), start + 3).await.is_err());
    assert!(store.delete(&key, None).await.is_err());
    assert!(store.delete(&other, Some(start)).await.is_err());
    assert_eq!(store.revision().await?, start + 5);

    let list = store.list(&t.key("rev/")).await?;
    assert_eq!(list.revision, start + 5);
    Ok(())
}

pub async fn create_requires_absence(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("create/k");
    let created = store.create(&key, bytes("first")).await?;
    match store.create(&key, bytes("second")).await {
        Err(DatastoreError::AlreadyExists { key: reported }) => assert_eq!(reported, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let kv = store.get(&key).await?.context("key")?;
    assert_eq!((kv.value, kv.mod_revision), (bytes("first"), created));
    Ok(())
}

pub async fn compare_and_swap_conflicts_report_actual_revision(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("cas/k");
    let first = store.create(&key, bytes("1")).await?;
    let second = store.update(&key, bytes("2"), first).await?;

    match store.update(&key, bytes("stale"), first).await {
        Err(DatastoreError::Conflict {
            key: reported,
            expected,
            actual,
        }) => assert_eq!((reported, expected, actual), (key.clone(), first, second)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store.delete(&key, Some(first)).await {
        Err(DatastoreError::Conflict {
            key: reported,
            expected,
            actual,
        }) => assert_eq!((reported, expected, actual), (key.clone(), first, second)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let kv = store.get(&key).await?.context("key")?;
    assert_eq!((kv.value, kv.mod_revision), (bytes("2"), second));
    Ok(())
}

pub async fn missing_keys_are_not_found(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("missing/k");
    // Expected revision 0 matters for etcd: a bare `mod_revision == 0`
    // compare holds for an absent key and would create it.
    for result in [
        store.update(&key, bytes("v"), 1).await.map(|_| ()),
        store.update(&key, bytes("v"), 0).await.map(|_| ()),
        store.delete(&key, None).await.map(|_| ()),
        store.delete(&key, Some(1)).await.map(|_| ()),
        store.delete(&key, Some(0)).await.map(|_| ()),
    ] {
        match result {
            Err(DatastoreError::NotFound { key: reported }) => assert_eq!(reported, key),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(store.get(&key).await?, None);
    Ok(())
}

pub async fn delete_with_and_without_precondition(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let guarded = t.key("del/guarded");
    let revision = store.create(&guarded, bytes("g")).await?;
    let deleted = store.delete(&guarded, Some(revision)).await?;
    assert_eq!(
        (deleted.key.as_str(), deleted.value, deleted.mod_revision),
        (guarded.as_str(), bytes("g"), revision)
    );
    assert_eq!(store.get(&guarded).await?, None);

    let free = t.key("del/free");
    store.create(&free, bytes("f1")).await?;
    let last = store.put(&free, bytes("f2")).await?;
    let deleted = store.delete(&free, None).await?;
    assert_eq!(
        (deleted.value, deleted.mod_revision, deleted.version),
        (bytes("f2"), last, 2)
    );
    assert_eq!(store.get(&free).await?, None);
    Ok(())
}

pub async fn list_by_prefix_is_sorted_and_bounded(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let suffixes = [
        "a/b",
        "a/b/",
        "a/b/1",
        "a/b/2",
        "a/bc",
        "a/b/x/deep",
        "a/B",
        "a/b/\u{e9}",
        "a/b/~",
        "b",
    ];
    let mut written = Vec::new();
    for suffix in suffixes {
        let key = t.key(suffix);
        let revision = store.create(&key, bytes(suffix)).await?;
        written.push((key, revision));
    }
    let expect = |prefix: &str| {
        let mut keys: Vec<(String, i64)> = written
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    for prefix in [
        t.key("a/b/"),
        t.key("a/b"),
        t.key("a/"),
        t.key(""),
        t.key("zz/"),
    ] {
        let list = store.list(&prefix).await?;
        let got: Vec<(String, i64)> = list
            .items
            .iter()
            .map(|kv| (kv.key.clone(), kv.mod_revision))
            .collect();
        assert_eq!(got, expect(&prefix), "prefix {prefix:?}");
        for kv in &list.items {
            assert_eq!(kv.value, bytes(&kv.key[t.root.len()..]));
        }
        assert_eq!(list.revision, store.revision().await?);
    }
    // The boundary that matters: /a/b/ must not list /a/bc or /a/b itself.
    let slash = store.list(&t.key("a/b/")).await?;
    assert!(
        slash
            .items
            .iter()
            .all(|kv| kv.key != t.key("a/bc") && kv.key != t.key("a/b"))
    );

    // The empty prefix lists everything, sorted bytewise.
    let everything = store.list("").await?;
    let keys: Vec<&str> = everything.items.iter().map(|kv| kv.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    for (key, _) in &written {
        ensure!(keys.contains(&key.as_str()), "empty prefix misses {key}");
    }
    Ok(())
}

pub async fn empty_keys_are_rejected(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let results = [
        store.get("").await.map(|_| ()),
        store.create("", bytes("v")).await.map(|_| ()),
        store.update("", bytes("v"), 1).await.map(|_| ()),
        store.put("", bytes("v")).await.map(|_| ()),
        store.delete("", None).await.map(|_| ()),
    ];
    for result in results {
        assert!(
            matches!(result, Err(DatastoreError::InvalidRequest(_))),
            "{result:?}"
        );
    }
    Ok(())
}

pub async fn values_are_opaque_bytes(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let values: [Vec<u8>; 4] = [
        Vec::new(),
        vec![0, 255, 0xc3, 0x28, 0, 10],
        bytes("{\"json\": \"\u{1F431}\"}"),
        (0..256 * 1024).map(|i| (i % 251) as u8).collect(),
    ];
    let start = store.revision().await? + 1;
    let mut watch = store.watch(&t.key("bin/"), start).await?;
    for (index, value) in values.iter().enumerate() {
        let key = t.key(&format!("bin/{index}"));
        store.create(&key, value.clone()).await?;
        assert_eq!(store.get(&key).await?.context("key")?.value, *value);
        assert_eq!(next_event(&mut watch).await?.value.as_ref(), Some(value));
    }
    let list = store.list(&t.key("bin/")).await?;
    let listed: Vec<Vec<u8>> = list.items.into_iter().map(|kv| kv.value).collect();
    assert_eq!(listed, values);
    Ok(())
}

fn put_event(key: &str, value: &str, prev: Option<&str>, create: i64, revision: i64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Put,
        key: key.to_owned(),
        value: Some(bytes(value)),
        prev_value: prev.map(bytes),
        create_revision: create,
        mod_revision: revision,
    }
}

fn delete_event(key: &str, prev: &str, create: i64, revision: i64) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        key: key.to_owned(),
        value: None,
        prev_value: Some(bytes(prev)),
        create_revision: create,
        mod_revision: revision,
    }
}

pub async fn watch_delivers_writes_in_order(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let (a, b, c) = (t.key("w/a"), t.key("w/b"), t.key("w/c"));
    let mut watch = store
        .watch(&t.key("w/"), store.revision().await? + 1)
        .await?;

    let ra = store.create(&a, bytes("a1")).await?;
    let rb = store.create(&b, bytes("b1")).await?;
    let ra2 = store.update(&a, bytes("a2"), ra).await?;
    let rc = store.put(&c, bytes("c1")).await?;
    store.put(&t.key("elsewhere"), bytes("x")).await?;
    store.delete(&b, None).await?;
    let rb2 = store.create(&b, bytes("b2")).await?;

    let expected = [
        put_event(&a, "a1", None, ra, ra),
        put_event(&b, "b1", None, rb, rb),
        put_event(&a, "a2", Some("a1"), ra, ra2),
        put_event(&c, "c1", None, rc, rc),
        delete_event(&b, "b1", rb, rb2 - 1),
        put_event(&b, "b2", None, rb2, rb2),
    ];
    for want in expected {
        assert_eq!(next_event(&mut watch).await?, want);
    }
    expect_quiet(&mut watch).await
}

pub async fn watch_from_past_revision_replays_exactly(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(
            store
                .put(&t.key(&format!("replay/{}", i % 3)), bytes(&i.to_string()))
                .await?,
        );
    }
    let mut watch = store.watch(&t.key("replay/"), revisions[4]).await?;
    for (i, revision) in revisions.iter().enumerate().skip(4) {
        let event = next_event(&mut watch).await?;
        assert_eq!(event.mod_revision, *revision);
        assert_eq!(event.key, t.key(&format!("replay/{}", i % 3)));
        assert_eq!(event.value, Some(bytes(&i.to_string())));
    }
    let live = store.put(&t.key("replay/live"), bytes("live")).await?;
    assert_eq!(next_event(&mut watch).await?.mod_revision, live);
    expect_quiet(&mut watch).await
}

pub async fn watch_from_future_revision_waits(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let start = store.revision().await? + 3;
    let mut watch = store.watch(&t.key("future/"), start).await?;
    for i in 0..2 {
        store.put(&t.key("future/k"), bytes(&i.to_string())).await?;
    }
    expect_quiet(&mut watch).await?;
    let third = store.put(&t.key("future/k"), bytes("2")).await?;
    assert_eq!(third, start);
    let event = next_event(&mut watch).await?;
    assert_eq!((event.mod_revision, event.value), (start, Some(bytes("2"))));
    Ok(())
}

pub async fn watch_delete_carries_prev_value(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let key = t.key("wd/k");
    let created = store.create(&key, bytes("one")).await?;
    let updated = store.update(&key, bytes("two"), created).await?;
    let mut watch = store.watch(&key, updated + 1).await?;
    store.delete(&key, Some(updated)).await?;
    let event = next_event(&mut watch).await?;
    assert_eq!(event, delete_event(&key, "two", created, updated + 1));
    Ok(())
}

pub async fn concurrent_watchers_on_different_prefixes(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let start = store.revision().await? + 1;
    let prefixes = [t.key("cw/0/"), t.key("cw/1/"), t.key("cw/2/")];
    let mut watches = Vec::new();
    for prefix in &prefixes {
        watches.push(store.watch(prefix, start).await?);
    }
    let mut all = store.watch(&t.key("cw/"), start).await?;
    let mut expected: Vec<Vec<(String, i64)>> = vec![Vec::new(); 3];
    let mut expected_all = Vec::new();
    for i in 0..60 {
        let key = format!("{}{}", prefixes[i % 3], i / 3);
        let revision = store.put(&key, bytes(&i.to_string())).await?;
        expected[i % 3].push((key.clone(), revision));
        expected_all.push((key, revision));
    }
    for (watch, expected) in watches.iter_mut().zip(&expected) {
        for want in expected {
            let event = next_event(watch).await?;
            assert_eq!((&event.key, event.mod_revision), (&want.0, want.1));
        }
        expect_quiet(watch).await?;
    }
    for want in &expected_all {
        let event = next_event(&mut all).await?;
        assert_eq!((&event.key, event.mod_revision), (&want.0, want.1));
    }
    expect_quiet(&mut all).await
}

pub async fn watch_resume_has_no_gap_and_no_duplicate(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let prefix = t.key("resume/");
    let mut revisions = Vec::new();
    let mut watch = store.watch(&prefix, store.revision().await? + 1).await?;
    for i in 0..10 {
        revisions.push(
            store
                .put(&format!("{prefix}{}", i % 4), bytes(&i.to_string()))
                .await?,
        );
    }
    let mut last = 0;
    for revision in &revisions[..5] {
        last = next_event(&mut watch).await?.mod_revision;
        assert_eq!(last, *revision);
    }
    drop(watch);
    for i in 10..15 {
        revisions.push(
            store
                .put(&format!("{prefix}{}", i % 4), bytes(&i.to_string()))
                .await?,
        );
    }
    let mut resumed = store.watch(&prefix, last + 1).await?;
    for revision in &revisions[5..] {
        assert_eq!(next_event(&mut resumed).await?.mod_revision, *revision);
    }
    expect_quiet(&mut resumed).await
}

pub async fn slow_watcher_does_not_block_others(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let prefix = t.key("slow/");
    let start = store.revision().await? + 1;
    let mut slow = store.watch(&prefix, start).await?;
    let mut fast = store.watch(&prefix, start).await?;
    let writes = 3 * tortie_datastore::WATCH_CHANNEL_CAPACITY;
    let mut revisions = Vec::with_capacity(writes);
    for i in 0..writes {
        revisions.push(
            store
                .put(&format!("{prefix}{}", i % 7), bytes(&i.to_string()))
                .await?,
        );
    }
    for revision in &revisions {
        assert_eq!(next_event(&mut fast).await?.mod_revision, *revision);
    }
    for revision in &revisions {
        assert_eq!(next_event(&mut slow).await?.mod_revision, *revision);
    }
    Ok(())
}

pub async fn watch_sees_writes_of_other_clients(t: &Target) -> Result<()> {
    let watcher = t.connect().await?;
    let writer = t.connect().await?;
    let key = t.key("other/k");
    let mut watch = watcher.watch(&key, watcher.revision().await? + 1).await?;
    for i in 0..5 {
        let revision = writer.put(&key, bytes(&i.to_string())).await?;
        let event = next_event(&mut watch).await?;
        assert_eq!(
            (event.mod_revision, event.value),
            (revision, Some(bytes(&i.to_string())))
        );
    }
    Ok(())
}

pub async fn compaction_fails_older_watches(t: &Target) -> Result<()> {
    let store = t.connect().await?;
    let prefix = t.key("compact/");
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(
            store
                .put(&format!("{prefix}{}", i % 2), bytes(&i.to_string()))
                .await?,
        );
    }
    let target = revisions[2];
    store.compact(target).await?;

    match expect_compacted(store.as_ref(), &prefix, target - 1).await? {
        DatastoreError::Compacted {
            requested,
            compacted,
        } => assert_eq!((requested, compacted), (target - 1, target)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut watch = store.watch(&prefix, target).await?;
    for revision in &revisions[2..] {
        assert_eq!(next_event(&mut watch).await?.mod_revision, *revision);
    }

    for again in [target, target - 1] {
        assert!(
            matches!(
                store.compact(again).await,
                Err(DatastoreError::Compacted { .. })
            ),
            "compacting again to {again}"
        );
    }
    let current = store.revision().await?;
    assert!(matches!(
        store.compact(current + 1).await,
        Err(DatastoreError::InvalidRequest(_))
    ));
    // Compaction drops history, never live keys.
    let list = store.list(&prefix).await?;
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.items[1].mod_revision, revisions[3]);
    Ok(())
}
