//! Time as a dependency. Entities never read the clock: actors pass `now` in a context. Tests
//! inject a [`ManualClock`] and move it forward, so deadlines fire without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolves once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: i64) -> SleepFuture;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("system clock is after 1970");
        i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
    }

    fn sleep_until(&self, at_ms: i64) -> SleepFuture {
        let wait_ms = at_ms.saturating_sub(self.now_ms()).max(0);
        let wait = Duration::from_millis(u64::try_from(wait_ms).expect("non-negative"));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// The system clock shifted by a fixed offset: what a test gives a real server process so that
/// it starts "later" (deadlines that fell due while it was down) without waiting for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct OffsetClock {
    pub offset_ms: i64,
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms
    }

    fn sleep_until(&self, at_ms: i64) -> SleepFuture {
        SystemClock.sleep_until(at_ms - self.offset_ms)
    }
}

/// A clock that only moves when told to; sleepers wake when it passes their time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        let (now, _) = watch::channel(start_ms);
        ManualClock { now: Arc::new(now) }
    }

    pub fn advance_ms(&self, by_ms: i64) {
        self.now.send_modify(|now| *now += by_ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at_ms: i64) -> SleepFuture {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // Ends when the clock passes at_ms, or when the clock is dropped.
            let _ = now.wait_for(|now| *now >= at_ms).await;
        })
    }
}

pub use surge_domain::time::{parse_rfc3339, rfc3339};

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced_past_their_time() {
        let clock = ManualClock::new(1_000);
        let sleeper = tokio::spawn(clock.sleep_until(1_500));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_ms(600);
        sleeper.await.expect("sleeper ends");
        assert_eq!(clock.now_ms(), 1_600);
    }
}
