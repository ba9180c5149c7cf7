//! Idempotency keys (API.md "Idempotency"), scoped to the caller.
//!
//! The record of a key (its request fingerprint and the response) is committed in the same
//! transaction as the events the request caused, so a crash never leaves one without the other.
//! In memory we keep the hashes of recent keys: a key whose hash is unknown is new and needs no
//! database look-up while the memory index is complete (it holds every key of the retention
//! window; it is loaded in the background at start-up). A running request holds its key, so a
//! concurrent retry gets 409 in flight.
//!
//! The store's hash index over the records is filled behind a watermark by a background
//! indexer (`ReadModelStore::index_deferred`), so the newest records sit in an unindexed tail. Until
//! memory overflows, every key this process has seen is in memory, and everything written
//! before it started was indexed before it served (`catch_up_deferred_indexes`). So a key
//! memory does not know is either new or old enough to be indexed, and its look-up skips the
//! tail scan ([`Lookup::IndexedOnly`]), whatever the indexer's progress. Once memory has
//! evicted keys, unknown keys are looked up everywhere (index and tail): size
//! `idempotency.memory_keys_max` for the keys of the retention window.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashSet;
use sha2::{Digest, Sha256};

use super::{IdempotencyRecord, Lookup, SharedStore};
use crate::error::{ApiError, ErrorCode};

pub const KEY_LEN_MAX: usize = 255;

/// What the caller must do with a request that carries a key.
pub enum Begin {
    /// First time: run it, holding the guard until the response is known.
    Fresh(InFlightGuard),
    /// Seen before with the same body: answer with the stored response.
    Replay(IdempotencyRecord),
}

#[derive(Clone)]
pub struct Idempotency {
    store: SharedStore,
    in_flight: Arc<DashSet<u64>>,
    index: Arc<MemoryIndex>,
}

/// Hashes of recent keys. It starts incomplete (every miss is looked up in the store) and
/// becomes complete once the keys of the retention window are loaded, unless it overflowed.
struct MemoryIndex {
    keys: Mutex<RecentKeys>,
    complete: AtomicBool,
    overflowed: AtomicBool,
    keys_max: usize,
}

#[derive(Default)]
struct RecentKeys {
    hashes: HashSet<u64>,
    order: VecDeque<u64>,
}

impl MemoryIndex {
    fn insert(&self, hash: u64) {
        let mut keys = self.keys.lock().expect("idempotency index lock");
        if keys.hashes.insert(hash) {
            keys.order.push_back(hash);
        }
        while keys.order.len() > self.keys_max {
            if let Some(old) = keys.order.pop_front() {
                keys.hashes.remove(&old);
            }
            self.overflowed.store(true, Ordering::Relaxed);
            self.complete.store(false, Ordering::Relaxed);
        }
    }

    /// Adds keys loaded from the store while there is room, never evicting: the keys already
    /// here are this process's own, and may still be in the store's unindexed tail.
    /// Returns false when some did not fit.
    fn load(&self, hashes: impl Iterator<Item = u64>) -> bool {
        let mut keys = self.keys.lock().expect("idempotency index lock");
        for hash in hashes {
            if keys.order.len() >= self.keys_max {
                return false;
            }
            if keys.hashes.insert(hash) {
                keys.order.push_back(hash);
            }
        }
        true
    }

    /// Where a key may be. Until memory overflows it holds every key this process has seen,
    /// so a key it does not know is new (complete) or older than the start, and everything
    /// from before the start was indexed before serving: the unindexed tail can be skipped.
    /// Once it has evicted keys, an evicted one may still be in the tail: look everywhere.
    fn lookup_for(&self, hash: u64) -> Option<Lookup> {
        let known = self
            .keys
            .lock()
            .expect("idempotency index lock")
            .hashes
            .contains(&hash);
        if known || self.overflowed.load(Ordering::Acquire) {
            Some(Lookup::Everywhere)
        } else if self.complete.load(Ordering::Acquire) {
            None
        } else {
            Some(Lookup::IndexedOnly)
        }
    }
}

/// Releases the key when the request ends, whatever its outcome.
pub struct InFlightGuard {
    hash: u64,
    in_flight: Arc<DashSet<u64>>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.remove(&self.hash);
    }
}

/// A stable 64-bit hash of (scope, key), the first 8 bytes of SHA-256: the store indexes it,
/// so records written by one build must be found by the next.
pub fn key_hash(scope: &str, key: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// [`key_hash`] as the signed 64-bit integer the store keeps.
pub fn stored_key_hash(scope: &str, key: &str) -> i64 {
    i64::from_be_bytes(key_hash(scope, key).to_be_bytes())
}

/// The request's identity: method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    // One lower-case hex string (a `format!` per byte showed in the purchase profile).
    hex::encode(hasher.finalize())
}

pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > KEY_LEN_MAX {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "Idempotency-Key must be 1-255 characters",
        ));
    }
    Ok(())
}

impl Idempotency {
    /// Ready at once; call [`Idempotency::warm_up`] to make new keys skip the store look-up.
    pub fn new(store: SharedStore, keys_max: usize) -> Idempotency {
        Idempotency {
            store,
            in_flight: Arc::new(DashSet::new()),
            index: Arc::new(MemoryIndex {
                keys: Mutex::new(RecentKeys::default()),
                complete: AtomicBool::new(false),
                overflowed: AtomicBool::new(false),
                keys_max,
            }),
        }
    }

