//! Builds surge from its settings (store, journal writer, regions, deadline scheduler, auth)
//! and serves it over HTTP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::actors::coupon_policy::CouponPolicy;
use crate::actors::order::Order;
use crate::actors::pay_saga::Saga;
use crate::actors::points_charge::PointsCharge;
use crate::actors::product::Product;
use crate::actors::seat_map::SeatMap;
use crate::actors::stock_item::StockItem;
use crate::actors::time_sale::TimeSale;
use crate::actors::waiting_room::WaitingRoom;
use crate::actors::wallet::Wallet;
use crate::auth::AuthService;
use crate::checkout::{ChargeParts, Charges, Checkout, PayParts, Payments};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::gateway::Gateway;
use crate::http;
use crate::http::connections::{self, ConnectionCounts};
use crate::http::queue::QueuePasses;
use crate::http::throttle::AuthThrottle;
use crate::persistence::idempotency::Idempotency;
use crate::persistence::journal::JournalHandle;
use crate::persistence::{self, SharedStore};
use crate::runtime::{Runtime, SharedRuntime};
use crate::supervisors::deadlines::DeadlineScheduler;
use crate::supervisors::region::{AdminRegion, Region, RegionControl, RegionCounts};
use crate::tickets::TicketCodes;

/// How often idempotency records past their retention are purged.
const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often expired refresh tokens and stale revocations are purged.
const REFRESH_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// What handlers reach: the runtime, one region per entity kind, the coordinator of orders
/// across them, and the payment gateway client.
pub struct Services {
    pub rt: SharedRuntime,
    pub checkout: Checkout,
    /// Payment sagas: starts, drives and resumes them.
    pub payments: Payments,
    /// Points charges (points bought by card): drives and resumes them.
    pub charges: Charges,
    /// The one client of the payment gateway, with its circuit breaker: whoever charges or
    /// refunds (the checkout saga, points charges) holds a clone of this `Arc`, so they share
    /// the breaker.
    pub gateway: Arc<Gateway>,
    pub stock: Region<StockItem>,
    pub orders: Region<Order>,
    pub products: Region<Product>,
    pub sales: Region<TimeSale>,
    pub wallets: Region<Wallet>,
    pub coupons: Region<CouponPolicy>,
    pub rooms: Region<WaitingRoom>,
    pub events: Region<SeatMap>,
    pub sagas: Region<Saga>,
    pub points_charges: Region<PointsCharge>,
    pub passes: QueuePasses,
    /// Signs and reads the ticket codes of confirmed event orders.
    pub tickets: TicketCodes,
    pub idempotency: Idempotency,
    pub auth_throttle: AuthThrottle,
    pub started_at_ms: i64,
    pub metrics: http::metrics::HttpMetrics,
    pub connections: Arc<ConnectionCounts>,
}

impl Services {
    /// Every region, in the order the overview, the console and the admin API list them.
    pub fn admin_regions(&self) -> [&dyn AdminRegion; 10] {
        [
            &self.stock,
            &self.orders,
            &self.products,
            &self.sales,
            &self.wallets,
            &self.coupons,
            &self.rooms,
            &self.events,
            &self.sagas,
            &self.points_charges,
        ]
    }

    pub fn admin_region(&self, kind: &str) -> Option<&dyn AdminRegion> {
        self.admin_regions().into_iter().find(|r| r.kind() == kind)
    }

    pub fn region_counts(&self) -> Vec<RegionCounts> {
        self.admin_regions().iter().map(|r| r.counts()).collect()
    }
}

