//! Crash tests of the checkout saga (issue 19): twenty payments in flight, the real binary
//! killed with SIGKILL while the gateway simulator sleeps on their charges, then started again
//! on the same data and the same simulator. Every saga must end, and everything must add up:
//! each order `CONFIRMED` or `PAYMENT_FAILED`, points, coupons and units taken exactly for the
//! confirmed ones, and at the gateway one standing charge per confirmed order, none for a
//! failed one. Then the same with a gateway that cannot be reached when the server comes back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::{Clock, SystemClock};

use crate::crash::{kill_9, Node, Server};
use crate::crash_promotions::post;
use crate::gateway::Sim;
use crate::helpers::{eventually_within, Backend};
use crate::metrics::sample;
use crate::on_both_stores;
use crate::pay::ten_percent_off;

const ORDERS: usize = 20;
const CUSTOMERS: usize = 10;
/// Points each customer earns before paying.
const EARNED: i64 = 1_000;
const SKU: &str = "PAYDAY";
/// How long the simulator sleeps before it answers (after the charge has taken effect).
const GATEWAY_LATENCY_MS: u64 = 1_500;

/// One order and what it is paid with.
struct Payment {
    user: String,
    units: i64,
    order_id: String,
    coupon_id: Option<String>,
    points: i64,
    declined: bool,
}

impl Payment {
    fn body(&self) -> Value {
        let card = if self.declined {
            "tok_decline"
        } else {
            "tok_visa"
        };
        let mut body = json!({"card_token": card});
        if self.points > 0 {
            body["points"] = json!(self.points);
        }
        if let Some(coupon) = &self.coupon_id {
            body["coupon_id"] = json!(coupon);
        }
        body
    }
}

/// Order `i`'s customer, units and terms: card only; points and card; coupon, points and card;
/// and declined cards, the first two of them with a coupon and points to give back.
fn terms(i: usize) -> (String, i64, bool, i64, bool) {
    let user = format!("payer-{}", i % CUSTOMERS);
    let units = 1 + i64::try_from(i % 3).expect("small");
    let (coupon, points, declined) = match i % 5 {
        1 => (false, 50, false),
        2 => (true, 30, false),
        4 if i < CUSTOMERS => (true, 20, true),
        4 => (false, 40, true),
        _ => (false, 0, false),
    };
    (user, units, coupon, points, declined)
}

/// Places the orders, issuing each coupon one needs from one of two policies (one coupon per
/// customer per policy), after every customer has earned [`EARNED`] points.
async fn place_orders(node: &Node, server: &Server) -> Vec<Payment> {
    let op = node.token("op", Role::Operator);
    node.create_stock(server, SKU, 1_000).await;
    for c in 0..CUSTOMERS {
        let path = format!("/wallets/payer-{c}/earn");
        post(node, server, &path, &op, json!({"amount": EARNED})).await;
    }
    let now = SystemClock.now_ms();
    let mut policies = Vec::new();
    for _ in 0..2 {
        let policy = post(node, server, "/coupon-policies", &op, ten_percent_off(now)).await;
        policies.push(policy["id"].as_str().expect("id").to_string());
    }
    let mut payments = Vec::new();
    for i in 0..ORDERS {
        let (user, units, coupon, points, declined) = terms(i);
        let token = node.token(&user, Role::Customer);
        let body = json!({"items": [{"sku": SKU, "quantity": units}]});
        let order = post(node, server, "/orders", &token, body).await;
        let coupon_id = match coupon {
            true => {
                let path = format!("/coupon-policies/{}/issue", policies[i / CUSTOMERS]);
                let coupon = post(node, server, &path, &token, json!({})).await;
                Some(coupon["id"].as_str().expect("id").to_string())
            }
            false => None,
        };
        payments.push(Payment {
            user,
            units,
            order_id: order["id"].as_str().expect("id").to_string(),
            coupon_id,
            points,
            declined,
        });
    }
    payments
}

/// Places the orders on a server started on `node`, starts paying all of them at once, and
/// kills the server with SIGKILL while half the charges sleep in the gateway and the other
/// sagas are still before (or just sending) theirs.
async fn kill_mid_payment(node: &Node, sim: &Sim) -> Vec<Payment> {
    let server = node.start().await;
    let payments = place_orders(node, &server).await;
    sim.set_mode(json!({"mode": "up", "latency_ms": GATEWAY_LATENCY_MS}))
        .await;
    let started = join_all(payments.iter().map(|p| {
        let server = &server;
        async move {
            let token = node.token(&p.user, Role::Customer);
            let path = format!("/orders/{}/pay?wait_secs=0", p.order_id);
            node.call(server, Method::POST, &path, &token, Some(p.body()))
                .await
        }
    }))
    .await;
    for response in started {
        assert_eq!(
            response.expect("pay answered").status(),
            StatusCode::ACCEPTED
        );
    }
    let half = u64::try_from(ORDERS / 2).expect("small");
    eventually_within(
        "half the charges reach the gateway",
        Duration::from_secs(10),
        || async { sim.calls().await >= half },
    )
    .await;
    kill_9(server).await;
    payments
}

