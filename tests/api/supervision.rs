//! Supervision: a panicking entity restarts from durable state and nobody else notices; one
//! that keeps failing is marked failed (503); passivation frees the actor and keeps the state.

use futures::future::join_all;
use reqwest::StatusCode;
use surge::auth::Role;

use crate::helpers::{
    assert_problem, eventually_that, spawn_app, spawn_app_with, Backend, Options,
};
use crate::on_both_stores;

async fn wait_until_running(app: &crate::helpers::TestApp, sku: &str) {
    wait_for(|| app.services.stock.is_running(sku), "the restart").await;
}

/// Waits for an actor's asynchronous work (a restart, a stop), polling `check`.
async fn wait_for(check: impl Fn() -> bool, what: &str) {
    eventually_that(what, || std::future::ready(check())).await;
}

async fn a_panic_in_one_entity_is_survived(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("VICTIM", 50).await;
    app.create_stock("BYSTANDER", 50).await;
    let orders = (0..10).map(|i| {
        let app = &app;
        async move {
            let sku = if i % 2 == 0 { "VICTIM" } else { "BYSTANDER" };
            app.order(&format!("u{i}"), sku, 1, None).await.status()
        }
    });
    assert!(join_all(orders)
        .await
        .iter()
        .all(|s| *s == StatusCode::CREATED));
    let bystander_before = app
        .services
        .stock
        .inspect("BYSTANDER")
        .await
        .expect("inspect");

    assert!(app.services.stock.inject_panic("VICTIM"));
    wait_until_running(&app, "VICTIM").await;

    let victim = app.stock("VICTIM").await;
    assert_eq!(victim["reserved"], 5, "recovered from the journal");
    assert_eq!(victim["version"], 6);
    let again = app.order("late", "VICTIM", 1, None).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let bystander_after = app
        .services
        .stock
        .inspect("BYSTANDER")
        .await
        .expect("inspect");
    assert_eq!(bystander_after.last_seq, bystander_before.last_seq);
    assert_eq!(app.stock("BYSTANDER").await["reserved"], 5);
    app.stop().await;
}
on_both_stores!(a_panic_in_one_entity_is_survived);

async fn an_entity_that_keeps_failing_is_marked_failed(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::tweaked(|s| s.actors.restart_max = 2)).await
    else {
        return;
    };
    app.create_stock("FLAKY", 5).await;
    app.create_stock("FINE", 5).await;
    // restart_max = 2: the third failure within the window marks it failed.
    for round in 0..3 {
        wait_until_running(&app, "FLAKY").await;
        let before = app.services.stock.actor_id("FLAKY");
        assert!(app.services.stock.inject_panic("FLAKY"));
        let replaced = || {
            let now = app.services.stock.actor_id("FLAKY");
            app.services.stock.is_failed("FLAKY") || (now.is_some() && now != before)
        };
        wait_for(
            replaced,
            &format!("round {round}: a restart or the failed mark"),
        )
        .await;
    }
    assert!(app.services.stock.is_failed("FLAKY"));
    let response = app.order("x", "FLAKY", 1, None).await;
    assert!(response.headers().contains_key("Retry-After"));
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let fine = app.order("x", "FINE", 1, None).await;
    assert_eq!(fine.status(), StatusCode::CREATED);
    app.services.stock.reset("FLAKY");
    wait_for(|| !app.services.stock.is_failed("FLAKY"), "the reset").await;
    assert_eq!(
        app.stock("FLAKY").await["on_hand"],
        5,
        "back after an operator reset"
    );
    app.stop().await;
}
on_both_stores!(an_entity_that_keeps_failing_is_marked_failed);

async fn passivation_stops_the_actor_and_keeps_the_state(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("IDLE", 9).await;
    let ok = app.order("y", "IDLE", 4, None).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert!(app.services.stock.passivate("IDLE"));
    wait_for(|| !app.services.stock.is_running("IDLE"), "passivation").await;
    let inspected = app
        .services
        .stock
        .inspect("IDLE")
        .await
        .expect("reactivates");
    assert_eq!(inspected.snapshot_seq, 2, "passivation wrote a snapshot");
    assert_eq!(inspected.state["reserved"], 4);
    assert_eq!(app.stock("IDLE").await["available"], 5);
    app.stop().await;
}
on_both_stores!(passivation_stops_the_actor_and_keeps_the_state);

async fn a_miss_does_not_keep_an_actor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let token = app.token("z", Role::Customer);
    let response = app.get("/stock-items/NOTHING", &token).await;
    assert_problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    wait_for(
        || !app.services.stock.is_running("NOTHING"),
        "the miss's stop",
    )
    .await;
    app.stop().await;
}
on_both_stores!(a_miss_does_not_keep_an_actor);

