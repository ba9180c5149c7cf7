//! SeatMap: the layout and its ids, each hold rule, best available by table, expiry by an
//! injected clock, the size of a stadium, then properties over random command sequences (holds,
//! sales, returns and check-ins) checked against an independent model of who owns each seat.
//! Returns and check-ins one rule at a time: `tests/after_sale.rs`.

use proptest::prelude::*;

use super::*;
use crate::ErrorCode;
use crate::OrderId;

mod after_sale;

const EVENT: &str = "event-1";
/// 2023-11-14T22:13:20Z, so time stays far from 0 and from overflow.
const T0: i64 = 1_700_000_000_000;
const OPEN: i64 = T0 + 1_000;
const STARTS: i64 = T0 + 10_000_000;
const HOLD_MS: i64 = 600_000;

/// Runs a command the way the actor does: decide, apply every event, check the invariants.
fn run(
    map: &mut SeatMap,
    command: &SeatCommand,
    now_ms: i64,
) -> Result<Decision<SeatMap>, Rejection> {
    let decision = map.decide(command, &Ctx { now_ms })?;
    for event in &decision.events {
        map.apply(event);
        if let Err(violation) = map.check_invariants() {
            panic!("invariant broken after {event:?} (from {command:?}): {violation}");
        }
    }
    if let Err(violation) = map.check_deep_invariants() {
        panic!("deep invariant broken after {command:?}: {violation}");
    }
    Ok(decision)
}

fn ok(map: &mut SeatMap, command: SeatCommand, now_ms: i64) -> Decision<SeatMap> {
    run(map, &command, now_ms).unwrap_or_else(|e| panic!("{command:?} rejected: {e}"))
}

/// The command must be rejected with `code`, and leave the map as it was.
fn rejected(map: &mut SeatMap, command: SeatCommand, now_ms: i64, code: ErrorCode) {
    let before = map.clone();
    match run(map, &command, now_ms) {
        Ok(decision) => panic!("{command:?} accepted: {decision:?}"),
        Err(e) => assert_eq!(e.code, code, "{command:?} rejected with {e}"),
    }
    assert_eq!(*map, before, "a rejected {command:?} changed the map");
}

