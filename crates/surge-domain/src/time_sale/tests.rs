//! TimeSale: unit tests of each rule, then properties over random command sequences with a
//! clock that only moves forward.

use proptest::prelude::*;

use super::*;
use crate::OrderId;

const SALE: &str = "sale-1";
/// 2023-11-14T22:13:20Z, so time stays far from 0 and from overflow.
const T0: i64 = 1_700_000_000_000;
const START: i64 = T0 + 1_000;
const END: i64 = T0 + 100_000;
const PAY_MS: i64 = 10_000;

/// Runs a command the way the actor does: decide, apply every event, check the invariants.
fn run(
    sale: &mut TimeSale,
    command: &SaleCommand,
    now_ms: i64,
) -> Result<Decision<TimeSale>, Rejection> {
    let decision = sale.decide(command, &Ctx { now_ms })?;
    for event in &decision.events {
        sale.apply(event);
        if let Err(violation) = sale.check_invariants() {
            panic!("invariant broken after {event:?} (from {command:?}): {violation}");
        }
    }
    if let Err(violation) = sale.check_deep_invariants() {
        panic!("deep invariant broken after {command:?}: {violation}");
    }
    Ok(decision)
}

fn ok(sale: &mut TimeSale, command: SaleCommand, now_ms: i64) -> Decision<TimeSale> {
    run(sale, &command, now_ms).unwrap_or_else(|e| panic!("{command:?} rejected: {e}"))
}

/// The command must be rejected with `code`, and leave the sale as it was.
fn rejected(sale: &mut TimeSale, command: SaleCommand, now_ms: i64, code: ErrorCode) {
    let before = sale.clone();
    match run(sale, &command, now_ms) {
        Ok(decision) => panic!("{command:?} accepted: {decision:?}"),
        Err(e) => assert_eq!(e.code, code, "{command:?} rejected with {e}"),
    }
    assert_eq!(*sale, before, "a rejected {command:?} changed the sale");
}

fn terms(quantity: i64, per_user_limit: Option<i64>) -> SaleTerms {
    SaleTerms {
        product_id: "product-1".into(),
        quantity,
        sale_price: 9_900,
        starts_at_ms: START,
        ends_at_ms: END,
        per_user_limit,
        queue_required: false,
    }
}

fn sale_with(quantity: i64, per_user_limit: Option<i64>) -> TimeSale {
    let mut sale = TimeSale::blank(SALE);
    ok(
        &mut sale,
        SaleCommand::Create(terms(quantity, per_user_limit)),
        T0,
    );
    sale
}

fn buy(order: u128, user: &str, quantity: i64, now_ms: i64) -> SaleCommand {
    SaleCommand::Purchase {
        order: OrderId::from_u128(order),
        user_id: user.into(),
        quantity,
        expires_at_ms: now_ms + PAY_MS,
        queue_pass: false,
    }
}

#[test]
fn a_sale_is_scheduled_then_active_then_ended_by_the_clock() {
    let sale = sale_with(10, Some(1));
    assert_eq!(sale.status_at(T0), SaleStatus::Scheduled);
    assert_eq!(sale.status_at(START), SaleStatus::Active);
    assert_eq!(sale.status_at(END - 1), SaleStatus::Active);
    assert_eq!(sale.status_at(END), SaleStatus::Ended);
    assert_eq!(sale.next_deadline_ms(), Some(START));
}

#[test]
fn purchases_outside_the_window_are_not_active() {
    let mut sale = sale_with(10, Some(1));
    rejected(&mut sale, buy(1, "u1", 1, T0), T0, ErrorCode::SaleNotActive);
    rejected(
        &mut sale,
        buy(1, "u1", 1, END),
        END,
        ErrorCode::SaleNotActive,
    );
}

#[test]
fn the_window_deadlines_journal_opened_then_closed() {
    let mut sale = sale_with(10, Some(1));
    assert_eq!(sale.deadline_command(&Ctx { now_ms: START - 1 }), None);
    let command = sale
        .deadline_command(&Ctx { now_ms: START })
        .expect("due at start");
    let opened = ok(&mut sale, command, START);
    assert_eq!(opened.events, vec![SaleEvent::Opened]);
    assert_eq!(sale.status_by_phase(), SaleStatus::Active);
    assert_eq!(sale.next_deadline_ms(), Some(END));
    let closed = ok(&mut sale, SaleCommand::Advance, END);
    assert_eq!(closed.events, vec![SaleEvent::Closed]);
    assert_eq!(sale.status_by_phase(), SaleStatus::Ended);
    assert_eq!(sale.next_deadline_ms(), None);
}

#[test]
fn a_sale_created_inside_its_window_is_open_at_once() {
    let mut sale = TimeSale::blank(SALE);
    let decision = ok(&mut sale, SaleCommand::Create(terms(5, None)), START + 1);
    assert_eq!(decision.events.len(), 2);
    assert_eq!(decision.reply.status, SaleStatus::Active);
    assert_eq!(sale.phase, Phase::Open);
}

