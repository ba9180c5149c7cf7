use std::sync::Arc;

use actix_web::test::TestRequest;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::Settings;
use crate::persistence::{RefreshToken, RevocationReason, SqliteStore, Store};

const START_MS: i64 = 1_700_000_000_000;

/// The defaults with a signing secret made once per test process (a fixed one would be a
/// published secret) and a configured admin password.
fn settings() -> AuthSettings {
    static SECRET: OnceLock<String> = OnceLock::new();
    let mut auth = Settings::defaults().auth;
    auth.jwt_secret = SECRET.get_or_init(new_refresh_token).clone();
    auth.bootstrap_admin_password = "bootstrap-admin-password-1".to_string();
    auth
}

fn caller(roles: &[Role]) -> Caller {
    Caller {
        user_id: "u-1".to_string(),
        roles: roles.to_vec(),
        expires_at_ms: i64::MAX,
    }
}

/// A service on a fresh SQLite file; the temp dir must outlive the service.
async fn service() -> (AuthService, ManualClock, tempfile::TempDir) {
    service_with(settings()).await
}

async fn service_with(settings: AuthSettings) -> (AuthService, ManualClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Settings::defaults().database;
    let store = SqliteStore::open(&dir.path().join("surge.db"), &db)
        .await
        .expect("sqlite opens");
    store.migrate().await.expect("migrations run");
    let clock = ManualClock::new(START_MS);
    let auth = AuthService::new(Arc::new(store), Arc::new(clock.clone()), settings);
    (auth, clock, dir)
}

#[test]
fn access_token_round_trips_subject_and_roles() {
    let tokens = AccessTokens::new(&settings().jwt_secret);
    let roles = [Role::Operator, Role::Admin];
    let token = tokens.mint("user-7", &roles, 60, START_MS).expect("mints");
    let caller = tokens.verify(&token, START_MS + 59_999).expect("valid");
    assert_eq!(caller.user_id, "user-7");
    assert_eq!(caller.roles, roles);
}

#[test]
fn cli_tokens_verify_with_the_same_secret() {
    let token = mint_access_token(&settings(), "load-test-1", &[Role::Customer], 60, START_MS)
        .expect("mints");
    let caller = AccessTokens::new(&settings().jwt_secret)
        .verify(&token, START_MS)
        .expect("valid");
    assert_eq!(caller.user_id, "load-test-1");
}

#[test]
fn tampered_or_foreign_tokens_are_rejected() {
    let tokens = AccessTokens::new(&settings().jwt_secret);
    let token = tokens
        .mint("user-7", &[Role::Customer], 60, START_MS)
        .expect("mints");
    let foreign = AccessTokens::new("another-secret-of-enough-length")
        .mint("user-7", &[Role::Admin], 60, START_MS)
        .expect("mints");
    let parts: Vec<&str> = token.split('.').collect();
    let admin_payload = foreign.split('.').nth(1).expect("three parts");
    // Our header and signature around a payload that claims admin.
    let tampered = format!("{}.{admin_payload}.{}", parts[0], parts[2]);
    // The first character, unlike the last, carries no base64 padding bits.
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    let bad_signature = format!("{}.{}.{flipped}{}", parts[0], parts[1], &parts[2][1..]);
    for bad in [
        tampered.as_str(),
        bad_signature.as_str(),
        foreign.as_str(),
        "junk",
    ] {
        let err = tokens.verify(bad, START_MS).expect_err("rejected");
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }
}

#[test]
fn user_ids_outside_the_alphabet_and_me_cannot_be_minted() {
    let tokens = AccessTokens::new(&settings().jwt_secret);
    for bad in ["", "has space", "a/b", &"x".repeat(65), "me"] {
        assert!(tokens.mint(bad, &[Role::Customer], 60, START_MS).is_err());
    }
    assert!(is_valid_user_id(&uuid::Uuid::now_v7().to_string()));
}

#[tokio::test]
async fn an_access_token_expires_at_its_exp_by_the_injected_clock() {
    let (auth, clock, _dir) = service().await;
    let ttl_ms = secs_to_ms(settings().access_ttl_secs);
    let token = auth
        .tokens
        .mint(
            "u-1",
            &[Role::Customer],
            settings().access_ttl_secs,
            clock.now_ms(),
        )
        .expect("mints");
    clock.advance_ms(ttl_ms - 1);
    auth.verify(&token)
        .expect("valid until the last millisecond");
    clock.advance_ms(1);
    let err = auth.verify(&token).expect_err("expired");
    assert_eq!(err.code, ErrorCode::Unauthorized);
}

