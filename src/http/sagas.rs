//! `GET /admin/sagas` (API.md "Admin console"): the payment sagas, newest order first, read from
//! their `pay_saga` read rows, so listing them wakes no actor. Each row holds the saga's view;
//! [`item`] turns it into the API's shape, so the domain's enum spellings never reach a client.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::one_of;
use super::{ListQuery, State};
use crate::actors::hosted::pay_saga::{status_name, ROW_KIND};
use crate::actors::pay_saga::{SagaKind, SagaStatus, SagaView, StepEnd, StepRecord};
use crate::auth::Caller;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::persistence::ReadPage;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/sagas", web::get().to(list));
}

/// Every saga status, as the read rows and the API name them.
const STATUSES: [SagaStatus; 5] = [
    SagaStatus::Running,
    SagaStatus::Compensating,
    SagaStatus::Confirmed,
    SagaStatus::Failed,
    SagaStatus::Refunded,
];

/// The statuses of a saga that has not ended.
const IN_FLIGHT: [SagaStatus; 2] = [SagaStatus::Running, SagaStatus::Compensating];

/// The `?status=` that asks for both statuses of [`IN_FLIGHT`].
const IN_FLIGHT_FILTER: &str = "in_flight";

const KINDS: [&str; 2] = ["PAY", "REFUND"];
const STEP_STATUSES: [&str; 3] = ["RUNNING", "DONE", "FAILED"];

fn status_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = STATUSES.iter().map(|s| status_name(*s)).collect();
    one_of(&names)
}

fn filter_schema() -> utoipa::openapi::Object {
    let mut names: Vec<&str> = STATUSES.iter().map(|s| status_name(*s)).collect();
    names.push(IN_FLIGHT_FILTER);
    one_of(&names)
}

fn kind_schema() -> utoipa::openapi::Object {
    one_of(&KINDS)
}

