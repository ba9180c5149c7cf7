//! The process's log: text or JSON lines on stdout, filtered by `log.level` (or `RUST_LOG`).
//!
//! A client's malformed HTTP (a bad version, conflicting lengths, more than 96 headers) is not
//! a server fault, but actix-http reports each one at ERROR ("stream error: request parse
//! error ..."), so any client could fill the error log. Those events are counted instead
//! ([`protocol_errors`], exported as `surge_http_protocol_errors_total`) and kept out of the
//! log unless `RUST_LOG` names `actix_http`.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogSettings;

/// Where actix-http's connection handling logs its protocol errors.
const DISPATCHER_TARGET: &str = "actix_http::h1::dispatcher";

static PROTOCOL_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Connections ended by a client's malformed HTTP since the process started.
pub fn protocol_errors() -> u64 {
    PROTOCOL_ERRORS.load(Ordering::Relaxed)
}

/// True for an event that reports a client's protocol error (see the module's doc).
fn is_protocol_error(meta: &Metadata<'_>) -> bool {
    meta.is_event() && *meta.level() == Level::ERROR && meta.target() == DISPATCHER_TARGET
}

/// Counts the protocol errors, whatever the log's filter.
struct CountProtocolErrors;

impl<S: Subscriber> Layer<S> for CountProtocolErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if is_protocol_error(event.metadata()) {
            PROTOCOL_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Installs the process's subscriber. Call once, from `main`.
pub fn init(settings: &LogSettings) {
    let from_env = EnvFilter::try_from_default_env().ok();
    // Only a RUST_LOG that names actix-http asks for its protocol errors; `RUST_LOG=info`
    // alone must not bring them back at ERROR.
    let explicit = std::env::var("RUST_LOG").is_ok_and(|rules| rules.contains("actix_http"));
    let filter = from_env.unwrap_or_else(|| {
        // ractor opens a span per actor for its whole life; at INFO that is memory held by
        // every activated entity, so its spans are only kept when asked for via RUST_LOG.
        EnvFilter::new(format!("{},ractor=warn", settings.level))
    });
    // Each filter says the most verbose level it can pass, so events no layer wants are
    // never even built (a filter without a hint would enable every trace! of every crate).
    let keep = filter_fn(move |meta| explicit || !is_protocol_error(meta))
        .with_max_level_hint(LevelFilter::TRACE);
    let count = filter_fn(is_protocol_error).with_max_level_hint(LevelFilter::ERROR);
    let output = match settings.format.as_str() {
        "json" => tracing_subscriber::fmt::layer().json().boxed(),
        _ => tracing_subscriber::fmt::layer().boxed(),
    };
    Registry::default()
        .with(CountProtocolErrors.with_filter(count))
        .with(output.with_filter(filter.and(keep)))
        .init();
}
