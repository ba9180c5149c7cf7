//! The admin API (API.md "Admin console"): the overview (actor counts per kind, the journal's
//! group-commit figures), the actors with their status, one actor's state and latest events,
//! and the snapshot, passivate and restart actions. Operators read; only admins act.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::State;
use crate::actors::coupon_policy::CouponPolicy;
use crate::actors::order::Order;
use crate::actors::pay_saga::Saga;
use crate::actors::points_charge::PointsCharge;
use crate::actors::product::Product;
use crate::actors::seat_map::SeatMap;
use crate::actors::stock_item::StockItem;
use crate::actors::time_sale::TimeSale;
use crate::actors::waiting_room::WaitingRoom;
use crate::actors::wallet::Wallet;
use crate::actors::Entity;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::supervisors::region::AdminRegion;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/overview", web::get().to(overview))
        .route("/admin", web::get().to(console))
        .route("/admin/supervision", web::get().to(supervision))
        .route("/admin/actors", web::get().to(actors))
        .route("/admin/actors/{kind}/{id}", web::get().to(actor))
        .route("/admin/actors/{kind}/{id}/{action}", web::post().to(act));
}

/// The console page, its script and its style: static files that hold no data. The page signs
/// in with email and password (or a pasted token) and keeps the tokens in memory, so nothing
/// secret ever travels in its address. Script and style are files of their own so that the
/// page's Content-Security-Policy can forbid inline code.
const CONSOLE_HTML: &str = include_str!("console.html");
const CONSOLE_JS: &str = include_str!("console.js");
const CONSOLE_CSS: &str = include_str!("console.css");

/// Running actors named under each region in the supervision tree; the rest are counted.
const TREE_CHILDREN_MAX: usize = 50;

#[utoipa::path(get, path = "/admin", summary = "The console page", tag = "admin",
    operation_id = "console",
    description = "The console page: kinds, journal figures, the supervision tree, the payments \
        (sagas in flight and the latest failed, the gateway's breaker), the actors and one \
        actor's state, refreshed every 2 s. The page itself holds no data: it signs in \
        with an operator's or admin's email and password. Also served at the root (`/admin`).",
    responses(
        (status = 200, description = "An HTML page", content_type = "text/html", body = String),
    ))]
pub async fn console() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(CONSOLE_HTML)
}

/// The console's script (not in the API document: a file of the page).
pub async fn console_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(CONSOLE_JS)
}

/// The console's style sheet.
pub async fn console_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(CONSOLE_CSS)
}

/// The supervision tree: the root, one region supervisor per kind, and its running actors
/// (the first `TREE_CHILDREN_MAX` by id).
#[utoipa::path(get, path = "/admin/supervision", summary = "The supervision tree", tag = "admin",
    operation_id = "supervision_tree",
    security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "`{name, children: [{name, kind, running, parked, failed, \
            children: [\"kind:id\", ...]}]}`: one region supervisor per kind and its running \
            actors (the first 50 by id)", body = Object),
        (status = 403, description = "FORBIDDEN: not an operator"),
    ))]
async fn supervision(state: State, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let regions: Vec<serde_json::Value> = state
        .admin_regions()
        .iter()
        .map(|region| {
            let counts = region.counts();
            let children: Vec<String> = region
                .actors(Some("running"), None, TREE_CHILDREN_MAX)
                .into_iter()
                .map(|row| format!("{}:{}", row.kind, row.id))
                .collect();
            serde_json::json!({
                "name": format!("region:{}", region.kind()),
                "kind": region.kind(),
                "running": counts.running,
                "parked": counts.parked,
                "failed": counts.failed,
                "children": children,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "name": "surge", "children": regions })))
}

/// Latest events shown with an actor.
const ACTOR_EVENTS_MAX: u32 = 20;

const STATUSES: [&str; 3] = ["running", "parked", "failed"];

/// Every actor kind, in the console's order (`Services::admin_regions`; a test holds the two
/// together through `GET /admin/overview`).
const KINDS: [&str; 10] = [
    StockItem::KIND,
    Order::KIND,
    Product::KIND,
    TimeSale::KIND,
    Wallet::KIND,
    CouponPolicy::KIND,
    WaitingRoom::KIND,
    SeatMap::KIND,
    Saga::KIND,
    PointsCharge::KIND,
];

/// A string parameter that takes one of `values`, for the API document.
pub(super) fn one_of(values: &[&str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

fn kind_schema() -> utoipa::openapi::Object {
    one_of(&KINDS)
}

fn status_schema() -> utoipa::openapi::Object {
    one_of(&STATUSES)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ActorsQuery {
    /// Only actors of this kind.
    #[param(schema_with = kind_schema)]
    kind: Option<String>,
    /// Only actors in this status.
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// 1-500, 50 when not given.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `{kind}/{id}` of the last actor of the previous page.
    #[param(min_length = 3)]
    cursor: Option<String>,
}

/// The activated and failed entities, by kind (in the console's order) then id.
#[utoipa::path(get, path = "/admin/actors", summary = "List actors", tag = "admin",
    operation_id = "list_actors",
    security(("bearer" = ["operator", "admin"])), params(ActorsQuery),
    responses(
        (status = 200, description = "`{items: [{kind, id, status, mailbox_len, restarts, \
            last_seq, snapshot_seq, last_active_at}], next_cursor}`, by kind then id",
            body = Object),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 422, description = "VALIDATION_FAILED: a bad kind, status, limit or cursor"),
    ))]