/// Waits until no order is `PAYING` any more, nor still `RESERVED` (a saga that had not begun
/// when the process died), and returns them all.
async fn ended_orders(node: &Node, server: &Server, payments: &[Payment]) -> Vec<Value> {
    // Bounded for a loaded machine; resumed sagas wait for the gateway's latency once more.
    eventually_within("every payment ends", Duration::from_secs(30), || async {
        let orders = orders_now(node, server, payments).await;
        orders
            .iter()
            .all(|o| o["status"] != "PAYING" && o["status"] != "RESERVED")
    })
    .await;
    orders_now(node, server, payments).await
}

async fn payments_in_flight_survive_kill_9(backend: Backend) {
    let sim = Sim::start();
    let Some(node) = Node::new(backend, &[("SURGE_GATEWAY__URL", &sim.base)]) else {
        sim.stop().await;
        return;
    };
    let payments = kill_mid_payment(&node, &sim).await;
    let server = node.start().await;
    let orders = ended_orders(&node, &server, &payments).await;
    check_gateway(&orders, &sim.records().await);
    check_orders(&payments, &orders, |p| !p.declined);
    check_points_coupons_and_units(&node, &server, &payments, &orders).await;
    kill_9(server).await;
    node.clean_up().await;
    sim.stop().await;
}
on_both_stores!(payments_in_flight_survive_kill_9);

/// Where nothing listens: connections are refused, so a charge surely is not sent.
const UNREACHABLE: &str = "http://127.0.0.1:1";

/// A saga resumed in its charge does not know whether the killed process's charge went
/// through: a gateway it cannot even reach after the restart (connection refused, then the
/// breaker open: "nothing sent") must not fail it, which would leave that charge standing for
/// a failed order. It waits, and confirms once the gateway is back.
async fn a_charge_in_flight_is_not_given_up_while_the_gateway_is_unreachable(backend: Backend) {
    let sim = Sim::start();
    let Some(mut node) = Node::new(backend, &[("SURGE_GATEWAY__URL", &sim.base)]) else {
        sim.stop().await;
        return;
    };
    let payments = kill_mid_payment(&node, &sim).await;
    let charged: HashSet<String> = sim
        .records()
        .await
        .iter()
        .filter(|r| r["status"] == "APPROVED")
        .map(|r| order_of_key(r).to_string())
        .collect();
    assert!(
        !charged.is_empty(),
        "some charges went through before the kill"
    );

    node.set_env("SURGE_GATEWAY__URL", UNREACHABLE);
    let server = node.start().await;
    // Every resumed charge meets the refusal (or the breaker it opens) at least once.
    let refused = u64::try_from(charged.len()).expect("small");
    eventually_within(
        "the resumed charges are refused",
        Duration::from_secs(10),
        || async { failed_charges(&node, &server).await >= refused },
    )
    .await;
    kill_9(server).await;

    node.set_env("SURGE_GATEWAY__URL", &sim.base);
    let server = node.start().await;
    let orders = ended_orders(&node, &server, &payments).await;
    check_gateway(&orders, &sim.records().await);
    check_orders(&payments, &orders, |p| charged.contains(&p.order_id));
    check_points_coupons_and_units(&node, &server, &payments, &orders).await;
    kill_9(server).await;
    node.clean_up().await;
    sim.stop().await;
}
on_both_stores!(a_charge_in_flight_is_not_given_up_while_the_gateway_is_unreachable);

/// The order a saga step's idempotency key (`{order}:{attempt}:{step}`) belongs to.
fn order_of_key(record: &Value) -> &str {
    let key = record["idempotency_key"].as_str().expect("a key");
    key.split(':').next().expect("an order id")
}

/// Charge calls that failed without an answer: the gateway unreachable or the breaker open.
async fn failed_charges(node: &Node, server: &Server) -> u64 {
    let response = node
        .client()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("request");
    let text = response.text().await.expect("text");
    ["unavailable", "breaker_open"]
        .iter()
        .map(|outcome| {
            let series = format!(
                "surge_gateway_calls_total{{gateway=\"default\",operation=\"charge\",outcome=\"{outcome}\"}}"
            );
            sample(&text, &series).unwrap_or(0.0) as u64
        })
        .sum()
}

