//! Wallet: one user's points.
//!
//! Supervised by `Region<Wallet>`; persistence id `wallet:{user_id}`. Nobody creates a wallet:
//! a blank one has balance 0 and exists once it holds a transaction.
//! Accepts: get, earn, use, charge (points bought by card, recorded once the payment gateway
//! has taken the money: see `points_charge`), cancel (a transaction is reversed by a new
//! `CANCEL` one).
//! Journals: `Recorded`, one event per transaction; its id is `{user_id}.{n:010}` with
//! `n = 1, 2, ...`, so ids sort by age within a wallet. Each transaction is also projected
//! (see [`Entity::event_rows`]) as a `wallet_tx` read row committed with its event, which
//! serves the history lists.
//! Memory: per transaction only what a cancel needs (type, signed amount, cancelled flag);
//! descriptions and references live in the journal and the read rows.
//!
//! # Invariants
//! - `0 <= balance <= BALANCE_MAX`;
//! - `version` = the number of transactions;
//! - `balance` = the sum of all signed amounts (deep check);
//! - every `CANCEL` reverses exactly one earlier, non-`CANCEL` transaction, which is marked
//!   cancelled: the cancelled flags and the `CANCEL` transactions are equal in number (deep).

use crate::UserId;
use serde::{Deserialize, Serialize};

use super::{Ctx, Decision, Entity};
use crate::time::rfc3339;
use crate::{ErrorCode, Rejection};

pub use crate::money::{AMOUNT_MAX, BALANCE_MAX};
/// The read-row kind of wallet transactions.
pub const TX_ROW_KIND: &str = "wallet_tx";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxKind {
    Earn,
    Use,
    Cancel,
    /// Points bought by card through the payment gateway (`points_charge`).
    Charge,
    /// Points given back by a refunded order (comes with the checkout saga).
    Refund,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Earn => "EARN",
            TxKind::Use => "USE",
            TxKind::Cancel => "CANCEL",
            TxKind::Charge => "CHARGE",
            TxKind::Refund => "REFUND",
        }
    }
}

/// What a cancel needs to know of a past transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxEntry {
    pub kind: TxKind,
    /// Signed: what the transaction added to the balance.
    pub amount: i64,
    pub cancelled: bool,
}

/// One transaction as journaled; its number is its place in the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub kind: TxKind,
    pub amount: i64,
    pub description: Option<String>,
    pub reference: Option<String>,
    /// The number of the transaction a `CANCEL` reverses.
    pub cancels: Option<u64>,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub user_id: UserId,
    pub balance: i64,
    pub version: u64,
    txs: imbl::Vector<TxEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletCommand {
    Get,
    Earn {
        amount: i64,
        description: Option<String>,
        reference: Option<String>,
    },
    Use {
        amount: i64,
        description: Option<String>,
        reference: Option<String>,
    },
    /// Reverses transaction number `n`.
    Cancel {
        n: u64,
    },
    /// Records points the card has paid for (the payment gateway has taken the money).
    Charge {
        amount: i64,
        description: Option<String>,
        reference: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletEvent {
    Recorded(TxRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletView {
    pub user_id: UserId,
    pub balance: i64,
    pub version: u64,
}

/// A transaction as API.md shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TxKind,
    /// Signed: what the transaction added to the balance.
    pub amount: i64,
    pub balance_after: i64,
    pub description: Option<String>,
    pub reference: Option<String>,
    /// The id of the transaction a `CANCEL` reverses.
    pub cancels: Option<String>,
    pub created_at: String,
}

/// A read answers with the wallet, a change with the transaction it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WalletReply {
    Wallet(WalletView),
    Tx(TxView),
}

/// The id of transaction `n` of `user_id`'s wallet.
pub fn tx_id(user_id: &str, n: u64) -> String {
    format!("{user_id}.{n:010}")
}

/// The number of transaction `id` if it names one of `user_id`'s transactions.
pub fn parse_tx_id(user_id: &str, id: &str) -> Option<u64> {
    let digits = id.strip_prefix(user_id)?.strip_prefix('.')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 1)
}

impl Wallet {
    /// Transactions reversed by a later `CANCEL`.
    pub fn cancelled(&self) -> usize {
        self.txs.iter().filter(|t| t.cancelled).count()
    }

    pub fn view(&self) -> WalletView {
        WalletView {
            user_id: self.user_id.clone(),
            balance: self.balance,
            version: self.version,
        }
    }

    /// How transaction number `n` (the next one when deciding) is shown.
    /// The transaction `event` recorded, with the balance it left; called once the event is
    /// applied. What the transaction history is projected from.
    pub fn recorded_view(&self, event: &WalletEvent) -> TxView {
        let WalletEvent::Recorded(record) = event;
        self.tx_view(self.version, record, self.balance)
    }

    fn tx_view(&self, n: u64, record: &TxRecord, balance_after: i64) -> TxView {
        TxView {
            id: tx_id(self.user_id.as_str(), n),
            kind: record.kind,
            amount: record.amount,
            balance_after,
            description: record.description.clone(),
            reference: record.reference.clone(),
            cancels: record.cancels.map(|c| tx_id(self.user_id.as_str(), c)),
            created_at: rfc3339(record.at_ms),
        }
    }

    /// Accepts `record` as the next transaction, if the balance stays within its bounds.
    fn record(&self, record: TxRecord) -> Result<Decision<Self>, Rejection> {
        let after = self.balance + record.amount;
        if after < 0 {
            return Err(Rejection::new(
                ErrorCode::InsufficientPoints,
                format!("the balance is {}, {} needed", self.balance, -record.amount),
            ));
        }
        if after > BALANCE_MAX {
            return Err(Rejection::validation(
                "amount",
                format!("the balance may not exceed {BALANCE_MAX}"),
            ));
        }
        let view = self.tx_view(self.version + 1, &record, after);
        Ok(Decision {
            events: vec![WalletEvent::Recorded(record)],
            reply: WalletReply::Tx(view),
        })
    }

    /// An earn, use or charge of `amount` (1 to [`AMOUNT_MAX`]): a use takes it away.
    fn decide_add(
        &self,
        kind: TxKind,
        amount: i64,
        description: &Option<String>,
        reference: &Option<String>,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        check_amount(amount)?;
        self.record(TxRecord {
            kind,
            amount: if kind == TxKind::Use { -amount } else { amount },
            description: description.clone(),
            reference: reference.clone(),
            cancels: None,
            at_ms: ctx.now_ms,
        })
    }

    fn decide_cancel(&self, n: u64, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let Some(target) = self.entry(n) else {
            return Err(Rejection::not_found(format!(
                "transaction {} not found",
                tx_id(self.user_id.as_str(), n)
            )));
        };
        if target.kind == TxKind::Cancel {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                "a cancelling transaction cannot itself be cancelled",
            ));
        }
        if target.cancelled {
            return Err(Rejection::new(
                ErrorCode::AlreadyCancelled,
                format!("{} is already cancelled", tx_id(self.user_id.as_str(), n)),
            ));
        }
        self.record(TxRecord {
            kind: TxKind::Cancel,
            amount: -target.amount,
            description: None,
            reference: None,
            cancels: Some(n),
            at_ms: ctx.now_ms,
        })
    }

    fn entry(&self, n: u64) -> Option<&TxEntry> {
        self.txs.get(index_of(n)?)
    }
}

