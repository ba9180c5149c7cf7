//! The admin API's overview (API.md "Admin console"): actor counts per kind and the journal's
//! group-commit figures. The console page and the rest of its API build on this.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::State;
use crate::auth::Caller;
use crate::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/overview", web::get().to(overview));
}

/// Operators may read it; admins too.
async fn overview(state: State, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let stats = &state.rt.journal.stats;
    let batches = stats.batches.load(Ordering::Relaxed);
    let rows = stats.rows.load(Ordering::Relaxed);
    let commit_micros = stats.commit_micros_total.load(Ordering::Relaxed);
    let per_batch = |total: u64| {
        if batches == 0 {
            0.0
        } else {
            total as f64 / batches as f64
        }
    };
    let uptime_secs = (state.rt.now_ms() - state.started_at_ms) / 1000;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "node": state.rt.settings.server.listen,
        "uptime_secs": uptime_secs,
        "store": state.rt.store.backend(),
        "kinds": state.region_counts(),
        "live": {
            "sessions": state.rt.live.sessions_open(),
            "topics": state.rt.live.topics_watched(),
        },
        "journal": {
            "batches": batches,
            "events": stats.events.load(Ordering::Relaxed),
            "rows": rows,
            "failures": stats.failures.load(Ordering::Relaxed),
            "avg_batch_rows": per_batch(rows),
            "avg_commit_micros": per_batch(commit_micros),
            "last_batch_rows": stats.last_batch_rows.load(Ordering::Relaxed),
            "last_commit_micros": stats.last_commit_micros.load(Ordering::Relaxed),
            "indexed_rows": stats.indexed_rows.load(Ordering::Relaxed),
            "index_micros_total": stats.index_micros_total.load(Ordering::Relaxed),
            "syncs": stats.syncs.load(Ordering::Relaxed),
            "sync_micros_total": stats.sync_micros_total.load(Ordering::Relaxed),
            "commit_micros_max": stats.commit_micros_max.load(Ordering::Relaxed),
            "sync_micros_max": stats.sync_micros_max.load(Ordering::Relaxed),
        },
    })))
}
