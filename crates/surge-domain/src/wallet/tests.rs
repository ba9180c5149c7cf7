//! Wallet: unit tests of each command, then properties over random command sequences,
//! checked against the recorded history (`recorded_view`) as well as the state.

use proptest::prelude::*;

use super::*;
use crate::codec;

const USER: &str = "user-1";
/// 2023-11-14T22:13:20Z, so time stays far from 0 and from overflow.
const T0: i64 = 1_700_000_000_000;

/// Runs a command the way the actor does: decide, apply every event, check the invariants,
/// and collect the transactions each event records, as the history will show them.
fn run(
    wallet: &mut Wallet,
    command: &WalletCommand,
    now_ms: i64,
) -> Result<(Decision<Wallet>, Vec<TxView>), Rejection> {
    let decision = wallet.decide(command, &Ctx { now_ms })?;
    let mut rows = Vec::new();
    for event in &decision.events {
        wallet.apply(event);
        if let Err(violation) = wallet.check_invariants() {
            panic!("invariant broken after {event:?} (from {command:?}): {violation}");
        }
        rows.push(wallet.recorded_view(event));
    }
    if let Err(violation) = wallet.check_deep_invariants() {
        panic!("deep invariant broken after {command:?}: {violation}");
    }
    Ok((decision, rows))
}

fn ok(wallet: &mut Wallet, command: WalletCommand) -> TxView {
    match run(wallet, &command, T0) {
        Ok((decision, _)) => match decision.reply {
            WalletReply::Tx(tx) => tx,
            other => panic!("{command:?} answered {other:?}"),
        },
        Err(e) => panic!("{command:?} rejected: {e}"),
    }
}

/// The command must be rejected with `code`, and leave the wallet as it was.
fn rejected(wallet: &mut Wallet, command: WalletCommand, code: ErrorCode) {
    let before = wallet.clone();
    match run(wallet, &command, T0) {
        Ok((decision, _)) => panic!("{command:?} accepted: {decision:?}"),
        Err(e) => assert_eq!(e.code, code, "{command:?} rejected with {e}"),
    }
    assert_eq!(*wallet, before, "a rejected {command:?} changed the wallet");
}

fn earn(amount: i64) -> WalletCommand {
    WalletCommand::Earn {
        amount,
        description: Some("welcome".into()),
        reference: None,
    }
}

fn spend(amount: i64) -> WalletCommand {
    WalletCommand::Use {
        amount,
        description: None,
        reference: Some("order-1".into()),
    }
}

fn charge(amount: i64) -> WalletCommand {
    WalletCommand::Charge {
        amount,
        description: Some("points bought by card".into()),
        reference: Some("pay_1".into()),
    }
}

fn cancel(n: u64) -> WalletCommand {
    WalletCommand::Cancel { n }
}

#[test]
fn a_blank_wallet_has_nothing_and_does_not_exist() {
    let mut wallet = Wallet::blank(USER);
    assert!(!wallet.exists());
    let (decision, rows) = run(&mut wallet, &WalletCommand::Get, T0).expect("get");
    assert!(decision.events.is_empty() && rows.is_empty());
    assert_eq!(
        decision.reply,
        WalletReply::Wallet(WalletView {
            user_id: USER.into(),
            balance: 0,
            version: 0,
        })
    );
    assert!(
        !wallet.exists(),
        "a read does not bring a wallet into being"
    );
}

#[test]
fn earning_then_using_moves_the_balance_and_numbers_the_transactions() {
    let mut wallet = Wallet::blank(USER);
    let earned = ok(&mut wallet, earn(500));
    assert!(wallet.exists());
    assert_eq!(earned.id, "user-1.0000000001");
    assert_eq!((earned.kind, earned.amount), (TxKind::Earn, 500));
    assert_eq!(earned.balance_after, 500);
    assert_eq!(earned.description.as_deref(), Some("welcome"));
    assert_eq!(earned.created_at, rfc3339(T0));
    let used = ok(&mut wallet, spend(120));
    assert_eq!(used.id, "user-1.0000000002");
    assert_eq!((used.kind, used.amount), (TxKind::Use, -120));
    assert_eq!(used.balance_after, 380);
    assert_eq!(used.reference.as_deref(), Some("order-1"));
    assert_eq!((wallet.balance, wallet.version), (380, 2));
}

