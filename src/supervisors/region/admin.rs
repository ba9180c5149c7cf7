//! The admin read model of a region: the rows of `GET /admin/actors`, one actor's detail, and
//! the console's actions, for any entity kind behind one object-safe trait ([`AdminRegion`]).
//! A child of `region` so it reads the registry directly, without widening what other modules
//! may touch.

// The region's own names (its registry, slots, entity types) are this module's vocabulary.
use super::*;

/// One row of `GET /admin/actors`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActorRow {
    pub kind: &'static str,
    pub id: String,
    /// `running` (an actor), `parked` (state in memory, actor stopped) or `failed`.
    pub status: &'static str,
    pub mailbox_len: usize,
    /// Failures within `actors.restart_window_secs`.
    pub restarts: usize,
    pub last_seq: Option<u64>,
    pub snapshot_seq: Option<u64>,
    pub last_active_at: Option<String>,
    /// Why a failed entity failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What the admin API does with a region, whatever its entity kind.
#[async_trait::async_trait]
pub trait AdminRegion: Send + Sync {
    fn kind(&self) -> &'static str;
    fn counts(&self) -> RegionCounts;
    /// The activated and failed entities with `status` (all when `None`), by id, at most
    /// `limit` from after `after`.
    fn actors(&self, status: Option<&str>, after: Option<&str>, limit: usize) -> Vec<ActorRow>;
    fn actor(&self, id: &str) -> Option<ActorRow>;
    /// The state as JSON and the `events_max` latest events; `None` for an entity that was
    /// never created.
    async fn detail(
        &self,
        id: &str,
        events_max: u32,
    ) -> Result<Option<serde_json::Value>, ApiError>;
    /// Queues a snapshot if the journal is ahead of the last one; the seq it covers.
    async fn snapshot(&self, id: &str) -> Result<u64, ApiError>;
    fn passivate(&self, id: &str) -> bool;
    /// Clears a failed mark; the next message activates the entity from the journal.
    fn restart(&self, id: &str);
}

impl<E: Hosted> Region<E> {
    fn row(&self, id: &str) -> Option<ActorRow> {
        let restarts = self.failures.get(id).map_or(0, |at| at.len());
        if let Some(failure) = self.failed.get(id) {
            return Some(ActorRow {
                kind: E::KIND,
                id: id.to_string(),
                status: "failed",
                mailbox_len: 0,
                restarts,
                last_seq: None,
                snapshot_seq: None,
                last_active_at: None,
                failure: Some(failure.clone()),
            });
        }
        let slot = self.live.get(id)?;
        let (mailbox_len, last_seq, snapshot_seq, last_active_ms) = match &*slot {
            Slot::Live(live) => {
                let shared = &live.shared;
                (
                    shared.inflight.load(Ordering::Acquire),
                    shared.last_seq.load(Ordering::Acquire),
                    shared.snapshot_seq.load(Ordering::Acquire),
                    shared.last_active_ms.load(Ordering::Acquire),
                )
            }
            Slot::Parked(parked) => (
                0,
                parked.last_seq,
                parked.snapshot_seq,
                parked.last_active_ms,
            ),
        };
        Some(ActorRow {
            kind: E::KIND,
            id: id.to_string(),
            status: slot.status(),
            mailbox_len,
            restarts,
            last_seq: Some(last_seq),
            snapshot_seq: Some(snapshot_seq),
            last_active_at: Some(crate::clock::rfc3339(last_active_ms)),
            failure: None,
        })
    }
}

