//! Bounds on open connections, so that clients holding connections open (slowly, or just by
//! not closing them) cannot take every file descriptor and with them `/healthz`, the journal
//! and the store.
//!
//! - In all: `server.connections_max`, or, when 0, the open-file limit (its soft limit raised to
//!   the hard one at start-up) less [`FILES_RESERVED`] for the journal, indexes and the store's
//!   sockets. Past it, actix stops accepting and new connections wait in the listen backlog.
//! - Per client address (IPv6 by /64, as the auth throttle counts): past
//!   `server.connections_per_address_max`, a request on the extra connection gets 429
//!   `RATE_LIMITED` and its connection is closed, so one client cannot fill the global bound.

use std::any::Any;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::dev::{Extensions, ServiceRequest};
use actix_web::http::ConnectionType;
use actix_web::{HttpResponse, ResponseError};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::throttle::address_key;
use crate::error::ApiError;

/// Files kept free of connections when the bound is derived from the open-file limit: the
/// journal and its index files, the store's connection pool, the listener, logs.
pub const FILES_RESERVED: u64 = 256;

/// The least the derived bound may be, however low the open-file limit: a server that takes no
/// connection is no use, and a limit that low is a misconfiguration to log, not to obey.
pub const CONNECTIONS_FLOOR: usize = 64;

/// The open-file limit assumed when it cannot be read (the usual soft default).
const OPEN_FILES_ASSUMED: u64 = 1024;

/// Open connections in all: `configured`, or when 0, what the open-file limit leaves.
pub fn connections_max(configured: usize, open_files: u64) -> usize {
    if configured > 0 {
        return configured;
    }
    let free = open_files.saturating_sub(FILES_RESERVED);
    usize::try_from(free)
        .unwrap_or(usize::MAX)
        .max(CONNECTIONS_FLOOR)
}

/// actix bounds connections per worker: each gets an equal share, rounded down so the sum
/// stays within `total`, and at least one.
pub fn per_worker(total: usize, workers: usize) -> usize {
    (total / workers.max(1)).max(1)
}

/// HTTP workers: `configured`, or as actix defaults, one per core.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Raises the soft open-file limit to the hard one (the soft default, often 1024, is far below
/// what a server of many connections needs) and returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            let (before, hard) = before.unwrap_or((soft, soft));
            tracing::info!(
                before,
                soft,
                hard,
                "open-file limit raised to its hard limit"
            );
            soft
        }
        Err(error) => {
            let soft = before.map_or(OPEN_FILES_ASSUMED, |(soft, _)| soft);
            tracing::warn!(%error, soft, "cannot raise the open-file limit");
            soft
        }
    }
}

/// Open connections, in all and per client address.
pub struct ConnectionCounts {
    per_address_max: usize,
    /// Only addresses with open connections: an entry goes when its count reaches zero.
    per_address: DashMap<IpAddr, usize>,
    open: AtomicUsize,
    refused: AtomicU64,
}

