//! Timestamps as the API writes them. Entities never read the clock: `now` comes in a
//! [`crate::Ctx`]; these only format and parse.

/// RFC 3339 text for a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch of RFC 3339 text (any offset); `None` when it does not parse.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_text_parses_back_to_millis_in_any_offset() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.500Z"), Some(1_500));
        assert_eq!(parse_rfc3339("1970-01-01T09:00:00+09:00"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
