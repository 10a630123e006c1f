//! Values parsed once at the edge. Past the constructors, an invalid id, phone number, zip code,
//! email address or amount cannot exist.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that failed to parse: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidValue {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Serde through `FromStr`/`Display`, so JSON and DynamoDB items are validated as they are read.
macro_rules! string_value {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = InvalidValue;
            fn try_from(s: &str) -> Result<Self, InvalidValue> {
                s.parse()
            }
        }
    };
}

macro_rules! id_type {
    ($(#[$doc:meta])* $t:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $t(String);

        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $t {
            type Err = InvalidValue;
            /// Ids are opaque but bounded: 1 to 64 of `[A-Za-z0-9_-]`, so they are safe inside
            /// storage keys (which use `#` as a separator) and URLs.
            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if ok {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidValue::new($field, "must be 1 to 64 letters, digits, '-' or '_'"))
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        string_value!($t);
    };
}

id_type!(
    /// An agent's id: the `sub` of their token.
    AgentId,
    "agentId"
);
id_type!(
    /// A team's id.
    TeamId,
    "teamId"
);
id_type!(
    /// A referral's id.
    ReferralId,
    "referralId"
);
id_type!(
    /// A pay-per-lead subscription's id.
    SubscriptionId,
    "subscriptionId"
);
id_type!(
    /// Any authenticated user's id (advisor, closings staff, admin or agent).
    UserId,
    "userId"
);

impl ReferralId {
    /// A new, time-ordered, unique id.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string())
    }
}

impl SubscriptionId {
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string())
    }
}

impl From<AgentId> for UserId {
    fn from(a: AgentId) -> Self {
        Self(a.0)
    }
}

impl From<&UserId> for AgentId {
    fn from(u: &UserId) -> Self {
        Self(u.0.clone())
    }
}

/// A phone number some country issues, held in E.164 (`+14155550123`), so one number written
/// two ways (`+1 (415) 555-0123`) is one number, and a number no country issues is refused
/// (TX-3). The country code is required: a number alone could be anybody's.
///
/// Country code 1 (the US, Canada and the Caribbean, almost every number here) is checked by
/// the North American Numbering Plan's own rules; others by Google's libphonenumber metadata,
/// whose loading takes some 50 ms: in every function's start, and on every stored agent and
/// referral read, when it was used for all numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(String);

impl Phone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Phone {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(
                "phone",
                "must be a number in international form, such as +14155550123",
            )
        };
        // Digits and the usual separators only: the library would read letters as a keypad's.
        let written = s
            .chars()
            .all(|c| c.is_ascii_digit() || " +()-.".contains(c));
        if !written || !s.trim_start().starts_with('+') || s.len() > 32 {
            return Err(invalid());
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if let Some(national) = digits.strip_prefix('1') {
            return if north_american(national) {
                Ok(Self(format!("+{digits}")))
            } else {
                Err(invalid())
            };
        }
        let number = phonenumber::parse(None, s).map_err(|_| invalid())?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid());
        }
        Ok(Self(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }
}

/// A ten-digit national number the North American Numbering Plan can issue: an area code and an
/// exchange each of `[2-9]XX`, neither an `N11` service code, and no area code of the `N9X`
/// block the plan keeps for its expansion.
fn north_american(national: &str) -> bool {
    let d = national.as_bytes();
    let leading = |b: u8| (b'2'..=b'9').contains(&b);
    d.len() == 10
        && leading(d[0])
        && leading(d[3])
        && &d[1..3] != b"11"
        && &d[4..6] != b"11"
        && d[1] != b'9'
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_value!(Phone);

/// A five-digit US zip code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zip(String);

impl Zip {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Zip {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        if s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new("zip", "must be five digits"))
        }
    }
}

impl fmt::Display for Zip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_value!(Zip);

/// An email address: one `@`, a non-empty local part, a dotted domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Email {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let ok = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && s.len() <= 254
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new("email", "must be an email address"))
        }
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_value!(Email);

