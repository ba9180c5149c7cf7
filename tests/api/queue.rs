//! The waiting room in front of a time sale, over HTTP, on both stores: FIFO tickets, admission
//! at the rate (manual clock), the pre-open shuffle, and passes bound to user and sale.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use surge::auth::Role;
use surge::clock::{rfc3339, Clock, SystemClock};

use crate::crash::{kill_9, Node};
use crate::helpers::{assert_problem, spawn_app_with, Backend, Options, TestApp};
use crate::on_both_stores;
use crate::time_sales::create_sale;

const HOUR_MS: i64 = 3_600_000;

async fn sale_id(app: &TestApp, extra: Value, from_ms: i64) -> String {
    let sale = create_sale(app, 1_000, extra, from_ms, 2 * HOUR_MS).await;
    sale["id"].as_str().expect("id").to_string()
}

async fn join(app: &TestApp, user: &str, sale: &str) -> Response {
    let token = app.token(user, Role::Customer);
    let path = format!("/time-sales/{sale}/queue/join");
    app.client
        .post(app.url(&path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request is sent")
}

async fn me(app: &TestApp, user: &str, sale: &str) -> Value {
    let token = app.token(user, Role::Customer);
    let response = app
        .get(&format!("/time-sales/{sale}/queue/me"), &token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn patch(app: &TestApp, token: &str, sale: &str, body: Value) -> Response {
    app.client
        .patch(app.url(&format!("/time-sales/{sale}/queue")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request is sent")
}

async fn buy(app: &TestApp, user: &str, sale: &str, pass: Option<&str>) -> Response {
    let token = app.token(user, Role::Customer);
    let mut request = app
        .client
        .post(app.url(&format!("/time-sales/{sale}/purchase")))
        .bearer_auth(token)
        .json(&json!({"quantity": 1}));
    if let Some(pass) = pass {
        request = request.header("X-Queue-Pass", pass);
    }
    request.send().await.expect("request is sent")
}

async fn queue_positions_are_fifo_and_admission_follows_the_rate(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let sale = sale_id(&app, json!({}), -1_000).await;
    let set = patch(&app, &app.operator(), &sale, json!({"admit_per_sec": 2})).await;
    assert_eq!(set.status(), StatusCode::OK);
    for i in 1..=5 {
        let response = join(&app, &format!("q{i}"), &sale).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let ticket: Value = response.json().await.expect("json");
        assert_eq!(ticket["ticket"], i, "tickets in arrival order");
        assert_eq!(ticket["status"], "WAITING");
    }
    let again = join(&app, "q1", &sale).await;
    assert_eq!(again.status(), StatusCode::OK, "a re-join creates nothing");
    assert_eq!(again.json::<Value>().await.expect("json")["ticket"], 1);
    let last = me(&app, "q5", &sale).await;
    assert_eq!(
        (last["position"].clone(), last["eta_secs"].clone()),
        (json!(5), json!(3))
    );
    assert!(last.get("pass").is_none(), "no pass while waiting");

    clock.advance_ms(1_000);
    for user in ["q1", "q2"] {
        let admitted = me(&app, user, &sale).await;
        assert_eq!(admitted["status"], "ADMITTED");
        assert_eq!(admitted["position"], 0);
        assert!(admitted["pass"].is_string(), "{admitted}");
        assert!(admitted["pass_expires_at"].is_string());
    }
    let third = me(&app, "q3", &sale).await;
    assert_eq!(
        (third["status"].clone(), third["position"].clone()),
        (json!("WAITING"), json!(1))
    );
    let stats: Value = app
        .get(&format!("/time-sales/{sale}/queue"), &app.operator())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        stats,
        json!({"waiting": 3, "admitted": 2, "admit_per_sec": 2, "paused": false})
    );
    // Paused, nobody more is admitted however long it stays paused.
    let paused = patch(&app, &app.operator(), &sale, json!({"paused": true})).await;
    assert_eq!(paused.status(), StatusCode::OK);
    clock.advance_ms(60_000);
    assert_eq!(me(&app, "q3", &sale).await["status"], "WAITING");
    app.stop().await;
}
on_both_stores!(queue_positions_are_fifo_and_admission_follows_the_rate);

async fn passes_are_bound_to_their_user_and_sale_and_expire(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let queued = sale_id(&app, json!({"queue_required": true}), -1_000).await;
    let other = sale_id(&app, json!({"queue_required": true}), -1_000).await;
    let fast = json!({"admit_per_sec": 1000});
    for sale in [&queued, &other] {
        assert_eq!(
            patch(&app, &app.operator(), sale, fast.clone())
                .await
                .status(),
            StatusCode::OK
        );
    }
    for user in ["pia", "max"] {
        assert_eq!(
            join(&app, user, &queued).await.status(),
            StatusCode::CREATED
        );
    }
    clock.advance_ms(1_000);
    let pass = me(&app, "pia", &queued).await["pass"]
        .as_str()
        .expect("admitted with a pass")
        .to_string();

    let none = buy(&app, "pia", &queued, None).await;
    assert_problem(none, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    let forged = buy(&app, "pia", &queued, Some("not.a.pass")).await;
    assert_problem(forged, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    let borrowed = buy(&app, "max", &queued, Some(&pass)).await;
    assert_problem(borrowed, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    let elsewhere = buy(&app, "pia", &other, Some(&pass)).await;
    assert_problem(elsewhere, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    let access_token = app.token("pia", Role::Customer);
    let token_as_pass = buy(&app, "pia", &queued, Some(&access_token)).await;
    assert_problem(token_as_pass, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    assert_eq!(
        buy(&app, "pia", &queued, Some(&pass)).await.status(),
        StatusCode::CREATED
    );

    let max_pass = me(&app, "max", &queued).await["pass"]
        .as_str()
        .expect("max admitted")
        .to_string();
    let ttl_ms = i64::try_from(app.settings.queue.pass_ttl_secs * 1000).expect("fits");
    clock.advance_ms(ttl_ms + 1_000);
    let expired = buy(&app, "max", &queued, Some(&max_pass)).await;
    assert_problem(expired, StatusCode::FORBIDDEN, "QUEUE_PASS_REQUIRED").await;
    app.stop().await;
}
on_both_stores!(passes_are_bound_to_their_user_and_sale_and_expire);

async fn joins_before_opening_are_shuffled_into_a_permutation(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::manual_clock()).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let sale = sale_id(&app, json!({}), 60_000).await;
    let users: Vec<String> = (1..=20).map(|i| format!("early-{i}")).collect();
    for (i, user) in users.iter().enumerate() {
        let ticket: Value = join(&app, user, &sale).await.json().await.expect("json");
        assert_eq!(ticket["ticket"], i + 1);
        assert!(
            ticket["eta_secs"].as_u64().expect("eta") >= 60,
            "counts the wait for opening"
        );
    }
    clock.advance_ms(60_000);
    // The first request after opening (or the opening deadline) shuffles; tickets then stay.
    let mut tickets = Vec::new();
    for user in &users {
        let ticket = me(&app, user, &sale).await["ticket"]
            .as_u64()
            .expect("ticket");
        assert_eq!(
            me(&app, user, &sale).await["ticket"],
            ticket,
            "stable once open"
        );
        tickets.push(ticket);
    }
    let set: BTreeSet<u64> = tickets.iter().copied().collect();
    assert_eq!(
        set,
        (1..=20).collect::<BTreeSet<u64>>(),
        "a permutation of 1..=20"
    );
    // Join order survives a real shuffle with probability 1/20!: this fails only if none ran.
    assert_ne!(
        tickets,
        (1..=20).collect::<Vec<u64>>(),
        "the early joins were shuffled"
    );
    let late: Value = join(&app, "late", &sale).await.json().await.expect("json");
    assert_eq!(
        late["ticket"], 21,
        "later joins are FIFO after the shuffled ones"
    );
    app.stop().await;
}
on_both_stores!(joins_before_opening_are_shuffled_into_a_permutation);

async fn concurrent_joins_get_distinct_tickets_and_one_each(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    let sale = sale_id(&app, json!({}), -1_000).await;
    let joins = (0..200).map(|i| {
        let (app, sale) = (&app, &sale);
        async move {
            join(app, &format!("c{i}"), sale)
                .await
                .json::<Value>()
                .await
        }
    });
    let tickets: BTreeSet<u64> = join_all(joins)
        .await
        .into_iter()
        .map(|t| t.expect("json")["ticket"].as_u64().expect("ticket"))
        .collect();
    assert_eq!(tickets, (1..=200).collect::<BTreeSet<u64>>());
    let same = (0..20).map(|_| join(&app, "twin", &sale));
    let codes: Vec<StatusCode> = join_all(same).await.iter().map(|r| r.status()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::CREATED).count(),
        1
    );
    assert_eq!(codes.iter().filter(|c| **c == StatusCode::OK).count(), 19);
    app.stop().await;
}
on_both_stores!(concurrent_joins_get_distinct_tickets_and_one_each);

async fn the_queue_checks_roles_and_input(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::default()).await else {
        return;
    };
    let sale = sale_id(&app, json!({}), -1_000).await;
    let customer = app.token("cus", Role::Customer);
    let stats = app
        .get(&format!("/time-sales/{sale}/queue"), &customer)
        .await;
    assert_problem(stats, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let set = patch(&app, &customer, &sale, json!({"paused": true})).await;
    assert_problem(set, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let nonsense = patch(&app, &customer, &sale, json!({"speed": 3})).await;
    assert_problem(nonsense, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let op = app.operator();
    for bad in [
        json!({}),
        json!({"admit_per_sec": 0}),
        json!({"admit_per_sec": -1}),
        json!({"speed": 3}),
    ] {
        let response = patch(&app, &op, &sale, bad).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let fresh: Value = app
        .get(&format!("/time-sales/{sale}/queue"), &op)
        .await
        .json()
        .await
        .expect("json");
    let default_rate = app.settings.queue.admit_per_sec_default;
    assert_eq!(
        fresh,
        json!({"waiting": 0, "admitted": 0, "admit_per_sec": default_rate, "paused": false}),
        "refused settings changed nothing"
    );
    let nobody = app
        .get(&format!("/time-sales/{sale}/queue/me"), &customer)
        .await;
    assert_problem(nobody, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let unknown = join(&app, "cus", "01a20000-0000-7000-8000-000000000000").await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    app.stop().await;
}
on_both_stores!(the_queue_checks_roles_and_input);

/// Joins acknowledged before a kill -9 keep their tickets after the restart, through a
/// snapshot (more than a thousand events) and its journal tail.
async fn acknowledged_joins_keep_their_tickets_after_kill_9(backend: Backend) {
    let Some(node) = Node::new(backend, &[]) else {
        return;
    };
    let server = node.start().await;
    let op = node.token("op", Role::Operator);
    let product = node
        .call(
            &server,
            Method::POST,
            "/products",
            &op,
            Some(json!({"name": "p", "price": 1})),
        )
        .await
        .expect("sent");
    let product = product.json::<Value>().await.expect("json")["id"].clone();
    let now = SystemClock.now_ms();
    let body = json!({"product_id": product, "quantity": 10, "sale_price": 1,
        "starts_at": rfc3339(now - 60_000), "ends_at": rfc3339(now + 3_600_000)});
    let sale = node
        .call(&server, Method::POST, "/time-sales", &op, Some(body))
        .await
        .expect("sent");
    let sale = sale.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("/time-sales/{sale}/queue/join");
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut wave = 0;
    // Waves of 50 concurrent joins until 1,300 are acknowledged (a snapshot is taken at 1,000).
    while acked.len() < 1_300 {
        let (node, server, path, this_wave) = (&node, &server, &path, wave);
        let joins = (0..50).map(move |i| {
            let user = format!("w{this_wave}-{i}");
            async move {
                let token = node.token(&user, Role::Customer);
                let response = node.call(server, Method::POST, path, &token, None).await;
                (user, response)
            }
        });
        wave += 1;
        for (user, response) in join_all(joins).await {
            let response = response.expect("sent");
            assert_eq!(response.status(), StatusCode::CREATED);
            let ticket = response.json::<Value>().await.expect("json")["ticket"]
                .as_u64()
                .expect("ticket");
            acked.push((user, ticket));
        }
    }
    // One more wave is on its way when the kill lands: it may or may not have been committed.
    let url = format!("{}/api/v1{path}", server.base);
    let racing: Vec<_> = (0..50)
        .map(|i| {
            let (url, token) = (
                url.clone(),
                node.token(&format!("late-{i}"), Role::Customer),
            );
            tokio::spawn(async move {
                let _ = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .send()
                    .await;
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    kill_9(server).await;
    for task in racing {
        task.await.expect("joined");
    }
    let server = node.start().await;
    let mut seen = BTreeSet::new();
    for (user, ticket) in &acked {
        let token = node.token(user, Role::Customer);
        let response = node
            .call(
                &server,
                Method::GET,
                &format!("/time-sales/{sale}/queue/me"),
                &token,
                None,
            )
            .await
            .expect("sent");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{user} lost their ticket"
        );
        let now_ticket = response.json::<Value>().await.expect("json")["ticket"].clone();
        assert_eq!(now_ticket, json!(ticket), "{user} kept ticket {ticket}");
        assert!(seen.insert(*ticket), "ticket {ticket} given twice");
    }
    let stats = node
        .json(&server, &format!("/time-sales/{sale}/queue"))
        .await;
    let total = stats["waiting"].as_u64().expect("n") + stats["admitted"].as_u64().expect("n");
    let acked_count = acked.len() as u64;
    assert!(
        (acked_count..=acked_count + 50).contains(&total),
        "{total} tickets for {acked_count} acknowledged joins and 50 in flight"
    );
    let late = node.token("after-restart", Role::Customer);
    let again = node
        .call(&server, Method::POST, &path, &late, None)
        .await
        .expect("sent");
    assert_eq!(
        again.json::<Value>().await.expect("json")["ticket"],
        json!(total + 1)
    );
    kill_9(server).await;
    node.clean_up().await;
}
on_both_stores!(acknowledged_joins_keep_their_tickets_after_kill_9);