async fn actors(
    state: State,
    caller: Caller,
    query: web::Query<ActorsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let lists = &state.rt.settings.lists;
    let limit = query.limit.unwrap_or(lists.limit_default);
    if limit == 0 || limit > lists.limit_max {
        return Err(ApiError::validation(
            "limit",
            format!("must be 1 to {}", lists.limit_max),
        ));
    }
    let status = query.status.as_deref();
    if status.is_some_and(|s| !STATUSES.contains(&s)) {
        return Err(ApiError::validation("status", "running, parked or failed"));
    }
    let regions = state.admin_regions();
    if let Some(kind) = &query.kind {
        if !regions.iter().any(|r| r.kind() == kind) {
            return Err(ApiError::validation("kind", "an actor kind"));
        }
    }
    let cursor = match &query.cursor {
        Some(cursor) => Some(
            cursor
                .split_once('/')
                .filter(|(kind, _)| regions.iter().any(|r| r.kind() == *kind))
                .ok_or_else(|| ApiError::validation("cursor", "invalid"))?,
        ),
        None => None,
    };
    let limit = usize::try_from(limit).expect("u32 fits usize");
    let mut items = Vec::new();
    let mut past_cursor = cursor.is_none();
    for region in regions {
        if query.kind.as_deref().is_some_and(|k| k != region.kind()) {
            continue;
        }
        let after = match cursor {
            Some((kind, id)) if kind == region.kind() => {
                past_cursor = true;
                Some(id)
            }
            _ => None,
        };
        if !past_cursor {
            continue;
        }
        // One more than the page, to know whether there is a next one.
        items.extend(region.actors(status, after, limit + 1 - items.len()));
        if items.len() > limit {
            break;
        }
    }
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|row| format!("{}/{}", row.kind, row.id))
    });
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_cursor": next_cursor.flatten(),
    })))
}

fn region<'a>(state: &'a State, kind: &str) -> Result<&'a dyn AdminRegion, ApiError> {
    state
        .admin_region(kind)
        .ok_or_else(|| ApiError::not_found(format!("no actor kind {kind}")))
}

/// One actor: its row, its state as JSON and its latest events (activating it if it is not).
#[utoipa::path(get, path = "/admin/actors/{kind}/{id}",
    summary = "One actor: state and latest events", tag = "admin", operation_id = "get_actor",
    security(("bearer" = ["operator", "admin"])),
    params(
        ("kind" = String, Path, description = "The actor kind (see `GET /admin/overview`)"),
        ("id" = String, Path, description = "The entity id (a SKU, a UUID, a user id)"),
    ),
    responses(
        (status = 200, description = "The actor's row, its `state` as JSON and its 20 latest \
            events", body = Object),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 404, description = "NOT_FOUND: no such kind, or an entity never created"),
    ))]
async fn actor(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let (kind, id) = path.into_inner();
    let detail = region(&state, &kind)?
        .detail(&id, ACTOR_EVENTS_MAX)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {kind} {id}")))?;
    Ok(HttpResponse::Ok().json(detail))
}

/// `snapshot` (queued now if the journal is ahead of the last one), `passivate` (snapshot if
/// behind, then out of memory) or `restart` (clears a failed mark). Admins only.
#[utoipa::path(post, path = "/admin/actors/{kind}/{id}/{action}",
    summary = "Snapshot, passivate or restart an actor", tag = "admin",
    operation_id = "act_on_actor", security(("bearer" = ["admin"])),
    params(
        ("kind" = String, Path, description = "The actor kind (see `GET /admin/overview`)"),
        ("id" = String, Path, description = "The entity id (a SKU, a UUID, a user id)"),
        ("action" = String, Path,
            description = "`snapshot` (now, if the journal is ahead of the last one), \
                `passivate` (snapshot if behind, then out of memory) or `restart` (from durable \
                state; clears a failed mark)"),
    ),
    responses(
        (status = 200, description = "`{snapshot_seq, actor}`, `{passivated: true}` or \
            `{restarted: true}`", body = Object),
        (status = 403, description = "FORBIDDEN: not an admin"),
        (status = 404, description = "NOT_FOUND: no such kind or action, or the actor is not \
            activated"),
    ))]
async fn act(
    state: State,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let (kind, id, action) = path.into_inner();
    let region = region(&state, &kind)?;
    let not_activated = || ApiError::not_found(format!("{kind} {id} is not activated"));
    // In memory or failed: the actions below have something to act on.
    let known = region.actor(&id).is_some();
    let body = match action.as_str() {
        "snapshot" if known => {
            let snapshot_seq = region.snapshot(&id).await?;
            serde_json::json!({ "snapshot_seq": snapshot_seq, "actor": region.actor(&id) })
        }
        "passivate" => match region.passivate(&id) {
            true => serde_json::json!({ "passivated": true }),
            false => return Err(not_activated()),
        },
        "restart" if known => {
            region.restart(&id);
            serde_json::json!({ "restarted": true })
        }
        "snapshot" | "restart" => return Err(not_activated()),
        _ => return Err(ApiError::not_found("no such route")),
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Operators may read it; admins too.
#[utoipa::path(get, path = "/admin/overview", summary = "Overview: actors, journal, gateway",
    tag = "admin", operation_id = "overview",
    security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "`{node, uptime_secs, store, kinds: [{kind, running, \
            parked, failed}], live: {sessions, topics}, journal: {batches, events, rows, \
            failures, avg_batch_rows, avg_commit_micros, ...}, gateway: {url, breaker: \
            closed|half_open|open, failures, opened_at?}}`, the kinds in the console's order",
            body = Object),
        (status = 403, description = "FORBIDDEN: not an operator"),
    ))]
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
        "gateway": state.gateway.status(),
    })))
}
