//! Live updates: one coalescing channel per topic, between entity actors and WebSocket
//! sessions (API.md "WebSocket: live updates").
//!
//! An actor publishes its public view after a batch holding its events has committed, so a
//! subscriber never sees a change that is not durable. A topic keeps only its latest value (a
//! `tokio::sync::watch`), so publishing never waits and never queues: a slow subscriber skips
//! to the newest value instead of slowing the actor. A topic exists only while someone watches
//! it; actors check that with one map look-up and build nothing when nobody does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytestring::ByteString;
use dashmap::DashMap;
use tokio::sync::watch;

use crate::error::ApiError;

/// One published value of a topic: the entity's journal sequence number it reflects, and the
/// whole frame, built once by the actor and shared by every subscriber (cloning a
/// `ByteString` only counts a reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub seq: u64,
    pub frame: ByteString,
}

impl Update {
    /// The frame API.md defines: `{"topic": T, "seq": n, "data": {...}}`.
    pub fn new(topic: &str, seq: u64, data: &serde_json::Value) -> Update {
        // Written by hand so the keys come in the contract's order (a JSON object would
        // sort them), which is what a person reading frames expects.
        let topic = serde_json::Value::from(topic);
        Update {
            seq,
            frame: ByteString::from(format!(r#"{{"topic":{topic},"seq":{seq},"data":{data}}}"#)),
        }
    }
}

pub type Latest = Option<Arc<Update>>;

pub struct LiveHub {
    topics: DashMap<String, watch::Sender<Latest>>,
    sessions: AtomicUsize,
    /// Open sessions per user; a user without any has no entry.
    sessions_by_user: DashMap<String, usize>,
    /// Set when the server stops: sessions close instead of holding the drain open.
    closing: watch::Sender<bool>,
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub {
            topics: DashMap::new(),
            sessions: AtomicUsize::new(0),
            sessions_by_user: DashMap::new(),
            closing: watch::channel(false).0,
        }
    }
}

/// A WebSocket session's place in the bounds on open sessions, given back on drop.
pub struct SessionSeat {
    hub: Arc<LiveHub>,
    user_id: String,
}

impl Drop for SessionSeat {
    fn drop(&mut self) {
        self.hub
            .sessions_by_user
            .remove_if_mut(&self.user_id, |_, open| {
                *open -= 1;
                *open == 0
            });
        self.hub.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LiveHub {
    /// A seat for one more session of `user_id`: 503 if `sessions_max` are open, 429 if that
    /// user already has `per_user_max` (one token must not take every seat).
    pub fn admit_session(
        self: &Arc<Self>,
        user_id: &str,
        sessions_max: usize,
        per_user_max: usize,
    ) -> Result<SessionSeat, ApiError> {
        {
            let mut open = self
                .sessions_by_user
                .entry(user_id.to_string())
                .or_insert(0);
            if *open >= per_user_max {
                return Err(ApiError::rate_limited(
                    format!("at most {per_user_max} live-update sessions per user"),
                    1,
                ));
            }
            *open += 1;
        }
        // From here the seat's drop gives back what was taken.
        let seat = SessionSeat {
            hub: self.clone(),
            user_id: user_id.to_string(),
        };
        if self.sessions.fetch_add(1, Ordering::AcqRel) >= sessions_max {
            drop(seat);
            return Err(ApiError::unavailable(
                "too many live-update sessions are open",
            ));
        }
        Ok(seat)
    }

    pub fn sessions_open(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Tells every session to close (the server is stopping). A WebSocket would otherwise
    /// keep the HTTP drain waiting for its whole shutdown timeout.
    pub fn close_sessions(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`LiveHub::close_sessions`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// Starts watching `topic`. Its current value, if any, counts as not yet seen.
    pub fn subscribe(self: &Arc<Self>, topic: &str) -> Subscription {
        let mut receiver = self
            .topics
            .entry(topic.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        if receiver.borrow().is_some() {
            receiver.mark_changed();
        }
        Subscription {
            hub: self.clone(),
            topic: topic.to_string(),
            receiver: Some(receiver),
        }
    }

    /// True while someone watches `topic`: only then is a view worth building.
    pub fn is_watched(&self, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Makes `update` the topic's latest value, unless it already holds this or a later
    /// sequence number (publishes of one entity can race: a commit's and a first read's).
    pub fn publish(&self, topic: &str, update: Update) {
        let Some(sender) = self.topics.get(topic) else {
            return;
        };
        sender.send_if_modified(|latest| {
            if latest.as_ref().is_some_and(|held| held.seq >= update.seq) {
                return false;
            }
            *latest = Some(Arc::new(update));
            true
        });
    }

    /// Topics held, watched or not (a topic left behind by its last subscriber is a leak).
    pub fn topics_held(&self) -> usize {
        self.topics.len()
    }

    /// Topics with at least one subscriber (console, tests).
    pub fn topics_watched(&self) -> usize {
        self.topics
            .iter()
            .filter(|entry| entry.receiver_count() > 0)
            .count()
    }
}

/// One subscriber's view of a topic. Dropping it (a session closing, or cancelling the task
/// that holds it) removes the topic once nobody else watches it.
pub struct Subscription {
    hub: Arc<LiveHub>,
    topic: String,
    receiver: Option<watch::Receiver<Latest>>,
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The latest value not yet seen, waiting for one if needed.
    pub async fn next(&mut self) -> Option<Arc<Update>> {
        let receiver = self.receiver.as_mut().expect("present until dropped");
        loop {
            // The sender lives while any receiver does (see `Drop`), so this only ends with it.
            receiver.changed().await.ok()?;
            if let Some(update) = receiver.borrow_and_update().clone() {
                return Some(update);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.receiver.take();
        self.hub
            .topics
            .remove_if(&self.topic, |_, sender| sender.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn update(seq: u64) -> Update {
        Update::new("t", seq, &serde_json::json!({ "n": seq }))
    }

    fn hub() -> Arc<LiveHub> {
        Arc::new(LiveHub::default())
    }

    #[test]
    fn an_unwatched_topic_takes_no_value_and_keeps_no_entry() {
        let hub = hub();
        hub.publish("stock:A", update(1));
        assert!(!hub.is_watched("stock:A"));
        let mut subscription = hub.subscribe("stock:A");
        assert!(hub.is_watched("stock:A"));
        assert_eq!(
            subscription.next().now_or_never(),
            None,
            "nothing kept for nobody"
        );
        drop(subscription);
        assert!(!hub.is_watched("stock:A"));
        assert!(
            hub.topics.is_empty(),
            "the topic left with its last subscriber"
        );
    }

    #[test]
    fn a_topic_keeps_only_its_latest_value() {
        let hub = hub();
        let mut subscription = hub.subscribe("stock:A");
        for seq in 1..=3 {
            hub.publish("stock:A", update(seq));
        }
        let latest = subscription
            .next()
            .now_or_never()
            .flatten()
            .expect("a value");
        assert_eq!(latest.seq, 3);
        assert_eq!(latest.frame, update(3).frame);
        assert_eq!(
            subscription.next().now_or_never(),
            None,
            "nothing else is new"
        );
    }

    #[test]
    fn an_older_or_equal_sequence_does_not_replace_a_newer_one() {
        let hub = hub();
        let mut subscription = hub.subscribe("stock:A");
        hub.publish("stock:A", update(5));
        assert!(subscription.next().now_or_never().is_some());
        hub.publish("stock:A", update(4));
        hub.publish("stock:A", update(5));
        assert_eq!(subscription.next().now_or_never(), None);
        hub.publish("stock:A", update(6));
        let latest = subscription
            .next()
            .now_or_never()
            .flatten()
            .expect("a value");
        assert_eq!(latest.seq, 6);
    }

    #[test]
    fn a_late_subscriber_sees_the_current_value_and_leaving_keeps_the_topic_for_others() {
        let hub = hub();
        let _first = hub.subscribe("time-sale:x");
        hub.publish("time-sale:x", update(2));
        let mut late = hub.subscribe("time-sale:x");
        let seen = late
            .next()
            .now_or_never()
            .flatten()
            .expect("the current value");
        assert_eq!(seen.seq, 2);
        drop(late);
        assert!(
            hub.is_watched("time-sale:x"),
            "the first subscriber still watches"
        );
        assert_eq!(hub.topics_watched(), 1);
    }

    #[test]
    fn sessions_past_the_bound_are_refused_until_one_closes() {
        let hub = hub();
        let first = hub.admit_session("ann", 2, 10).expect("room");
        let _second = hub.admit_session("bob", 2, 10).expect("room");
        let refused = hub.admit_session("cat", 2, 10).err().expect("full");
        assert_eq!(refused.code, crate::error::ErrorCode::Unavailable);
        assert_eq!(hub.sessions_open(), 2);
        drop(first);
        assert!(hub.admit_session("cat", 2, 10).is_ok());
        assert!(
            !hub.sessions_by_user.contains_key("cat") && !hub.sessions_by_user.contains_key("ann"),
            "users without sessions leave no entry"
        );
    }

    #[test]
    fn one_user_cannot_take_every_seat() {
        let hub = hub();
        let seats: Vec<_> = (0..3)
            .map(|_| {
                hub.admit_session("ann", 100, 3)
                    .expect("within the user's cap")
            })
            .collect();
        let refused = hub
            .admit_session("ann", 100, 3)
            .err()
            .expect("past the cap");
        assert_eq!(refused.code, crate::error::ErrorCode::RateLimited);
        assert_eq!(hub.sessions_open(), 3, "the refusal took no seat");
        assert!(hub.admit_session("bob", 100, 3).is_ok());
        drop(seats);
        assert_eq!(hub.sessions_open(), 0);
        assert!(hub.sessions_by_user.is_empty());
    }

    #[test]
    fn frames_follow_the_contract() {
        let update = Update::new("time-sale:\"q\"", 7, &serde_json::json!({ "remaining": 3 }));
        let parsed: serde_json::Value = serde_json::from_str(&update.frame).expect("valid JSON");
        assert_eq!(parsed["topic"], "time-sale:\"q\"");
        assert_eq!(parsed["seq"], 7);
        assert_eq!(parsed["data"]["remaining"], 3);
        assert!(update.frame.starts_with(r#"{"topic":"#), "{}", update.frame);
    }
}
