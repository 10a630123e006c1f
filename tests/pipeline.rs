//! The referral pipeline through the local gateway: referrals claimed and moved through their
//! stages by each kind of caller, and Coming Soon switching to Listing when the local clock
//! passes the list date. Escrow and its closing documents are in `escrow`.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde_json::{Value, json};

mod closings;
mod escrow;

use crate::harness::{Agent, TestApp, error_code, spawn_app, spawn_app_alone, to};

/// Who calls: an agent of the world, or its closings team or advisor.
#[derive(Clone, Copy)]
enum By<'a> {
    Agent(&'a Agent),
    Closings,
    Advisor,
}

impl TestApp {
    fn token_by(&self, by: By) -> String {
        match by {
            By::Agent(agent) => self.token_of(agent),
            By::Closings => self.closings(),
            By::Advisor => self.advisor(),
        }
    }

    /// A call by `by`, with a token issued at the local clock's time.
    fn call_by(&self, by: By, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.call(method, path, Some(&self.token_by(by)), body.as_deref())
    }

    fn ok(&self, by: By, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call_by(by, method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    /// Asserts the call is refused with `status` and `code`, and returns the message.
    fn refused(
        &self,
        (by, method, path, body): (By, &str, &str, Option<Value>),
        status: u16,
        code: &str,
    ) -> String {
        let (got, answer) = self.call_by(by, method, path, body);
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{method} {path}: {answer}"
        );
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Moves referral `id` to `stage` (with its fields) as `by`; returns the referral.
    fn stage(&self, by: By, id: &str, stage: Value) -> Value {
        self.ok(by, "POST", &stage_path(id), Some(stage))
    }

    fn view(&self, by: By, id: &str) -> Value {
        self.ok(by, "GET", &format!("/referrals/{id}"), None)
    }

    fn stage_of(&self, id: &str) -> Value {
        self.view(By::Closings, id)["stage"].clone()
    }
}

fn stage_path(id: &str) -> String {
    format!("/referrals/{id}/stage")
}

/// Team `bay`, led by `ana`, with `ben`; `cy` is on no team. Lead routing is off.
struct Bay {
    team: String,
    ana: Agent,
    ben: Agent,
    cy: Agent,
}

fn bay_team(app: &TestApp) -> Bay {
    let [ana, ben, cy] = app.agents(["ana", "ben", "cy"]);
    let team = app.create_team("bay", &ana, &[&ben]);
    Bay { team, ana, ben, cy }
}

impl Bay {
    /// A new referral for the team; returns its id.
    fn referral(&self, app: &TestApp, client_type: &str) -> String {
        let mut body = app.referral("routing", client_type);
        body["teamId"] = self.team.clone().into();
        app.create_referral(&body)["id"]
            .as_str()
            .expect("the new referral's id")
            .to_owned()
    }

    /// A seller claimed by ana (the team's lead, offered every referral without lead routing).
    fn seller_of_ana(&self, app: &TestApp) -> String {
        let id = self.referral(app, "seller");
        claim(app, &id, &self.ana);
        id
    }

    /// Lead routing on with ben taking buyers; a buyer he claims, another client than the
    /// world's (`buyer_client`): ana has the world's client, and a referral of that client
    /// again would be offered to her alone first (RC-4).
    fn buyer_of_ben(&self, app: &TestApp) -> String {
        app.route(&self.team, &self.ana, &[(&self.ben, "buyer")]);
        let mut body = app.referral("routing", "buyer");
        body["teamId"] = self.team.clone().into();
        body["client"] = buyer_client(app);
        let created = app.create_referral(&body);
        assert_eq!(created.get("duplicateOf"), None, "{created}");
        let id = created["id"]
            .as_str()
            .expect("the new referral's id")
            .to_owned();
        claim(app, &id, &self.ben);
        id
    }

    fn agreement(&self, app: &TestApp, agent: &Agent, percent: u32) {
        let (status, body) = app.call(
            "PUT",
            &format!("/agents/{}/agreement", agent.id),
            Some(&app.admin()),
            Some(&json!({"feePercent": percent}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
    }
}

/// The client of ben's buyer: of the same name as the world's client, with a number and an
/// address of the world's own, not the client's.
fn buyer_client(app: &TestApp) -> Value {
    json!({
        "name": app.client.name,
        "phone": app.client_phone(1),
        "email": format!("bo.{}", app.client.email),
    })
}

fn claim(app: &TestApp, id: &str, agent: &Agent) {
    let claimed = app.ok(
        By::Agent(agent),
        "POST",
        &format!("/referrals/{id}/claim"),
        None,
    );
    assert_eq!(
        (&claimed["referralId"], &claimed["agentId"]),
        (&json!(id), &json!(agent.id))
    );
}

/// A pay-per-lead buyer claimed by cy, its one subscriber.
fn ppl_buyer_of_cy(app: &TestApp, cy: &Agent) -> String {
    app.ok(
        By::Agent(cy),
        "POST",
        "/ppl/subscriptions",
        Some(json!({"zips": [app.zip], "clientTypes": ["buyer"], "referralsPerCycle": 2})),
    );
    let id = app.create_referral(&app.referral("ppl", "buyer"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    claim(app, &id, cy);
    id
}

/// The entries of a referral's history of one `type`.
fn history<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    view["history"]
        .as_array()
        .map(|h| h.iter().filter(|e| e["type"] == kind).collect())
        .unwrap_or_default()
}

/// The move into In Escrow with its sale price and close date.
fn in_escrow(sale_price: &str, close_date: &str) -> Value {
    json!({"stage": "in_escrow", "salePrice": sale_price, "closeDate": close_date})
}

/// Midnight starting `date` in Los Angeles, where the agents' profiles are.
fn la_midnight(date: Date) -> Timestamp {
    date.to_zoned(TimeZone::get("America/Los_Angeles").unwrap())
        .unwrap()
        .timestamp()
}

/// Whether the clock's answer says `schedule` fired, and when.
fn fired_at(advanced: &Value, schedule: &str) -> Option<Timestamp> {
    advanced["fired"]
        .as_array()?
        .iter()
        .find(|f| f["schedule"] == schedule)
        .and_then(|f| f["at"].as_str()?.parse().ok())
}

/// LR-11: a team without lead routing offers its referrals to its lead alone: a member may not
/// claim it; the lead does, and it starts at Left Voicemail with the won claim in its history.
#[test]
fn lr_11_a_team_without_lead_routing_offers_to_its_lead_only() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.referral(&app, "seller");
    app.refused(
        (
            By::Agent(&bay.ben),
            "POST",
            &format!("/referrals/{id}/claim"),
            None,
        ),
        403,
        "forbidden",
    );
    claim(&app, &id, &bay.ana);
    let v = app.view(By::Agent(&bay.ana), &id);
    assert_eq!(
        (&v["stage"], &v["assignedAgentId"]),
        (&json!("left_voicemail"), &json!(bay.ana.id)),
        "{v}"
    );
    assert!(
        history(&v, "claim_attempt")
            .iter()
            .any(|e| e["agentId"] == bay.ana.id.as_str() && e["won"] == true),
        "{v}"
    );
}

/// GEN-3: the client's phone and email are in the view of the assigned agent and of closings;
/// the advisor sees the referral without them; other agents not at all.
#[test]
fn gen_3_the_clients_contacts_only_for_the_assigned_agent_and_closings() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.seller_of_ana(&app);
    for by in [By::Agent(&bay.ana), By::Closings] {
        let v = app.view(by, &id);
        assert_eq!(
            (&v["client"]["phone"], &v["client"]["email"]),
            (&json!(app.client.phone), &json!(app.client.email)),
            "{v}"
        );
    }
    let v = app.view(By::Advisor, &id);
    assert_eq!(v["stage"], "left_voicemail", "{v}");
    let text = v.to_string();
    assert!(
        !text.contains(&app.client.phone) && !text.contains(&app.client.email),
        "{text}"
    );
    for agent in [&bay.ben, &bay.cy] {
        app.refused(
            (By::Agent(agent), "GET", &format!("/referrals/{id}"), None),
            403,
            "forbidden",
        );
    }
}

/// GEN-3: no offer by SMS or push, of a team's referral or a pay-per-lead one, carries the
/// client's phone or email.
#[test]
fn gen_3_no_offer_carries_the_clients_contacts() {
    let app = spawn_app();
    let bay = bay_team(&app);
    app.ok(
        By::Agent(&bay.cy),
        "POST",
        "/ppl/subscriptions",
        Some(json!({"zips": [app.zip], "clientTypes": ["buyer"], "referralsPerCycle": 2})),
    );
    bay.referral(&app, "seller");
    app.create_referral(&app.referral("ppl", "buyer"));
    let offered = |o: &[Value], agent: &Agent, channel: &str| {
        o.iter()
            .any(|m| m["channel"] == channel && (to(m) == agent.phone || to(m) == agent.device))
    };
    let outbox = app.outbox_until("the offers to ana and cy", |o| {
        [&bay.ana, &bay.cy]
            .iter()
            .all(|a| offered(o, a, "sms") && offered(o, a, "push"))
    });
    for m in outbox
        .iter()
        .filter(|m| m["channel"] == "sms" || m["channel"] == "push")
    {
        let body = m["body"].as_str().unwrap_or_default();
        assert!(
            !body.contains(&app.client.phone) && !body.contains(&app.client.email),
            "{m}"
        );
    }
}

/// ST-2: stages only move forward, skipping is fine; a backward or same-rank move is refused
/// with a message suggesting a note instead.
#[test]
fn st_2_stages_only_move_forward_and_a_refused_move_suggests_a_note() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.seller_of_ana(&app);
    let ana = By::Agent(&bay.ana);
    app.stage(ana, &id, json!({"stage": "connected"}));
    for back in ["left_voicemail", "connected"] {
        let message = app.refused(
            (ana, "POST", &stage_path(&id), Some(json!({"stage": back}))),
            409,
            "backward_move",
        );
        assert!(message.contains("note"), "{message}");
    }
    app.stage(ana, &id, json!({"stage": "met_with_person"}));
    assert_eq!(app.stage_of(&id), "met_with_person");
}

/// ST-5: Meeting Scheduled needs the meeting's date and time, and keeps it.
#[test]
fn st_5_meeting_scheduled_takes_the_meetings_time() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.seller_of_ana(&app);
    let ana = By::Agent(&bay.ana);
    app.refused(
        (
            ana,
            "POST",
            &stage_path(&id),
            Some(json!({"stage": "meeting_scheduled"})),
        ),
        422,
        "missing_field",
    );
    let meeting = "2030-01-15T18:30:00Z";
    let v = app.stage(
        ana,
        &id,
        json!({"stage": "meeting_scheduled", "meetingAt": meeting}),
    );
    assert_eq!(v["pipeline"]["meetingAt"], meeting, "{v}");
}

/// ST-1: a seller's stages are not a buyer's: no Making an Offer for a seller, no Coming Soon
/// for a buyer.
#[test]
fn st_1_a_seller_never_makes_an_offer_and_a_buyer_never_comes_soon() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let seller = bay.seller_of_ana(&app);
    app.refused(
        (
            By::Agent(&bay.ana),
            "POST",
            &stage_path(&seller),
            Some(json!({"stage": "making_an_offer"})),
        ),
        422,
        "invalid_stage",
    );
    let buyer = bay.buyer_of_ben(&app);
    app.refused(
        (
            By::Agent(&bay.ben),
            "POST",
            &stage_path(&buyer),
            Some(json!({"stage": "coming_soon", "listDate": "2030-01-01"})),
        ),
        422,
        "invalid_stage",
    );
}

/// ST-11: only the assigned agent, their team lead or closings change a referral: other agents
/// may not move it or add notes; the lead may move her agent's referral, without seeing the
/// client's contacts (GEN-3).
#[test]
fn st_11_only_the_assigned_agent_their_lead_or_closings_change_a_referral() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let seller = bay.seller_of_ana(&app);
    for agent in [&bay.ben, &bay.cy] {
        app.refused(
            (
                By::Agent(agent),
                "POST",
                &stage_path(&seller),
                Some(json!({"stage": "met_with_person"})),
            ),
            403,
            "forbidden",
        );
    }
    app.refused(
        (
            By::Agent(&bay.cy),
            "POST",
            &format!("/referrals/{seller}/notes"),
            Some(json!({"text": "mine now"})),
        ),
        403,
        "forbidden",
    );

