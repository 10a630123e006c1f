//! The local clock: real time plus an offset that `POST /_local/clock` moves forward, and the
//! rule that decides which schedule fires next while it moves.
//!
//! Every time the runner hands a function (`timeEpoch`, `SentTimestamp`, a schedule's `time`)
//! comes from here, so a demo can jump 30 days without waiting for them.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Default)]
pub struct LocalClock {
    offset: Mutex<SignedDuration>,
}

impl LocalClock {
    pub fn now(&self) -> Timestamp {
        Timestamp::now() + *self.offset.lock().expect("clock lock")
    }

    /// Moves the clock to `at` if that is later than now; the clock never goes back.
    pub fn move_to(&self, at: Timestamp) {
        let mut offset = self.offset.lock().expect("clock lock");
        let real = Timestamp::now();
        if at > real + *offset {
            *offset = at.duration_since(real);
        }
    }
}

/// `30d`, `12h`, `15m`, `90s` as a duration; refuses zero, negatives and other units.
pub fn parse_advance(text: &str) -> Option<SignedDuration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    if n <= 0 {
        return None;
    }
    let seconds = match unit {
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    Some(SignedDuration::from_secs(n.checked_mul(seconds)?))
}

/// What falls due next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due<T> {
    /// The recurring schedule at this index.
    Recurring(usize),
    /// A one-time schedule.
    Once(T),
}

/// The earliest fire at or before `until`: recurring schedules by their next occurrence, one-time
/// ones by their `at`. Ties go to recurring schedules first, then in the given order, so the order
/// is the same on every run.
pub fn earliest<T: Clone>(
    recurring_next: &[Timestamp],
    once: &[(Timestamp, T)],
    until: Timestamp,
) -> Option<(Timestamp, Due<T>)> {
    let recurring = recurring_next
        .iter()
        .enumerate()
        .map(|(i, at)| (*at, Due::Recurring(i)));
    let once = once.iter().map(|(at, t)| (*at, Due::Once(t.clone())));
    recurring
        .chain(once)
        .filter(|(at, _)| *at <= until)
        // min_by_key keeps the first of equal keys: the tie rule above.
        .min_by_key(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * n)
    }

    #[test]
    fn advances_parse_in_days_hours_minutes_and_seconds() {
        assert_eq!(parse_advance("30d"), Some(SignedDuration::from_hours(720)));
        assert_eq!(parse_advance("2h"), Some(SignedDuration::from_hours(2)));
        assert_eq!(parse_advance("15m"), Some(SignedDuration::from_mins(15)));
        assert_eq!(parse_advance("90s"), Some(SignedDuration::from_secs(90)));
        assert_eq!(parse_advance("0d"), None);
        assert_eq!(parse_advance("-1d"), None);
        assert_eq!(parse_advance("3w"), None);
        assert_eq!(parse_advance(""), None);
    }

    #[test]
    fn the_clock_moves_forward_only() {
        let clock = LocalClock::default();
        let later = Timestamp::now() + SignedDuration::from_hours(48);
        clock.move_to(later);
        assert!(clock.now() >= later);
        clock.move_to(Timestamp::UNIX_EPOCH);
        assert!(clock.now() >= later);
    }

    /// Plays a 30-day advance as the scheduler does: fire the earliest, reschedule or drop it,
    /// look again. A 14-day and a 30-day recurring schedule and two one-time ones.
    #[test]
    fn schedules_fire_in_time_order_once_per_occurrence() {
        let every = [
            SignedDuration::from_hours(14 * 24),
            SignedDuration::from_hours(30 * 24),
        ];
        let mut next = vec![day(14), day(30)];
        let mut once = vec![(day(20), "list-on-date"), (day(31), "too-late")];
        let mut fired = vec![];
        while let Some((at, due)) = earliest(&next, &once, day(30)) {
            match due {
                Due::Recurring(i) => {
                    fired.push((at, format!("recurring-{i}")));
                    next[i] += every[i];
                }
                Due::Once(name) => {
                    fired.push((at, name.to_owned()));
                    once.retain(|(_, n)| *n != name);
                }
            }
        }
        assert_eq!(
            fired,
            vec![
                (day(14), "recurring-0".to_owned()),
                (day(20), "list-on-date".to_owned()),
                (day(28), "recurring-0".to_owned()),
                (day(30), "recurring-1".to_owned()),
            ]
        );
    }
}