fn step_status_schema() -> utoipa::openapi::Object {
    one_of(&STEP_STATUSES)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SagasQuery {
    /// Only sagas in this status; `in_flight` is `RUNNING` or `COMPENSATING`.
    #[param(schema_with = filter_schema)]
    status: Option<String>,
}

/// One payment saga: its current attempt (to pay, or the refund) with the steps it ran.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Saga)]
pub struct SagaItem {
    pub order_id: String,
    #[schema(schema_with = status_schema)]
    pub status: &'static str,
    /// The attempt's number: an order whose payment failed may be paid again, which starts the
    /// next attempt; a refund is an attempt of its own.
    pub attempt: u32,
    #[schema(schema_with = kind_schema)]
    pub kind: &'static str,
    /// In the order they ran; compensations follow the step that failed.
    pub steps: Vec<SagaStep>,
    /// Why the attempt failed, once a step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub failure: Option<SagaFailure>,
    pub started_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaStep {
    /// `begin_pay`, `redeem_coupon`, `debit_points`, `charge_card`, `commit_units`, `confirm`,
    /// `refund_card`, `restore_points`, `restore_coupon`, `mark_failed`, `begin_refund`,
    /// `release_units` or `mark_refunded`.
    #[schema(example = "charge_card")]
    pub name: &'static str,
    #[schema(schema_with = step_status_schema)]
    pub status: &'static str,
    pub started_at: String,
    /// Once the step is done or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ended_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SagaFailure {
    /// The step that failed.
    #[schema(example = "charge_card")]
    pub step: &'static str,
    /// One of API.md's stable error codes.
    #[schema(example = "PAYMENT_DECLINED")]
    pub code: &'static str,
    pub detail: String,
}

/// The API's shape of a saga's view; `None` for a saga that never started an attempt (such a
/// saga writes no read row).
pub fn item(view: &SagaView) -> Option<SagaItem> {
    let attempt = view.attempt.as_ref()?;
    Some(SagaItem {
        order_id: view.order_id.clone(),
        status: status_name(view.status?),
        attempt: attempt.number,
        kind: match attempt.kind {
            SagaKind::Pay => "PAY",
            SagaKind::Refund => "REFUND",
        },
        steps: attempt.steps.iter().map(step).collect(),
        failure: attempt.failure.as_ref().map(|f| SagaFailure {
            step: f.step.as_str(),
            code: f.code.as_str(),
            detail: f.detail.clone(),
        }),
        started_at: rfc3339(attempt.started_at_ms),
    })
}

fn step(record: &StepRecord) -> SagaStep {
    let (status, ended_at_ms) = match &record.ended {
        None => ("RUNNING", None),
        Some(StepEnd::Done { at_ms, .. }) => ("DONE", Some(*at_ms)),
        Some(StepEnd::Failed { at_ms }) => ("FAILED", Some(*at_ms)),
    };
    SagaStep {
        name: record.step.as_str(),
        status,
        started_at: rfc3339(record.started_at_ms),
        ended_at: ended_at_ms.map(rfc3339),
    }
}

/// The statuses `?status=` asks for; empty for every saga.
fn statuses(filter: Option<&str>) -> Result<Vec<&'static str>, ApiError> {
    let Some(filter) = filter else {
        return Ok(Vec::new());
    };
    if filter == IN_FLIGHT_FILTER {
        return Ok(IN_FLIGHT.iter().map(|s| status_name(*s)).collect());
    }
    STATUSES
        .iter()
        .map(|s| status_name(*s))
        .find(|name| *name == filter)
        .map(|name| vec![name])
        .ok_or_else(|| {
            ApiError::validation(
                "status",
                "RUNNING, COMPENSATING, CONFIRMED, FAILED, REFUNDED or in_flight",
            )
        })
}

/// A page of the saga rows in any of `statuses` (all when empty), newest first: one page of
/// each status, merged by [`merge`].
async fn saga_rows(
    state: &State,
    statuses: &[&str],
    cursor: Option<&str>,
    limit: u32,
) -> Result<ReadPage, ApiError> {
    if statuses.len() < 2 {
        let status = statuses.first().copied();
        return super::read_rows(state, ROW_KIND, None, status, cursor, limit).await;
    }
    let mut pages = Vec::with_capacity(statuses.len());
    for status in statuses {
        pages.push(super::read_rows(state, ROW_KIND, None, Some(status), cursor, limit).await?);
    }
    Ok(merge(pages, limit))
}

/// One page of `limit` rows out of pages of `limit` rows each, read below the same cursor
/// (ids, newest first): the first `limit` of all of them are among the first `limit` of each,
/// and the last id kept continues every one of them alike.
fn merge(pages: Vec<ReadPage>, limit: u32) -> ReadPage {
    let mut more = false;
    let mut rows = Vec::new();
    for page in pages {
        more |= page.next_cursor.is_some();
        rows.extend(page.rows);
    }
    rows.sort_by(|a, b| b.id.cmp(&a.id));
    // A saga whose status changed between two reads is in both.
    rows.dedup_by(|a, b| a.id == b.id);
    let limit = usize::try_from(limit).expect("u32 fits usize");
    more |= rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = more
        .then(|| rows.last().map(|row| row.id.clone()))
        .flatten();
    ReadPage { rows, next_cursor }
}

/// The payment sagas, newest order first, from their read rows (no actor is woken): each one's
/// latest attempt with its steps. Operators and admins.
#[utoipa::path(get, path = "/admin/sagas", summary = "List payment sagas", tag = "admin",
    operation_id = "list_sagas",
    security(("bearer" = ["operator", "admin"])),
    params(SagasQuery, super::openapi::Paging),
    description = "Each order's payment saga as of its last journaled step: its latest attempt \
        (to pay, or the refund), the steps that attempt ran with their times, and the failure \
        that ended or is compensating it. Read from the sagas' read rows, so listing wakes no \
        actor. `?status=in_flight` lists the sagas still running or compensating.",
    responses(
        (status = 200, description = "Sagas, newest order first",
            body = super::openapi::Page<SagaItem>),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 422, description = "VALIDATION_FAILED: a bad status, limit or cursor"),
    ))]
