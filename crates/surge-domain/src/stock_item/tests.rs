//! StockItem: unit tests of each command, then properties over random command sequences with
//! a clock that only moves forward.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::codec;
use crate::expiring_holds::EXPIRE_BATCH_MAX;
use crate::OrderId;

const SKU: &str = "sku-1";
/// 2023-11-14T22:13:20Z, so time stays far from 0 and from overflow.
const T0: i64 = 1_700_000_000_000;

/// Runs a command the way the actor does: decide, apply every event, check the invariants.
fn run(
    item: &mut StockItem,
    command: &StockCommand,
    now_ms: i64,
) -> Result<Decision<StockItem>, Rejection> {
    let decision = item.decide(command, &Ctx { now_ms })?;
    for event in &decision.events {
        item.apply(event);
        if let Err(violation) = item.check_invariants() {
            panic!("invariant broken after {event:?} (from {command:?}): {violation}");
        }
    }
    if let Err(violation) = item.check_deep_invariants() {
        panic!("deep invariant broken after {command:?}: {violation}");
    }
    Ok(decision)
}

fn ok(item: &mut StockItem, command: StockCommand, now_ms: i64) -> Decision<StockItem> {
    run(item, &command, now_ms).unwrap_or_else(|e| panic!("{command:?} rejected: {e}"))
}

/// The command must be rejected with `code`, and leave the item as it was.
fn rejected(item: &mut StockItem, command: StockCommand, now_ms: i64, code: ErrorCode) {
    let before = item.clone();
    match run(item, &command, now_ms) {
        Ok(decision) => panic!("{command:?} accepted: {decision:?}"),
        Err(e) => assert_eq!(e.code, code, "{command:?} rejected with {e}"),
    }
    assert_eq!(*item, before, "a rejected {command:?} changed the item");
}

fn create(on_hand: i64, safety_stock: i64) -> StockCommand {
    StockCommand::Create {
        name: "Blue mug".into(),
        on_hand,
        safety_stock,
        price: 1_200,
    }
}

fn item_with(on_hand: i64, safety_stock: i64) -> StockItem {
    let mut item = StockItem::blank(SKU);
    ok(&mut item, create(on_hand, safety_stock), T0);
    item
}

/// Order ids are u128 (UUIDs); keep the high bits set so encoding is exercised in full.
fn order(n: u128) -> OrderId {
    OrderId::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000_u128 | n)
}

fn reserve(n: u128, quantity: i64, expires_at_ms: i64) -> StockCommand {
    StockCommand::Reserve {
        order: order(n),
        quantity,
        expires_at_ms,
    }
}

fn release(n: u128) -> StockCommand {
    StockCommand::Release {
        order: order(n),
        reason: ReleaseReason::Cancelled,
    }
}

fn commit(n: u128) -> StockCommand {
    StockCommand::Commit { order: order(n) }
}

fn adjust(delta: i64) -> StockCommand {
    StockCommand::Adjust {
        delta,
        reason: "count".into(),
    }
}

/// Encodes a snapshot, decodes it and restores its indexes, as recovery does.
fn snapshot_round_trip(item: &StockItem) -> StockItem {
    let bytes = codec::encode(StockItem::VERSION, item);
    let mut loaded: StockItem = codec::decode(StockItem::VERSION, &bytes).expect("decodes");
    loaded.restore();
    loaded
}

#[test]
fn creating_then_getting_shows_the_new_item() {
    let mut item = StockItem::blank(SKU);
    assert!(!item.exists());
    let created = ok(&mut item, create(10, 2), T0);
    assert_eq!(
        created.events,
        vec![StockEvent::Created {
            name: "Blue mug".into(),
            on_hand: 10,
            safety_stock: 2,
            price: 1_200,
        }]
    );
    assert!(item.exists());
    let expected = StockView {
        sku: SKU.into(),
        name: "Blue mug".into(),
        on_hand: 10,
        reserved: 0,
        available: 10,
        sold: 0,
        safety_stock: 2,
        price: 1_200,
        version: 1,
    };
    assert_eq!(created.reply, expected);
    let got = ok(&mut item, StockCommand::Get, T0);
    assert!(got.events.is_empty());
    assert_eq!(got.reply, expected);
    assert_eq!(item.next_deadline_ms(), None);
}

