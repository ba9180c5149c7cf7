//! PointsCharge: the happy path, each step failing, starting again, outcomes that do not fit,
//! a crash after every journaled event (the prefix replayed through the codec, then driven to
//! the end), and properties over random failures and crashes against a model of the gateway
//! and the wallet that dedupe by key.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::codec;
use crate::time::rfc3339;

const CHARGE_ID: &str = "0190a1b2-c3d4-8e5f-8a9b-0c1d2e3f4a5b";
const T0: i64 = 1_700_000_000_000;
const AMOUNT: i64 = 5_000;

fn request(amount: i64, card_token: &str) -> ChargeRequest {
    ChargeRequest {
        user_id: "user-7".into(),
        amount,
        card_token: card_token.into(),
    }
}

fn visa() -> ChargeRequest {
    request(AMOUNT, "tok_visa")
}

/// The `CHARGE` transaction the wallet answers for `amount` points.
fn charge_tx(amount: i64, payment: &str) -> TxView {
    TxView {
        id: "user-7.0000000001".into(),
        kind: TxKind::Charge,
        amount,
        balance_after: amount,
        description: Some("points bought by card".into()),
        reference: Some(payment.into()),
        cancels: None,
        created_at: rfc3339(T0),
    }
}

/// Runs a command the way the actor does: decide, apply, check the invariants.
fn run(charge: &mut PointsCharge, command: &ChargeCommand) -> Result<ChargeView, Rejection> {
    let decision = charge.decide(command, &Ctx { now_ms: T0 })?;
    for event in &decision.events {
        charge.apply(event);
        charge
            .check_invariants()
            .unwrap_or_else(|v| panic!("invariant broken after {event:?}: {v}"));
    }
    Ok(decision.reply)
}

/// The gateway and the wallet: each effect once per key, as both dedupe.
#[derive(Debug, Default)]
struct World {
    keys: BTreeSet<String>,
    charged: i64,
    credited: i64,
    refunded: i64,
    fail: BTreeMap<Step, ErrorCode>,
}

impl World {
    fn failing(fail: &[(Step, ErrorCode)]) -> World {
        World {
            fail: fail.iter().copied().collect(),
            ..World::default()
        }
    }

    fn perform(
        &mut self,
        charge: &PointsCharge,
        step: Step,
        key: &str,
    ) -> Result<Outcome, (ErrorCode, String)> {
        if let Some(code) = self.fail.get(&step) {
            return Err((*code, format!("{} refused", step.as_str())));
        }
        let amount = charge.request.as_ref().expect("started").amount;
        let once = if self.keys.insert(key.to_string()) {
            amount
        } else {
            0
        };
        Ok(match step {
            Step::Charge => {
                self.charged += once;
                Outcome::Payment(format!("pay_{key}"))
            }
            Step::Credit => {
                self.credited += once;
                let payment = charge.payment_id.as_deref().expect("charged first");
                Outcome::Credited(charge_tx(amount, payment))
            }
            Step::Refund => {
                assert!(charge.payment_id.is_some(), "a refund of a payment made");
                self.refunded += once;
                Outcome::Refunded(format!("re_{key}"))
            }
        })
    }
}

/// Drives the charge to its end against `world`; returns the steps run, in order.
fn drive(charge: &mut PointsCharge, world: &mut World) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..20 {
        let Action::Run { step, key } = run(charge, &ChargeCommand::Next).expect("next").next
        else {
            return steps;
        };
        steps.push(step);
        let result = world.perform(charge, step, &key);
        run(charge, &ChargeCommand::Report { step, result }).expect("report");
    }
    panic!("the charge did not end: {steps:?}");
}

fn started(request: ChargeRequest) -> PointsCharge {
    let mut charge = PointsCharge::blank(CHARGE_ID);
    run(&mut charge, &ChargeCommand::Start(request)).expect("starts");
    charge
}

fn failure_of(charge: &PointsCharge) -> (Step, ErrorCode) {
    let failure = charge.failure.as_ref().expect("a failure");
    (failure.step, failure.code)
}

use Step::*;

#[test]
fn a_charge_takes_the_money_once_then_credits_the_points_once() {
    let mut charge = started(visa());
    let mut world = World::default();
    assert_eq!(drive(&mut charge, &mut world), [Charge, Credit]);
    assert_eq!(charge.status(), Some(ChargeStatus::Credited));
    assert_eq!(
        (world.charged, world.credited, world.refunded),
        (AMOUNT, AMOUNT, 0)
    );
    let payment = format!("pay_points_charge:{CHARGE_ID}:charge");
    assert_eq!(charge.payment_id.as_deref(), Some(payment.as_str()));
    let tx = charge.transaction.clone().expect("the transaction");
    assert_eq!(tx, charge_tx(AMOUNT, &payment));
    let view = run(&mut charge, &ChargeCommand::Get).expect("get");
    assert!(view.has_ended() && !view.charge.runs_again());
    assert_eq!(view.next, Action::Finished(Some(ChargeStatus::Credited)));
}