async fn list(
    state: State,
    caller: Caller,
    query: web::Query<ListQuery>,
    filter: web::Query<SagasQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let limit = query.limit(&state)?;
    let statuses = statuses(filter.status.as_deref())?;
    let page = saga_rows(&state, &statuses, query.cursor.as_deref(), limit).await?;
    let mut items = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        let view: SagaView = serde_json::from_str(&row.body).map_err(ApiError::internal)?;
        items.extend(item(&view));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "items": items,
        "next_cursor": page.next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::pay_saga::{Action, Attempt, Failure, Outcome, PayRequest, Step};
    use crate::error::ErrorCode;
    use crate::persistence::ReadRow;

    fn record(step: Step, ended: Option<StepEnd>) -> StepRecord {
        StepRecord {
            step,
            started_at_ms: 1_000,
            ended,
        }
    }

    fn view(status: SagaStatus, steps: Vec<StepRecord>, failure: Option<Failure>) -> SagaView {
        SagaView {
            order_id: "order-1".to_string(),
            status: Some(status),
            attempt: Some(Attempt {
                kind: SagaKind::Pay,
                number: 2,
                request: PayRequest {
                    coupon_id: None,
                    points: 0,
                    card_token: Some("tok_visa".to_string()),
                },
                facts: None,
                discount: None,
                payment_id: None,
                points_tx: None,
                steps,
                failure,
                started_at_ms: 500,
            }),
            next: Action::Finished(Some(status)),
        }
    }

    #[test]
    fn a_view_becomes_the_api_shape_with_rfc3339_times() {
        let done = StepEnd::Done {
            outcome: Outcome::Done,
            at_ms: 2_000,
        };
        let failed = StepEnd::Failed { at_ms: 3_000 };
        let failure = Failure {
            step: Step::ChargeCard,
            code: ErrorCode::PaymentDeclined,
            detail: "declined".to_string(),
        };
        let steps = vec![
            record(Step::BeginPay, Some(done)),
            record(Step::ChargeCard, Some(failed)),
            record(Step::MarkFailed, None),
        ];
        let item = item(&view(SagaStatus::Compensating, steps, Some(failure))).expect("an item");
        let json = serde_json::to_value(&item).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "order_id": "order-1",
                "status": "COMPENSATING",
                "attempt": 2,
                "kind": "PAY",
                "steps": [
                    {"name": "begin_pay", "status": "DONE",
                     "started_at": "1970-01-01T00:00:01.000Z",
                     "ended_at": "1970-01-01T00:00:02.000Z"},
                    {"name": "charge_card", "status": "FAILED",
                     "started_at": "1970-01-01T00:00:01.000Z",
                     "ended_at": "1970-01-01T00:00:03.000Z"},
                    {"name": "mark_failed", "status": "RUNNING",
                     "started_at": "1970-01-01T00:00:01.000Z"},
                ],
                "failure": {"step": "charge_card", "code": "PAYMENT_DECLINED",
                            "detail": "declined"},
                "started_at": "1970-01-01T00:00:00.500Z",
            })
        );
    }

    #[test]
    fn a_saga_without_an_attempt_is_no_item() {
        let mut empty = view(SagaStatus::Running, Vec::new(), None);
        empty.attempt = None;
        assert!(item(&empty).is_none());
    }

    fn page(ids: &[&str], next: bool) -> ReadPage {
        let rows: Vec<ReadRow> = ids
            .iter()
            .map(|id| ReadRow {
                kind: ROW_KIND.to_string(),
                id: id.to_string(),
                owner: "u".to_string(),
                created_at_ms: 0,
                status: "RUNNING".to_string(),
                body: "{}".to_string(),
            })
            .collect();
        let next_cursor = next.then(|| ids.last().map(|id| id.to_string())).flatten();
        ReadPage { rows, next_cursor }
    }

    fn ids(page: &ReadPage) -> Vec<&str> {
        page.rows.iter().map(|row| row.id.as_str()).collect()
    }

    #[test]
    fn pages_of_two_statuses_merge_newest_first_and_continue_below_the_last_kept() {
        let merged = merge(vec![page(&["9", "5"], true), page(&["8", "7"], true)], 2);
        assert_eq!(ids(&merged), ["9", "8"]);
        assert_eq!(merged.next_cursor.as_deref(), Some("8"));
        // Fewer than a page in all: the last page.
        let merged = merge(vec![page(&["4"], false), page(&["6"], false)], 3);
        assert_eq!(ids(&merged), ["6", "4"]);
        assert_eq!(merged.next_cursor, None);
        // Exactly a page, but one status has more below it.
        let merged = merge(vec![page(&["4", "3"], true), page(&[], false)], 2);
        assert_eq!(ids(&merged), ["4", "3"]);
        assert_eq!(merged.next_cursor.as_deref(), Some("3"));
        // More than a page in all, though neither status has more.
        let merged = merge(vec![page(&["4"], false), page(&["6", "2"], false)], 2);
        assert_eq!(ids(&merged), ["6", "4"]);
        assert_eq!(merged.next_cursor.as_deref(), Some("4"));
        // A saga read under both statuses is listed once.
        let merged = merge(vec![page(&["5"], false), page(&["5", "1"], false)], 3);
        assert_eq!(ids(&merged), ["5", "1"]);
        assert_eq!(merged.next_cursor, None);
    }

    #[test]
    fn the_filter_takes_every_status_and_in_flight() {
        for status in STATUSES {
            let name = status_name(status);
            assert_eq!(statuses(Some(name)).expect("a status"), [name]);
        }
        assert_eq!(
            statuses(Some("in_flight")).expect("in flight"),
            ["RUNNING", "COMPENSATING"]
        );
        assert!(statuses(None).expect("none").is_empty());
        for bad in ["running", "PAYING", ""] {
            assert!(statuses(Some(bad)).is_err(), "{bad}");
        }
    }
}