#[test]
fn creating_twice_is_a_conflict() {
    let mut item = item_with(10, 0);
    rejected(&mut item, create(99, 0), T0, ErrorCode::Conflict);
    assert_eq!(item.on_hand, 10);
}

#[test]
fn commands_on_an_item_never_created_are_not_found() {
    let commands = [
        StockCommand::Get,
        adjust(5),
        reserve(1, 1, T0 + 1_000),
        release(1),
        commit(1),
        StockCommand::ExpireDue,
    ];
    for command in commands {
        let mut item = StockItem::blank(SKU);
        rejected(&mut item, command, T0, ErrorCode::NotFound);
        assert_eq!(item, StockItem::blank(SKU));
    }
}

#[test]
fn negative_quantities_or_prices_at_creation_are_rejected() {
    let invalid = [
        create(-1, 0),
        create(10, -1),
        StockCommand::Create {
            name: "Blue mug".into(),
            on_hand: 10,
            safety_stock: 0,
            price: -1,
        },
    ];
    for command in invalid {
        let mut item = StockItem::blank(SKU);
        rejected(&mut item, command, T0, ErrorCode::ValidationFailed);
        assert!(!item.exists());
    }
    let mut item = StockItem::blank(SKU);
    ok(&mut item, create(0, 0), T0);
    assert_eq!(item.available(), 0);
}

#[test]
fn reserving_reduces_available() {
    let mut item = item_with(10, 0);
    let decision = ok(&mut item, reserve(1, 3, T0 + 60_000), T0);
    assert_eq!(
        decision.events,
        vec![StockEvent::Reserved {
            order: order(1),
            quantity: 3,
            expires_at_ms: T0 + 60_000,
        }]
    );
    assert_eq!((item.on_hand, item.reserved, item.available()), (10, 3, 7));
    assert_eq!(decision.reply, item.view());
    assert_eq!(
        item.reservation(order(1)),
        Some(Reservation {
            quantity: 3,
            expires_at_ms: T0 + 60_000,
        })
    );
    assert_eq!(item.version, 2);
}

#[test]
fn reserving_more_than_available_is_rejected() {
    let mut item = item_with(5, 0);
    rejected(
        &mut item,
        reserve(1, 6, T0 + 1_000),
        T0,
        ErrorCode::InsufficientStock,
    );
    ok(&mut item, reserve(1, 5, T0 + 1_000), T0);
    assert_eq!(item.available(), 0);
    rejected(
        &mut item,
        reserve(2, 1, T0 + 1_000),
        T0,
        ErrorCode::InsufficientStock,
    );
}

#[test]
fn reserving_less_than_one_unit_is_rejected() {
    let mut item = item_with(5, 0);
    rejected(
        &mut item,
        reserve(1, 0, T0 + 1_000),
        T0,
        ErrorCode::ValidationFailed,
    );
    rejected(
        &mut item,
        reserve(1, -1, T0 + 1_000),
        T0,
        ErrorCode::ValidationFailed,
    );
}

#[test]
fn reserving_twice_for_the_same_order_takes_the_units_once() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 3, T0 + 1_000), T0);
    let before = item.clone();
    // A retry, even one with another quantity or expiry, answers with the item as it is.
    let again = ok(&mut item, reserve(1, 4, T0 + 9_000), T0 + 10);
    assert!(again.events.is_empty());
    assert_eq!(item, before);
    assert_eq!(again.reply, item.view());
    assert_eq!(item.reserved, 3);
    assert_eq!(
        item.reservation(order(1)).map(|r| r.expires_at_ms),
        Some(T0 + 1_000)
    );
}

#[test]
fn the_safety_stock_is_never_reserved() {
    let mut item = item_with(10, 3);
    assert_eq!(item.reservable(), 7);
    rejected(
        &mut item,
        reserve(1, 8, T0 + 1_000),
        T0,
        ErrorCode::InsufficientStock,
    );
    ok(&mut item, reserve(1, 7, T0 + 1_000), T0);
    assert_eq!((item.available(), item.reservable()), (3, 0));
    rejected(
        &mut item,
        reserve(2, 1, T0 + 1_000),
        T0,
        ErrorCode::InsufficientStock,
    );
    // A write-off into the safety stock leaves nothing reservable, never a negative amount.
    ok(&mut item, adjust(-2), T0);
    assert_eq!((item.available(), item.reservable()), (1, 0));
    rejected(
        &mut item,
        reserve(2, 1, T0 + 1_000),
        T0,
        ErrorCode::InsufficientStock,
    );
}

