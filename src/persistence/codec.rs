//! The record codec of the domain crate, with its failures as the store's: a record that does
//! not decode is corrupt storage.

pub use surge_domain::codec::encode;

use super::StoreError;

pub fn decode<T: serde::de::DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, StoreError> {
    surge_domain::codec::decode(version, bytes).map_err(|e| StoreError::Corrupt(e.0))
}