    /// Loads the keys created since `since_ms` in the background, so start-up does not wait
    /// for them; until it is done, unknown keys are looked up in the store.
    pub fn warm_up(&self, since_ms: i64) -> tokio::task::JoinHandle<()> {
        let (store, index) = (self.store.clone(), self.index.clone());
        tokio::spawn(async move {
            let limit = u32::try_from(index.keys_max.saturating_add(1)).unwrap_or(u32::MAX);
            match store.idempotency_keys_since(since_ms, limit).await {
                Ok(keys) => {
                    let fits = keys.len() <= index.keys_max
                        && index.load(keys.iter().map(|(scope, key)| key_hash(scope, key)));
                    if fits && !index.overflowed.load(Ordering::Relaxed) {
                        index.complete.store(true, Ordering::Release);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "idempotency keys not loaded; look-ups go to the store")
                }
            }
        })
    }

    pub async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Begin, ApiError> {
        let hash = key_hash(scope, key);
        if !self.in_flight.insert(hash) {
            return Err(ApiError::new(
                ErrorCode::IdempotencyInFlight,
                "a request with this Idempotency-Key is still running",
            ));
        }
        let guard = InFlightGuard {
            hash,
            in_flight: self.in_flight.clone(),
        };
        let Some(lookup) = self.index.lookup_for(hash) else {
            self.index.insert(hash);
            return Ok(Begin::Fresh(guard));
        };
        let stored = self
            .store
            .idempotency_get(scope, key, lookup)
            .await
            .map_err(|e| ApiError::unavailable(format!("idempotency look-up failed: {e}")))?;
        match stored {
            None => {
                // Known from now on: once this request's guard is gone, a retry looks the key
                // up in the store instead of trusting the index to say it is new.
                self.index.insert(hash);
                Ok(Begin::Fresh(guard))
            }
            Some(record) if record.fingerprint == fingerprint => Ok(Begin::Replay(record)),
            Some(_) => Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            )),
        }
    }

    /// Call once the record has been committed, before the guard drops.
    pub fn remember(&self, scope: &str, key: &str) {
        self.index.insert(key_hash(scope, key));
    }

    /// Deletes records older than the retention window.
    pub async fn purge(&self, before_ms: i64) -> anyhow::Result<u64> {
        Ok(self.store.idempotency_purge(before_ms).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_the_hex_sha256_of_method_path_and_body() {
        // python3 -c "import hashlib; print(hashlib.sha256(b'POST\x00/api/v1/orders\x00{\"a\":1}').hexdigest())"
        assert_eq!(
            fingerprint("POST", "/api/v1/orders", b"{\"a\":1}"),
            "2fbde0f4c33333c4dc84f3feda183a5baffa4aa2136dd4d3cd1944a269d7ae7f"
        );
    }

    #[test]
    fn fingerprints_differ_by_body_and_path() {
        let a = fingerprint("POST", "/api/v1/orders", b"{\"a\":1}");
        assert_eq!(a, fingerprint("POST", "/api/v1/orders", b"{\"a\":1}"));
        assert_ne!(a, fingerprint("POST", "/api/v1/orders", b"{\"a\":2}"));
        assert_ne!(a, fingerprint("POST", "/api/v1/other", b"{\"a\":1}"));
    }

    #[test]
    fn key_hashes_are_stable_and_scoped() {
        // Fixed expectations: a change of hash would orphan every stored record.
        assert_eq!(key_hash("alice", "k1"), key_hash("alice", "k1"));
        assert_ne!(key_hash("alice", "k1"), key_hash("bob", "k1"));
        assert_ne!(key_hash("al", "icek1"), key_hash("alice", "k1"));
        let digest = Sha256::digest(b"alice\0k1");
        let expected = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        assert_eq!(key_hash("alice", "k1"), expected);
    }

    fn memory(keys_max: usize) -> MemoryIndex {
        MemoryIndex {
            keys: Mutex::new(RecentKeys::default()),
            complete: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            keys_max,
        }
    }

    #[test]
    fn a_key_memory_knows_is_looked_up_everywhere_and_an_unknown_one_only_in_the_index() {
        let index = memory(4);
        index.insert(1);
        assert_eq!(index.lookup_for(1), Some(Lookup::Everywhere));
        // Incomplete (still loading): an unknown key may be old, never in the tail.
        assert_eq!(index.lookup_for(2), Some(Lookup::IndexedOnly));
        index.complete.store(true, Ordering::Release);
        assert_eq!(index.lookup_for(2), None, "complete: unknown means new");
        assert_eq!(index.lookup_for(1), Some(Lookup::Everywhere));
    }

    #[test]
    fn after_an_eviction_unknown_keys_are_looked_up_everywhere() {
        let index = memory(2);
        index.complete.store(true, Ordering::Release);
        for hash in [1, 2, 3] {
            index.insert(hash);
        }
        // Key 1 was evicted and may still be in the unindexed tail.
        assert_eq!(index.lookup_for(1), Some(Lookup::Everywhere));
        assert_eq!(index.lookup_for(3), Some(Lookup::Everywhere));
        assert_eq!(index.lookup_for(9), Some(Lookup::Everywhere));
    }

    #[test]
    fn loading_old_keys_never_evicts_this_processs_own() {
        let index = memory(3);
        index.insert(100);
        assert!(!index.load([1, 2, 3, 4].into_iter()), "not all fit");
        assert_eq!(
            index.lookup_for(100),
            Some(Lookup::Everywhere),
            "own key kept"
        );
        assert_eq!(index.lookup_for(1), Some(Lookup::Everywhere));
        assert_eq!(
            index.lookup_for(4),
            Some(Lookup::IndexedOnly),
            "not loaded: indexed"
        );
        assert!(!index.overflowed.load(Ordering::Relaxed));
    }

    #[test]
    fn keys_longer_than_255_chars_are_refused() {
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key("").is_err());
    }
}
