//! Events and snapshots are postcard bytes behind one version byte. A reader that meets a
//! version it does not know refuses the record instead of guessing.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record this build cannot read: corrupt bytes, or a version it does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut bytes = vec![version];
    let body = postcard::to_allocvec(value).expect("in-memory values always encode");
    bytes.extend_from_slice(&body);
    bytes
}

pub fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&found, body)) if found == version => postcard::from_bytes(body)
            .map_err(|e| CodecError(format!("postcard decode failed: {e}"))),
        Some((&found, _)) => Err(CodecError(format!(
            "record version {found}, this build reads {version}"
        ))),
        None => Err(CodecError("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u128,
        name: String,
        delta: i64,
    }

    #[test]
    fn a_record_round_trips_with_its_version_byte() {
        let value = Sample {
            id: 7,
            name: "x".into(),
            delta: -3,
        };
        let bytes = encode(2, &value);
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<Sample>(2, &bytes).expect("decodes"), value);
    }

    /// Snapshots written while entities kept std collections must still decode: the persistent
    /// ones (imbl) have the same serde shape, a map or a sequence, so the same postcard bytes.
    #[test]
    fn persistent_collections_encode_as_the_std_ones_did() {
        let std_map: std::collections::HashMap<u128, String> = [(7, "a".to_string())].into();
        let map: imbl::HashMap<u128, String> = [(7, "a".to_string())].into_iter().collect();
        assert_eq!(encode(1, &map), encode(1, &std_map));
        let decoded: imbl::HashMap<u128, String> =
            decode(1, &encode(1, &std_map)).expect("decodes");
        assert_eq!(decoded, map);

        let std_vec = vec![3i64, -4, 5];
        let vector: imbl::Vector<i64> = std_vec.iter().copied().collect();
        assert_eq!(encode(1, &vector), encode(1, &std_vec));
        assert_eq!(
            decode::<imbl::Vector<i64>>(1, &encode(1, &std_vec)).expect("decodes"),
            vector
        );
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let bytes = encode(1, &5u32);
        assert!(matches!(decode::<u32>(2, &bytes), Err(CodecError(_))));
        assert!(matches!(decode::<u32>(1, &[]), Err(CodecError(_))));
    }
}