    let buyer = bay.buyer_of_ben(&app);
    app.stage(By::Agent(&bay.ben), &buyer, json!({"stage": "connected"}));
    let v = app.stage(
        By::Agent(&bay.ana),
        &buyer,
        json!({"stage": "making_an_offer"}),
    );
    assert_eq!(v["stage"], "making_an_offer", "{v}");
    assert!(v.get("client").is_none(), "the lead's view: {v}");
    assert_eq!(
        app.view(By::Agent(&bay.ben), &buyer)["client"]["phone"],
        buyer_client(&app)["phone"]
    );
    app.refused(
        (
            By::Agent(&bay.cy),
            "POST",
            &stage_path(&buyer),
            Some(json!({"stage": "in_escrow"})),
        ),
        403,
        "forbidden",
    );
}

/// ST-3: Coming Soon needs a list date; a new date replaces the old one's schedule; the
/// referral switches to Listing by itself at midnight of the date in the agent's time zone
/// (Los Angeles), not at UTC midnight; a referral that moved on before its date is left alone.
#[test]
fn st_3_coming_soon_lists_by_itself_at_midnight_of_the_date_in_the_agents_zone() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let id = bay.seller_of_ana(&app);
    let path = stage_path(&id);
    app.refused(
        (ana, "POST", &path, Some(json!({"stage": "coming_soon"}))),
        422,
        "missing_field",
    );
    let today = app
        .now()
        .to_zoned(TimeZone::get("America/Los_Angeles").unwrap())
        .date();
    let (first, moved) = (today + 3.days(), today + 6.days());
    app.stage(ana, &id, json!({"stage": "coming_soon", "listDate": first}));
    let v = app.stage(ana, &id, json!({"stage": "coming_soon", "listDate": moved}));
    assert_eq!(
        (&v["stage"], &v["pipeline"]["listDate"]),
        (&json!("coming_soon"), &json!(moved)),
        "{v}"
    );
    app.refused(
        (
            ana,
            "POST",
            &path,
            Some(json!({"stage": "coming_soon", "listDate": moved})),
        ),
        409,
        "backward_move",
    );

    // Another seller, listed by hand before its date: its schedule goes with it.
    let early = bay.seller_of_ana(&app);
    app.stage(
        ana,
        &early,
        json!({"stage": "coming_soon", "listDate": first}),
    );
    app.stage(ana, &early, json!({"stage": "listing"}));

    let schedule = format!("coming-soon-{id}");
    let advanced = app.advance_to(la_midnight(first) + SignedDuration::from_hours(1));
    assert_eq!(fired_at(&advanced, &schedule), None, "{advanced}");
    assert_eq!(fired_at(&advanced, &format!("coming-soon-{early}")), None);
    assert_eq!(app.stage_of(&id), "coming_soon");
    assert_eq!(app.stage_of(&early), "listing");

    // UTC has reached the new date, Los Angeles has not.
    let utc_midnight = moved.to_zoned(TimeZone::UTC).unwrap().timestamp();
    app.advance_to(utc_midnight + SignedDuration::from_hours(1));
    assert_eq!(app.stage_of(&id), "coming_soon");
    let advanced = app.advance_to(la_midnight(moved) + SignedDuration::from_mins(1));
    assert_eq!(
        fired_at(&advanced, &schedule),
        Some(la_midnight(moved)),
        "{advanced}"
    );
    let v = app.view(ana, &id);
    assert_eq!(v["stage"], "listing", "{v}");
    let by_itself = history(&v, "stage_changed")
        .into_iter()
        .find(|e| e["to"] == "listing")
        .cloned()
        .unwrap_or_else(|| panic!("the switch is in the history: {v}"));
    assert_eq!(
        (&by_itself["from"], &by_itself["by"]),
        (&json!("coming_soon"), &Value::Null),
        "{by_itself}"
    );
}

