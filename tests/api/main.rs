//! Integration tests: real servers on port 0, against SQLite and PostgreSQL.

mod admin;
mod auth;
mod charge;
mod coupons;
mod crash;
mod crash_pay;
mod crash_promotions;
mod events;
mod gateway;
mod helpers;
mod live;
mod metrics;
mod openapi;
mod orders;
mod pay;
mod queue;
mod sagas;
mod security;
mod slow_bodies;
mod store;
mod supervision;
mod tickets;
mod time_sales;
mod wallets;
