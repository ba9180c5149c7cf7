//! `spawn_app()`: a real surge server on port 0 with a temp data dir, on SQLite or on
//! PostgreSQL (each app in its own schema), plus typed request helpers.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::web;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use surge::app::{Services, Surge};
use surge::auth::{mint_access_token, Role};
use surge::clock::{Clock, ManualClock, SharedClock, SystemClock};
use surge::config::{CliOverrides, Settings};
use surge::persistence::{PostgresStore, SharedStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub services: web::Data<Services>,
    pub clock: Option<ManualClock>,
    server: actix_web::dev::ServerHandle,
    schema: Option<String>,
    _data_dir: tempfile::TempDir,
}

/// The PostgreSQL URL for tests, if configured. Set but unreachable fails the test loudly.
pub fn postgres_url() -> Option<String> {
    match std::env::var("SURGE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                // Straight to the stream: the test harness would swallow eprintln! output.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: SURGE_TEST_POSTGRES_URL is not set, so the PostgreSQL runs of the \
                     integration tests pass without running"
                );
            });
            None
        }
    }
}

pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let cli = CliOverrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data_dir.to_path_buf()),
    };
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/test.toml");
    let mut settings =
        Settings::load(Some(std::path::Path::new(file)), &cli).expect("test settings load");
    settings.auth.jwt_secret = test_secret().to_string();
    settings.auth.bootstrap_admin_password = "bootstrap-admin-password-1".to_string();
    settings
}

/// A signing secret made once per test run: a fixed one would be published in the repository,
/// which the server refuses.
pub fn test_secret() -> &'static str {
    static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    })
}

pub struct Options {
    pub manual_clock: bool,
    pub tweak: fn(&mut Settings),
    /// The payment gateway to use (a simulator the test started), if not the default.
    pub gateway_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            manual_clock: false,
            tweak: |_| {},
            gateway_url: None,
        }
    }
}

impl Options {
    /// Time moves only when the test advances `TestApp::clock`.
    pub fn manual_clock() -> Options {
        Options {
            manual_clock: true,
            ..Options::default()
        }
    }

    /// The default settings, changed by `tweak`.
    pub fn tweaked(tweak: fn(&mut Settings)) -> Options {
        Options {
            tweak,
            ..Options::default()
        }
    }
}

/// Starts a server; `None` when the backend is PostgreSQL and no URL is configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(data_dir.path());
    (options.tweak)(&mut settings);
    if let Some(url) = &options.gateway_url {
        settings.gateway.url = url.clone();
    }
    let manual = options
        .manual_clock
        .then(|| ManualClock::new(SystemClock.now_ms()));
    let clock: SharedClock = match &manual {
        Some(manual) => Arc::new(manual.clone()),
        None => Arc::new(SystemClock),
    };
    let schema =
        (backend == Backend::Postgres).then(|| format!("t_{}", uuid::Uuid::now_v7().simple()));
    let store = open_store(schema.as_deref(), &settings, data_dir.path()).await?;
    let surge = Surge::build_on(store, settings.clone(), clock)
        .await
        .expect("surge builds");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = surge.http_server(listener).expect("http server");
    let handle = server.handle();
    tokio::spawn(server);
    Some(TestApp {
        base,
        client: reqwest::Client::new(),
        settings,
        services: surge.services.clone(),
        clock: manual,
        server: handle,
        schema,
        _data_dir: data_dir,
    })
}

/// A migrated store on its own (no server), for tests of the store itself.
pub struct TestStore {
    pub store: SharedStore,
    schema: Option<String>,
    _data_dir: tempfile::TempDir,
}

impl TestStore {
    /// `None` when the backend is PostgreSQL and no URL is configured.
    pub async fn open(backend: Backend) -> Option<TestStore> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let settings = test_settings(data_dir.path());
        let schema =
            (backend == Backend::Postgres).then(|| format!("t_{}", uuid::Uuid::now_v7().simple()));
        let store = open_store(schema.as_deref(), &settings, data_dir.path()).await?;
        Some(TestStore {
            store,
            schema,
            _data_dir: data_dir,
        })
    }

    pub async fn close(self) {
        if let Some(schema) = &self.schema {
            drop_schema(schema).await;
        }
    }
}

