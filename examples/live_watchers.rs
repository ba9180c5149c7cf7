//! Load tool for `scripts/bench-live.sh`: opens many WebSocket sessions to a surge server, each
//! subscribed to one topic, counts the frames they receive while a load runs elsewhere, and
//! checks what a subscriber is promised: every frame's `seq` is larger than the one before, and
//! once the load stops every session converges to the entity's final value.
//!
//! Runs until it reads a line on stdin (the script's "load is over"), then reads `--final-url`
//! (the entity's GET) and waits, at most `--settle-secs`, for every session to have seen that
//! entity's final `--field` value. Prints one line: `LIVE_RESULT key=value ...`.
//!
//! With `--seats` the topic is an `event:{id}:seats` and `--final-url` its
//! `GET /events/{id}/seats`: every session folds its frames into its own copy of the map, as a
//! client does (a `full` frame replaces it, changes update it), and converges when that copy
//! equals the map's final seats, every one of them. `full_frames` counts the first frames and
//! the resynchronisations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The topic carries seat changes (see the module docs).
    #[arg(long)]
    seats: bool,
}

#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    full_frames: AtomicU64,
    frame_bytes: AtomicU64,
    seq_regressions: AtomicU64,
    errors: AtomicU64,
}

struct Watcher {
    last_value: AtomicU64,
    /// `--seats`: one status byte per seat, in the order of the map's seat list.
    seats: Mutex<Vec<u8>>,
    alive: AtomicBool,
}

/// `--seats`: the map's seats, read once before the sessions open.
struct SeatIndex {
    position: HashMap<String, usize>,
}

fn status_byte(status: &str) -> u8 {
    match status {
        "AVAILABLE" => 0,
        "HELD" => 1,
        "SOLD" => 2,
        _ => 3,
    }
}

/// The map's seats as `GET /events/{id}/seats` gives them: (id, status byte), in its order.
async fn read_seats(args: &Args) -> anyhow::Result<Vec<(String, u8)>> {
    let body = read_final(args).await?;
    let seats = body["seats"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{} has no seats", args.final_url))?;
    Ok(seats
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            (id, status_byte(s["status"].as_str().unwrap_or_default()))
        })
        .collect())
}

impl SeatIndex {
    /// Folds one frame's data into a session's copy of the map; false on an unknown seat.
    fn fold(&self, seats: &mut [u8], data: &serde_json::Value) -> bool {
        if data["full"] == true {
            seats.fill(0);
        }
        let mut known = true;
        for change in data["changes"].as_array().into_iter().flatten() {
            let id = change["id"].as_str().unwrap_or_default();
            match self.position.get(id) {
                Some(&at) => seats[at] = status_byte(change["status"].as_str().unwrap_or_default()),
                None => known = false,
            }
        }
        known
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let tally = Arc::new(Tally::default());
    let index = match args.seats {
        true => {
            let seats = read_seats(&args).await?;
            let position = seats.into_iter().enumerate().map(|(at, (id, _))| (id, at));
            Some(Arc::new(SeatIndex {
                position: position.collect(),
            }))
        }
        false => None,
    };
    let seat_count = index.as_ref().map_or(0, |i| i.position.len());
    let mut watchers = Vec::with_capacity(args.sessions);
    let mut tasks = Vec::with_capacity(args.sessions);
    let started = Instant::now();
    for _ in 0..args.sessions {
        let watcher = Arc::new(Watcher {
            last_value: AtomicU64::new(u64::MAX),
            seats: Mutex::new(vec![0; seat_count]),
            alive: AtomicBool::new(true),
        });
        watchers.push(watcher.clone());
        tasks.push(tokio::spawn(watch(
            args.clone(),
            tally.clone(),
            watcher,
            index.clone(),
        )));
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
    let bytes_during_load = tally.frame_bytes.load(Ordering::Relaxed);
    let (wanted, final_seats) = match args.seats {
        true => {
            let seats: Vec<u8> = read_seats(&args).await?.into_iter().map(|s| s.1).collect();
            let taken = seats.iter().filter(|s| **s != 0).count();
            (u64::try_from(taken)?, seats)
        }
        false => (final_value(&args).await?, Vec::new()),
    };
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let converged = |watchers: &[Arc<Watcher>]| {
        watchers
            .iter()
            .filter(|w| match args.seats {
                true => *w.seats.lock().expect("seats") == final_seats,
                false => w.last_value.load(Ordering::Relaxed) == wanted,
            })
            .count()
    };
    while converged(&watchers) < watchers.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive = watchers
        .iter()
        .filter(|w| w.alive.load(Ordering::Relaxed))
        .count();
    let field = if args.seats {
        "taken_seats"
    } else {
        &args.field
    };
    println!(
        "LIVE_RESULT sessions={} alive={} frames={} frames_per_sec={:.0} kib_per_sec={:.0} full_frames={} seq_regressions={} errors={} final_{}={} converged={}",
        args.sessions,
        alive,
        frames_during_load,
        frames_during_load as f64 / load_secs,
        bytes_during_load as f64 / 1024.0 / load_secs,
        tally.full_frames.load(Ordering::Relaxed),
        tally.seq_regressions.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        field,
        wanted,
        converged(&watchers),
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// The entity's GET (`--final-url`), as JSON.
async fn read_final(args: &Args) -> anyhow::Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(&args.final_url)
        .bearer_auth(&args.token)
        .send()
        .await?;
    Ok(response.json().await?)
}

/// The entity's final `--field`, from its GET.
async fn final_value(args: &Args) -> anyhow::Result<u64> {
    let body = read_final(args).await?;
    body[&args.field]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{} has no integer {}", args.final_url, args.field))
}

/// One session: subscribe, then record every frame until the process stops.
async fn watch(
    args: Arc<Args>,
    tally: Arc<Tally>,
    watcher: Arc<Watcher>,
    index: Option<Arc<SeatIndex>>,
) {
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
        let bytes = u64::try_from(text.len()).unwrap_or(u64::MAX);
        tally.frame_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(index) = &index {
            if frame["data"]["full"] == true {
                tally.full_frames.fetch_add(1, Ordering::Relaxed);
            }
            let mut seats = watcher.seats.lock().expect("seats");
            if !index.fold(&mut seats, &frame["data"]) {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        } else if let Some(value) = frame["data"][&args.field].as_u64() {
            watcher.last_value.store(value, Ordering::Relaxed);
        }
    }
    watcher.alive.store(false, Ordering::Relaxed);
}