/// ST-10: notes at any stage, and every stage change, are kept with who and when.
#[test]
fn st_10_notes_and_stage_changes_are_kept_with_who_and_when() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let id = bay.seller_of_ana(&app);
    for stage in [
        json!({"stage": "connected"}),
        json!({"stage": "meeting_scheduled", "meetingAt": "2030-01-15T18:30:00Z"}),
        json!({"stage": "met_with_person"}),
        json!({"stage": "coming_soon", "listDate": "2030-02-01"}),
        json!({"stage": "listing"}),
    ] {
        app.stage(ana, &id, stage);
    }
    let text = "Open house went well; two offers expected.";
    let v = app.ok(
        ana,
        "POST",
        &format!("/referrals/{id}/notes"),
        Some(json!({"text": text})),
    );
    let note = history(&v, "note")
        .into_iter()
        .find(|e| e["text"] == text)
        .cloned()
        .unwrap_or_else(|| panic!("the note is in the history: {v}"));
    assert_eq!(note["by"], bay.ana.id.as_str(), "{note}");
    let at: Timestamp = note["at"].as_str().unwrap().parse().unwrap();
    assert!(app.now().duration_since(at).as_secs() < 60, "{note}");
    let changes = history(&v, "stage_changed");
    let by_ana = changes
        .iter()
        .filter(|e| e["by"] == bay.ana.id.as_str())
        .count();
    assert!(by_ana >= 5, "{v}");
    assert!(changes.iter().all(|e| e["at"].is_string()), "{v}");
}

