//! Typed ids. An order id is a UUID kept as its 128 bits (v7, so ids sort by creation); the
//! other ids are the text the API names them by. Each prints (`Display` and `Debug` alike) in
//! its API form, so logs, the admin console and error details show what a client sent, and
//! each serialises as its bare inner value (`#[serde(transparent)]`), so journals and
//! snapshots written before the types existed read back unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of an order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(u128);

impl OrderId {
    /// A new id, ordered after every id made before it on this machine.
    pub fn new_v7() -> OrderId {
        OrderId(uuid::Uuid::now_v7().as_u128())
    }

    pub const fn from_u128(bits: u128) -> OrderId {
        OrderId(bits)
    }

    pub const fn as_u128(self) -> u128 {
        self.0
    }

    pub fn as_uuid(self) -> uuid::Uuid {
        uuid::Uuid::from_u128(self.0)
    }
}

impl From<u128> for OrderId {
    fn from(bits: u128) -> OrderId {
        OrderId(bits)
    }
}

impl From<uuid::Uuid> for OrderId {
    fn from(uuid: uuid::Uuid) -> OrderId {
        OrderId(uuid.as_u128())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_uuid(), f)
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for OrderId {
    type Err = uuid::Error;

    /// Any UUID form (hyphenated, simple, braced, URN).
    fn from_str(text: &str) -> Result<OrderId, uuid::Error> {
        uuid::Uuid::parse_str(text).map(OrderId::from)
    }
}

/// Text ids: what the API names a user, a time sale, an event or a stock item by.
macro_rules! text_ids {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_string())
            }
        }

        impl From<&String> for $name {
            fn from(id: &String) -> $name {
                $name(id.clone())
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    )+};
}

text_ids! {
    /// A user: the `sub` of their access token.
    UserId,
    /// A time sale.
    SaleId,
    /// An event (its seat map).
    EventId,
    /// A stock item.
    Sku,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    const UUID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn an_order_id_prints_and_parses_as_its_uuid() {
        let id: OrderId = UUID.parse().expect("a UUID");
        assert_eq!(id.to_string(), UUID);
        assert_eq!(format!("{id:?}"), UUID);
        assert_eq!(format!("{:?}", Some(id)), format!("Some({UUID})"));
        assert!("not-a-uuid".parse::<OrderId>().is_err());
    }

    #[test]
    fn typed_ids_encode_as_their_bare_values_did() {
        let id: OrderId = UUID.parse().expect("a UUID");
        assert_eq!(codec::encode(1, &id), codec::encode(1, &id.as_u128()));
        let sku = Sku::new("SNEAKER-42");
        assert_eq!(
            codec::encode(1, &sku),
            codec::encode(1, &"SNEAKER-42".to_string())
        );
        assert_eq!(serde_json::to_value(&sku).expect("json"), "SNEAKER-42");
        assert_eq!(format!("{sku}"), "SNEAKER-42");
        assert_eq!(UserId::from("u-1"), "u-1");
    }
}
