use super::*;

fn charge(key: &str, amount: i64, card_token: &str) -> ChargeRequest {
    ChargeRequest {
        amount,
        currency: "KRW".into(),
        card_token: card_token.into(),
        idempotency_key: key.into(),
    }
}

fn refund(key: &str, amount: i64) -> RefundRequest {
    RefundRequest {
        amount,
        idempotency_key: key.into(),
    }
}

/// The id of an accepted answer.
fn id(answer: Result<Answer, ApiError>) -> String {
    match answer.expect("accepted") {
        Answer::Accepted { id, .. } => id,
        declined => panic!("not accepted: {declined:?}"),
    }
}

fn code(answer: Result<Answer, ApiError>) -> ErrorCode {
    answer.expect_err("refused").code
}

#[test]
fn a_charge_is_approved_and_recorded() {
    let mut ledger = Ledger::new(10);
    let answer = ledger.charge(charge("k1", 1_000, "tok_ok"));
    let Ok(Answer::Accepted { id, status }) = answer else {
        panic!("approved: {answer:?}");
    };
    assert_eq!(status, APPROVED);
    let record = &ledger.records()[0];
    assert_eq!(
        (record.id.as_str(), record.kind),
        (id.as_str(), Kind::Payment)
    );
    assert_eq!(record.currency.as_deref(), Some("KRW"));
    assert_eq!(record.card_token.as_deref(), Some("tok_ok"));
}

#[test]
fn the_same_request_with_its_key_gets_the_first_answer_and_charges_once() {
    let mut ledger = Ledger::new(10);
    let first = id(ledger.charge(charge("k1", 1_000, "tok_ok")));
    let again = id(ledger.charge(charge("k1", 1_000, "tok_ok")));
    assert_eq!(first, again);
    assert_eq!(ledger.records().len(), 1);
}

#[test]
fn a_key_used_for_another_request_is_refused() {
    let mut ledger = Ledger::new(10);
    let payment = id(ledger.charge(charge("k1", 1_000, "tok_ok")));
    let other_amount = ledger.charge(charge("k1", 999, "tok_ok"));
    assert_eq!(code(other_amount), ErrorCode::IdempotencyKeyReused);
    let as_refund = ledger.refund(&payment, refund("k1", 1_000));
    assert_eq!(code(as_refund), ErrorCode::IdempotencyKeyReused);
    assert_eq!(ledger.records().len(), 1);
}

#[test]
fn the_declining_card_is_declined_every_time_and_has_nothing_to_refund() {
    let mut ledger = Ledger::new(10);
    let declined = Answer::Declined {
        reason: DECLINE_REASON,
    };
    let first = ledger.charge(charge("k1", 1_000, DECLINED_CARD));
    assert_eq!(first.expect("answered"), declined);
    let again = ledger.charge(charge("k1", 1_000, DECLINED_CARD));
    assert_eq!(again.expect("answered"), declined);
    assert_eq!(ledger.records().len(), 1);
    assert_eq!(ledger.records()[0].status, DECLINED);
    let payment = ledger.records()[0].id.clone();
    assert_eq!(
        code(ledger.refund(&payment, refund("r1", 1))),
        ErrorCode::Conflict
    );
}

#[test]
fn refunds_add_up_to_the_payment_and_no_further() {
    let mut ledger = Ledger::new(10);
    let payment = id(ledger.charge(charge("k1", 1_000, "tok_ok")));
    let first = id(ledger.refund(&payment, refund("r1", 600)));
    assert_eq!(id(ledger.refund(&payment, refund("r1", 600))), first);
    assert_eq!(
        code(ledger.refund(&payment, refund("r2", 401))),
        ErrorCode::Conflict
    );
    id(ledger.refund(&payment, refund("r3", 400)));
    let refunds: Vec<_> = ledger
        .records()
        .iter()
        .filter(|r| r.kind == Kind::Refund)
        .map(|r| (r.payment_id.as_deref(), r.amount, r.status))
        .collect();
    let paid = Some(payment.as_str());
    assert_eq!(refunds, [(paid, 600, REFUNDED), (paid, 400, REFUNDED)]);
}

#[test]
fn a_refund_of_an_unknown_payment_is_not_found() {
    let mut ledger = Ledger::new(10);
    let answer = ledger.refund("no-such-payment", refund("r1", 1));
    assert_eq!(code(answer), ErrorCode::NotFound);
    assert!(ledger.records().is_empty());
}

#[test]
fn every_invalid_field_is_named() {
    let mut ledger = Ledger::new(10);
    let mut request = charge("", 0, "tok\u{202e}");
    request.currency = "won".into();
    let error = ledger.charge(request).expect_err("invalid");
    let fields: Vec<_> = error.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["amount", "idempotency_key", "currency", "card_token"]
    );
    assert_eq!(error.code, ErrorCode::ValidationFailed);
}

#[test]
fn past_its_bound_new_requests_are_unavailable_and_replays_still_answer() {
    let mut ledger = Ledger::new(2);
    let payment = id(ledger.charge(charge("k1", 1_000, "tok_ok")));
    id(ledger.refund(&payment, refund("r1", 1)));
    assert_eq!(
        code(ledger.charge(charge("k2", 1_000, "tok_ok"))),
        ErrorCode::Unavailable
    );
    assert_eq!(
        code(ledger.refund(&payment, refund("r2", 1))),
        ErrorCode::Unavailable
    );
    assert_eq!(id(ledger.charge(charge("k1", 1_000, "tok_ok"))), payment);
    assert_eq!(ledger.records().len(), 2);
}