#[test]
fn releasing_returns_the_units() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    let decision = ok(&mut item, release(1), T0 + 10);
    assert_eq!(
        decision.events,
        vec![StockEvent::Released {
            order: order(1),
            quantity: 4,
            reason: ReleaseReason::Cancelled,
        }]
    );
    assert_eq!((item.on_hand, item.reserved, item.available()), (10, 0, 10));
    assert_eq!(item.reservation(order(1)), None);
    assert_eq!(item.next_deadline_ms(), None);
    // Released units can be reserved again, by the same order too.
    ok(&mut item, reserve(1, 10, T0 + 2_000), T0 + 10);
}

#[test]
fn releasing_replies_with_the_units_back() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    let decision = ok(&mut item, release(1), T0 + 10);
    assert_eq!(decision.reply, item.view());
    assert_eq!(decision.reply.available, 10);
}

#[test]
fn releasing_an_unknown_order_changes_nothing() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    let before = item.clone();
    let decision = ok(&mut item, release(2), T0);
    assert!(decision.events.is_empty());
    assert_eq!(decision.reply, item.view());
    assert_eq!(item, before);
    // Releasing twice is the same: the second one finds nothing to give back.
    ok(&mut item, release(1), T0);
    let after_first = item.clone();
    assert!(ok(&mut item, release(1), T0).events.is_empty());
    assert_eq!(item, after_first);
}

#[test]
fn committing_moves_the_units_to_sold() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    let decision = ok(&mut item, commit(1), T0 + 999);
    assert_eq!(
        decision.events,
        vec![StockEvent::Committed {
            order: order(1),
            quantity: 4,
        }]
    );
    let counters = (item.on_hand, item.reserved, item.sold, item.available());
    assert_eq!(counters, (6, 0, 4, 6));
    assert_eq!(item.reservation(order(1)), None);
    assert_eq!(item.next_deadline_ms(), None);
}

#[test]
fn committing_replies_with_the_units_sold() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    let decision = ok(&mut item, commit(1), T0 + 10);
    assert_eq!(decision.reply, item.view());
    assert_eq!(decision.reply.sold, 4);
}

#[test]
fn committing_the_same_order_twice_sells_its_units_once() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    ok(&mut item, commit(1), T0 + 10);
    let before = item.clone();
    // The reservation is gone, so a repeated commit cannot take the units a second time.
    let _ = run(&mut item, &commit(1), T0 + 20);
    assert_eq!(item, before);
    assert_eq!(item.sold, 4);
}

#[test]
fn committing_after_expiry_is_rejected() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    // The reservation lasts up to, not including, its expiry.
    rejected(&mut item, commit(1), T0 + 1_000, ErrorCode::OrderExpired);
    rejected(&mut item, commit(1), T0 + 5_000, ErrorCode::OrderExpired);
    assert_eq!(item.sold, 0);
    rejected(&mut item, commit(2), T0, ErrorCode::OrderExpired);
}

#[test]
fn committing_a_released_reservation_is_rejected() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    ok(&mut item, release(1), T0);
    rejected(&mut item, commit(1), T0 + 1, ErrorCode::OrderExpired);
    assert_eq!((item.on_hand, item.sold), (10, 0));
}

