//! `surge gateway-sim`: a payment gateway that serves the API of API.md "Payment gateway"
//! from memory, for demos and tests. It is honest where the checkout saga's correctness is
//! judged: an idempotency key charges once, also under concurrent calls, and
//! `GET /_sim/payments` lists exactly what it accepted.
//!
//! - `POST /payments {amount, currency, card_token, idempotency_key}`: 200 `{id, status:
//!   "APPROVED"}`, or 402 `{status: "DECLINED", reason}` for card token `tok_decline`.
//! - `POST /payments/{id}/refund {amount, idempotency_key}`: 200 `{id, status: "REFUNDED"}`.
//! - `POST /_sim/mode {mode: "up"|"down", latency_ms?, fail_rate?}`: down answers 503 to every
//!   payment and refund; `latency_ms` delays every answer (after the call has taken effect, as
//!   a slow network would); `fail_rate` answers that share of calls 500 without acting on them.
//!   Each POST states the whole mode: a field left out is 0. `GET /_sim/mode` shows it, with
//!   `calls`, the payment and refund requests that reached the simulator.
//! - `GET /_sim/payments`: every payment (approved or declined) and refund, in order.
//!
//! Errors are problem+json (`crate::error`); the rules are in [`ledger`].

pub mod ledger;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

use self::ledger::{Answer, Ledger};
use super::{Accepted, ChargeRequest, Declined, RefundRequest, DECLINED};
use crate::error::{ApiError, ErrorCode};
use crate::http::RawBody;

/// The most payments and refunds kept; past it new ones get 503.
pub const RECORDS_MAX: usize = 1_000_000;
/// The largest request body taken (a payment is about 150 bytes).
const BODY_LIMIT_BYTES: usize = 16 * 1024;
/// The longest delay `latency_ms` may ask for.
const LATENCY_MAX_MS: u64 = 60_000;
/// HTTP worker threads: the simulator waits more than it works.
const WORKERS: usize = 2;

/// The simulator's state, shared by its workers.
struct Simulator {
    ledger: Mutex<Ledger>,
    mode: Mutex<Mode>,
    calls: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Health {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mode {
    mode: Health,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    fail_rate: f64,
}

/// Serves the simulator on `listener` (2 workers, no signal handling: the caller stops it with
/// the handle). Call it inside a tokio runtime; it returns at once.
pub fn spawn(listener: TcpListener) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let address = listener.local_addr()?;
    let simulator = web::Data::new(Simulator {
        ledger: Mutex::new(Ledger::new(RECORDS_MAX)),
        mode: Mutex::new(Mode {
            mode: Health::Up,
            latency_ms: 0,
            fail_rate: 0.0,
        }),
        calls: AtomicU64::new(0),
    });
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(simulator.clone())
            .configure(|cfg| crate::http::configure_extractors(cfg, BODY_LIMIT_BYTES))
            .configure(routes)
            .default_service(web::to(crate::http::no_route))
    })
    .workers(WORKERS)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((address, handle))
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::post().to(pay))
        .route("/payments/{id}/refund", web::post().to(refund))
        .route("/_sim/mode", web::post().to(set_mode))
        .route("/_sim/mode", web::get().to(mode))
        .route("/_sim/payments", web::get().to(payments));
}

async fn pay(sim: web::Data<Simulator>, body: RawBody) -> Result<HttpResponse, ApiError> {
    let request: ChargeRequest = body.json()?;
    sim.call(|ledger| ledger.charge(request)).await
}

async fn refund(
    sim: web::Data<Simulator>,
    payment_id: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let request: RefundRequest = body.json()?;
    sim.call(|ledger| ledger.refund(&payment_id, request)).await
}

async fn set_mode(sim: web::Data<Simulator>, body: RawBody) -> Result<HttpResponse, ApiError> {
    let mode: Mode = body.json()?;
    if mode.latency_ms > LATENCY_MAX_MS {
        return Err(ApiError::validation(
            "latency_ms",
            format!("must be at most {LATENCY_MAX_MS}"),
        ));
    }
    if !(0.0..=1.0).contains(&mode.fail_rate) {
        return Err(ApiError::validation("fail_rate", "must be 0.0 to 1.0"));
    }
    *sim.mode.lock().expect("nothing panics holding the mode") = mode;
    tracing::info!(?mode, "gateway simulator mode changed");
    Ok(sim.mode_view())
}

async fn mode(sim: web::Data<Simulator>) -> HttpResponse {
    sim.mode_view()
}

async fn payments(sim: web::Data<Simulator>) -> Result<HttpResponse, ApiError> {
    let ledger = sim
        .ledger
        .lock()
        .expect("nothing panics holding the ledger");
    let body = serde_json::to_vec(ledger.records()).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

impl Simulator {
    /// One payment or refund: counted, then refused or carried out as the mode says, then
    /// answered after the mode's latency.
    async fn call(
        &self,
        act: impl FnOnce(&mut Ledger) -> Result<Answer, ApiError>,
    ) -> Result<HttpResponse, ApiError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mode = *self.mode.lock().expect("nothing panics holding the mode");
        let outcome = match mode.mode {
            Health::Down => Err(ApiError::unavailable("the gateway is down (simulated)")),
            Health::Up if rand::random::<f64>() < mode.fail_rate => Err(ApiError::new(
                ErrorCode::Internal,
                "the gateway failed (simulated)",
            )),
            Health::Up => act(&mut self
                .ledger
                .lock()
                .expect("nothing panics holding the ledger")),
        };
        if mode.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(mode.latency_ms)).await;
        }
        outcome.map(respond)
    }

    fn mode_view(&self) -> HttpResponse {
        let mode = *self.mode.lock().expect("nothing panics holding the mode");
        HttpResponse::Ok().json(serde_json::json!({
            "mode": mode.mode,
            "latency_ms": mode.latency_ms,
            "fail_rate": mode.fail_rate,
            "calls": self.calls.load(Ordering::Relaxed),
        }))
    }
}

fn respond(answer: Answer) -> HttpResponse {
    match answer {
        Answer::Accepted { id, status } => HttpResponse::Ok().json(Accepted {
            id,
            status: status.to_string(),
        }),
        Answer::Declined { reason } => HttpResponse::PaymentRequired().json(Declined {
            status: DECLINED.to_string(),
            reason: reason.to_string(),
        }),
    }
}