pub struct Surge {
    pub services: web::Data<Services>,
    pub auth: web::Data<AuthService>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Surge {
    /// Opens the configured store (running migrations) and builds everything on it.
    pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<Surge> {
        let store = persistence::connect(&settings.database, &settings.server.data_dir).await?;
        Surge::build_on(store, settings, clock).await
    }

    /// Builds on a store that is already open and migrated.
    pub async fn build_on(
        store: SharedStore,
        settings: Settings,
        clock: SharedClock,
    ) -> anyhow::Result<Surge> {
        // The library never signs with a weak or published key, whoever built the settings.
        if let Some(problem) = crate::secrets::jwt_secret_problem(&settings.auth.jwt_secret) {
            anyhow::bail!(problem);
        }
        let settings = Arc::new(settings);
        persistence::catch_up_deferred_indexes(store.as_ref()).await?;
        let journal = JournalHandle::start(store.clone(), &settings.journal);
        let rt = Arc::new(Runtime::new(
            store.clone(),
            journal,
            clock.clone(),
            settings.clone(),
        ));
        let stock = Region::<StockItem>::start(rt.clone()).await?;
        let orders = Region::<Order>::start(rt.clone()).await?;
        let products = Region::<Product>::start(rt.clone()).await?;
        let sales = Region::<TimeSale>::start(rt.clone()).await?;
        let wallets = Region::<Wallet>::start(rt.clone()).await?;
        let coupons = Region::<CouponPolicy>::start(rt.clone()).await?;
        let rooms = Region::<WaitingRoom>::start(rt.clone()).await?;
        let events = Region::<SeatMap>::start(rt.clone()).await?;
        let sagas = Region::<Saga>::start(rt.clone()).await?;
        let points_charges = Region::<PointsCharge>::start(rt.clone()).await?;
        let passes = QueuePasses::new(&settings.auth.jwt_secret, settings.queue.pass_ttl_secs);
        let tickets = TicketCodes::new(&settings.auth.jwt_secret);
        let retention_ms = i64::try_from(settings.idempotency.retention_hours * 3_600_000)?;
        let idempotency = Idempotency::new(store.clone(), settings.idempotency.memory_keys_max);
        let warm_up = idempotency.warm_up(clock.now_ms() - retention_ms);
        let auth = AuthService::new(store.clone(), clock.clone(), settings.auth.clone());
        auth.ensure_bootstrap_admin(&settings.server.data_dir)
            .await?;
        let indexer =
            persistence::spawn_indexer(store.clone(), &settings.journal, rt.journal.stats.clone());
        let checkout = Checkout::new(
            rt.clone(),
            stock.clone(),
            orders.clone(),
            sales.clone(),
            events.clone(),
        );
        let gateway = Arc::new(Gateway::new(&settings.gateway, clock.clone())?);
        let payments = Payments::new(PayParts {
            rt: rt.clone(),
            sagas: sagas.clone(),
            orders: orders.clone(),
            wallets: wallets.clone(),
            coupons: coupons.clone(),
            stock: stock.clone(),
            sales: sales.clone(),
            seats: events.clone(),
            gateway: gateway.clone(),
            idempotency: idempotency.clone(),
        });
        let charges = Charges::for_points(ChargeParts {
            rt: rt.clone(),
            charges: points_charges.clone(),
            wallets: wallets.clone(),
            gateway: gateway.clone(),
            idempotency: idempotency.clone(),
        });
        let services = web::Data::new(Services {
            checkout,
            payments,
            charges,
            sagas,
            points_charges,
            gateway,
            started_at_ms: clock.now_ms(),
            metrics: http::metrics::HttpMetrics::new(),
            connections: ConnectionCounts::new(settings.server.connections_per_address_max),
            rt,
            stock,
            orders,
            products,
            sales,
            wallets,
            coupons,
            rooms,
            events,
            passes,
            tickets,
            idempotency,
            auth_throttle: AuthThrottle::new(
                settings.auth.attempts_per_minute_per_address,
                settings.auth.failed_logins_per_minute_per_email_and_address,
            ),
        });
        let scheduler = spawn_deadlines(&services);
        let resume = spawn_resume_payments(services.payments.clone(), services.charges.clone());
        let purge = spawn_idempotency_purge(services.clone().into_inner(), retention_ms);
        let forget = spawn_throttle_forget(services.clone().into_inner());
        let auth = web::Data::new(auth);
        let refresh_purge = spawn_refresh_purge(auth.clone().into_inner());
        Ok(Surge {
            services,
            auth,
            background: vec![
                scheduler,
                purge,
                warm_up,
                indexer,
                forget,
                refresh_purge,
                resume,
            ],
        })
    }

    /// The HTTP server on `listener`; it stops gracefully on SIGTERM or SIGINT.
    pub fn http_server(&self, listener: TcpListener) -> std::io::Result<Server> {
        let settings = self.services.rt.settings.clone();
        let services = self.services.clone();
        let auth = self.auth.clone();
        let body_limit = settings.server.body_limit_bytes;
        let counts = self.services.connections.clone();
        let workers = connections::worker_count(settings.server.workers);
        let open_files = connections::raise_open_file_limit();
        let connections_max =
            connections::connections_max(settings.server.connections_max, open_files);
        tracing::info!(connections_max, workers, "connection bound");
        let server = HttpServer::new(move || {
            actix_web::App::new()
                .app_data(services.clone())
                .app_data(auth.clone())
                .configure(|cfg| http::configure_extractors(cfg, body_limit))
                .wrap(middleware::from_fn(http::head_as_get))
                .wrap(middleware::from_fn(http::metrics::record))
                .wrap(middleware::from_fn(http::request_id_header))
                .wrap(TracingLogger::default())
                .wrap(middleware::from_fn(http::security::guard))
                .configure(http::api_routes)
                .default_service(web::to(http::no_route))
        })
        .on_connect(move |io, extensions| connections::on_connect(&counts, io, extensions))
        // actix's bound is per worker.
        .workers(workers)
        .max_connections(connections::per_worker(connections_max, workers))
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .disable_signals()
        .listen(listener)?;
        Ok(server.run())
    }

    /// For the process that serves (not for servers embedded in tests): on SIGTERM or SIGINT,
    /// close the WebSocket sessions and drain the HTTP server; a second signal stops it at once.
    pub fn stop_on_signal(&self, server: actix_web::dev::ServerHandle) {
        spawn_stop_on_signal(server, self.services.rt.live.clone());
    }

    /// After the HTTP server has drained: stop background work and flush the journal.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        for task in &self.background {
            task.abort();
        }
        // Everything acknowledged is already committed; this waits for what is still queued
        // (deadline steps, passivation snapshots) so the process leaves nothing half-written.
        self.services.rt.journal.barrier().await?;
        Ok(())
    }
}

