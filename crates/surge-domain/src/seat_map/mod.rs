//! SeatMap: the seats of one event (sections, rows, seats, a price per row) and their holds.
//!
//! Supervised by `Region<SeatMap>`; persistence id `seat_map:{id}` (the event's id).
//! Accepts: create, get, hold (seats by id, or the best available adjacent seats in one row, for
//! an order, with an expiry), release (cancel, expiry, compensation; idempotent), commit (a paid
//! order's hold becomes sold), expire (its own deadline: the holds falling due), return (a
//! refunded order's sold seats become available again) and check-in (a sold seat's ticket is
//! used at the door, once).
//! Journals: `Created`, `Held`, `Released`, `Committed`, `Returned`, `CheckedIn`.
//! A hold is all or nothing: one seat that is unknown, repeated or not available refuses the
//! whole request and holds nothing. Limits are per order (`max_seats_per_order`); a user may
//! hold any number of orders.
//! Compact by design, for stadiums: one status byte per seat, indexed by the flat seat index of
//! [`Layout`] (front-first order), and the row offsets; no per-seat structs or strings.
//! Hold expiry is a durable deadline: `next_deadline_ms` is the earliest hold's expiry, and the
//! `Expire` command releases every hold due, also after a restart.
//! A check-in is a fourth value of the seat's status byte, not a new field: see
//! `after_sale.rs` for why (snapshots written before it still load).
//!
//! # Invariants
//! - a map without terms has no seats, counts or holds;
//! - there is one status byte per seat of the layout, each AVAILABLE, HELD, SOLD or CHECKED_IN
//!   (a sold seat whose ticket was used), so no seat is held or sold twice; `apply` refuses
//!   (panics on) a hold of a seat that is not available, a sale or release of one that is not
//!   held, a return of one that is not sold and a check-in of one that is not sold or is
//!   checked in already;
//! - per section, `held + sold <= seats`, so available + held + sold = total, a checked-in seat
//!   counted as sold;
//! - the per-section counts equal a recount of the status bytes (deep check);
//! - every HELD seat belongs to exactly one hold and every hold's seats are HELD (deep check);
//! - the expiry index holds exactly the open holds (deep check; [`ExpiringHolds`]).

use std::collections::HashMap;

use crate::{EventId, OrderId, UserId};
use serde::{Deserialize, Serialize};

use super::expiring_holds::{Expiring, ExpiringHolds};
use super::stock_item::ReleaseReason;
use super::{Ctx, Decision, Entity};
use crate::Rejection;

mod after_sale;
mod decide;
mod layout;
mod views;
pub use layout::{
    place_in_row, validate_terms, EventTerms, Layout, Placement, RowTerms, SeatPlace, SectionTerms,
    HOLD_TTL_SECS_DEFAULT, HOLD_TTL_SECS_MAX, MAX_SEATS_PER_ORDER_DEFAULT, NAME_LEN_MAX,
    ROW_SEATS_MAX, SEATS_MAX, SEATS_PER_ORDER_MAX, TEXT_LEN_MAX,
};
pub use views::{
    Availability, CheckInView, HoldView, MapView, SeatReply, SeatView, SeatsSnapshot, SectionView,
};

/// A seat's status; stored as its byte, one per seat. A checked-in seat is SOLD here (and in
/// every view); its byte is [`CHECKED_IN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum SeatStatus {
    Available = 0,
    Held = 1,
    Sold = 2,
}

/// The status byte of a SOLD seat whose ticket was checked in. Bytes 0 to 2 are the
/// [`SeatStatus`] values and mean what they always meant, so a snapshot from before check-ins
/// reads unchanged.
pub const CHECKED_IN: u8 = 3;

impl SeatStatus {
    pub(crate) fn from_byte(byte: u8) -> Option<SeatStatus> {
        match byte {
            0 => Some(SeatStatus::Available),
            1 => Some(SeatStatus::Held),
            2 | CHECKED_IN => Some(SeatStatus::Sold),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SeatStatus::Available => "AVAILABLE",
            SeatStatus::Held => "HELD",
            SeatStatus::Sold => "SOLD",
        }
    }
}