#[test]
fn expire_due_releases_exactly_the_reservations_due_now() {
    let mut item = item_with(20, 0);
    ok(&mut item, reserve(3, 3, T0 + 300), T0);
    ok(&mut item, reserve(1, 1, T0 + 100), T0);
    ok(&mut item, reserve(2, 2, T0 + 200), T0);
    assert!(ok(&mut item, StockCommand::ExpireDue, T0 + 99)
        .events
        .is_empty());
    assert_eq!(item.reserved, 6);

    let decision = ok(&mut item, StockCommand::ExpireDue, T0 + 200);
    let released: BTreeSet<(OrderId, i64)> = decision
        .events
        .iter()
        .map(|e| match e {
            StockEvent::Released {
                order,
                quantity,
                reason: ReleaseReason::Expired,
            } => (*order, *quantity),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(released, BTreeSet::from([(order(1), 1), (order(2), 2)]));
    assert_eq!(decision.events.len(), 2);
    assert_eq!((item.reserved, item.available()), (3, 17));
    assert_eq!(item.reservation(order(3)).map(|r| r.quantity), Some(3));
    assert_eq!(item.next_deadline_ms(), Some(T0 + 300));
}

#[test]
fn expire_due_replies_with_the_units_back() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 100), T0);
    let decision = ok(&mut item, StockCommand::ExpireDue, T0 + 100);
    assert_eq!(decision.events.len(), 1);
    assert_eq!(decision.reply, item.view());
    assert_eq!(decision.reply.available, 10);
}

#[test]
fn expire_due_releases_at_most_one_batch_per_step() {
    let mut item = item_with(2_000, 0);
    let count = u128::try_from(EXPIRE_BATCH_MAX).expect("fits") + 1;
    for n in 0..count {
        ok(&mut item, reserve(n, 1, T0 + 100), T0);
    }
    let first = ok(&mut item, StockCommand::ExpireDue, T0 + 100);
    assert_eq!(first.events.len(), EXPIRE_BATCH_MAX);
    assert_eq!(item.reserved, 1);
    assert_eq!(
        item.deadline_command(&Ctx { now_ms: T0 + 100 }),
        Some(StockCommand::ExpireDue)
    );
    let second = ok(&mut item, StockCommand::ExpireDue, T0 + 100);
    assert_eq!(second.events.len(), 1);
    assert_eq!((item.reserved, item.next_deadline_ms()), (0, None));
}

#[test]
fn the_next_deadline_is_the_earliest_open_expiry() {
    let mut item = item_with(20, 0);
    assert_eq!(item.next_deadline_ms(), None);
    ok(&mut item, reserve(1, 1, T0 + 500), T0);
    assert_eq!(item.next_deadline_ms(), Some(T0 + 500));
    ok(&mut item, reserve(2, 1, T0 + 200), T0);
    ok(&mut item, reserve(3, 1, T0 + 900), T0);
    assert_eq!(item.next_deadline_ms(), Some(T0 + 200));
    ok(&mut item, release(2), T0);
    assert_eq!(item.next_deadline_ms(), Some(T0 + 500));
    ok(&mut item, commit(1), T0 + 1);
    assert_eq!(item.next_deadline_ms(), Some(T0 + 900));
    ok(&mut item, release(3), T0 + 1);
    assert_eq!(item.next_deadline_ms(), None);
}

#[test]
fn the_deadline_command_is_due_only_at_the_deadline() {
    let mut item = item_with(20, 0);
    assert_eq!(
        item.deadline_command(&Ctx {
            now_ms: T0 + 1_000_000
        }),
        None
    );
    ok(&mut item, reserve(1, 1, T0 + 500), T0);
    assert_eq!(item.deadline_command(&Ctx { now_ms: T0 + 499 }), None);
    let due = Some(StockCommand::ExpireDue);
    assert_eq!(item.deadline_command(&Ctx { now_ms: T0 + 500 }), due);
    assert_eq!(item.deadline_command(&Ctx { now_ms: T0 + 501 }), due);
    ok(&mut item, StockCommand::ExpireDue, T0 + 500);
    assert_eq!(item.deadline_command(&Ctx { now_ms: T0 + 501 }), None);
}

#[test]
fn adjusting_moves_on_hand_up_and_down() {
    let mut item = item_with(10, 0);
    let up = ok(&mut item, adjust(5), T0);
    assert_eq!(
        up.events,
        vec![StockEvent::Adjusted {
            delta: 5,
            reason: "count".into(),
        }]
    );
    assert_eq!(up.reply, item.view());
    assert_eq!(item.on_hand, 15);
    let down = ok(&mut item, adjust(-15), T0);
    assert_eq!(down.reply, item.view());
    assert_eq!((item.on_hand, item.available(), item.sold), (0, 0, 0));
}

