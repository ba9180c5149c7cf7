//! PaySaga: the happy paths, a failure at every step with its compensations, amounts that do
//! not add up, a crash between every pair of steps (the journal prefix replayed, then driven to
//! the end), and properties over random failures and crashes against a model of the other
//! side that dedupes by key, as the wallet, the coupon policy and the gateway do.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::codec;

const ORDER: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const T0: i64 = 1_700_000_000_000;
const AMOUNT: i64 = 10_000;
const DISCOUNT: i64 = 1_000;

fn request(coupon: bool, points: i64, card: bool) -> PayRequest {
    PayRequest {
        coupon_id: coupon.then(|| "policy.00000001".to_string()),
        points,
        card_token: card.then(|| "tok_visa".to_string()),
    }
}

fn facts() -> OrderFacts {
    OrderFacts {
        user_id: "user-7".into(),
        amount: AMOUNT,
        source_kind: SourceKind::TimeSale,
        source_id: "sale-1".into(),
        lines: vec![("sale-1".into(), 1)],
        discount: 0,
        points: 0,
        coupon_id: None,
        payment_id: None,
    }
}

/// Runs a command the way the actor does: decide, apply, check the invariants.
fn run(saga: &mut Saga, command: &SagaCommand) -> Result<SagaView, Rejection> {
    let decision = saga.decide(command, &Ctx { now_ms: T0 })?;
    for event in &decision.events {
        saga.apply(event);
        saga.check_invariants()
            .unwrap_or_else(|v| panic!("invariant broken after {event:?}: {v}"));
    }
    Ok(decision.reply)
}

/// The other side of every step: effects applied once per key, as the wallet, the coupon
/// policy, the holder of the units and the gateway do.
#[derive(Debug, Default)]
struct World {
    keys: BTreeSet<String>,
    coupon_used: i64,
    points_debited: i64,
    card_charged: i64,
    units_committed: i64,
    order_status: Option<&'static str>,
    fail: BTreeSet<Step>,
}

impl World {
    fn failing(steps: &[Step]) -> World {
        World {
            fail: steps.iter().copied().collect(),
            ..World::default()
        }
    }

    /// Performs `step` under `key` for `saga`; a key seen before changes nothing again.
    fn perform(
        &mut self,
        saga: &Saga,
        step: Step,
        key: &str,
    ) -> Result<Outcome, (ErrorCode, String)> {
        if self.fail.contains(&step) {
            return Err((
                ErrorCode::PaymentDeclined,
                format!("{} refused", step.as_str()),
            ));
        }
        let first = self.keys.insert(key.to_string());
        let attempt = saga.attempt.as_ref().expect("running");
        let points = attempt.request.points;
        let once = |n: i64| if first { n } else { 0 };
        Ok(match step {
            Step::BeginPay => {
                self.order_status = Some("PAYING");
                Outcome::Order(facts())
            }
            Step::RedeemCoupon => {
                self.coupon_used += once(1);
                Outcome::Discount(DISCOUNT)
            }
            Step::DebitPoints => {
                self.points_debited += once(points);
                Outcome::Transaction(7)
            }
            Step::ChargeCard => {
                self.card_charged += once(saga.card_amount().expect("known"));
                Outcome::Payment(format!("pay_{key}"))
            }
            Step::CommitUnits => {
                self.units_committed += once(1);
                Outcome::Done
            }
            Step::Confirm => {
                self.order_status = Some("CONFIRMED");
                Outcome::Done
            }
            Step::RefundCard => {
                let facts = attempt.facts.as_ref().expect("facts");
                let paid = attempt.payment_id.is_some() || facts.payment_id.is_some();
                assert!(paid, "a refund of a charge that was made");
                self.card_charged -= once(self.card_charged);
                Outcome::Done
            }
            Step::RestorePoints => {
                self.points_debited -= once(self.points_debited);
                Outcome::Done
            }
            Step::RestoreCoupon => {
                self.coupon_used -= once(self.coupon_used);
                Outcome::Done
            }
            Step::MarkFailed => {
                self.order_status = Some("PAYMENT_FAILED");
                Outcome::Done
            }
            Step::BeginRefund => {
                self.order_status = Some("REFUNDING");
                Outcome::Done
            }
            Step::ReleaseUnits => {
                self.units_committed -= once(self.units_committed);
                Outcome::Done
            }
            Step::MarkRefunded => {
                self.order_status = Some("REFUNDED");
                Outcome::Done
            }
        })
    }
}

