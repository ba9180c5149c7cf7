//! The store itself, on both backends: the deferred look-up indexes (idempotency key hashes,
//! read rows by owner) never make a committed row invisible, before or after the writer has
//! indexed it, and purging takes index entries with the records.

use surge::persistence::{
    catch_up_deferred_indexes, Batch, DeadlineWrite, EventRecord, IdempotencyRecord, Lookup,
    ReadRow, RefreshUse, RevocationReason, Store, StoreError,
};

use crate::helpers::{Backend, TestStore};
use crate::on_both_stores;

fn record(scope: &str, key: &str, created_at_ms: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: scope.into(),
        key: key.into(),
        fingerprint: format!("fp-{scope}-{key}"),
        status: 201,
        body: format!("{{\"key\":\"{key}\"}}").into_bytes(),
        created_at_ms,
    }
}

fn row(id: &str, owner: &str, status: &str) -> ReadRow {
    ReadRow {
        kind: "order".into(),
        id: id.into(),
        owner: owner.into(),
        created_at_ms: 0,
        status: status.into(),
        body: format!("{{\"id\":\"{id}\",\"status\":\"{status}\"}}"),
    }
}

async fn commit(store: &dyn Store, batch: Batch) {
    store.commit(&batch).await.expect("commits");
}

async fn found(store: &dyn Store, scope: &str, key: &str, lookup: Lookup) -> bool {
    let got = store
        .idempotency_get(scope, key, lookup)
        .await
        .expect("looks up");
    if let Some(got) = &got {
        assert_eq!(
            got,
            &record(scope, key, got.created_at_ms),
            "the record as written"
        );
    }
    got.is_some()
}

fn event(pid: &str, seq: u64) -> EventRecord {
    EventRecord {
        pid: pid.into(),
        seq,
        at_ms: 0,
        payload: vec![1, 2, 3],
    }
}

fn set(pid: &str, due_at_ms: i64) -> DeadlineWrite {
    DeadlineWrite::Set {
        pid: pid.into(),
        due_at_ms,
    }
}

async fn statuses(store: &dyn Store) -> Vec<(String, String)> {
    let page = store
        .read_rows("order", None, None, None, 100)
        .await
        .expect("lists");
    page.rows.into_iter().map(|r| (r.id, r.status)).collect()
}

async fn all_due(store: &dyn Store) -> Vec<(String, i64)> {
    store
        .due_deadlines(i64::MAX, None, 10)
        .await
        .expect("scans")
}

/// A group commit writes its batches in order (the later write of a key stays), and a
/// (pid, seq) clash is a conflict that writes nothing of its batch.
async fn a_group_keeps_the_last_write_per_key_and_a_clash_writes_nothing(backend: Backend) {
    let Some(test) = TestStore::open(backend).await else {
        return;
    };
    let store = test.store.as_ref();
    let first = Batch {
        events: vec![event("order:a", 1)],
        read_rows: vec![row("a", "alice", "RESERVED")],
        deadlines: vec![set("order:a", 10), set("order:b", 20)],
        ..Batch::default()
    };
    let second = Batch {
        events: vec![event("order:a", 2)],
        read_rows: vec![row("a", "alice", "PAID")],
        deadlines: vec![
            DeadlineWrite::Clear {
                pid: "order:a".into(),
            },
            set("order:b", 30),
        ],
        ..Batch::default()
    };
    store
        .commit_parts(&[&first, &second])
        .await
        .expect("commits");
    let (_, events) = store.load("order:a").await.expect("loads");
    assert_eq!(events, vec![event("order:a", 1), event("order:a", 2)]);
    assert_eq!(statuses(store).await, vec![("a".into(), "PAID".into())]);
    assert_eq!(all_due(store).await, vec![("order:b".to_string(), 30)]);

    let clashing = Batch {
        events: vec![event("order:c", 1), event("order:a", 2)],
        read_rows: vec![row("c", "carol", "RESERVED")],
        deadlines: vec![set("order:c", 5)],
        ..Batch::default()
    };
    let result = store.commit(&clashing).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let (_, events) = store.load("order:c").await.expect("loads");
    assert!(events.is_empty(), "the clashing batch wrote {events:?}");
    assert_eq!(statuses(store).await, vec![("a".into(), "PAID".into())]);
    assert_eq!(all_due(store).await, vec![("order:b".to_string(), 30)]);
}

