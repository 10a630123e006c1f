//! A test's world: its agents, teams, staff and client, with ids, phone numbers, emails, push
//! devices and a zip code no other world of this run uses, so worlds on one runner, one table and
//! one moto never see each other's offers, messages or eligible agents.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

/// A world's number, `0..10_000`: distinct for the first 10 000 worlds of a test binary, from a
/// random start so two binaries sharing emulators are unlikely to meet.
fn next_number() -> u32 {
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| fastrand::u32(..10_000));
    (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000
}

/// An agent of the world, before or after their profile is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub email: String,
    /// The push token of the agent's device: the `to` of their push notifications.
    pub device: String,
}

/// The client every referral of a world is for.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: &'static str,
    pub phone: String,
    pub email: String,
}

#[derive(Debug)]
pub struct World {
    /// Appended to every id, such as `ana-t0042`.
    pub tag: String,
    /// The only zip the world's agents serve and its referrals are in (a 94xxx zip, priced as the
    /// Bay Area).
    pub zip: String,
    pub client: Client,
    number: u32,
    agents: Mutex<BTreeMap<String, Agent>>,
}

impl World {
    pub fn new() -> World {
        let number = next_number();
        let tag = format!("t{number:04}");
        World {
            zip: format!("94{:03}", number % 1000),
            client: Client {
                name: "Casey Client",
                // Numbers a country issues (TX-3): exchanges start 2 to 9.
                phone: format!("+1628{}", 2_000_000 + number * 100),
                email: format!("casey.{tag}@example.com"),
            },
            tag,
            number,
            agents: Mutex::default(),
        }
    }

    /// The world's agent `short` (`ana` is `ana-t0042`, "Ana Agent", with a phone, email and
    /// device of their own): the same agent every time it is asked for.
    pub fn agent(&self, short: &str) -> Agent {
        let mut agents = self.agents.lock().expect("agents lock");
        let n = agents.len() + 1;
        agents
            .entry(short.to_owned())
            .or_insert_with(|| {
                let id = format!("{short}-{}", self.tag);
                Agent {
                    name: format!("{}{} Agent", short[..1].to_uppercase(), &short[1..]),
                    phone: format!("+1415{}", 2_000_000 + self.number * 100 + n as u32),
                    email: format!("{id}@agents.example.com"),
                    device: format!("device-{id}"),
                    id,
                }
            })
            .clone()
    }

    /// A telephony provider's message or call id (`SM…`, `CA…`, 34 characters) of this world:
    /// the provider's ids are what makes a repeated webhook a repeat.
    pub fn sid(&self, prefix: &str, n: u32) -> String {
        format!("{prefix}{:04}{n:028}", self.number)
    }

    /// An id of this world: a team's, or a staff member's (`advisor`, `closer`, `admin`).
    pub fn id(&self, short: &str) -> String {
        format!("{short}-{}", self.tag)
    }

    /// A complete profile serving the world's zip for buyers and sellers, opted in to warm
    /// transfers, in Los Angeles' time zone.
    pub fn profile(&self, agent: &Agent) -> Value {
        json!({
            "name": agent.name, "email": agent.email,
            "cellPhone": agent.phone, "licensed": true,
            "zips": [self.zip], "clientTypes": ["buyer", "seller"], "warmTransfer": true,
            "pushToken": agent.device,
            "timeZone": "America/Los_Angeles"
        })
    }

    /// The world's advisor's address: their token's `email` claim.
    pub fn advisor_email(&self) -> String {
        format!("{}@advisors.example.com", self.id("advisor"))
    }

    /// The `n`th number after the world's client's (0 is the client's own): another client of
    /// the world, not a duplicate of the first (RC-4).
    pub fn client_phone(&self, n: u64) -> String {
        let first: u64 = self.client.phone[1..].parse().expect("an E.164 number");
        format!("+{}", first + n)
    }

    /// The world's advisor's phone, where a warm transfer calls them in (WT-10) and texts them.
    pub fn advisor_phone(&self) -> String {
        format!("+1650{}", 2_000_000 + self.number * 100)
    }

    /// A new referral's body for the world's client, in its zip.
    pub fn referral(&self, program: &str, client_type: &str) -> Value {
        json!({
            "program": program,
            "client": {"name": self.client.name, "phone": self.client.phone, "email": self.client.email},
            "clientType": client_type, "zip": self.zip,
            "priceRange": {"min": "600000", "max": "800000"}, "timeline": "1-3 months",
            "briefing": "Relocating for work; wants a quick, quiet sale.",
        })
    }

    /// Whether an outbox entry is addressed to someone of this world: its agents' phones,
    /// emails and devices, its advisor, or its client. The advisors' and closings' desks are
    /// everyone's.
    pub fn addressed_here(&self, entry: &Value) -> bool {
        let to = entry["to"].as_str().unwrap_or("");
        to == self.advisor_email()
            || to == self.advisor_phone()
            || to == self.client.phone
            || to == self.client.email
            || to == self.advisor_email()
            || to == self.advisor_phone()
            || DESKS.contains(&to)
            || self
                .agents
                .lock()
                .expect("agents lock")
                .values()
                .any(|a| to == a.phone || to == a.email || to == a.device)
    }
}

/// The staff addresses the runner's functions are configured with (the development defaults).
pub const ADVISORS_EMAIL: &str = "advisors@referrals.example.com";
pub const CLOSINGS_EMAIL: &str = "closings@referrals.example.com";
const DESKS: [&str; 2] = [ADVISORS_EMAIL, CLOSINGS_EMAIL];
