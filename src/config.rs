//! Layered configuration: `config/default.toml` (compiled in), then an optional `--config`
//! file, then `SURGE_<SECTION>__<KEY>` environment variables, then CLI flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The defaults, kept in one file that users can read.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub journal: JournalSettings,
    pub actors: ActorSettings,
    pub deadlines: DeadlineSettings,
    pub idempotency: IdempotencySettings,
    pub orders: OrderSettings,
    pub queue: QueueSettings,
    pub lists: ListSettings,
    pub ws: WsSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub gateway: GatewaySettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub shutdown_timeout_secs: u64,
    /// A request body not fully received this long after its headers gets 408.
    pub body_read_timeout_secs: u64,
    /// Open connections from one client address (IPv6: one /64); past it, 429 and close.
    pub connections_per_address_max: usize,
    /// Open connections in all; 0 derives it from the open-file limit.
    pub connections_max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    /// PostgreSQL schema to use (created if missing); empty means the server's default.
    pub schema: String,
    pub sqlite_synchronous: SqliteSynchronous,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalSettings {
    pub batch_events_max: usize,
    pub queue_len_max: usize,
    pub snapshot_every_events: u64,
    pub snapshot_part_bytes: usize,
    pub index_every_ms: u64,
    pub index_rows_max: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActorSettings {
    pub inflight_max: usize,
    pub park_after_secs: u64,
    pub passivate_after_secs: u64,
    pub idle_check_interval_secs: u64,
    pub restart_max: u32,
    pub restart_window_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadlineSettings {
    pub scan_interval_ms: u64,
    pub lookahead_secs: u64,
    pub scan_batch_max: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencySettings {
    pub retention_hours: u64,
    pub memory_keys_max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderSettings {
    pub pay_within_secs: u64,
    pub lines_max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueSettings {
    pub admit_per_sec_default: u32,
    pub pass_ttl_secs: u64,
    pub waiting_max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListSettings {
    pub limit_default: u32,
    pub limit_max: u32,
}

/// WebSocket live updates (API.md "WebSocket: live updates").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WsSettings {
    pub sessions_max: usize,
    pub sessions_per_user_max: usize,
    pub topics_per_session_max: usize,
    pub topic_frame_interval_ms: u64,
    pub ops_per_sec: u32,
    pub queue_poll_ms: u64,
    pub frame_bytes_max: usize,
    pub heartbeat_secs: u64,
    pub client_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub attempts_per_minute_per_address: u32,
    pub failed_logins_per_minute_per_email_and_address: u32,
    pub bootstrap_admin_email: String,
    pub bootstrap_admin_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsSettings {
    /// `GET /metrics` wants an operator's bearer token (`surge token --role operator`).
    pub require_token: bool,
}

/// The payment gateway client (API.md "Payment gateway"; `crate::gateway`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewaySettings {
    /// Base URL; `/payments` and `/payments/{id}/refund` are under it.
    pub url: String,
    /// ISO 4217 code of the amounts surge charges.
    pub currency: String,
    /// One attempt, connection and answer included.
    pub timeout_ms: u64,
    /// Retries after a first attempt that failed in a way another try may not.
    pub retries_max: u32,
    /// The first retry waits about this long (doubling, with jitter).
    pub retry_base_ms: u64,
    /// This many failed attempts within `breaker_window_secs` open the breaker.
    pub breaker_failures: u32,
    pub breaker_window_secs: u64,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub breaker_cooldown_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogSettings {
    pub format: String,
    pub level: String,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// Defaults < `file` < environment < CLI.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("SURGE_").split("__"));
        if let Some(listen) = &cli.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(dir) = &cli.data_dir {
            figment = figment.merge(Serialized::default("server.data_dir", dir));
        }
        let settings: Settings = figment.extract()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Settings {
        Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            .expect("config/default.toml is valid")
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.server.body_read_timeout_secs > 0 && self.server.connections_per_address_max > 0,
            "server.body_read_timeout_secs and server.connections_per_address_max must be > 0"
        );
        anyhow::ensure!(
            self.journal.batch_events_max > 0,
            "journal.batch_events_max must be > 0"
        );
        anyhow::ensure!(
            self.journal.queue_len_max > 0,
            "journal.queue_len_max must be > 0"
        );
        anyhow::ensure!(
            self.actors.inflight_max > 0,
            "actors.inflight_max must be > 0"
        );
        // Empty means "generate one in the data dir" (crate::secrets).
        if !self.auth.jwt_secret.is_empty() {
            if let Some(problem) = crate::secrets::jwt_secret_problem(&self.auth.jwt_secret) {
                anyhow::bail!(problem);
            }
        }
        anyhow::ensure!(
            (1..=crate::actors::waiting_room::RATE_MAX_PER_SEC)
                .contains(&self.queue.admit_per_sec_default),
            "queue.admit_per_sec_default must be 1 to 1000000"
        );
        anyhow::ensure!(
            self.queue.pass_ttl_secs > 0 && self.queue.waiting_max > 0,
            "queue.pass_ttl_secs and queue.waiting_max must be > 0"
        );
        anyhow::ensure!(
            self.lists.limit_default <= self.lists.limit_max,
            "lists.limit_default must not exceed lists.limit_max"
        );
        self.gateway.validate()
    }
}

impl GatewaySettings {
    fn validate(&self) -> anyhow::Result<()> {
        crate::gateway::client::base_url(&self.url)?;
        anyhow::ensure!(
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "gateway.currency must be an ISO 4217 code of three capital letters"
        );
        anyhow::ensure!(
            (1..=60_000).contains(&self.timeout_ms),
            "gateway.timeout_ms must be 1 to 60000"
        );
        anyhow::ensure!(
            self.retries_max <= 10 && (1..=10_000).contains(&self.retry_base_ms),
            "gateway.retries_max must be at most 10 and gateway.retry_base_ms 1 to 10000"
        );
        anyhow::ensure!(
            (1..=1_000).contains(&self.breaker_failures),
            "gateway.breaker_failures must be 1 to 1000"
        );
        anyhow::ensure!(
            (1..=86_400).contains(&self.breaker_window_secs)
                && (1..=86_400).contains(&self.breaker_cooldown_secs),
            "gateway.breaker_window_secs and gateway.breaker_cooldown_secs must be 1 to 86400"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let settings = Settings::defaults();
        settings.validate().expect("defaults are valid");
        assert_eq!(
            settings.database.sqlite_synchronous,
            SqliteSynchronous::Full
        );
        assert_eq!(settings.orders.pay_within_secs, 600);
    }

    #[test]
    fn cli_overrides_win_over_the_file() {
        let cli = CliOverrides {
            listen: Some("127.0.0.1:9999".into()),
            data_dir: Some(PathBuf::from("/tmp/surge-x")),
        };
        let settings = Settings::load(None, &cli).expect("loads");
        assert_eq!(settings.server.listen, "127.0.0.1:9999");
        assert_eq!(settings.server.data_dir, PathBuf::from("/tmp/surge-x"));
    }

    #[test]
    fn gateway_settings_out_of_bounds_are_refused() {
        let breaks: [fn(&mut GatewaySettings); 6] = [
            |g| g.url = "ftp://127.0.0.1:8090".into(),
            |g| g.url = "not a url".into(),
            |g| g.currency = "krw".into(),
            |g| g.timeout_ms = 0,
            |g| g.retries_max = 11,
            |g| g.breaker_failures = 0,
        ];
        for broken in breaks {
            let mut settings = Settings::defaults();
            broken(&mut settings.gateway);
            assert!(settings.validate().is_err(), "{:?}", settings.gateway);
        }
    }
}
