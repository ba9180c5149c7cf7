//! ExpiringHolds: the index follows every insert and remove, the due scan and the next
//! deadline read it, `check` finds it out of step, and the encoding is the bare map's.

use proptest::prelude::*;

use super::*;
use crate::codec;
use crate::OrderId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    units: i64,
    expires_at_ms: i64,
}

impl Expiring for Held {
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

fn held(units: i64, expires_at_ms: i64) -> Held {
    Held {
        units,
        expires_at_ms,
    }
}

/// Orders 1 (due 700), 2 (300), 3 (900), 4 (300).
fn four() -> ExpiringHolds<Held> {
    let mut holds = ExpiringHolds::default();
    for (order, due_ms) in [(1, 700), (2, 300), (3, 900), (4, 300)] {
        holds.insert(OrderId::from_u128(order), held(1, due_ms));
    }
    holds
}

#[test]
fn a_hold_is_committable_only_before_its_expiry_and_while_held() {
    let mut holds = four();
    assert_eq!(
        holds.committable(OrderId::from_u128(1), 699),
        Ok(&held(1, 700))
    );
    let late = holds
        .committable(OrderId::from_u128(1), 700)
        .expect_err("expired at 700");
    assert_eq!(late.code, ErrorCode::OrderExpired);
    holds.remove(OrderId::from_u128(3));
    let released = holds
        .committable(OrderId::from_u128(3), 0)
        .expect_err("released");
    assert_eq!(released.code, ErrorCode::OrderExpired);
    assert!(
        holds.committable(OrderId::from_u128(99), 0).is_err(),
        "never held"
    );
}

fn due_orders(holds: &ExpiringHolds<Held>, now_ms: i64) -> Vec<u128> {
    holds
        .due(now_ms)
        .map(|(order, _)| order.as_u128())
        .collect()
}

#[test]
fn a_hold_is_found_by_its_order_and_its_deadline_is_indexed() {
    let mut holds = ExpiringHolds::default();
    assert_eq!(holds.insert(OrderId::from_u128(7), held(3, 500)), None);
    assert_eq!(holds.get(OrderId::from_u128(7)), Some(&held(3, 500)));
    assert!(holds.contains(OrderId::from_u128(7)) && !holds.contains(OrderId::from_u128(8)));
    assert_eq!((holds.len(), holds.is_empty()), (1, false));
    assert_eq!(holds.next_deadline_ms(), Some(500));
    holds.check().expect("in step");
}

#[test]
fn replacing_a_hold_moves_its_deadline() {
    let mut holds = four();
    assert_eq!(
        holds.insert(OrderId::from_u128(2), held(5, 800)),
        Some(held(1, 300))
    );
    assert_eq!(holds.len(), 4);
    assert_eq!(due_orders(&holds, 300), vec![4]);
    assert_eq!(due_orders(&holds, 800), vec![4, 1, 2]);
    holds.check().expect("in step");
}

#[test]
fn removing_a_hold_removes_its_deadline() {
    let mut holds = four();
    assert_eq!(holds.remove(OrderId::from_u128(2)), Some(held(1, 300)));
    assert_eq!(holds.remove(OrderId::from_u128(2)), None);
    assert_eq!(holds.get(OrderId::from_u128(2)), None);
    assert_eq!(due_orders(&holds, 300), vec![4]);
    holds.check().expect("in step");
    for order in [1, 3, 4] {
        holds.remove(OrderId::from_u128(order));
    }
    assert!(holds.is_empty());
    assert_eq!(holds.next_deadline_ms(), None);
}

#[test]
fn the_due_scan_takes_what_is_due_by_now_earliest_first_then_by_order() {
    let holds = four();
    assert_eq!(due_orders(&holds, 299), Vec::<u128>::new());
    assert_eq!(due_orders(&holds, 300), vec![2, 4]);
    assert_eq!(due_orders(&holds, 899), vec![2, 4, 1]);
    let due: Vec<(u128, Held)> = holds
        .due(i64::MAX)
        .map(|(o, h)| (o.as_u128(), *h))
        .collect();
    assert_eq!(due.len(), 4);
    assert_eq!(due[3], (3, held(1, 900)));
}

#[test]
fn the_due_scan_stops_at_the_batch_max() {
    let mut holds = ExpiringHolds::default();
    let total = u128::try_from(EXPIRE_BATCH_MAX).expect("fits") + 5;
    for order in 0..total {
        holds.insert(OrderId::from_u128(order), held(1, 100 + (order % 7) as i64));
    }
    assert_eq!(holds.due(1_000).count(), EXPIRE_BATCH_MAX);
    let batch: Vec<u128> = due_orders(&holds, 1_000);
    for order in batch {
        holds.remove(OrderId::from_u128(order));
    }
    assert_eq!(holds.due(1_000).count(), 5);
}

#[test]
fn the_next_deadline_is_the_earliest_hold() {
    let mut holds = four();
    assert_eq!(holds.next_deadline_ms(), Some(300));
    holds.remove(OrderId::from_u128(2));
    assert_eq!(holds.next_deadline_ms(), Some(300));
    holds.remove(OrderId::from_u128(4));
    assert_eq!(holds.next_deadline_ms(), Some(700));
}

#[test]
fn an_index_out_of_step_with_the_holds_is_reported() {
    let mut missing = four();
    missing.expiry.remove(&(300, OrderId::from_u128(2)));
    assert!(missing.check().is_err());
    let mut stale = four();
    stale.expiry.insert((999, OrderId::from_u128(3)));
    assert!(stale.check().is_err());
    let mut moved = four();
    moved.expiry.remove(&(900, OrderId::from_u128(3)));
    moved.expiry.insert((901, OrderId::from_u128(3)));
    assert!(moved.check().is_err());
}

#[test]
fn holds_encode_as_the_bare_map_did() {
    let mut map: imbl::HashMap<u128, Held> = imbl::HashMap::new();
    map.insert(7, held(3, 500));
    let mut holds = ExpiringHolds::default();
    holds.insert(OrderId::from_u128(7), held(3, 500));
    assert_eq!(codec::encode(1, &holds), codec::encode(1, &map));
}

#[test]
fn decoding_the_bare_map_rebuilds_the_index() {
    let holds = four();
    let map: imbl::HashMap<u128, Held> = holds.iter().map(|(o, h)| (o.as_u128(), *h)).collect();
    let decoded: ExpiringHolds<Held> = codec::decode(1, &codec::encode(1, &map)).expect("decodes");
    decoded.check().expect("index rebuilt");
    assert_eq!(decoded, holds);
    assert_eq!(due_orders(&decoded, 300), vec![2, 4]);
}

#[derive(Debug, Clone)]
enum Op {
    Insert { order: u8, due_ms: i64 },
    Remove { order: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12, 0i64..50).prop_map(|(order, due_ms)| Op::Insert { order, due_ms }),
        2 => (0u8..12).prop_map(|order| Op::Remove { order }),
    ]
}

