//! CouponPolicy: unit tests of each command, then properties over random command sequences
//! with a clock that only moves forward, checked against a plain reference model.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::codec;

const POLICY: &str = "0190a000-0000-7000-8000-000000000001";
/// 2023-11-14T22:13:20Z, so time stays far from 0 and from overflow.
const T0: i64 = 1_700_000_000_000;
const WINDOW_MS: i64 = 3_600_000;

/// Runs a command the way the actor does: decide, apply, check the invariants, and collect
/// the coupons the events touched, as the lists will show them.
fn run(
    policy: &mut CouponPolicy,
    command: &CouponCommand,
    now_ms: i64,
) -> Result<(Decision<CouponPolicy>, Vec<CouponView>), Rejection> {
    let decision = policy.decide(command, &Ctx { now_ms })?;
    let mut rows = Vec::new();
    for event in &decision.events {
        policy.apply(event);
        if let Err(violation) = policy.check_invariants() {
            panic!("invariant broken after {event:?} (from {command:?}): {violation}");
        }
        rows.extend(policy.coupon_of_event(event).map(|(_, view)| view));
    }
    if let Err(violation) = policy.check_deep_invariants() {
        panic!("deep invariant broken after {command:?}: {violation}");
    }
    Ok((decision, rows))
}

fn ok(policy: &mut CouponPolicy, command: CouponCommand, now_ms: i64) -> CouponReply {
    run(policy, &command, now_ms)
        .unwrap_or_else(|e| panic!("{command:?} rejected: {e}"))
        .0
        .reply
}

fn rejected(policy: &mut CouponPolicy, command: CouponCommand, now_ms: i64, code: ErrorCode) {
    let before = policy.clone();
    match run(policy, &command, now_ms) {
        Ok((decision, _)) => panic!("{command:?} accepted: {decision:?}"),
        Err(e) => assert_eq!(e.code, code, "{command:?} rejected with {e}"),
    }
    assert_eq!(*policy, before, "a rejected {command:?} changed the policy");
}

fn terms(total_quantity: i64, per_user_limit: i64) -> Terms {
    Terms {
        title: "Ten percent".into(),
        description: Some("welcome".into()),
        discount_type: DiscountType::Percentage,
        discount_value: 10,
        min_order_amount: 1_000,
        max_discount_amount: Some(500),
        total_quantity,
        per_user_limit,
        starts_at_ms: T0,
        ends_at_ms: T0 + WINDOW_MS,
    }
}

fn policy_with(total_quantity: i64, per_user_limit: i64) -> CouponPolicy {
    let mut policy = CouponPolicy::blank(POLICY);
    let create = CouponCommand::Create {
        terms: terms(total_quantity, per_user_limit),
        created_by: "operator-1".into(),
    };
    ok(&mut policy, create, T0 - 10_000);
    policy
}

fn issue(user: &str) -> CouponCommand {
    CouponCommand::Issue {
        user_id: user.into(),
    }
}

fn use_coupon(n: u64, user: &str, order_amount: i64) -> CouponCommand {
    CouponCommand::Use {
        n,
        by_user: user.into(),
        order_amount,
        reference: Some("order-1".into()),
    }
}

fn cancel(n: u64, user: &str, operator: bool) -> CouponCommand {
    CouponCommand::Cancel {
        n,
        by_user: user.into(),
        operator,
    }
}

fn coupon(reply: CouponReply) -> CouponView {
    match reply {
        CouponReply::Coupon(view) => view,
        other => panic!("expected a coupon, got {other:?}"),
    }
}

#[test]
fn creating_shows_the_policy_with_nothing_issued() {
    let policy = policy_with(50, 1);
    assert!(policy.exists());
    let view = policy.policy_view();
    assert_eq!((view.issued, view.used, view.remaining), (0, 0, 50));
    assert_eq!(view.starts_at, crate::time::rfc3339(T0));
    assert_eq!(view.id, POLICY);
    let mut again = policy.clone();
    let create = CouponCommand::Create {
        terms: terms(5, 1),
        created_by: "operator-1".into(),
    };
    rejected(&mut again, create, T0, ErrorCode::Conflict);
}

