//! Points bought by card (`POST /wallets/me/charge`): what each step of a [`PointsCharge`]
//! does, and [`Charges`], the [`Driver`] that runs and resumes them.
//!
//! # Why an entity of its own
//! Buying points touches two systems that share no transaction: the payment gateway takes
//! the money, the wallet records the points. A crash between the two must neither lose the
//! money nor credit it twice, and a request retried with its Idempotency-Key must charge
//! once. So a charge is a small saga, durable like the payment saga: a `points_charge` entity
//! per charge journals each step's start and outcome, and this driver carries the steps out.
//! - `Charge`: the gateway charges the card with the key `points_charge:{id}:charge`. A
//!   retry, or the same step run again after a crash, gets the first answer and charges
//!   nothing more. A decline ends the charge `FAILED` with nothing credited.
//! - `Credit`: the wallet records a `CHARGE` transaction (reference: the gateway's payment
//!   id) through [`keyed`]: its idempotency record is committed with the wallet's event, so a
//!   credit run again answers the first transaction instead of adding another.
//! - `Refund`, only if the wallet refused the credit (its balance would pass its bound): the
//!   gateway gives the money back, keyed too, retried until it does.
//!
//! A charge the process left running is found by its read row (status `RUNNING` or
//! `COMPENSATING`) at start-up and every few seconds ([`Driver::resume_all`]), and driven to
//! its end: whatever step it was at, the money ends as points, or refunded.
//!
//! # Its id
//! [`charge_id`] derives it from the caller and their Idempotency-Key, so a retried request
//! (a lost answer, a 202, a 503) names the same charge and finds it as it is; the key's
//! idempotency record, committed with the charge's start, keeps a different body with the
//! same key out (422). Without a key every request is a new charge (a UUIDv7).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::driver::{gateway_failure, keyed, Driver, Performer, StepError, Stepped};
use crate::actors::hosted::points_charge::{status_name, ROW_KIND};
use crate::actors::points_charge::{
    ChargeCommand, ChargeStatus, ChargeView, Outcome, PointsCharge, Step,
};
use crate::actors::steps::StepResult;
use crate::actors::wallet::{Wallet, WalletCommand, WalletReply};
use crate::actors::Entity;
use crate::gateway::Gateway;
use crate::persistence::idempotency::Idempotency;
use crate::runtime::SharedRuntime;
use crate::supervisors::region::Region;

/// What a charge's `CHARGE` transaction says it is.
const CREDIT_DESCRIPTION: &str = "points bought by card";

/// Starts, drives and resumes points charges; cheap to clone.
pub type Charges = Driver<PointsCharge, ChargeSteps>;

/// The regions and clients a charge's steps reach.
pub struct ChargeParts {
    pub rt: SharedRuntime,
    pub charges: Region<PointsCharge>,
    pub wallets: Region<Wallet>,
    pub gateway: Arc<Gateway>,
    pub idempotency: Idempotency,
}

impl Charges {
    pub fn for_points(parts: ChargeParts) -> Charges {
        let steps = ChargeSteps {
            wallets: parts.wallets,
            gateway: parts.gateway,
            idempotency: parts.idempotency,
        };
        Driver::new(parts.rt, parts.charges, steps)
    }
}

/// The id of the charge a request starts: from the caller and their Idempotency-Key (the
/// first 128 bits of a SHA-256, as a UUIDv8), so a retry names the same charge; a new UUIDv7
/// without a key.
pub fn charge_id(user_id: &str, idempotency_key: Option<&str>) -> String {
    let Some(key) = idempotency_key else {
        return uuid::Uuid::now_v7().to_string();
    };
    let mut hasher = Sha256::new();
    for part in [PointsCharge::KIND, user_id, key] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let bytes: [u8; 16] = digest[..16].try_into().expect("SHA-256 has 32 bytes");
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Stepped for PointsCharge {
    type Step = Step;
    type Outcome = Outcome;
    const ROW_KIND: &'static str = ROW_KIND;
    const UNFINISHED: &'static [&'static str] = &[
        status_name(ChargeStatus::Running),
        status_name(ChargeStatus::Compensating),
    ];

    fn next_command() -> ChargeCommand {
        ChargeCommand::Next
    }

    fn get_command() -> ChargeCommand {
        ChargeCommand::Get
    }

    fn report_command(step: Step, result: StepResult<Outcome>) -> ChargeCommand {
        ChargeCommand::Report { step, result }
    }

    fn to_run(view: &ChargeView) -> Option<(Step, String)> {
        view.next.to_run()
    }

    fn running(view: &ChargeView) -> Option<Step> {
        let last = view.charge.steps.last()?;
        last.ended.is_none().then_some(last.step)
    }

    fn may_fail(step: Step) -> bool {
        step.may_fail()
    }

    fn step_name(step: Step) -> &'static str {
        step.as_str()
    }
}

/// What each step of a points charge does.
pub struct ChargeSteps {
    wallets: Region<Wallet>,
    gateway: Arc<Gateway>,
    idempotency: Idempotency,
}

impl Performer<PointsCharge> for ChargeSteps {
    async fn perform(
        &self,
        _id: &str,
        view: &ChargeView,
        step: Step,
        key: &str,
    ) -> Result<Outcome, StepError> {
        let request = view
            .charge
            .request
            .as_ref()
            .ok_or_else(|| StepError::Retry("the charge has not started".into()))?;
        let payment = || {
            view.charge
                .payment_id
                .clone()
                .ok_or_else(|| StepError::Retry("no payment yet".into()))
        };
        let gateway = &self.gateway;
        match step {
            Step::Charge => gateway
                .charge(request.amount, gateway.currency(), &request.card_token, key)
                .await
                .map(|charged| Outcome::Payment(charged.payment_id))
                .map_err(gateway_failure),
            Step::Credit => {
                let command = WalletCommand::Charge {
                    amount: request.amount,
                    description: Some(CREDIT_DESCRIPTION.to_string()),
                    reference: Some(payment()?),
                };
                let user = request.user_id.as_str();
                let tx = keyed(
                    &self.idempotency,
                    &self.wallets,
                    user,
                    command,
                    key,
                    |reply| match reply {
                        WalletReply::Tx(tx) => Some(tx.clone()),
                        WalletReply::Wallet(_) => None,
                    },
                )
                .await?;
                let tx = tx.ok_or_else(|| StepError::Retry("no transaction".into()))?;
                Ok(Outcome::Credited(tx))
            }
            // A refund cannot fail for good: it is tried again until the gateway takes it.
            Step::Refund => gateway
                .refund(&payment()?, request.amount, key)
                .await
                .map(|refunded| Outcome::Refunded(refunded.refund_id))
                .map_err(|error| StepError::Retry(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_one_charge_per_caller_and_no_key_a_new_one_each_time() {
        let first = charge_id("alice", Some("k-1"));
        assert_eq!(first, charge_id("alice", Some("k-1")));
        assert_ne!(first, charge_id("alice", Some("k-2")));
        assert_ne!(first, charge_id("bob", Some("k-1")));
        // The parts are kept apart: ("ab", "c") is not ("a", "bc").
        assert_ne!(charge_id("ab", Some("c")), charge_id("a", Some("bc")));
        let uuid = uuid::Uuid::parse_str(&first).expect("a UUID");
        assert_eq!(uuid.get_version(), Some(uuid::Version::Custom));
        assert_ne!(charge_id("alice", None), charge_id("alice", None));
    }
}