/// Sections by name, each a list of row lengths; rows are named 1.. and row `r` costs
/// `10_000 - 100 * r` (front rows dearer).
fn terms(sections: &[(&str, &[u32])]) -> EventTerms {
    EventTerms {
        name: "Final".into(),
        venue: "Arena".into(),
        starts_at_ms: STARTS,
        sales_open_at_ms: Some(OPEN),
        hold_ttl_secs: HOLD_TTL_SECS_DEFAULT,
        max_seats_per_order: MAX_SEATS_PER_ORDER_DEFAULT,
        queue_required: false,
        sections: sections
            .iter()
            .map(|(name, rows)| SectionTerms {
                name: (*name).into(),
                rows: (0i64..)
                    .zip(rows.iter())
                    .map(|(r, seats)| RowTerms {
                        name: (r + 1).to_string(),
                        seats: *seats,
                        price: 10_000 - 100 * r,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn map_of(terms: EventTerms) -> SeatMap {
    let mut map = SeatMap::blank(EVENT);
    ok(&mut map, SeatCommand::Create(terms), T0);
    map
}

fn hold(order: u128, request: SeatRequest) -> SeatCommand {
    SeatCommand::Hold {
        order: OrderId::from_u128(order),
        user_id: "u1".into(),
        request,
        queue_pass: false,
    }
}

fn ids(list: &[&str]) -> SeatRequest {
    SeatRequest::ByIds(list.iter().map(|id| id.to_string()).collect())
}

fn best(section: Option<&str>, quantity: u32) -> SeatRequest {
    SeatRequest::BestAvailable {
        section: section.map(str::to_string),
        quantity,
    }
}

/// The seat ids a hold got.
fn held(decision: &Decision<SeatMap>) -> Vec<String> {
    match &decision.reply {
        SeatReply::Hold(view) => view.seats.clone(),
        other => panic!("not a hold: {other:?}"),
    }
}

fn map_view(decision: &Decision<SeatMap>) -> &MapView {
    match &decision.reply {
        SeatReply::Map(view) => view,
        other => panic!("not a map: {other:?}"),
    }
}

/// Takes seats by id so a test can shape a row; order ids from 1_000 up.
fn take(map: &mut SeatMap, seat_ids: &[&str]) {
    let order = 1_000 + u128::from(map.version);
    ok(map, hold(order, ids(seat_ids)), OPEN);
}

#[test]
fn seat_ids_map_to_flat_indexes_and_back() {
    let map = map_of(terms(&[("A", &[3, 2]), ("B", &[4])]));
    assert_eq!(map.layout().seats_total(), 9);
    for seat in 0..9 {
        let id = map.seat_id(seat);
        assert_eq!(map.seat_index(&id), Some(seat), "{id}");
    }
    assert_eq!(map.seat_id(0), "A-1-1");
    assert_eq!(map.seat_id(4), "A-2-2");
    assert_eq!(map.seat_index("B-1-4"), Some(8));
    let place = map.layout().place(4);
    assert_eq!((place.section, place.row, place.number), (0, 1, 2));
    for bad in [
        "", "A", "A-1", "A-1-0", "A-1-4", "A-1-01", "A-1-+1", "A-3-1", "C-1-1", "A-1-1-1", "a-1-1",
    ] {
        assert_eq!(map.seat_index(bad), None, "{bad:?} is no seat");
    }
}

#[test]
fn a_created_map_has_every_seat_available_by_section() {
    let mut map = SeatMap::blank(EVENT);
    rejected(&mut map, SeatCommand::Get, T0, ErrorCode::NotFound);
    let created = ok(
        &mut map,
        SeatCommand::Create(terms(&[("A", &[3, 2]), ("B", &[4])])),
        T0,
    );
    let view = map_view(&created);
    assert_eq!(view.seats_total, 9);
    assert_eq!(view.availability.available, 9);
    assert_eq!(view.sections[1].name, "B");
    assert_eq!(view.sections[1].seats_total, 4);
    assert_eq!(map.next_deadline_ms(), None);
    rejected(
        &mut map,
        SeatCommand::Create(terms(&[("A", &[1])])),
        T0,
        ErrorCode::Conflict,
    );
}

#[test]
fn bad_terms_are_refused() {
    let good = terms(&[("A", &[3])]);
    let mut cases = vec![
        terms(&[]),
        terms(&[("A-B", &[3])]),
        terms(&[("A", &[3]), ("A", &[2])]),
        terms(&[("A", &[0])]),
        terms(&[("A", &[ROW_SEATS_MAX + 1])]),
        terms(&[("A", &[])]),
        EventTerms {
            sales_open_at_ms: Some(STARTS),
            ..good.clone()
        },
        EventTerms {
            hold_ttl_secs: 0,
            ..good.clone()
        },
        EventTerms {
            max_seats_per_order: SEATS_PER_ORDER_MAX + 1,
            ..good.clone()
        },
        EventTerms {
            name: " ".into(),
            ..good.clone()
        },
    ];
    let mut negative = good.clone();
    negative.sections[0].rows[0].price = -1;
    cases.push(negative);
    let mut repeated_row = terms(&[("A", &[3, 3])]);
    repeated_row.sections[0].rows[1].name = "1".into();
    cases.push(repeated_row);
    let row = ROW_SEATS_MAX;
    let too_big = vec![row; (SEATS_MAX / row + 1) as usize];
    cases.push(terms(&[("A", &too_big)]));
    for bad in cases {
        let mut map = SeatMap::blank(EVENT);
        rejected(
            &mut map,
            SeatCommand::Create(bad),
            T0,
            ErrorCode::ValidationFailed,
        );
    }
}

/// A row drawn with '.' free and 'x' taken, the quantity asked, and the placement expected
/// (start, orphan-free).
type RowCase = (&'static str, usize, Option<(usize, bool)>);

#[test]
fn place_in_row_prefers_a_run_that_strands_no_single_seat() {
    let table: &[RowCase] = &[
        ("....", 2, Some((0, true))),
        ("...", 2, Some((0, false))),
        ("...x..", 2, Some((4, true))),
        ("x...x....", 3, Some((1, true))),
        ("x....x...", 3, Some((6, true))),
        ("x....x....", 3, Some((1, false))),
        ("..", 2, Some((0, true))),
        (".x.x.", 2, None),
        ("xxxx", 1, None),
        (".x.", 1, Some((0, true))),
        ("", 1, None),
    ];
    for (row, quantity, want) in table {
        let bytes: Vec<u8> = row.bytes().map(|b| u8::from(b == b'x')).collect();
        let got = place_in_row(&bytes, 0, *quantity).map(|p| (p.start, p.orphan_free));
        assert_eq!(got, *want, "{row:?} quantity {quantity}");
    }
}

#[test]
fn best_available_takes_the_front_row_first_in_section_order() {
    let mut map = map_of(terms(&[("A", &[4, 4]), ("B", &[4])]));
    assert_eq!(
        held(&ok(&mut map, hold(1, best(None, 2)), OPEN)),
        ["A-1-1", "A-1-2"]
    );
    assert_eq!(
        held(&ok(&mut map, hold(2, best(None, 2)), OPEN)),
        ["A-1-3", "A-1-4"]
    );
    assert_eq!(
        held(&ok(&mut map, hold(3, best(None, 4)), OPEN)),
        ["A-2-1", "A-2-2", "A-2-3", "A-2-4"]
    );
    assert_eq!(held(&ok(&mut map, hold(4, best(None, 1)), OPEN)), ["B-1-1"]);
}

#[test]
fn best_available_seats_are_adjacent_in_one_row() {
    let mut map = map_of(terms(&[("A", &[5, 3])]));
    take(&mut map, &["A-1-3"]);
    // Row 1 has 2 + 2 free seats, never 3 together: row 2 it is.
    assert_eq!(
        held(&ok(&mut map, hold(1, best(None, 3)), OPEN)),
        ["A-2-1", "A-2-2", "A-2-3"]
    );
}

#[test]
fn best_available_avoids_stranding_a_single_seat_within_the_row() {
    let mut map = map_of(terms(&[("A", &[6])]));
    take(&mut map, &["A-1-4"]);
    // Seats 1-3 would leave one of them alone; 5-6 fill their run exactly.
    assert_eq!(
        held(&ok(&mut map, hold(1, best(None, 2)), OPEN)),
        ["A-1-5", "A-1-6"]
    );
}

#[test]
fn best_available_keeps_the_front_row_even_when_it_must_strand_a_seat() {
    let mut map = map_of(terms(&[("A", &[3, 4])]));
    assert_eq!(
        held(&ok(&mut map, hold(1, best(None, 2)), OPEN)),
        ["A-1-1", "A-1-2"]
    );
}

#[test]
fn best_available_keeps_to_the_named_section() {
    let mut map = map_of(terms(&[("A", &[4]), ("B", &[4, 4])]));
    assert_eq!(
        held(&ok(&mut map, hold(1, best(Some("B"), 3)), OPEN)),
        ["B-1-1", "B-1-2", "B-1-3"]
    );
    assert_eq!(
        held(&ok(&mut map, hold(2, best(Some("B"), 3)), OPEN)),
        ["B-2-1", "B-2-2", "B-2-3"]
    );
    rejected(
        &mut map,
        hold(3, best(Some("B"), 2)),
        OPEN,
        ErrorCode::SeatUnavailable,
    );
    rejected(
        &mut map,
        hold(3, best(Some("Z"), 1)),
        OPEN,
        ErrorCode::ValidationFailed,
    );
}

#[test]
fn best_available_with_no_fitting_row_is_seat_unavailable() {
    let mut map = map_of(terms(&[("A", &[2, 2])]));
    rejected(
        &mut map,
        hold(1, best(None, 3)),
        OPEN,
        ErrorCode::SeatUnavailable,
    );
    take(&mut map, &["A-1-1", "A-2-2"]);
    rejected(
        &mut map,
        hold(1, best(None, 2)),
        OPEN,
        ErrorCode::SeatUnavailable,
    );
    take(&mut map, &["A-1-2", "A-2-1"]);
    rejected(
        &mut map,
        hold(1, best(None, 1)),
        OPEN,
        ErrorCode::SeatUnavailable,
    );
    assert_eq!(map.view().availability.available, 0);
}

#[test]
fn holding_by_ids_is_all_or_nothing() {
    let mut map = map_of(terms(&[("A", &[4])]));
    take(&mut map, &["A-1-2"]);
    rejected(
        &mut map,
        hold(1, ids(&["A-1-1", "A-1-2"])),
        OPEN,
        ErrorCode::SeatUnavailable,
    );
    assert_eq!(map.status_of(0), SeatStatus::Available);
    let decision = ok(&mut map, hold(1, ids(&["A-1-4", "A-1-1"])), OPEN);
    assert_eq!(held(&decision), ["A-1-4", "A-1-1"], "in the order asked");
}

#[test]
fn unknown_repeated_or_no_ids_are_invalid() {
    let mut map = map_of(terms(&[("A", &[4])]));
    for bad in [
        ids(&["A-1-1", "A-1-9"]),
        ids(&["A-1-1", "A-1-1"]),
        ids(&[]),
        best(None, 0),
    ] {
        rejected(&mut map, hold(1, bad), OPEN, ErrorCode::ValidationFailed);
    }
}

#[test]
fn more_seats_than_an_order_may_take_are_too_many() {
    let mut map = map_of(terms(&[("A", &[10])]));
    let five = ids(&["A-1-1", "A-1-2", "A-1-3", "A-1-4", "A-1-5"]);
    rejected(&mut map, hold(1, five), OPEN, ErrorCode::TooManySeats);
    rejected(
        &mut map,
        hold(1, best(None, 5)),
        OPEN,
        ErrorCode::TooManySeats,
    );
    ok(&mut map, hold(1, best(None, 4)), OPEN);
}

#[test]
fn a_user_may_hold_any_number_of_orders() {
    let mut map = map_of(terms(&[("A", &[12])]));
    for order in 1..=3 {
        ok(&mut map, hold(order, best(None, 4)), OPEN);
    }
    assert_eq!(map.totals().held, 12);
}

#[test]
fn holds_before_sales_open_are_refused() {
    let mut map = map_of(terms(&[("A", &[4])]));
    rejected(
        &mut map,
        hold(1, best(None, 1)),
        OPEN - 1,
        ErrorCode::SalesNotOpen,
    );
    ok(&mut map, hold(1, best(None, 1)), OPEN);
    let mut always_open = map_of(EventTerms {
        sales_open_at_ms: None,
        ..terms(&[("A", &[4])])
    });
    ok(&mut always_open, hold(1, best(None, 1)), T0);
}

#[test]
fn a_queued_event_needs_a_pass() {
    let mut map = map_of(EventTerms {
        queue_required: true,
        ..terms(&[("A", &[4])])
    });
    rejected(
        &mut map,
        hold(1, best(None, 1)),
        OPEN,
        ErrorCode::QueuePassRequired,
    );
    let mut with_pass = hold(1, best(None, 1));
    if let SeatCommand::Hold { queue_pass, .. } = &mut with_pass {
        *queue_pass = true;
    }
    ok(&mut map, with_pass, OPEN);
}

#[test]
fn a_hold_replies_each_seat_price_and_the_total() {
    let mut map = map_of(terms(&[("A", &[2, 2])]));
    let decision = ok(&mut map, hold(7, ids(&["A-1-1", "A-2-1"])), OPEN);
    let SeatReply::Hold(view) = decision.reply else {
        panic!("a hold view");
    };
    assert_eq!(view.order, OrderId::from_u128(7));
    assert_eq!(view.unit_prices, [10_000, 9_900]);
    assert_eq!(view.total_price, 19_900);
    assert_eq!(view.expires_at_ms, OPEN + HOLD_MS);
}

#[test]
fn a_repeated_hold_of_the_same_order_holds_once() {
    let mut map = map_of(terms(&[("A", &[4])]));
    let first = ok(&mut map, hold(1, best(None, 2)), OPEN);
    let again = ok(&mut map, hold(1, best(None, 2)), OPEN);
    assert!(again.events.is_empty());
    assert_eq!(held(&again), held(&first));
    assert_eq!(map.totals().held, 2);
}

#[test]
fn a_hold_expires_by_its_deadline_command() {
    let mut map = map_of(terms(&[("A", &[4])]));
    ok(&mut map, hold(1, best(None, 2)), OPEN);
    let due = OPEN + HOLD_MS;
    assert_eq!(map.next_deadline_ms(), Some(due));
    assert_eq!(map.deadline_command(&Ctx { now_ms: due - 1 }), None);
    let command = map.deadline_command(&Ctx { now_ms: due }).expect("due");
    assert_eq!(command, SeatCommand::Expire);
    let decision = ok(&mut map, command, due);
    assert_eq!(
        decision.events,
        [SeatEvent::Released {
            order: OrderId::from_u128(1),
            reason: ReleaseReason::Expired
        }]
    );
    assert_eq!(map_view(&decision).availability.available, 4);
    assert_eq!(map.totals(), SeatCounts::default());
    assert_eq!(map.next_deadline_ms(), None);
    rejected(
        &mut map,
        SeatCommand::Commit {
            order: OrderId::from_u128(1),
        },
        due,
        ErrorCode::OrderExpired,
    );
}

#[test]
fn expiry_releases_only_the_holds_that_are_due() {
    let mut map = map_of(terms(&[("A", &[4])]));
    ok(&mut map, hold(1, best(None, 1)), OPEN);
    ok(&mut map, hold(2, best(None, 1)), OPEN + 5_000);
    let decision = ok(&mut map, SeatCommand::Expire, OPEN + HOLD_MS);
    assert_eq!(decision.events.len(), 1);
    assert!(map.hold(OrderId::from_u128(2)).is_some());
    assert_eq!(map.next_deadline_ms(), Some(OPEN + HOLD_MS + 5_000));
}

#[test]
fn release_gives_the_seats_back_and_twice_is_once() {
    let mut map = map_of(terms(&[("A", &[4])]));
    ok(&mut map, hold(1, ids(&["A-1-2"])), OPEN);
    let release = SeatCommand::Release {
        order: OrderId::from_u128(1),
        reason: ReleaseReason::Cancelled,
    };
    let released = ok(&mut map, release.clone(), OPEN);
    assert_eq!(map_view(&released).availability.available, 4);
    assert_eq!(
        map_view(&released),
        &map.view(),
        "the reply is the state after"
    );
    assert!(
        ok(&mut map, release, OPEN).events.is_empty(),
        "twice is once"
    );
    ok(&mut map, hold(2, ids(&["A-1-2"])), OPEN);
}

#[test]
fn commit_sells_the_held_seats_for_good() {
    let mut map = map_of(terms(&[("A", &[4])]));
    ok(&mut map, hold(1, ids(&["A-1-1", "A-1-2"])), OPEN);
    let committed = ok(
        &mut map,
        SeatCommand::Commit {
            order: OrderId::from_u128(1),
        },
        OPEN + 1,
    );
    assert_eq!(held(&committed), ["A-1-1", "A-1-2"]);
    assert_eq!(map.status_of(0), SeatStatus::Sold);
    assert_eq!(map.next_deadline_ms(), None, "a sold seat never expires");
    let release = SeatCommand::Release {
        order: OrderId::from_u128(1),
        reason: ReleaseReason::Cancelled,
    };
    assert!(ok(&mut map, release, OPEN + 2).events.is_empty());
    assert_eq!(map.totals(), SeatCounts { held: 0, sold: 2 });
    rejected(
        &mut map,
        hold(2, ids(&["A-1-2"])),
        OPEN,
        ErrorCode::SeatUnavailable,
    );
}

#[test]
fn seats_view_lists_every_seat_with_its_price_and_status() {
    let mut map = map_of(terms(&[("A", &[2, 1])]));
    ok(&mut map, hold(1, ids(&["A-2-1"])), OPEN);
    let seats = map.seats_view();
    let listed: Vec<(&str, i64, SeatStatus)> = seats
        .iter()
        .map(|s| (s.id.as_str(), s.price, s.status))
        .collect();
    assert_eq!(
        listed,
        [
            ("A-1-1", 10_000, SeatStatus::Available),
            ("A-1-2", 10_000, SeatStatus::Available),
            ("A-2-1", 9_900, SeatStatus::Held),
        ]
    );
    assert_eq!(
        (seats[2].section.as_str(), seats[2].row.as_str()),
        ("A", "2")
    );
    let json = serde_json::to_value(&seats[2]).expect("serialises");
    assert_eq!(json["status"], "HELD");
}

#[test]
fn a_snapshot_round_trip_keeps_seats_holds_and_the_expiry_index() {
    let mut map = map_of(terms(&[("A", &[4, 4])]));
    ok(&mut map, hold(1, best(None, 2)), OPEN);
    ok(&mut map, hold(2, ids(&["A-2-4"])), OPEN);
    ok(
        &mut map,
        SeatCommand::Commit {
            order: OrderId::from_u128(2),
        },
        OPEN,
    );
    ok(&mut map, hold(3, best(None, 3)), OPEN);
    let bytes = crate::codec::encode(SeatMap::VERSION, &map);
    let mut back: SeatMap = crate::codec::decode(SeatMap::VERSION, &bytes).expect("decodes");
    back.restore();
    assert_eq!(back, map);
    back.check_deep_invariants().expect("deep invariants hold");
}

/// 40 sections of 50 rows of 30 seats.
fn stadium() -> EventTerms {
    let rows = [30u32; 50];
    let names: Vec<String> = (1..=40).map(|s| format!("S{s}")).collect();
    let sections: Vec<(&str, &[u32])> = names.iter().map(|n| (n.as_str(), &rows[..])).collect();
    terms(&sections)
}

#[test]
fn a_stadium_of_60000_seats_costs_a_byte_a_seat() {
    let mut map = map_of(stadium());
    assert_eq!(map.layout().seats_total(), 60_000);
    let bytes = map.seat_state_bytes();
    println!("60,000 seats: {bytes} bytes of seat state");
    assert!(bytes < 200 * 1024, "{bytes} bytes");
    let snapshot = crate::codec::encode(SeatMap::VERSION, &map);
    println!("60,000 seats: {} bytes of snapshot", snapshot.len());
    assert!(snapshot.len() < 100 * 1024, "{} bytes", snapshot.len());
    // The back row of the last section is still found, and its ids parse back.
    let back_row = SeatRequest::ByIds(vec!["S40-50-30".into()]);
    ok(&mut map, hold(1, back_row), OPEN);
    let last = ok(&mut map, hold(2, best(Some("S40"), 4)), OPEN);
    assert_eq!(held(&last)[0], "S40-1-1");
    assert_eq!(map.seat_index("S40-50-30"), Some(59_999));
}

#[derive(Debug, Clone)]
enum Step {
    HoldIds {
        seats: Vec<u32>,
        user: u8,
    },
    HoldBest {
        section: Option<usize>,
        quantity: u32,
    },
    Release {
        pick: usize,
    },
    Commit {
        pick: usize,
    },
    Expire,
    Wait {
        ms: i64,
    },
    /// Return the seats of a sold order (picked among them), plus a stray seat if any.
    Return {
        pick: usize,
        stray: Option<u32>,
    },
    /// Check in a seat (`PROP_SEATS`: one of no such seat) for the order the model says has it.
    CheckIn {
        seat: u32,
    },
}

/// The proptest venue: 15 seats, small enough for collisions to be common.
const PROP_LAYOUT: &[(&str, &[u32])] = &[("A", &[5, 4]), ("B", &[6])];
const PROP_SEATS: u32 = 15;

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (prop::collection::vec(0..PROP_SEATS + 1, 0..6), 0u8..4)
            .prop_map(|(seats, user)| Step::HoldIds { seats, user }),
        3 => (prop::option::of(0usize..3), 0u32..6)
            .prop_map(|(section, quantity)| Step::HoldBest { section, quantity }),
        1 => any::<usize>().prop_map(|pick| Step::Release { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Commit { pick }),
        1 => Just(Step::Expire),
        2 => (0i64..400_000).prop_map(|ms| Step::Wait { ms }),
        1 => (any::<usize>(), prop::option::of(0..PROP_SEATS))
            .prop_map(|(pick, stray)| Step::Return { pick, stray }),
        1 => (0..PROP_SEATS + 1).prop_map(|seat| Step::CheckIn { seat }),
    ]
}

fn pick_order(map: &SeatMap, pick: usize) -> OrderId {
    let mut orders: Vec<OrderId> = map.holds.keys().copied().collect();
    orders.sort_unstable();
    orders
        .get(pick % orders.len().max(1))
        .copied()
        .unwrap_or(OrderId::from_u128(u128::MAX))
}

/// Who has each seat, kept by the test from the replies and events alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Free,
    Held(OrderId),
    Sold(OrderId),
    CheckedIn(OrderId),
}

impl Owner {
    fn buyer(self) -> Option<OrderId> {
        match self {
            Owner::Sold(order) | Owner::CheckedIn(order) => Some(order),
            Owner::Free | Owner::Held(_) => None,
        }
    }
}

/// A sold order picked by `pick`, with its seats; none when nothing is sold.
fn sold_order(model: &[Owner], pick: usize) -> Option<(OrderId, Vec<u32>)> {
    let mut orders: Vec<OrderId> = model.iter().filter_map(|o| o.buyer()).collect();
    orders.sort_unstable();
    orders.dedup();
    let order = *orders.get(pick % orders.len().max(1))?;
    let seats = (0u32..)
        .zip(model)
        .filter(|(_, o)| o.buyer() == Some(order));
    Some((order, seats.map(|(seat, _)| seat).collect()))
}

fn seat_name(map: &SeatMap, seat: u32) -> String {
    match seat < PROP_SEATS {
        true => map.seat_id(seat),
        false => "Z-1-1".to_string(),
    }
}

/// The commands of the steps after a sale, whose targets the model knows.
fn after_sale_command(map: &SeatMap, model: &[Owner], step: &Step) -> Option<SeatCommand> {
    let nobody = OrderId::from_u128(u128::MAX);
    match step {
        Step::Return { pick, stray } => {
            let (order, mut seats) = sold_order(model, *pick).unwrap_or((nobody, Vec::new()));
            seats.extend(*stray);
            Some(SeatCommand::Return {
                order,
                seats: seats.iter().map(|s| seat_name(map, *s)).collect(),
            })
        }
        Step::CheckIn { seat } => Some(SeatCommand::CheckIn {
            order: model
                .get(*seat as usize)
                .and_then(|o| o.buyer())
                .unwrap_or(nobody),
            seat: seat_name(map, *seat),
        }),
        _ => None,
    }
}

fn command_of(map: &SeatMap, model: &[Owner], step: &Step, order: u128) -> Option<SeatCommand> {
    let request = match step {
        Step::HoldIds { seats, .. } => {
            SeatRequest::ByIds(seats.iter().map(|s| seat_name(map, *s)).collect())
        }
        Step::HoldBest { section, quantity } => SeatRequest::BestAvailable {
            section: section.map(|s| ["A", "B", "Z"][s].to_string()),
            quantity: *quantity,
        },
        Step::Release { pick } => {
            return Some(SeatCommand::Release {
                order: pick_order(map, *pick),
                reason: ReleaseReason::Cancelled,
            })
        }
        Step::Commit { pick } => {
            return Some(SeatCommand::Commit {
                order: pick_order(map, *pick),
            })
        }
        Step::Expire => return Some(SeatCommand::Expire),
        Step::Wait { .. } => return None,
        Step::Return { .. } | Step::CheckIn { .. } => return after_sale_command(map, model, step),
    };
    let user = match step {
        Step::HoldIds { user, .. } => *user,
        _ => 0,
    };
    Some(SeatCommand::Hold {
        order: OrderId::from_u128(order),
        user_id: format!("u{user}").into(),
        request,
        queue_pass: false,
    })
}

/// Folds the accepted events into the model, checking each against it.
fn follow(map: &SeatMap, model: &mut [Owner], events: &[SeatEvent]) -> Result<(), TestCaseError> {
    for event in events {
        match event {
            SeatEvent::Held { order, seats, .. } => {
                for seat in seats {
                    let owner = &mut model[*seat as usize];
                    prop_assert_eq!(*owner, Owner::Free, "seat {} held twice", seat);
                    *owner = Owner::Held(*order);
                }
            }
            SeatEvent::Released { order, .. } => {
                for owner in model.iter_mut().filter(|o| **o == Owner::Held(*order)) {
                    *owner = Owner::Free;
                }
            }
            SeatEvent::Committed { order } => {
                for owner in model.iter_mut().filter(|o| **o == Owner::Held(*order)) {
                    *owner = Owner::Sold(*order);
                }
            }
            SeatEvent::Returned { seats, .. } => {
                for seat in seats {
                    let owner = &mut model[*seat as usize];
                    prop_assert!(owner.buyer().is_some(), "seat {} returned unsold", seat);
                    *owner = Owner::Free;
                }
            }
            SeatEvent::CheckedIn { order, seat } => {
                let owner = &mut model[*seat as usize];
                prop_assert_eq!(*owner, Owner::Sold(*order), "seat {} checked in", seat);
                *owner = Owner::CheckedIn(*order);
            }
            SeatEvent::Created(_) => prop_assert!(false, "created twice"),
        }
    }
    for (seat, owner) in (0u32..).zip(model.iter()) {
        let status = map.status_of(seat);
        prop_assert_eq!(map.checked_in(seat), matches!(owner, Owner::CheckedIn(_)));
        match owner {
            Owner::Free => prop_assert_eq!(status, SeatStatus::Available),
            Owner::Sold(_) | Owner::CheckedIn(_) => prop_assert_eq!(status, SeatStatus::Sold),
            Owner::Held(order) => {
                prop_assert_eq!(status, SeatStatus::Held);
                let hold = map.hold(*order);
                prop_assert!(hold.is_some_and(|h| h.seats.contains(&seat)));
            }
        }
    }
    Ok(())
}

/// What the model says a step after a sale must get: `Some(None)` accepted, `Some(code)`
/// refused with `code`; `None` for the other steps.
fn after_sale_refusal(model: &[Owner], step: &Step) -> Option<Option<ErrorCode>> {
    match step {
        Step::Return { pick, stray } => {
            let mut seats = sold_order(model, *pick).map(|(_, s)| s).unwrap_or_default();
            seats.extend(*stray);
            let mut distinct = seats.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let refusal = if seats.is_empty() || distinct.len() != seats.len() {
                Some(ErrorCode::ValidationFailed)
            } else if seats.iter().any(|s| model[*s as usize].buyer().is_none()) {
                Some(ErrorCode::Conflict)
            } else {
                None
            };
            Some(refusal)
        }
        Step::CheckIn { seat } => Some(match model.get(*seat as usize) {
            Some(Owner::Sold(_)) => None,
            Some(Owner::CheckedIn(_)) => Some(ErrorCode::AlreadyCheckedIn),
            _ => Some(ErrorCode::TicketInvalid),
        }),
        _ => None,
    }
}

/// A best-available refusal is right only if no row of the asked rows has the run.
fn no_run_fits(map: &SeatMap, model: &[Owner], section: Option<usize>, quantity: u32) -> bool {
    let layout = map.layout();
    let rows = match section {
        Some(s) if s < layout.section_count() => layout.rows_of_section(s),
        Some(_) => return true,
        None => 0..layout.row_count(),
    };
    rows.into_iter().all(|r| {
        let seats = layout.seats_of_row(r);
        let free: Vec<bool> = seats.map(|s| model[s as usize] == Owner::Free).collect();
        !free
            .windows(quantity as usize)
            .any(|w| w.iter().all(|f| *f))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_seat_commands_never_double_book(
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut map = map_of(terms(PROP_LAYOUT));
        let mut model = vec![Owner::Free; PROP_SEATS as usize];
        let mut now_ms = OPEN;
        let mut next_order = 0u128;
        for step in steps {
            if let Step::Wait { ms } = step {
                now_ms += ms;
                continue;
            }
            next_order += 1;
            let command = command_of(&map, &model, &step, next_order).expect("not a wait");
            let expected = after_sale_refusal(&model, &step);
            let result = run(&mut map, &command, now_ms);
            if let Some(expected) = expected {
                let got = result.as_ref().err().map(|e| e.code);
                prop_assert_eq!(got, expected, "{:?}", command);
            }
            match result {
                Ok(decision) => {
                    if let (Step::HoldBest { .. }, [SeatEvent::Held { seats, .. }]) =
                        (&step, &decision.events[..])
                    {
                        let row = map.layout().row_of_seat(seats[0]);
                        let in_line = (seats[0]..).zip(seats).all(|(want, got)| want == *got);
                        prop_assert!(in_line, "{:?} not adjacent", seats);
                        prop_assert!(seats.iter().all(|s| map.layout().row_of_seat(*s) == row));
                    }
                    follow(&map, &mut model, &decision.events)?;
                }
                Err(e) if e.code == ErrorCode::SeatUnavailable => {
                    let requested_free = match &step {
                        Step::HoldIds { seats, .. } => {
                            seats.iter().all(|s| model[*s as usize] == Owner::Free)
                        }
                        Step::HoldBest { section, quantity } => {
                            !no_run_fits(&map, &model, *section, *quantity)
                        }
                        _ => false,
                    };
                    prop_assert!(!requested_free, "{:?} refused though free", step);
                }
                Err(_) => {}
            }
            let totals = map.totals();
            let held = model.iter().filter(|o| matches!(o, Owner::Held(_))).count();
            let sold = model.iter().filter(|o| o.buyer().is_some()).count();
            prop_assert_eq!((totals.held as usize, totals.sold as usize), (held, sold));
            prop_assert_eq!(map.view().availability.available as usize, model.len() - held - sold);
        }
    }
}

/// Seat -> status of the seats not AVAILABLE, after folding in `moves` the way a live client
/// folds the changes of a step.
fn fold_moves(
    seats: &mut std::collections::BTreeMap<u32, SeatStatus>,
    moves: &[(u32, SeatStatus)],
) {
    for &(seat, status) in moves {
        match status {
            SeatStatus::Available => seats.remove(&seat),
            status => seats.insert(seat, status),
        };
    }
}

fn full_view(map: &SeatMap) -> std::collections::BTreeMap<u32, SeatStatus> {
    map.seats_taken().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// What `event:{id}:seats` promises: a client that starts from a full view and applies
    /// every step's changes holds the map's next full view.
    #[test]
    fn live_changes_carry_a_full_view_to_the_next(
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let mut map = map_of(terms(PROP_LAYOUT));
        let mut model = vec![Owner::Free; PROP_SEATS as usize];
        let mut client = full_view(&map);
        prop_assert!(client.is_empty());
        let mut now_ms = OPEN;
        for (order, step) in (1u128..).zip(steps) {
            if let Step::Wait { ms } = step {
                now_ms += ms;
                continue;
            }
            let command = command_of(&map, &model, &step, order).expect("not a wait");
            let Ok(decision) = map.decide(&command, &Ctx { now_ms }) else {
                continue;
            };
            let mut moves = Vec::new();
            for event in &decision.events {
                let (seats, to) = map.seats_moved_by(event);
                moves.extend(seats.iter().map(|&seat| (seat, to)));
                map.apply(event);
            }
            follow(&map, &mut model, &decision.events)?;
            fold_moves(&mut client, &moves);
            prop_assert_eq!(&client, &full_view(&map), "after {:?}", command);
        }
    }
}
