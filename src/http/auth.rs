//! Auth endpoints (API.md "Auth"), mounted under `/api/v1`. Handlers only parse and delegate
//! to [`AuthService`]; malformed JSON is turned into a 400 by the app's `JsonConfig`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::{AuthService, Caller, TokenPair};
use crate::error::{ApiError, ErrorCode};
use crate::http::State;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/register", web::post().to(register))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me))
        .route("/admin/users/{id}/roles", web::post().to(set_roles));
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Debug, Deserialize)]
struct RolesBody {
    roles: Vec<String>,
}

/// Token responses must not be cached by browsers or proxies (RFC 6749 section 5.1).
fn token_response(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(pair)
}

async fn register(
    state: State,
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    state.auth_throttle.check_address(client_address(&req))?;
    let user = auth
        .register(&body.email, &body.password, &body.name)
        .await?;
    Ok(HttpResponse::Created().json(user))
}

async fn login(
    state: State,
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    state.auth_throttle.check_address(client_address(&req))?;
    state.auth_throttle.check_email(&body.email)?;
    match auth.login(&body.email, &body.password).await {
        Ok(pair) => Ok(token_response(pair)),
        Err(error) => {
            if error.code == ErrorCode::InvalidCredentials {
                state.auth_throttle.record_failure(&body.email);
            }
            Err(error)
        }
    }
}

async fn refresh(
    state: State,
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    state.auth_throttle.check_address(client_address(&req))?;
    Ok(token_response(auth.refresh(&body.refresh_token).await?))
}

/// The TCP peer's address (behind a proxy, the proxy's).
fn client_address(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|peer| peer.ip())
}

async fn logout(
    auth: web::Data<AuthService>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    auth.logout(&body.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn me(auth: web::Data<AuthService>, caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(auth.me(&caller).await?))
}

async fn set_roles(
    auth: web::Data<AuthService>,
    caller: Caller,
    user_id: web::Path<String>,
    body: web::Json<RolesBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let RolesBody { roles } = body.into_inner();
    Ok(HttpResponse::Ok().json(auth.set_roles(&user_id, roles).await?))
}