#[test]
fn a_charge_adds_the_points_paid_for_as_a_charge_transaction() {
    let mut wallet = Wallet::blank(USER);
    let charged = ok(&mut wallet, charge(700));
    assert_eq!((charged.kind, charged.amount), (TxKind::Charge, 700));
    assert_eq!(charged.balance_after, 700);
    assert_eq!(charged.reference.as_deref(), Some("pay_1"));
    ok(&mut wallet, spend(200));
    assert_eq!(wallet.balance, 500);
    for amount in [0, -1, AMOUNT_MAX + 1] {
        rejected(&mut wallet, charge(amount), ErrorCode::ValidationFailed);
    }
    // Like an earn, a charge whose points are partly spent cannot be cancelled.
    rejected(&mut wallet, cancel(1), ErrorCode::InsufficientPoints);
}

#[test]
fn using_more_than_the_balance_is_insufficient_points() {
    let mut wallet = Wallet::blank(USER);
    rejected(&mut wallet, spend(1), ErrorCode::InsufficientPoints);
    ok(&mut wallet, earn(100));
    rejected(&mut wallet, spend(101), ErrorCode::InsufficientPoints);
    ok(&mut wallet, spend(100));
    assert_eq!(wallet.balance, 0);
}

#[test]
fn amounts_outside_one_to_the_maximum_are_invalid() {
    let mut wallet = Wallet::blank(USER);
    for amount in [0, -5, AMOUNT_MAX + 1, i64::MIN, i64::MAX] {
        rejected(&mut wallet, earn(amount), ErrorCode::ValidationFailed);
        rejected(&mut wallet, spend(amount), ErrorCode::ValidationFailed);
    }
    ok(&mut wallet, earn(AMOUNT_MAX));
    ok(&mut wallet, spend(AMOUNT_MAX));
}

#[test]
fn the_balance_is_capped_so_nothing_overflows() {
    let mut wallet = Wallet::blank(USER);
    for _ in 0..1_000 {
        ok(&mut wallet, earn(AMOUNT_MAX));
    }
    assert_eq!(wallet.balance, BALANCE_MAX);
    rejected(&mut wallet, earn(1), ErrorCode::ValidationFailed);
    rejected(&mut wallet, charge(1), ErrorCode::ValidationFailed);
}

#[test]
fn cancelling_a_use_gives_the_points_back_once() {
    let mut wallet = Wallet::blank(USER);
    ok(&mut wallet, earn(100));
    ok(&mut wallet, spend(40));
    let reversal = ok(&mut wallet, cancel(2));
    assert_eq!(reversal.id, "user-1.0000000003");
    assert_eq!((reversal.kind, reversal.amount), (TxKind::Cancel, 40));
    assert_eq!(reversal.cancels.as_deref(), Some("user-1.0000000002"));
    assert_eq!(reversal.balance_after, 100);
    rejected(&mut wallet, cancel(2), ErrorCode::AlreadyCancelled);
    rejected(&mut wallet, cancel(3), ErrorCode::Conflict);
}

#[test]
fn cancelling_an_earn_already_spent_is_insufficient_points() {
    let mut wallet = Wallet::blank(USER);
    ok(&mut wallet, earn(100));
    ok(&mut wallet, spend(30));
    rejected(&mut wallet, cancel(1), ErrorCode::InsufficientPoints);
    ok(&mut wallet, cancel(2));
    let reversal = ok(&mut wallet, cancel(1));
    assert_eq!(reversal.amount, -100);
    assert_eq!(wallet.balance, 0);
}

#[test]
fn cancelling_an_unknown_transaction_is_not_found() {
    let mut wallet = Wallet::blank(USER);
    rejected(&mut wallet, cancel(1), ErrorCode::NotFound);
    ok(&mut wallet, earn(10));
    for n in [0, 2, u64::MAX] {
        rejected(&mut wallet, cancel(n), ErrorCode::NotFound);
    }
}

#[test]
fn transaction_ids_parse_back_and_sort_by_age() {
    assert_eq!(tx_id("u", 7), "u.0000000007");
    assert_eq!(parse_tx_id("u", "u.0000000007"), Some(7));
    assert_eq!(parse_tx_id("u", "v.0000000007"), None);
    assert_eq!(parse_tx_id("u", "u.7"), None);
    assert_eq!(parse_tx_id("u", "u.0000000000"), None);
    assert_eq!(parse_tx_id("u", "u.000000000x"), None);
    assert_eq!(parse_tx_id("u.a", "u.a.0000000001"), Some(1));
    let mut ids: Vec<String> = [1, 10, 9, 100, 2].map(|n| tx_id("u", n)).to_vec();
    ids.sort();
    assert_eq!(ids, [1, 2, 9, 10, 100].map(|n| tx_id("u", n)).to_vec());
}

