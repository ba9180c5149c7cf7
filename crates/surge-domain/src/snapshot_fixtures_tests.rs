//! Snapshots written by earlier builds must still load: each entity with open holds, encoded
//! once and committed under tests/fixtures/snapshots, is decoded by this build and must come
//! back with its holds, its expiry index (next deadline, due scan) and its invariants.
//! `SURGE_WRITE_SNAPSHOT_FIXTURES=1` rewrites the files from the builders below; only do that
//! for a deliberate change of the snapshot format (and bump the entity's `VERSION`).

use std::path::PathBuf;

use super::seat_map::{
    EventTerms, RowTerms, SeatCommand, SeatEvent, SeatMap, SeatRequest, SectionTerms,
    HOLD_TTL_SECS_DEFAULT, MAX_SEATS_PER_ORDER_DEFAULT,
};
use super::stock_item::{ReleaseReason, StockCommand, StockEvent, StockItem};
use super::time_sale::{SaleCommand, SaleEvent, SaleTerms, TimeSale};
use super::{Ctx, Decision, Entity, OrderId};
use crate::codec;

/// 2023-11-14T22:13:20Z, as in the entities' own tests.
const T0: i64 = 1_700_000_000_000;

/// Runs a command the way the actor does: decide, then apply every event.
fn run<E: Entity>(entity: &mut E, command: E::Command, now_ms: i64) -> Decision<E> {
    let decision = entity
        .decide(&command, &Ctx { now_ms })
        .unwrap_or_else(|e| panic!("{command:?} rejected: {e}"));
    decision.events.iter().for_each(|event| entity.apply(event));
    decision
}

/// The committed snapshot of `built`, decoded and restored as recovery does. With
/// `SURGE_WRITE_SNAPSHOT_FIXTURES` set, `built` is written first.
fn load_fixture<E: Entity>(built: &E) -> E {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/snapshots")
        .join(format!("{}.bin", E::KIND));
    if std::env::var_os("SURGE_WRITE_SNAPSHOT_FIXTURES").is_some() {
        std::fs::write(&path, codec::encode(E::VERSION, built)).expect("fixture written");
    }
    let bytes = std::fs::read(&path).expect("the fixture is committed");
    let mut loaded: E = codec::decode(E::VERSION, &bytes).expect("the fixture decodes");
    loaded.restore();
    loaded
        .check_deep_invariants()
        .expect("deep invariants of the loaded fixture");
    loaded
}

/// Orders 11 (3 units, due +700), 12 (5, +300), 14 (2, +300) open; 13 committed.
fn stock_item_with_reservations() -> StockItem {
    let mut item = StockItem::blank("sku-fixture");
    let create = StockCommand::Create {
        name: "Fixture".into(),
        on_hand: 50,
        safety_stock: 0,
        price: 1_000,
    };
    run(&mut item, create, T0);
    for (order, quantity, due_ms) in [(11, 3, 700), (12, 5, 300), (13, 1, 900), (14, 2, 300)] {
        let reserve = StockCommand::Reserve {
            order: OrderId::from_u128(order),
            quantity,
            expires_at_ms: T0 + due_ms,
        };
        run(&mut item, reserve, T0);
    }
    run(
        &mut item,
        StockCommand::Commit {
            order: OrderId::from_u128(13),
        },
        T0 + 1,
    );
    item
}

#[test]
fn a_stock_item_snapshot_from_before_keeps_its_reservations_and_their_deadlines() {
    let built = stock_item_with_reservations();
    let mut loaded = load_fixture(&built);
    assert_eq!(loaded, built);
    assert_eq!((loaded.reserved, loaded.sold), (10, 1));
    let open = [11, 12, 14].map(|order| {
        loaded
            .reservation(OrderId::from_u128(order))
            .map(|r| r.quantity)
    });
    assert_eq!(open, [Some(3), Some(5), Some(2)]);
    assert_eq!(loaded.reservation(OrderId::from_u128(13)), None);
    assert_eq!(loaded.next_deadline_ms(), Some(T0 + 300));

    let due = run(&mut loaded, StockCommand::ExpireDue, T0 + 300);
    let released = |order, quantity| StockEvent::Released {
        order,
        quantity,
        reason: ReleaseReason::Expired,
    };
    assert_eq!(
        due.events,
        vec![
            released(OrderId::from_u128(12), 5),
            released(OrderId::from_u128(14), 2)
        ]
    );
    assert_eq!(loaded.next_deadline_ms(), Some(T0 + 700));
    loaded.check_deep_invariants().expect("after the due scan");
}

