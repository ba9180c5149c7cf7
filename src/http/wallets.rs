//! Wallets (API.md "Wallets (points)"): balance, earn, use, cancel, history; buying points by
//! card is in [`super::charges`].
//!
//! A wallet's actor answers for its balance (read your writes); its history comes from the
//! `wallet_tx` read rows, committed with each transaction. `/wallets/me...` routes are
//! registered before `/wallets/{user_id}...`, so `me` always means the caller.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Prepared};
use super::lists::read_list;
use super::openapi::{IdempotencyKey, Page, Paging};
use super::{ListQuery, RawBody, State};
use crate::actors::wallet::{
    parse_tx_id, TxView, Wallet, WalletCommand, WalletReply, WalletView, AMOUNT_MAX, TX_ROW_KIND,
};
use crate::auth::{is_valid_user_id, Caller, ME};
use crate::error::{ApiError, FieldErrors};

/// Longest description or reference a transaction may carry.
const TEXT_LEN_MAX: usize = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/wallets")
            .route("/me", web::get().to(get_mine))
            .route("/me/use", web::post().to(use_points))
            .route("/me/charge", web::post().to(super::charges::charge))
            .route("/me/transactions", web::get().to(list_mine))
            .route("/{user_id}/earn", web::post().to(earn))
            .route("/{user_id}", web::get().to(get))
            .route("/{user_id}/transactions", web::get().to(list))
            .route(
                "/{user_id}/transactions/{tx_id}/cancel",
                web::post().to(cancel),
            ),
    );
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = PointsChange)]
struct AmountBody {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: i64,
    #[schema(max_length = 200)]
    description: Option<String>,
    #[schema(max_length = 200)]
    reference: Option<String>,
}

impl AmountBody {
    fn validate(&self) -> Result<(), ApiError> {
        let mut errors = FieldErrors::new();
        errors.check(
            (1..=AMOUNT_MAX).contains(&self.amount),
            "amount",
            format!("must be 1 to {AMOUNT_MAX}"),
        );
        for (field, text) in [
            ("description", &self.description),
            ("reference", &self.reference),
        ] {
            errors.check(
                text.as_ref().is_none_or(|t| {
                    t.chars().count() <= TEXT_LEN_MAX && crate::text::is_plain(t, false)
                }),
                field,
                format!(
                    "must be at most {TEXT_LEN_MAX} characters, {}",
                    crate::text::PLAIN_RULE
                ),
            );
        }
        Ok(errors.finish()?)
    }
}

/// The wallet's owner from the path: `me` is the caller; an id no user can have names no
/// wallet.
fn user_of<'a>(caller: &'a Caller, path: &'a str) -> Result<&'a str, ApiError> {
    if path == ME {
        Ok(&caller.user_id)
    } else if is_valid_user_id(path) {
        Ok(path)
    } else {
        Err(ApiError::not_found(format!("wallet {path} not found")))
    }
}

fn may_see(caller: &Caller, user_id: &str) -> Result<(), ApiError> {
    if caller.can_see(user_id) {
        Ok(())
    } else {
        Err(ApiError::forbidden("this wallet belongs to someone else"))
    }
}

fn wallet_of(reply: WalletReply) -> Result<WalletView, ApiError> {
    match reply {
        WalletReply::Wallet(view) => Ok(view),
        other => Err(ApiError::internal(format!("a read answered {other:?}"))),
    }
}

fn tx_of(reply: WalletReply) -> Result<TxView, ApiError> {
    match reply {
        WalletReply::Tx(view) => Ok(view),
        other => Err(ApiError::internal(format!("a change answered {other:?}"))),
    }
}

async fn show(state: &State, user_id: &str) -> Result<HttpResponse, ApiError> {
    let reply = state.wallets.ask(user_id, WalletCommand::Get, None).await?;
    Ok(HttpResponse::Ok().json(wallet_of(reply)?))
}

#[utoipa::path(get, path = "/wallets/me", summary = "My wallet", tag = "wallets",
    operation_id = "get_my_wallet",
    security(("bearer" = [])),
    description = "A wallet exists for every user; one never used has balance 0.",
    responses((status = 200, description = "The caller's wallet", body = WalletViewSchema)))]
async fn get_mine(state: State, caller: Caller) -> Result<HttpResponse, ApiError> {
    show(&state, &caller.user_id).await
}

#[utoipa::path(get, path = "/wallets/{user_id}", summary = "A user's wallet", tag = "wallets",
    operation_id = "get_wallet",
    security(("bearer" = [])), params(("user_id" = String, Path,
        description = "The wallet's user")),
    responses(
        (status = 200, description = "The wallet", body = WalletViewSchema),
        (status = 403, description = "FORBIDDEN: a customer's view of someone else's wallet"),
        (status = 404, description = "NOT_FOUND: not a valid user id"),
    ))]
async fn get(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_of(&caller, &path)?;
    may_see(&caller, user_id)?;
    show(&state, user_id).await
}

