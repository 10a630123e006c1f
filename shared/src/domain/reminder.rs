//! Update reminders (RM-1, RM-2): one email per agent per two-week period, listing their active
//! referrals, the longest without an update first.

use jiff::{SignedDuration, Timestamp};

use super::referral::Referral;

/// A reminder period.
pub const PERIOD: SignedDuration = SignedDuration::from_hours(14 * 24);

/// When an agent's first reminder falls due: two weeks after their referral was claimed.
pub fn first_due(claimed_at: Timestamp) -> Timestamp {
    claimed_at + PERIOD
}

/// The due time after a reminder run at `now` for a reminder due at `due`: the next period
/// boundary strictly after `now`, so a late run neither repeats nor drifts the schedule.
pub fn next_due(due: Timestamp, now: Timestamp) -> Timestamp {
    if now < due {
        return due;
    }
    let periods = now.duration_since(due).as_secs() / PERIOD.as_secs() + 1;
    due + PERIOD * i32::try_from(periods).unwrap_or(i32::MAX)
}

/// The referrals a reminder lists: assigned, active (RM-1), longest without an update first.
pub fn reminder_list(referrals: &[Referral]) -> Vec<&Referral> {
    let mut active: Vec<&Referral> = referrals
        .iter()
        .filter(|r| r.assignment().is_some() && r.pipeline().is_some_and(|p| p.stage.is_active()))
        .collect();
    active.sort_by_key(|r| r.pipeline().map(|p| p.updated_at));
    active
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::claim::{claim, fixtures::referral};
    use crate::domain::referral::{ClaimChannel, Program};
    use crate::domain::stage::Stage;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn rm_1_active_referrals_longest_without_update_first() {
        let base = referral(Program::Routing, &["a1"]);
        let mut older = claim(
            &base,
            &"a1".parse().unwrap(),
            ClaimChannel::App,
            t("2026-01-01T00:00:00Z"),
        )
        .unwrap();
        older.id = "old".parse().unwrap();
        let mut newer = claim(
            &base,
            &"a1".parse().unwrap(),
            ClaimChannel::App,
            t("2026-01-05T00:00:00Z"),
        )
        .unwrap();
        newer.id = "new".parse().unwrap();
        let mut closed = newer.clone();
        closed.id = "closed".parse().unwrap();
        closed.assigned.as_mut().unwrap().pipeline.stage = Stage::Closed;
        let mut failed = newer.clone();
        failed.id = "failed".parse().unwrap();
        failed.assigned.as_mut().unwrap().pipeline.stage = Stage::Failed;
        let unclaimed = base.clone();
        let all = [newer, closed, older, failed, unclaimed];
        let ids: Vec<&str> = reminder_list(&all).iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["old", "new"]);
    }

    #[test]
    fn rm_2_one_reminder_per_two_week_period() {
        let claimed = t("2026-01-01T00:00:00Z");
        let due = first_due(claimed);
        assert_eq!(due, t("2026-01-15T00:00:00Z"));
        // A run at the due time moves it a period on; a second run at the same time finds it
        // not due.
        let next = next_due(due, due);
        assert_eq!(next, t("2026-01-29T00:00:00Z"));
        assert!(next > due);
        // A run three days late still keeps to the original period boundaries.
        assert_eq!(
            next_due(due, t("2026-01-18T00:00:00Z")),
            t("2026-01-29T00:00:00Z")
        );
        // A run that missed several periods sends one reminder, not one per period.
        assert_eq!(
            next_due(due, t("2026-02-20T00:00:00Z")),
            t("2026-02-26T00:00:00Z")
        );
        assert_eq!(next_due(due, t("2026-01-10T00:00:00Z")), due);
    }
}