/// Drives the saga to its end against `world`; returns the steps run, in order.
fn drive(saga: &mut Saga, world: &mut World) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..50 {
        let Action::Run { step, key } = run(saga, &SagaCommand::Next).expect("next").next else {
            return steps;
        };
        steps.push(step);
        let result = world.perform(saga, step, &key);
        run(saga, &SagaCommand::Report { step, result }).expect("report");
    }
    panic!("the saga did not end: {steps:?}");
}

fn started(request: PayRequest) -> Saga {
    let mut saga = Saga::blank(ORDER);
    run(&mut saga, &SagaCommand::Pay(request)).expect("pay starts");
    saga
}

use Step::*;

#[test]
fn paying_with_coupon_points_and_card_runs_every_step_with_exact_amounts() {
    let mut saga = started(request(true, 2_500, true));
    let mut world = World::default();
    let steps = drive(&mut saga, &mut world);
    assert_eq!(
        steps,
        [
            BeginPay,
            RedeemCoupon,
            DebitPoints,
            ChargeCard,
            CommitUnits,
            Confirm
        ]
    );
    assert_eq!(saga.status(), Some(SagaStatus::Confirmed));
    assert_eq!(saga.card_amount(), Some(AMOUNT - DISCOUNT - 2_500));
    assert_eq!(
        (world.coupon_used, world.points_debited, world.card_charged),
        (1, 2_500, 6_500)
    );
    assert_eq!(world.order_status, Some("CONFIRMED"));
    let attempt = saga.attempt.as_ref().expect("attempt");
    assert_eq!(
        attempt.payment_id.as_deref(),
        Some(format!("pay_{ORDER}:1:charge_card").as_str())
    );
}

#[test]
fn points_that_cover_everything_charge_no_card() {
    let mut saga = started(request(false, AMOUNT, false));
    let mut world = World::default();
    assert_eq!(
        drive(&mut saga, &mut world),
        [BeginPay, DebitPoints, CommitUnits, Confirm]
    );
    assert_eq!((world.points_debited, world.card_charged), (AMOUNT, 0));
}

#[test]
fn a_failure_at_each_step_undoes_the_steps_done_in_reverse() {
    let cases: [(Step, &[Step]); 5] = [
        (BeginPay, &[BeginPay]),
        (RedeemCoupon, &[BeginPay, RedeemCoupon, MarkFailed]),
        (
            DebitPoints,
            &[
                BeginPay,
                RedeemCoupon,
                DebitPoints,
                RestoreCoupon,
                MarkFailed,
            ],
        ),
        (
            ChargeCard,
            &[
                BeginPay,
                RedeemCoupon,
                DebitPoints,
                ChargeCard,
                RestorePoints,
                RestoreCoupon,
                MarkFailed,
            ],
        ),
        (
            CommitUnits,
            &[
                BeginPay,
                RedeemCoupon,
                DebitPoints,
                ChargeCard,
                CommitUnits,
                RefundCard,
                RestorePoints,
                RestoreCoupon,
                MarkFailed,
            ],
        ),
    ];
    for (failing, expected) in cases {
        let mut saga = started(request(true, 2_500, true));
        let mut world = World::failing(&[failing]);
        assert_eq!(
            drive(&mut saga, &mut world),
            expected,
            "failing at {failing:?}"
        );
        assert_eq!(
            saga.status(),
            Some(SagaStatus::Failed),
            "failing at {failing:?}"
        );
        let failure = saga
            .attempt
            .as_ref()
            .and_then(|a| a.failure.clone())
            .expect("failure");
        assert_eq!(
            (failure.step, failure.code),
            (failing, ErrorCode::PaymentDeclined)
        );
        assert_eq!(
            (
                world.coupon_used,
                world.points_debited,
                world.card_charged,
                world.units_committed
            ),
            (0, 0, 0, 0),
            "everything given back after failing at {failing:?}"
        );
        let status = if failing == BeginPay {
            None
        } else {
            Some("PAYMENT_FAILED")
        };
        assert_eq!(world.order_status, status);
    }
}

#[test]
fn amounts_that_do_not_add_up_fail_before_points_or_card_are_touched() {
    // 9,500 points against 9,000 due after the discount.
    let mut saga = started(request(true, 9_500, true));
    let mut world = World::default();
    assert_eq!(
        drive(&mut saga, &mut world),
        [BeginPay, RedeemCoupon, RestoreCoupon, MarkFailed]
    );
    let failure = saga
        .attempt
        .as_ref()
        .and_then(|a| a.failure.clone())
        .expect("failure");
    assert_eq!(failure.code, ErrorCode::ValidationFailed);
    assert_eq!((world.coupon_used, world.points_debited), (0, 0));

    // Money left to pay and no card.
    let mut saga = started(request(false, 100, false));
    let mut world = World::default();
    assert_eq!(drive(&mut saga, &mut world), [BeginPay, MarkFailed]);
    assert_eq!(world.points_debited, 0);
}