/// US dollars, exact to the cent; never negative and at most a trillion, so every amount stored
/// is written and read back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// The largest amount there is: far above any price or fee, far below what a decimal holds.
    pub const MAX: Money = Money(Decimal::from_parts(3_567_587_328, 232, 0, false, 0));

    pub fn new(amount: Decimal) -> Result<Self, InvalidValue> {
        if amount.is_sign_negative() {
            return Err(InvalidValue::new("amount", "must not be negative"));
        }
        if amount > Money::MAX.0 {
            return Err(InvalidValue::new("amount", "must be at most 1000000000000"));
        }
        if amount.scale() > 2 && amount.round_dp(2) != amount {
            return Err(InvalidValue::new("amount", "must be whole cents"));
        }
        Ok(Self(amount.round_dp(2)))
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }

    /// `percent` of this amount, rounded to the cent with halves up, as an invoice shows it.
    pub fn percent(&self, percent: Percent) -> Money {
        let exact = self.0 * percent.0 / Decimal::ONE_HUNDRED;
        Money(exact.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
    }

    pub fn times(&self, n: u32) -> Money {
        Money(self.0 * Decimal::from(n))
    }

    /// The total of some amounts, such as a cycle's referral prices (PPL-11).
    pub fn sum(amounts: impl IntoIterator<Item = Money>) -> Money {
        Money(amounts.into_iter().map(|m| m.0).sum())
    }

    /// As a person reads a price: `$1,250,000`, cents only when there are any (`$45.50`).
    pub fn readable(&self) -> String {
        let text = format!("{:.2}", self.0);
        let (whole, cents) = text.split_once('.').unwrap_or((&text, "00"));
        let mut grouped = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if cents == "00" {
            format!("${grouped}")
        } else {
            format!("${grouped}.{cents}")
        }
    }
}

impl FromStr for Money {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let d = Decimal::from_str_exact(s.trim())
            .map_err(|_| InvalidValue::new("amount", "must be a decimal number"))?;
        Money::new(d)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts a JSON string ("450000.00") or number (450000); numbers go through their decimal
    /// text, never through a float.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(serde::de::Error::custom("amount: must be a decimal number")),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A percentage from 0 to 100, such as a referral fee of 25%.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(Decimal);

impl Percent {
    pub fn new(p: Decimal) -> Result<Self, InvalidValue> {
        if p.is_sign_negative() || p > Decimal::ONE_HUNDRED {
            Err(InvalidValue::new("feePercent", "must be between 0 and 100"))
        } else {
            Ok(Self(p))
        }
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

impl FromStr for Percent {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let d = Decimal::from_str_exact(s.trim())
            .map_err(|_| InvalidValue::new("feePercent", "must be a number"))?;
        Percent::new(d)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(serde::de::Error::custom("feePercent: must be a number")),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A buyer or a seller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Buyer,
    Seller,
}

impl ClientType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientType::Buyer => "buyer",
            ClientType::Seller => "seller",
        }
    }
}

impl FromStr for ClientType {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "buyer" => Ok(Self::Buyer),
            "seller" => Ok(Self::Seller),
            _ => Err(InvalidValue::new("clientType", "must be buyer or seller")),
        }
    }
}

/// An IANA time zone name, checked against the bundled tz database when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Zone {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }
}

impl FromStr for Zone {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        jiff::tz::TimeZone::get(s)
            .map(|tz| Zone {
                name: s.to_owned(),
                tz,
            })
            .map_err(|_| InvalidValue::new("timeZone", "must be an IANA time zone"))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
string_value!(Zone);

/// How a client reaches agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    WarmTransfer,
    Routing,
    Ppl,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_3_a_number_written_two_ways_is_one_number() {
        let plain: Phone = "+14155550123".parse().unwrap();
        let written: Phone = "+1 (415) 555-0123".parse().unwrap();
        assert_eq!(plain, written);
        assert_eq!(written.as_str(), "+14155550123");
    }

    #[test]
    fn tx_3_numbers_no_country_issues_are_refused() {
        // Area code 099 and a ten-digit "UK" number are shaped right and issued by nobody.
        assert!("+10995550123".parse::<Phone>().is_err());
        assert!("+4412345".parse::<Phone>().is_err());
        assert!("+442071838750".parse::<Phone>().is_ok());
        // The provider's test numbers the local lines use are numbers too.
        assert!("+15005550006".parse::<Phone>().is_ok());
    }