async fn a_second_writer_of_an_entity_is_fenced(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_stock("FENCED", 10).await;
    // Another writer appends seq 2 behind the running actor's back.
    app.append_foreign_adjustment("FENCED", 2, 5).await;
    let before = app.services.stock.actor_id("FENCED");
    // The actor's own seq 2 clashes: the caller gets 503 and the actor stops.
    let clashed = app.order("w", "FENCED", 1, None).await;
    assert_problem(clashed, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let restarted = || {
        let now = app.services.stock.actor_id("FENCED");
        now.is_some() && now != before
    };
    wait_for(restarted, "the fenced actor's restart").await;
    // Restarted from the journal, it sees the other writer's event and nothing of its own.
    let stock = app.stock("FENCED").await;
    assert_eq!(stock["on_hand"], 15);
    assert_eq!(stock["reserved"], 0);
    let after = app.order("w", "FENCED", 1, None).await;
    assert_eq!(after.status(), StatusCode::CREATED);
    app.stop().await;
}
on_both_stores!(a_second_writer_of_an_entity_is_fenced);

async fn an_idle_entity_parks_then_passivates_and_keeps_its_state(backend: Backend) {
    // The clock moves past the park and passivation times (over an hour); the reservations
    // must not come due meanwhile, or their expiry races the inspection below.
    let options = Options {
        manual_clock: true,
        tweak: |s| s.orders.pay_within_secs = 86_400,
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let clock = app.clock.clone().expect("manual clock");
    let stock = &app.services.stock;
    app.create_stock("NAP", 9).await;
    assert_eq!(
        app.order("n", "NAP", 2, None).await.status(),
        StatusCode::CREATED
    );
    let park_after_ms = app.settings.actors.park_after_secs as i64 * 1000;
    clock.advance_ms(park_after_ms);
    stock.sweep_now();
    wait_for(|| !stock.is_running("NAP"), "parking").await;
    assert!(stock.is_activated("NAP"), "parked, still in memory");
    assert_eq!(stock.counts().parked, 1);
    // The next message starts an actor from the parked state.
    assert_eq!(app.stock("NAP").await["reserved"], 2);
    assert!(stock.is_running("NAP"));
    assert_eq!(
        app.order("n", "NAP", 1, None).await.status(),
        StatusCode::CREATED
    );

    let passivate_after_ms = app.settings.actors.passivate_after_secs as i64 * 1000;
    clock.advance_ms(park_after_ms);
    stock.sweep_now();
    wait_for(|| !stock.is_running("NAP"), "parking again").await;
    clock.advance_ms(passivate_after_ms);
    stock.sweep_now();
    assert!(!stock.is_activated("NAP"), "passivated: gone from memory");
    let inspected = stock.inspect("NAP").await.expect("recovers");
    assert_eq!(inspected.state["reserved"], 3);
    assert_eq!(
        inspected.snapshot_seq, inspected.last_seq,
        "passivation wrote a snapshot"
    );
    app.stop().await;
}
on_both_stores!(an_idle_entity_parks_then_passivates_and_keeps_its_state);

async fn past_the_in_flight_bound_callers_get_503(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Options::tweaked(|s| s.actors.inflight_max = 3)).await
    else {
        return;
    };
    app.create_stock("BUSY", 100).await;
    let resume = app.services.stock.stall("BUSY").expect("running");
    // Three commands wait in the stalled entity's mailbox; the fourth is turned away at once.
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let stock = app.services.stock.clone();
            tokio::spawn(async move {
                let command = surge::actors::stock_item::StockCommand::Reserve {
                    order: i.into(),
                    quantity: 1,
                    expires_at_ms: i64::MAX,
                };
                stock.ask("BUSY", command, None).await
            })
        })
        .collect();
    wait_for(
        || app.services.stock.inflight("BUSY").is_some_and(|n| n >= 3),
        "three commands queued",
    )
    .await;
    let refused = app.order("late", "BUSY", 1, None).await;
    assert!(refused.headers().contains_key("Retry-After"));
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    resume.send(()).expect("resumed");
    for handle in waiting {
        handle.await.expect("task").expect("reserved once resumed");
    }
    assert_eq!(app.stock("BUSY").await["reserved"], 3);
    app.stop().await;
}
on_both_stores!(past_the_in_flight_bound_callers_get_503);

/// Periodic snapshots are written off the actor, behind the events they cover: one lands once
/// `journal.snapshot_every_events` events have committed, the journal goes on right after it,
/// and the entity (passivated from memory, then woken) has every change.
async fn a_periodic_snapshot_lands_behind_its_events_and_recovers_the_state(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Options::tweaked(|s| s.journal.snapshot_every_events = 4),
    )
    .await
    else {
        return;
    };
    app.create_stock("SNAP", 100).await;
    for i in 0..6 {
        let response = app.order(&format!("s{i}"), "SNAP", 1, None).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let store = app.services.rt.store.clone();
    let load = || async { store.load("stock_item:SNAP").await.expect("loads") };
    eventually_that("a periodic snapshot", || async { load().await.0.is_some() }).await;
    let (snapshot, tail) = load().await;
    let snapshot = snapshot.expect("a periodic snapshot was written");
    assert!((4..=7).contains(&snapshot.seq), "seq {}", snapshot.seq);
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((snapshot.seq + 1)..=7).collect::<Vec<_>>(),
        "the journal goes on where the snapshot stops"
    );
    let stock = &app.services.stock;
    assert!(stock.passivate("SNAP"));
    wait_for(|| !stock.is_activated("SNAP"), "passivation").await;
    let inspected = stock.inspect("SNAP").await.expect("recovers");
    assert_eq!(inspected.state["reserved"], 6);
    assert_eq!(inspected.last_seq, 7);
    app.stop().await;
}
on_both_stores!(a_periodic_snapshot_lands_behind_its_events_and_recovers_the_state);