#[test]
fn a_declined_card_ends_failed_with_nothing_taken_or_credited() {
    let mut charge = started(visa());
    let mut world = World::failing(&[(Charge, ErrorCode::PaymentDeclined)]);
    assert_eq!(drive(&mut charge, &mut world), [Charge]);
    assert_eq!(charge.status(), Some(ChargeStatus::Failed));
    assert_eq!(failure_of(&charge), (Charge, ErrorCode::PaymentDeclined));
    assert_eq!((world.charged, world.credited), (0, 0));
    // The same terms again: the same answer, nothing journaled, nothing run.
    let version = charge.version;
    let again = run(&mut charge, &ChargeCommand::Start(visa())).expect("the same");
    assert!(again.has_ended() && !again.charge.runs_again());
    assert_eq!(charge.version, version);
}

#[test]
fn a_refused_credit_refunds_the_card_then_ends_failed() {
    let mut charge = started(visa());
    let mut world = World::failing(&[(Credit, ErrorCode::ValidationFailed)]);
    assert_eq!(drive(&mut charge, &mut world), [Charge, Credit, Refund]);
    assert_eq!(charge.status(), Some(ChargeStatus::Failed));
    assert_eq!(failure_of(&charge), (Credit, ErrorCode::ValidationFailed));
    assert_eq!(
        (world.charged, world.refunded, world.credited),
        (AMOUNT, AMOUNT, 0)
    );
    assert!(charge.refund_id.is_some() && charge.transaction.is_none());
    // Never charged again: a new run would find the refunded payment under the same key.
    let again = run(&mut charge, &ChargeCommand::Start(visa())).expect("the same");
    assert!(!again.charge.runs_again());
    assert_eq!(drive(&mut charge, &mut world), []);
}

#[test]
fn a_charge_the_gateway_could_not_take_runs_again_with_the_same_keys() {
    let mut charge = started(visa());
    let mut world = World::failing(&[(Charge, ErrorCode::GatewayUnavailable)]);
    let key = charge.step_key(Charge);
    assert_eq!(drive(&mut charge, &mut world), [Charge]);
    let view = run(&mut charge, &ChargeCommand::Get).expect("get");
    assert_eq!(view.status, Some(ChargeStatus::Failed));
    assert!(view.charge.runs_again());
    world.fail.clear();
    let again = run(&mut charge, &ChargeCommand::Start(visa())).expect("runs again");
    assert_eq!(
        (again.status, again.charge.runs),
        (Some(ChargeStatus::Running), 2)
    );
    assert_eq!(again.charge.failure, None);
    assert_eq!(drive(&mut charge, &mut world), [Charge, Credit]);
    assert_eq!(charge.step_key(Charge), key);
    assert_eq!((world.charged, world.credited), (AMOUNT, AMOUNT));
    assert_eq!(charge.started_at_ms, T0);
}

#[test]
fn a_running_charge_answers_itself_and_other_terms_are_refused() {
    let mut charge = started(visa());
    let version = charge.version;
    let same = run(&mut charge, &ChargeCommand::Start(visa())).expect("the same");
    assert_eq!(
        (same.status, same.charge.runs),
        (Some(ChargeStatus::Running), 1)
    );
    assert_eq!(charge.version, version);
    for other in [
        request(AMOUNT + 1, "tok_visa"),
        request(AMOUNT, "tok_other"),
    ] {
        let refused = run(&mut charge, &ChargeCommand::Start(other));
        assert_eq!(
            refused.map_err(|e| e.code),
            Err(ErrorCode::IdempotencyKeyReused)
        );
    }
    assert_eq!(charge.version, version);
}

#[test]
fn bad_requests_are_refused_before_anything_starts() {
    let mut charge = PointsCharge::blank(CHARGE_ID);
    let long = "t".repeat(CARD_TOKEN_LEN_MAX + 1);
    for bad in [
        request(0, "tok_visa"),
        request(-3, "tok_visa"),
        request(crate::money::AMOUNT_MAX + 1, "tok_visa"),
        request(AMOUNT, ""),
        request(AMOUNT, &long),
        request(AMOUNT, "tok\u{202e}"),
        ChargeRequest {
            user_id: "".into(),
            ..visa()
        },
    ] {
        let refused = run(&mut charge, &ChargeCommand::Start(bad.clone()));
        assert_eq!(
            refused.map_err(|e| e.code),
            Err(ErrorCode::ValidationFailed),
            "{bad:?}"
        );
    }
    assert_eq!(charge, PointsCharge::blank(CHARGE_ID));
    assert!(!charge.exists());
    let nothing = run(&mut charge, &ChargeCommand::Next).expect("next");
    assert_eq!(nothing.next, Action::Finished(None));
    assert_eq!(charge.version, 0);
}

