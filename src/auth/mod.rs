//! Users, passwords and tokens: who is calling, and what they may do.
//!
//! - Passwords are hashed with Argon2id (crate defaults). Hashing costs tens of milliseconds of
//!   CPU and ~19 MiB of memory, so it runs on the blocking pool, and a semaphore sized to the CPU
//!   count bounds how many hashes run at once (a login storm queues instead of exhausting RAM).
//! - Access tokens are HS256 JWTs (`sub`, `roles`, `iat`, `exp`, `typ: "access"`). They are
//!   checked without touching the store, so [`Caller`] extraction is cheap on the hot path: the
//!   keys and the [`Validation`] are built once. Expiry is checked against the injected
//!   [`Clock`](crate::clock::Clock) with zero leeway, never against the system time, so tests
//!   drive it with a manual clock. A token's roles are fixed when it is minted: a role change
//!   reaches the caller with the next refresh (at most one access TTL later).
//! - Refresh tokens are 32 random bytes, hex-encoded; only their SHA-256 is stored, so a leaked
//!   database cannot be replayed. Each works once: refreshing marks it used and issues a new
//!   pair with the user's current roles (rotation). The tokens descending from one login form a
//!   *family*; presenting a used token again means two parties hold the chain (OAuth 2.0
//!   Security BCP, reuse detection), so the whole family is revoked, the newest token too.
//!   Logout revokes its token's family. A revoked family's tokens never work again.
//! - A token minted by `surge token` may name any user id; the signature is the authority, and
//!   no user row is needed (API.md "Conventions").
//! - Login answers unknown emails and wrong passwords identically, and still spends one hash
//!   verification for an unknown email so timing does not reveal which emails exist.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::clock::SharedClock;
use crate::config::AuthSettings;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::persistence::{RefreshUse, RevocationReason, SharedStore, StoreError, User};
use crate::secrets;

const PASSWORD_LEN_MIN: usize = 8;
/// Bounds the work one registration can ask Argon2 to do.
const PASSWORD_LEN_MAX: usize = 1024;
const NAME_LEN_MAX: usize = 200;
/// RFC 5321's limit on a forward path.
const EMAIL_LEN_MAX: usize = 254;
const USER_ID_LEN_MAX: usize = 64;
const REFRESH_TOKEN_BYTES: usize = 32;
/// In a path where a user id goes (`/wallets/me`), the caller; so no user may be called this.
pub const ME: &str = "me";
const BOOTSTRAP_ADMIN_NAME: &str = "Administrator";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Customer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}' (expected customer, operator or admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// The authenticated caller of a request, taken from its access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<Role>,
    /// When the token stops being valid (a WebSocket session ends then).
    pub expires_at_ms: i64,
}

impl Caller {
    /// Admins can do everything operators can.
    pub fn is_operator(&self) -> bool {
        self.roles
            .iter()
            .any(|role| matches!(role, Role::Operator | Role::Admin))
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the operator or admin role"))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }

    /// Customers see only their own things; operators see everyone's.
    pub fn can_see(&self, owner_user_id: &str) -> bool {
        self.user_id == owner_user_id || self.is_operator()
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(caller_from_request(req))
    }
}

fn caller_from_request(req: &HttpRequest) -> Result<Caller, ApiError> {
    let service = req
        .app_data::<web::Data<AuthService>>()
        .ok_or_else(|| ApiError::internal("AuthService is not registered as app data"))?;
    service.verify(bearer_token(req)?)
}

/// The bearer token of the `Authorization` header: the only place a token is read from. (The
/// WebSocket handshake's `?access_token=` is moved into this header by
/// `http::security::guard`, and refused on every other route.)
fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("a bearer access token is required"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(unauthorized(
            "the Authorization header must be 'Bearer <token>'",
        )),
    }
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, detail)
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "the email or password is wrong",
    )
}