proptest! {
    /// Against a plain map: the same holds, the index in step, the due scan and the next
    /// deadline as a full scan of the map finds them.
    #[test]
    fn the_index_follows_any_sequence_of_inserts_and_removes(
        ops in prop::collection::vec(op(), 0..60),
        now_ms in 0i64..50,
    ) {
        let mut holds = ExpiringHolds::default();
        let mut model = std::collections::BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert { order, due_ms } => {
                    let hold = held(1, due_ms);
                    prop_assert_eq!(holds.insert(OrderId::from_u128(order.into()), hold), model.insert(order, hold));
                }
                Op::Remove { order } => {
                    prop_assert_eq!(holds.remove(OrderId::from_u128(order.into())), model.remove(&order));
                }
            }
            prop_assert!(holds.check().is_ok());
        }
        prop_assert_eq!(holds.len(), model.len());
        let earliest = model.values().map(|h| h.expires_at_ms).min();
        prop_assert_eq!(holds.next_deadline_ms(), earliest);
        let mut due: Vec<(i64, u128)> = model
            .iter()
            .filter(|(_, h)| h.expires_at_ms <= now_ms)
            .map(|(o, h)| (h.expires_at_ms, u128::from(*o)))
            .collect();
        due.sort_unstable();
        let scanned: Vec<(i64, u128)> =
            holds.due(now_ms).map(|(o, h)| (h.expires_at_ms, o.as_u128())).collect();
        prop_assert_eq!(scanned, due);
    }
}