#[test]
fn a_purchase_reserves_and_the_last_unit_makes_it_sold_out() {
    let mut sale = sale_with(2, Some(1));
    let first = ok(&mut sale, buy(1, "u1", 1, START), START);
    assert_eq!((first.reply.remaining, first.reply.reserved), (1, 1));
    let last = ok(&mut sale, buy(2, "u2", 1, START), START);
    assert_eq!(last.reply.status, SaleStatus::SoldOut);
    rejected(&mut sale, buy(3, "u3", 1, START), START, ErrorCode::SoldOut);
}

#[test]
fn asking_more_than_remains_is_insufficient_stock() {
    let mut sale = sale_with(3, None);
    ok(&mut sale, buy(1, "u1", 2, START), START);
    rejected(
        &mut sale,
        buy(2, "u2", 2, START),
        START,
        ErrorCode::InsufficientStock,
    );
}

#[test]
fn the_per_user_limit_counts_held_and_bought_units() {
    let mut sale = sale_with(10, Some(2));
    ok(&mut sale, buy(1, "u1", 1, START), START);
    ok(
        &mut sale,
        SaleCommand::Commit {
            order: OrderId::from_u128(1),
        },
        START,
    );
    ok(&mut sale, buy(2, "u1", 1, START), START);
    rejected(
        &mut sale,
        buy(3, "u1", 1, START),
        START,
        ErrorCode::PerUserLimitExceeded,
    );
    ok(&mut sale, buy(4, "u2", 2, START), START);
    assert_eq!(sale.units_of("u1"), 2);
}

#[test]
fn a_queued_sale_needs_a_pass() {
    let mut sale = TimeSale::blank(SALE);
    let queued = SaleTerms {
        queue_required: true,
        ..terms(5, None)
    };
    ok(&mut sale, SaleCommand::Create(queued), T0);
    rejected(
        &mut sale,
        buy(1, "u1", 1, START),
        START,
        ErrorCode::QueuePassRequired,
    );
    let mut with_pass = buy(1, "u1", 1, START);
    if let SaleCommand::Purchase { queue_pass, .. } = &mut with_pass {
        *queue_pass = true;
    }
    ok(&mut sale, with_pass, START);
}

#[test]
fn no_limit_means_unlimited() {
    let mut sale = sale_with(100, None);
    for order in 0..10 {
        ok(&mut sale, buy(order, "u1", 5, START), START);
    }
    assert_eq!(sale.units_of("u1"), 50);
}

#[test]
fn a_released_reservation_gives_units_and_the_users_allowance_back() {
    let mut sale = sale_with(1, Some(1));
    ok(&mut sale, buy(1, "u1", 1, START), START);
    let release = SaleCommand::Release {
        order: OrderId::from_u128(1),
        reason: ReleaseReason::Cancelled,
    };
    let released = ok(&mut sale, release.clone(), START);
    assert_eq!(released.reply.remaining, 1);
    assert_eq!(sale.units_of("u1"), 0);
    assert!(
        ok(&mut sale, release, START).events.is_empty(),
        "twice is once"
    );
    ok(&mut sale, buy(2, "u1", 1, START), START);
}

#[test]
fn an_expired_reservation_returns_to_the_sale_by_its_deadline() {
    let mut sale = sale_with(5, Some(1));
    ok(&mut sale, SaleCommand::Advance, START);
    ok(&mut sale, buy(1, "u1", 1, START), START);
    let due = START + PAY_MS;
    assert_eq!(sale.next_deadline_ms(), Some(due));
    let command = sale.deadline_command(&Ctx { now_ms: due }).expect("due");
    let decision = ok(&mut sale, command, due);
    assert!(matches!(
        decision.events[..],
        [SaleEvent::Released {
            reason: ReleaseReason::Expired,
            ..
        }]
    ));
    assert_eq!((sale.remaining(), sale.reserved), (5, 0));
    rejected(
        &mut sale,
        SaleCommand::Commit {
            order: OrderId::from_u128(1),
        },
        due,
        ErrorCode::OrderExpired,
    );
}

#[test]
fn a_repeated_purchase_of_the_same_order_reserves_once() {
    let mut sale = sale_with(5, None);
    ok(&mut sale, buy(1, "u1", 2, START), START);
    let again = ok(&mut sale, buy(1, "u1", 2, START), START);
    assert!(again.events.is_empty());
    assert_eq!(sale.reserved, 2);
}

