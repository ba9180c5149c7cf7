//! `POST /wallets/me/charge` (API.md "Wallets (points)"): points bought by card through the
//! payment gateway, recorded as a `CHARGE` transaction.
//!
//! The handler checks the body and the wallet's bound, refuses at once while the gateway's
//! breaker is open, starts the caller's points charge ([`crate::checkout::Charges`]: a small
//! saga whose id comes from the caller and their Idempotency-Key) and waits, at most
//! [`CHARGE_WAIT_SECS`], for it to end: 201 with the transaction, 402 `PAYMENT_DECLINED`, 503
//! `GATEWAY_UNAVAILABLE`, or 202 while it still runs (it goes on in the background). The same
//! key again answers that charge as it is now, with `Idempotent-Replayed: true`, so a 202 or
//! a lost answer is settled by asking again; a charge the gateway could not take (503, nothing
//! charged) runs again.

use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use super::idempotent::{self, Prepared, REPLAYED_HEADER};
use super::openapi::IdempotencyKey;
use super::wallets::TxViewSchema;
use super::{gateway_unavailable, refuse_while_gateway_open, RawBody, State};
use crate::actors::hosted::points_charge::status_name;
use crate::actors::points_charge::{
    validate_request, ChargeCommand, ChargeRequest, ChargeStatus, ChargeView, Failure, PointsCharge,
};
use crate::actors::wallet::{WalletCommand, WalletReply, BALANCE_MAX};
use crate::auth::Caller;
use crate::checkout::charge_id;
use crate::error::{ApiError, ErrorCode};

/// Longest a charge request waits for its charge to end before answering 202.
const CHARGE_WAIT_SECS: u64 = 10;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChargePoints)]
struct ChargeBody {
    /// Points to buy, each paid with one of the smallest unit of `gateway.currency`.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: i64,
    /// The card, as the payment gateway knows it.
    #[schema(example = "tok_visa", min_length = 1, max_length = 128)]
    card_token: String,
}

/// A charge still running: 202.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ChargeInProgress)]
struct ChargeInProgress {
    charge_id: String,
    /// `RUNNING`, or `COMPENSATING` while a refused credit's payment is refunded.
    #[schema(example = "RUNNING")]
    status: String,
}

impl ChargeInProgress {
    fn of(view: &ChargeView) -> ChargeInProgress {
        ChargeInProgress {
            charge_id: view.charge.charge_id.clone(),
            status: view.status.map_or("RUNNING", status_name).to_string(),
        }
    }
}

#[utoipa::path(post, path = "/wallets/me/charge", summary = "Buy points by card", tag = "wallets",
    operation_id = "charge_points",
    security(("bearer" = [])), params(IdempotencyKey), request_body = ChargeBody,
    description = "Charges the card `amount` at the payment gateway, then credits the caller's \
        wallet with a `CHARGE` transaction of `amount` points (its `reference` is the \
        gateway's payment id). Exactly once: a crash between the two still ends with the \
        points credited (or, if the wallet cannot take them, the payment refunded), and a retry \
        with the same Idempotency-Key charges nothing more: it answers the same charge as it \
        is now (`Idempotent-Replayed: true`). Without a key, every request is a new charge.",
    responses(
        (status = 201, description = "The `CHARGE` transaction", body = TxViewSchema),
        (status = 202, description = "The charge is still running; ask again with the same \
            Idempotency-Key for its end", body = ChargeInProgress),
        (status = 402, description = "PAYMENT_DECLINED: nothing was charged or credited"),
        (status = 409, description = "IDEMPOTENCY_IN_FLIGHT: the same key is starting a charge"),
        (status = 422, description = "VALIDATION_FAILED: the amount, the card token, or a \
            balance that would pass 10^15; IDEMPOTENCY_KEY_REUSED"),
        (status = 503, description = "GATEWAY_UNAVAILABLE: the gateway's breaker is open or \
            it could not be reached; nothing was charged, and the same key may be tried again"),
    ))]
pub(super) async fn charge(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let input: ChargeBody = body.json()?;
    let request = ChargeRequest {
        user_id: caller.user_id.as_str().into(),
        amount: input.amount,
        card_token: input.card_token,
    };
    validate_request(&request)?;
    let prepared = idempotent::prepare(&state, &req, &caller, &body.0).await?;
    // `prepare` took the key as text.
    let key = req.headers().get(idempotent::HEADER);
    let id = charge_id(&caller.user_id, key.and_then(|k| k.to_str().ok()));
    let charges = state.charges.region();
    let replayed = match prepared {
        Prepared::Replay(_) => {
            // The charge this key started: as it is, or run again if it took nothing.
            let view = charges.ask(&id, ChargeCommand::Get, None).await?;
            if view.status.is_none() || view.charge.runs_again() {
                refuse_while_gateway_open(&state)?;
                charges
                    .ask(&id, ChargeCommand::Start(request), None)
                    .await?;
            } else if view.has_ended() {
                return answer(&state, &view, true);
            }
            true
        }
        Prepared::Run(keyed) => {
            fits_the_wallet(&state, &caller, request.amount).await?;
            refuse_while_gateway_open(&state)?;
            let side = idempotent::record_side::<PointsCharge, _, _>(
                keyed.as_ref(),
                StatusCode::ACCEPTED,
                ChargeInProgress::of,
            );
            let start = ChargeCommand::Start(request);
            idempotent::ask_keyed(&state, charges, &id, start, side, keyed).await?;
            false
        }
    };
    state.charges.drive(&id);
    let wait = Duration::from_secs(CHARGE_WAIT_SECS);
    let view = state.charges.wait_for_end(&id, wait).await?;
    answer(&state, &view, replayed)
}

/// 422 unless the caller's wallet can take `amount` more points.
async fn fits_the_wallet(state: &State, caller: &Caller, amount: i64) -> Result<(), ApiError> {
    let wallet = state
        .wallets
        .ask(&caller.user_id, WalletCommand::Get, None)
        .await?;
    let WalletReply::Wallet(wallet) = wallet else {
        return Err(ApiError::internal("a wallet read answered a transaction"));
    };
    match wallet.balance <= BALANCE_MAX - amount {
        true => Ok(()),
        false => Err(ApiError::validation(
            "amount",
            format!("the balance may not exceed {BALANCE_MAX}"),
        )),
    }
}

/// 201 with the transaction once credited, the failure's problem once failed, else 202.
fn answer(state: &State, view: &ChargeView, replayed: bool) -> Result<HttpResponse, ApiError> {
    let mut response = match (&view.charge.transaction, &view.charge.failure) {
        (Some(tx), _) if view.status == Some(ChargeStatus::Credited) => {
            HttpResponse::Created().json(tx)
        }
        (_, Some(failure)) if view.has_ended() => {
            let error = failure_error(state, failure);
            if !replayed {
                return Err(error);
            }
            error.error_response()
        }
        _ => HttpResponse::Accepted().json(ChargeInProgress::of(view)),
    };
    if replayed {
        response.headers_mut().insert(
            HeaderName::try_from(REPLAYED_HEADER).expect("a valid header name"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// How a charge that failed is answered.
fn failure_error(state: &State, failure: &Failure) -> ApiError {
    match failure.code {
        ErrorCode::GatewayUnavailable => gateway_unavailable(state, failure.detail.clone()),
        // The wallet refused the credit (and the payment was refunded).
        ErrorCode::ValidationFailed => ApiError::validation("amount", failure.detail.clone()),
        code => ApiError::new(code, failure.detail.clone()),
    }
}