#[test]
fn an_adjustment_that_would_overflow_or_pass_the_bound_is_rejected() {
    let mut item = item_with(10, 0);
    rejected(
        &mut item,
        adjust(i64::MIN),
        T0,
        ErrorCode::InsufficientStock,
    );
    for delta in [i64::MAX, ON_HAND_MAX - 9] {
        rejected(&mut item, adjust(delta), T0, ErrorCode::ValidationFailed);
    }
    ok(&mut item, adjust(ON_HAND_MAX - 10), T0);
    assert_eq!(item.on_hand, ON_HAND_MAX);
    rejected(&mut item, adjust(1), T0, ErrorCode::ValidationFailed);
    assert_eq!(item.on_hand, ON_HAND_MAX, "nothing changed");
    let mut fresh = StockItem::blank(SKU);
    rejected(
        &mut fresh,
        create(ON_HAND_MAX + 1, 0),
        T0,
        ErrorCode::ValidationFailed,
    );
}

#[test]
fn an_adjustment_below_available_is_rejected() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 1_000), T0);
    rejected(&mut item, adjust(-7), T0, ErrorCode::InsufficientStock);
    ok(&mut item, adjust(-6), T0);
    assert_eq!((item.on_hand, item.reserved, item.available()), (4, 4, 0));
    rejected(&mut item, adjust(-1), T0, ErrorCode::InsufficientStock);
    // The reservation is intact and can still be sold.
    ok(&mut item, commit(1), T0 + 1);
    assert_eq!((item.on_hand, item.sold), (0, 4));
}

#[test]
fn a_snapshot_round_trip_keeps_the_state_and_the_expiry_index() {
    let mut item = item_with(30, 2);
    ok(&mut item, reserve(1, 3, T0 + 700), T0);
    ok(&mut item, reserve(2, 5, T0 + 300), T0);
    ok(&mut item, reserve(3, 1, T0 + 900), T0);
    ok(&mut item, commit(3), T0 + 1);
    ok(&mut item, adjust(4), T0 + 1);

    let bytes = codec::encode(StockItem::VERSION, &item);
    assert_eq!(bytes[0], StockItem::VERSION);
    let mut loaded: StockItem = codec::decode(StockItem::VERSION, &bytes).expect("decodes");
    // The index is not stored, but decoding rebuilds it: no step can forget the deadlines.
    assert_eq!(loaded, item);
    assert_eq!(loaded.next_deadline_ms(), Some(T0 + 300));
    loaded
        .check_deep_invariants()
        .expect("deep invariants after decoding");
    loaded.restore();
    assert_eq!(loaded, item);
    // The restored item expires what the original would.
    let original = ok(&mut item, StockCommand::ExpireDue, T0 + 700);
    let restored = ok(&mut loaded, StockCommand::ExpireDue, T0 + 700);
    assert_eq!(restored.events, original.events);
    assert_eq!(loaded, item);
}

#[test]
fn every_event_round_trips_through_the_codec() {
    let mut events = vec![
        StockEvent::Created {
            name: "Blue mug, 350 ml".into(),
            on_hand: 10,
            safety_stock: 1,
            price: 1_200,
        },
        StockEvent::Adjusted {
            delta: -3,
            reason: "broken in transit".into(),
        },
        StockEvent::Reserved {
            order: OrderId::from_u128(u128::MAX),
            quantity: 2,
            expires_at_ms: T0 + 600_000,
        },
        StockEvent::Committed {
            order: order(7),
            quantity: 2,
        },
    ];
    for reason in [
        ReleaseReason::Cancelled,
        ReleaseReason::Expired,
        ReleaseReason::Compensated,
    ] {
        events.push(StockEvent::Released {
            order: order(9),
            quantity: 1,
            reason,
        });
    }
    for event in events {
        let bytes = codec::encode(StockItem::VERSION, &event);
        let decoded: StockEvent = codec::decode(StockItem::VERSION, &bytes).expect("decodes");
        assert_eq!(decoded, event);
        let other_version = StockItem::VERSION.wrapping_add(1);
        assert!(codec::decode::<StockEvent>(other_version, &bytes).is_err());
    }
}

