//! Live updates: one coalescing channel per topic, between entity actors and WebSocket
//! sessions (API.md "WebSocket: live updates").
//!
//! An actor publishes its public view after a batch holding its events has committed, so a
//! subscriber never sees a change that is not durable. A topic keeps only its latest value (a
//! `tokio::sync::watch`), so publishing never waits and never queues: a slow subscriber skips
//! to the newest value instead of slowing the actor. A topic exists only while someone watches
//! it; actors check that with one map look-up and build nothing when nobody does.
//!
//! Change topics (a seat map's `event:{id}:seats`) carry changes, not views: a seat that went
//! HELD and back to AVAILABLE between two frames must still reach every subscriber, and a
//! 60,000-seat view per commit would cost the actor too much. So such a topic also keeps its
//! last [`CHANGES_KEPT`] committed steps' [`Changes`], each naming the sequence number it
//! starts from. A session sends what came after its own position, merged; one that fell
//! further behind than the topic keeps (or finds a gap) asks the entity for a full view again,
//! which is the topic's `latest` value, and carries on from there.

use std::collections::VecDeque;
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
        Update::with_data(topic, seq, data)
    }

    /// The same frame for any `data` that serialises, written straight into the frame's text
    /// (no JSON tree in between: a seats frame has thousands of items, and building and
    /// dropping a tree of them was the largest cost of 100 watchers in a profile).
    pub fn with_data(topic: &str, seq: u64, data: &impl serde::Serialize) -> Update {
        // Written by hand so the keys come in the contract's order (a JSON object would
        // sort them), which is what a person reading frames expects.
        let topic = serde_json::to_string(topic).expect("a string serialises");
        let data = serde_json::to_string(data).expect("frame data serialises");
        Update {
            seq,
            frame: ByteString::from(format!(r#"{{"topic":{topic},"seq":{seq},"data":{data}}}"#)),
        }
    }
}

/// One item of a change topic: a thing (a seat) and the status it took. Kept compact: a hot
/// topic holds up to [`CHANGE_ITEMS_KEPT`] of them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveChange {
    pub id: String,
    pub status: &'static str,
}

/// One committed step of a change topic: the items that turned `prev_seq` into `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub prev_seq: u64,
    pub seq: u64,
    pub items: Vec<LiveChange>,
}

/// Steps a change topic keeps for sessions that are behind: past it (or past
/// [`CHANGE_ITEMS_KEPT`] items in all) they start again from a full view. A hot map commits
/// ~10k holds a second, so this is about 1.5 s of them: a session that wakes every 100 ms
/// and writes a frame never falls that far behind unless its client stops reading.
pub const CHANGES_KEPT: usize = 16_384;

/// Items a change topic keeps in all (a step that expires many holds has many): about 3 MiB.
pub const CHANGE_ITEMS_KEPT: usize = 65_536;

/// What a topic holds: its latest view (for a change topic, the latest full view), and for a
/// change topic its recent steps, oldest first.
#[derive(Debug, Default)]
pub struct TopicValue {
    pub latest: Option<Arc<Update>>,
    pub changes: VecDeque<Arc<Changes>>,
    /// Items in `changes`, for [`CHANGE_ITEMS_KEPT`].
    items: usize,
}

pub struct LiveHub {
    topics: DashMap<String, watch::Sender<TopicValue>>,
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
            .or_insert_with(|| watch::channel(TopicValue::default()).0)
            .subscribe();
        if receiver.borrow().latest.is_some() {
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
        sender.send_if_modified(|value| {
            if value
                .latest
                .as_ref()
                .is_some_and(|held| held.seq >= update.seq)
            {
                return false;
            }
            value.latest = Some(Arc::new(update));
            true
        });
    }

    /// True when a change topic holds a full view that a new session can start from: it is
    /// at `min_seq` or later (the entity's last step the topic was not told of), and the
    /// steps it keeps after that view follow on from it with no gap. Then nobody needs a new
    /// one, which for a stadium is 60,000 seats built on the map's turn.
    pub fn holds_usable_view(&self, topic: &str, min_seq: u64) -> bool {
        let Some(sender) = self.topics.get(topic) else {
            return false;
        };
        let value = sender.borrow();
        let Some(full) = value.latest.as_ref().filter(|full| full.seq >= min_seq) else {
            return false;
        };
        chain_end(full.seq, &value.changes).is_some()
    }