#[test]
fn bad_terms_are_refused() {
    let mut sale = TimeSale::blank(SALE);
    for bad in [
        terms(0, None),
        SaleTerms {
            ends_at_ms: START,
            ..terms(1, None)
        },
        terms(1, Some(0)),
        SaleTerms {
            sale_price: -1,
            ..terms(1, None)
        },
    ] {
        rejected(
            &mut sale,
            SaleCommand::Create(bad),
            T0,
            ErrorCode::ValidationFailed,
        );
    }
    rejected(&mut sale, SaleCommand::Get, T0, ErrorCode::NotFound);
    let mut sale = sale_with(1, None);
    rejected(
        &mut sale,
        SaleCommand::Create(terms(1, None)),
        T0,
        ErrorCode::Conflict,
    );
}

#[test]
fn the_status_by_phase_follows_the_last_event() {
    let mut sale = sale_with(1, None);
    assert_eq!(sale.status_by_phase(), SaleStatus::Scheduled);
    ok(&mut sale, SaleCommand::Advance, START);
    ok(&mut sale, buy(1, "u1", 1, START), START);
    assert_eq!(sale.status_by_phase(), SaleStatus::SoldOut);
}

#[test]
fn a_snapshot_round_trip_keeps_holds_users_and_the_expiry_index() {
    let mut sale = sale_with(10, Some(3));
    ok(&mut sale, buy(1, "u1", 2, START), START);
    ok(&mut sale, buy(2, "u2", 1, START + 5), START + 5);
    let bytes = crate::codec::encode(TimeSale::VERSION, &sale);
    let mut back: TimeSale = crate::codec::decode(TimeSale::VERSION, &bytes).expect("decodes");
    back.restore();
    assert_eq!(back, sale);
    back.check_deep_invariants().expect("deep invariants hold");
}

#[derive(Debug, Clone)]
enum Step {
    Buy { user: u8, quantity: i64 },
    Release { pick: usize },
    Commit { pick: usize },
    Advance,
    Wait { ms: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6, 1i64..4).prop_map(|(user, quantity)| Step::Buy { user, quantity }),
        1 => any::<usize>().prop_map(|pick| Step::Release { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Commit { pick }),
        1 => Just(Step::Advance),
        2 => (0i64..8_000).prop_map(|ms| Step::Wait { ms }),
    ]
}

fn pick_order(sale: &TimeSale, pick: usize) -> OrderId {
    let mut orders: Vec<OrderId> = sale.holds.keys().copied().collect();
    orders.sort_unstable();
    if orders.is_empty() {
        OrderId::from_u128(u128::MAX)
    } else {
        orders[pick % orders.len()]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sale_commands_keep_every_invariant(
        quantity in 1i64..20,
        limit in prop::option::of(1i64..4),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut sale = sale_with(quantity, limit);
        let mut now_ms = START - 2_000;
        let mut next_order = 0u128;
        for step in steps {
            let sold_before = sale.sold;
            let command = match step {
                Step::Buy { user, quantity } => {
                    next_order += 1;
                    buy(next_order, &format!("u{user}"), quantity, now_ms)
                }
                Step::Release { pick } => SaleCommand::Release {
                    order: pick_order(&sale, pick),
                    reason: ReleaseReason::Cancelled,
                },
                Step::Commit { pick } => SaleCommand::Commit { order: pick_order(&sale, pick) },
                Step::Advance => SaleCommand::Advance,
                Step::Wait { ms } => {
                    now_ms += ms;
                    continue;
                }
            };
            let outcome = run(&mut sale, &command, now_ms);
            if let (Ok(d), SaleCommand::Purchase { .. }) = (&outcome, &command) {
                prop_assert!(d.events.is_empty() || (START..END).contains(&now_ms));
            }
            prop_assert_eq!(sale.remaining() + sale.reserved + sale.sold, quantity);
            prop_assert!(sale.remaining() >= 0);
            prop_assert!(sale.sold >= sold_before, "sold went down");
            if let Some(limit) = limit {
                for user in 0..6 {
                    let units = sale.units_of(&format!("u{}", user));
                    prop_assert!(units <= limit, "u{} holds {} over {}", user, units, limit);
                }
            }
        }
    }
}

#[test]
fn a_refunded_purchase_gives_its_units_back_to_the_sale_and_the_buyer() {
    let mut sale = sale_with(2, Some(2));
    ok(&mut sale, SaleCommand::Advance, START);
    ok(&mut sale, buy(1, "u1", 2, START), START);
    ok(
        &mut sale,
        SaleCommand::Commit {
            order: OrderId::from_u128(1),
        },
        START + 1,
    );
    assert_eq!((sale.sold, sale.remaining()), (2, 0));
    let back = |quantity| SaleCommand::Return {
        order: OrderId::from_u128(1),
        user_id: "u1".into(),
        quantity,
    };
    rejected(&mut sale, back(3), START + 2, ErrorCode::ValidationFailed);
    ok(&mut sale, back(2), START + 2);
    assert_eq!((sale.sold, sale.remaining(), sale.buyers()), (0, 2, 0));
    // The buyer may buy again, up to the limit.
    ok(&mut sale, buy(2, "u1", 2, START + 3), START + 3);
}