    #[test]
    fn tx_3_north_american_numbers_follow_the_plan() {
        for issued in ["+12125550123", "+1 416 555 0123", "+18095550123"] {
            assert!(issued.parse::<Phone>().is_ok(), "{issued}");
        }
        // Area or exchange codes from 0 or 1, N11 service codes, the reserved N9X area codes,
        // and numbers of the wrong length.
        for refused in [
            "+11125550123",
            "+14151550123",
            "+19115550123",
            "+14159110123",
            "+12975550123",
            "+1415555012",
            "+141555501234",
        ] {
            assert!(refused.parse::<Phone>().is_err(), "{refused}");
        }
    }

    #[test]
    fn phone_must_be_international() {
        assert!("+14155550123".parse::<Phone>().is_ok());
        assert!("4155550123".parse::<Phone>().is_err());
        assert!("+0123456789".parse::<Phone>().is_err());
        assert!("+1415555012a".parse::<Phone>().is_err());
        assert!("+1234567".parse::<Phone>().is_err());
    }

    #[test]
    fn zip_is_five_digits() {
        assert!("94110".parse::<Zip>().is_ok());
        assert!("9411".parse::<Zip>().is_err());
        assert!("94110-1234".parse::<Zip>().is_err());
    }

    #[test]
    fn ids_refuse_key_separators() {
        assert!("agent-1".parse::<AgentId>().is_ok());
        assert!("a#b".parse::<AgentId>().is_err());
        assert!("".parse::<TeamId>().is_err());
    }

    #[test]
    fn email_needs_local_part_and_dotted_domain() {
        assert!("ana@example.com".parse::<Email>().is_ok());
        assert!("ana@example".parse::<Email>().is_err());
        assert!("@example.com".parse::<Email>().is_err());
        assert!("a na@example.com".parse::<Email>().is_err());
    }

    #[test]
    fn money_is_exact_and_never_negative() {
        let m: Money = serde_json::from_str("450000.10").unwrap();
        assert_eq!(m.to_string(), "450000.10");
        assert!(serde_json::from_str::<Money>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Money>("\"1.005\"").is_err());
        let fee = m.percent(Percent::new(Decimal::new(25, 0)).unwrap());
        assert_eq!(fee.to_string(), "112500.03");
    }

    #[test]
    fn money_reads_with_thousands_grouped() {
        let read = |s: &str| s.parse::<Money>().unwrap().readable();
        assert_eq!(read("1250000"), "$1,250,000");
        assert_eq!(read("950000.00"), "$950,000");
        assert_eq!(read("45.5"), "$45.50");
        assert_eq!(read("999"), "$999");
        assert_eq!(read("0"), "$0");
    }

    #[test]
    fn zone_must_exist() {
        assert!("America/Los_Angeles".parse::<Zone>().is_ok());
        assert!("Mars/Olympus".parse::<Zone>().is_err());
    }
}

#[cfg(test)]
mod money_properties {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ef_4_an_amount_beyond_the_range_is_refused_not_stored_unreadable() {
        for text in [
            "1e27",
            "1000000000000.01",
            "79228162514264337593543950335",
            "-1",
        ] {
            assert!(text.parse::<Money>().is_err(), "{text}");
            let json = serde_json::from_str::<Money>(text);
            assert!(json.is_err(), "{text} as a JSON number");
        }
        assert_eq!(Money::MAX.to_string(), "1000000000000.00");
    }

    proptest! {
        /// EF-4: whatever is accepted as an amount reads back as the same amount, as text and
        /// as a JSON number.
        #[test]
        fn ef_4_every_accepted_amount_reads_back(text in "[0-9]{1,15}(\\.[0-9]{1,3})?") {
            if let Ok(m) = text.parse::<Money>() {
                let written = m.to_string();
                prop_assert_eq!(written.parse::<Money>().unwrap(), m);
                let json = serde_json::to_string(&m).unwrap();
                prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
            }
        }
    }
}
