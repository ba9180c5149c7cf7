//! `GET /metrics`: the Prometheus text format.
//!
//! HTTP requests are counted and timed by [`record`], a middleware, labelled by route pattern
//! (`/api/v1/orders/{id}`, not the path, so ids cannot grow the label set without bound). The
//! journal, actor, live-update and payment gateway figures are read from the runtime when a
//! scrape asks for them, so they cost nothing between scrapes.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use prometheus::{
    Counter, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::State;
use crate::app::Services;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::client::GATEWAY_NAME;
use crate::gateway::Gateway;

/// Request latency buckets, in seconds: from a cached read to a request timeout.
const LATENCY_BUCKETS_SECS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label of requests that matched no route (404s of unknown paths).
const UNMATCHED_ROUTE: &str = "unmatched";

/// The HTTP figures, kept for the life of the server.
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "surge_http_requests_total",
                "HTTP requests answered, by method, route pattern and status",
            ),
            &["method", "route", "status"],
        )
        .expect("a valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "surge_http_request_duration_seconds",
                "Time from the request reaching its route to its response, by route pattern",
            )
            .buckets(LATENCY_BUCKETS_SECS.to_vec()),
            &["route"],
        )
        .expect("a valid metric definition");
        let registry = Registry::new();
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        HttpMetrics {
            registry,
            requests,
            latency,
        }
    }

    fn observe(&self, req: &HttpRequest, method: &str, status: &str, elapsed_secs: f64) {
        let pattern = req.match_pattern();
        let route = pattern.as_deref().unwrap_or(UNMATCHED_ROUTE);
        self.requests
            .with_label_values(&[method, route, status])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed_secs);
    }
}

/// The standard methods by name; any other token a client sends counts as `other`, so invented
/// methods cannot grow the label set.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::new()
    }
}

/// Counts and times every request that reaches the app.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let services = req.app_data::<web::Data<Services>>().cloned();
    // Taken before the call: inside it `head_as_get` routes a HEAD as GET.
    let method = method_label(req.method());
    let response = next.call(req).await?;
    if let Some(services) = services {
        services.metrics.observe(
            response.request(),
            method,
            response.status().as_str(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", summary = "Prometheus metrics",
    tag = "system", security((), ("bearer" = ["operator", "admin"])),
    description = "Prometheus text: requests by method, route pattern and status, request \
        durations, the journal's counters and times, actors by kind and status, WebSocket \
        sessions, the payment gateway's breaker and calls, and uptime. Also served at the root. \
        With `metrics.require_token` it asks for an operator token.",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "UNAUTHORIZED (only with `metrics.require_token`)"),
        (status = 403, description = "FORBIDDEN: not an operator (only with `metrics.require_token`)"),
    ))]
async fn metrics(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if state.rt.settings.metrics.require_token {
        Caller::extract(&req).await?.require_operator()?;
    }
    let mut families = state.metrics.registry.gather();
    families.extend(runtime_figures(&state).gather());
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut text)
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(text))
}