#[test]
fn a_failed_attempt_may_be_retried_with_new_keys() {
    let mut saga = started(request(false, 0, true));
    drive(&mut saga, &mut World::failing(&[ChargeCard]));
    let first_key = saga.step_key(ChargeCard);
    run(&mut saga, &SagaCommand::Pay(request(false, 0, true))).expect("a second attempt");
    assert_ne!(
        saga.step_key(ChargeCard),
        first_key,
        "a new attempt, a new charge"
    );
    let mut world = World::default();
    drive(&mut saga, &mut world);
    assert_eq!(saga.status(), Some(SagaStatus::Confirmed));
    assert_eq!(world.card_charged, AMOUNT);
}

#[test]
fn a_running_or_finished_payment_refuses_another_and_repeats_its_own() {
    let mut saga = started(request(false, 0, true));
    let again = run(&mut saga, &SagaCommand::Pay(request(false, 0, true))).expect("the same");
    assert_eq!(again.attempt.as_ref().map(|a| a.number), Some(1));
    let other = run(&mut saga, &SagaCommand::Pay(request(false, 10, true)));
    assert_eq!(other.map_err(|e| e.code), Err(ErrorCode::OrderNotPayable));
    drive(&mut saga, &mut World::default());
    let paid = run(&mut saga, &SagaCommand::Pay(request(false, 0, true)));
    assert_eq!(paid.map_err(|e| e.code), Err(ErrorCode::OrderNotPayable));
}

#[test]
fn next_hands_out_the_running_step_again_and_a_repeated_report_changes_nothing() {
    let mut saga = started(request(false, 0, true));
    let first = run(&mut saga, &SagaCommand::Next).expect("next").next;
    let version = saga.version;
    assert_eq!(
        run(&mut saga, &SagaCommand::Next).expect("next").next,
        first
    );
    assert_eq!(saga.version, version, "no second start journaled");
    let report = SagaCommand::Report {
        step: BeginPay,
        result: Ok(Outcome::Order(facts())),
    };
    run(&mut saga, &report).expect("reported");
    let version = saga.version;
    run(&mut saga, &report).expect("reported again");
    assert_eq!(saga.version, version);
}

#[test]
fn steps_that_cannot_fail_are_retried_not_failed_and_outcomes_must_fit() {
    let mut saga = started(request(false, 0, true));
    let mut world = World::default();
    // Run up to Confirm.
    loop {
        let Action::Run { step, key } = run(&mut saga, &SagaCommand::Next).expect("next").next
        else {
            panic!("ended early");
        };
        if step == Confirm {
            break;
        }
        let result = world.perform(&saga, step, &key);
        run(&mut saga, &SagaCommand::Report { step, result }).expect("report");
    }
    let failed = SagaCommand::Report {
        step: Confirm,
        result: Err((ErrorCode::Unavailable, "down".into())),
    };
    assert_eq!(
        run(&mut saga, &failed).map_err(|e| e.code),
        Err(ErrorCode::Conflict)
    );
    assert_eq!(saga.running(), Some(Confirm));
    let mut other = started(request(false, 0, true));
    run(&mut other, &SagaCommand::Next).expect("next");
    let wrong = SagaCommand::Report {
        step: BeginPay,
        result: Ok(Outcome::Discount(5)),
    };
    assert_eq!(
        run(&mut other, &wrong).map_err(|e| e.code),
        Err(ErrorCode::ValidationFailed)
    );
}

