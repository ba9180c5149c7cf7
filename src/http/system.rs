//! `/healthz` (the process runs) and `/readyz` (the journal writer runs and its store answers).

use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::State;
use crate::error::ApiError;

/// How long readiness waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    // HEAD is served too (load balancers probe with it), as on every GET route: see
    // `http::head_as_get`.
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", summary = "Liveness",
    tag = "system",
    description = "The process runs. Also served at the root (`/healthz`).",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz",
    summary = "Readiness: the journal store answers", tag = "system",
    description = "The journal writer runs and its store answers within 2 s. Also served at the \
        root (`/readyz`).",
    responses(
        (status = 200,
            description = "`{\"status\": \"ready\", \"store\": \"sqlite\" or \"postgres\"}`",
            body = Object),
        (status = 503, description = "UNAVAILABLE: the journal writer stopped or the store \
            does not answer"),
    ))]
async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    if !state.rt.journal.is_running() {
        return Err(ApiError::unavailable("the journal writer has stopped"));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.rt.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "store": state.rt.store.backend(),
        }))),
        Ok(Err(error)) => Err(ApiError::unavailable(format!("journal store: {error}"))),
        Err(_) => Err(ApiError::unavailable(
            "journal store did not answer in time",
        )),
    }
}
