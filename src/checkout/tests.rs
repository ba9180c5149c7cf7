//! Checkout against real actors and a real SQLite store (no HTTP): placing every line or none,
//! compensation, an unknown outcome, giving units back, and an order's birth written exactly
//! as its own actor writes it.

use std::sync::Arc;

use super::*;
use crate::actors::hosted::order::{birth, Birth};
use crate::actors::order::{OrderItem, Placed, Source};
use crate::actors::stock_item::{StockCommand, StockEvent, StockView};
use crate::actors::Entity;
use crate::actors::OrderId;
use crate::clock::ManualClock;
use crate::config::Settings;
use crate::error::ErrorCode;
use crate::persistence::journal::JournalHandle;
use crate::persistence::{codec, Batch, Lookup, SharedStore, SqliteStore, Store};
use crate::runtime::Runtime;

/// 2023-11-14T22:13:20Z: every step runs at this time (a manual clock).
const T0: i64 = 1_700_000_000_000;

/// The regions checkout drives, on one store, with time standing still at `T0`.
struct World {
    checkout: Checkout,
    stock: Region<StockItem>,
    orders: Region<Order>,
    store: SharedStore,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(tweak: fn(&mut Settings)) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::defaults();
    tweak(&mut settings);
    let path = dir.path().join("surge.db");
    let store = SqliteStore::open(&path, &settings.database)
        .await
        .expect("the store opens");
    store.migrate().await.expect("migrations run");
    let store: SharedStore = Arc::new(store);
    let journal = JournalHandle::start(store.clone(), &settings.journal);
    let clock = Arc::new(ManualClock::new(T0));
    let rt = Arc::new(Runtime::new(
        store.clone(),
        journal,
        clock,
        Arc::new(settings),
    ));
    let stock = Region::start(rt.clone()).await.expect("stock starts");
    let orders = Region::start(rt.clone()).await.expect("orders start");
    let sales = Region::start(rt.clone()).await.expect("sales start");
    let seats = Region::start(rt.clone()).await.expect("seat maps start");
    World {
        checkout: Checkout::new(rt, stock.clone(), orders.clone(), sales, seats),
        stock,
        orders,
        store,
        _dir: dir,
    }
}

impl World {
    async fn item(&self, sku: &str, on_hand: i64, price: i64) {
        let command = StockCommand::Create {
            name: format!("item {sku}"),
            on_hand,
            safety_stock: 0,
            price,
        };
        self.stock.ask(sku, command, None).await.expect("created");
    }

    async fn stock_of(&self, sku: &str) -> StockView {
        let view = self.stock.ask(sku, StockCommand::Get, None).await;
        view.expect("the item exists")
    }

    /// The item's events, as its journal holds them.
    async fn stock_events(&self, sku: &str) -> Vec<StockEvent> {
        let (_, records) = self
            .store
            .load(&format!("stock_item:{sku}"))
            .await
            .expect("loads");
        let decode =
            |payload: &Vec<u8>| codec::decode(StockItem::VERSION, payload).expect("decodes");
        records.iter().map(|r| decode(&r.payload)).collect()
    }

    /// The order whose units the item's first reservation holds.
    async fn first_reserving_order(&self, sku: &str) -> String {
        let events = self.stock_events(sku).await;
        let order = events.iter().find_map(|event| match event {
            StockEvent::Reserved { order, .. } => Some(*order),
            _ => None,
        });
        order.expect("a reservation").to_string()
    }

    async fn order_rows(&self) -> Batch {
        let pid_of = |id: &str| format!("order:{id}");
        let page = self
            .store
            .read_rows("order", None, None, None, 10)
            .await
            .expect("reads");
        let mut batch = Batch::default();
        for row in page.rows {
            let (_, events) = self.store.load(&pid_of(&row.id)).await.expect("loads");
            batch.events.extend(events);
            batch.read_rows.push(row);
        }
        batch
    }
}

fn lines(wanted: &[(&str, i64)]) -> Vec<Line> {
    wanted
        .iter()
        .map(|(sku, quantity)| Line {
            sku: sku.to_string(),
            quantity: *quantity,
        })
        .collect()
}