impl ConnectionCounts {
    pub fn new(per_address_max: usize) -> Arc<ConnectionCounts> {
        Arc::new(ConnectionCounts {
            per_address_max,
            per_address: DashMap::new(),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Counts in a connection from `address`; the guard counts it out when it is dropped.
    pub fn open(self: &Arc<Self>, address: Option<IpAddr>) -> ConnectionGuard {
        let key = address_key(address);
        let from_address = {
            let mut count = self.per_address.entry(key).or_insert(0);
            *count += 1;
            *count
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        let over_cap = from_address > self.per_address_max;
        if over_cap {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ConnectionGuard {
            counts: self.clone(),
            key,
            over_cap,
        }
    }

    fn close(&self, key: IpAddr) {
        if let Entry::Occupied(mut entry) = self.per_address.entry(key) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open_total(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections open now from `address` (its /64 for IPv6).
    pub fn open_from(&self, address: IpAddr) -> usize {
        self.per_address
            .get(&address_key(Some(address)))
            .map_or(0, |count| *count)
    }

    /// Addresses with connections open: what the per-address counts keep in memory.
    pub fn addresses(&self) -> usize {
        self.per_address.len()
    }

    /// Connections refused since start-up because their address was past its bound.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Lives in a connection's extensions, as long as the connection.
pub struct ConnectionGuard {
    counts: Arc<ConnectionCounts>,
    key: IpAddr,
    over_cap: bool,
}

impl ConnectionGuard {
    /// The connection opened when its address already had its bound open.
    pub fn over_cap(&self) -> bool {
        self.over_cap
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counts.close(self.key);
    }
}

/// For `HttpServer::on_connect`: counts in each accepted connection, and shuts one past its
/// address's bound at once. Waiting for its request (to answer 429) would let a client that
/// sends nothing hold a slot of the global bound for the whole header timeout, and by
/// reconnecting fill it.
pub fn on_connect(counts: &Arc<ConnectionCounts>, io: &dyn Any, extensions: &mut Extensions) {
    let stream = io.downcast_ref::<actix_web::rt::net::TcpStream>();
    let address = stream
        .and_then(|stream| stream.peer_addr().ok())
        .map(|peer| peer.ip());
    let guard = counts.open(address);
    if guard.over_cap() {
        if let Some(stream) = stream {
            // Both ways: actix reads end-of-stream and drops the connection; the client sees
            // it closed. A failure leaves the 429 of `over_cap_refusal` as the answer.
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
        }
    }
    extensions.insert(guard);
}

/// The answer for a request on a connection past its address's bound (one whose shutdown at
/// connect failed): 429, then close. `None` for every other connection. (Called by `http::security::guard`, the outermost layer, so a
/// refused request costs no more than this.)
pub fn over_cap_refusal(req: &ServiceRequest) -> Option<HttpResponse> {
    let guard = req.conn_data::<ConnectionGuard>()?;
    if !guard.over_cap() {
        return None;
    }
    let error = ApiError::rate_limited(
        "too many open connections from this address; close one and retry",
        1,
    );
    let mut response = error.error_response();
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_bound_leaves_files_for_the_journal_and_has_a_floor() {
        assert_eq!(connections_max(0, 20_000), 20_000 - 256);
        assert_eq!(connections_max(0, 1024), 768);
        assert_eq!(connections_max(0, 300), CONNECTIONS_FLOOR);
        assert_eq!(connections_max(0, 0), CONNECTIONS_FLOOR);
        assert_eq!(connections_max(0, u64::MAX), usize::MAX - 256);
        assert_eq!(connections_max(5_000, 1024), 5_000, "configured wins");
    }

    #[test]
    fn each_worker_gets_an_equal_share_within_the_total() {
        assert_eq!(per_worker(768, 2), 384);
        assert_eq!(per_worker(769, 2), 384);
        assert_eq!(per_worker(100, 3), 33);
        assert_eq!(per_worker(2, 4), 1, "at least one");
        assert_eq!(per_worker(10, 0), 10);
    }

    #[test]
    fn past_its_bound_an_address_is_refused_until_one_closes() {
        let counts = ConnectionCounts::new(2);
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        let first = counts.open(here);
        let second = counts.open(here);
        assert!(!first.over_cap() && !second.over_cap());
        let third = counts.open(here);
        assert!(third.over_cap());
        assert!(!counts.open(Some(IpAddr::from([10, 0, 0, 2]))).over_cap());
        assert_eq!(counts.refused_total(), 1);
        drop(third);
        drop(first);
        assert!(!counts.open(here).over_cap(), "one closed, one may open");
        assert_eq!(counts.open_total(), 1, "only `second` is still open");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_memory_follows_open_connections() {
        let counts = ConnectionCounts::new(1);
        let host = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        let first = counts.open(host(1));
        assert!(counts.open(host(2)).over_cap(), "same /64");
        let other = counts.open(Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])));
        assert!(!other.over_cap());
        assert_eq!(counts.addresses(), 2);
        drop((first, other));
        assert_eq!(counts.addresses(), 0);
        assert_eq!(counts.open_total(), 0);
    }
}