#[test]
fn invalid_terms_or_a_policy_never_created_are_refused() {
    let mut blank = CouponPolicy::blank(POLICY);
    let create = CouponCommand::Create {
        terms: terms(0, 1),
        created_by: "op".into(),
    };
    rejected(&mut blank, create, T0, ErrorCode::ValidationFailed);
    for command in [
        CouponCommand::Get,
        issue("u"),
        CouponCommand::GetCoupon { n: 1 },
        use_coupon(1, "u", 5_000),
        cancel(1, "u", true),
    ] {
        rejected(&mut blank, command, T0, ErrorCode::NotFound);
    }
    assert!(!blank.exists());
}

#[test]
fn issuing_numbers_coupons_and_projects_each_one() {
    let mut policy = policy_with(50, 1);
    let (decision, rows) = run(&mut policy, &issue("alice"), T0).expect("issued");
    let view = coupon(decision.reply);
    assert_eq!(view.id, format!("{POLICY}.00000001"));
    assert_eq!(
        (view.user_id.as_str(), view.status.as_str()),
        ("alice", "ISSUED")
    );
    assert_eq!(view.expires_at, crate::time::rfc3339(T0 + WINDOW_MS));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0], view);
    let second = coupon(ok(&mut policy, issue("bob"), T0 + 1));
    assert_eq!(second.id, format!("{POLICY}.00000002"));
    assert_eq!(parse_coupon_id(&second.id), Some((POLICY.to_string(), 2)));
    assert_eq!(policy.policy_view().remaining, 48);
}

#[test]
fn coupon_ids_parse_only_in_their_canonical_form() {
    assert_eq!(
        parse_coupon_id(&coupon_id(POLICY, 7)),
        Some((POLICY.into(), 7))
    );
    for bad in [
        "",
        POLICY,
        &format!("{POLICY}.7"),
        &format!("{POLICY}.00000000"),
        &format!("{}.00000001", POLICY.to_uppercase()),
        "not-a-uuid.00000001",
        &format!("{POLICY}.0000000x"),
    ] {
        assert_eq!(parse_coupon_id(bad), None, "{bad}");
    }
}

#[test]
fn issuing_outside_the_window_is_not_usable() {
    let mut policy = policy_with(50, 1);
    rejected(&mut policy, issue("a"), T0 - 1, ErrorCode::CouponNotUsable);
    rejected(
        &mut policy,
        issue("a"),
        T0 + WINDOW_MS,
        ErrorCode::CouponNotUsable,
    );
    ok(&mut policy, issue("a"), T0 + WINDOW_MS - 1);
}

#[test]
fn no_more_than_the_total_and_the_per_user_limit_are_issued() {
    let mut policy = policy_with(3, 2);
    ok(&mut policy, issue("a"), T0);
    ok(&mut policy, issue("a"), T0);
    rejected(&mut policy, issue("a"), T0, ErrorCode::CouponLimitReached);
    ok(&mut policy, issue("b"), T0);
    rejected(&mut policy, issue("c"), T0, ErrorCode::CouponExhausted);
    rejected(&mut policy, issue("a"), T0, ErrorCode::CouponLimitReached);
    assert_eq!(policy.policy_view().remaining, 0);
}

#[test]
fn only_the_owner_uses_a_coupon_once_within_its_window() {
    let mut policy = policy_with(10, 1);
    ok(&mut policy, issue("alice"), T0);
    rejected(
        &mut policy,
        use_coupon(1, "bob", 5_000),
        T0,
        ErrorCode::Forbidden,
    );
    rejected(
        &mut policy,
        use_coupon(2, "alice", 5_000),
        T0,
        ErrorCode::NotFound,
    );
    rejected(
        &mut policy,
        use_coupon(1, "alice", 999),
        T0,
        ErrorCode::MinOrderNotMet,
    );
    rejected(
        &mut policy,
        use_coupon(1, "alice", -1),
        T0,
        ErrorCode::ValidationFailed,
    );
    let late = T0 + WINDOW_MS;
    rejected(
        &mut policy,
        use_coupon(1, "alice", 5_000),
        late,
        ErrorCode::CouponNotUsable,
    );
    let (decision, rows) = run(&mut policy, &use_coupon(1, "alice", 4_321), T0 + 5).expect("use");
    let CouponReply::Used(used) = decision.reply else {
        panic!("a use answers the coupon and its discount");
    };
    assert_eq!(used.discount, 432, "10% of 4321, rounded down");
    assert_eq!(used.coupon.status, "USED");
    assert_eq!(used.coupon.order_amount, Some(4_321));
    assert_eq!(used.coupon.reference.as_deref(), Some("order-1"));
    assert_eq!(rows[0].status, "USED");
    rejected(
        &mut policy,
        use_coupon(1, "alice", 5_000),
        T0,
        ErrorCode::CouponNotUsable,
    );
    let capped = policy_with(10, 1);
    assert_eq!(capped.terms().discount(1_000_000), 500, "capped at 500");
    assert_eq!(policy.policy_view().used, 1);
}