/// Where transaction number `n` (from 1) sits in the list.
fn index_of(n: u64) -> Option<usize> {
    usize::try_from(n.checked_sub(1)?).ok()
}

fn check_amount(amount: i64) -> Result<(), Rejection> {
    if (1..=AMOUNT_MAX).contains(&amount) {
        Ok(())
    } else {
        Err(Rejection::validation(
            "amount",
            format!("must be 1 to {AMOUNT_MAX}"),
        ))
    }
}

impl Entity for Wallet {
    const KIND: &'static str = "wallet";
    const VERSION: u8 = 1;

    type Command = WalletCommand;
    type Event = WalletEvent;
    type Reply = WalletReply;

    fn blank(id: &str) -> Self {
        Wallet {
            user_id: UserId::from(id),
            ..Wallet::default()
        }
    }

    fn exists(&self) -> bool {
        !self.txs.is_empty()
    }

    fn decide(&self, command: &WalletCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        match command {
            WalletCommand::Get => Ok(Decision::reply(WalletReply::Wallet(self.view()))),
            WalletCommand::Earn {
                amount,
                description,
                reference,
            } => self.decide_add(TxKind::Earn, *amount, description, reference, ctx),
            WalletCommand::Use {
                amount,
                description,
                reference,
            } => self.decide_add(TxKind::Use, *amount, description, reference, ctx),
            WalletCommand::Charge {
                amount,
                description,
                reference,
            } => self.decide_add(TxKind::Charge, *amount, description, reference, ctx),
            WalletCommand::Cancel { n } => self.decide_cancel(*n, ctx),
        }
    }

    fn apply(&mut self, event: &WalletEvent) {
        let WalletEvent::Recorded(record) = event;
        if let Some(entry) = record.cancels.and_then(index_of) {
            if let Some(entry) = self.txs.get_mut(entry) {
                entry.cancelled = true;
            }
        }
        self.txs.push_back(TxEntry {
            kind: record.kind,
            amount: record.amount,
            cancelled: false,
        });
        self.balance += record.amount;
        self.version += 1;
    }

    fn check_invariants(&self) -> Result<(), String> {
        if !(0..=BALANCE_MAX).contains(&self.balance) {
            return Err(format!("balance {} out of bounds", self.balance));
        }
        if usize::try_from(self.version).ok() != Some(self.txs.len()) {
            return Err(format!(
                "version {} but {} transactions",
                self.version,
                self.txs.len()
            ));
        }
        Ok(())
    }

    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()?;
        let sum: i64 = self.txs.iter().map(|t| t.amount).sum();
        if sum != self.balance {
            return Err(format!(
                "balance {} but transactions sum to {sum}",
                self.balance
            ));
        }
        let cancels = self.txs.iter().filter(|t| t.kind == TxKind::Cancel).count();
        let cancelled = self.txs.iter().filter(|t| t.cancelled).count();
        if cancels != cancelled
            || self
                .txs
                .iter()
                .any(|t| t.kind == TxKind::Cancel && t.cancelled)
        {
            return Err(format!(
                "{cancels} cancelling transactions but {cancelled} cancelled"
            ));
        }
        Ok(())
    }

    fn snapshot_weight(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests;
