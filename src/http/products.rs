//! Products (API.md "Time sales"): the catalog entries that time sales sell.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::idempotent::{self, Prepared};
use super::openapi::IdempotencyKey;
use super::{RawBody, State};
use crate::actors::product::{Product, ProductCommand, ProductDetails, ProductView};
use crate::auth::Caller;
use crate::error::{ApiError, FieldErrors};

/// The highest price a product or a sale may carry, far below overflow of any total.
pub const PRICE_MAX: i64 = 1_000_000_000_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/products")
            .route("", web::post().to(create))
            .route("/{id}", web::get().to(get)),
    );
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = CreateProduct)]
struct CreateBody {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    price: i64,
    #[schema(max_length = 2000)]
    description: Option<String>,
}

impl CreateBody {
    fn validate(&self) -> Result<(), ApiError> {
        let mut errors = FieldErrors::new();
        errors.check(
            !self.name.trim().is_empty()
                && self.name.chars().count() <= 200
                && crate::text::is_plain(&self.name, false),
            "name",
            format!("must be 1-200 characters, {}", crate::text::PLAIN_RULE),
        );
        errors.check(
            (0..=PRICE_MAX).contains(&self.price),
            "price",
            "must be 0..=10^12",
        );
        errors.check(
            self.description
                .as_ref()
                .is_none_or(|d| d.chars().count() <= 2000 && crate::text::is_plain(d, true)),
            "description",
            format!(
                "must be at most 2000 characters, {}",
                crate::text::PLAIN_RULE
            ),
        );
        Ok(errors.finish()?)
    }
}

#[utoipa::path(post, path = "/products", summary = "Create a product", tag = "products",
    operation_id = "create_product",
    security(("bearer" = ["operator", "admin"])), request_body = CreateBody, params(IdempotencyKey),
    responses(
        (status = 201, description = "The new product", body = ProductViewSchema),
        (status = 403, description = "FORBIDDEN: not an operator"),
        (status = 422, description = "VALIDATION_FAILED"),
    ))]
async fn create(
    state: State,
    req: HttpRequest,
    caller: Caller,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_operator()?;
    let input: CreateBody = body.json()?;
    input.validate()?;
    let keyed = match idempotent::prepare(&state, &req, &caller, &body.0).await? {
        Prepared::Replay(response) => return Ok(response),
        Prepared::Run(keyed) => keyed,
    };
    let command = ProductCommand::Create(ProductDetails {
        name: input.name.trim().to_string(),
        price: input.price,
        description: input.description,
    });
    let side = idempotent::record_side::<Product, _, _>(
        keyed.as_ref(),
        StatusCode::CREATED,
        ProductView::clone,
    );
    let id = uuid::Uuid::now_v7().to_string();
    let view = idempotent::ask_keyed(&state, &state.products, &id, command, side, keyed).await?;
    Ok(HttpResponse::Created().json(view))
}

/// A server-made id: anything that is not a UUID is simply not there.
pub fn uuid_path(path: &str, what: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(path)
        .map(|id| id.to_string())
        .map_err(|_| ApiError::not_found(format!("{what} {path} not found")))
}

#[utoipa::path(get, path = "/products/{id}", summary = "Get a product", tag = "products",
    operation_id = "get_product",
    security(("bearer" = [])), params(("id" = String, Path, description = "The product id")),
    responses(
        (status = 200, description = "The product", body = ProductViewSchema),
        (status = 404, description = "NOT_FOUND"),
    ))]
async fn get(
    state: State,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid_path(&path, "product")?;
    let view = state.products.ask(&id, ProductCommand::Get, None).await?;
    Ok(HttpResponse::Ok().json(view))
}

// The OpenAPI schemas of the domain types this module answers with: the domain crate knows
// no HTTP, so their documented shape lives here, and `described_shapes_match_what_the_server_
// sends` (tests/api/openapi.rs) fails if the two drift apart.

#[derive(utoipa::ToSchema)]
#[schema(as = ProductView)]
#[allow(dead_code)] // Describes the domain's `ProductView`; never built.
pub struct ProductViewSchema {
    pub id: String,
    pub name: String,
    pub price: i64,
    pub description: Option<String>,
}