#[test]
fn a_refund_gives_back_the_card_points_coupon_and_units() {
    let mut saga = started(request(true, 2_500, true));
    let mut world = World::default();
    drive(&mut saga, &mut world);
    run(&mut saga, &SagaCommand::Refund).expect("refund starts");
    assert_eq!(
        drive(&mut saga, &mut world),
        [
            BeginRefund,
            RefundCard,
            RestorePoints,
            RestoreCoupon,
            ReleaseUnits,
            MarkRefunded
        ]
    );
    assert_eq!(saga.status(), Some(SagaStatus::Refunded));
    assert_eq!(
        (
            world.coupon_used,
            world.points_debited,
            world.card_charged,
            world.units_committed
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(world.order_status, Some("REFUNDED"));
    let again = run(&mut saga, &SagaCommand::Refund).expect("repeating changes nothing");
    assert_eq!(again.status, Some(SagaStatus::Refunded));
    let unpaid = run(&mut Saga::blank(ORDER), &SagaCommand::Refund);
    assert_eq!(unpaid.map_err(|e| e.code), Err(ErrorCode::Conflict));
}

#[test]
fn bad_requests_are_refused_before_anything_starts() {
    let mut saga = Saga::blank(ORDER);
    for bad in [
        request(false, -1, true),
        request(false, crate::money::AMOUNT_MAX + 1, true),
    ] {
        let refused = run(&mut saga, &SagaCommand::Pay(bad));
        assert_eq!(
            refused.map_err(|e| e.code),
            Err(ErrorCode::ValidationFailed)
        );
    }
    let mut token = request(false, 0, true);
    token.card_token = Some("tok\u{202e}".into());
    let refused = run(&mut saga, &SagaCommand::Pay(token));
    assert_eq!(
        refused.map_err(|e| e.code),
        Err(ErrorCode::ValidationFailed)
    );
    assert_eq!(saga, Saga::blank(ORDER));
}

/// Every event of a run, in order, with the world's failures.
fn journal_of(request: PayRequest, failing: &[Step]) -> Vec<SagaEvent> {
    let mut saga = Saga::blank(ORDER);
    let mut journal = Vec::new();
    let mut world = World::failing(failing);
    let step_to = |saga: &mut Saga, command: SagaCommand, journal: &mut Vec<SagaEvent>| {
        let decision = saga
            .decide(&command, &Ctx { now_ms: T0 })
            .expect("accepted");
        decision.events.iter().for_each(|e| saga.apply(e));
        journal.extend(decision.events);
        decision.reply
    };
    step_to(&mut saga, SagaCommand::Pay(request), &mut journal);
    while let Action::Run { step, key } = step_to(&mut saga, SagaCommand::Next, &mut journal).next {
        let result = world.perform(&saga, step, &key);
        step_to(
            &mut saga,
            SagaCommand::Report { step, result },
            &mut journal,
        );
    }
    journal
}

#[test]
fn a_crash_between_any_two_steps_resumes_to_the_same_end_with_each_effect_once() {
    for failing in [
        &[][..],
        &[ChargeCard][..],
        &[CommitUnits][..],
        &[BeginPay][..],
    ] {
        let journal = journal_of(request(true, 2_500, true), failing);
        let mut expected = Saga::blank(ORDER);
        journal.iter().for_each(|e| expected.apply(e));
        for cut in 0..=journal.len() {
            // What was journaled before the crash comes back through the codec.
            let mut saga = Saga::blank(ORDER);
            for event in &journal[..cut] {
                let bytes = codec::encode(Saga::VERSION, event);
                saga.apply(&codec::decode(Saga::VERSION, &bytes).expect("decodes"));
            }
            if cut == 0 {
                run(&mut saga, &SagaCommand::Pay(request(true, 2_500, true))).expect("pay");
            }
            // The other side kept what it did before the crash: replay the same world.
            let mut world = World::failing(failing);
            replay_effects(&journal[..cut], &mut world, &saga);
            drive(&mut saga, &mut world);
            assert_eq!(
                saga.status(),
                expected.status(),
                "cut at {cut}, failing {failing:?}"
            );
            let confirmed = saga.status() == Some(SagaStatus::Confirmed);
            let due = AMOUNT - DISCOUNT - 2_500;
            assert_eq!(
                (world.coupon_used, world.points_debited, world.card_charged),
                if confirmed {
                    (1, 2_500, due)
                } else {
                    (0, 0, 0)
                },
                "cut at {cut}, failing {failing:?}"
            );
        }
    }
}

#[test]
fn a_step_started_before_a_crash_is_seen_running_after_it() {
    let journal = journal_of(request(false, 0, true), &[]);
    let charge = journal
        .iter()
        .position(|e| {
            matches!(
                e,
                SagaEvent::StepStarted {
                    step: ChargeCard,
                    ..
                }
            )
        })
        .expect("the charge starts");
    for (cut, running) in [(charge, None), (charge + 1, Some(ChargeCard))] {
        let mut saga = Saga::blank(ORDER);
        journal[..cut].iter().for_each(|e| saga.apply(e));
        let view = run(&mut saga, &SagaCommand::Get).expect("get");
        let attempt = view.attempt.as_ref().expect("an attempt");
        assert_eq!(attempt.running(), running, "cut at {cut}");
    }
}

/// Applies to `world` the effects of the steps `journal` says were started: a started step
/// may have taken effect before the crash even if its outcome was not journaled.
fn replay_effects(journal: &[SagaEvent], world: &mut World, resumed: &Saga) {
    let mut shadow = Saga::blank(ORDER);
    for event in journal {
        shadow.apply(event);
        if let SagaEvent::StepStarted { step, .. } = event {
            let key = shadow.step_key(*step);
            let _ = world.perform(&shadow, *step, &key);
        }
    }
    let _ = resumed;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random requests, failures and crashes: money in equals money out, a confirmed payment
    /// took exactly what it owed, a failed one took nothing, and the coupon is used at most
    /// once.
    #[test]
    fn random_failures_and_crashes_keep_the_money_right(
        coupon in any::<bool>(),
        points in 0i64..12_000,
        card in any::<bool>(),
        failing in prop::collection::btree_set(
            prop::sample::select(vec![BeginPay, RedeemCoupon, DebitPoints, ChargeCard, CommitUnits]),
            0..3,
        ),
        crashes in prop::collection::vec(0usize..40, 0..4),
    ) {
        let failing: Vec<Step> = failing.into_iter().collect();
        let request = request(coupon, points, card);
        let mut saga = Saga::blank(ORDER);
        if run(&mut saga, &SagaCommand::Pay(request.clone())).is_err() {
            return Ok(());
        }
        let mut world = World::failing(&failing);
        let mut journal: Vec<SagaEvent> = Vec::new();
        let mut crashes: BTreeMap<usize, ()> = crashes.into_iter().map(|c| (c, ())).collect();
        let mut n = 0;
        loop {
            n += 1;
            prop_assert!(n < 200, "the saga does not end");
            if crashes.remove(&n).is_some() {
                // Lose the memory: rebuild from what was journaled.
                let mut rebuilt = Saga::blank(ORDER);
                rebuilt.apply(&SagaEvent::Started { kind: SagaKind::Pay, request: request.clone(), at_ms: T0 });
                journal.iter().for_each(|e| rebuilt.apply(e));
                saga = rebuilt;
            }
            let decision = saga.decide(&SagaCommand::Next, &Ctx { now_ms: T0 }).expect("next");
            decision.events.iter().for_each(|e| saga.apply(e));
            journal.extend(decision.events);
            let Action::Run { step, key } = decision.reply.next else { break };
            let result = world.perform(&saga, step, &key);
            let decision = saga.decide(&SagaCommand::Report { step, result }, &Ctx { now_ms: T0 })
                .expect("report");
            decision.events.iter().for_each(|e| saga.apply(e));
            prop_assert!(saga.check_invariants().is_ok());
            journal.extend(decision.events);
        }
        let status = saga.status().expect("ended");
        let discount = if coupon { DISCOUNT } else { 0 };
        let due = AMOUNT - discount - points;
        match status {
            SagaStatus::Confirmed => {
                prop_assert!(due >= 0 && (due == 0 || card));
                prop_assert_eq!(world.coupon_used, i64::from(coupon));
                prop_assert_eq!(world.points_debited, points);
                prop_assert_eq!(world.card_charged, due);
                prop_assert_eq!(world.units_committed, 1);
            }
            SagaStatus::Failed => {
                prop_assert_eq!((world.coupon_used, world.points_debited, world.card_charged), (0, 0, 0));
                prop_assert_eq!(world.units_committed, 0);
            }
            other => prop_assert!(false, "ended {:?}", other),
        }
    }
}

#[test]
fn a_report_journals_the_start_of_the_next_step_with_it() {
    let mut saga = started(request(false, 100, true));
    run(&mut saga, &SagaCommand::Next).expect("next");
    let report = SagaCommand::Report {
        step: BeginPay,
        result: Ok(Outcome::Order(facts())),
    };
    let decision = saga.decide(&report, &Ctx { now_ms: T0 }).expect("reported");
    assert!(matches!(
        decision.events.as_slice(),
        [
            SagaEvent::StepDone { step: BeginPay, .. },
            SagaEvent::StepStarted {
                step: DebitPoints,
                ..
            }
        ]
    ));
    let key = format!("{ORDER}:1:debit_points");
    assert_eq!(
        decision.reply.next,
        Action::Run {
            step: DebitPoints,
            key
        }
    );
}