#[test]
fn roles_parse_from_their_names_only() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!("Admin".parse::<Role>().is_err());
    assert!(parse_roles(&[]).is_err());
    let roles = parse_roles(&["admin".into(), "admin".into()]).expect("valid");
    assert_eq!(roles, [Role::Admin]);
}

#[test]
fn operators_and_admins_pass_operator_checks_but_only_admins_pass_admin_checks() {
    let customer = caller(&[Role::Customer]);
    let operator = caller(&[Role::Operator]);
    let admin = caller(&[Role::Admin]);
    assert_eq!(
        customer.require_operator().expect_err("customer").code,
        ErrorCode::Forbidden
    );
    operator.require_operator().expect("operator");
    admin.require_operator().expect("admin is an operator");
    assert!(operator.require_admin().is_err());
    admin.require_admin().expect("admin");
    assert!(customer.can_see("u-1"));
    assert!(!customer.can_see("someone-else"));
    assert!(operator.can_see("someone-else"));
}

#[test]
fn a_password_hash_verifies_only_its_password() {
    let hash = hash_password_blocking("correct horse").expect("hashes");
    assert!(hash.starts_with("$argon2id$"));
    assert!(verify_password_blocking("correct horse", &hash).expect("verifies"));
    assert!(!verify_password_blocking("wrong horse", &hash).expect("verifies"));
}

#[tokio::test]
async fn registration_lists_every_invalid_field() {
    let (auth, _clock, _dir) = service().await;
    let err = auth
        .register("not-an-email", "short", "  ")
        .await
        .expect_err("invalid");
    assert_eq!(err.code, ErrorCode::ValidationFailed);
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["email", "password", "name"]);
    for email in ["a@b@c.com", "a@localhost", "@x.com", "a@.com", "a b@x.com"] {
        let err = auth
            .register(email, "long enough", "A")
            .await
            .expect_err(email);
        assert_eq!(err.errors[0].field, "email", "{email}");
    }
    let long_name = "n".repeat(NAME_LEN_MAX + 1);
    let err = auth
        .register("a@x.com", "long enough", &long_name)
        .await
        .expect_err("long name");
    assert_eq!(err.errors[0].field, "name");
}

#[tokio::test]
async fn register_login_refresh_rotation_and_logout_work_together() {
    let (auth, _clock, _dir) = service().await;
    let user = auth
        .register(" Ann@Example.com ", "password-1", " Ann ")
        .await
        .expect("registers");
    assert_eq!(user.email.as_deref(), Some("ann@example.com"));
    assert_eq!(user.name.as_deref(), Some("Ann"));
    assert_eq!(user.roles, [Role::Customer]);
    let pair = auth
        .login("ANN@example.com", "password-1")
        .await
        .expect("logs in");
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.expires_in, settings().access_ttl_secs);
    assert_eq!(
        auth.verify(&pair.access_token).expect("valid").user_id,
        user.id
    );

    let next = auth.refresh(&pair.refresh_token).await.expect("refreshes");
    let err = auth
        .refresh(&pair.refresh_token)
        .await
        .expect_err("rotated");
    assert_eq!(err.code, ErrorCode::Unauthorized);

    auth.logout(&next.refresh_token).await.expect("logs out");
    assert!(auth.refresh(&next.refresh_token).await.is_err());
    auth.logout(&next.refresh_token)
        .await
        .expect("logout is idempotent");
}

fn found(used_at_ms: Option<i64>, family_revoked: bool) -> RefreshToken {
    RefreshToken {
        user_id: "u-1".to_string(),
        family_id: "f-1".to_string(),
        expires_at_ms: START_MS,
        used_at_ms,
        family_revoked,
    }
}

#[test]
fn only_a_used_token_of_a_live_family_revokes_it() {
    let verdict = |found| refresh_verdict(&found);
    assert_eq!(
        verdict(RefreshUse::Marked(found(Some(START_MS), false))),
        RefreshVerdict::Rotate
    );
    assert_eq!(
        verdict(RefreshUse::Refused(found(Some(START_MS), false))),
        RefreshVerdict::RevokeFamily,
        "reuse after rotation"
    );
    assert_eq!(
        verdict(RefreshUse::Refused(found(Some(START_MS), true))),
        RefreshVerdict::Reject,
        "already revoked: nothing more to do"
    );
    assert_eq!(
        verdict(RefreshUse::Refused(found(None, true))),
        RefreshVerdict::Reject,
        "the newest token of a revoked family"
    );
    assert_eq!(
        verdict(RefreshUse::Refused(found(None, false))),
        RefreshVerdict::Reject,
        "unused but refused: expired"
    );
    assert_eq!(verdict(RefreshUse::Unknown), RefreshVerdict::Reject);
}

