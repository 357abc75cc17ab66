//! Page cursors. They are transparent keyset positions, not opaque tokens, so that the document can
//! state exactly which strings are cursors and every such string is a position:
//!
//! - lists ordered by time: `<microseconds since the Unix epoch>.<id as 32 lowercase hex digits>`
//!   of the last item of the previous page (the page after it starts strictly after that key);
//! - the model list, ordered by name: the last model's name.
//!
//! An empty cursor (`?cursor=` from a URL template) is the first page. A cursor past the end gives
//! an empty page. Anything else is a 400 naming the expected form.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::names::Name;
use crate::error::Error;

/// The time-ordered lists' cursor as a regular expression (empty = first page). Sixteen digits at
/// most keep every matching string within the timestamps both chrono and PostgreSQL represent
/// (years 1653 to 2286).
pub const TIME_PATTERN: &str = "^(-?[0-9]{1,16}\\.[0-9a-f]{32})?$";

/// The model list's cursor: a model name, or empty for the first page.
pub fn name_pattern() -> String {
    let inner = crate::domain::names::PATTERN
        .trim_start_matches('^')
        .trim_end_matches('$');
    format!("^({inner})?$")
}

/// The cursor after an item of a time-ordered list.
pub fn encode_time(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{}", at.timestamp_micros(), id.simple())
}

/// The position a time-ordered list's cursor names (`None`: the first page).
pub fn decode_time(cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, Uuid)>, Error> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => parse_time(c).map(Some).ok_or_else(|| {
            Error::BadRequest(format!(
                "cursor {c:?} is not a position: expected <microseconds since the epoch>.<id as 32 lowercase hex digits>, as in a page's next_cursor"
            ))
        }),
    }
}

fn parse_time(c: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = c.split_once('.')?;
    let digits = micros.strip_prefix('-').unwrap_or(micros);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// The position the model list's cursor names (`None`: the first page).
pub fn decode_name(cursor: Option<&str>) -> Result<Option<String>, Error> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => Name::parse(c)
            .map(|n| Some(n.as_str().to_string()))
            .map_err(|why| {
                Error::BadRequest(format!("cursor {c:?} is not a model name: it {why}"))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_time_cursor_round_trips_at_microsecond_precision() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T07:55:04.712002Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let c = encode_time(at, id);
        assert_eq!(c, "1796198104712002.0123456789abcdef0123456789abcdef");
        assert_eq!(decode_time(Some(&c)).unwrap(), Some((at, id)));
        // Before the epoch too.
        let early = DateTime::from_timestamp_micros(-1_500_000).unwrap();
        assert_eq!(
            decode_time(Some(&encode_time(early, id))).unwrap(),
            Some((early, id))
        );
        assert_eq!(decode_time(Some("")).unwrap(), None);
        assert_eq!(decode_time(None).unwrap(), None);
    }

    #[test]
    fn strings_outside_the_pattern_are_refused() {
        for bad in [
            "\"",
            "1.0123456789ABCDEF0123456789abcdef",
            "1.0123456789abcdef0123456789abcde",
            "1.0123456789abcdef0123456789abcdef0",
            "12345678901234567.0123456789abcdef0123456789abcdef",
            "+1.0123456789abcdef0123456789abcdef",
            "-.0123456789abcdef0123456789abcdef",
            "1.01234567-89ab-cdef-0123-456789abcdef",
            "1 .0123456789abcdef0123456789abcdef",
            "١.0123456789abcdef0123456789abcdef",
        ] {
            assert!(decode_time(Some(bad)).is_err(), "{bad:?} was accepted");
        }
        for bad in [".hidden", "a b", "é", &"x".repeat(129)] {
            assert!(decode_name(Some(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        // Every string the document's pattern allows is a position (the contract fuzzer relies on it).
        #[test]
        fn every_string_of_the_time_pattern_is_a_position(
            c in TIME_PATTERN.trim_start_matches("^(").trim_end_matches(")?$")
        ) {
            prop_assert!(decode_time(Some(&c)).unwrap().is_some());
        }

        #[test]
        fn every_string_of_the_name_pattern_is_a_position(
            c in crate::domain::names::PATTERN.trim_start_matches('^').trim_end_matches('$')
        ) {
            prop_assert_eq!(decode_name(Some(&c)).unwrap(), Some(c.clone()));
        }
    }
}