#[test]
fn next_hands_out_the_running_step_again_and_a_repeated_report_changes_nothing() {
    let mut charge = started(visa());
    let first = run(&mut charge, &ChargeCommand::Next).expect("next").next;
    let version = charge.version;
    assert_eq!(
        run(&mut charge, &ChargeCommand::Next).expect("next").next,
        first
    );
    assert_eq!(charge.version, version, "no second start journaled");
    let report = ChargeCommand::Report {
        step: Charge,
        result: Ok(Outcome::Payment("pay_1".into())),
    };
    run(&mut charge, &report).expect("reported");
    let version = charge.version;
    run(&mut charge, &report).expect("reported again");
    assert_eq!(charge.version, version);
}

#[test]
fn a_refund_cannot_fail_and_outcomes_must_fit_their_step() {
    let mut charge = started(visa());
    run(&mut charge, &ChargeCommand::Next).expect("next");
    let wrong = ChargeCommand::Report {
        step: Charge,
        result: Ok(Outcome::Refunded("re_1".into())),
    };
    assert_eq!(
        run(&mut charge, &wrong).map_err(|e| e.code),
        Err(ErrorCode::ValidationFailed)
    );
    let paid = ChargeCommand::Report {
        step: Charge,
        result: Ok(Outcome::Payment("pay_1".into())),
    };
    run(&mut charge, &paid).expect("charged");
    run(&mut charge, &ChargeCommand::Next).expect("next");
    // A credit of another amount than the one charged is not this charge's.
    let short = ChargeCommand::Report {
        step: Credit,
        result: Ok(Outcome::Credited(charge_tx(AMOUNT - 1, "pay_1"))),
    };
    assert_eq!(
        run(&mut charge, &short).map_err(|e| e.code),
        Err(ErrorCode::ValidationFailed)
    );
    let refused = ChargeCommand::Report {
        step: Credit,
        result: Err((ErrorCode::ValidationFailed, "past the bound".into())),
    };
    run(&mut charge, &refused).expect("refused");
    assert_eq!(charge.status(), Some(ChargeStatus::Compensating));
    run(&mut charge, &ChargeCommand::Next).expect("next");
    let failed = ChargeCommand::Report {
        step: Refund,
        result: Err((ErrorCode::Unavailable, "down".into())),
    };
    assert_eq!(
        run(&mut charge, &failed).map_err(|e| e.code),
        Err(ErrorCode::Conflict)
    );
    assert_eq!(charge.running(), Some(Refund));
}

/// Every event of a run to the end against a world failing as `failing` says.
fn journal_of(failing: &[(Step, ErrorCode)]) -> Vec<ChargeEvent> {
    let mut charge = PointsCharge::blank(CHARGE_ID);
    let mut journal = Vec::new();
    let mut world = World::failing(failing);
    let mut step_to = |charge: &mut PointsCharge, command: ChargeCommand| {
        let decision = charge
            .decide(&command, &Ctx { now_ms: T0 })
            .expect("accepted");
        decision.events.iter().for_each(|e| charge.apply(e));
        journal.extend(decision.events);
        decision.reply
    };
    step_to(&mut charge, ChargeCommand::Start(visa()));
    while let Action::Run { step, key } = step_to(&mut charge, ChargeCommand::Next).next {
        let result = world.perform(&charge, step, &key);
        step_to(&mut charge, ChargeCommand::Report { step, result });
    }
    journal
}

/// Performs in `world` the steps `journal` says were started: a started step may have taken
/// effect before the crash even if its outcome was not journaled.
fn replay_effects(journal: &[ChargeEvent], world: &mut World) {
    let mut shadow = PointsCharge::blank(CHARGE_ID);
    for event in journal {
        shadow.apply(event);
        if let ChargeEvent::StepStarted { step, .. } = event {
            let _ = world.perform(&shadow, *step, &shadow.step_key(*step));
        }
    }
}

/// Money in equals money out: credited, the charge was taken once and kept; else nothing was
/// credited and whatever was taken was refunded.
fn assert_settled(status: Option<ChargeStatus>, world: &World, what: &str) {
    match status {
        Some(ChargeStatus::Credited) => assert_eq!(
            (world.charged, world.credited, world.refunded),
            (AMOUNT, AMOUNT, 0),
            "{what}"
        ),
        Some(ChargeStatus::Failed) => {
            assert_eq!(world.credited, 0, "{what}");
            assert_eq!(world.charged, world.refunded, "{what}");
        }
        other => panic!("{what}: ended {other:?}"),
    }
}

