//! What happens to a sold seat: its order is refunded and it goes back on sale (`Return`), or
//! its ticket is used at the door (`CheckIn`), once.
//!
//! # Where a check-in lives, and why snapshots still load
//!
//! A snapshot is postcard, which is not self-describing: a field added to [`SeatMap`] would
//! make every snapshot written before it unreadable (and [`SeatMap::VERSION`] is the one
//! version byte the codec accepts). So a check-in adds no field. It is a fourth value of the
//! seat's status byte, [`CHECKED_IN`], beside AVAILABLE (0), HELD (1) and SOLD (2), which keep
//! their meaning: an old snapshot holds only those three and reads unchanged; a new one may
//! hold the fourth (which a build from before check-ins would refuse, as it refuses any byte it
//! does not know, rather than misread it). The byte costs nothing per seat, is checked in once
//! per seat under the map's one-command-at-a-time turn, is journaled (`CheckedIn`, an appended
//! variant) and snapshotted with the seats, and a return (a refund) clears it with the sale.
//! A checked-in seat is SOLD in every count and view.
//!
//! The map does not keep which order bought a sold seat (that would be a new field too, and
//! the order already knows its seats): the caller checks that the seat is the order's and that
//! the order is confirmed (the check-in handler asks the order; a refund's saga returns exactly
//! the order's seats, once, through its keyed step). The map checks what it can see: the seat
//! exists and is sold, and for a check-in, not checked in yet.

use super::{tally, SeatEvent, SeatMap, SeatReply, SeatStatus, CHECKED_IN, SEATS_PER_ORDER_MAX};
use crate::seat_map::views::CheckInView;
use crate::{Decision, ErrorCode, OrderId, Rejection};

impl SeatMap {
    /// Every named seat back on sale, or none: each must exist, be named once and be sold
    /// (checked in or not: a refund after the door still gives the seat back).
    pub(super) fn decide_return(
        &self,
        order: OrderId,
        ids: &[String],
    ) -> Result<Decision<Self>, Rejection> {
        if ids.is_empty() || ids.len() > SEATS_PER_ORDER_MAX as usize {
            return Err(Rejection::validation(
                "seats",
                format!("name 1 to {SEATS_PER_ORDER_MAX} seats"),
            ));
        }
        let seats = self.seats_by_ids(ids, "seats")?;
        self.all_are(&seats, SeatStatus::Sold, ErrorCode::Conflict, "returned")?;
        let mut counts = self.counts.clone();
        tally(
            &self.layout,
            &mut counts,
            &seats,
            SeatStatus::Sold,
            SeatStatus::Available,
        );
        Ok(Decision {
            reply: SeatReply::Map(self.view_with(&counts, self.version + 1)),
            events: vec![SeatEvent::Returned { order, seats }],
        })
    }

    /// The ticket of a sold seat is used: the first time it is recorded, after that it is
    /// 409 `ALREADY_CHECKED_IN`; a seat that is not sold (a refunded order's) or not of this
    /// event is 422 `TICKET_INVALID`.
    pub(super) fn decide_check_in(
        &self,
        order: OrderId,
        id: &str,
    ) -> Result<Decision<Self>, Rejection> {
        let seat = self.seat_index(id).ok_or_else(|| {
            Rejection::new(
                ErrorCode::TicketInvalid,
                format!("event {} has no seat {id}", self.id),
            )
        })?;
        if self.checked_in(seat) {
            return Err(Rejection::new(
                ErrorCode::AlreadyCheckedIn,
                format!("seat {id} was checked in already"),
            ));
        }
        if self.status_of(seat) != SeatStatus::Sold {
            return Err(Rejection::new(
                ErrorCode::TicketInvalid,
                format!("seat {id} is not sold: its ticket is void"),
            ));
        }
        Ok(Decision {
            events: vec![SeatEvent::CheckedIn { order, seat }],
            reply: SeatReply::CheckedIn(CheckInView {
                seat_id: self.seat_id(seat),
                order_id: order.to_string(),
            }),
        })
    }

    /// Sold (or checked-in) seats become available. A seat not sold means the decision was
    /// wrong: corrupt state, so panic.
    pub(super) fn return_seats(&mut self, seats: &[u32]) {
        for &seat in seats {
            let byte = &mut self.status[seat as usize];
            assert!(
                *byte == SeatStatus::Sold as u8 || *byte == CHECKED_IN,
                "seat {seat} is not SOLD"
            );
            *byte = SeatStatus::Available as u8;
        }
        tally(
            &self.layout,
            &mut self.counts,
            seats,
            SeatStatus::Sold,
            SeatStatus::Available,
        );
    }
}