async fn orders_now(node: &Node, server: &Server, payments: &[Payment]) -> Vec<Value> {
    join_all(
        payments
            .iter()
            .map(|p| async move { node.json(server, &format!("/orders/{}", p.order_id)).await }),
    )
    .await
}

/// Declined cards failed, the payments `must_confirm` confirmed, and every other one either;
/// each confirmed one with what it asked for.
fn check_orders(payments: &[Payment], orders: &[Value], must_confirm: impl Fn(&Payment) -> bool) {
    for (payment, order) in payments.iter().zip(orders) {
        let status = order["status"].as_str().expect("status");
        match (payment.declined, must_confirm(payment)) {
            (true, _) => assert_eq!(status, "PAYMENT_FAILED", "{order}"),
            (false, true) => assert_eq!(status, "CONFIRMED", "{order}"),
            (false, false) => assert!(["CONFIRMED", "PAYMENT_FAILED"].contains(&status), "{order}"),
        }
        if status == "CONFIRMED" {
            assert_eq!(order["points_used"], payment.points, "{order}");
            assert_eq!(order["coupon_id"], json!(payment.coupon_id), "{order}");
        }
    }
}

/// Each confirmed order's payment is an approved charge of its card amount, never refunded;
/// every other approved charge is refunded in full.
fn check_gateway(orders: &[Value], records: &[Value]) {
    let approved: HashMap<&str, i64> = records
        .iter()
        .filter(|r| r["kind"] == "payment" && r["status"] == "APPROVED")
        .map(|r| (r["id"].as_str().expect("id"), amount(r)))
        .collect();
    let mut refunded: HashMap<&str, i64> = HashMap::new();
    for refund in records.iter().filter(|r| r["kind"] == "refund") {
        assert_eq!(refund["status"], "REFUNDED", "{refund}");
        let payment = refund["payment_id"].as_str().expect("payment_id");
        *refunded.entry(payment).or_default() += amount(refund);
    }
    let mut standing = HashSet::new();
    for order in orders.iter().filter(|o| o["status"] == "CONFIRMED") {
        let payment = order["payment_id"]
            .as_str()
            .expect("a confirmed order's payment");
        assert_eq!(
            approved.get(payment),
            order["card_amount"].as_i64().as_ref(),
            "the approved charge of {order}"
        );
        assert_eq!(refunded.get(payment), None, "{order}'s charge was refunded");
        assert!(
            standing.insert(payment),
            "two orders name payment {payment}"
        );
    }
    for (payment, charged) in &approved {
        if !standing.contains(payment) {
            assert_eq!(
                refunded.get(payment),
                Some(charged),
                "charge {payment} stands for no confirmed order: {records:?}"
            );
        }
    }
}

fn amount(record: &Value) -> i64 {
    record["amount"].as_i64().expect("an amount")
}

/// Wallets, coupons and the stock item agree with the confirmed orders.
async fn check_points_coupons_and_units(
    node: &Node,
    server: &Server,
    payments: &[Payment],
    orders: &[Value],
) {
    let confirmed: Vec<(&Payment, &Value)> = payments
        .iter()
        .zip(orders)
        .filter(|(_, o)| o["status"] == "CONFIRMED")
        .collect();
    for c in 0..CUSTOMERS {
        let user = format!("payer-{c}");
        let used: i64 = confirmed
            .iter()
            .filter(|(p, _)| p.user == user)
            .map(|(_, o)| o["points_used"].as_i64().expect("points_used"))
            .sum();
        let wallet = node.json(server, &format!("/wallets/{user}")).await;
        assert_eq!(wallet["balance"], EARNED - used, "{user}'s wallet");
    }
    for coupon in payments.iter().filter_map(|p| p.coupon_id.as_deref()) {
        let uses = confirmed
            .iter()
            .filter(|(_, o)| o["coupon_id"] == coupon)
            .count();
        let status = node.json(server, &format!("/coupons/{coupon}")).await["status"].clone();
        let expected = if uses == 1 { "USED" } else { "ISSUED" };
        assert!(uses <= 1, "coupon {coupon} paid for {uses} orders");
        assert_eq!(status, expected, "coupon {coupon}");
    }
    let units = |confirmed_ones: bool| -> i64 {
        payments
            .iter()
            .zip(orders)
            .filter(|(_, o)| (o["status"] == "CONFIRMED") == confirmed_ones)
            .map(|(p, _)| p.units)
            .sum()
    };
    let stock = node.json(server, &format!("/stock-items/{SKU}")).await;
    assert_eq!(stock["sold"], units(true), "{stock}");
    assert_eq!(stock["reserved"], units(false), "{stock}");
}