/// The runtime's own figures as they are now, in a registry of this scrape.
fn runtime_figures(state: &Services) -> Registry {
    let registry = Registry::new();
    let stats = &state.rt.journal.stats;
    let counters = [
        (
            "surge_journal_batches_total",
            "Group commits",
            &stats.batches,
        ),
        (
            "surge_journal_events_total",
            "Events committed",
            &stats.events,
        ),
        (
            "surge_journal_rows_total",
            "Rows committed (events and side rows)",
            &stats.rows,
        ),
        (
            "surge_journal_failures_total",
            "Group commits that failed",
            &stats.failures,
        ),
        (
            "surge_journal_syncs_total",
            "Pipelined fsyncs of the journal",
            &stats.syncs,
        ),
        (
            "surge_journal_indexed_rows_total",
            "Rows the deferred indexes took in",
            &stats.indexed_rows,
        ),
    ];
    let refused = (
        "surge_http_connections_refused_total",
        "Connections opened past server.connections_per_address_max for their address (their requests get 429 and the connection is closed)",
        state.connections.refused_total(),
    );
    for (name, help, value) in counters
        .map(|(n, h, v)| (n, h, v.load(Ordering::Relaxed)))
        .into_iter()
        .chain([refused])
    {
        let counter = IntCounter::new(name, help).expect("a valid metric definition");
        counter.inc_by(value);
        register(&registry, counter);
    }
    let protocol_errors = IntCounter::new(
        "surge_http_protocol_errors_total",
        "Connections ended by a client's malformed HTTP (counted here instead of logged)",
    )
    .expect("a valid metric definition");
    protocol_errors.inc_by(crate::logging::protocol_errors());
    register(&registry, protocol_errors);
    let seconds_totals = [
        (
            "surge_journal_commit_seconds_total",
            "Time spent in group commits",
            &stats.commit_micros_total,
        ),
        (
            "surge_journal_sync_seconds_total",
            "Time spent in pipelined fsyncs",
            &stats.sync_micros_total,
        ),
    ];
    for (name, help, micros) in seconds_totals {
        let counter = Counter::new(name, help).expect("a valid metric definition");
        counter.inc_by(micros.load(Ordering::Relaxed) as f64 / 1e6);
        register(&registry, counter);
    }
    let seconds_max = [
        (
            "surge_journal_commit_seconds_max",
            "Slowest group commit since start-up",
            &stats.commit_micros_max,
        ),
        (
            "surge_journal_sync_seconds_max",
            "Slowest pipelined fsync since start-up",
            &stats.sync_micros_max,
        ),
    ];
    for (name, help, micros) in seconds_max {
        let gauge = Gauge::new(name, help).expect("a valid metric definition");
        gauge.set(micros.load(Ordering::Relaxed) as f64 / 1e6);
        register(&registry, gauge);
    }
    let actors = IntGaugeVec::new(
        Opts::new(
            "surge_actors",
            "Activated entities by kind and status (running: an actor; parked: state in memory, actor stopped; failed: past its restart budget)",
        ),
        &["kind", "status"],
    )
    .expect("a valid metric definition");
    for counts in state.region_counts() {
        for (status, n) in [
            ("running", counts.running),
            ("parked", counts.parked),
            ("failed", counts.failed),
        ] {
            actors
                .with_label_values(&[counts.kind, status])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    register(&registry, actors);
    let gauges = [
        (
            "surge_ws_sessions",
            "Open WebSocket sessions",
            state.rt.live.sessions_open(),
        ),
        (
            "surge_ws_topics",
            "Topics watched by at least one session",
            state.rt.live.topics_watched(),
        ),
        (
            "surge_http_connections_open",
            "Open HTTP connections",
            state.connections.open_total(),
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = IntGauge::new(name, help).expect("a valid metric definition");
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        register(&registry, gauge);
    }
    gateway_figures(&state.gateway, &registry);
    let uptime = Gauge::new("surge_uptime_seconds", "Time since the server started")
        .expect("a valid metric definition");
    uptime.set((state.rt.now_ms() - state.started_at_ms) as f64 / 1e3);
    register(&registry, uptime);
    registry
}

/// The payment gateway client: its breaker's state and its calls by outcome.
fn gateway_figures(gateway: &Gateway, registry: &Registry) {
    let label = [GATEWAY_NAME];
    let state = IntGaugeVec::new(
        Opts::new(
            "surge_gateway_breaker_state",
            "The payment gateway's circuit breaker: 0 closed, 1 half-open, 2 open",
        ),
        &["gateway"],
    )
    .expect("a valid metric definition");
    state
        .with_label_values(&label)
        .set(gateway.status().breaker.gauge());
    register(registry, state);
    let calls = IntCounterVec::new(
        Opts::new(
            "surge_gateway_calls_total",
            "Payment gateway calls by operation and outcome (ok, declined, rejected, unavailable: retries ran out, breaker_open: refused without a request)",
        ),
        &["gateway", "operation", "outcome"],
    )
    .expect("a valid metric definition");
    for (operation, outcome, n) in gateway.stats().calls() {
        calls
            .with_label_values(&[GATEWAY_NAME, operation, outcome])
            .inc_by(n);
    }
    register(registry, calls);
    let retries = IntCounterVec::new(
        Opts::new(
            "surge_gateway_retries_total",
            "Payment gateway attempts made again after a timeout, connection error, 5xx or 429",
        ),
        &["gateway"],
    )
    .expect("a valid metric definition");
    retries
        .with_label_values(&label)
        .inc_by(gateway.stats().retries());
    register(registry, retries);
}

fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, collector: C) {
    registry
        .register(Box::new(collector))
        .expect("each figure is registered once per scrape");
}
