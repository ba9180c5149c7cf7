//! Criterion benches for the three layers a purchase passes through. Group and bench names are
//! stable so figures can be quoted (`docs/` cites them by id).
//!
//! - `entity/stock_reserve_decide_apply`: `StockItem::decide` + `apply` of one
//!   `StockCommand::Reserve` (fresh order id every iteration) on an item that already holds
//!   [`OPEN_RESERVATIONS`] open reservations. This is the pure CPU cost an actor pays per
//!   purchase on a hot SKU, with no actor, journal or I/O; it bounds how many reservations one
//!   actor can ever accept per second. Every 1,000 iterations the new reservations are released
//!   outside the timed region, so the item stays at 10,000 to 11,000 open reservations however
//!   long criterion runs.
//! - `entity/stock_get_decide`: `decide(Get)` on the same item: building the reply view, the
//!   floor under any read served by an actor.
//! - `journal/append_batch/{sqlite,sqlite_normal,postgres}`: one commit (and its fsync) of a
//!   realistic group-commit batch, as the journal writer makes it (on SQLite the blocking calls
//!   of `Store::blocking`, on PostgreSQL `Store::commit`): [`ORDERS_PER_BATCH`] orders, each writing the `stock_item:HOT`
//!   `Reserved` event (increasing seq), the new order's `Placed` event (seq 1), its
//!   idempotency record, its read row and its expiry deadline (5 rows per order). Keys are
//!   unique every iteration, the batch is built outside the timed region, and throughput is
//!   reported in orders. `sqlite` is the default `synchronous=FULL` (one fsync per commit,
//!   durable against power loss); `sqlite_normal` shows what that fsync costs. `postgres` runs
//!   only when `SURGE_TEST_POSTGRES_URL` is set, in a fresh schema that is dropped afterwards.
//!   The time per iteration is the floor of the journal writer's flush period under load.
//! - `actor/round_trip/get` and `actor/round_trip/reserve`: the whole system built in-process
//!   (`Surge::build_on` over SQLite with default settings, a multi-thread tokio runtime), one
//!   caller asking one stock item in a loop. `get` is a pure actor round trip (registry lookup,
//!   admission, mailbox, reply; no journal). `reserve` uses a fresh order id each time and so
//!   includes one group commit with `synchronous=FULL`: the latency of a single purchase when
//!   nothing else is going on (under load many purchases share that commit).
//!
//! Temporary databases go under `std::env::temp_dir()`; set `TMPDIR` to measure another disk
//! (a tmpfs makes the fsync free and the SQLite figures meaningless).
//!
//! Run: `cargo bench --bench core` (PostgreSQL too with
//! `SURGE_TEST_POSTGRES_URL=postgres://user@host:5432/db`).

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use surge::actors::hosted::order::{birth, Birth};
use surge::actors::order::{OrderItem, Placed, Source, SourceKind};
use surge::actors::stock_item::{ReleaseReason, StockCommand, StockEvent, StockItem};
use surge::actors::waiting_room::{RoomCommand, RoomEvent, RoomTerms, WaitingRoom};
use surge::actors::{Ctx, Entity};
use surge::app::Surge;
use surge::clock::{Clock, SystemClock};
use surge::config::{Settings, SqliteSynchronous};
use surge::persistence::codec;
use surge::persistence::{
    Batch, EventRecord, IdempotencyRecord, PostgresStore, SharedStore, SqliteStore, Store,
};
use tokio::runtime::Runtime;

/// Open reservations on the item the entity benches work on: a hot SKU mid-sale.
const OPEN_RESERVATIONS: u64 = 10_000;
/// Timed reserves between two untimed clean-ups in `entity/stock_reserve_decide_apply`.
const RESERVE_CHUNK: u64 = 1_000;
/// Orders in one journal batch: a group commit under moderate load.
const ORDERS_PER_BATCH: u64 = 64;
/// A fixed "now" for the pure entity benches (they never read a clock).
const NOW_MS: i64 = 1_700_000_000_000;
/// Reservations expire ten minutes after they are made, as orders do by default.
const TTL_MS: i64 = 600_000;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds")
}

fn reserve_command(order: u128) -> StockCommand {
    StockCommand::Reserve {
        order: order.into(),
        quantity: 1,
        expires_at_ms: NOW_MS + TTL_MS + i64::try_from(order).expect("bench ids fit i64"),
    }
}

/// A stock item with `OPEN_RESERVATIONS` open reservations (orders `0..OPEN_RESERVATIONS`).
fn hot_item() -> StockItem {
    let mut item = StockItem::blank("HOT");
    item.apply(&StockEvent::Created {
        name: "Hot item".into(),
        on_hand: 1_000_000_000,
        safety_stock: 0,
        price: 1_990,
    });
    let ctx = Ctx { now_ms: NOW_MS };
    for order in 0..u128::from(OPEN_RESERVATIONS) {
        let decision = item
            .decide(&reserve_command(order), &ctx)
            .expect("the item has units");
        decision.events.iter().for_each(|e| item.apply(e));
    }
    item.check_deep_invariants().expect("a consistent item");
    item
}

