//! Ticket codes: what a `CONFIRMED` event order shows for each of its seats, and what the door
//! checks in (`POST /events/{id}/check-in`).
//!
//! A code is `base64url(payload).base64url(tag)`, unpadded: the payload is a format byte (1),
//! the event's UUID and the order's UUID (16 bytes each) and the seat id (ASCII, e.g.
//! `A-3-12`); the tag is HMAC-SHA256 of the payload under the ticket key, cut to its first 16
//! bytes (128 bits; RFC 2104 allows a cut to half the hash). So a code names its event, order
//! and seat in the clear, and only the server can make one: changing any of them, or guessing a
//! code, means forging the tag. The tag is compared in constant time.
//!
//! The ticket key is HMAC-SHA256(`auth.jwt_secret`, [`KEY_LABEL`]): derived, so the key that
//! signs access tokens never signs a ticket, and a ticket key that leaked (a gate scanner's
//! copy, say) would not sign tokens. Rotating the secret voids every ticket shown before.
//!
//! Nothing is stored: the codes of an order are computed again each time it is shown, and only
//! while it is `CONFIRMED`. A code stays well formed after a refund, which is why the check-in
//! asks the order whether it is still `CONFIRMED` (a refund voids its tickets).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::actors::order::{OrderStatus, OrderView, SeatTicket, SourceKind};
use crate::actors::OrderId;

type HmacSha256 = Hmac<Sha256>;

/// What the ticket key is derived for; a new label is a new key.
pub const KEY_LABEL: &[u8] = b"surge/ticket-code/v1";
/// The payload's first byte: the layout of what follows.
const FORMAT: u8 = 1;
/// Bytes of the HMAC-SHA256 tag a code keeps.
const TAG_BYTES: usize = 16;
/// Longer is no code of ours: refused before any decoding.
pub const CODE_LEN_MAX: usize = 200;

/// What a genuine code says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketClaims {
    pub event_id: Uuid,
    pub order_id: OrderId,
    pub seat_id: String,
}

/// Makes and reads ticket codes; the keyed MAC is built once.
#[derive(Clone)]
pub struct TicketCodes {
    mac: HmacSha256,
}

impl TicketCodes {
    pub fn new(jwt_secret: &str) -> TicketCodes {
        let mut derive = HmacSha256::new_from_slice(jwt_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        derive.update(KEY_LABEL);
        let key = derive.finalize().into_bytes();
        TicketCodes {
            mac: HmacSha256::new_from_slice(&key).expect("HMAC takes a key of any length"),
        }
    }

    /// The code of `seat_id` in order `order_id` of event `event_id`.
    pub fn code(&self, event_id: Uuid, order_id: OrderId, seat_id: &str) -> String {
        let mut payload = Vec::with_capacity(33 + seat_id.len());
        payload.push(FORMAT);
        payload.extend_from_slice(event_id.as_bytes());
        payload.extend_from_slice(order_id.as_uuid().as_bytes());
        payload.extend_from_slice(seat_id.as_bytes());
        let tag = self.tag_of(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// What `code` says, if the server made it; `None` for anything malformed or forged.
    pub fn read(&self, code: &str) -> Option<TicketClaims> {
        if code.len() > CODE_LEN_MAX {
            return None;
        }
        let (payload, tag) = code.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        self.tag_of(&payload).verify_truncated_left(&tag).ok()?;
        let (&format, rest) = payload.split_first()?;
        if format != FORMAT || rest.len() <= 32 {
            return None;
        }
        let (ids, seat) = rest.split_at(32);
        let (event, order) = ids.split_at(16);
        Some(TicketClaims {
            event_id: Uuid::from_slice(event).ok()?,
            order_id: Uuid::from_slice(order).ok()?.into(),
            seat_id: String::from_utf8(seat.to_vec()).ok()?,
        })
    }

    /// The tickets `order` carries: one per seat while it is a `CONFIRMED` event order, else
    /// none.
    pub fn tickets_of(&self, order: &OrderView) -> Option<Vec<SeatTicket>> {
        if order.status != OrderStatus::Confirmed || order.source.kind != SourceKind::Event {
            return None;
        }
        let event_id = Uuid::parse_str(&order.source.id).ok()?;
        let order_id: OrderId = order.id.parse().ok()?;
        let tickets = order
            .items
            .iter()
            .map(|item| SeatTicket {
                seat_id: item.reference.clone(),
                code: self.code(event_id, order_id, &item.reference),
            })
            .collect();
        Some(tickets)
    }

    /// `order` as it is answered: with its tickets if it has any.
    pub fn with_tickets(&self, mut order: OrderView) -> OrderView {
        order.tickets = self.tickets_of(&order);
        order
    }

    fn tag_of(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac
    }
}

#[cfg(test)]
mod tests;
