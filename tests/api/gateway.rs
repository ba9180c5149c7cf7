//! The payment gateway client against the real simulator, served in-process over HTTP on port
//! 0: approvals, declines, dedupe by key, refunds, retries, and the circuit breaker on an
//! injected clock. Then the breaker as the admin overview and `/metrics` show it, and the
//! `surge gateway-sim` binary.

use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::clock::{Clock, ManualClock, SystemClock};
use surge::config::{GatewaySettings, Settings};
use surge::gateway::breaker::BreakerState;
use surge::gateway::{Charged, Gateway, GatewayError};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{spawn_app_with, Backend, Options, TestApp};
use crate::metrics::{sample, scrape};

/// The simulator, served on a port of its own.
pub(crate) struct Sim {
    pub(crate) base: String,
    server: ServerHandle,
    client: reqwest::Client,
}

impl Sim {
    pub(crate) fn start() -> Sim {
        Sim::serving(TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
    }

    /// The simulator, from nothing, on a listener the test made.
    pub(crate) fn serving(listener: TcpListener) -> Sim {
        let (address, server) = surge::gateway::sim::spawn(listener).expect("the sim serves");
        Sim {
            base: format!("http://{address}"),
            server,
            client: reqwest::Client::new(),
        }
    }

    pub(crate) async fn set_mode(&self, mode: Value) {
        let response = self
            .client
            .post(format!("{}/_sim/mode", self.base))
            .json(&mode)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// Every payment and refund the sim accepted.
    pub(crate) async fn records(&self) -> Vec<Value> {
        let records = self.get("/_sim/payments").await;
        records.as_array().expect("a list").clone()
    }

    /// Payment and refund requests that reached the sim.
    pub(crate) async fn calls(&self) -> u64 {
        self.get("/_sim/mode").await["calls"]
            .as_u64()
            .expect("calls")
    }

    pub(crate) async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Quick retries, and a breaker that the tests open on purpose (`breaker_failures`).
fn settings(sim: &Sim, breaker_failures: u32) -> GatewaySettings {
    GatewaySettings {
        url: sim.base.clone(),
        timeout_ms: 2_000,
        retries_max: 2,
        retry_base_ms: 1,
        breaker_failures,
        breaker_window_secs: 60,
        breaker_cooldown_secs: 30,
        ..Settings::defaults().gateway
    }
}

/// A charge of 1,000 KRW to a card the sim approves.
async fn charge(gateway: &Gateway, key: &str) -> Result<Charged, GatewayError> {
    gateway.charge(1_000, "KRW", "tok_ok", key).await
}

/// A client on a manual clock, which only the test moves.
fn client(settings: &GatewaySettings) -> (Gateway, ManualClock) {
    let clock = ManualClock::new(SystemClock.now_ms());
    let gateway = Gateway::new(settings, Arc::new(clock.clone())).expect("a client");
    (gateway, clock)
}

#[tokio::test]
async fn a_charge_is_approved_and_recorded_once() {
    let sim = Sim::start();
    let (gateway, _) = client(&settings(&sim, 5));
    let charged = gateway
        .charge(12_000, "KRW", "tok_ok", "order-1/charge")
        .await
        .expect("approved");
    let records = sim.records().await;
    assert_eq!(
        records,
        [
            json!({"id": charged.payment_id, "kind": "payment", "amount": 12_000,
            "currency": "KRW", "status": "APPROVED", "idempotency_key": "order-1/charge",
            "card_token": "tok_ok"})
        ]
    );
    assert_eq!(gateway.currency(), "KRW");
    sim.stop().await;
}

#[tokio::test]
async fn a_declined_card_is_declined_once_without_retries() {
    let sim = Sim::start();
    let (gateway, _) = client(&settings(&sim, 5));
    let declined = gateway
        .charge(12_000, "KRW", "tok_decline", "order-2/charge")
        .await;
    assert_eq!(
        declined,
        Err(GatewayError::Declined {
            reason: "card declined".into()
        })
    );
    assert_eq!(sim.calls().await, 1);
    assert_eq!(gateway.status().breaker, BreakerState::Closed);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_with_one_key_charge_once() {
    let sim = Sim::start();
    let (gateway, _) = client(&settings(&sim, 5));
    let charges = (0..8).map(|_| gateway.charge(5_000, "KRW", "tok_ok", "order-3/charge"));
    let charged = futures::future::join_all(charges).await;
    let ids: std::collections::HashSet<_> = charged
        .into_iter()
        .map(|c| c.expect("approved").payment_id)
        .collect();
    assert_eq!(ids.len(), 1, "every caller hears of the one payment");
    let records = sim.records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["id"], json!(ids.into_iter().next()));
    sim.stop().await;
}

#[tokio::test]
async fn refunds_are_made_once_and_never_past_the_payment() {
    let sim = Sim::start();
    let (gateway, _) = client(&settings(&sim, 5));
    let payment = gateway
        .charge(10_000, "KRW", "tok_ok", "order-4/charge")
        .await
        .expect("approved")
        .payment_id;
    let refunded = gateway
        .refund(&payment, 6_000, "order-4/refund-1")
        .await
        .expect("refunded");
    let again = gateway.refund(&payment, 6_000, "order-4/refund-1").await;
    assert_eq!(again, Ok(refunded.clone()));
    let too_much = gateway.refund(&payment, 4_001, "order-4/refund-2").await;
    assert!(
        matches!(too_much, Err(GatewayError::Rejected { status: 409, .. })),
        "{too_much:?}"
    );
    let unknown = gateway
        .refund("no-such-payment", 1, "order-4/refund-3")
        .await;
    assert!(
        matches!(unknown, Err(GatewayError::Rejected { status: 404, .. })),
        "{unknown:?}"
    );
    let records = sim.records().await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        records[1],
        json!({"id": refunded.refund_id, "kind": "refund", "payment_id": payment,
            "amount": 6_000, "status": "REFUNDED", "idempotency_key": "order-4/refund-1"})
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_key_reused_for_another_charge_is_rejected_and_not_retried() {
    let sim = Sim::start();
    let (gateway, _) = client(&settings(&sim, 5));
    charge(&gateway, "order-5/charge").await.expect("approved");
    let reused = gateway
        .charge(2_000, "KRW", "tok_ok", "order-5/charge")
        .await;
    let Err(GatewayError::Rejected { status, detail }) = reused else {
        panic!("rejected: {reused:?}");
    };
    assert_eq!(status, 422);
    assert!(detail.contains("idempotency key"), "{detail}");
    assert_eq!(sim.calls().await, 2);
    sim.stop().await;
}

#[tokio::test]
async fn a_down_gateway_is_retried_then_unavailable() {
    let sim = Sim::start();
    let (gateway, _) = client(&settings(&sim, 100));
    sim.set_mode(json!({"mode": "down"})).await;
    let outcome = charge(&gateway, "order-6/charge").await;
    assert_eq!(
        outcome,
        Err(GatewayError::Unavailable {
            retry_after_secs: 1,
            outcome_unknown: true
        })
    );
    assert_eq!(sim.calls().await, 3, "the first attempt and 2 retries");
    assert_eq!(gateway.stats().retries(), 2);
    assert!(sim.records().await.is_empty());
    sim.stop().await;
}

/// An answer slower than the timeout: the charge happened, the client cannot know, and the
/// retry with the same key is answered from the record instead of charging again.
#[tokio::test]
async fn a_timed_out_charge_may_have_happened_and_its_retry_charges_nothing_more() {
    let sim = Sim::start();
    let settings = GatewaySettings {
        timeout_ms: 100,
        retries_max: 1,
        ..settings(&sim, 100)
    };
    let (gateway, _) = client(&settings);
    sim.set_mode(json!({"mode": "up", "latency_ms": 400})).await;
    let outcome = charge(&gateway, "order-7/charge").await;
    assert!(
        matches!(
            outcome,
            Err(GatewayError::Unavailable {
                outcome_unknown: true,
                ..
            })
        ),
        "{outcome:?}"
    );
    sim.set_mode(json!({"mode": "up"})).await;
    let charged = charge(&gateway, "order-7/charge")
        .await
        .expect("the first charge, answered again");
    let records = sim.records().await;
    assert_eq!(records.len(), 1, "charged once: {records:?}");
    assert_eq!(records[0]["id"], json!(charged.payment_id));
    sim.stop().await;
}

/// Opens the breaker of a client with `breaker_failures` 3 (one call's three attempts).
async fn open_breaker(sim: &Sim, gateway: &Gateway) {
    sim.set_mode(json!({"mode": "down"})).await;
    let outcome = charge(gateway, "order-8/charge").await;
    assert!(matches!(outcome, Err(GatewayError::Unavailable { .. })));
    assert_eq!(gateway.status().breaker, BreakerState::Open);
}

#[tokio::test]
async fn an_open_breaker_fails_fast_without_calling_and_closes_after_the_cooldown() {
    let sim = Sim::start();
    let (gateway, clock) = client(&settings(&sim, 3));
    open_breaker(&sim, &gateway).await;
    let calls = sim.calls().await;
    sim.set_mode(json!({"mode": "up"})).await;

    let started = Instant::now();
    let refused = charge(&gateway, "order-9/charge").await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(
        refused,
        Err(GatewayError::Unavailable {
            retry_after_secs: 30,
            outcome_unknown: false
        })
    );
    assert_eq!(sim.calls().await, calls, "nothing reached the gateway");

    clock.advance_ms(30_000);
    assert_eq!(gateway.status().breaker, BreakerState::HalfOpen);
    let charged = charge(&gateway, "order-9/charge")
        .await
        .expect("the probe goes through");
    assert_eq!(gateway.status().breaker, BreakerState::Closed);
    assert_eq!(gateway.status().failures, 0);
    let records = sim.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], json!(charged.payment_id));
    sim.stop().await;
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_for_another_cooldown() {
    let sim = Sim::start();
    let (gateway, clock) = client(&settings(&sim, 3));
    open_breaker(&sim, &gateway).await;
    let calls = sim.calls().await;
    clock.advance_ms(30_000);
    let outcome = charge(&gateway, "order-10/charge").await;
    assert_eq!(
        outcome,
        Err(GatewayError::Unavailable {
            retry_after_secs: 30,
            outcome_unknown: true
        })
    );
    assert_eq!(
        sim.calls().await,
        calls + 1,
        "one probe, no retries past it"
    );
    let status = gateway.status();
    assert_eq!(status.breaker, BreakerState::Open);
    assert_eq!(
        status.opened_at,
        Some(surge::clock::rfc3339(clock.now_ms()))
    );
    sim.stop().await;
}

/// Nothing listens on port 1 of the loopback: every attempt fails to connect.
fn unreachable_gateway(settings: &mut Settings) {
    settings.gateway.url = "http://127.0.0.1:1".into();
    settings.gateway.retries_max = 0;
    settings.gateway.breaker_failures = 1;
}

async fn overview_gateway(app: &TestApp) -> Value {
    let response = app.get("/admin/overview", &app.operator()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let overview: Value = response.json().await.expect("json");
    overview["gateway"].clone()
}

#[tokio::test]
async fn the_overview_and_metrics_show_the_breaker() {
    let options = Options {
        manual_clock: true,
        tweak: unreachable_gateway,
        ..Options::default()
    };
    let app = spawn_app_with(Backend::Sqlite, options)
        .await
        .expect("sqlite app");
    let clock = app.clock.clone().expect("manual clock");
    let url = "http://127.0.0.1:1";
    let closed = json!({"url": url, "breaker": "closed", "failures": 0});
    assert_eq!(overview_gateway(&app).await, closed);
    let gauge = r#"surge_gateway_breaker_state{gateway="default"}"#;
    assert_eq!(sample(&scrape(&app).await, gauge), Some(0.0));

    let outcome = charge(&app.services.gateway, "k").await;
    assert_eq!(
        outcome,
        Err(GatewayError::Unavailable {
            retry_after_secs: 30,
            outcome_unknown: false
        })
    );
    let opened_at = surge::clock::rfc3339(clock.now_ms());
    let open = json!({"url": url, "breaker": "open", "failures": 1, "opened_at": opened_at});
    assert_eq!(overview_gateway(&app).await, open);
    let metrics = scrape(&app).await;
    assert_eq!(sample(&metrics, gauge), Some(2.0), "{metrics}");
    let unavailable =
        r#"surge_gateway_calls_total{gateway="default",operation="charge",outcome="unavailable"}"#;
    assert_eq!(sample(&metrics, unavailable), Some(1.0), "{metrics}");

    clock.advance_ms(30_000);
    assert_eq!(overview_gateway(&app).await["breaker"], "half_open");
    assert_eq!(sample(&scrape(&app).await, gauge), Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_sim_command_serves_until_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(["gateway-sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("surge gateway-sim starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            if let Some(base) = line.strip_prefix("surge gateway-sim listening on ") {
                return base.to_string();
            }
        }
        panic!("gateway-sim exited before listening");
    })
    .await
    .expect("it listens within 30 s");
    let settings = GatewaySettings {
        url: base,
        ..Settings::defaults().gateway
    };
    let gateway = Gateway::new(&settings, Arc::new(SystemClock)).expect("a client");
    charge(&gateway, "cli-1").await.expect("approved");
    let pid = child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s")
        .expect("reaped");
    assert_eq!(status.code(), Some(0));
}
