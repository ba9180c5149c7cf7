//! Lists served from the read tables: one page of a kind's rows, newest first by id.

use actix_web::HttpResponse;

use super::{ListQuery, State};
use crate::error::ApiError;
use crate::persistence::StoreError;

/// The `{items, next_cursor}` page of `kind`'s read rows (of `owner`, if given); each row's
/// body is the item as it was last written.
pub async fn read_list(
    state: &State,
    kind: &str,
    owner: Option<&str>,
    query: &ListQuery,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit(state)?;
    let page = state
        .rt
        .store
        .read_rows(kind, owner, None, query.cursor.as_deref(), limit)
        .await
        .map_err(|e| match e {
            StoreError::Corrupt(_) => ApiError::validation("cursor", "invalid"),
            other => ApiError::internal(other),
        })?;
    let items: Vec<serde_json::Value> = page
        .rows
        .iter()
        .map(|row| serde_json::from_str(&row.body))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "items": items, "next_cursor": page.next_cursor })))
}