/// Registered users get a UUIDv7 (whose hyphenated form fits this alphabet); CLI tokens may
/// name any id of the same alphabet except [`ME`], which paths use for the caller.
pub fn is_valid_user_id(id: &str) -> bool {
    id != ME
        && (1..=USER_ID_LEN_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenKind {
    Access,
}

/// What is signed. `iat` and `exp` are seconds since the epoch (JWT NumericDate).
#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    roles: &'a [Role],
    iat: i64,
    exp: i64,
    typ: TokenKind,
}

/// What is verified. Roles decode straight into [`Role`] and `typ` into a one-variant enum, so
/// an unknown role or a non-access token fails decoding without extra checks or allocations.
#[derive(Deserialize)]
struct VerifiedClaims {
    sub: String,
    roles: Vec<Role>,
    exp: i64,
    #[allow(dead_code)] // Present only so that decoding rejects other token kinds.
    typ: TokenKind,
}

/// HS256 keys and validation rules, built once per secret.
struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl AccessTokens {
    fn new(secret: &str) -> AccessTokens {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the injected clock in `verify`, not the system time.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        AccessTokens {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    fn mint(
        &self,
        user_id: &str,
        roles: &[Role],
        ttl_secs: u64,
        now_ms: i64,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(
            is_valid_user_id(user_id),
            "user id must match [A-Za-z0-9._-]{{1,64}}"
        );
        anyhow::ensure!(ttl_secs > 0, "a token needs a positive lifetime");
        let iat = now_ms.div_euclid(1000);
        let ttl_secs = i64::try_from(ttl_secs).context("ttl_secs is too large")?;
        let exp = iat.checked_add(ttl_secs).context("ttl_secs is too large")?;
        let claims = MintClaims {
            sub: user_id,
            roles,
            iat,
            exp,
            typ: TokenKind::Access,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    fn verify(&self, token: &str, now_ms: i64) -> Result<Caller, ApiError> {
        let claims =
            jsonwebtoken::decode::<VerifiedClaims>(token, &self.decoding, &self.validation)
                .map_err(|_| unauthorized("the access token is invalid"))?
                .claims;
        // Zero leeway: a token is dead from the first millisecond of its `exp` second.
        if now_ms >= claims.exp.saturating_mul(1000) {
            return Err(unauthorized("the access token has expired"));
        }
        if !is_valid_user_id(&claims.sub) {
            return Err(unauthorized("the access token names an invalid user id"));
        }
        Ok(Caller {
            user_id: claims.sub,
            roles: claims.roles,
            expires_at_ms: claims.exp.saturating_mul(1000),
        })
    }
}

/// Mints an access token signed with the configured secret (the service and `surge token`).
pub fn mint_access_token(
    settings: &AuthSettings,
    user_id: &str,
    roles: &[Role],
    ttl_secs: u64,
    now_ms: i64,
) -> anyhow::Result<String> {
    AccessTokens::new(&settings.jwt_secret).mint(user_id, roles, ttl_secs, now_ms)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

/// A user as the API shows it. `email` and `name` are null for a CLI-minted token's subject,
/// which has no user row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<Role>,
}

impl UserView {
    fn of(user: &User) -> UserView {
        UserView {
            id: user.id.clone(),
            email: Some(user.email.clone()),
            name: Some(user.name.clone()),
            roles: roles_of(user),
        }
    }
}

/// Unknown role names in a row (written by a newer version) grant nothing rather than fail.
fn roles_of(user: &User) -> Vec<Role> {
    user.roles
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect()
}

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|role| role.as_str().to_string()).collect()
}

fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Unavailable(reason) => {
            tracing::warn!(%reason, "user store unavailable");
            ApiError::unavailable("the user store is unavailable")
        }
        other => ApiError::internal(other),
    }
}

fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// One '@' with something before it, and a dot inside the domain. Deliverability is the
/// mail server's business, not ours.
fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= EMAIL_LEN_MAX
        && !local.is_empty()
        && !domain.contains('@')
        && !email.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// Every problem at once, so a form can show them all. Takes the normalised email and the
/// trimmed name.
fn registration_errors(email: &str, password: &str, name: &str) -> Vec<FieldError> {
    let password_len = password.chars().count();
    let name_len = name.chars().count();
    let checks = [
        (
            !is_plausible_email(email),
            "email",
            "must be an email address".to_string(),
        ),
        (
            password_len < PASSWORD_LEN_MIN,
            "password",
            format!("must be at least {PASSWORD_LEN_MIN} characters"),
        ),
        (
            password_len > PASSWORD_LEN_MAX,
            "password",
            format!("must be at most {PASSWORD_LEN_MAX} characters"),
        ),
        (name_len == 0, "name", "must not be empty".to_string()),
        (
            !crate::text::is_plain(name, false),
            "name",
            format!("must be {}", crate::text::PLAIN_RULE),
        ),
        (
            name_len > NAME_LEN_MAX,
            "name",
            format!("must be at most {NAME_LEN_MAX} characters"),
        ),
    ];
    checks
        .into_iter()
        .filter(|(failed, _, _)| *failed)
        .map(|(_, field, message)| FieldError {
            field: field.to_string(),
            message,
        })
        .collect()
}

/// At least one role; duplicates collapse.
fn parse_roles(names: &[String]) -> Result<Vec<Role>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::validation("roles", "must name at least one role"));
    }
    let mut roles = Vec::with_capacity(Role::ALL.len());
    for name in names {
        let role: Role = name
            .parse()
            .map_err(|err: UnknownRole| ApiError::validation("roles", err.to_string()))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

fn hash_password_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password_blocking(
    password: &str,
    hash: &str,
) -> Result<bool, argon2::password_hash::Error> {
    let parsed = PasswordHash::new(hash)?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Verified against for unknown emails, so they cost as much as a wrong password. Computed
/// once, with the same parameters as real hashes.
fn dummy_hash() -> &'static str {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    DUMMY_HASH.get_or_init(|| {
        hash_password_blocking("surge-timing-equaliser").expect("hashing a constant password works")
    })
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Only this is stored: the database never holds a usable refresh token.
fn refresh_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a presented refresh token earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshVerdict {
    /// It was marked used just now: issue its successor in the same family.
    Rotate,
    /// Used before and its family still live: someone replays it, so end the family.
    RevokeFamily,
    /// Unknown, expired, or of a revoked family: 401 and nothing more.
    Reject,
}

