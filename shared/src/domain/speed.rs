//! Speed to lead (GEN-1): each agent's recent response times and their median, which ranks them.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// How many recent responses the median is taken over: enough to be stable, small enough that an
/// agent who speeds up sees it in their ranking within a few weeks.
pub const RESPONSE_WINDOW: usize = 25;

/// An agent's most recent response times, in milliseconds, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseTimes(Vec<u64>);

impl ResponseTimes {
    /// Records one response (notification to response), dropping the oldest beyond the window.
    pub fn record(&mut self, millis: u64) {
        self.0.push(millis);
        if self.0.len() > RESPONSE_WINDOW {
            let excess = self.0.len() - RESPONSE_WINDOW;
            self.0.drain(..excess);
        }
    }

    /// The median response time; `None` until the agent has responded once.
    pub fn median_millis(&self) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let mid = sorted.len() / 2;
        Some(if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2
        } else {
            sorted[mid]
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Ranking order: a known median first, faster first; agents with no history last (GEN-1).
pub fn faster_first(a: Option<u64>, b: Option<u64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_1_median_of_recorded_response_times() {
        let mut r = ResponseTimes::default();
        assert_eq!(r.median_millis(), None);
        for ms in [9_000, 1_000, 5_000] {
            r.record(ms);
        }
        assert_eq!(r.median_millis(), Some(5_000));
        r.record(3_000);
        assert_eq!(r.median_millis(), Some(4_000));
    }

    #[test]
    fn gen_1_window_keeps_only_recent_responses() {
        let mut r = ResponseTimes::default();
        for _ in 0..RESPONSE_WINDOW {
            r.record(60_000);
        }
        for _ in 0..RESPONSE_WINDOW {
            r.record(1_000);
        }
        assert_eq!(r.len(), RESPONSE_WINDOW);
        assert_eq!(r.median_millis(), Some(1_000));
    }

    #[test]
    fn gen_1_unknown_speed_ranks_last() {
        let mut v = vec![None, Some(30), Some(10)];
        v.sort_by(|a, b| faster_first(*a, *b));
        assert_eq!(v, vec![Some(10), Some(30), None]);
    }
}