on_both_stores!(a_group_keeps_the_last_write_per_key_and_a_clash_writes_nothing);

async fn idempotency_records_are_found_before_and_after_indexing(backend: Backend) {
    let Some(test) = TestStore::open(backend).await else {
        return;
    };
    let store = test.store.as_ref();
    let batch = Batch {
        idempotency: vec![record("alice", "k1", 1), record("bob", "k1", 2)],
        ..Batch::default()
    };
    commit(store, batch).await;
    // Not indexed yet: only the look-up that scans the tail sees them.
    assert!(found(store, "alice", "k1", Lookup::Everywhere).await);
    assert!(!found(store, "alice", "k1", Lookup::IndexedOnly).await);
    assert!(!found(store, "carol", "k1", Lookup::Everywhere).await);
    // One row per step: the watermark moves by exactly that much.
    assert_eq!(store.index_deferred(1).await.expect("indexes"), 1);
    assert!(found(store, "alice", "k1", Lookup::IndexedOnly).await);
    assert!(!found(store, "bob", "k1", Lookup::IndexedOnly).await);
    assert!(found(store, "bob", "k1", Lookup::Everywhere).await);
    assert_eq!(
        catch_up_deferred_indexes(store).await.expect("catches up"),
        1
    );
    for lookup in [Lookup::Everywhere, Lookup::IndexedOnly] {
        assert!(found(store, "alice", "k1", lookup).await);
        assert!(found(store, "bob", "k1", lookup).await);
        assert!(!found(store, "alice", "k2", lookup).await);
    }
    assert_eq!(store.index_deferred(100).await.expect("indexes"), 0);
    test.close().await;
}
on_both_stores!(idempotency_records_are_found_before_and_after_indexing);

async fn purged_records_leave_neither_row_nor_index_entry(backend: Backend) {
    let Some(test) = TestStore::open(backend).await else {
        return;
    };
    let store = test.store.as_ref();
    let batch = Batch {
        idempotency: vec![record("alice", "old", 10), record("alice", "new", 20)],
        ..Batch::default()
    };
    commit(store, batch).await;
    catch_up_deferred_indexes(store).await.expect("catches up");
    let keys_since = |ms| store.idempotency_keys_since(ms, 10);
    assert_eq!(
        keys_since(15).await.expect("keys").len(),
        1,
        "only the new key is recent"
    );
    assert_eq!(keys_since(0).await.expect("keys").len(), 2);
    assert_eq!(store.idempotency_purge(15).await.expect("purges"), 1);
    assert!(!found(store, "alice", "old", Lookup::Everywhere).await);
    assert!(found(store, "alice", "new", Lookup::IndexedOnly).await);
    assert_eq!(
        store.idempotency_purge(15).await.expect("purges"),
        0,
        "nothing older left"
    );
    // Past the cut too, the newest record stays (so its position is never handed out again).
    assert_eq!(store.idempotency_purge(100).await.expect("purges"), 0);
    assert!(found(store, "alice", "new", Lookup::Everywhere).await);
    let batch = Batch {
        idempotency: vec![record("bob", "later", 30), record("bob", "last", 40)],
        ..Batch::default()
    };
    commit(store, batch).await;
    assert_eq!(store.idempotency_purge(100).await.expect("purges"), 2);
    assert!(!found(store, "bob", "later", Lookup::Everywhere).await);
    assert!(found(store, "bob", "last", Lookup::Everywhere).await);
    assert_eq!(keys_since(0).await.expect("keys").len(), 1);
    test.close().await;
}
on_both_stores!(purged_records_leave_neither_row_nor_index_entry);

