//! surge: one server for the moments when thousands of people want the same few things.
//!
//! Map of the system:
//! - `surge_domain` (crates/surge-domain): the pure entities (stock item, order, ...), their
//!   commands, events, rules and invariants, with no web, SQL or async runtime.
//! - [`actors`]: `EntityActor<E>`, the one generic actor that runs any entity (recover,
//!   decide, apply, persist, reply), and per kind its read rows, live topic and admin view.
//! - [`checkout`]: the coordinator of orders across entities: places them (reserving their
//!   units, the order born with the last reservation), compensates, gives units back; the
//!   checkout saga grows here.
//! - [`supervisors`]: `Region<E>`, one per kind (activation, passivation, restarts, admission),
//!   and the durable-deadline scheduler.
//! - [`persistence`]: the journal-and-snapshot `Store` (SQLite or PostgreSQL), the group-commit
//!   writer, the postcard codec and idempotency records.
//! - [`http`]: actix-web handlers; they only parse, authorise and send messages to regions or
//!   to [`checkout`].
//! - [`gateway`]: the payment gateway client (timeouts, retries, circuit breaker) and the
//!   simulator that `surge gateway-sim` serves.
//! - [`auth`]: users, Argon2id passwords, JWT access and rotating refresh tokens.
//! - [`live`]: per-topic latest-value channels from actors to WebSocket sessions.
//! - [`secrets`]: the signing secret and first admin password a fresh install generates.
//! - [`tickets`]: the signed ticket codes of confirmed event orders, which the door checks in.
//! - [`app`]: builds all of the above from [`config::Settings`] and runs it.
//! - [`error`]: the one table mapping error codes to HTTP statuses and problem+json.

pub mod actors;
pub mod app;
pub mod auth;
pub mod checkout;
pub mod clock;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod live;
pub mod logging;
pub mod persistence;
pub mod runtime;
pub mod secrets;
pub mod supervisors;
pub mod tickets;
pub use surge_domain::text;