/// SQLite in `data_dir`, or PostgreSQL in `schema` when one is given.
async fn open_store(
    schema: Option<&str>,
    settings: &Settings,
    data_dir: &std::path::Path,
) -> Option<SharedStore> {
    let store: SharedStore = match schema {
        None => Arc::new(
            surge::persistence::SqliteStore::open(&data_dir.join("surge.db"), &settings.database)
                .await
                .expect("sqlite opens"),
        ),
        Some(schema) => {
            let url = postgres_url()?;
            Arc::new(
                PostgresStore::open(&url, Some(schema), &settings.database)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("SURGE_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}")
                    }),
            )
        }
    };
    store.migrate().await.expect("migrations run");
    Some(store)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    /// A token valid for an hour.
    pub fn token(&self, user_id: &str, role: Role) -> String {
        self.token_valid_for(user_id, role, 3600)
    }

    pub fn token_valid_for(&self, user_id: &str, role: Role, ttl_secs: u64) -> String {
        let now_ms = self
            .clock
            .as_ref()
            .map_or_else(|| SystemClock.now_ms(), |c| c.now_ms());
        mint_access_token(&self.settings.auth, user_id, &[role], ttl_secs, now_ms).expect("token")
    }

    pub fn operator(&self) -> String {
        self.token("operator-1", Role::Operator)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value, key: Option<&str>) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request is sent")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request is sent")
    }

    pub async fn create_stock(&self, sku: &str, on_hand: i64) -> Value {
        let response = self
            .post(
                "/stock-items",
                &self.operator(),
                json!({"sku": sku, "name": format!("item {sku}"), "on_hand": on_hand, "price": 100}),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("stock json")
    }

    pub async fn stock(&self, sku: &str) -> Value {
        let response = self
            .get(&format!("/stock-items/{sku}"), &self.operator())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("stock json")
    }

    pub async fn order(&self, user: &str, sku: &str, quantity: i64, key: Option<&str>) -> Response {
        let token = self.token(user, Role::Customer);
        self.post(
            "/orders",
            &token,
            json!({"items": [{"sku": sku, "quantity": quantity}]}),
            key,
        )
        .await
    }

    /// Another writer's `Adjusted` event at `seq` of stock item `sku`, written straight to the
    /// store behind the running actor's back (a second node), so the actor's own `seq` clashes.
    pub async fn append_foreign_adjustment(&self, sku: &str, seq: u64, delta: i64) {
        let foreign = surge::actors::stock_item::StockEvent::Adjusted {
            delta,
            reason: "other node".into(),
        };
        let batch = surge::persistence::Batch {
            events: vec![surge::persistence::EventRecord {
                pid: format!("stock_item:{sku}"),
                seq,
                at_ms: 0,
                payload: surge::persistence::codec::encode(1, &foreign),
            }],
            ..Default::default()
        };
        self.services
            .rt
            .store
            .commit(&batch)
            .await
            .expect("foreign append");
    }

    pub async fn stop(self) {
        self.services.rt.live.close_sessions();
        self.server.stop(true).await;
        self.services
            .rt
            .journal
            .barrier()
            .await
            .expect("journal flushes");
        if let Some(schema) = &self.schema {
            drop_schema(schema).await;
        }
    }
}

/// Tests leave no schema behind in the shared test database. Concurrent drops of schemas with
/// many tables can deadlock on PostgreSQL's catalog locks; the loser is retried a few times.
pub async fn drop_schema(schema: &str) {
    let Some(url) = postgres_url() else { return };
    let pool = sqlx::PgPool::connect(&url)
        .await
        .expect("postgres reachable");
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    let mut attempt = 1;
    while let Err(e) = sqlx::query(&sql).execute(&pool).await {
        assert!(
            attempt < 5,
            "schema {schema} not dropped after {attempt} tries: {e}"
        );
        eprintln!("drop schema {schema}, try {attempt}: {e}; retrying");
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
    }
    pool.close().await;
}

/// Asserts a problem+json error with this status and code.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Polls until `check` holds; the work it waits for is asynchronous, not timed.
pub async fn eventually<F, Fut>(check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_that("condition", check).await;
}

/// [`eventually`], naming what did not happen when it panics.
pub async fn eventually_that<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, std::time::Duration::from_secs(5), check).await;
}

/// Polls every 25 ms until `check` holds, for at most `bound` (a bound for a loaded machine,
/// not a timing claim); panics naming `what` if it never does.
pub async fn eventually_within<F, Fut>(what: &str, bound: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what}: not reached within {} s", bound.as_secs_f64());
}

/// Runs one scenario on SQLite and, when configured, on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            use $crate::helpers::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(Backend::Postgres).await;
            }
        }
    };
}