/// Every page of `owner`'s rows, following cursors, as ids.
async fn list_all(store: &dyn Store, owner: Option<&str>, limit: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .read_rows("order", owner, None, cursor.as_deref(), limit)
            .await
            .expect("lists");
        assert!(page.rows.len() <= limit as usize);
        ids.extend(page.rows.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

async fn owner_lists_span_the_indexed_part_and_the_tail(backend: Backend) {
    let Some(test) = TestStore::open(backend).await else {
        return;
    };
    let store = test.store.as_ref();
    // Ids sort like UUIDv7s: by creation. Alice owns the even ones, Bob the odd ones.
    let owner = |i: usize| if i.is_multiple_of(2) { "alice" } else { "bob" };
    let ids: Vec<String> = (0..12).map(|i| format!("o-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate().take(6) {
        let batch = Batch {
            read_rows: vec![row(id, owner(i), "RESERVED")],
            ..Batch::default()
        };
        commit(store, batch).await;
    }
    catch_up_deferred_indexes(store).await.expect("catches up");
    // Six more stay in the unindexed tail; one indexed row changes status (same row).
    let mut tail: Vec<ReadRow> = (6..12)
        .map(|i| row(&ids[i], owner(i), "RESERVED"))
        .collect();
    tail.push(row(&ids[2], "alice", "EXPIRED"));
    commit(
        store,
        Batch {
            read_rows: tail,
            ..Batch::default()
        },
    )
    .await;

    let alice: Vec<String> = (0..12)
        .rev()
        .filter(|i: &usize| i.is_multiple_of(2))
        .map(|i| ids[i].clone())
        .collect();
    let everyone: Vec<String> = ids.iter().rev().cloned().collect();
    for limit in [1, 2, 5, 50] {
        assert_eq!(
            list_all(store, Some("alice"), limit).await,
            alice,
            "limit {limit}"
        );
        assert_eq!(
            list_all(store, None, limit).await,
            everyone,
            "limit {limit}"
        );
    }
    let page = store
        .read_rows("order", Some("alice"), None, None, 50)
        .await
        .expect("lists");
    let updated = page
        .rows
        .iter()
        .find(|r| r.id == ids[2])
        .expect("row 2 listed");
    assert_eq!(updated.status, "EXPIRED");
    // Indexing the tail changes nothing a reader sees.
    assert_eq!(
        catch_up_deferred_indexes(store).await.expect("catches up"),
        6
    );
    for limit in [1, 3, 50] {
        assert_eq!(
            list_all(store, Some("alice"), limit).await,
            alice,
            "limit {limit}"
        );
    }
    assert!(list_all(store, Some("carol"), 10).await.is_empty());
    test.close().await;
}
on_both_stores!(owner_lists_span_the_indexed_part_and_the_tail);

/// SQLite keeps the deferred indexes in a file of their own: derived data, rebuilt from the
/// journal's tables when that file is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_sqlite_index_file_is_rebuilt_at_start_up() {
    use std::sync::Arc;
    use surge::persistence::{sqlite_index_path, SqliteStore};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("surge.db");
    let settings = crate::helpers::test_settings(dir.path());
    let open = || async {
        let store = SqliteStore::open(&path, &settings.database)
            .await
            .expect("opens");
        store.migrate().await.expect("migrates");
        Arc::new(store)
    };
    let store = open().await;
    let batch = Batch {
        idempotency: vec![record("alice", "k1", 1)],
        read_rows: vec![row("o-1", "alice", "RESERVED")],
        ..Batch::default()
    };
    commit(store.as_ref(), batch).await;
    assert_eq!(
        catch_up_deferred_indexes(store.as_ref())
            .await
            .expect("indexes"),
        2
    );
    drop(store);

    let index = sqlite_index_path(&path);
    assert!(index.exists(), "the index file sits beside the journal");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
    }
    let store = open().await;
    assert!(!found(store.as_ref(), "alice", "k1", Lookup::IndexedOnly).await);
    assert_eq!(
        catch_up_deferred_indexes(store.as_ref())
            .await
            .expect("rebuilds"),
        2
    );
    assert!(found(store.as_ref(), "alice", "k1", Lookup::IndexedOnly).await);
    assert_eq!(
        list_all(store.as_ref(), Some("alice"), 10).await,
        vec!["o-1"]
    );
}

/// The index file may keep entries of commits the journal lost (a restored `surge.db`, or a
/// power loss between a pipelined commit and its fsync). Start-up pulls the watermark back, so
/// records written later at the same positions are found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_its_table_is_clamped_at_start_up() {
    use std::sync::Arc;
    use surge::persistence::SqliteStore;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("surge.db");
    let settings = crate::helpers::test_settings(dir.path());
    let store = SqliteStore::open(&path, &settings.database)
        .await
        .expect("opens");
    store.migrate().await.expect("migrates");
    let store = Arc::new(store);
    let batch = Batch {
        idempotency: vec![record("alice", "kept", 1), record("alice", "lost", 2)],
        ..Batch::default()
    };
    commit(store.as_ref(), batch).await;
    catch_up_deferred_indexes(store.as_ref())
        .await
        .expect("indexes");
    // The journal loses its last commit; the index file still covers it.
    let journal = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("opens the journal");
    sqlx::query("DELETE FROM idempotency WHERE key = 'lost'")
        .execute(&journal)
        .await
        .expect("loses a commit");
    journal.close().await;
    catch_up_deferred_indexes(store.as_ref())
        .await
        .expect("clamps");
    // The next record takes the lost one's position, and is found there.
    let batch = Batch {
        idempotency: vec![record("bob", "new", 3)],
        ..Batch::default()
    };
    commit(store.as_ref(), batch).await;
    assert!(found(store.as_ref(), "bob", "new", Lookup::Everywhere).await);
    assert!(!found(store.as_ref(), "alice", "lost", Lookup::Everywhere).await);
    assert_eq!(
        catch_up_deferred_indexes(store.as_ref())
            .await
            .expect("indexes"),
        1
    );
    assert!(found(store.as_ref(), "bob", "new", Lookup::IndexedOnly).await);
    assert!(found(store.as_ref(), "alice", "kept", Lookup::IndexedOnly).await);
}

