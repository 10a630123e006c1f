//! Agents: their profile, vacation windows (LR-7, PPL-7) and what they can be offered.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::speed::ResponseTimes;
use super::values::{AgentId, ClientType, Email, InvalidValue, Percent, Phone, Zip, Zone};

/// A licensed agent's profile, as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub email: Option<Email>,
    pub cell_phone: Option<Phone>,
    pub office_phone: Option<Phone>,
    pub licensed: bool,
    pub zips: BTreeSet<Zip>,
    pub client_types: BTreeSet<ClientType>,
    /// Opted in to warm transfers (WT-8).
    pub warm_transfer: bool,
    pub push_token: Option<String>,
    pub time_zone: Zone,
    pub vacation: Option<Vacation>,
    /// The referral-fee agreement, set by an admin.
    pub fee_percent: Option<Percent>,
    #[serde(default)]
    pub response_times: ResponseTimes,
}

impl Agent {
    /// The number a call or SMS reaches: the cell phone, else the office phone.
    pub fn phone(&self) -> Option<&Phone> {
        self.cell_phone.as_ref().or(self.office_phone.as_ref())
    }

    /// Whether `now` falls inside the vacation window, read in the agent's own time zone
    /// (LR-7, PPL-7): a vacation ending on the 5th still holds at 23:59 on the 5th where the agent
    /// lives, even when it is already the 6th in UTC.
    pub fn on_vacation(&self, now: Timestamp) -> bool {
        match &self.vacation {
            Some(v) => v.contains(now.to_zoned(self.time_zone.tz().clone()).date()),
            None => false,
        }
    }

    /// The agent's own calendar day at `now`: the day a daily cap counts in (RC-3).
    pub fn local_date(&self, now: Timestamp) -> Date {
        now.to_zoned(self.time_zone.tz().clone()).date()
    }

    /// Ranking order (GEN-1): the faster median response first, agents with no history after,
    /// then by id so the order is the same on every run.
    pub fn by_speed(a: &Agent, b: &Agent) -> std::cmp::Ordering {
        super::speed::faster_first(
            a.response_times.median_millis(),
            b.response_times.median_millis(),
        )
        .then_with(|| a.id.cmp(&b.id))
    }

    /// Serves this zip and client type.
    pub fn serves(&self, zip: &Zip, client_type: ClientType) -> bool {
        self.zips.contains(zip) && self.client_types.contains(&client_type)
    }

    /// What a lead-routing member must have (LR-5): a license, an account email and a phone.
    pub fn routing_readiness(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        if !self.licensed {
            missing.push("a license");
        }
        if self.email.is_none() {
            missing.push("an account email");
        }
        if self.phone().is_none() {
            missing.push("a phone number");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("agent {} lacks {}", self.id, missing.join(" and ")))
        }
    }
}

/// A vacation from `start` to `end`, both inclusive, as dates in the agent's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vacation {
    pub start: Date,
    pub end: Date,
}

impl Vacation {
    pub fn new(start: Date, end: Date) -> Result<Self, InvalidValue> {
        if end < start {
            Err(InvalidValue::new("end", "must not be before start"))
        } else {
            Ok(Self { start, end })
        }
    }

    pub fn contains(&self, day: Date) -> bool {
        self.start <= day && day <= self.end
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A licensed, reachable agent serving 94110 buyers and sellers in Los Angeles time.
    pub fn agent(id: &str) -> Agent {
        Agent {
            id: id.parse().unwrap(),
            name: format!("Agent {id}"),
            email: Some(format!("{id}@agents.example.com").parse().unwrap()),
            cell_phone: Some("+14155550100".parse().unwrap()),
            office_phone: None,
            licensed: true,
            zips: ["94110".parse().unwrap()].into(),
            client_types: [ClientType::Buyer, ClientType::Seller].into(),
            warm_transfer: true,
            push_token: None,
            time_zone: "America/Los_Angeles".parse().unwrap(),
            vacation: None,
            fee_percent: None,
            response_times: ResponseTimes::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::agent;
    use super::*;
    use jiff::civil::date;

    #[test]
    fn lr_7_vacation_is_read_in_the_agents_time_zone() {
        let mut a = agent("a1");
        a.vacation = Some(Vacation::new(date(2026, 12, 1), date(2026, 12, 5)).unwrap());
        // 2026-12-06 05:00 UTC is still 21:00 on the 5th in Los Angeles.
        assert!(a.on_vacation("2026-12-06T05:00:00Z".parse().unwrap()));
        // 2026-12-06 09:00 UTC is 01:00 on the 6th there: back at work.
        assert!(!a.on_vacation("2026-12-06T09:00:00Z".parse().unwrap()));
        // The first day counts from the agent's midnight, not UTC's.
        assert!(!a.on_vacation("2026-12-01T07:00:00Z".parse().unwrap()));
        assert!(a.on_vacation("2026-12-01T08:30:00Z".parse().unwrap()));
    }

    #[test]
    fn vacation_end_before_start_is_refused() {
        assert!(Vacation::new(date(2026, 12, 5), date(2026, 12, 1)).is_err());
    }

    #[test]
    fn lr_5_member_needs_license_email_and_phone() {
        let mut a = agent("a1");
        assert!(a.routing_readiness().is_ok());
        a.licensed = false;
        a.email = None;
        let err = a.routing_readiness().unwrap_err();
        assert!(err.contains("license") && err.contains("email"), "{err}");
        let mut b = agent("b1");
        b.cell_phone = None;
        assert!(b.routing_readiness().unwrap_err().contains("phone"));
        b.office_phone = Some("+14155550199".parse().unwrap());
        assert!(b.routing_readiness().is_ok());
    }
}
