//! `/healthz` (the process runs) and `/readyz` (the journal writer runs and its store answers).

use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::State;
use crate::error::ApiError;

/// How long readiness waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

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
