//! The `surge` command: `serve` runs the server, `token` mints an access token, `gateway-sim`
//! runs the payment gateway simulator.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use surge::auth::{mint_access_token, Role};
use surge::clock::{Clock, OffsetClock, SystemClock};
use surge::config::{CliOverrides, Settings};
use surge::secrets;

/// mimalloc: the hot path allocates many small short-lived values, and passivated actors'
/// memory goes back to the OS instead of staying in glibc's arenas.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "surge",
    version,
    about = "Flash sales, ticket drops and promotions on durable actors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Where the embedded SQLite journal lives (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Runs the server's clock this far ahead of the system clock. For tests that restart
        /// the binary "later" (crash tests of expiry) instead of sleeping.
        #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
        clock_offset_ms: i64,
    },
    /// Print an access token for any user id, signed with the configured secret (or the one
    /// generated in the data dir).
    Token {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        user_id: String,
        #[arg(long, default_value = "customer")]
        role: String,
        #[arg(long)]
        ttl_secs: Option<u64>,
        /// The data dir whose generated signing secret to use when none is configured
        /// (default ./data, as for `serve`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print this many tokens, one per line, for users `{user_id}-1` to `{user_id}-N`
        /// (load tests that need many distinct buyers).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Run the payment gateway simulator (docs/API.md "Payment gateway"), state in memory.
    GatewaySim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
            clock_offset_ms,
        } => {
            let cli = CliOverrides { listen, data_dir };
            let mut settings = Settings::load(config.as_deref(), &cli)?;
            surge::logging::init(&settings.log);
            let source =
                secrets::resolve_jwt_secret(&mut settings.auth, &settings.server.data_dir)?;
            if let secrets::SecretSource::Generated(path) = source {
                tracing::warn!(
                    file = %path.display(),
                    "no auth.jwt_secret configured: generated a random one into the file; set \
                     SURGE_AUTH__JWT_SECRET to share one between nodes"
                );
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve(settings, clock_offset_ms))
        }
        Command::Token {
            config,
            user_id,
            role,
            ttl_secs,
            data_dir,
            count,
        } => {
            let cli = CliOverrides {
                listen: None,
                data_dir,
            };
            let mut settings = Settings::load(config.as_deref(), &cli)?;
            let source =
                secrets::resolve_jwt_secret(&mut settings.auth, &settings.server.data_dir)?;
            if let secrets::SecretSource::Generated(path) = source {
                eprintln!(
                    "surge: generated a new signing secret in {}",
                    path.display()
                );
            }
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let ttl_secs = ttl_secs.unwrap_or(settings.auth.access_ttl_secs);
            let now_ms = SystemClock.now_ms();
            let users: Vec<String> = match count {
                None => vec![user_id],
                Some(n) => (1..=n).map(|i| format!("{user_id}-{i}")).collect(),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for user in users {
                let token = mint_access_token(&settings.auth, &user, &[role], ttl_secs, now_ms)?;
                writeln!(out, "{token}")?;
            }
            out.flush()?;
            Ok(())
        }
        Command::GatewaySim { listen } => {
            surge::logging::init(&Settings::defaults().log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(gateway_sim(&listen))
        }
    }
}

/// Serves the simulator until SIGTERM or SIGINT.
async fn gateway_sim(listen: &str) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(listen)?;
    let (address, server) = surge::gateway::sim::spawn(listener)?;
    // Tests and scripts that listen on port 0 read the address from this line.
    println!("surge gateway-sim listening on http://{address}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    server.stop(true).await;
    Ok(())
}

async fn serve(settings: Settings, clock_offset_ms: i64) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(&settings.server.listen)?;
    let clock = OffsetClock {
        offset_ms: clock_offset_ms,
    };
    let surge = surge::app::Surge::build(settings, Arc::new(clock)).await?;
    // Tests and scripts that listen on port 0 read the address from this line.
    println!("surge listening on http://{}", listener.local_addr()?);
    tracing::info!(
        listen = %listener.local_addr()?,
        store = surge.services.rt.store.backend(),
        "surge is serving"
    );
    let server = surge.http_server(listener)?;
    surge.stop_on_signal(server.handle());
    server.await?;
    tracing::info!("HTTP drained; flushing the journal");
    surge.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}