#[test]
fn cancelling_undoes_a_use_and_is_a_no_op_on_an_issued_coupon() {
    let mut policy = policy_with(10, 1);
    ok(&mut policy, issue("alice"), T0);
    let (unchanged, rows) = run(&mut policy, &cancel(1, "alice", false), T0).expect("cancel");
    assert!(unchanged.events.is_empty() && rows.is_empty());
    assert_eq!(coupon(unchanged.reply).status, "ISSUED");
    ok(&mut policy, use_coupon(1, "alice", 5_000), T0);
    rejected(
        &mut policy,
        cancel(1, "mallory", false),
        T0,
        ErrorCode::Forbidden,
    );
    let (decision, rows) = run(&mut policy, &cancel(1, "op", true), T0 + 9).expect("cancel");
    let view = coupon(decision.reply);
    assert_eq!(view.status, "ISSUED");
    assert_eq!((view.used_at, view.discount), (None, None));
    assert_eq!(rows[0].status, "ISSUED");
    assert_eq!(policy.policy_view().used, 0);
    // The coupon may be used again, by its owner.
    ok(&mut policy, use_coupon(1, "alice", 5_000), T0 + 10);
    ok(&mut policy, cancel(1, "alice", false), T0 + 11);
}

#[derive(Debug, Clone)]
enum Op {
    Issue(u8),
    Use { n: u64, user: u8, order_amount: i64 },
    Cancel { n: u64, user: u8, operator: bool },
    Get(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..6).prop_map(Op::Issue),
        3 => (0u64..14, 0u8..6, 0i64..3_000)
            .prop_map(|(n, user, order_amount)| Op::Use { n, user, order_amount }),
        2 => (0u64..14, 0u8..6, any::<bool>())
            .prop_map(|(n, user, operator)| Op::Cancel { n, user, operator }),
        1 => (0u64..14).prop_map(Op::Get),
    ]
}

fn user(i: u8) -> String {
    format!("user-{i}")
}

fn command(op: &Op) -> CouponCommand {
    match op {
        Op::Issue(u) => issue(&user(*u)),
        Op::Use {
            n,
            user: u,
            order_amount,
        } => use_coupon(*n, &user(*u), *order_amount),
        Op::Cancel {
            n,
            user: u,
            operator,
        } => cancel(*n, &user(*u), *operator),
        Op::Get(n) => CouponCommand::GetCoupon { n: *n },
    }
}

/// The commands with their times: the clock starts before the window and ends after it.
fn timeline() -> impl Strategy<Value = Vec<(i64, Op)>> {
    prop::collection::vec((0i64..(WINDOW_MS / 20), op()), 0..60)
}

/// What a policy must do, written as plainly as possible: (owner, used) per coupon.
#[derive(Debug, Default)]
struct Model {
    coupons: Vec<(String, bool)>,
}