#[test]
fn a_crash_after_any_event_resumes_to_the_same_end_with_each_effect_once() {
    let cases: [&[(Step, ErrorCode)]; 3] = [
        &[],
        &[(Charge, ErrorCode::PaymentDeclined)],
        &[(Credit, ErrorCode::ValidationFailed)],
    ];
    for failing in cases {
        let journal = journal_of(failing);
        let mut expected = PointsCharge::blank(CHARGE_ID);
        journal.iter().for_each(|e| expected.apply(e));
        for cut in 0..=journal.len() {
            // What was journaled before the crash comes back through the codec.
            let mut charge = PointsCharge::blank(CHARGE_ID);
            for event in &journal[..cut] {
                let bytes = codec::encode(PointsCharge::VERSION, event);
                charge.apply(&codec::decode(PointsCharge::VERSION, &bytes).expect("decodes"));
            }
            if cut == 0 {
                run(&mut charge, &ChargeCommand::Start(visa())).expect("starts");
            }
            let mut world = World::failing(failing);
            replay_effects(&journal[..cut], &mut world);
            drive(&mut charge, &mut world);
            let what = format!("cut at {cut}, failing {failing:?}");
            assert_eq!(charge.status(), expected.status(), "{what}");
            assert_eq!(charge.transaction, expected.transaction, "{what}");
            assert_settled(charge.status(), &world, &what);
        }
    }
}

#[test]
fn a_snapshot_round_trips_through_the_codec() {
    let mut charge = started(visa());
    let mut world = World::failing(&[(Credit, ErrorCode::ValidationFailed)]);
    drive(&mut charge, &mut world);
    let bytes = codec::encode(PointsCharge::VERSION, &charge);
    let loaded: PointsCharge = codec::decode(PointsCharge::VERSION, &bytes).expect("decodes");
    assert_eq!(loaded, charge);
    loaded.check_deep_invariants().expect("invariants");
}

fn failures() -> impl Strategy<Value = Vec<(Step, ErrorCode)>> {
    prop::collection::vec(
        prop::sample::select(vec![
            (Charge, ErrorCode::PaymentDeclined),
            (Charge, ErrorCode::GatewayUnavailable),
            (Credit, ErrorCode::ValidationFailed),
        ]),
        0..2,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random failures, crashes (before a step, or after it took effect and before its report)
    /// and starts again: the money always ends as points or refunded, each effect once.
    #[test]
    fn random_failures_and_crashes_keep_the_money_right(
        failing in failures(),
        crashes in prop::collection::btree_set(0usize..24, 0..5),
        start_again in any::<bool>(),
    ) {
        let mut charge = started(visa());
        let mut world = World::failing(&failing);
        let mut journal: Vec<ChargeEvent> = Vec::new();
        let crash = |n: usize, journal: &[ChargeEvent]| {
            crashes.contains(&n).then(|| {
                let mut rebuilt = PointsCharge::blank(CHARGE_ID);
                rebuilt.apply(&ChargeEvent::Started { request: visa(), at_ms: T0 });
                journal.iter().for_each(|e| rebuilt.apply(e));
                rebuilt
            })
        };
        let mut n = 0;
        loop {
            n += 2;
            prop_assert!(n < 100, "the charge does not end");
            if let Some(rebuilt) = crash(n, &journal) {
                charge = rebuilt;
            }
            let decision = charge.decide(&ChargeCommand::Next, &Ctx { now_ms: T0 }).expect("next");
            decision.events.iter().for_each(|e| charge.apply(e));
            journal.extend(decision.events);
            let Action::Run { step, key } = decision.reply.next else { break };
            let result = world.perform(&charge, step, &key);
            if let Some(rebuilt) = crash(n + 1, &journal) {
                // The effect happened; its report is lost with the process.
                charge = rebuilt;
                continue;
            }
            let report = ChargeCommand::Report { step, result };
            let decision = charge.decide(&report, &Ctx { now_ms: T0 }).expect("report");
            decision.events.iter().for_each(|e| charge.apply(e));
            prop_assert!(charge.check_invariants().is_ok());
            journal.extend(decision.events);
        }
        if start_again && charge.runs_again() {
            world.fail.clear();
            run(&mut charge, &ChargeCommand::Start(visa())).expect("runs again");
            drive(&mut charge, &mut world);
            prop_assert_eq!(charge.status(), Some(ChargeStatus::Credited));
        }
        assert_settled(charge.status(), &world, "random run");
    }
}