fn refresh_verdict(found: &RefreshUse) -> RefreshVerdict {
    match found {
        RefreshUse::Marked(_) => RefreshVerdict::Rotate,
        RefreshUse::Refused(token) if !token.family_revoked && token.used_at_ms.is_some() => {
            RefreshVerdict::RevokeFamily
        }
        RefreshUse::Refused(_) | RefreshUse::Unknown => RefreshVerdict::Reject,
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// Registration, login, token rotation and roles. Shared by handlers as `web::Data`.
pub struct AuthService {
    store: SharedStore,
    clock: SharedClock,
    settings: AuthSettings,
    tokens: AccessTokens,
    /// Bounds concurrent Argon2 runs (each takes ~19 MiB) to the number of CPUs.
    hash_permits: Semaphore,
}

impl AuthService {
    pub fn new(store: SharedStore, clock: SharedClock, settings: AuthSettings) -> AuthService {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        AuthService {
            store,
            clock,
            tokens: AccessTokens::new(&settings.jwt_secret),
            settings,
            hash_permits: Semaphore::new(cpus),
        }
    }

    /// Registers a customer. 422 with every invalid field, 409 `EMAIL_TAKEN`.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<UserView, ApiError> {
        let email = normalise_email(email);
        let name = name.trim();
        let errors = registration_errors(&email, password, name);
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(errors));
        }
        let password_hash = self.hash_password(password).await?;
        let user = self.new_user(email, name.to_string(), password_hash, &[Role::Customer]);
        match self.store.user_insert(&user).await {
            Ok(()) => Ok(UserView::of(&user)),
            Err(StoreError::Conflict(_)) => Err(ApiError::new(
                ErrorCode::EmailTaken,
                "this email is already registered",
            )),
            Err(err) => Err(store_error(err)),
        }
    }

    /// The same 401 `INVALID_CREDENTIALS` for an unknown email and a wrong password.
    pub async fn login(&self, email: &str, password: &str) -> Result<TokenPair, ApiError> {
        let user = self
            .store
            .user_by_email(&normalise_email(email))
            .await
            .map_err(store_error)?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let password_matches = self.verify_password(password, stored_hash).await?;
        match user {
            Some(user) if password_matches => {
                let family_id = uuid::Uuid::now_v7().to_string();
                self.issue_pair(&user.id, &roles_of(&user), &family_id)
                    .await
            }
            _ => Err(invalid_credentials()),
        }
    }

    /// Marks the refresh token used (it never works again) and issues a new pair in its
    /// family with the user's current roles. 401 when it is unknown, expired or of a revoked
    /// family; a token used before also revokes its family (reuse after rotation), so the
    /// newest token of that login stops working too.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, ApiError> {
        let rejected = || unauthorized("the refresh token is unknown, used or expired");
        let token_hash = refresh_token_hash(refresh_token);
        let found = self
            .store
            .refresh_use(&token_hash, self.clock.now_ms())
            .await
            .map_err(store_error)?;
        let token = match (refresh_verdict(&found), found) {
            (RefreshVerdict::Rotate, RefreshUse::Marked(token)) => token,
            (RefreshVerdict::RevokeFamily, _) => {
                self.revoke_family(&token_hash, RevocationReason::Reuse)
                    .await?;
                return Err(rejected());
            }
            _ => return Err(rejected()),
        };
        let user = self
            .store
            .user_by_id(&token.user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(rejected)?;
        self.issue_pair(&user.id, &roles_of(&user), &token.family_id)
            .await
    }

    /// Revokes the token's family: that login's chain ends. Unknown tokens and families
    /// already revoked are fine: the outcome is the same.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), ApiError> {
        self.revoke_family(&refresh_token_hash(refresh_token), RevocationReason::Logout)
            .await
    }

    /// Deletes refresh tokens past their expiry, and revocations older than a refresh token
    /// lives (their families have expired). Returns the rows deleted.
    pub async fn purge_expired_refresh(&self) -> Result<u64, StoreError> {
        let now_ms = self.clock.now_ms();
        let revoked_by_ms = now_ms.saturating_sub(secs_to_ms(self.settings.refresh_ttl_secs));
        self.store.refresh_purge(now_ms, revoked_by_ms).await
    }

    async fn revoke_family(
        &self,
        token_hash: &str,
        reason: RevocationReason,
    ) -> Result<(), ApiError> {
        let revoked = self
            .store
            .refresh_revoke(token_hash, self.clock.now_ms(), reason)
            .await
            .map_err(store_error)?;
        // Ids only: the token itself never reaches a log.
        match revoked {
            Some(r) if reason == RevocationReason::Reuse => tracing::warn!(
                user_id = %r.user_id, family_id = %r.family_id,
                "refresh token reused after rotation; its family is revoked"
            ),
            Some(r) => tracing::info!(
                user_id = %r.user_id, family_id = %r.family_id, reason = reason.as_str(),
                "refresh token family revoked"
            ),
            None => {}
        }
        Ok(())
    }

    /// The caller's user; for a CLI-minted subject without a row, what the token says.
    pub async fn me(&self, caller: &Caller) -> Result<UserView, ApiError> {
        let user = self
            .store
            .user_by_id(&caller.user_id)
            .await
            .map_err(store_error)?;
        Ok(match user {
            Some(user) => UserView::of(&user),
            None => UserView {
                id: caller.user_id.clone(),
                email: None,
                name: None,
                roles: caller.roles.clone(),
            },
        })
    }

    /// Replaces a user's roles. 422 for an empty list or unknown names, 404 for no such user.
    pub async fn set_roles(&self, user_id: &str, roles: Vec<String>) -> Result<UserView, ApiError> {
        let roles = parse_roles(&roles)?;
        let user = self
            .store
            .user_set_roles(user_id, &role_names(&roles))
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("no user with id '{user_id}'")))?;
        Ok(UserView::of(&user))
    }

    /// Checks an access token's signature, kind and expiry. Touches no store.
    pub fn verify(&self, access_token: &str) -> Result<Caller, ApiError> {
        self.tokens.verify(access_token, self.clock.now_ms())
    }

    /// Creates the configured admin unless that email exists. True when it was created. With
    /// no configured password, one is generated into `data_dir` (crate::secrets) and only its
    /// path is logged.
    pub async fn ensure_bootstrap_admin(&self, data_dir: &std::path::Path) -> anyhow::Result<bool> {
        let email = normalise_email(&self.settings.bootstrap_admin_email);
        if email.is_empty() {
            tracing::info!("no bootstrap admin configured");
            return Ok(false);
        }
        if let Some(admin) = self.store.user_by_email(&email).await? {
            self.replace_published_password(&admin, data_dir).await?;
            return Ok(false);
        }
        let (password, source) =
            secrets::bootstrap_admin_password(&self.settings, data_dir, PASSWORD_LEN_MIN)?;
        let password_hash = self.hash_password(&password).await?;
        let user = self.new_user(
            email,
            BOOTSTRAP_ADMIN_NAME.to_string(),
            password_hash,
            &[Role::Admin],
        );
        match self.store.user_insert(&user).await {
            Ok(()) => {
                match source.file() {
                    Some(path) => tracing::warn!(
                        email = %user.email,
                        password_file = %path.display(),
                        "bootstrap admin created; its generated password is in the file \
                         (readable by this user only)"
                    ),
                    None => tracing::info!(email = %user.email, "bootstrap admin created"),
                }
                Ok(true)
            }
            // Another node created it between our lookup and insert.
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// An install made before passwords were generated still has the bootstrap admin with the
    /// password the repository once published: anyone could sign in as admin. Such an admin
    /// gets a new password (the configured one, else one generated into the data dir) before
    /// the server serves.
    async fn replace_published_password(
        &self,
        admin: &User,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        let stored = Some(admin.password_hash.clone());
        let published = secrets::PUBLISHED_ADMIN_PASSWORD;
        if !self.verify_password(published, stored).await? {
            return Ok(());
        }
        let (password, source) =
            secrets::bootstrap_admin_password(&self.settings, data_dir, PASSWORD_LEN_MIN)?;
        let password_hash = self.hash_password(&password).await?;
        self.store
            .user_set_password_hash(&admin.id, &password_hash)
            .await?;
        let path = source.file().map_or_else(
            || "auth.bootstrap_admin_password".to_string(),
            |path| path.display().to_string(),
        );
        tracing::warn!(
            email = %admin.email,
            new_password_in = %path,
            "the bootstrap admin still had the password published in the surge repository; \
             it has been replaced"
        );
        Ok(())
    }

    fn new_user(&self, email: String, name: String, password_hash: String, roles: &[Role]) -> User {
        User {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            name,
            password_hash,
            roles: role_names(roles),
            created_at_ms: self.clock.now_ms(),
        }
    }

    async fn issue_pair(
        &self,
        user_id: &str,
        roles: &[Role],
        family_id: &str,
    ) -> Result<TokenPair, ApiError> {
        let now_ms = self.clock.now_ms();
        let access_ttl_secs = self.settings.access_ttl_secs;
        let access_token = self
            .tokens
            .mint(user_id, roles, access_ttl_secs, now_ms)
            .map_err(ApiError::internal)?;
        let refresh_token = new_refresh_token();
        let expires_at_ms = now_ms.saturating_add(secs_to_ms(self.settings.refresh_ttl_secs));
        self.store
            .refresh_insert(
                &refresh_token_hash(&refresh_token),
                user_id,
                family_id,
                expires_at_ms,
            )
            .await
            .map_err(store_error)?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            token_type: "Bearer".to_string(),
            expires_in: access_ttl_secs,
        })
    }

    async fn hash_password(&self, password: &str) -> Result<String, ApiError> {
        let _permit = self
            .hash_permits
            .acquire()
            .await
            .expect("the hash semaphore is never closed");
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_password_blocking(&password))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// With no stored hash, verifies against the dummy hash and answers false.
    async fn verify_password(
        &self,
        password: &str,
        stored_hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let _permit = self
            .hash_permits
            .acquire()
            .await
            .expect("the hash semaphore is never closed");
        let password = password.to_string();
        tokio::task::spawn_blocking(move || match stored_hash {
            Some(hash) => verify_password_blocking(&password, &hash),
            None => verify_password_blocking(&password, dummy_hash()).map(|_| false),
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    }
}

#[cfg(test)]
mod tests;
