//! Order: birth, replay, expiry and cancellation, then properties over random command
//! sequences with a clock that only moves forward.

use proptest::prelude::*;

use super::*;
use crate::codec;

const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;
const TTL_MS: i64 = 600_000;

/// Runs a command the way the actor does: decide, apply every event, check the invariants.
fn run(
    order: &mut Order,
    command: &OrderCommand,
    now_ms: i64,
) -> Result<Decision<Order>, Rejection> {
    let decision = order.decide(command, &Ctx { now_ms })?;
    for event in &decision.events {
        order.apply(event);
        if let Err(violation) = order.check_invariants() {
            panic!("invariant broken after {event:?} (from {command:?}): {violation}");
        }
    }
    if let Err(violation) = order.check_deep_invariants() {
        panic!("deep invariant broken after {command:?}: {violation}");
    }
    Ok(decision)
}

fn ok(order: &mut Order, command: OrderCommand, now_ms: i64) -> Decision<Order> {
    run(order, &command, now_ms).unwrap_or_else(|e| panic!("{command:?} rejected: {e}"))
}

/// The command must be rejected with `code`, and leave the order as it was.
fn rejected(order: &mut Order, command: OrderCommand, now_ms: i64, code: ErrorCode) {
    let before = order.clone();
    match run(order, &command, now_ms) {
        Ok(decision) => panic!("{command:?} accepted: {decision:?}"),
        Err(e) => assert_eq!(e.code, code, "{command:?} rejected with {e}"),
    }
    assert_eq!(*order, before, "a rejected {command:?} changed the order");
}

fn item(reference: &str, quantity: i64, unit_price: i64) -> OrderItem {
    OrderItem {
        reference: reference.into(),
        quantity,
        unit_price,
    }
}

fn placed_with(items: Vec<OrderItem>) -> Placed {
    Placed {
        user_id: "user-7".into(),
        source: Source {
            kind: SourceKind::Stock,
            id: "sku-1".into(),
        },
        items,
        expires_at_ms: T0 + TTL_MS,
        created_at_ms: T0,
    }
}

fn placed() -> Placed {
    placed_with(vec![item("sku-1", 2, 1_500), item("sku-2", 1, 990)])
}

/// The journal of an order just placed: its one `Placed` event, encoded.
fn birth_journal(placed: Placed) -> Vec<Vec<u8>> {
    vec![codec::encode(Order::VERSION, &OrderEvent::Placed(placed))]
}

/// Rebuilds the order from its journal, the way recovery reads it.
fn replay(journal: &[Vec<u8>], id: &str) -> Order {
    let mut order = Order::blank(id);
    for bytes in journal {
        let event: OrderEvent = codec::decode(Order::VERSION, bytes).expect("decodes");
        order.apply(&event);
        order.check_invariants().expect("invariants after replay");
    }
    order
}

fn born_with(placed: Placed) -> Order {
    replay(&birth_journal(placed), ID)
}

fn born() -> Order {
    born_with(placed())
}

#[test]
fn the_amount_is_the_sum_of_the_lines() {
    let lines = vec![
        item("seat-A1", 1, 4_000),
        item("seat-A2", 1, 4_000),
        item("x", 7, 0),
    ];
    let view = born_with(placed_with(lines)).view().expect("placed");
    assert_eq!((view.amount, view.card_amount), (8_000, 8_000));
}

#[test]
fn placing_a_blank_order_gives_it_birth() {
    let mut order = Order::blank(ID);
    let decision = ok(&mut order, OrderCommand::Place(placed()), T0);
    assert_eq!(decision.events, vec![OrderEvent::Placed(placed())]);
    assert_eq!(Some(decision.reply.clone()), order.view());
    assert_eq!(order, born());
}

#[test]
fn placing_an_existing_order_is_refused_as_a_conflict() {
    let mut order = born();
    rejected(
        &mut order,
        OrderCommand::Place(placed()),
        T0,
        ErrorCode::Conflict,
    );
    ok(&mut order, OrderCommand::Cancel, T0 + 1);
    let other = placed_with(vec![item("sku-9", 1, 10)]);
    rejected(
        &mut order,
        OrderCommand::Place(other),
        T0 + 2,
        ErrorCode::Conflict,
    );
}