    /// Adds one committed step to a change topic, dropping the oldest past [`CHANGES_KEPT`].
    pub fn publish_changes(&self, topic: &str, changes: Changes) {
        let Some(sender) = self.topics.get(topic) else {
            return;
        };
        sender.send_modify(|value| {
            value.items += changes.items.len();
            value.changes.push_back(Arc::new(changes));
            while value.changes.len() > CHANGES_KEPT || value.items > CHANGE_ITEMS_KEPT {
                let Some(dropped) = value.changes.pop_front() else {
                    break;
                };
                value.items -= dropped.items.len();
            }
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
    receiver: Option<watch::Receiver<TopicValue>>,
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The latest value not yet seen, waiting for one if needed (view topics).
    pub async fn next(&mut self) -> Option<Arc<Update>> {
        loop {
            self.changed().await?;
            if let Some(update) = self.read(|value| value.latest.clone()) {
                return Some(update);
            }
        }
    }

    /// Waits until the topic holds something not yet read.
    pub async fn changed(&mut self) -> Option<()> {
        let receiver = self.receiver.as_mut().expect("present until dropped");
        // The sender lives while any receiver does (see `Drop`), so this only ends with it.
        receiver.changed().await.ok()
    }

    /// Reads the topic's value, marking it seen. Keep `read` short: publishers wait for it.
    pub fn read<R>(&mut self, read: impl FnOnce(&TopicValue) -> R) -> R {
        let receiver = self.receiver.as_mut().expect("present until dropped");
        read(&receiver.borrow_and_update())
    }
}

/// Where a session stands on a change topic, and what it sends next.
#[derive(Debug, Default)]
pub struct ChangeCursor {
    /// The sequence number the session's frames have brought the client to; `None` until its
    /// first full view.
    at: Option<u64>,
}

/// What a session on a change topic does next.
#[derive(Debug, PartialEq)]
pub enum ChangeStep {
    /// Send this frame.
    Send(ByteString),
    /// Nothing new; wait for the topic to change.
    Wait,
    /// No full view to start from, or behind what the topic keeps (or a gap) with no newer
    /// full view: ask the entity for one, then wait.
    NeedView,
}

impl ChangeCursor {
    /// The part of the topic's value this cursor needs, copied (reference counts only) so the
    /// work of [`ChangeCursor::step`] runs after the topic's lock is released: publishers,
    /// which are journal completions, wait for that lock.
    pub fn wanted(&self, value: &TopicValue) -> TopicValue {
        let after = self.at.unwrap_or(u64::MAX);
        TopicValue {
            latest: value.latest.clone(),
            changes: value
                .changes
                .iter()
                .filter(|c| c.seq > after)
                .cloned()
                .collect(),
            items: 0,
        }
    }

    /// The next step for a session at this cursor, given (what it wants of) the topic's value.
    pub fn step(&mut self, topic: &str, value: &TopicValue) -> ChangeStep {
        let at = self.at;
        // How far the kept steps carry the client; `None` with no start or across a gap.
        let reach = at.and_then(|at| chain_end(at, &value.changes));
        // A full view beyond where the chain reaches (steps never kept, a restarted entity)
        // or, with no chain, any full view newer than the client's state: start from it.
        let from_full = value.latest.as_ref().filter(|full| match (reach, at) {
            (Some(reach), _) => full.seq > reach,
            (None, None) => true,
            (None, Some(at)) => full.seq > at,
        });
        if let Some(full) = from_full {
            self.at = Some(full.seq);
            return ChangeStep::Send(full.frame.clone());
        }
        let (Some(at), Some(_)) = (at, reach) else {
            // `at` stays: a full view older than the client's state is never sent.
            return ChangeStep::NeedView;
        };
        let newer: Vec<&Arc<Changes>> = value.changes.iter().filter(|c| c.seq > at).collect();
        let Some(last) = newer.last() else {
            return ChangeStep::Wait;
        };
        self.at = Some(last.seq);
        let items = merge(newer.iter().flat_map(|c| c.items.iter()));
        if items.is_empty() {
            return ChangeStep::Wait;
        }
        #[derive(serde::Serialize)]
        struct Data<'a> {
            changes: Vec<&'a LiveChange>,
        }
        ChangeStep::Send(Update::with_data(topic, last.seq, &Data { changes: items }).frame)
    }
}

/// Where the kept steps after `from` carry a client that is at `from`: the seq of the last
/// of them (`from` when there are none), or `None` when they leave a gap.
fn chain_end<'a>(from: u64, changes: impl IntoIterator<Item = &'a Arc<Changes>>) -> Option<u64> {
    changes
        .into_iter()
        .filter(|c| c.seq > from)
        .try_fold(from, |at, c| (c.prev_seq == at).then_some(c.seq))
}

/// Items with the same `id` merged, the last one winning, in the order ids first appear.
fn merge<'a>(items: impl Iterator<Item = &'a LiveChange>) -> Vec<&'a LiveChange> {
    let mut merged: Vec<&LiveChange> = Vec::new();
    let mut position: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for item in items {
        match position.get(item.id.as_str()) {
            Some(&at) => merged[at] = item,
            None => {
                position.insert(&item.id, merged.len());
                merged.push(item);
            }
        }
    }
    merged
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

    fn json(value: impl Into<serde_json::Value>) -> serde_json::Value {
        value.into()
    }

    fn seat(id: &str, status: &'static str) -> LiveChange {
        LiveChange {
            id: id.to_string(),
            status,
        }
    }

    fn step(prev_seq: u64, seq: u64, items: Vec<LiveChange>) -> Changes {
        Changes {
            prev_seq,
            seq,
            items,
        }
    }

    fn full(seq: u64, items: Vec<LiveChange>) -> Update {
        Update::new(
            "event:e:seats",
            seq,
            &serde_json::json!({ "full": true, "changes": items }),
        )
    }

    /// The frame a step sent, parsed; panics on anything else.
    fn sent(step: ChangeStep) -> serde_json::Value {
        match step {
            ChangeStep::Send(frame) => serde_json::from_str(&frame).expect("JSON"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn a_change_topic_sends_the_full_view_then_every_later_change_merged() {
        let hub = hub();
        let topic = "event:e:seats";
        let mut subscription = hub.subscribe(topic);
        // A step committed before the full view: the view covers it.
        hub.publish_changes(topic, step(1, 2, vec![seat("A-1-1", "HELD")]));
        hub.publish(topic, full(2, vec![seat("A-1-1", "HELD")]));
        hub.publish_changes(topic, step(2, 3, vec![seat("A-1-2", "HELD")]));
        hub.publish_changes(topic, step(3, 4, vec![]));
        hub.publish_changes(
            topic,
            step(
                4,
                6,
                vec![seat("A-1-1", "AVAILABLE"), seat("A-1-2", "SOLD")],
            ),
        );
        let mut cursor = ChangeCursor::default();
        let first = sent(subscription.read(|v| cursor.step(topic, v)));
        assert_eq!(first["seq"], 2);
        assert_eq!(first["data"]["full"], true);
        let next = sent(subscription.read(|v| cursor.step(topic, v)));
        assert_eq!(next["seq"], 6);
        assert_eq!(
            next["data"]["changes"],
            json(
                serde_json::to_value([seat("A-1-2", "SOLD"), seat("A-1-1", "AVAILABLE")])
                    .expect("json")
            ),
            "one item per seat, its last status, in first-change order"
        );
        assert_eq!(
            subscription.read(|v| cursor.step(topic, v)),
            ChangeStep::Wait
        );
        hub.publish_changes(topic, step(6, 7, vec![]));
        assert_eq!(
            subscription.read(|v| cursor.step(topic, v)),
            ChangeStep::Wait,
            "a step without changes moves the cursor and sends nothing"
        );
        hub.publish_changes(topic, step(7, 8, vec![seat("B-1-1", "HELD")]));
        assert_eq!(sent(subscription.read(|v| cursor.step(topic, v)))["seq"], 8);
    }

    #[test]
    fn a_session_behind_what_the_topic_keeps_resyncs_from_a_newer_full_view() {
        let hub = hub();
        let topic = "event:e:seats";
        let mut subscription = hub.subscribe(topic);
        hub.publish(topic, full(1, vec![]));
        let mut cursor = ChangeCursor::default();
        sent(subscription.read(|v| cursor.step(topic, v)));
        let kept = u64::try_from(CHANGES_KEPT).expect("fits");
        for seq in 1..=kept + 1 {
            hub.publish_changes(topic, step(seq, seq + 1, vec![seat("A-1-1", "HELD")]));
        }
        assert_eq!(
            subscription.read(|v| v.changes.len()),
            CHANGES_KEPT,
            "the oldest step was dropped"
        );
        assert_eq!(
            subscription.read(|v| cursor.step(topic, v)),
            ChangeStep::NeedView
        );
        assert_eq!(
            subscription.read(|v| cursor.step(topic, v)),
            ChangeStep::NeedView,
            "the old full view (seq 1) is no newer than what the client has"
        );
        hub.publish(topic, full(kept + 2, vec![seat("A-1-1", "HELD")]));
        let resynced = sent(subscription.read(|v| cursor.step(topic, v)));
        assert_eq!(resynced["seq"], kept + 2);
        assert_eq!(resynced["data"]["full"], true);
    }

    #[test]
    fn a_gap_between_steps_resyncs() {
        let hub = hub();
        let topic = "event:e:seats";
        let mut subscription = hub.subscribe(topic);
        hub.publish(topic, full(3, vec![]));
        let mut cursor = ChangeCursor::default();
        sent(subscription.read(|v| cursor.step(topic, v)));
        // Seq 4 never arrived (a commit that failed, an entity restarted).
        hub.publish_changes(topic, step(4, 5, vec![seat("A-1-1", "HELD")]));
        assert_eq!(
            subscription.read(|v| cursor.step(topic, v)),
            ChangeStep::NeedView
        );
        // Any full view newer than the client's state repairs it.
        hub.publish(topic, full(5, vec![seat("A-1-1", "HELD")]));
        assert_eq!(sent(subscription.read(|v| cursor.step(topic, v)))["seq"], 5);
        hub.publish_changes(topic, step(5, 6, vec![seat("A-1-2", "HELD")]));
        assert_eq!(sent(subscription.read(|v| cursor.step(topic, v)))["seq"], 6);
    }

    #[test]
    fn a_full_view_beyond_where_the_kept_steps_reach_is_taken() {
        let hub = hub();
        let topic = "event:e:seats";
        let mut subscription = hub.subscribe(topic);
        hub.publish(topic, full(2, vec![]));
        hub.publish_changes(topic, step(2, 3, vec![seat("A-1-1", "HELD")]));
        let mut cursor = ChangeCursor::default();
        sent(subscription.read(|v| cursor.step(topic, v)));
        assert_eq!(sent(subscription.read(|v| cursor.step(topic, v)))["seq"], 3);
        // Steps 4 to 7 were never kept (nobody watched for an instant); a view at 7 was.
        hub.publish(topic, full(7, vec![seat("A-1-1", "SOLD")]));
        let jumped = sent(subscription.read(|v| cursor.step(topic, v)));
        assert_eq!(
            (jumped["seq"].as_u64(), &jumped["data"]["full"]),
            (Some(7), &json(true))
        );
        assert_eq!(
            subscription.read(|v| cursor.step(topic, v)),
            ChangeStep::Wait
        );
    }

    #[test]
    fn a_full_view_is_usable_while_the_kept_steps_follow_on_from_it() {
        let hub = hub();
        let topic = "event:e:seats";
        let _subscription = hub.subscribe(topic);
        assert!(!hub.holds_usable_view(topic, 0), "no view yet");
        hub.publish(topic, full(1, vec![]));
        assert!(
            !hub.holds_usable_view(topic, 2),
            "the entity made a step (2) the topic was not told of"
        );
        hub.publish_changes(topic, step(1, 2, vec![seat("A-1-1", "HELD")]));
        hub.publish(topic, full(2, vec![seat("A-1-1", "HELD")]));
        assert!(hub.holds_usable_view(topic, 0));
        hub.publish_changes(topic, step(2, 3, vec![seat("A-1-2", "HELD")]));
        assert!(
            hub.holds_usable_view(topic, 0),
            "the step follows on from the view"
        );
        hub.publish_changes(topic, step(4, 5, vec![seat("A-1-3", "HELD")]));
        assert!(!hub.holds_usable_view(topic, 0), "step 3 to 4 is missing");
        hub.publish(topic, full(5, vec![]));
        assert!(hub.holds_usable_view(topic, 0));
        let kept = u64::try_from(CHANGES_KEPT).expect("fits");
        for seq in 5..kept + 6 {
            hub.publish_changes(topic, step(seq, seq + 1, vec![]));
        }
        assert!(
            !hub.holds_usable_view(topic, 0),
            "the step after the view is no longer kept"
        );
    }

    #[test]
    fn a_change_topic_keeps_a_bounded_number_of_items() {
        let hub = hub();
        let topic = "event:e:seats";
        let _subscription = hub.subscribe(topic);
        let many: Vec<LiveChange> = (0..CHANGE_ITEMS_KEPT / 4)
            .map(|n| seat(&format!("A-1-{n}"), "HELD"))
            .collect();
        for seq in 0..8 {
            hub.publish_changes(topic, step(seq, seq + 1, many.clone()));
        }
        let sender = hub.topics.get(topic).expect("watched");
        let value = sender.borrow();
        assert_eq!(value.changes.len(), 4, "the oldest steps went first");
        assert_eq!(value.items, CHANGE_ITEMS_KEPT);
        assert_eq!(value.changes.front().map(|c| c.prev_seq), Some(4));
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