/// Runs a transaction-making command with the request's Idempotency-Key; 201 with the
/// transaction.
async fn transact(
    state: &State,
    req: &HttpRequest,
    caller: &Caller,
    body: &RawBody,
    user_id: &str,
    command: WalletCommand,
) -> Result<HttpResponse, ApiError> {
    let keyed = match idempotent::prepare(state, req, caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let side = idempotent::record_side::<Wallet, _, _>(
        keyed.as_ref(),
        StatusCode::CREATED,
        WalletReply::clone,
    );
    let reply = idempotent::ask_keyed(state, &state.wallets, user_id, command, side, keyed).await?;
    Ok(HttpResponse::Created().json(tx_of(reply)?))
}

#[utoipa::path(post, path = "/wallets/{user_id}/earn", summary = "Earn points", tag = "wallets",
    operation_id = "earn_points",
    security(("bearer" = ["operator", "admin"])), params(("user_id" = String, Path,
        description = "The wallet's user"), IdempotencyKey), request_body = AmountBody,
    responses(
        (status = 201, description = "The `EARN` transaction", body = TxViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 404, description = "NOT_FOUND: not a valid user id"),
        (status = 422, description = "VALIDATION_FAILED"),
    ))]
async fn earn(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let user_id = user_of(&caller, &path)?;
    let input: AmountBody = body.json()?;
    input.validate()?;
    let command = WalletCommand::Earn {
        amount: input.amount,
        description: input.description,
        reference: input.reference,
    };
    transact(&state, &req, &caller, &body, user_id, command).await
}

#[utoipa::path(post, path = "/wallets/me/use", summary = "Spend points", tag = "wallets",
    operation_id = "use_points",
    security(("bearer" = [])), params(IdempotencyKey), request_body = AmountBody,
    responses(
        (status = 201, description = "The `USE` transaction", body = TxViewSchema),
        (status = 409, description = "INSUFFICIENT_POINTS"),
        (status = 422, description = "VALIDATION_FAILED"),
    ))]
async fn use_points(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let input: AmountBody = body.json()?;
    input.validate()?;
    let command = WalletCommand::Use {
        amount: input.amount,
        description: input.description,
        reference: input.reference,
    };
    transact(&state, &req, &caller, &body, &caller.user_id, command).await
}

#[utoipa::path(post, path = "/wallets/{user_id}/transactions/{tx_id}/cancel",
    summary = "Cancel a transaction", tag = "wallets",
    operation_id = "cancel_transaction", security(("bearer" = ["operator", "admin"])),
    params(("user_id" = String, Path, description = "The wallet's user"), ("tx_id" = String, Path,
        description = "The transaction to reverse"),
        IdempotencyKey),
    responses(
        (status = 201, description = "The reversing `CANCEL` transaction", body = TxViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 404, description = "NOT_FOUND: no such transaction"),
        (status = 409, description = "ALREADY_CANCELLED; INSUFFICIENT_POINTS when cancelling \
            an earn whose points are spent; CONFLICT when the transaction is itself a cancel"),
        (status = 422, description = "VALIDATION_FAILED: the balance would pass 10^15"),
    ))]
async fn cancel(
    state: State,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let (user_id, tx_id) = path.into_inner();
    let user_id = user_of(&caller, &user_id)?;
    let n = parse_tx_id(user_id, &tx_id)
        .ok_or_else(|| ApiError::not_found(format!("transaction {tx_id} not found")))?;
    transact(
        &state,
        &req,
        &caller,
        &body,
        user_id,
        WalletCommand::Cancel { n },
    )
    .await
}

/// The history, newest first: transaction ids sort by age.
#[utoipa::path(get, path = "/wallets/me/transactions", summary = "My transactions", tag = "wallets",
    operation_id = "list_my_transactions", security(("bearer" = [])), params(Paging),
    responses(
        (status = 200, description = "Transactions, newest first; each `balance_after` chains",
            body = Page<TxViewSchema>),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn list_mine(
    state: State,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    read_list(&state, TX_ROW_KIND, Some(&caller.user_id), &query).await
}

#[utoipa::path(get, path = "/wallets/{user_id}/transactions", summary = "A user's transactions",
    tag = "wallets",
    operation_id = "list_transactions", security(("bearer" = [])), params(("user_id" = String,
        Path, description = "The wallet's user"), Paging),
    responses(
        (status = 200, description = "Transactions, newest first; each `balance_after` chains",
            body = Page<TxViewSchema>),
        (status = 403, description = "FORBIDDEN: a customer's view of someone else's wallet"),
        (status = 404, description = "NOT_FOUND: not a valid user id"),
        (status = 422, description = "VALIDATION_FAILED: a bad limit or cursor"),
    ))]
async fn list(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_of(&caller, &path)?;
    may_see(&caller, user_id)?;
    read_list(&state, TX_ROW_KIND, Some(user_id), &query).await
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = TxKind)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxKindSchema {
    Earn,
    Use,
    Cancel,
    /// Points bought by card through the payment gateway (`POST /wallets/me/charge`).
    Charge,
    /// Points given back by a refunded order (comes with the checkout saga).
    Refund,
}

#[derive(utoipa::ToSchema)]
#[schema(as = WalletView)]
#[allow(dead_code)] // Describes the domain's `WalletView`; never built.
pub struct WalletViewSchema {
    pub user_id: String,
    pub balance: i64,
    pub version: u64,
}

/// A transaction as API.md shows it.
#[derive(utoipa::ToSchema)]
#[schema(as = TxView)]
#[allow(dead_code)] // Describes the domain's `TxView`; never built.
pub struct TxViewSchema {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TxKindSchema,
    /// Signed: what the transaction added to the balance.
    pub amount: i64,
    pub balance_after: i64,
    pub description: Option<String>,
    pub reference: Option<String>,
    /// The id of the transaction a `CANCEL` reverses.
    pub cancels: Option<String>,
    pub created_at: String,
}
