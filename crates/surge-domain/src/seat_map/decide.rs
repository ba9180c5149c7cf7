//! The commands of a seat map before a sale: create, hold (by ids or best available), release,
//! commit and expire. Every rule is checked before any event is made, so a refused hold holds nothing.

use super::{
    place_in_row, tally, validate_terms, EventTerms, Hold, SeatEvent, SeatMap, SeatReply,
    SeatRequest, SeatStatus,
};
use crate::stock_item::ReleaseReason;
use crate::UserId;
use crate::{Ctx, Decision, Entity};
use crate::{ErrorCode, OrderId, Rejection};

impl SeatMap {
    pub(super) fn decide_create(&self, terms: &EventTerms) -> Result<Decision<Self>, Rejection> {
        if self.terms.is_some() {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                format!("event {} already exists", self.id),
            ));
        }
        validate_terms(terms)?;
        let event = SeatEvent::Created(terms.clone());
        // The map is blank, so this copy is cheap; the view needs the layout built.
        let mut next = self.clone();
        next.apply(&event);
        Ok(Decision {
            events: vec![event],
            reply: SeatReply::Map(next.view()),
        })
    }

    pub(super) fn decide_hold(
        &self,
        order: OrderId,
        user_id: &str,
        request: &SeatRequest,
        queue_pass: bool,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        // A retried hold of the same order answers the hold it made.
        if let Some(hold) = self.holds.get(order) {
            return Ok(Decision::reply(SeatReply::Hold(
                self.hold_view(order, hold),
            )));
        }
        let terms = self.terms();
        if terms.queue_required && !queue_pass {
            return Err(Rejection::new(
                ErrorCode::QueuePassRequired,
                "this event admits buyers through its waiting room; send X-Queue-Pass",
            ));
        }
        if terms.sales_open_at_ms.is_some_and(|at| ctx.now_ms < at) {
            return Err(Rejection::new(
                ErrorCode::SalesNotOpen,
                format!("sales for event {} have not opened yet", self.id),
            ));
        }
        let seats = match request {
            SeatRequest::ByIds(ids) => self.pick_by_ids(ids)?,
            SeatRequest::BestAvailable { section, quantity } => {
                self.pick_best(section.as_deref(), *quantity)?
            }
        };
        // The event sets a hold's lifetime, so the handler needs no read of the map first.
        let expires_at_ms = ctx.now_ms + terms.hold_ttl_secs * 1000;
        let hold = Hold {
            seats,
            expires_at_ms,
            user_id: UserId::from(user_id),
        };
        let reply = SeatReply::Hold(self.hold_view(order, &hold));
        let event = SeatEvent::Held {
            order,
            user_id: hold.user_id,
            seats: hold.seats,
            expires_at_ms,
        };
        Ok(Decision {
            events: vec![event],
            reply,
        })
    }

    /// Checked before any id is parsed, so a request's work is bounded by the limit.
    fn check_quantity(&self, quantity: usize, field: &str) -> Result<(), Rejection> {
        let max = self.terms().max_seats_per_order;
        if quantity == 0 {
            return Err(Rejection::validation(field, "ask for at least one seat"));
        }
        if quantity > max as usize {
            return Err(Rejection::new(
                ErrorCode::TooManySeats,
                format!("{quantity} seats asked; an order takes at most {max}"),
            ));
        }
        Ok(())
    }

    /// All the named seats, or an error and none: unknown or repeated ids are invalid (422),
    /// a seat someone else has is a conflict (409).
    fn pick_by_ids(&self, ids: &[String]) -> Result<Vec<u32>, Rejection> {
        self.check_quantity(ids.len(), "seat_ids")?;
        let seats = self.seats_by_ids(ids, "seat_ids")?;
        self.all_are(
            &seats,
            SeatStatus::Available,
            ErrorCode::SeatUnavailable,
            "held",
        )?;
        Ok(seats)
    }

    /// Refuses with `code`, naming them, the seats that are not `status`: a command on seats
    /// is all or nothing, so nothing was `done`.
    pub(super) fn all_are(
        &self,
        seats: &[u32],
        status: SeatStatus,
        code: ErrorCode,
        done: &str,
    ) -> Result<(), Rejection> {
        let others: Vec<String> = seats
            .iter()
            .filter(|seat| self.status_of(**seat) != status)
            .map(|seat| self.seat_id(*seat))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let status = status.as_str().to_lowercase();
        Err(Rejection::new(
            code,
            format!("not {status}: {}; nothing was {done}", others.join(", ")),
        ))
    }

    /// The flat indexes of seat ids, in their order; an unknown or repeated id is invalid
    /// (422, reported as `field`).
    pub(super) fn seats_by_ids(&self, ids: &[String], field: &str) -> Result<Vec<u32>, Rejection> {
        let (seats, unknown): (Vec<_>, Vec<_>) = ids
            .iter()
            .map(|id| self.seat_index(id).ok_or(id.as_str()))
            .partition(Result::is_ok);
        if !unknown.is_empty() {
            let unknown: Vec<&str> = unknown.into_iter().filter_map(Result::err).collect();
            return Err(Rejection::validation(
                field,
                format!("no such seats: {}", unknown.join(", ")),
            ));
        }
        let seats: Vec<u32> = seats.into_iter().filter_map(Result::ok).collect();
        let mut sorted = seats.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Rejection::validation(field, "a seat is named twice"));
        }
        Ok(seats)
    }

    /// `quantity` adjacent seats in the front-most row that has them (in `section`, if named);
    /// within that row, a placement that strands no single seat when there is one.
    fn pick_best(&self, section: Option<&str>, quantity: u32) -> Result<Vec<u32>, Rejection> {
        self.check_quantity(quantity as usize, "quantity")?;
        let rows = match section {
            None => 0..self.layout.row_count(),
            Some(name) => {
                let s = self
                    .terms()
                    .sections
                    .iter()
                    .position(|x| x.name == name)
                    .ok_or_else(|| {
                        Rejection::validation("section", format!("no section named {name}"))
                    })?;
                self.layout.rows_of_section(s)
            }
        };
        for row in rows {
            let seats = self.layout.seats_of_row(row);
            let bytes = &self.status[seats.start as usize..seats.end as usize];
            let free = SeatStatus::Available as u8;
            if let Some(placement) = place_in_row(bytes, free, quantity as usize) {
                let first = seats.start + u32::try_from(placement.start).expect("row fits u32");
                return Ok((first..first + quantity).collect());
            }
        }
        Err(Rejection::new(
            ErrorCode::SeatUnavailable,
            format!("no {quantity} adjacent seats are available in one row"),
        ))
    }

    pub(super) fn decide_release(&self, order: OrderId, reason: ReleaseReason) -> Decision<Self> {
        match self.holds.get(order) {
            Some(hold) => self.release([(order, hold)], reason),
            None => Decision::reply(SeatReply::Map(self.view())),
        }
    }

    pub(super) fn decide_commit(
        &self,
        order: OrderId,
        ctx: &Ctx,
    ) -> Result<Decision<Self>, Rejection> {
        let hold = self.holds.committable(order, ctx.now_ms)?;
        Ok(Decision {
            events: vec![SeatEvent::Committed { order }],
            reply: SeatReply::Hold(self.hold_view(order, hold)),
        })
    }

    /// Releases the holds that are due, oldest first, at most a batch at a time.
    pub(super) fn decide_expire(&self, ctx: &Ctx) -> Decision<Self> {
        self.release(self.holds.due(ctx.now_ms), ReleaseReason::Expired)
    }

    /// Releases `holds`, replying with the map as it will be after.
    fn release<'a>(
        &self,
        holds: impl IntoIterator<Item = (OrderId, &'a Hold)>,
        reason: ReleaseReason,
    ) -> Decision<Self> {
        let mut counts = self.counts.clone();
        let mut events = Vec::new();
        for (order, hold) in holds {
            tally(
                &self.layout,
                &mut counts,
                &hold.seats,
                SeatStatus::Held,
                SeatStatus::Available,
            );
            events.push(SeatEvent::Released { order, reason });
        }
        let version = self.version + events.len() as u64;
        Decision {
            reply: SeatReply::Map(self.view_with(&counts, version)),
            events,
        }
    }
}