/// Waits for SIGTERM or SIGINT, closes the WebSocket sessions (they would hold the drain open
/// for its whole timeout), then stops the HTTP server gracefully: no new connections, in-flight
/// requests finish. A second signal stops it without waiting.
fn spawn_stop_on_signal(server: actix_web::dev::ServerHandle, live: Arc<crate::live::LiveHub>) {
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; SIGINT still stops");
                    None
                }
            };
        stop_signal(&mut terminate).await;
        tracing::info!("stop signal received; draining");
        live.close_sessions();
        let drain = server.stop(true);
        tokio::select! {
            _ = drain => {}
            _ = stop_signal(&mut terminate) => {
                tracing::warn!("second stop signal; stopping without waiting for the drain");
                server.stop(false).await;
            }
        }
    });
}

/// The next SIGTERM (when it can be listened for) or SIGINT.
async fn stop_signal(terminate: &mut Option<tokio::signal::unix::Signal>) {
    let sigterm = async {
        match terminate {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = sigterm => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Starts the durable-deadline scheduler over every region.
fn spawn_deadlines(services: &Services) -> tokio::task::JoinHandle<()> {
    let regions: Vec<Arc<dyn RegionControl>> = vec![
        Arc::new(services.stock.clone()),
        Arc::new(services.orders.clone()),
        Arc::new(services.products.clone()),
        Arc::new(services.sales.clone()),
        Arc::new(services.wallets.clone()),
        Arc::new(services.coupons.clone()),
        Arc::new(services.rooms.clone()),
        Arc::new(services.events.clone()),
    ];
    DeadlineScheduler::new(services.rt.clone(), regions).spawn()
}

/// Runs for the life of the process: every minute, drops throttle keys whose budget is full
/// again, so the throttle's memory follows the last minute's attempts.
fn spawn_throttle_forget(services: Arc<Services>) -> tokio::task::JoinHandle<()> {
    spawn_every(Duration::from_secs(60), move || {
        services.auth_throttle.forget_idle();
        std::future::ready(())
    })
}

/// Runs for the life of the process: deletes idempotency records past their retention.
fn spawn_idempotency_purge(
    services: Arc<Services>,
    retention_ms: i64,
) -> tokio::task::JoinHandle<()> {
    spawn_every(IDEMPOTENCY_PURGE_EVERY, move || {
        let services = services.clone();
        async move {
            let before_ms = services.rt.now_ms() - retention_ms;
            if let Err(error) = services.idempotency.purge(before_ms).await {
                tracing::warn!(%error, "idempotency purge failed");
            }
        }
    })
}

/// Runs for the life of the process: deletes expired refresh tokens and the revocations of
/// families that have expired, so both tables hold about one refresh TTL of logins.
fn spawn_refresh_purge(auth: Arc<AuthService>) -> tokio::task::JoinHandle<()> {
    spawn_every(REFRESH_PURGE_EVERY, move || {
        let auth = auth.clone();
        async move {
            if let Err(error) = auth.purge_expired_refresh().await {
                tracing::warn!(%error, "refresh token purge failed");
            }
        }
    })
}

/// Runs `tick` at once and then every `period`, for the life of the process.
fn spawn_every<F, Fut>(period: Duration, mut tick: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            tick().await;
        }
    })
}

/// Drives the payment sagas and points charges a previous run left unfinished, at start-up
/// and then every few seconds (one whose step's outcome stayed unknown stops for now): each
/// ends done or fully given back, whatever step it was at when the process stopped.
fn spawn_resume_payments(payments: Payments, charges: Charges) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(crate::checkout::RESUME_EVERY_SECS);
        let mut first = true;
        loop {
            for (what, resumed) in [
                ("payment sagas", payments.resume_all().await),
                ("points charges", charges.resume_all().await),
            ] {
                match resumed {
                    Ok(resumed) if first && resumed > 0 => {
                        tracing::info!(resumed, "{what} resumed")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "{what} could not be listed"),
                }
            }
            first = false;
            tokio::time::sleep(every).await;
        }
    })
}
