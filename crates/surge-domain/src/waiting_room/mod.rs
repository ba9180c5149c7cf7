//! WaitingRoom: the fair queue in front of one resource (a time sale or an event).
//!
//! Supervised by `Region<WaitingRoom>`; persistence id `waiting_room:{resource}` where resource
//! is `time-sales/{id}` or `events/{id}`. Nobody creates a room: the first join configures it
//! with the resource's opening time.
//! Accepts: join, status of one user, stats, configure (rate, pause), open (its deadline).
//! Journals: `Created`, `Joined`, `Opened`, `Configured`.
//!
//! A user's ticket is their place in `queue` (1-based). The room admits tickets in order at
//! `admit_per_sec`, and admission is **computed, not stored per user**: tickets up to
//! `head_at(now)` are admitted, where the head grows from `(base_at_ms, base_head)` at the rate.
//! So an admission "tick" is one multiplication, whatever the number waiting, and a position is
//! `ticket - head`, never a renumbering. The base moves (an event) only when the rate or the
//! pause changes, at opening, and when a join finds the queue drained (admission does not bank
//! credit while nobody waits, so a burst of joins after a quiet spell is still admitted at the
//! rate).
//!
//! Joins before opening are shuffled once, at opening, with a ChaCha8 generator seeded by the
//! seed chosen when the room was created (journaled), so a replay shuffles the same way and
//! tests can name the seed. Arriving early buys no place; later joins are FIFO.
//!
//! # Invariants
//! - `base_head <= queue.len()`, `preopen_len <= queue.len()`;
//! - `tickets` maps each queued user to their 1-based place: `queue[tickets[u] - 1] == u`
//!   (deep check), and the two have the same length;
//! - after opening, `base_at_ms >= opens_at_ms`.

use std::collections::HashMap;

use crate::UserId;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Ctx, Decision, Entity};
use crate::{ErrorCode, Rejection};