#[test]
fn placing_lines_that_break_the_invariants_is_refused() {
    let no_user = Placed {
        user_id: UserId::from(String::new()),
        ..placed()
    };
    let broken = [
        placed_with(Vec::new()),
        placed_with(vec![item("sku-1", 0, 100)]),
        placed_with(vec![item("sku-1", 1, -1)]),
        no_user,
    ];
    for placed in broken {
        let mut order = Order::blank(ID);
        let place = OrderCommand::Place(placed);
        rejected(&mut order, place, T0, ErrorCode::ValidationFailed);
    }
}

#[test]
fn commands_on_an_order_never_placed_are_not_found() {
    for command in [
        OrderCommand::Get,
        OrderCommand::Expire,
        OrderCommand::Cancel,
    ] {
        let mut order = Order::blank(ID);
        rejected(&mut order, command, T0 + TTL_MS, ErrorCode::NotFound);
        assert_eq!(order, Order::blank(ID));
    }
    let blank = Order::blank(ID);
    assert!(!blank.exists());
    assert_eq!(blank.view(), None);
    assert_eq!(blank.next_deadline_ms(), None);
    assert_eq!(blank.deadline_command(&Ctx { now_ms: T0 }), None);
}

#[test]
fn expiring_before_the_deadline_does_nothing() {
    let mut order = born();
    let before = order.clone();
    let decision = ok(&mut order, OrderCommand::Expire, T0 + TTL_MS - 1);
    assert!(decision.events.is_empty());
    assert_eq!(decision.reply.status, OrderStatus::Reserved);
    assert_eq!(order, before);
    assert_eq!(order.next_deadline_ms(), Some(T0 + TTL_MS));
}

#[test]
fn expiring_at_the_deadline_marks_the_order_expired() {
    let mut order = born();
    let decision = ok(&mut order, OrderCommand::Expire, T0 + TTL_MS);
    assert_eq!(
        decision.events,
        vec![OrderEvent::Expired { at_ms: T0 + TTL_MS }]
    );
    assert_eq!(decision.reply.status, OrderStatus::Expired);
    assert_eq!(Some(decision.reply), order.view());
    assert_eq!(order.status, Some(OrderStatus::Expired));
    assert_eq!(order.updated_at_ms, T0 + TTL_MS);
    assert_eq!(order.next_deadline_ms(), None);
    assert_eq!(
        order.deadline_command(&Ctx {
            now_ms: T0 + TTL_MS
        }),
        None
    );
    // Expiring again changes nothing.
    let before = order.clone();
    assert!(ok(&mut order, OrderCommand::Expire, T0 + TTL_MS + 1)
        .events
        .is_empty());
    assert_eq!(order, before);
}

#[test]
fn expiring_after_the_deadline_records_when_it_happened() {
    let mut order = born();
    let late = T0 + TTL_MS + 45_000;
    let decision = ok(&mut order, OrderCommand::Expire, late);
    assert_eq!(decision.events, vec![OrderEvent::Expired { at_ms: late }]);
    assert_eq!(
        order.view().map(|v| v.updated_at),
        Some(crate::time::rfc3339(late))
    );
}

#[test]
fn the_deadline_command_is_due_only_at_expires_at() {
    let order = born();
    assert_eq!(
        order.deadline_command(&Ctx {
            now_ms: T0 + TTL_MS - 1
        }),
        None
    );
    let due = Some(OrderCommand::Expire);
    assert_eq!(
        order.deadline_command(&Ctx {
            now_ms: T0 + TTL_MS
        }),
        due
    );
    assert_eq!(
        order.deadline_command(&Ctx {
            now_ms: T0 + TTL_MS + 1
        }),
        due
    );
}

#[test]
fn cancelling_a_reserved_order_cancels_it() {
    let mut order = born();
    let decision = ok(&mut order, OrderCommand::Cancel, T0 + 5_000);
    assert_eq!(
        decision.events,
        vec![OrderEvent::Cancelled { at_ms: T0 + 5_000 }]
    );
    assert_eq!(decision.reply.status, OrderStatus::Cancelled);
    assert_eq!(Some(decision.reply), order.view());
    assert_eq!(order.updated_at_ms, T0 + 5_000);
    assert_eq!(order.next_deadline_ms(), None);
    assert_eq!(
        order.deadline_command(&Ctx {
            now_ms: T0 + TTL_MS
        }),
        None
    );
}