/// ST-6: Closed-Paid is set only by the closings team recording the payment, on a Closed
/// referral; nothing moves back from it.
#[test]
fn st_6_closed_paid_only_when_closings_record_the_payment() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let id = bay.seller_of_ana(&app);
    let (path, payment) = (stage_path(&id), format!("/referrals/{id}/payment"));
    app.refused(
        (ana, "POST", &path, Some(json!({"stage": "closed_paid"}))),
        403,
        "forbidden",
    );
    app.refused((By::Closings, "POST", &payment, None), 409, "not_closed");
    app.stage(ana, &id, json!({"stage": "closed"}));
    app.refused((ana, "POST", &payment, None), 403, "forbidden");
    let v = app.ok(By::Closings, "POST", &payment, None);
    assert_eq!(v["stage"], "closed_paid", "{v}");
    let changes = history(&v, "stage_changed");
    assert_eq!(
        changes.last().unwrap()["by"],
        app.id("closer").as_str(),
        "{v}"
    );
    app.refused(
        (ana, "POST", &path, Some(json!({"stage": "connected"}))),
        409,
        "backward_move",
    );
}

/// ST-8: Failed needs a reason and is reachable from an active stage; from Failed the referral
/// returns to its last active stage (not below it) and moves on.
#[test]
fn st_8_failed_needs_a_reason_and_returns_to_its_last_active_stage() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ben = By::Agent(&bay.ben);
    let id = bay.buyer_of_ben(&app);
    let path = stage_path(&id);
    app.stage(ben, &id, json!({"stage": "making_an_offer"}));
    app.refused(
        (ben, "POST", &path, Some(json!({"stage": "failed"}))),
        422,
        "missing_field",
    );
    let v = app.stage(
        ben,
        &id,
        json!({"stage": "failed", "failReason": "unresponsive"}),
    );
    assert_eq!(
        (&v["stage"], &v["pipeline"]["lastActive"]),
        (&json!("failed"), &json!("making_an_offer")),
        "{v}"
    );
    app.refused(
        (ben, "POST", &path, Some(json!({"stage": "connected"}))),
        409,
        "backward_move",
    );
    let v = app.stage(ben, &id, json!({"stage": "making_an_offer"}));
    assert_eq!(v["stage"], "making_an_offer", "{v}");
    let v = app.stage(ben, &id, in_escrow("500000", "2030-02-01"));
    assert_eq!(v["stage"], "in_escrow", "{v}");
}

