//! Lists served from the read tables: one page of a kind's rows, newest first by id.

use actix_web::HttpResponse;

use super::{ListQuery, State};
use crate::error::ApiError;

/// The `{items, next_cursor}` page of `kind`'s read rows (of `owner`, if given), as a response;
/// [`super::read_page`] does the reading.
pub async fn read_list(
    state: &State,
    kind: &str,
    owner: Option<&str>,
    query: &ListQuery,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit(state)?;
    let page = super::read_page(state, kind, owner, None, query, limit).await?;
    Ok(HttpResponse::Ok().json(page))
}