#[test]
fn each_transaction_projects_one_row_equal_to_its_reply() {
    let mut wallet = Wallet::blank(USER);
    let (decision, rows) = run(&mut wallet, &earn(70), T0).expect("earn");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.id, "user-1.0000000001");
    assert_eq!(
        (row.kind, row.created_at.as_str()),
        (TxKind::Earn, "2023-11-14T22:13:20.000Z")
    );
    let body = serde_json::to_value(row).expect("json");
    assert_eq!(body, serde_json::to_value(&decision.reply).expect("json"));
    assert_eq!(body["type"], "EARN");
    assert_eq!(body["cancels"], serde_json::Value::Null);
}

#[derive(Debug, Clone)]
enum Op {
    Get,
    Earn(i64),
    Use(i64),
    Cancel(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Get),
        4 => (-5i64..200).prop_map(Op::Earn),
        4 => (-5i64..200).prop_map(Op::Use),
        3 => (0u64..40).prop_map(Op::Cancel),
    ]
}

fn command(op: &Op) -> WalletCommand {
    match op {
        Op::Get => WalletCommand::Get,
        Op::Earn(amount) => earn(*amount),
        Op::Use(amount) => spend(*amount),
        Op::Cancel(n) => cancel(*n),
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_wallet_commands_keep_the_balance_equal_to_its_history(ops in ops()) {
        let mut wallet = Wallet::blank(USER);
        let mut history: Vec<TxView> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let now_ms = T0 + i64::try_from(i).expect("small");
            let before = wallet.clone();
            match run(&mut wallet, &command(op), now_ms) {
                Err(_) => prop_assert_eq!(&wallet, &before, "a rejected {:?} changed state", op),
                Ok((decision, rows)) => {
                    history.extend(rows);
                    if let WalletReply::Tx(tx) = &decision.reply {
                        prop_assert_eq!(Some(tx), history.last(), "reply is the new row");
                    }
                }
            }
            prop_assert!(wallet.balance >= 0);
            let sum: i64 = history.iter().map(|t| t.amount).sum();
            prop_assert_eq!(wallet.balance, sum, "balance = sum of the history");
            prop_assert_eq!(wallet.version, u64::try_from(history.len()).expect("fits"));
        }
        let mut balance = 0;
        for (i, tx) in history.iter().enumerate() {
            balance += tx.amount;
            prop_assert_eq!(tx.balance_after, balance, "balance_after chains at {}", i);
            let n = u64::try_from(i + 1).expect("fits");
            prop_assert_eq!(&tx.id, &tx_id(USER, n));
        }
        // Each transaction is reversed at most once, never a reversal, and by its exact amount.
        let mut reversed = std::collections::BTreeSet::new();
        for tx in history.iter().filter(|t| t.kind == TxKind::Cancel) {
            let target = tx.cancels.as_deref().expect("a cancel names its target");
            prop_assert!(reversed.insert(target.to_string()), "{} reversed twice", target);
            let original = history.iter().find(|t| t.id == target).expect("target exists");
            prop_assert!(original.kind != TxKind::Cancel);
            prop_assert_eq!(original.amount, -tx.amount);
        }
    }

    #[test]
    fn a_snapshot_or_a_replay_rebuilds_the_same_wallet(ops in ops()) {
        let mut wallet = Wallet::blank(USER);
        let mut journal: Vec<Vec<u8>> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let now_ms = T0 + i64::try_from(i).expect("small");
            if let Ok((decision, _)) = run(&mut wallet, &command(op), now_ms) {
                journal.extend(decision.events.iter().map(|e| codec::encode(Wallet::VERSION, e)));
            }
        }
        let bytes = codec::encode(Wallet::VERSION, &wallet);
        let loaded: Wallet = codec::decode(Wallet::VERSION, &bytes).expect("decodes");
        prop_assert!(loaded.check_deep_invariants().is_ok());
        prop_assert_eq!(&loaded, &wallet);
        let mut replayed = Wallet::blank(USER);
        for bytes in &journal {
            let event: WalletEvent = codec::decode(Wallet::VERSION, bytes).expect("decodes");
            replayed.apply(&event);
            prop_assert!(replayed.check_invariants().is_ok());
        }
        prop_assert_eq!(replayed, wallet);
    }
}