fn view_of(json: &str) -> OrderView {
    serde_json::from_str(json).expect("the answer is the order")
}

#[tokio::test]
async fn a_refused_line_releases_the_lines_reserved_before_it_and_no_order_is_born() {
    let world = world().await;
    world.item("a", 10, 100).await;
    world.item("b", 1, 200).await;
    world.item("c", 10, 300).await;
    // Asked out of order, reserved in SKU order: `a` is reserved, `b` refused, `c` never asked.
    let wanted = lines(&[("c", 1), ("b", 5), ("a", 2)]);
    let mut rider = Rider::default();
    let placing = world.checkout.place_stock("user-1", wanted, &mut rider);
    let refused = placing.await.expect_err("b holds 1 unit");
    assert_eq!(refused.code, ErrorCode::InsufficientStock);

    let a = world.stock_of("a").await;
    assert_eq!((a.reserved, a.available), (0, 10));
    let order = world.first_reserving_order("a").await;
    let released = world.stock_events("a").await.pop();
    assert_eq!(
        released,
        Some(StockEvent::Released {
            order: order.parse().expect("a UUID"),
            quantity: 2,
            reason: ReleaseReason::Compensated,
        })
    );
    assert_eq!(world.stock_of("c").await.reserved, 0);
    assert_eq!(world.stock_events("c").await.len(), 1, "only its creation");

    let missing = world.orders.ask(&order, OrderCommand::Get, None).await;
    assert_eq!(missing.expect_err("never born").code, ErrorCode::NotFound);
    assert_eq!(world.order_rows().await, Batch::default());
}

#[tokio::test]
async fn an_unknown_outcome_leaves_the_reserved_lines_to_expire() {
    let world = world_with(|settings| settings.server.request_timeout_ms = 300).await;
    world.item("a", 10, 100).await;
    world.item("b", 10, 200).await;
    let resume = world.stock.stall("b").expect("b is running");
    let mut rider = Rider {
        birth_rows: None,
        hold: Some(Box::new(())),
    };
    let placing = world
        .checkout
        .place_stock("user-1", lines(&[("a", 1), ("b", 1)]), &mut rider);
    let unknown = placing.await.expect_err("b does not answer in time");
    assert!(unknown.outcome_unknown, "{unknown:?}");
    assert!(rider.hold.is_none(), "the hold stays until b answers");
    assert_eq!(world.stock_of("a").await.reserved, 1, "not released");

    // The line in doubt is reserved after all, and the order is born with it.
    drop(resume);
    assert_eq!(world.stock_of("b").await.reserved, 1);
    let order = world.first_reserving_order("a").await;
    let view = world.orders.ask(&order, OrderCommand::Get, None).await;
    let view = view.expect("born with b's reservation");
    assert_eq!((view.status, view.amount), (OrderStatus::Reserved, 300));
}

#[tokio::test]
async fn cancelling_a_stock_order_gives_its_units_back() {
    let world = world().await;
    world.item("a", 10, 100).await;
    world.item("c", 10, 300).await;
    let wanted = lines(&[("a", 2), ("c", 3)]);
    let json = (world
        .checkout
        .place_stock("user-1", wanted, &mut Rider::default())
        .await)
        .expect("both lines are reserved");
    let placed = view_of(&json);
    assert_eq!(
        (placed.status, placed.amount),
        (OrderStatus::Reserved, 1_100)
    );
    assert_eq!(world.stock_of("a").await.reserved, 2);

    let id: OrderId = placed.id.parse().expect("a UUID");
    let cancelled = world.checkout.cancel(id, None, &mut None).await;
    let view = cancelled
        .expect("a reserved order cancels")
        .give_back()
        .await;
    assert_eq!(view.status, OrderStatus::Cancelled);
    for sku in ["a", "c"] {
        let item = world.stock_of(sku).await;
        assert_eq!((item.reserved, item.available), (0, 10), "{sku}");
        let last = world.stock_events(sku).await.pop();
        let reason = match last {
            Some(StockEvent::Released { reason, .. }) => reason,
            other => panic!("{sku}: {other:?}"),
        };
        assert_eq!(reason, ReleaseReason::Cancelled);
    }
}