#[test]
fn cancelling_twice_does_nothing_the_second_time() {
    let mut order = born();
    ok(&mut order, OrderCommand::Cancel, T0 + 5_000);
    let before = order.clone();
    let again = ok(&mut order, OrderCommand::Cancel, T0 + 9_000);
    assert!(again.events.is_empty());
    assert_eq!(again.reply.status, OrderStatus::Cancelled);
    assert_eq!(order, before);
    assert_eq!(order.updated_at_ms, T0 + 5_000);
}

#[test]
fn cancelling_an_expired_order_is_rejected_as_expired() {
    let mut order = born();
    ok(&mut order, OrderCommand::Expire, T0 + TTL_MS);
    rejected(
        &mut order,
        OrderCommand::Cancel,
        T0 + TTL_MS + 1,
        ErrorCode::OrderExpired,
    );
    assert_eq!(order.status, Some(OrderStatus::Expired));
}

#[test]
fn expiring_a_cancelled_order_does_nothing() {
    let mut order = born();
    ok(&mut order, OrderCommand::Cancel, T0 + 1);
    let before = order.clone();
    assert!(ok(&mut order, OrderCommand::Expire, T0 + TTL_MS)
        .events
        .is_empty());
    assert_eq!(order, before);
}

#[test]
fn only_reserved_and_payment_failed_orders_can_be_cancelled() {
    let cancellable = [OrderStatus::Reserved, OrderStatus::PaymentFailed];
    for status in cancellable {
        let mut order = born();
        order.status = Some(status);
        let decision = ok(&mut order, OrderCommand::Cancel, T0 + 1);
        assert_eq!(
            decision.reply.status,
            OrderStatus::Cancelled,
            "from {status:?}"
        );
    }
    let in_flight = [
        OrderStatus::Paying,
        OrderStatus::Confirmed,
        OrderStatus::Refunding,
        OrderStatus::Refunded,
    ];
    for status in in_flight {
        let mut order = born();
        order.status = Some(status);
        rejected(
            &mut order,
            OrderCommand::Cancel,
            T0 + 1,
            ErrorCode::Conflict,
        );
    }
}

#[test]
fn statuses_serialise_as_their_api_names() {
    let all = [
        OrderStatus::Reserved,
        OrderStatus::Paying,
        OrderStatus::Confirmed,
        OrderStatus::PaymentFailed,
        OrderStatus::Expired,
        OrderStatus::Cancelled,
        OrderStatus::Refunding,
        OrderStatus::Refunded,
    ];
    for status in all {
        assert_eq!(
            serde_json::to_value(status).expect("serialises"),
            status.as_str()
        );
    }
}

#[test]
fn the_view_uses_the_api_field_names() {
    let json = serde_json::to_value(born().view()).expect("serialises");
    assert_eq!(json["source"]["type"], "stock");
    assert_eq!(json["items"][0]["ref"], "sku-1");
    assert_eq!(json["status"], "RESERVED");
    assert_eq!(json["card_amount"], 3_990);
}

#[test]
fn an_order_snapshot_and_its_events_round_trip_through_the_codec() {
    let mut order = born();
    ok(&mut order, OrderCommand::Cancel, T0 + 1);
    let bytes = codec::encode(Order::VERSION, &order);
    let mut loaded: Order = codec::decode(Order::VERSION, &bytes).expect("decodes");
    loaded.restore();
    assert_eq!(loaded, order);
    let events = [
        OrderEvent::Placed(placed()),
        OrderEvent::Expired { at_ms: T0 },
        OrderEvent::Cancelled { at_ms: T0 },
    ];
    for event in events {
        let bytes = codec::encode(Order::VERSION, &event);
        let decoded: OrderEvent = codec::decode(Order::VERSION, &bytes).expect("decodes");
        assert_eq!(decoded, event);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties over random command sequences.

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        Just(OrderCommand::Get),
        Just(OrderCommand::Expire),
        Just(OrderCommand::Cancel),
        random_placed().prop_map(OrderCommand::Place),
    ]
}