/// The admin overview shows the indexer catching up and, for SQLite FULL, the pipelined
/// fsyncs that every acknowledged commit waited for.
async fn the_overview_shows_indexing_and_fsyncs(backend: Backend) {
    use reqwest::StatusCode;
    use serde_json::Value;

    let Some(app) = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options::tweaked(|settings| settings.journal.index_every_ms = 20),
    )
    .await
    else {
        return;
    };
    app.create_stock("IDX", 10).await;
    for i in 0..3 {
        let response = app.order(&format!("buyer-{i}"), "IDX", 1, Some("k")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let overview = || async {
        let response = app.get("/admin/overview", &app.operator()).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.expect("json")["journal"].clone()
    };
    // Three read rows and three idempotency records; the indexer runs every 20 ms.
    crate::helpers::eventually_that("six indexed rows", || async {
        overview().await["indexed_rows"].as_u64() >= Some(6)
    })
    .await;
    let journal = overview().await;
    assert_eq!(journal["indexed_rows"], 6, "journal: {journal}");
    let syncs = journal["syncs"].as_u64().expect("syncs");
    let sync_max = journal["sync_micros_max"].as_u64().expect("sync max");
    let sync_total = journal["sync_micros_total"].as_u64().expect("sync total");
    match backend {
        Backend::Sqlite => {
            assert!(syncs >= 1, "FULL answers after fsyncs: {journal}");
            assert!(
                sync_max <= sync_total && sync_max * syncs >= sync_total,
                "the slowest fsync is one of them: {journal}"
            );
        }
        Backend::Postgres => {
            assert_eq!(syncs, 0, "PostgreSQL commits durably itself");
            assert_eq!(sync_max, 0, "{journal}");
        }
    }
    let commits = journal["batches"].as_u64().expect("batches");
    let commit_max = journal["commit_micros_max"].as_u64().expect("commit max");
    let commit_avg = journal["avg_commit_micros"].as_f64().expect("commit avg");
    assert!(commits >= 3, "{journal}");
    assert!(
        commit_max as f64 >= commit_avg.floor(),
        "the slowest commit is at least the average: {journal}"
    );
    app.stop().await;
}
on_both_stores!(the_overview_shows_indexing_and_fsyncs);

/// A snapshot larger than `journal.snapshot_part_bytes` is written in parts between groups (and
/// while the writer is idle); once its last part is in, a load gets it whole. A newer snapshot
/// then replaces it, as any snapshot does.
async fn a_large_snapshot_is_written_in_parts(backend: Backend) {
    use surge::config::{JournalSettings, Settings};
    use surge::persistence::journal::JournalHandle;
    use surge::persistence::SnapshotRecord;

    let Some(test) = TestStore::open(backend).await else {
        return;
    };
    let store = test.store.clone();
    let settings = JournalSettings {
        snapshot_part_bytes: 100,
        ..Settings::defaults().journal
    };
    let journal = JournalHandle::start(store.clone(), &settings);
    let events = (1..=3).map(|seq| event("big:1", seq)).collect();
    journal
        .commit(Batch {
            events,
            ..Batch::default()
        })
        .await
        .expect("events commit");
    // 1,050 bytes: ten parts of 100 and one of 50, each byte telling its place.
    let payload: Vec<u8> = (0..1050u32).map(|i| (i % 251) as u8).collect();
    let snapshot = |seq: u64, payload: Vec<u8>| SnapshotRecord {
        pid: "big:1".into(),
        seq,
        at_ms: 7,
        payload,
    };
    journal.offer_snapshot(snapshot(3, payload.clone()), None);
    crate::helpers::eventually_that("the large snapshot becomes current", || {
        let store = store.clone();
        async move {
            let (snapshot, _) = store.load("big:1").await.expect("loads");
            snapshot.is_some()
        }
    })
    .await;
    let (loaded, events) = store.load("big:1").await.expect("loads");
    let loaded = loaded.expect("a snapshot");
    assert_eq!((loaded.seq, loaded.at_ms), (3, 7));
    assert!(
        loaded.payload == payload,
        "the parts, in order, are the snapshot"
    );
    assert!(events.is_empty(), "the snapshot covers every event");

    journal
        .commit(Batch {
            events: vec![event("big:1", 4)],
            ..Batch::default()
        })
        .await
        .expect("commits");
    journal.offer_snapshot(snapshot(4, vec![9; 10]), None);
    journal
        .barrier()
        .await
        .expect("the snapshot's group is done");
    let (loaded, events) = store.load("big:1").await.expect("loads");
    assert_eq!(loaded.expect("a snapshot").payload, vec![9; 10]);
    assert!(events.is_empty());
    drop(journal);
    test.close().await;
}
on_both_stores!(a_large_snapshot_is_written_in_parts);

/// Rotation's atomic step: however many uses of one token race, exactly one marks it; the
/// others see it used, which is what reuse detection acts on. A revoked family's newest token
/// is refused, and the purge takes expired tokens, then revocations with no token left.
async fn concurrent_uses_of_a_refresh_token_mark_it_once(backend: Backend) {
    let Some(test) = TestStore::open(backend).await else {
        return;
    };
    let store = test.store.clone();
    store
        .refresh_insert("hash-1", "u-1", "family-1", 1_000)
        .await
        .expect("inserts");
    let uses: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.refresh_use("hash-1", 10).await })
        })
        .collect();
    let mut marked = 0;
    for used in uses {
        match used.await.expect("joins").expect("uses") {
            RefreshUse::Marked(token) => {
                marked += 1;
                assert_eq!(
                    (token.user_id.as_str(), token.family_id.as_str()),
                    ("u-1", "family-1")
                );
            }
            RefreshUse::Refused(token) => {
                assert_eq!(token.used_at_ms, Some(10), "refused because used");
                assert!(!token.family_revoked);
            }
            RefreshUse::Unknown => panic!("the token exists"),
        }
    }
    assert_eq!(marked, 1, "exactly one use wins");

    store
        .refresh_insert("hash-2", "u-1", "family-1", 2_000)
        .await
        .expect("inserts");
    let revoked = store
        .refresh_revoke("hash-1", 20, RevocationReason::Reuse)
        .await
        .expect("revokes")
        .expect("revoked by this call");
    assert_eq!(
        (revoked.family_id.as_str(), revoked.user_id.as_str()),
        ("family-1", "u-1")
    );
    let again = store
        .refresh_revoke("hash-2", 30, RevocationReason::Logout)
        .await
        .expect("revokes");
    assert_eq!(again, None, "a family is revoked once");
    match store.refresh_use("hash-2", 40).await.expect("uses") {
        RefreshUse::Refused(token) => {
            assert!(token.family_revoked);
            assert_eq!(
                token.used_at_ms, None,
                "the newest, never used, still refused"
            );
        }
        other => panic!("refused expected, got {other:?}"),
    }
    assert_eq!(
        store.refresh_use("nothing", 40).await.expect("uses"),
        RefreshUse::Unknown
    );

    // At 1,000 the first token has expired but the second holds the revocation.
    assert_eq!(store.refresh_purge(1_000, 1_000).await.expect("purges"), 1);
    assert_eq!(
        store
            .refresh_revocations("u-1", 10)
            .await
            .expect("reads")
            .len(),
        1
    );
    assert_eq!(store.refresh_purge(2_000, 1_000).await.expect("purges"), 2);
    assert!(store
        .refresh_revocations("u-1", 10)
        .await
        .expect("reads")
        .is_empty());
    test.close().await;
}
on_both_stores!(concurrent_uses_of_a_refresh_token_mark_it_once);