#[test]
fn open_reservations_are_counted_and_weigh_the_snapshot() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 1, T0 + 100), T0);
    ok(&mut item, reserve(2, 1, T0 + 100), T0);
    assert_eq!(item.open_reservations(), 2);
    assert_eq!(item.available(), 8);
    assert_eq!(item.snapshot_weight(), 2);
}

// ---------------------------------------------------------------------------------------------
// Properties over random command sequences.

/// A command of a random sequence, with the time that passes before it.
#[derive(Debug, Clone)]
enum Op {
    Reserve {
        order: u128,
        quantity: i64,
        ttl_ms: i64,
    },
    Release {
        order: u128,
        reason: ReleaseReason,
    },
    Commit {
        order: u128,
    },
    Adjust {
        delta: i64,
    },
    Return {
        order: u128,
        quantity: i64,
    },
    ExpireDue,
    Get,
    Create,
}

fn op() -> impl Strategy<Value = Op> {
    let reason = prop_oneof![
        Just(ReleaseReason::Cancelled),
        Just(ReleaseReason::Expired),
        Just(ReleaseReason::Compensated),
    ];
    prop_oneof![
        6 => (0u128..20, -1i64..10, 1i64..=10_000)
            .prop_map(|(order, quantity, ttl_ms)| Op::Reserve { order, quantity, ttl_ms }),
        2 => (0u128..20, reason).prop_map(|(order, reason)| Op::Release { order, reason }),
        3 => (0u128..20).prop_map(|order| Op::Commit { order }),
        3 => (-20i64..20).prop_map(|delta| Op::Adjust { delta }),
        1 => (0u128..20, -1i64..6).prop_map(|(order, quantity)| Op::Return { order, quantity }),
        2 => Just(Op::ExpireDue),
        1 => Just(Op::Get),
        1 => Just(Op::Create),
    ]
}

fn steps() -> impl Strategy<Value = Vec<(i64, Op)>> {
    prop::collection::vec((0i64..5_000, op()), 0..60)
}

fn command(op: &Op, now_ms: i64) -> StockCommand {
    match op {
        Op::Reserve {
            order: n,
            quantity,
            ttl_ms,
        } => reserve(*n, *quantity, now_ms + ttl_ms),
        Op::Release { order: n, reason } => StockCommand::Release {
            order: order(*n),
            reason: *reason,
        },
        Op::Commit { order: n } => commit(*n),
        Op::Adjust { delta } => adjust(*delta),
        Op::Return { order: n, quantity } => StockCommand::Return {
            order: order(*n),
            quantity: *quantity,
        },
        Op::ExpireDue => StockCommand::ExpireDue,
        Op::Get => StockCommand::Get,
        Op::Create => create(5, 0),
    }
}

/// The commands of a sequence with their times, the clock starting at `T0`.
fn timeline(steps: &[(i64, Op)]) -> Vec<(StockCommand, i64)> {
    let mut now_ms = T0;
    steps
        .iter()
        .map(|(advance_ms, op)| {
            now_ms += advance_ms;
            (command(op, now_ms), now_ms)
        })
        .collect()
}

/// What a stock item must do, written as plainly as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    on_hand: i64,
    reserved: i64,
    sold: i64,
    safety_stock: i64,
    open: BTreeMap<OrderId, Reservation>,
}

impl Model {
    fn new(on_hand: i64, safety_stock: i64) -> Model {
        Model {
            on_hand,
            reserved: 0,
            sold: 0,
            safety_stock,
            open: BTreeMap::new(),
        }
    }