fn random_placed() -> impl Strategy<Value = Placed> {
    let line = ("[a-z]{1,6}", 1i64..10, 0i64..100_000)
        .prop_map(|(reference, quantity, unit_price)| item(&reference, quantity, unit_price));
    (prop::collection::vec(line, 1..5), 1i64..20_000).prop_map(|(items, ttl_ms)| Placed {
        expires_at_ms: T0 + ttl_ms,
        ..placed_with(items)
    })
}

/// Statuses an order may move to from `from` by these commands.
fn may_follow(from: OrderStatus, to: OrderStatus) -> bool {
    from == to
        || matches!(
            (from, to),
            (
                OrderStatus::Reserved,
                OrderStatus::Expired | OrderStatus::Cancelled
            )
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn order_statuses_only_move_forward(
        placed in random_placed(),
        steps in prop::collection::vec((0i64..5_000, order_command()), 0..60),
    ) {
        let expires_at_ms = placed.expires_at_ms;
        let amount: i64 = placed.items.iter().map(|i| i.unit_price * i.quantity).sum();
        let mut order = born_with(placed);
        let mut now_ms = T0;
        for (advance_ms, command) in steps {
            now_ms += advance_ms;
            let before = order.clone();
            let from = before.status.expect("placed");
            match run(&mut order, &command, now_ms) {
                Err(e) => {
                    prop_assert_eq!(&order, &before, "rejected {:?} changed the order", command);
                    if let OrderCommand::Place(_) = command {
                        // An order is placed once.
                        prop_assert_eq!(e.code, ErrorCode::Conflict);
                    } else {
                        prop_assert_eq!(
                            (from, &command, e.code),
                            (OrderStatus::Expired, &OrderCommand::Cancel, ErrorCode::OrderExpired)
                        );
                    }
                }
                Ok(decision) => {
                    prop_assert!(decision.events.len() <= 1);
                    prop_assert_eq!(Some(decision.reply), order.view());
                    if decision.events.is_empty() {
                        prop_assert_eq!(&order, &before);
                    }
                }
            }
            let to = order.status.expect("placed");
            prop_assert!(may_follow(from, to), "{:?} -> {:?} by {:?}", from, to, command);
            if to == OrderStatus::Expired && from == OrderStatus::Reserved {
                prop_assert!(now_ms >= expires_at_ms, "expired early");
            }
            if from == OrderStatus::Reserved && command == OrderCommand::Expire {
                prop_assert_eq!(to == OrderStatus::Expired, now_ms >= expires_at_ms);
            }
            prop_assert_eq!(order.amount, amount);
            prop_assert_eq!(order.card_amount(), amount);
            let deadline = (to == OrderStatus::Reserved).then_some(expires_at_ms);
            prop_assert_eq!(order.next_deadline_ms(), deadline);
            let due = deadline.is_some_and(|at| at <= now_ms);
            let expected_command = due.then_some(OrderCommand::Expire);
            prop_assert_eq!(order.deadline_command(&Ctx { now_ms }), expected_command);
        }
    }

    #[test]
    fn an_order_replayed_from_its_journal_equals_the_live_one(
        placed in random_placed(),
        steps in prop::collection::vec((0i64..5_000, order_command()), 0..60),
    ) {
        let mut journal = birth_journal(placed);
        let mut order = replay(&journal, ID);
        let mut now_ms = T0;
        for (advance_ms, command) in steps {
            now_ms += advance_ms;
            if let Ok(decision) = run(&mut order, &command, now_ms) {
                journal.extend(decision.events.iter().map(|e| codec::encode(Order::VERSION, e)));
            }
            let snapshot = codec::encode(Order::VERSION, &order);
            let mut loaded: Order = codec::decode(Order::VERSION, &snapshot).expect("decodes");
            loaded.restore();
            prop_assert_eq!(&loaded, &order);
        }
        let mut replayed = Order::blank(ID);
        for bytes in &journal {
            let event: OrderEvent = codec::decode(Order::VERSION, bytes).expect("decodes");
            replayed.apply(&event);
            prop_assert!(replayed.check_invariants().is_ok());
        }
        prop_assert_eq!(replayed, order);
    }
}

#[test]
fn a_source_encodes_as_its_name_as_it_did_when_it_was_a_string() {
    /// `Source` as journaled before its kind was an enum.
    #[derive(serde::Serialize)]
    struct StringSource {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    for kind in SourceKind::ALL {
        let typed = Source {
            kind,
            id: "x".into(),
        };
        let old = StringSource {
            kind: kind.as_str().into(),
            id: "x".into(),
        };
        let old_bytes = postcard::to_allocvec(&old).expect("encodes");
        assert_eq!(postcard::to_allocvec(&typed).expect("encodes"), old_bytes);
        let decoded: Source = postcard::from_bytes(&old_bytes).expect("an old event decodes");
        assert_eq!(decoded, typed);
        let json = serde_json::to_value(&typed).expect("json");
        assert_eq!(json["type"], kind.as_str());
    }
    let unknown = StringSource {
        kind: "ghost".into(),
        id: "x".into(),
    };
    let bytes = postcard::to_allocvec(&unknown).expect("encodes");
    assert!(postcard::from_bytes::<Source>(&bytes).is_err());
}

#[test]
fn paying_moves_a_reserved_order_through_paying_to_confirmed() {
    let mut order = born();
    let paying = ok(&mut order, OrderCommand::BeginPay, T0 + 1).reply;
    assert_eq!(paying.status, OrderStatus::Paying);
    assert_eq!(
        order.next_deadline_ms(),
        None,
        "the saga decides, not the clock"
    );
    assert_eq!(
        ok(&mut order, OrderCommand::BeginPay, T0 + 2).events,
        vec![]
    );
    rejected(
        &mut order,
        OrderCommand::Cancel,
        T0 + 2,
        ErrorCode::Conflict,
    );
    let paid = Paid {
        discount: 490,
        points_used: 1_000,
        coupon_id: Some("p.00000001".into()),
        payment_id: Some("pay_1".into()),
    };
    let confirmed = ok(&mut order, OrderCommand::Confirm(paid.clone()), T0 + 3).reply;
    assert_eq!(confirmed.status, OrderStatus::Confirmed);
    assert_eq!(
        (
            confirmed.discount,
            confirmed.points_used,
            confirmed.card_amount
        ),
        (490, 1_000, 3_990 - 490 - 1_000)
    );
    assert_eq!(confirmed.payment_id.as_deref(), Some("pay_1"));
    assert_eq!(
        ok(&mut order, OrderCommand::Confirm(paid), T0 + 4).events,
        vec![]
    );
    rejected(
        &mut order,
        OrderCommand::BeginPay,
        T0 + 5,
        ErrorCode::OrderNotPayable,
    );
}

#[test]
fn a_failed_payment_keeps_the_reservation_until_it_expires_and_may_be_retried() {
    let mut order = born();
    ok(&mut order, OrderCommand::BeginPay, T0 + 1);
    let failed = ok(&mut order, OrderCommand::MarkFailed, T0 + 2).reply;
    assert_eq!(failed.status, OrderStatus::PaymentFailed);
    assert_eq!((failed.discount, failed.points_used), (0, 0));
    assert_eq!(order.next_deadline_ms(), Some(T0 + TTL_MS));
    ok(&mut order, OrderCommand::BeginPay, T0 + 3);
    ok(&mut order, OrderCommand::MarkFailed, T0 + 4);
    rejected(
        &mut order,
        OrderCommand::BeginPay,
        T0 + TTL_MS,
        ErrorCode::OrderExpired,
    );
    ok(&mut order, OrderCommand::Expire, T0 + TTL_MS);
    assert_eq!(order.status, Some(OrderStatus::Expired));
    rejected(
        &mut order,
        OrderCommand::BeginPay,
        T0 + TTL_MS,
        ErrorCode::OrderExpired,
    );
}

#[test]
fn confirming_takes_no_more_than_the_order_is_worth() {
    let mut order = born();
    let paid = Paid {
        discount: 0,
        points_used: 0,
        coupon_id: None,
        payment_id: None,
    };
    rejected(
        &mut order,
        OrderCommand::Confirm(paid),
        T0,
        ErrorCode::Conflict,
    );
    ok(&mut order, OrderCommand::BeginPay, T0);
    let too_much = Paid {
        discount: 3_000,
        points_used: 1_000,
        coupon_id: None,
        payment_id: None,
    };
    rejected(
        &mut order,
        OrderCommand::Confirm(too_much),
        T0,
        ErrorCode::ValidationFailed,
    );
    assert_eq!(order.status, Some(OrderStatus::Paying));
}