#[tokio::test]
async fn a_reused_refresh_token_ends_its_login_and_no_other() {
    let (auth, clock, _dir) = service().await;
    let user = auth
        .register("r@x.com", "password-1", "R")
        .await
        .expect("registers");
    let first = auth.login("r@x.com", "password-1").await.expect("logs in");
    let other = auth.login("r@x.com", "password-1").await.expect("logs in");
    let second = auth.refresh(&first.refresh_token).await.expect("rotates");
    let third = auth.refresh(&second.refresh_token).await.expect("rotates");
    clock.advance_ms(1_000);
    let reused = auth
        .refresh(&first.refresh_token)
        .await
        .expect_err("reused");
    assert_eq!(reused.code, ErrorCode::Unauthorized);
    for token in [&second, &third] {
        let err = auth
            .refresh(&token.refresh_token)
            .await
            .expect_err("the family is revoked");
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }
    auth.refresh(&other.refresh_token)
        .await
        .expect("another login's family is unaffected");
    let revocations = auth
        .store
        .refresh_revocations(&user.id, 10)
        .await
        .expect("reads");
    assert_eq!(revocations.len(), 1, "revoked once: {revocations:?}");
    assert_eq!(revocations[0].reason, RevocationReason::Reuse);
    assert_eq!(revocations[0].revoked_at_ms, START_MS + 1_000);
}

#[tokio::test]
async fn the_purge_keeps_live_tokens_and_revocations_that_still_guard_one() {
    let (auth, clock, _dir) = service().await;
    auth.register("p@x.com", "password-1", "P")
        .await
        .expect("registers");
    let ttl_ms = secs_to_ms(settings().refresh_ttl_secs);
    let old = auth.login("p@x.com", "password-1").await.expect("logs in");
    auth.logout(&old.refresh_token).await.expect("logs out");
    clock.advance_ms(ttl_ms / 2);
    let young = auth.login("p@x.com", "password-1").await.expect("logs in");
    assert_eq!(auth.purge_expired_refresh().await.expect("purges"), 0);
    clock.advance_ms(ttl_ms / 2);
    // The old login's token expired: it goes, and its revocation (a TTL old) with it.
    assert_eq!(auth.purge_expired_refresh().await.expect("purges"), 2);
    auth.refresh(&young.refresh_token)
        .await
        .expect("a live token stays");
}

#[tokio::test]
async fn an_expired_refresh_token_is_rejected() {
    let (auth, clock, _dir) = service().await;
    auth.register("a@x.com", "password-1", "A")
        .await
        .expect("registers");
    let pair = auth.login("a@x.com", "password-1").await.expect("logs in");
    clock.advance_ms(secs_to_ms(settings().refresh_ttl_secs));
    let err = auth
        .refresh(&pair.refresh_token)
        .await
        .expect_err("expired");
    assert_eq!(err.code, ErrorCode::Unauthorized);
}

#[tokio::test]
async fn an_email_registers_once_whatever_its_case() {
    let (auth, _clock, _dir) = service().await;
    auth.register("b@x.com", "password-1", "B")
        .await
        .expect("registers");
    let err = auth
        .register("B@X.com", "password-2", "B2")
        .await
        .expect_err("taken");
    assert_eq!(err.code, ErrorCode::EmailTaken);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let (auth, _clock, _dir) = service().await;
    auth.register("c@x.com", "password-1", "C")
        .await
        .expect("registers");
    let wrong_password = auth
        .login("c@x.com", "password-2")
        .await
        .expect_err("wrong");
    let unknown_email = auth
        .login("nobody@x.com", "password-1")
        .await
        .expect_err("unknown");
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(wrong_password.code, ErrorCode::InvalidCredentials);
}

#[tokio::test]
async fn the_bootstrap_admin_is_created_once() {
    let (auth, _clock, dir) = service().await;
    assert!(auth
        .ensure_bootstrap_admin(dir.path())
        .await
        .expect("bootstraps"));
    assert!(!auth
        .ensure_bootstrap_admin(dir.path())
        .await
        .expect("second start"));
    let settings = settings();
    let pair = auth
        .login(
            &settings.bootstrap_admin_email,
            &settings.bootstrap_admin_password,
        )
        .await
        .expect("admin logs in");
    assert!(auth.verify(&pair.access_token).expect("valid").is_admin());
}