/// LR-1: an agent's referrals by stage, for the agent (with the client's contacts) and their
/// team lead (without); nobody else's.
#[test]
fn lr_1_an_agents_referrals_by_stage_for_them_and_their_lead() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let paid = bay.seller_of_ana(&app);
    app.stage(ana, &paid, json!({"stage": "closed"}));
    app.ok(
        By::Closings,
        "POST",
        &format!("/referrals/{paid}/payment"),
        None,
    );
    let listed = bay.seller_of_ana(&app);
    app.stage(ana, &listed, json!({"stage": "listing"}));
    let buyer = bay.buyer_of_ben(&app);
    app.stage(
        By::Agent(&bay.ben),
        &buyer,
        json!({"stage": "making_an_offer"}),
    );

    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let anas = format!("/agents/{}/referrals", bay.ana.id);
    let list = app.ok(ana, "GET", &format!("{anas}?stage=closed_paid"), None);
    assert_eq!(ids(&list), vec![paid.clone()], "{list}");
    assert_eq!(
        list[0]["client"]["phone"],
        app.client.phone.as_str(),
        "{list}"
    );
    let list = app.ok(ana, "GET", &format!("{anas}?stage=listing"), None);
    assert_eq!(ids(&list), vec![listed.clone()], "{list}");
    let mut all = ids(&app.ok(ana, "GET", &anas, None));
    all.sort();
    let mut expected = vec![paid, listed];
    expected.sort();
    assert_eq!(all, expected);

    let bens = format!("/agents/{}/referrals", bay.ben.id);
    let path = format!("{bens}?stage=making_an_offer");
    let list = app.ok(By::Agent(&bay.ben), "GET", &path, None);
    assert_eq!(ids(&list), vec![buyer.clone()], "{list}");
    let buyer_phone = buyer_client(&app)["phone"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["client"]["phone"], buyer_phone.as_str(), "{list}");
    let list = app.ok(ana, "GET", &path, None);
    assert_eq!(ids(&list), vec![buyer], "{list}");
    assert!(
        !list.to_string().contains(&buyer_phone),
        "the lead's list: {list}"
    );
    app.refused((By::Agent(&bay.cy), "GET", &path, None), 403, "forbidden");
    let list = app.ok(
        By::Agent(&bay.ben),
        "GET",
        &format!("{bens}?stage=in_escrow"),
        None,
    );
    assert_eq!(list, json!([]));
}