/// The fastest admission rate an operator may set.
pub const RATE_MAX_PER_SEC: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    Waiting,
    Admitted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTerms {
    /// When the resource opens: admission starts then, and earlier joins are shuffled.
    pub opens_at_ms: i64,
    pub admit_per_sec: u32,
    pub seed: u64,
    pub waiting_max: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingRoom {
    pub resource: String,
    terms: Option<RoomTerms>,
    pub admit_per_sec: u32,
    pub paused: bool,
    opened: bool,
    /// Users in ticket order.
    queue: Vec<UserId>,
    #[serde(skip)]
    tickets: HashMap<UserId, u64>,
    /// Joins before opening: `queue[..preopen_len]` is shuffled at opening.
    preopen_len: u64,
    /// Admission reached `base_head` tickets at `base_at_ms`, and grows from there at the rate.
    base_head: u64,
    base_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCommand {
    /// `terms` configure a room that does not exist yet (ignored afterwards).
    Join {
        user_id: UserId,
        terms: RoomTerms,
    },
    Me {
        user_id: UserId,
    },
    Stats,
    /// `terms` configure a room nobody has joined yet, so a rate can be set before opening.
    Configure {
        admit_per_sec: Option<u32>,
        paused: Option<bool>,
        terms: RoomTerms,
    },
    /// The opening deadline.
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomEvent {
    Created {
        terms: RoomTerms,
    },
    Joined {
        user_id: UserId,
        at_ms: i64,
    },
    Opened {
        at_ms: i64,
    },
    Configured {
        at_ms: i64,
        admit_per_sec: u32,
        paused: bool,
    },
}

/// One user's place, as `GET .../queue/me` shows it (the pass is added by the handler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketView {
    pub ticket: u64,
    /// Tickets ahead of this one still waiting, plus one; 0 once admitted.
    pub position: u64,
    /// Seconds until admission at the current rate; null when paused or unknown.
    pub eta_secs: Option<u64>,
    pub status: TicketStatus,
    /// True when this answer created the ticket (the handler answers 201, else 200).
    #[serde(skip)]
    pub joined_now: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomStats {
    pub waiting: u64,
    pub admitted: u64,
    pub admit_per_sec: u32,
    pub paused: bool,
    pub opens_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomReply {
    Ticket(TicketView),
    Stats(RoomStats),
}

impl WaitingRoom {
    /// True once the room has opened (its pre-opening joins are shuffled).
    pub fn opened(&self) -> bool {
        self.opened
    }

    /// Tickets admitted at the last change of rate or pause; admission grows from there.
    pub fn admitted_base(&self) -> u64 {
        self.base_head
    }

    pub fn len(&self) -> u64 {
        self.queue.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many tickets are admitted at `now_ms`: O(1), whatever the number waiting.
    pub fn head_at(&self, now_ms: i64) -> u64 {
        if !self.opened || self.paused || now_ms <= self.base_at_ms {
            return self.base_head;
        }
        let elapsed_ms = u64::try_from(now_ms - self.base_at_ms).unwrap_or(0);
        let grown = elapsed_ms.saturating_mul(u64::from(self.admit_per_sec)) / 1000;
        self.base_head.saturating_add(grown).min(self.len())
    }

    pub fn ticket_of(&self, user_id: &str) -> Option<u64> {
        self.tickets.get(user_id).copied()
    }

    fn view(&self, ticket: u64, now_ms: i64, joined_now: bool) -> TicketView {
        let head = self.head_at(now_ms);
        if ticket <= head {
            return TicketView {
                ticket,
                position: 0,
                eta_secs: Some(0),
                status: TicketStatus::Admitted,
                joined_now,
            };
        }
        let position = ticket - head;
        TicketView {
            ticket,
            position,
            eta_secs: self.eta_secs(position, now_ms),
            status: TicketStatus::Waiting,
            joined_now,
        }
    }

    /// Time to admit `position` more tickets, plus the wait for opening.
    fn eta_secs(&self, position: u64, now_ms: i64) -> Option<u64> {
        if self.paused || self.admit_per_sec == 0 {
            return None;
        }
        let until_open_ms = match (&self.terms, self.opened) {
            (Some(terms), false) => u64::try_from(terms.opens_at_ms - now_ms).unwrap_or(0),
            _ => 0,
        };
        let rate = u64::from(self.admit_per_sec);
        Some(until_open_ms.div_ceil(1000) + position.div_ceil(rate))
    }

    fn stats(&self, now_ms: i64) -> RoomStats {
        let admitted = self.head_at(now_ms);
        RoomStats {
            waiting: self.len() - admitted,
            admitted,
            admit_per_sec: self.admit_per_sec,
            paused: self.paused,
            opens_at_ms: self.terms.as_ref().map(|t| t.opens_at_ms),
        }
    }

    /// Events a command at `now_ms` starts with: the opening, when it is due and not yet
    /// journaled, so every later event sees the shuffled queue and the started clock.
    fn opening_due(&self, now_ms: i64) -> Option<RoomEvent> {
        let terms = self.terms.as_ref()?;
        (!self.opened && now_ms >= terms.opens_at_ms).then_some(RoomEvent::Opened {
            at_ms: terms.opens_at_ms,
        })
    }

    fn decide_join(
        &self,
        user_id: &str,
        terms: &RoomTerms,
        now_ms: i64,
    ) -> Result<Decision<Self>, Rejection> {
        if let Some(ticket) = self.ticket_of(user_id) {
            return Ok(Decision::reply(RoomReply::Ticket(
                self.view(ticket, now_ms, false),
            )));
        }
        let waiting_max = self.terms.as_ref().unwrap_or(terms).waiting_max;
        if self.len() >= waiting_max {
            return Err(Rejection::new(
                ErrorCode::Unavailable,
                format!("the waiting room is full ({waiting_max} tickets)"),
            ));
        }
        let joined = RoomEvent::Joined {
            user_id: UserId::from(user_id),
            at_ms: now_ms,
        };
        if self.terms.is_some() && self.opening_due(now_ms).is_none() {
            // The common case, and O(1): a join leaves `head_at(now)` as it was (a drained
            // queue's head is already at its end), so the new ticket's view can be read off
            // the current state. No copy of the queue.
            let reply = RoomReply::Ticket(self.view(self.len() + 1, now_ms, true));
            return Ok(Decision {
                events: vec![joined],
                reply,
            });
        }
        // The first join, or the first event after opening: rare, so a scratch copy is fine.
        let mut next = self.clone();
        let mut events = Vec::new();
        if self.terms.is_none() {
            let created = RoomEvent::Created {
                terms: terms.clone(),
            };
            next.step(&mut events, created);
        }
        if let Some(opened) = next.opening_due(now_ms) {
            next.step(&mut events, opened);
        }
        next.step(&mut events, joined);
        let reply = RoomReply::Ticket(next.view(next.len(), now_ms, true));
        Ok(Decision { events, reply })
    }

    /// The opening event and the opened room, when the opening is due and not yet journaled
    /// (a scratch copy, taken once per room); otherwise nothing.
    fn opened_by(&self, now_ms: i64) -> (Vec<RoomEvent>, Option<WaitingRoom>) {
        let Some(opened) = self.opening_due(now_ms) else {
            return (Vec::new(), None);
        };
        let mut next = self.clone();
        let mut events = Vec::new();
        next.step(&mut events, opened);
        (events, Some(next))
    }

    /// Applies `event` to this (scratch) state and records it: how a decision with several
    /// events computes its reply from the state they leave.
    fn step(&mut self, events: &mut Vec<RoomEvent>, event: RoomEvent) {
        self.apply(&event);
        events.push(event);
    }

    fn decide_configure(
        &self,
        admit_per_sec: Option<u32>,
        paused: Option<bool>,
        terms: &RoomTerms,
        now_ms: i64,
    ) -> Result<Decision<Self>, Rejection> {
        let mut next = self.clone();
        let mut events = Vec::new();
        if self.terms.is_none() {
            let created = RoomEvent::Created {
                terms: terms.clone(),
            };
            next.step(&mut events, created);
        }
        let admit_per_sec = admit_per_sec.unwrap_or(next.admit_per_sec);
        if !(1..=RATE_MAX_PER_SEC).contains(&admit_per_sec) {
            return Err(Rejection::validation(
                "admit_per_sec",
                format!("must be 1 to {RATE_MAX_PER_SEC}"),
            ));
        }
        if let Some(opened) = next.opening_due(now_ms) {
            next.step(&mut events, opened);
        }
        let configured = RoomEvent::Configured {
            at_ms: now_ms,
            admit_per_sec,
            paused: paused.unwrap_or(next.paused),
        };
        next.step(&mut events, configured);
        Ok(Decision {
            events,
            reply: RoomReply::Stats(next.stats(now_ms)),
        })
    }

    /// Moves the admission base to `at_ms`, keeping what was admitted by then (a fraction of a
    /// ticket in progress is dropped: this happens only when the rate or the pause changes).
    fn rebase(&mut self, at_ms: i64) {
        self.base_head = self.head_at(at_ms);
        self.base_at_ms = self.base_at_ms.max(at_ms);
    }

    /// The opening shuffle of the pre-open joins: Fisher-Yates driven by ChaCha8 (a generator
    /// whose output is fixed by its seed across versions, so a replay shuffles the same way).
    fn shuffle_preopen(&mut self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = usize::try_from(self.preopen_len).expect("queue length fits usize");
        for i in (1..n).rev() {
            let j = usize::try_from(rng.next_u64() % (i as u64 + 1)).expect("index fits usize");
            self.queue.swap(i, j);
        }
        for (place, user) in self.queue[..n].iter().enumerate() {
            self.tickets.insert(user.clone(), place as u64 + 1);
        }
    }

    /// The pre-open joins in ticket order (tests check the shuffle is a permutation).
    pub fn preopen_users(&self) -> &[UserId] {
        &self.queue[..usize::try_from(self.preopen_len).expect("fits usize")]
    }
}

impl Entity for WaitingRoom {
    const KIND: &'static str = "waiting_room";
    const VERSION: u8 = 1;

    type Command = RoomCommand;
    type Event = RoomEvent;
    type Reply = RoomReply;

    fn blank(id: &str) -> Self {
        WaitingRoom {
            resource: id.to_string(),
            ..WaitingRoom::default()
        }
    }

    fn exists(&self) -> bool {
        self.terms.is_some()
    }

    fn decide(&self, command: &RoomCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        let now_ms = ctx.now_ms;
        match command {
            RoomCommand::Join { user_id, terms } => {
                self.decide_join(user_id.as_str(), terms, now_ms)
            }
            RoomCommand::Me { user_id } => {
                // A read at or after the opening time opens the room first, so no answer ever
                // shows a pre-shuffle ticket once the room should be open.
                let (events, room) = self.opened_by(now_ms);
                let room = room.as_ref().unwrap_or(self);
                match room.ticket_of(user_id.as_str()) {
                    Some(ticket) => Ok(Decision {
                        events,
                        reply: RoomReply::Ticket(room.view(ticket, now_ms, false)),
                    }),
                    None => Err(Rejection::not_found(
                        "you have not joined this waiting room",
                    )),
                }
            }
            RoomCommand::Stats => {
                let (events, room) = self.opened_by(now_ms);
                let stats = room.as_ref().unwrap_or(self).stats(now_ms);
                Ok(Decision {
                    events,
                    reply: RoomReply::Stats(stats),
                })
            }
            RoomCommand::Configure {
                admit_per_sec,
                paused,
                terms,
            } => self.decide_configure(*admit_per_sec, *paused, terms, now_ms),
            RoomCommand::Open => {
                let mut next = self.clone();
                let mut events = Vec::new();
                if let Some(opened) = self.opening_due(now_ms) {
                    next.step(&mut events, opened);
                }
                Ok(Decision {
                    events,
                    reply: RoomReply::Stats(next.stats(now_ms)),
                })
            }
        }
    }

    fn apply(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::Created { terms } => {
                self.admit_per_sec = terms.admit_per_sec;
                self.base_at_ms = terms.opens_at_ms;
                self.terms = Some(terms.clone());
            }
            RoomEvent::Joined { user_id, at_ms } => {
                if self.opened && self.head_at(*at_ms) == self.len() {
                    // A drained queue banks no admissions: the clock restarts with this join.
                    self.base_head = self.len();
                    self.base_at_ms = self.base_at_ms.max(*at_ms);
                } else if !self.opened {
                    self.preopen_len += 1;
                }
                self.queue.push(user_id.clone());
                self.tickets.insert(user_id.clone(), self.len());
            }
            RoomEvent::Opened { at_ms } => {
                let seed = self.terms.as_ref().map_or(0, |t| t.seed);
                self.shuffle_preopen(seed);
                self.opened = true;
                self.base_at_ms = *at_ms;
            }
            RoomEvent::Configured {
                at_ms,
                admit_per_sec,
                paused,
            } => {
                self.rebase(*at_ms);
                self.admit_per_sec = *admit_per_sec;
                self.paused = *paused;
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        if self.base_head > self.len() || self.preopen_len > self.len() {
            return Err(format!(
                "head {} or pre-open {} beyond {} tickets",
                self.base_head,
                self.preopen_len,
                self.len()
            ));
        }
        if self.tickets.len() != self.queue.len() {
            return Err("tickets and queue differ in length".into());
        }
        if let (true, Some(terms)) = (self.opened, &self.terms) {
            if self.base_at_ms < terms.opens_at_ms {
                return Err("admission clock runs from before opening".into());
            }
        }
        Ok(())
    }

    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()?;
        for (place, user) in self.queue.iter().enumerate() {
            if self.tickets.get(user) != Some(&(place as u64 + 1)) {
                return Err(format!(
                    "{user} is at place {} but holds another ticket",
                    place + 1
                ));
            }
        }
        Ok(())
    }

    fn restore(&mut self) {
        self.tickets = self
            .queue
            .iter()
            .enumerate()
            .map(|(place, user)| (user.clone(), place as u64 + 1))
            .collect();
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        let terms = self.terms.as_ref()?;
        (!self.opened).then_some(terms.opens_at_ms)
    }

    fn deadline_command(&self, ctx: &Ctx) -> Option<RoomCommand> {
        self.next_deadline_ms()
            .filter(|at| *at <= ctx.now_ms)
            .map(|_| RoomCommand::Open)
    }

    fn snapshot_weight(&self) -> u64 {
        self.len()
    }
}

#[cfg(test)]
mod tests;
