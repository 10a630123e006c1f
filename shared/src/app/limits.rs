//! The documented maximums of everything the API accepts (EF-4; API.md "Limits", mirrored in
//! `infra/openapi.yaml`), in one place. Requests are held to them before anything is read or
//! written, so nothing beyond them is ever stored, and everything stored reads back. Beyond a
//! limit the answer is 400 `bad_request` naming the field; a body beyond its limit is 413.

use jiff::Timestamp;
use jiff::civil::{Date, date};

use super::AppError;
use crate::domain::values::Money;

/// A request body, in bytes (413 beyond it).
pub const BODY_BYTES: usize = 64 * 1024;
/// Names, the timeline, advisors' fields, in characters.
pub const SHORT_TEXT: usize = 200;
/// The briefing and a note's text, in characters.
pub const LONG_TEXT: usize = 4_000;
/// Zips of a profile or a subscription.
pub const ZIPS: usize = 200;
/// Agents of a team.
pub const TEAM_AGENTS: usize = 200;
/// An `Idempotency-Key`, in characters.
pub const IDEMPOTENCY_KEY: usize = 200;
/// A push device token, in characters.
pub const DEVICE_TOKEN: usize = 1_024;

/// Amounts are above 0 and at most this, in dollars, with at most two decimals.
pub fn max_amount() -> Money {
    Money::new(rust_decimal::Decimal::from(1_000_000_000u32)).unwrap_or(Money::ZERO)
}

/// The first and last dates accepted.
pub const FIRST_DATE: Date = date(2000, 1, 1);
pub const LAST_DATE: Date = date(2100, 12, 31);

fn refuse(field: &str, what: impl std::fmt::Display) -> AppError {
    AppError::BadRequest(format!("{field}: {what}"))
}

/// A set sent as a JSON list of at most `MAX` entries, counted as sent: a repeated entry is
/// stored once but still counts, so the limit is the one the caller's list is held to
/// (`maxItems` in infra/openapi.yaml). Beyond it the body is refused as malformed (400).
pub fn set_of_at_most<'de, D, T, const MAX: usize>(
    deserializer: D,
) -> Result<std::collections::BTreeSet<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Ord,
{
    use serde::Deserialize as _;
    use serde::de::Error;
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.len() > MAX {
        return Err(D::Error::custom(format_args!(
            "at most {MAX} entries, not {}",
            items.len()
        )));
    }
    Ok(items.into_iter().collect())
}

/// A text of at most `max` characters (not bytes: a name is as long as it reads).
pub fn text(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    let length = value.chars().count();
    if length > max {
        return Err(refuse(
            field,
            format_args!("at most {max} characters, not {length}"),
        ));
    }
    Ok(())
}

/// A text that must also say something.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(refuse(field, "must not be empty"));
    }
    text(field, value, max)
}

/// A list of at most `max` entries.
pub fn list(field: &str, length: usize, max: usize) -> Result<(), AppError> {
    if length > max {
        return Err(refuse(
            field,
            format_args!("at most {max} entries, not {length}"),
        ));
    }
    Ok(())
}

/// An amount the API accepts: above 0, at most 1 000 000 000, whole cents.
pub fn amount(field: &str, value: Money) -> Result<(), AppError> {
    if value <= Money::ZERO || value > max_amount() {
        return Err(refuse(
            field,
            "must be above 0 and at most 1000000000, with at most 2 decimals",
        ));
    }
    Ok(())
}

/// A date from 2000-01-01 to 2100-12-31.
pub fn day(field: &str, value: Date) -> Result<(), AppError> {
    if value < FIRST_DATE || value > LAST_DATE {
        return Err(refuse(
            field,
            format_args!("must be between {FIRST_DATE} and {LAST_DATE}"),
        ));
    }
    Ok(())
}

/// A time within the dates accepted.
pub fn time(field: &str, value: Timestamp) -> Result<(), AppError> {
    let utc = value.to_zoned(jiff::tz::TimeZone::UTC).date();
    day(field, utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_4_texts_count_characters_and_name_the_field() {
        assert!(text("timeline", &"é".repeat(200), SHORT_TEXT).is_ok());
        let e = text("timeline", &"é".repeat(201), SHORT_TEXT).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        assert!(e.to_string().starts_with("timeline:"), "{e}");
        assert!(required_text("client.name", "  ", SHORT_TEXT).is_err());
    }

    #[test]
    fn ef_4_a_list_over_its_limit_is_refused_even_when_its_entries_repeat() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[serde(deserialize_with = "set_of_at_most::<_, _, 3>")]
            zips: std::collections::BTreeSet<String>,
        }
        let ok: Body = serde_json::from_str(r#"{"zips": ["1", "1", "2"]}"#).unwrap();
        assert_eq!(ok.zips.len(), 2);
        let e = serde_json::from_str::<Body>(r#"{"zips": ["1", "1", "1", "1"]}"#).unwrap_err();
        assert!(e.to_string().contains("at most 3 entries, not 4"), "{e}");
    }

    #[test]
    fn ef_4_amounts_are_above_zero_and_at_most_a_billion() {
        let m = |s: &str| s.parse::<Money>().unwrap();
        assert!(amount("salePrice", m("0.01")).is_ok());
        assert!(amount("salePrice", m("1000000000")).is_ok());
        assert!(amount("salePrice", m("0")).is_err());
        assert!(amount("salePrice", m("1000000000.01")).is_err());
    }

    #[test]
    fn ef_4_dates_stay_within_this_century_and_the_next() {
        assert!(day("listDate", date(2026, 12, 1)).is_ok());
        assert!(day("listDate", date(9999, 12, 31)).is_err());
        assert!(day("listDate", date(1999, 12, 31)).is_err());
    }
}
