//! Load tool for `scripts/bench-live.sh`: opens many WebSocket sessions to a surge server, each
//! subscribed to one topic, counts the frames they receive while a load runs elsewhere, and
//! checks what a subscriber is promised: every frame's `seq` is larger than the one before, and
//! once the load stops every session converges to the entity's final value.
//!
//! Runs until it reads a line on stdin (the script's "load is over"), then reads `--final-url`
//! (the entity's GET) and waits, at most `--settle-secs`, for every session to have seen that
//! entity's final `--field` value. Prints one line: `LIVE_RESULT key=value ...`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// `ws://host:port/api/v1/ws`
    #[arg(long)]
    url: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// The entity's GET route, read once the load is over.
    #[arg(long)]
    final_url: String,
    /// The field of the data (and of the GET body) that must converge.
    #[arg(long, default_value = "reserved")]
    field: String,
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
}

#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    seq_regressions: AtomicU64,
    errors: AtomicU64,
}

struct Watcher {
    last_value: AtomicU64,
    alive: AtomicBool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let tally = Arc::new(Tally::default());
    let mut watchers = Vec::with_capacity(args.sessions);
    let mut tasks = Vec::with_capacity(args.sessions);
    let started = Instant::now();
    for _ in 0..args.sessions {
        let watcher = Arc::new(Watcher {
            last_value: AtomicU64::new(u64::MAX),
            alive: AtomicBool::new(true),
        });
        watchers.push(watcher.clone());
        tasks.push(tokio::spawn(watch(args.clone(), tally.clone(), watcher)));
    }
    eprintln!(
        "live_watchers: {} sessions subscribing; send a line on stdin to stop",
        args.sessions
    );
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    let load_secs = started.elapsed().as_secs_f64();
    let frames_during_load = tally.frames.load(Ordering::Relaxed);
    let body: serde_json::Value = reqwest::Client::new()
        .get(&args.final_url)
        .bearer_auth(&args.token)
        .send()
        .await?
        .json()
        .await?;
    let wanted = body[&args.field]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{} has no integer {}", args.final_url, args.field))?;
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let converged = |watchers: &[Arc<Watcher>]| {
        watchers
            .iter()
            .filter(|w| w.last_value.load(Ordering::Relaxed) == wanted)
            .count()
    };
    while converged(&watchers) < watchers.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive = watchers
        .iter()
        .filter(|w| w.alive.load(Ordering::Relaxed))
        .count();
    println!(
        "LIVE_RESULT sessions={} alive={} frames={} frames_per_sec={:.0} seq_regressions={} errors={} final_{}={} converged={}",
        args.sessions,
        alive,
        frames_during_load,
        frames_during_load as f64 / load_secs,
        tally.seq_regressions.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        args.field,
        wanted,
        converged(&watchers),
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// One session: subscribe, then record every frame until the process stops.
async fn watch(args: Arc<Args>, tally: Arc<Tally>, watcher: Arc<Watcher>) {
    let url = format!("{}?access_token={}", args.url, args.token);
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
        tally.errors.fetch_add(1, Ordering::Relaxed);
        watcher.alive.store(false, Ordering::Relaxed);
        return;
    };
    let subscribe = serde_json::json!({"op": "subscribe", "topic": args.topic}).to_string();
    if socket.send(Message::text(subscribe)).await.is_err() {
        tally.errors.fetch_add(1, Ordering::Relaxed);
        watcher.alive.store(false, Ordering::Relaxed);
        return;
    }
    let mut last_seq = 0;
    while let Some(message) = socket.next().await {
        let Ok(Message::Text(text)) = message else {
            if message.is_err() {
                break;
            }
            continue;
        };
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(seq) = frame["seq"].as_u64() else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if seq <= last_seq {
            tally.seq_regressions.fetch_add(1, Ordering::Relaxed);
        }
        last_seq = seq;
        tally.frames.fetch_add(1, Ordering::Relaxed);
        if let Some(value) = frame["data"][&args.field].as_u64() {
            watcher.last_value.store(value, Ordering::Relaxed);
        }
    }
    watcher.alive.store(false, Ordering::Relaxed);
}