#[async_trait::async_trait]
impl<E: Hosted> AdminRegion for Region<E> {
    fn kind(&self) -> &'static str {
        E::KIND
    }

    fn counts(&self) -> RegionCounts {
        Region::counts(self)
    }

    /// The first `limit` ids after `after` in id order, kept in a bounded heap rather than by
    /// sorting every id: the console asks for a page every 2 s, also of a million wallets.
    fn actors(&self, status: Option<&str>, after: Option<&str>, limit: usize) -> Vec<ActorRow> {
        let mut first = FirstIds::new(limit);
        let wanted = |id: &str, of: &str| {
            after.is_none_or(|after| id > after) && status.is_none_or(|s| s == of)
        };
        // A failed mark wins over the slot, as in `row`; failures are rare, so look only then.
        let any_failed = !self.failed.is_empty();
        for slot in self.live.iter() {
            if wanted(slot.key(), slot.status())
                && first.would_take(slot.key())
                && !(any_failed && self.failed.contains_key(slot.key()))
            {
                first.offer(slot.key());
            }
        }
        for failed in self.failed.iter() {
            if wanted(failed.key(), "failed") {
                first.offer(failed.key());
            }
        }
        first
            .into_sorted()
            .iter()
            .filter_map(|id| self.row(id))
            .collect()
    }

    fn actor(&self, id: &str) -> Option<ActorRow> {
        self.row(id)
    }

    async fn detail(
        &self,
        id: &str,
        events_max: u32,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        if self.failed.contains_key(id) {
            return Ok(Some(serde_json::json!({ "actor": self.row(id) })));
        }
        let pid = crate::actors::pid::<E>(id);
        let records = self
            .rt
            .store
            .events_desc(&pid, None, events_max.max(1))
            .await
            .map_err(ApiError::internal)?;
        if records.is_empty() && !self.live.contains_key(id) {
            // Not in memory and never journaled: answer before activating, so a GET of a name
            // that was never created leaves no blank actor behind.
            return Ok(None);
        }
        let inspection = self.inspect(id).await?;
        if !inspection.exists && inspection.last_seq == 0 {
            // The look-up activated a blank entity; the sweeper lets it go once it is idle (a
            // forced stop here could race a create of the same id).
            return Ok(None);
        }
        let mut events = Vec::with_capacity(records.len());
        for record in records.into_iter().take(events_max as usize) {
            let event: E::Event = crate::persistence::codec::decode(E::VERSION, &record.payload)
                .map_err(ApiError::internal)?;
            events.push(serde_json::json!({
                "seq": record.seq,
                "at": crate::clock::rfc3339(record.at_ms),
                // Debug form, where every id prints as the API writes it.
                "event": format!("{event:?}"),
            }));
        }
        Ok(Some(serde_json::json!({
            "actor": self.row(id),
            "pending_commits": inspection.pending_commits,
            "state": inspection.state,
            "recent_events": events,
        })))
    }

    async fn snapshot(&self, id: &str) -> Result<u64, ApiError> {
        self.call(id, EntityMsg::SnapshotNow).await
    }

    fn passivate(&self, id: &str) -> bool {
        Region::passivate(self, id)
    }

    fn restart(&self, id: &str) {
        self.reset(id);
    }
}

/// The `limit` smallest of the ids offered: a max-heap that drops its largest past the bound.
struct FirstIds {
    heap: std::collections::BinaryHeap<String>,
    limit: usize,
}

impl FirstIds {
    fn new(limit: usize) -> FirstIds {
        FirstIds {
            heap: std::collections::BinaryHeap::with_capacity(limit.saturating_add(1).min(1024)),
            limit,
        }
    }

    fn would_take(&self, id: &str) -> bool {
        self.heap.len() < self.limit || self.heap.peek().is_some_and(|last| id < last.as_str())
    }

    fn offer(&mut self, id: &str) {
        if !self.would_take(id) {
            return;
        }
        self.heap.push(id.to_string());
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    fn into_sorted(self) -> Vec<String> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::FirstIds;
    use crate::actors::order::OrderEvent;
    use crate::actors::stock_item::StockEvent;
    use crate::actors::OrderId;

    #[test]
    fn first_ids_keeps_the_smallest_in_order() {
        let mut first = FirstIds::new(3);
        for id in ["m", "c", "x", "a", "k", "b", "z"] {
            first.offer(id);
        }
        assert_eq!(first.into_sorted(), ["a", "b", "c"]);
        let mut none = FirstIds::new(0);
        none.offer("a");
        assert!(none.into_sorted().is_empty());
        let mut few = FirstIds::new(5);
        few.offer("b");
        few.offer("a");
        assert_eq!(few.into_sorted(), ["a", "b"]);
    }

    #[test]
    fn events_in_debug_text_show_order_ids_as_uuids() {
        let order: OrderId = "01a20c68-e545-7009-aebd-662463722f59".parse().unwrap();
        let event = StockEvent::Committed { order, quantity: 2 };
        assert_eq!(
            format!("{event:?}"),
            "Committed { order: 01a20c68-e545-7009-aebd-662463722f59, quantity: 2 }"
        );
        // Other numbers stay numbers.
        let expired = OrderEvent::Expired {
            at_ms: 1795505130757,
        };
        assert_eq!(format!("{expired:?}"), "Expired { at_ms: 1795505130757 }");
    }
}