const SALE_START: i64 = T0 + 1_000;
const SALE_PAY_MS: i64 = 10_000;

/// Open; orders 21 (u1, 2 units, due START + 10 s) and 22 (u2, 1, START + 5 ms + 10 s) held,
/// 23 (u3, 1) bought.
fn time_sale_with_holds() -> TimeSale {
    let mut sale = TimeSale::blank("sale-fixture");
    let terms = SaleTerms {
        product_id: "product-fixture".into(),
        quantity: 10,
        sale_price: 9_900,
        starts_at_ms: SALE_START,
        ends_at_ms: T0 + 100_000,
        per_user_limit: Some(3),
        queue_required: false,
    };
    run(&mut sale, SaleCommand::Create(terms), T0);
    run(&mut sale, SaleCommand::Advance, SALE_START);
    for (order, user, quantity, at_ms) in [(21, "u1", 2, 0), (22, "u2", 1, 5), (23, "u3", 1, 7)] {
        let now_ms = SALE_START + at_ms;
        let purchase = SaleCommand::Purchase {
            order: OrderId::from_u128(order),
            user_id: user.into(),
            quantity,
            expires_at_ms: now_ms + SALE_PAY_MS,
            queue_pass: false,
        };
        run(&mut sale, purchase, now_ms);
    }
    run(
        &mut sale,
        SaleCommand::Commit {
            order: OrderId::from_u128(23),
        },
        SALE_START + 8,
    );
    sale
}

#[test]
fn a_time_sale_snapshot_from_before_keeps_its_holds_and_their_deadlines() {
    let built = time_sale_with_holds();
    let mut loaded = load_fixture(&built);
    assert_eq!(loaded, built);
    assert_eq!((loaded.reserved, loaded.sold), (3, 1));
    let held = [21, 22].map(|order| {
        loaded
            .hold(OrderId::from_u128(order))
            .map(|h| (h.user_id.clone(), h.quantity))
    });
    assert_eq!(held, [Some(("u1".into(), 2)), Some(("u2".into(), 1))]);
    assert!(loaded.hold(OrderId::from_u128(23)).is_none());
    assert_eq!(loaded.units_of("u1"), 2);
    assert_eq!(loaded.next_deadline_ms(), Some(SALE_START + SALE_PAY_MS));

    let due = run(&mut loaded, SaleCommand::Advance, SALE_START + SALE_PAY_MS);
    let released = SaleEvent::Released {
        order: OrderId::from_u128(21),
        quantity: 2,
        reason: ReleaseReason::Expired,
    };
    assert_eq!(due.events, vec![released]);
    assert_eq!(
        loaded.next_deadline_ms(),
        Some(SALE_START + 5 + SALE_PAY_MS)
    );
    loaded.check_deep_invariants().expect("after the due scan");
}

const SEATS_OPEN: i64 = T0 + 1_000;
const SEAT_HOLD_MS: i64 = HOLD_TTL_SECS_DEFAULT * 1_000;

fn seat_ids(ids: &[&str]) -> SeatRequest {
    SeatRequest::ByIds(ids.iter().map(|id| id.to_string()).collect())
}