fn entity_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("entity");
    configure(&mut group);
    let ctx = Ctx { now_ms: NOW_MS };
    let mut item = hot_item();
    let mut next_order = u128::from(OPEN_RESERVATIONS);

    group.bench_function("stock_reserve_decide_apply", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let chunk = (iters - done).min(RESERVE_CHUNK);
                let first = next_order;
                let started = Instant::now();
                for _ in 0..chunk {
                    let command = reserve_command(next_order);
                    next_order += 1;
                    let decision = item.decide(&command, &ctx).expect("the item has units");
                    decision.events.iter().for_each(|e| item.apply(e));
                    black_box(&decision.reply);
                }
                elapsed += started.elapsed();
                // Untimed: back to OPEN_RESERVATIONS open reservations.
                for order in first..next_order {
                    item.apply(&StockEvent::Released {
                        order: order.into(),
                        quantity: 1,
                        reason: ReleaseReason::Cancelled,
                    });
                }
                done += chunk;
            }
            elapsed
        })
    });
    item.check_deep_invariants().expect("still consistent");

    group.bench_function("stock_get_decide", |b| {
        b.iter(|| {
            black_box(
                item.decide(black_box(&StockCommand::Get), &ctx)
                    .expect("the item exists"),
            )
        })
    });
    group.finish();
}

/// Unique numbers for keys, order ids and seqs across all journal iterations.
struct Keys {
    next_order: u64,
    next_stock_seq: u64,
}

/// The rows `ORDERS_PER_BATCH` purchases of `stock_item:HOT` write in one group commit.
fn order_batch(keys: &mut Keys, now_ms: i64) -> Batch {
    let mut batch = Batch::default();
    for _ in 0..ORDERS_PER_BATCH {
        let n = keys.next_order;
        keys.next_order += 1;
        let order_id = uuid::Uuid::now_v7();
        let reserved = StockEvent::Reserved {
            order: order_id.as_u128().into(),
            quantity: 1,
            expires_at_ms: now_ms + TTL_MS,
        };
        keys.next_stock_seq += 1;
        batch.events.push(EventRecord {
            pid: "stock_item:HOT".into(),
            seq: keys.next_stock_seq,
            at_ms: now_ms,
            payload: codec::encode(StockItem::VERSION, &reserved),
        });
        let user_id = uuid::Uuid::from_u128(u128::from(n % 1_000)).to_string();
        let placed = Placed {
            user_id: user_id.clone().into(),
            source: Source {
                kind: SourceKind::Stock,
                id: "HOT".into(),
            },
            items: vec![OrderItem {
                reference: "HOT".into(),
                quantity: 1,
                unit_price: 1_990,
            }],
            expires_at_ms: now_ms + TTL_MS,
            created_at_ms: now_ms,
        };
        let Birth {
            batch: born, json, ..
        } = birth(&order_id.to_string(), placed);
        batch.extend(born);
        batch.idempotency.push(IdempotencyRecord {
            scope: user_id,
            key: format!("bench-{n}"),
            fingerprint: format!("{n:064x}"),
            status: 201,
            body: json.into_bytes(),
            created_at_ms: now_ms,
        });
    }
    assert_eq!(
        batch.rows(),
        5 * ORDERS_PER_BATCH as usize,
        "5 rows per order"
    );
    batch
}