impl Model {
    fn step(&mut self, op: &Op, now_ms: i64, total: usize, limit: usize) -> Result<(), ErrorCode> {
        let open = (T0..T0 + WINDOW_MS).contains(&now_ms);
        let found = |n: u64| {
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=self.coupons.len()).contains(n))
        };
        match op {
            Op::Issue(u) => {
                let held = self.coupons.iter().filter(|(o, _)| *o == user(*u)).count();
                match () {
                    _ if !open => Err(ErrorCode::CouponNotUsable),
                    _ if held >= limit => Err(ErrorCode::CouponLimitReached),
                    _ if self.coupons.len() >= total => Err(ErrorCode::CouponExhausted),
                    _ => {
                        self.coupons.push((user(*u), false));
                        Ok(())
                    }
                }
            }
            Op::Use {
                n,
                user: u,
                order_amount,
            } => {
                let i = found(*n).ok_or(ErrorCode::NotFound)? - 1;
                match &mut self.coupons[i] {
                    (owner, _) if *owner != user(*u) => Err(ErrorCode::Forbidden),
                    (_, true) => Err(ErrorCode::CouponNotUsable),
                    _ if !open => Err(ErrorCode::CouponNotUsable),
                    _ if *order_amount < 1_000 => Err(ErrorCode::MinOrderNotMet),
                    (_, used) => {
                        *used = true;
                        Ok(())
                    }
                }
            }
            Op::Cancel {
                n,
                user: u,
                operator,
            } => {
                let i = found(*n).ok_or(ErrorCode::NotFound)? - 1;
                match &mut self.coupons[i] {
                    (owner, _) if *owner != user(*u) && !operator => Err(ErrorCode::Forbidden),
                    (_, used) => {
                        *used = false;
                        Ok(())
                    }
                }
            }
            Op::Get(n) => found(*n).map(|_| ()).ok_or(ErrorCode::NotFound),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_coupon_commands_never_issue_past_the_limits(
        total in 1i64..12,
        limit in 1i64..4,
        steps in timeline(),
    ) {
        let mut policy = policy_with(total, limit);
        let mut model = Model::default();
        let mut rows: BTreeMap<String, CouponView> = BTreeMap::new();
        let mut now_ms = T0 - WINDOW_MS / 10;
        for (advance_ms, op) in &steps {
            now_ms += advance_ms;
            let before = policy.clone();
            let total_usize = usize::try_from(total).expect("small");
            let limit_usize = usize::try_from(limit).expect("small");
            let expected = model.step(op, now_ms, total_usize, limit_usize);
            let outcome = run(&mut policy, &command(op), now_ms);
            let actual = outcome.as_ref().map(|_| ()).map_err(|e| e.code);
            prop_assert_eq!(actual, expected, "outcome of {:?} at {}", op, now_ms);
            match outcome {
                Err(_) => prop_assert_eq!(&policy, &before),
                Ok((_, new_rows)) => {
                    for view in new_rows {
                        rows.insert(view.id.clone(), view);
                    }
                }
            }
            let view = policy.policy_view();
            prop_assert!(view.issued <= u64::try_from(total).expect("fits"));
            prop_assert!(view.used <= view.issued);
            let mut per_user: BTreeMap<&str, i64> = BTreeMap::new();
            for coupon in rows.values() {
                *per_user.entry(coupon.user_id.as_str()).or_insert(0) += 1;
            }
            prop_assert!(per_user.values().all(|held| *held <= limit), "{:?}", per_user);
            // The projected rows agree with the state: one per coupon, same status.
            prop_assert_eq!(u64::try_from(rows.len()).expect("fits"), view.issued);
            let used_rows = rows.values().filter(|c| c.status == "USED").count();
            prop_assert_eq!(u64::try_from(used_rows).expect("fits"), view.used);
            let used_model = model.coupons.iter().filter(|(_, used)| *used).count();
            prop_assert_eq!(used_rows, used_model);
        }
    }

    #[test]
    fn a_snapshot_or_a_replay_rebuilds_the_same_policy(
        total in 1i64..12,
        limit in 1i64..4,
        steps in timeline(),
    ) {
        let mut policy = CouponPolicy::blank(POLICY);
        let create = CouponCommand::Create { terms: terms(total, limit), created_by: "op".into() };
        let mut journal = Vec::new();
        let (created, _) = run(&mut policy, &create, T0 - 1).expect("created");
        journal.extend(created.events.iter().map(|e| codec::encode(CouponPolicy::VERSION, e)));
        let mut now_ms = T0;
        for (advance_ms, op) in &steps {
            now_ms += advance_ms;
            if let Ok((decision, _)) = run(&mut policy, &command(op), now_ms) {
                journal.extend(
                    decision.events.iter().map(|e| codec::encode(CouponPolicy::VERSION, e)),
                );
            }
        }
        let bytes = codec::encode(CouponPolicy::VERSION, &policy);
        let mut loaded: CouponPolicy = codec::decode(CouponPolicy::VERSION, &bytes).expect("decodes");
        loaded.restore();
        prop_assert!(loaded.check_deep_invariants().is_ok());
        prop_assert_eq!(&loaded, &policy);
        let mut replayed = CouponPolicy::blank(POLICY);
        for bytes in &journal {
            let event: CouponEvent = codec::decode(CouponPolicy::VERSION, bytes).expect("decodes");
            replayed.apply(&event);
            prop_assert!(replayed.check_invariants().is_ok());
        }
        prop_assert_eq!(replayed, policy);
    }
}