/// PPL-8: a pay-per-lead referral fails only as not a good fit, or as unresponsive once more
/// than 30 days have passed since the claim.
#[test]
fn ppl_8_a_pay_per_lead_referral_fails_only_as_not_a_fit_or_unresponsive_after_30_days() {
    let app = spawn_app_alone();
    let cy = app.agents(["cy"])[0].clone();
    let by = By::Agent(&cy);
    let id = ppl_buyer_of_cy(&app, &cy);
    let claimed_at = app.now();
    let path = stage_path(&id);
    app.stage(by, &id, json!({"stage": "connected"}));
    for reason in ["other", "unresponsive"] {
        app.refused(
            (
                by,
                "POST",
                &path,
                Some(json!({"stage": "failed", "failReason": reason})),
            ),
            422,
            "invalid_stage",
        );
    }
    app.stage(
        by,
        &id,
        json!({"stage": "failed", "failReason": "not_a_good_fit"}),
    );
    app.stage(by, &id, json!({"stage": "connected"}));
    app.advance_to(claimed_at + SignedDuration::from_hours(24 * 30 + 1));
    let v = app.stage(
        by,
        &id,
        json!({"stage": "failed", "failReason": "unresponsive"}),
    );
    assert_eq!(v["pipeline"]["failReason"], "unresponsive", "{v}");
    app.stage(by, &id, json!({"stage": "connected"}));
}
