//! Texts and identity (TX-2, TX-5): the opt-out keywords of an inbound text, and the lockout of a
//! phone that keeps entering wrong claim codes or PINs.

use jiff::{SignedDuration, Timestamp};

/// What an inbound text asks of the service's number, before anything else it may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKeyword {
    /// No more texts to this number (TX-2).
    OptOut,
    /// Texts again.
    OptIn,
}

/// The keywords carriers and AWS End User Messaging treat as opting out and back in (CTIA):
/// the whole text, whatever its case and surrounding spaces or punctuation.
pub fn opt_keyword(body: &str) -> Option<OptKeyword> {
    let word = body
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation())
        .to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT" | "OPT-OUT"
        | "REVOKE" => Some(OptKeyword::OptOut),
        "START" | "UNSTOP" | "YES" | "OPTIN" | "OPT-IN" => Some(OptKeyword::OptIn),
        _ => None,
    }
}

/// Wrong claim codes or PINs a phone may enter before its code and PIN claiming is locked
/// (TX-5): the next try, even the right one, is refused.
pub const MAX_WRONG_GUESSES: u32 = 3;

/// How long the count runs from the first wrong guess, and so how long a lock lasts (API.md).
pub const GUESS_WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// Wrong codes and PINs entered from one phone, counted from `since` for [`GUESS_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongGuesses {
    pub count: u32,
    pub since: Timestamp,
}

impl WrongGuesses {
    /// The count at `now`: nothing once the window is over.
    pub fn at(self, now: Timestamp) -> u32 {
        if now < self.since + GUESS_WINDOW {
            self.count
        } else {
            0
        }
    }

    /// Whether the phone may not try another code or PIN at `now`.
    pub fn locked(self, now: Timestamp) -> bool {
        self.at(now) >= MAX_WRONG_GUESSES
    }

    /// When a lock (or the count) ends.
    pub fn until(self) -> Timestamp {
        self.since + GUESS_WINDOW
    }
}

/// What a phone is told when its claiming is locked.
pub const LOCKED_TEXT: &str = "Too many wrong codes or PINs: claiming by code or PIN from this phone is locked for an hour. You can still claim in the app.";

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tx_2_stop_start_and_their_synonyms_whatever_the_case() {
        for stop in [
            "STOP",
            "stop",
            " Stop. ",
            "STOPALL",
            "unsubscribe",
            "CANCEL",
            "end",
            "QUIT",
        ] {
            assert_eq!(opt_keyword(stop), Some(OptKeyword::OptOut), "{stop}");
        }
        for start in ["START", "start", "UNSTOP", "yes"] {
            assert_eq!(opt_keyword(start), Some(OptKeyword::OptIn), "{start}");
        }
        // A keyword inside a message is not one: "#4821 stop by at 5" claims.
        for other in ["#4821 stop by at 5", "please stop", "", "STOPS"] {
            assert_eq!(opt_keyword(other), None, "{other}");
        }
    }

    #[test]
    fn tx_5_three_wrong_guesses_lock_for_the_hour_from_the_first() {
        let g = WrongGuesses {
            count: 2,
            since: t("2026-03-02T17:00:00Z"),
        };
        assert!(!g.locked(t("2026-03-02T17:10:00Z")));
        let g = WrongGuesses { count: 3, ..g };
        assert!(g.locked(t("2026-03-02T17:10:00Z")));
        assert!(g.locked(t("2026-03-02T17:59:59Z")));
        assert!(!g.locked(t("2026-03-02T18:00:00Z")), "the hour is over");
        assert_eq!(g.at(t("2026-03-02T18:00:00Z")), 0);
        assert_eq!(g.until(), t("2026-03-02T18:00:00Z"));
    }
}