fn bench_append(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    store: &dyn Store,
) {
    let mut keys = Keys {
        next_order: 0,
        next_stock_seq: 0,
    };
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || order_batch(&mut keys, SystemClock.now_ms()),
            |batch| async move {
                match store.blocking() {
                    // SQLite: the calls the journal's own threads make, with no hop.
                    Some(journal) => {
                        journal.commit_parts(&[&batch]).expect("the batch commits");
                        journal.sync().expect("the batch is durable");
                    }
                    None => {
                        store.commit(&batch).await.expect("the batch commits");
                        store.sync().await.expect("the batch is durable");
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
}

async fn open_sqlite(dir: &Path, synchronous: SqliteSynchronous) -> SqliteStore {
    let mut settings = Settings::defaults();
    settings.database.sqlite_synchronous = synchronous;
    let store = SqliteStore::open(&dir.join("surge.db"), &settings.database)
        .await
        .expect("sqlite opens");
    store.migrate().await.expect("sqlite migrates");
    store
}

fn postgres_url() -> Option<String> {
    std::env::var("SURGE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

async fn drop_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

fn journal_benches(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("journal");
    configure(&mut group);
    group.throughput(Throughput::Elements(ORDERS_PER_BATCH));

    for (name, synchronous) in [
        ("append_batch/sqlite", SqliteSynchronous::Full),
        ("append_batch/sqlite_normal", SqliteSynchronous::Normal),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rt.block_on(open_sqlite(dir.path(), synchronous));
        bench_append(&mut group, &rt, name, &store);
        rt.block_on(async { drop(store) });
    }

    match postgres_url() {
        Some(url) => {
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            let settings = Settings::defaults();
            let store = rt.block_on(async {
                let store = PostgresStore::open(&url, Some(&schema), &settings.database)
                    .await
                    .expect("postgres opens");
                store.migrate().await.expect("postgres migrates");
                store
            });
            bench_append(&mut group, &rt, "append_batch/postgres", &store);
            rt.block_on(async {
                drop(store);
                if let Err(error) = drop_schema(&url, &schema).await {
                    eprintln!("could not drop bench schema {schema}: {error}");
                }
            });
        }
        None => {
            eprintln!("journal/append_batch/postgres skipped: SURGE_TEST_POSTGRES_URL is not set")
        }
    }
    group.finish();
}

async fn build_surge(data_dir: &Path) -> Surge {
    let mut settings = Settings::defaults();
    settings.server.data_dir = data_dir.to_path_buf();
    let store = SqliteStore::open(&data_dir.join("surge.db"), &settings.database)
        .await
        .expect("sqlite opens");
    store.migrate().await.expect("sqlite migrates");
    let store: SharedStore = Arc::new(store);
    let surge = Surge::build_on(store, settings, Arc::new(SystemClock))
        .await
        .expect("surge builds");
    let create = StockCommand::Create {
        name: "Hot item".into(),
        on_hand: 1_000_000_000,
        safety_stock: 0,
        price: 1_990,
    };
    surge
        .services
        .stock
        .ask("HOT", create, None)
        .await
        .expect("the stock item is created");
    surge
}

fn actor_benches(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let surge = rt.block_on(build_surge(dir.path()));
    let stock = &surge.services.stock;
    let mut group = c.benchmark_group("actor");
    configure(&mut group);

    group.bench_function("round_trip/get", |b| {
        b.to_async(&rt).iter(|| async {
            stock
                .ask("HOT", StockCommand::Get, None)
                .await
                .expect("get answers")
        })
    });

    let next_order = AtomicU64::new(1);
    group.bench_function("round_trip/reserve", |b| {
        b.to_async(&rt).iter(|| async {
            let order = u128::from(next_order.fetch_add(1, Ordering::Relaxed));
            let command = StockCommand::Reserve {
                order: order.into(),
                quantity: 1,
                expires_at_ms: SystemClock.now_ms() + TTL_MS,
            };
            stock
                .ask("HOT", command, None)
                .await
                .expect("reserve answers")
        })
    });
    group.finish();
    rt.block_on(surge.shutdown()).expect("surge shuts down");
}

/// A room with `waiting` tickets, opened, admitting 100/s from `NOW_MS`.
fn room_with(waiting: u64) -> WaitingRoom {
    let terms = RoomTerms {
        opens_at_ms: NOW_MS - 1,
        admit_per_sec: 100,
        seed: 7,
        waiting_max: 10_000_000,
    };
    let mut room = WaitingRoom::blank("time-sales/bench");
    room.apply(&RoomEvent::Created { terms });
    room.apply(&RoomEvent::Opened { at_ms: NOW_MS - 1 });
    for n in 0..waiting {
        room.apply(&RoomEvent::Joined {
            user_id: format!("u{n}").into(),
            at_ms: NOW_MS,
        });
    }
    room
}

/// The admission "tick" is computed, not run: `head_at(now)` and a ticket's status must cost
/// the same with 1,000 or 100,000 people waiting (issue 4's requirement).
fn waiting_room_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("waiting_room");
    configure(&mut group);
    for waiting in [1_000u64, 100_000] {
        let room = room_with(waiting);
        let mut now_ms = NOW_MS;
        group.bench_function(format!("admission_head/{waiting}_waiting"), |b| {
            b.iter(|| {
                now_ms += 7;
                black_box(room.head_at(black_box(now_ms)))
            })
        });
        let last = RoomCommand::Me {
            user_id: format!("u{}", waiting - 1).into(),
        };
        group.bench_function(format!("ticket_status/{waiting}_waiting"), |b| {
            b.iter(|| {
                let ctx = Ctx {
                    now_ms: NOW_MS + 5_000,
                };
                black_box(room.decide(black_box(&last), &ctx).expect("joined"))
            })
        });
        let mut joins = room.clone();
        let mut n = 0u64;
        group.bench_function(format!("join_decide_apply/{waiting}_waiting"), |b| {
            b.iter(|| {
                n += 1;
                let command = RoomCommand::Join {
                    user_id: format!("new{n}").into(),
                    terms: RoomTerms {
                        opens_at_ms: NOW_MS - 1,
                        admit_per_sec: 100,
                        seed: 7,
                        waiting_max: u64::MAX,
                    },
                };
                let ctx = Ctx {
                    now_ms: NOW_MS + 5_000,
                };
                let decision = joins.decide(&command, &ctx).expect("room has space");
                decision.events.iter().for_each(|e| joins.apply(e));
                black_box(decision.reply)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    entity_benches,
    waiting_room_benches,
    journal_benches,
    actor_benches
);
criterion_main!(benches);
