//! After a sale: returning a refunded order's seats and checking tickets in, each rule, the
//! counts, and a snapshot that keeps check-ins.

use super::*;

/// A map of one row of 4 where order 1 bought A-1-1 and A-1-2, and order 2 holds A-1-3.
fn sold_map() -> SeatMap {
    let mut map = map_of(terms(&[("A", &[4])]));
    ok(&mut map, hold(1, ids(&["A-1-1", "A-1-2"])), OPEN);
    ok(&mut map, commit(1), OPEN + 1);
    ok(&mut map, hold(2, ids(&["A-1-3"])), OPEN + 2);
    map
}

fn commit(order: u128) -> SeatCommand {
    SeatCommand::Commit {
        order: OrderId::from_u128(order),
    }
}

fn give_back(order: u128, seats: &[&str]) -> SeatCommand {
    SeatCommand::Return {
        order: OrderId::from_u128(order),
        seats: seats.iter().map(|s| s.to_string()).collect(),
    }
}

fn check_in(order: u128, seat: &str) -> SeatCommand {
    SeatCommand::CheckIn {
        order: OrderId::from_u128(order),
        seat: seat.to_string(),
    }
}

#[test]
fn returning_a_refunded_orders_seats_puts_them_back_on_sale() {
    let mut map = sold_map();
    assert_eq!(map.totals(), SeatCounts { held: 1, sold: 2 });
    let returned = ok(&mut map, give_back(1, &["A-1-2", "A-1-1"]), OPEN + 3);
    assert_eq!(
        returned.events,
        [SeatEvent::Returned {
            order: OrderId::from_u128(1),
            seats: vec![1, 0],
        }]
    );
    assert_eq!(
        map_view(&returned),
        &map.view(),
        "the reply is the state after"
    );
    assert_eq!(map.totals(), SeatCounts { held: 1, sold: 0 });
    assert_eq!(map.view().availability.available, 3);
    assert_eq!(map.status_of(0), SeatStatus::Available);
    assert_eq!(
        map.hold(OrderId::from_u128(2)).map(|h| h.seats.clone()),
        Some(vec![2])
    );
    // On sale again: another order may buy them.
    ok(&mut map, hold(3, ids(&["A-1-1", "A-1-2"])), OPEN + 4);
}

#[test]
fn a_return_is_all_or_none_and_only_of_sold_seats() {
    let mut map = sold_map();
    let cases = [
        (give_back(1, &["A-1-1", "A-1-3"]), ErrorCode::Conflict),
        (give_back(1, &["A-1-1", "A-1-4"]), ErrorCode::Conflict),
        (give_back(2, &["A-1-3"]), ErrorCode::Conflict),
        (
            give_back(1, &["A-1-1", "Z-1-1"]),
            ErrorCode::ValidationFailed,
        ),
        (
            give_back(1, &["A-1-1", "A-1-1"]),
            ErrorCode::ValidationFailed,
        ),
        (give_back(1, &[]), ErrorCode::ValidationFailed),
    ];
    for (command, code) in cases {
        rejected(&mut map, command, OPEN + 3, code);
    }
    let too_many: Vec<String> = (0..=SEATS_PER_ORDER_MAX)
        .map(|n| format!("A-1-{n}"))
        .collect();
    let command = SeatCommand::Return {
        order: OrderId::from_u128(1),
        seats: too_many,
    };
    rejected(&mut map, command, OPEN + 3, ErrorCode::ValidationFailed);
    // Once returned, a second return of the same seats finds them unsold.
    ok(&mut map, give_back(1, &["A-1-1", "A-1-2"]), OPEN + 3);
    rejected(
        &mut map,
        give_back(1, &["A-1-1"]),
        OPEN + 4,
        ErrorCode::Conflict,
    );
}

#[test]
fn a_sold_seat_checks_in_once() {
    let mut map = sold_map();
    let before = map.view();
    let first = ok(&mut map, check_in(1, "A-1-2"), OPEN + 3);
    assert_eq!(
        first.events,
        [SeatEvent::CheckedIn {
            order: OrderId::from_u128(1),
            seat: 1,
        }]
    );
    let expected = CheckInView {
        seat_id: "A-1-2".into(),
        order_id: OrderId::from_u128(1).to_string(),
    };
    assert_eq!(first.reply, SeatReply::CheckedIn(expected));
    assert!(map.checked_in(1) && !map.checked_in(0));
    assert_eq!(map.checked_in_count(), 1);
    // Still SOLD everywhere a customer looks; only the version moved.
    assert_eq!(map.status_of(1), SeatStatus::Sold);
    assert_eq!(map.view().availability, before.availability);
    assert_eq!(map.seats_view()[1].status, SeatStatus::Sold);
    assert_eq!(map.seats_taken().nth(1), Some((1, SeatStatus::Sold)));
    rejected(
        &mut map,
        check_in(1, "A-1-2"),
        OPEN + 4,
        ErrorCode::AlreadyCheckedIn,
    );
    ok(&mut map, check_in(1, "A-1-1"), OPEN + 5);
}

#[test]
fn a_check_in_of_a_seat_not_sold_or_not_here_is_invalid() {
    let mut map = sold_map();
    for seat in ["A-1-3", "A-1-4", "Z-1-1", "A-9-1", ""] {
        rejected(
            &mut map,
            check_in(1, seat),
            OPEN + 3,
            ErrorCode::TicketInvalid,
        );
    }
}

#[test]
fn a_return_voids_a_check_in_and_a_new_sale_may_check_in_again() {
    let mut map = sold_map();
    ok(&mut map, check_in(1, "A-1-1"), OPEN + 3);
    // A refund after the door still gives the seat back, and clears its check-in.
    ok(&mut map, give_back(1, &["A-1-1", "A-1-2"]), OPEN + 4);
    assert!(!map.checked_in(0));
    assert_eq!(map.totals(), SeatCounts { held: 1, sold: 0 });
    rejected(
        &mut map,
        check_in(1, "A-1-1"),
        OPEN + 5,
        ErrorCode::TicketInvalid,
    );
    ok(&mut map, hold(3, ids(&["A-1-1"])), OPEN + 6);
    ok(&mut map, commit(3), OPEN + 7);
    ok(&mut map, check_in(3, "A-1-1"), OPEN + 8);
}

#[test]
fn a_snapshot_round_trip_keeps_check_ins() {
    let mut map = sold_map();
    ok(&mut map, check_in(1, "A-1-2"), OPEN + 3);
    let bytes = crate::codec::encode(SeatMap::VERSION, &map);
    let mut back: SeatMap = crate::codec::decode(SeatMap::VERSION, &bytes).expect("decodes");
    back.restore();
    back.check_deep_invariants().expect("deep invariants hold");
    assert_eq!(back, map);
    assert!(back.checked_in(1));
    rejected(
        &mut back,
        check_in(1, "A-1-2"),
        OPEN + 4,
        ErrorCode::AlreadyCheckedIn,
    );
}

#[test]
fn a_status_byte_past_checked_in_breaks_the_deep_invariants() {
    let mut map = sold_map();
    map.status[1] = CHECKED_IN + 1;
    assert!(map.check_deep_invariants().is_err());
}
