//! Durable deadlines (Orleans-style reminders). An entity's next deadline is stored in the
//! same transaction as the event that set it. This scheduler activates every entity whose
//! deadline is due or near, at start-up and then every `deadlines.scan_interval_ms`; the
//! activated actor arms its own timer, so a hold or reservation is released even if nobody
//! touches its entity again, and even if the process was down when it fell due.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::region::RegionControl;
use crate::runtime::SharedRuntime;

/// Pages of due rows one tick reads at most (each `deadlines.scan_batch_max` rows).
const SCAN_PAGES_MAX: usize = 20;

pub struct DeadlineScheduler {
    rt: SharedRuntime,
    regions: HashMap<&'static str, Arc<dyn RegionControl>>,
}

impl DeadlineScheduler {
    pub fn new(rt: SharedRuntime, regions: Vec<Arc<dyn RegionControl>>) -> DeadlineScheduler {
        let regions = regions.into_iter().map(|r| (r.kind(), r)).collect();
        DeadlineScheduler { rt, regions }
    }

    /// Activates the entities with a deadline before now + lookahead that have no running
    /// actor; returns how many. Pages through the due rows (at most [`SCAN_PAGES_MAX`] pages
    /// a tick), so running entities at the head never hide the ones behind them.
    pub async fn scan_once(&self) -> usize {
        let settings = &self.rt.settings.deadlines;
        let lookahead_ms = i64::try_from(settings.lookahead_secs * 1000).unwrap_or(i64::MAX);
        let horizon_ms = self.rt.now_ms().saturating_add(lookahead_ms);
        let mut after: Option<(String, i64)> = None;
        let mut woken = 0;
        for _ in 0..SCAN_PAGES_MAX {
            let cursor = after.as_ref().map(|(pid, due)| (*due, pid.as_str()));
            let page = match self
                .rt
                .store
                .due_deadlines(horizon_ms, cursor, settings.scan_batch_max)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "deadline scan failed; retrying next tick");
                    return woken;
                }
            };
            for (pid, _) in &page {
                woken += usize::from(self.wake(pid).await);
            }
            let full = u32::try_from(page.len()).unwrap_or(u32::MAX) >= settings.scan_batch_max;
            match page.into_iter().last() {
                Some(last) if full => after = Some(last),
                _ => break,
            }
        }
        woken
    }

    /// Activates one entity unless it is running already; true if it was woken.
    async fn wake(&self, pid: &str) -> bool {
        let Some((kind, id)) = pid.split_once(':') else {
            tracing::warn!(%pid, "deadline row with a malformed pid");
            return false;
        };
        let Some(region) = self.regions.get(kind) else {
            tracing::warn!(%pid, "deadline row for an unknown kind");
            return false;
        };
        if region.is_running(id) {
            return false;
        }
        match region.wake(id).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%pid, error = %error.detail, "could not wake entity");
                false
            }
        }
    }

    /// Runs for the life of the process; the first scan happens at once.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let every = Duration::from_millis(self.rt.settings.deadlines.scan_interval_ms.max(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                self.scan_once().await;
            }
        })
    }
}
