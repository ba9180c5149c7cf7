//! What every actor and handler shares: the store, the journal writer, the clock, the
//! settings and the live-update hub.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::live::LiveHub;
use crate::persistence::journal::JournalHandle;
use crate::persistence::SharedStore;

pub struct Runtime {
    pub store: SharedStore,
    pub journal: JournalHandle,
    pub clock: SharedClock,
    pub settings: Arc<Settings>,
    /// Where actors publish their views for WebSocket subscribers.
    pub live: Arc<LiveHub>,
    incarnations: AtomicU64,
}

pub type SharedRuntime = Arc<Runtime>;

impl Runtime {
    pub fn new(
        store: SharedStore,
        journal: JournalHandle,
        clock: SharedClock,
        settings: Arc<Settings>,
    ) -> Runtime {
        Runtime {
            store,
            journal,
            clock,
            settings,
            live: Arc::new(LiveHub::default()),
            incarnations: AtomicU64::new(1),
        }
    }

    /// A number no other actor incarnation of this process has.
    pub fn next_incarnation(&self) -> u64 {
        self.incarnations.fetch_add(1, Ordering::Relaxed)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
