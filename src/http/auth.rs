//! Auth endpoints (API.md "Auth"), mounted under `/api/v1`. Handlers only parse and delegate
//! to [`AuthService`]; malformed JSON is turned into a 400 by the app's `JsonConfig`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::{AuthService, Caller, TokenPair, UserView};
use crate::error::{ApiError, ErrorCode};
use crate::http::{RawBody, State};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/register", web::post().to(register))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me))
        .route("/admin/users/{id}/roles", web::post().to(set_roles));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = Register)]
struct RegisterBody {
    #[schema(example = "ana@example.com", format = "email", max_length = 254)]
    email: String,
    #[schema(min_length = 8, max_length = 1024, format = "password")]
    password: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = Login)]
struct LoginBody {
    #[schema(min_length = 1, max_length = 254)]
    email: String,
    #[schema(min_length = 1, max_length = 1024, format = "password")]
    password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = RefreshToken)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = Roles)]
struct RolesBody {
    /// The user's roles from now on: `customer`, `operator`, `admin`.
    #[schema(example = json!(["customer", "operator"]), min_items = 1, value_type = Vec<crate::auth::Role>)]
    roles: Vec<String>,
}

/// Token responses must not be cached by browsers or proxies (RFC 6749 section 5.1).
fn token_response(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(pair)
}

#[utoipa::path(post, path = "/auth/register", operation_id = "register",
    summary = "Register a user", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "The new user, a customer", body = UserView),
        (status = 400, description = "MALFORMED_REQUEST: a body that is not JSON"),
        (status = 409, description = "EMAIL_TAKEN"),
        (status = 422, description = "VALIDATION_FAILED: a bad email, a password under 8 \
            characters, an empty name"),
        (status = 429, description = "RATE_LIMITED: too many attempts from this address"),
    ))]
async fn register(
    state: State,
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    state.auth_throttle.check_address(client_address(&req))?;
    let body: RegisterBody = body.json()?;
    let user = auth
        .register(&body.email, &body.password, &body.name)
        .await?;
    Ok(HttpResponse::Created().json(user))
}

#[utoipa::path(post, path = "/auth/login", operation_id = "login",
    summary = "Log in: a token pair", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "A token pair (sent with `Cache-Control: no-store`)",
            body = TokenPair),
        (status = 401, description = "INVALID_CREDENTIALS: the same answer for an unknown \
            email and a wrong password"),
        (status = 422, description = "VALIDATION_FAILED: a field of the wrong type"),
        (status = 429, description = "RATE_LIMITED: too many attempts from this address, or \
            failed logins on this email from this address"),
    ))]
async fn login(
    state: State,
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let address = client_address(&req);
    state.auth_throttle.check_address(address)?;
    let body: LoginBody = body.json()?;
    state.auth_throttle.check_login(&body.email, address)?;
    match auth.login(&body.email, &body.password).await {
        Ok(pair) => Ok(token_response(pair)),
        Err(error) => {
            if error.code == ErrorCode::InvalidCredentials {
                state.auth_throttle.record_failure(&body.email, address);
            }
            Err(error)
        }
    }
}

#[utoipa::path(post, path = "/auth/refresh", operation_id = "refresh",
    summary = "Rotate a refresh token", tag = "auth", request_body = RefreshBody,
    description = "A new token pair; the refresh token sent stops working (rotation). A token \
        sent again after its rotation revokes every token descending from the same login, the \
        newest too (reuse detection).",
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 401, description = "UNAUTHORIZED: an unknown, used, expired or revoked \
            refresh token"),
        (status = 422, description = "VALIDATION_FAILED: a field of the wrong type"),
        (status = 429, description = "RATE_LIMITED"),
    ))]
async fn refresh(
    state: State,
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    state.auth_throttle.check_address(client_address(&req))?;
    let body: RefreshBody = body.json()?;
    Ok(token_response(auth.refresh(&body.refresh_token).await?))
}

/// The TCP peer's address (behind a proxy, the proxy's).
fn client_address(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|peer| peer.ip())
}

#[utoipa::path(post, path = "/auth/logout", operation_id = "logout",
    summary = "Log out: end a refresh token", tag = "auth", request_body = RefreshBody,
    description = "The refresh token stops working, and so does every token descending from \
        the same login. Access tokens live out their hour.",
    responses(
        (status = 204, description = "Logged out (also for a token already gone)"),
        (status = 422, description = "VALIDATION_FAILED: a field of the wrong type"),
    ))]
async fn logout(auth: web::Data<AuthService>, body: RawBody) -> Result<HttpResponse, ApiError> {
    let body: RefreshBody = body.json()?;
    auth.logout(&body.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/auth/me", operation_id = "me", summary = "The caller", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller; `email` and `name` are null for a \
        subject of a `surge token` token, which has no user row", body = UserView)))]
async fn me(auth: web::Data<AuthService>, caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(auth.me(&caller).await?))
}

#[utoipa::path(post, path = "/admin/users/{id}/roles", operation_id = "set_roles",
    summary = "Set a user's roles", tag = "auth", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The user's id")), request_body = RolesBody,
    responses(
        (status = 200, description = "The user with its new roles", body = UserView),
        (status = 403, description = "FORBIDDEN: not an admin"),
        (status = 404, description = "NOT_FOUND: no such user"),
        (status = 422, description = "VALIDATION_FAILED: an unknown role or none"),
    ))]
async fn set_roles(
    auth: web::Data<AuthService>,
    caller: Caller,
    user_id: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let RolesBody { roles } = body.json()?;
    Ok(HttpResponse::Ok().json(auth.set_roles(&user_id, roles).await?))
}