#[tokio::test]
async fn placing_an_order_that_exists_is_refused_and_changes_nothing() {
    let world = world().await;
    world.item("a", 10, 100).await;
    let json = (world
        .checkout
        .place_stock("user-1", lines(&[("a", 1)]), &mut Rider::default()))
    .await
    .expect("reserved");
    let view = view_of(&json);
    let again = Placed {
        user_id: "user-2".into(),
        source: view.source.clone(),
        items: view.items.clone(),
        expires_at_ms: T0 + 1,
        created_at_ms: T0,
    };
    let place = OrderCommand::Place(again);
    let refused = world.orders.ask(&view.id, place, None).await;
    assert_eq!(refused.expect_err("born once").code, ErrorCode::Conflict);
    let now = world.orders.ask(&view.id, OrderCommand::Get, None).await;
    assert_eq!(now.expect("still there"), view);
    let inspection = world.orders.inspect(&view.id).await.expect("inspects");
    assert_eq!(inspection.last_seq, 1);
}

/// What an order is born with, as a placement at `T0` would have it.
fn placed() -> Placed {
    Placed {
        user_id: "user-1".into(),
        source: Source {
            kind: SourceKind::Stock,
            id: "a".into(),
        },
        items: vec![OrderItem {
            reference: "a".into(),
            quantity: 2,
            unit_price: 100,
        }],
        expires_at_ms: T0 + 600_000,
        created_at_ms: T0,
    }
}

#[tokio::test]
async fn a_birth_writes_what_the_orders_own_actor_writes_for_its_place() {
    let world = world().await;
    let id = OrderId::new_v7().to_string();
    let reply = world
        .orders
        .ask(&id, OrderCommand::Place(placed()), None)
        .await;
    let reply = reply.expect("a blank order is placed");

    let Birth { batch, view, json } = birth(&id, placed());
    assert_eq!(reply, view);
    let pid = format!("order:{id}");
    let (_, events) = world.store.load(&pid).await.expect("loads");
    assert_eq!(events, batch.events);
    assert_eq!((events[0].seq, events[0].at_ms), (1, T0));
    let due = world.store.due_deadlines(i64::MAX, None, 10).await;
    assert_eq!(due.expect("reads"), vec![(pid, T0 + 600_000)]);
    let rows = world.order_rows().await.read_rows;
    assert_eq!(rows, batch.read_rows);
    assert_eq!(json, rows[0].body);
}

#[tokio::test]
async fn the_riders_rows_commit_with_the_birth_and_hold_the_order() {
    let world = world().await;
    world.item("a", 10, 100).await;
    let record_key = crate::persistence::IdempotencyRecord {
        scope: "user-1".into(),
        key: "key-1".into(),
        fingerprint: "f".into(),
        status: 201,
        body: Vec::new(),
        created_at_ms: 0,
    };
    let rows: BirthRows = Arc::new(move |json: &str, now_ms: i64| {
        let mut batch = Batch::default();
        batch
            .idempotency
            .push(crate::persistence::IdempotencyRecord {
                body: json.as_bytes().to_vec(),
                created_at_ms: now_ms,
                ..record_key.clone()
            });
        batch
    });
    let mut rider = Rider {
        birth_rows: Some(rows),
        hold: None,
    };
    let json = (world
        .checkout
        .place_stock("user-1", lines(&[("a", 2)]), &mut rider))
    .await
    .expect("reserved");

    let record = world
        .store
        .idempotency_get("user-1", "key-1", Lookup::Everywhere)
        .await;
    let record = record.expect("reads").expect("committed with the birth");
    assert_eq!(
        (record.body, record.created_at_ms),
        (json.clone().into_bytes(), T0)
    );
    let view = view_of(&json);
    let expected = birth(&view.id, placed());
    assert_eq!(world.order_rows().await.read_rows, expected.batch.read_rows);
}
