//! What a seat map answers: the event with its availability per section, a hold, and the
//! list of every seat (GET /events/{id}/seats).

use crate::{EventId, OrderId, UserId};
use serde::{Deserialize, Serialize};

use super::{sum_counts, EventTerms, Hold, SeatCounts, SeatEvent, SeatMap, SeatStatus};
use crate::time::rfc3339;

/// Seats by status; `available + held + sold` is the seats counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionView {
    pub name: String,
    pub seats_total: u32,
    pub availability: Availability,
}

/// The event as API.md shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapView {
    pub id: EventId,
    pub name: String,
    pub venue: String,
    pub starts_at: String,
    pub sales_open_at: Option<String>,
    pub hold_ttl_secs: i64,
    pub max_seats_per_order: u32,
    pub queue_required: bool,
    pub seats_total: u32,
    pub availability: Availability,
    pub sections: Vec<SectionView>,
    pub version: u64,
}

/// One hold: its seats by id, each seat's price (the order's unit prices) and their sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub order: OrderId,
    pub user_id: UserId,
    pub seats: Vec<String>,
    /// The price of each seat, in the order of `seats`.
    pub unit_prices: Vec<i64>,
    pub total_price: i64,
    pub expires_at_ms: i64,
}

/// One seat of GET /events/{id}/seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatView {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub price: i64,
    pub status: SeatStatus,
}

/// A ticket checked in: `POST /events/{id}/check-in` answers it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInView {
    pub seat_id: String,
    /// The order's id as the API writes it (a UUID).
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatReply {
    Map(MapView),
    Hold(HoldView),
    Seats(SeatsSnapshot),
    CheckedIn(CheckInView),
}

impl SeatMap {
    /// Every seat that is not AVAILABLE, with its status: where a live subscriber starts.
    pub fn seats_taken(&self) -> impl Iterator<Item = (u32, SeatStatus)> + '_ {
        (0u32..)
            .zip(&self.status)
            .filter(|(_, byte)| **byte != SeatStatus::Available as u8)
            .map(|(seat, _)| (seat, self.status_of(seat)))
    }

    /// The seats `event` moves and the status it moves them to; called before the event is
    /// applied (a release or commit reads its hold, which the event removes). A check-in
    /// moves none: the seat stays SOLD.
    pub fn seats_moved_by<'a>(&'a self, event: &'a SeatEvent) -> (&'a [u32], SeatStatus) {
        let none: &[u32] = &[];
        match event {
            SeatEvent::Created(_) => (none, SeatStatus::Available),
            SeatEvent::CheckedIn { .. } => (none, SeatStatus::Sold),
            SeatEvent::Returned { seats, .. } => (seats.as_slice(), SeatStatus::Available),
            SeatEvent::Held { seats, .. } => (seats.as_slice(), SeatStatus::Held),
            SeatEvent::Released { order, .. } | SeatEvent::Committed { order } => {
                let to = match event {
                    SeatEvent::Committed { .. } => SeatStatus::Sold,
                    _ => SeatStatus::Available,
                };
                let seats = self.holds.get(*order).map_or(none, |h| h.seats.as_slice());
                (seats, to)
            }
        }
    }

    pub fn view(&self) -> MapView {
        self.view_with(&self.counts, self.version)
    }

    /// The view with these counts and version: those after a decision, before it applies.
    pub(super) fn view_with(&self, counts: &[SeatCounts], version: u64) -> MapView {
        let terms = self.terms();
        let sections: Vec<SectionView> = terms
            .sections
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(s, (section, c))| {
                let seats_total = self.layout.seats_of_section(s).len() as u32;
                SectionView {
                    name: section.name.clone(),
                    seats_total,
                    availability: availability(seats_total, c),
                }
            })
            .collect();
        let seats_total = self.layout.seats_total();
        let totals = sum_counts(counts);
        MapView {
            id: self.id.clone(),
            name: terms.name.clone(),
            venue: terms.venue.clone(),
            starts_at: rfc3339(terms.starts_at_ms),
            sales_open_at: terms.sales_open_at_ms.map(rfc3339),
            hold_ttl_secs: terms.hold_ttl_secs,
            max_seats_per_order: terms.max_seats_per_order,
            queue_required: terms.queue_required,
            seats_total,
            availability: availability(seats_total, &totals),
            sections,
            version,
        }
    }

    pub fn hold_view(&self, order: OrderId, hold: &Hold) -> HoldView {
        let unit_prices: Vec<i64> = hold.seats.iter().map(|s| self.price_of(*s)).collect();
        HoldView {
            order,
            user_id: hold.user_id.clone(),
            seats: hold.seats.iter().map(|s| self.seat_id(*s)).collect(),
            total_price: unit_prices.iter().sum(),
            unit_prices,
            expires_at_ms: hold.expires_at_ms,
        }
    }

    /// Every seat, front first; empty for a map not created.
    pub fn seats_view(&self) -> Vec<SeatView> {
        self.seats_snapshot()
            .map(|snapshot| snapshot.views())
            .unwrap_or_default()
    }

    /// A copy of the terms and one byte per seat: what the seat list needs, taken on the map's
    /// turn (a memcpy) so that the list itself is built on the HTTP worker.
    pub fn seats_snapshot(&self) -> Option<SeatsSnapshot> {
        Some(SeatsSnapshot {
            terms: self.terms.clone()?,
            status: self.status.clone(),
        })
    }
}

/// The seat map's state as `GET /events/{id}/seats` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatsSnapshot {
    pub terms: EventTerms,
    pub status: Vec<u8>,
}

impl SeatsSnapshot {
    /// Every seat with its id, price and status, front first.
    pub fn views(&self) -> Vec<SeatView> {
        let mut seats = Vec::with_capacity(self.status.len());
        let mut statuses = self.status.iter();
        for section in &self.terms.sections {
            for row in &section.rows {
                for number in 1..=row.seats {
                    let byte = *statuses.next().expect("one status byte per seat");
                    seats.push(SeatView {
                        id: format!("{}-{}-{number}", section.name, row.name),
                        section: section.name.clone(),
                        row: row.name.clone(),
                        number,
                        price: row.price,
                        status: SeatStatus::from_byte(byte).expect("status bytes are checked"),
                    });
                }
            }
        }
        seats
    }
}

fn availability(seats_total: u32, counts: &SeatCounts) -> Availability {
    Availability {
        available: seats_total - counts.held - counts.sold,
        held: counts.held,
        sold: counts.sold,
    }
}