    fn of(item: &StockItem) -> Model {
        Model {
            on_hand: item.on_hand,
            reserved: item.reserved,
            sold: item.sold,
            safety_stock: item.safety_stock,
            open: item.reservations.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }

    fn step(&mut self, command: &StockCommand, now_ms: i64) -> Result<(), ErrorCode> {
        match command {
            StockCommand::Create { .. } => Err(ErrorCode::Conflict),
            StockCommand::Get => Ok(()),
            StockCommand::Adjust { delta, .. } => {
                if self.on_hand - self.reserved + delta < 0 {
                    return Err(ErrorCode::InsufficientStock);
                }
                self.on_hand += delta;
                Ok(())
            }
            StockCommand::Reserve {
                order,
                quantity,
                expires_at_ms,
            } => {
                if self.open.contains_key(order) {
                    return Ok(());
                }
                if *quantity < 1 {
                    return Err(ErrorCode::ValidationFailed);
                }
                if *quantity > self.on_hand - self.reserved - self.safety_stock {
                    return Err(ErrorCode::InsufficientStock);
                }
                self.reserved += quantity;
                let reservation = Reservation {
                    quantity: *quantity,
                    expires_at_ms: *expires_at_ms,
                };
                self.open.insert(*order, reservation);
                Ok(())
            }
            StockCommand::Release { order, .. } => {
                if let Some(r) = self.open.remove(order) {
                    self.reserved -= r.quantity;
                }
                Ok(())
            }
            StockCommand::Commit { order } => match self.open.get(order).copied() {
                Some(r) if r.expires_at_ms > now_ms => {
                    self.open.remove(order);
                    self.reserved -= r.quantity;
                    self.on_hand -= r.quantity;
                    self.sold += r.quantity;
                    Ok(())
                }
                _ => Err(ErrorCode::OrderExpired),
            },
            StockCommand::Return { quantity, .. } => {
                if !(1..=self.sold).contains(quantity) {
                    return Err(ErrorCode::ValidationFailed);
                }
                self.sold -= quantity;
                self.on_hand += quantity;
                Ok(())
            }
            StockCommand::ExpireDue => {
                let due: Vec<OrderId> = self
                    .open
                    .iter()
                    .filter(|(_, r)| r.expires_at_ms <= now_ms)
                    .map(|(order, _)| *order)
                    .collect();
                for order in due {
                    let r = self.open.remove(&order).expect("listed above");
                    self.reserved -= r.quantity;
                }
                Ok(())
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_stock_commands_keep_every_invariant(
        on_hand in 0i64..60,
        safety_stock in 0i64..5,
        steps in steps(),
    ) {
        let mut item = item_with(on_hand, safety_stock);
        let mut adjusted = 0i64;
        for (command, now_ms) in timeline(&steps) {
            let sold_before = item.sold;
            let outcome = run(&mut item, &command, now_ms);
            if let (Ok(decision), StockCommand::Adjust { delta, .. }) = (&outcome, &command) {
                prop_assert_eq!(decision.events.len(), 1);
                adjusted += delta;
            }
            if let (Ok(decision), StockCommand::Reserve { .. }) = (&outcome, &command) {
                if !decision.events.is_empty() {
                    prop_assert!(item.available() >= item.safety_stock, "reserved into safety stock");
                }
            }
            if let (Ok(_), StockCommand::ExpireDue) = (&outcome, &command) {
                prop_assert!(item.next_deadline_ms().is_none_or(|at| at > now_ms));
            }
            prop_assert!(item.available() >= 0);
            let returned = matches!(command, StockCommand::Return { .. }) && outcome.is_ok();
            prop_assert!(item.sold >= sold_before || returned, "sold went down");
            prop_assert_eq!(item.on_hand + item.sold, on_hand + adjusted, "units not conserved");
            let sum: i64 = item.reservations.values().map(|r| r.quantity).sum();
            prop_assert_eq!(item.reserved, sum);
            prop_assert_eq!(item.reservations.check(), Ok(()));
            let earliest = item.reservations.values().map(|r| r.expires_at_ms).min();
            prop_assert_eq!(item.next_deadline_ms(), earliest);
        }
    }

    #[test]
    fn rejected_stock_commands_change_nothing(
        on_hand in 0i64..30,
        safety_stock in 0i64..5,
        steps in steps(),
    ) {
        let mut item = item_with(on_hand, safety_stock);
        for (command, now_ms) in timeline(&steps) {
            let before = item.clone();
            match run(&mut item, &command, now_ms) {
                Err(_) => prop_assert_eq!(&item, &before, "rejected {:?} changed state", command),
                Ok(decision) if decision.events.is_empty() => {
                    prop_assert_eq!(&item, &before, "{:?} changed state without events", command);
                    prop_assert_eq!(decision.reply, item.view());
                }
                Ok(decision) => {
                    let count = u64::try_from(decision.events.len()).expect("fits");
                    prop_assert_eq!(item.version, before.version + count);
                }
            }
        }
    }

    #[test]
    fn stock_commands_match_a_reference_model(
        on_hand in 0i64..60,
        safety_stock in 0i64..5,
        steps in steps(),
    ) {
        let mut item = item_with(on_hand, safety_stock);
        let mut model = Model::new(on_hand, safety_stock);
        for (command, now_ms) in timeline(&steps) {
            let expected = model.step(&command, now_ms);
            let actual = run(&mut item, &command, now_ms).map(|_| ()).map_err(|e| e.code);
            prop_assert_eq!(actual, expected, "outcome of {:?} at {}", command, now_ms);
            prop_assert_eq!(Model::of(&item), model.clone(), "state after {:?}", command);
        }
    }

    #[test]
    fn an_accepted_stock_reply_shows_the_item_after_its_events(
        on_hand in 0i64..60,
        safety_stock in 0i64..5,
        steps in steps(),
    ) {
        let mut item = item_with(on_hand, safety_stock);
        for (command, now_ms) in timeline(&steps) {
            if let Ok(decision) = run(&mut item, &command, now_ms) {
                prop_assert_eq!(decision.reply, item.view(), "reply to {:?}", command);
            }
        }
    }

    #[test]
    fn a_snapshot_at_any_point_restores_an_equal_item(
        on_hand in 0i64..60,
        safety_stock in 0i64..5,
        steps in steps(),
        cut in any::<prop::sample::Index>(),
    ) {
        let timeline = timeline(&steps);
        let cut = cut.index(timeline.len() + 1);
        let mut item = item_with(on_hand, safety_stock);
        for (command, now_ms) in &timeline[..cut] {
            let _ = run(&mut item, command, *now_ms);
        }
        let mut loaded = snapshot_round_trip(&item);
        prop_assert_eq!(&loaded, &item);
        prop_assert_eq!(loaded.next_deadline_ms(), item.next_deadline_ms());
        prop_assert!(loaded.check_deep_invariants().is_ok());
        // From here on the restored item decides exactly as the original does.
        for (command, now_ms) in &timeline[cut..] {
            let original = run(&mut item, command, *now_ms);
            let restored = run(&mut loaded, command, *now_ms);
            prop_assert_eq!(restored, original);
            prop_assert_eq!(&loaded, &item);
        }
    }

    #[test]
    fn replaying_the_journal_rebuilds_the_same_item(
        on_hand in 0i64..60,
        safety_stock in 0i64..5,
        steps in steps(),
    ) {
        let mut item = StockItem::blank(SKU);
        let mut journal: Vec<Vec<u8>> = Vec::new();
        let mut commands = vec![(create(on_hand, safety_stock), T0)];
        commands.extend(timeline(&steps));
        for (command, now_ms) in &commands {
            if let Ok(decision) = run(&mut item, command, *now_ms) {
                journal.extend(
                    decision.events.iter().map(|e| codec::encode(StockItem::VERSION, e)),
                );
            }
        }
        let mut replayed = StockItem::blank(SKU);
        for bytes in &journal {
            let event: StockEvent = codec::decode(StockItem::VERSION, bytes).expect("decodes");
            replayed.apply(&event);
            prop_assert!(replayed.check_invariants().is_ok());
        }
        prop_assert!(replayed.check_deep_invariants().is_ok());
        prop_assert_eq!(replayed, item);
    }
}

#[test]
fn a_refunded_orders_units_return_to_the_shelf() {
    let mut item = item_with(10, 0);
    ok(&mut item, reserve(1, 4, T0 + 100), T0);
    ok(&mut item, commit(1), T0 + 1);
    assert_eq!((item.on_hand, item.sold), (6, 4));
    let back = StockCommand::Return {
        order: order(1),
        quantity: 4,
    };
    ok(&mut item, back, T0 + 2);
    assert_eq!((item.on_hand, item.sold, item.available()), (10, 0, 10));
    let too_many = StockCommand::Return {
        order: order(1),
        quantity: 1,
    };
    rejected(&mut item, too_many, T0 + 3, ErrorCode::ValidationFailed);
}