/// Section A of rows of 4 and 4 seats; orders 31 (A-1-1, A-1-2, held at OPEN) and 33 (A-2-1,
/// A-2-2, held at OPEN + 2 ms) held, 32 (A-2-4) sold.
fn seat_map_with_holds() -> SeatMap {
    let mut map = SeatMap::blank("event-fixture");
    let row = |r: i64| RowTerms {
        name: r.to_string(),
        seats: 4,
        price: 10_000 - 100 * r,
    };
    let terms = EventTerms {
        name: "Final".into(),
        venue: "Arena".into(),
        starts_at_ms: T0 + 10_000_000,
        sales_open_at_ms: Some(SEATS_OPEN),
        hold_ttl_secs: HOLD_TTL_SECS_DEFAULT,
        max_seats_per_order: MAX_SEATS_PER_ORDER_DEFAULT,
        queue_required: false,
        sections: vec![SectionTerms {
            name: "A".into(),
            rows: vec![row(1), row(2)],
        }],
    };
    run(&mut map, SeatCommand::Create(terms), T0);
    for (order, ids, at_ms) in [
        (31, &["A-1-1", "A-1-2"][..], 0),
        (32, &["A-2-4"][..], 1),
        (33, &["A-2-1", "A-2-2"][..], 2),
    ] {
        let hold = SeatCommand::Hold {
            order: OrderId::from_u128(order),
            user_id: format!("u{order}").into(),
            request: seat_ids(ids),
            queue_pass: false,
        };
        run(&mut map, hold, SEATS_OPEN + at_ms);
    }
    run(
        &mut map,
        SeatCommand::Commit {
            order: OrderId::from_u128(32),
        },
        SEATS_OPEN + 3,
    );
    map
}

#[test]
fn a_seat_map_snapshot_from_before_keeps_its_holds_and_their_deadlines() {
    let built = seat_map_with_holds();
    let mut loaded = load_fixture(&built);
    assert_eq!(loaded, built);
    let seats_of = |map: &SeatMap, order| map.hold(order).map(|h| h.seats.clone());
    assert_eq!(seats_of(&loaded, OrderId::from_u128(31)), Some(vec![0, 1]));
    assert_eq!(seats_of(&loaded, OrderId::from_u128(33)), Some(vec![4, 5]));
    assert_eq!(seats_of(&loaded, OrderId::from_u128(32)), None);
    assert_eq!((loaded.totals().held, loaded.totals().sold), (4, 1));
    assert_eq!(loaded.next_deadline_ms(), Some(SEATS_OPEN + SEAT_HOLD_MS));

    let due = run(&mut loaded, SeatCommand::Expire, SEATS_OPEN + SEAT_HOLD_MS);
    let released = SeatEvent::Released {
        order: OrderId::from_u128(31),
        reason: ReleaseReason::Expired,
    };
    assert_eq!(due.events, vec![released]);
    assert_eq!(
        loaded.next_deadline_ms(),
        Some(SEATS_OPEN + 2 + SEAT_HOLD_MS)
    );
    loaded.check_deep_invariants().expect("after the due scan");
}

/// A snapshot from before check-ins and returns existed: its sold seat checks in once, the
/// check-in survives a new snapshot, and a return gives the seat back.
#[test]
fn a_seat_map_snapshot_from_before_takes_check_ins_and_returns() {
    let mut loaded = load_fixture(&seat_map_with_holds());
    let order = OrderId::from_u128(32);
    let check_in = SeatCommand::CheckIn {
        order,
        seat: "A-2-4".into(),
    };
    run(&mut loaded, check_in.clone(), SEATS_OPEN + 4);
    assert!(loaded.checked_in(7));
    assert_eq!(
        loaded
            .decide(
                &check_in,
                &Ctx {
                    now_ms: SEATS_OPEN + 5
                }
            )
            .err()
            .map(|e| e.code),
        Some(crate::ErrorCode::AlreadyCheckedIn)
    );

    let bytes = codec::encode(SeatMap::VERSION, &loaded);
    let mut again: SeatMap = codec::decode(SeatMap::VERSION, &bytes).expect("decodes");
    again.restore();
    again
        .check_deep_invariants()
        .expect("deep invariants after a check-in");
    assert_eq!(again, loaded);

    let give_back = SeatCommand::Return {
        order,
        seats: vec!["A-2-4".into()],
    };
    run(&mut again, give_back, SEATS_OPEN + 6);
    assert_eq!((again.totals().held, again.totals().sold), (4, 0));
    assert!(!again.checked_in(7));
    again
        .check_deep_invariants()
        .expect("deep invariants after a return");
}