/// Held and sold seats of one section; the rest of its seats are available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCounts {
    pub held: u32,
    pub sold: u32,
}

impl SeatCounts {
    fn slot(&mut self, status: SeatStatus) -> Option<&mut u32> {
        match status {
            SeatStatus::Available => None,
            SeatStatus::Held => Some(&mut self.held),
            SeatStatus::Sold => Some(&mut self.sold),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Flat seat indexes, in the order they were asked for (or front to back).
    pub seats: Vec<u32>,
    pub expires_at_ms: i64,
    pub user_id: UserId,
}

impl Expiring for Hold {
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

/// What a hold asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatRequest {
    ByIds(Vec<String>),
    /// `quantity` adjacent seats in one row, front rows first, in `section` if named.
    BestAvailable {
        section: Option<String>,
        quantity: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatCommand {
    Create(EventTerms),
    Get,
    /// Every seat with its status (GET /events/{id}/seats).
    Seats,
    Hold {
        order: OrderId,
        user_id: UserId,
        request: SeatRequest,
        /// The caller showed a valid waiting-room pass for this event.
        queue_pass: bool,
    },
    Release {
        order: OrderId,
        reason: ReleaseReason,
    },
    Commit {
        order: OrderId,
    },
    Expire,
    /// A refunded order's seats (by id) go back on sale; all or none, each must be sold.
    Return {
        order: OrderId,
        seats: Vec<String>,
    },
    /// The ticket of `seat`, sold to `order` (the caller checked the order), is used.
    CheckIn {
        order: OrderId,
        seat: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatEvent {
    Created(EventTerms),
    Held {
        order: OrderId,
        user_id: UserId,
        seats: Vec<u32>,
        expires_at_ms: i64,
    },
    Released {
        order: OrderId,
        reason: ReleaseReason,
    },
    Committed {
        order: OrderId,
    },
    // Appended variants only: journals written before them decode unchanged.
    Returned {
        order: OrderId,
        seats: Vec<u32>,
    },
    CheckedIn {
        order: OrderId,
        seat: u32,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatMap {
    pub id: EventId,
    pub terms: Option<EventTerms>,
    pub version: u64,
    /// One [`SeatStatus`] byte (or [`CHECKED_IN`]) per seat, by flat index.
    status: Vec<u8>,
    /// Per section, in the terms' order.
    counts: Vec<SeatCounts>,
    holds: ExpiringHolds<Hold>,
    /// Rebuilt from the terms.
    #[serde(skip)]
    layout: Layout,
}

impl SeatMap {
    /// Holds not yet committed, released or expired.
    pub fn open_holds(&self) -> usize {
        self.holds.len()
    }

    fn terms(&self) -> &EventTerms {
        self.terms.as_ref().expect("only called on created maps")
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn hold(&self, order: OrderId) -> Option<&Hold> {
        self.holds.get(order)
    }

    pub fn status_of(&self, seat: u32) -> SeatStatus {
        SeatStatus::from_byte(self.status[seat as usize]).expect("status bytes are checked")
    }

    /// Whether `seat`'s ticket was checked in (the seat is then SOLD).
    pub fn checked_in(&self, seat: u32) -> bool {
        self.status[seat as usize] == CHECKED_IN
    }

    /// Seats checked in over all sections; a scan, for the admin view.
    pub fn checked_in_count(&self) -> usize {
        self.status.iter().filter(|b| **b == CHECKED_IN).count()
    }

    /// The flat index of a seat id, e.g. "A-3-12"; `None` for an id of no seat here.
    pub fn seat_index(&self, id: &str) -> Option<u32> {
        self.layout.seat_index(self.terms.as_ref()?, id)
    }

    pub fn seat_id(&self, seat: u32) -> String {
        self.layout.seat_id(self.terms(), seat)
    }

    pub fn price_of(&self, seat: u32) -> i64 {
        let at = self.layout.place(seat);
        self.terms().sections[at.section].rows[at.row].price
    }

    /// Seats held and sold over all sections.
    pub fn totals(&self) -> SeatCounts {
        sum_counts(&self.counts)
    }

    /// Bytes of the per-seat state and its index (not the holds): what a big venue costs.
    pub fn seat_state_bytes(&self) -> usize {
        self.status.len()
            + self.layout.bytes()
            + self.counts.len() * std::mem::size_of::<SeatCounts>()
    }

    /// Moves `seats` from `from` to `to`, in the status bytes and the section counts. A seat
    /// not in `from` means a double booking was about to happen: corrupt state, so panic.
    fn move_seats(&mut self, seats: &[u32], from: SeatStatus, to: SeatStatus) {
        for &seat in seats {
            let byte = &mut self.status[seat as usize];
            assert_eq!(*byte, from as u8, "seat {seat} is not {}", from.as_str());
            *byte = to as u8;
        }
        tally(&self.layout, &mut self.counts, seats, from, to);
    }

    fn recount(&self) -> Vec<SeatCounts> {
        let mut counts = vec![SeatCounts::default(); self.layout.section_count()];
        for (seat, byte) in (0u32..).zip(&self.status) {
            let status = SeatStatus::from_byte(*byte).expect("checked before recount");
            if let Some(slot) = counts[self.layout.section_of_seat(seat)].slot(status) {
                *slot += 1;
            }
        }
        counts
    }

    /// Every HELD seat is in exactly one hold and every hold's seats are HELD.
    fn check_holds(&self) -> Result<(), String> {
        let mut owner: HashMap<u32, OrderId> = HashMap::new();
        for (order, hold) in self.holds.iter() {
            if hold.seats.is_empty() {
                return Err(format!("hold {order} has no seats"));
            }
            for &seat in &hold.seats {
                if let Some(other) = owner.insert(seat, *order) {
                    return Err(format!("seat {seat} is in holds {other} and {order}"));
                }
                if self.status.get(seat as usize) != Some(&(SeatStatus::Held as u8)) {
                    return Err(format!("seat {seat} of hold {order} is not HELD"));
                }
            }
        }
        let held = self.totals().held as usize;
        if owner.len() != held {
            return Err(format!("{held} seats HELD, {} in holds", owner.len()));
        }
        Ok(())
    }
}

fn sum_counts(counts: &[SeatCounts]) -> SeatCounts {
    counts
        .iter()
        .fold(SeatCounts::default(), |sum, c| SeatCounts {
            held: sum.held + c.held,
            sold: sum.sold + c.sold,
        })
}

/// Moves the counts of `seats` from `from` to `to`.
fn tally(
    layout: &Layout,
    counts: &mut [SeatCounts],
    seats: &[u32],
    from: SeatStatus,
    to: SeatStatus,
) {
    for &seat in seats {
        let section = &mut counts[layout.section_of_seat(seat)];
        if let Some(slot) = section.slot(from) {
            *slot -= 1;
        }
        if let Some(slot) = section.slot(to) {
            *slot += 1;
        }
    }
}

impl Entity for SeatMap {
    const KIND: &'static str = "seat_map";
    const VERSION: u8 = 1;

    type Command = SeatCommand;
    type Event = SeatEvent;
    type Reply = SeatReply;

    fn blank(id: &str) -> Self {
        SeatMap {
            id: EventId::from(id),
            ..SeatMap::default()
        }
    }

    fn exists(&self) -> bool {
        self.terms.is_some()
    }

    fn decide(&self, command: &SeatCommand, ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        if let SeatCommand::Create(terms) = command {
            return self.decide_create(terms);
        }
        if self.terms.is_none() {
            return Err(Rejection::not_found(format!("event {} not found", self.id)));
        }
        match command {
            SeatCommand::Create(_) => unreachable!("handled above"),
            SeatCommand::Get => Ok(Decision::reply(SeatReply::Map(self.view()))),
            SeatCommand::Seats => {
                let snapshot = self
                    .seats_snapshot()
                    .expect("checked above: the map exists");
                Ok(Decision::reply(SeatReply::Seats(snapshot)))
            }
            SeatCommand::Hold {
                order,
                user_id,
                request,
                queue_pass,
            } => self.decide_hold(*order, user_id.as_str(), request, *queue_pass, ctx),
            SeatCommand::Release { order, reason } => Ok(self.decide_release(*order, *reason)),
            SeatCommand::Commit { order } => self.decide_commit(*order, ctx),
            SeatCommand::Expire => Ok(self.decide_expire(ctx)),
            SeatCommand::Return { order, seats } => self.decide_return(*order, seats),
            SeatCommand::CheckIn { order, seat } => self.decide_check_in(*order, seat),
        }
    }

    fn apply(&mut self, event: &SeatEvent) {
        self.version += 1;
        match event {
            SeatEvent::Created(terms) => {
                self.layout = Layout::new(terms);
                self.status = vec![SeatStatus::Available as u8; self.layout.seats_total() as usize];
                self.counts = vec![SeatCounts::default(); terms.sections.len()];
                self.terms = Some(terms.clone());
            }
            SeatEvent::Held {
                order,
                user_id,
                seats,
                expires_at_ms,
            } => {
                assert!(!self.holds.contains(*order), "order {order} holds already");
                self.move_seats(seats, SeatStatus::Available, SeatStatus::Held);
                let hold = Hold {
                    seats: seats.clone(),
                    expires_at_ms: *expires_at_ms,
                    user_id: user_id.clone(),
                };
                self.holds.insert(*order, hold);
            }
            SeatEvent::Released { order, .. } => self.end_hold(*order, SeatStatus::Available),
            SeatEvent::Committed { order } => self.end_hold(*order, SeatStatus::Sold),
            SeatEvent::Returned { seats, .. } => self.return_seats(seats),
            SeatEvent::CheckedIn { seat, .. } => {
                let byte = &mut self.status[*seat as usize];
                assert_eq!(*byte, SeatStatus::Sold as u8, "seat {seat} is not SOLD");
                *byte = CHECKED_IN;
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let Some(terms) = &self.terms else {
            return match self.status.is_empty() && self.counts.is_empty() && self.holds.is_empty() {
                true => Ok(()),
                false => Err("seats on a map that was never created".into()),
            };
        };
        if self.status.len() != self.layout.seats_total() as usize
            || self.counts.len() != terms.sections.len()
            || self.layout.section_count() != terms.sections.len()
        {
            return Err("status bytes or counts do not match the layout".into());
        }
        for (s, counts) in self.counts.iter().enumerate() {
            let seats = self.layout.seats_of_section(s).len();
            if (counts.held as usize) + (counts.sold as usize) > seats {
                return Err(format!("section {s}: {counts:?} of {seats} seats"));
            }
        }
        Ok(())
    }

    fn check_deep_invariants(&self) -> Result<(), String> {
        self.check_invariants()?;
        if let Some(terms) = &self.terms {
            if self.layout != Layout::new(terms) {
                return Err("layout out of step with the terms".into());
            }
        }
        if let Some(seat) = self
            .status
            .iter()
            .position(|b| SeatStatus::from_byte(*b).is_none())
        {
            return Err(format!("seat {seat} has status byte {}", self.status[seat]));
        }
        if self.recount() != self.counts {
            return Err("section counts differ from a recount of the seats".into());
        }
        self.check_holds()?;
        self.holds.check()
    }

    fn restore(&mut self) {
        self.layout = self.terms.as_ref().map(Layout::new).unwrap_or_default();
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        self.holds.next_deadline_ms()
    }

    fn deadline_command(&self, ctx: &Ctx) -> Option<SeatCommand> {
        self.next_deadline_ms()
            .filter(|at| *at <= ctx.now_ms)
            .map(|_| SeatCommand::Expire)
    }

    /// A snapshot writes a byte per seat; waiting about one event per 64 seats (and one per
    /// open hold) keeps that near 64 bytes per event, amortised.
    fn snapshot_weight(&self) -> u64 {
        u64::try_from(self.status.len() / 64 + self.holds.len()).expect("usize fits u64")
    }
}

impl SeatMap {
    /// Ends a hold: its seats become `to` (available or sold). Gone already: nothing to do.
    fn end_hold(&mut self, order: OrderId, to: SeatStatus) {
        if let Some(hold) = self.holds.remove(order) {
            self.move_seats(&hold.seats, SeatStatus::Held, to);
        }
    }
}

#[cfg(test)]
mod tests;