#[tokio::test]
async fn role_changes_reach_the_user_on_refresh() {
    let (auth, _clock, _dir) = service().await;
    let user = auth
        .register("d@x.com", "password-1", "D")
        .await
        .expect("registers");
    let pair = auth.login("d@x.com", "password-1").await.expect("logs in");
    let err = auth
        .set_roles(&user.id, vec!["boss".into()])
        .await
        .expect_err("unknown role");
    assert_eq!(err.code, ErrorCode::ValidationFailed);
    let err = auth
        .set_roles("no-such-user", vec!["admin".into()])
        .await
        .expect_err("unknown user");
    assert_eq!(err.code, ErrorCode::NotFound);
    let updated = auth
        .set_roles(&user.id, vec!["operator".into()])
        .await
        .expect("sets");
    assert_eq!(updated.roles, [Role::Operator]);
    let next = auth.refresh(&pair.refresh_token).await.expect("refreshes");
    assert!(auth
        .verify(&next.access_token)
        .expect("valid")
        .is_operator());
}

#[tokio::test]
async fn me_answers_from_the_token_for_a_subject_without_a_row() {
    let (auth, _clock, _dir) = service().await;
    let view = auth.me(&caller(&[Role::Operator])).await.expect("answers");
    assert_eq!(view.id, "u-1");
    assert_eq!(view.email, None);
    assert_eq!(view.roles, [Role::Operator]);
    let json = serde_json::to_value(&view).expect("serialises");
    assert_eq!(json["email"], serde_json::Value::Null);
    assert_eq!(json["roles"][0], "operator");
}

#[tokio::test]
async fn the_caller_comes_from_the_header_only_and_is_401_without_a_token() {
    let (auth, clock, _dir) = service().await;
    let token = auth
        .tokens
        .mint("u-9", &[Role::Customer], 60, clock.now_ms())
        .expect("mints");
    let data = web::Data::new(auth);
    let extract = |req: TestRequest| {
        let req = req.app_data(data.clone()).to_http_request();
        caller_from_request(&req)
    };
    let by_header =
        TestRequest::default().insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
    assert_eq!(extract(by_header).expect("header").user_id, "u-9");
    let by_query = TestRequest::with_uri(&format!("/ws?x=1&access_token={token}"));
    let refused = extract(by_query).expect_err("a URL is no place for a token");
    assert_eq!(refused.code, ErrorCode::Unauthorized);
    let missing = extract(TestRequest::default()).expect_err("missing");
    assert_eq!(missing.code, ErrorCode::Unauthorized);
    let basic = TestRequest::default().insert_header((header::AUTHORIZATION, "Basic abc"));
    assert_eq!(
        extract(basic).expect_err("basic").code,
        ErrorCode::Unauthorized
    );
}

#[tokio::test]
async fn a_bootstrap_admin_without_a_configured_password_gets_a_generated_one() {
    let mut settings = settings();
    settings.bootstrap_admin_password.clear();
    let (auth, _clock, dir) = service_with(settings.clone()).await;
    assert!(auth
        .ensure_bootstrap_admin(dir.path())
        .await
        .expect("bootstraps"));
    let file = dir.path().join(crate::secrets::ADMIN_PASSWORD_FILE);
    let password = std::fs::read_to_string(&file).expect("password file");
    assert!(auth
        .login(&settings.bootstrap_admin_email, "change-me-admin")
        .await
        .is_err());
    let pair = auth
        .login(&settings.bootstrap_admin_email, password.trim())
        .await
        .expect("the generated password logs in");
    assert!(auth.verify(&pair.access_token).expect("valid").is_admin());
}

#[tokio::test]
async fn an_admin_left_with_the_published_password_gets_a_new_one_at_start() {
    let mut settings = settings();
    settings.bootstrap_admin_password.clear();
    let (auth, _clock, dir) = service_with(settings.clone()).await;
    // As an install made before passwords were generated left it.
    let old = hash_password_blocking(crate::secrets::PUBLISHED_ADMIN_PASSWORD).expect("hashes");
    let admin = auth.new_user(
        settings.bootstrap_admin_email.clone(),
        "Administrator".to_string(),
        old,
        &[Role::Admin],
    );
    auth.store.user_insert(&admin).await.expect("inserted");
    let email = &settings.bootstrap_admin_email;
    assert!(auth
        .login(email, crate::secrets::PUBLISHED_ADMIN_PASSWORD)
        .await
        .is_ok());

    assert!(!auth
        .ensure_bootstrap_admin(dir.path())
        .await
        .expect("starts"));
    assert!(auth
        .login(email, crate::secrets::PUBLISHED_ADMIN_PASSWORD)
        .await
        .is_err());
    let file = dir.path().join(crate::secrets::ADMIN_PASSWORD_FILE);
    let password = std::fs::read_to_string(&file).expect("password file");
    auth.login(email, password.trim())
        .await
        .expect("the new one works");
    // An admin whose password is its own is left alone.
    assert!(!auth
        .ensure_bootstrap_admin(dir.path())
        .await
        .expect("starts"));
    auth.login(email, password.trim()).await.expect("unchanged");
}
