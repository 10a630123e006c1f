//! The referral pipeline end to end through the local runner: referrals created by an advisor and
//! claimed by agents, then moved through their stages through the gateway by each kind of
//! caller; the closing documents as the bus delivers them; Coming Soon switching to Listing when
//! the local clock passes the list date. Real DynamoDB Local and moto, `cargo lambda watch`
//! serving the functions.
//!
//! One runner and one timeline. Never skipped: without the emulators or cargo-lambda it fails and
//! says what is missing.

mod common;

use common::{Runner, error_code, profile};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde_json::{Value, json};

const CLIENT_PHONE: &str = "+14155559876";
const CLIENT_EMAIL: &str = "casey@example.com";
const CLOSINGS_EMAIL: &str = "closings@referrals.example.com";
const ADVISOR: &str = "advisor-1";
const CLOSINGS: &str = "closer-1";
const DOCUMENTS: &str = "Closing documents";

/// A call as `who`, with a token issued at the local clock's time (the gateway checks its
/// expiry against that clock). `advisor-1` is an advisor, `closer-1` the closings team, anyone
/// else an agent.
fn call(runner: &Runner, method: &str, path: &str, who: &str, body: Option<Value>) -> (u16, Value) {
    let role = match who {
        ADVISOR => "advisor",
        CLOSINGS => "closings",
        "admin-1" => "admin",
        _ => "agent",
    };
    let body = body.map(|b| b.to_string());
    runner.call(
        method,
        path,
        Some(&runner.token(who, role)),
        body.as_deref(),
    )
}

fn ok(runner: &Runner, method: &str, path: &str, who: &str, body: Option<Value>) -> Value {
    let (status, answer) = call(runner, method, path, who, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path} as {who}: {status} {answer}"
    );
    answer
}

/// Asserts the call is refused with `status` and `code`, and returns the message.
fn refused(
    runner: &Runner,
    (method, path, who, body): (&str, &str, &str, Option<Value>),
    status: u16,
    code: &str,
) -> String {
    let (got, answer) = call(runner, method, path, who, body);
    assert_eq!(
        (got, error_code(&answer)),
        (status, code),
        "{method} {path} as {who}: {answer}"
    );
    answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn stage(id: &str) -> String {
    format!("/referrals/{id}/stage")
}

fn view(runner: &Runner, id: &str, who: &str) -> Value {
    ok(runner, "GET", &format!("/referrals/{id}"), who, None)
}

fn stage_of(runner: &Runner, id: &str) -> Value {
    view(runner, id, CLOSINGS)["stage"].clone()
}

/// A new referral for Casey, created by the advisor; returns its id.
fn new_referral(runner: &Runner, program: &str, client_type: &str) -> String {
    let mut body = json!({
        "program": program,
        "client": {"name": "Casey Client", "phone": CLIENT_PHONE, "email": CLIENT_EMAIL},
        "clientType": client_type, "zip": "94110",
        "priceRange": {"min": "600000", "max": "800000"}, "timeline": "1-3 months",
        "briefing": "Relocating for work; wants a quick, quiet sale."
    });
    if program == "routing" {
        body["teamId"] = json!("bay-team");
    }
    let (status, created) = call(runner, "POST", "/referrals", ADVISOR, Some(body));
    assert_eq!(status, 201, "{created}");
    created["id"]
        .as_str()
        .expect("the new referral's id")
        .to_owned()
}

fn claim(runner: &Runner, id: &str, agent: &str) {
    let claimed = ok(
        runner,
        "POST",
        &format!("/referrals/{id}/claim"),
        agent,
        None,
    );
    assert_eq!(
        (&claimed["referralId"], &claimed["agentId"]),
        (&json!(id), &json!(agent))
    );
}

/// The entries of a referral's history of one `type`.
fn history<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    view["history"]
        .as_array()
        .map(|h| h.iter().filter(|e| e["type"] == kind).collect())
        .unwrap_or_default()
}

/// The closing documents for `id`'s escrow entry `entry`, one per recipient.
fn documents<'a>(outbox: &'a [Value], id: &str, entry: u32) -> Vec<&'a Value> {
    let file = json!([format!("closing-documents-{id}-{entry}.pdf")]);
    outbox
        .iter()
        .filter(|m| m["channel"] == "email" && m["attachments"] == file)
        .collect()
}

/// Waits for entry `entry`'s documents to reach the agent and closings, and returns the text.
fn wait_for_documents(runner: &Runner, id: &str, entry: u32, agent_email: &str) -> String {
    let outbox = runner.outbox_until("the closing documents", |o| {
        documents(o, id, entry).len() >= 2
    });
    let docs = documents(&outbox, id, entry);
    let mut to: Vec<&str> = docs.iter().filter_map(|m| m["to"].as_str()).collect();
    to.sort_unstable();
    let mut expected = vec![agent_email, CLOSINGS_EMAIL];
    expected.sort_unstable();
    assert_eq!(to, expected, "{docs:#?}");
    assert!(
        docs[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{DOCUMENTS}: Casey Client ({id})")),
        "{}",
        docs[0]
    );
    docs[0]["body"].as_str().unwrap().to_owned()
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

#[test]
fn referrals_through_their_stages() {
    let runner = common::start("pipeline-e2e");
    ok(
        &runner,
        "PUT",
        "/teams/bay-team",
        "admin-1",
        Some(json!({"name": "Bay Team", "leadAgentId": "ana", "agentIds": ["ben"]})),
    );
    for (agent, n) in [("ana", 1), ("ben", 2), ("cy", 3)] {
        let name = format!("{}{}", agent[..1].to_uppercase(), &agent[1..]);
        ok(
            &runner,
            "PUT",
            &format!("/agents/{agent}"),
            agent,
            Some(profile(&name, n)),
        );
    }
    for (agent, percent) in [("ana", 25), ("ben", 30)] {
        ok(
            &runner,
            "PUT",
            &format!("/agents/{agent}/agreement"),
            "admin-1",
            Some(json!({"feePercent": percent})),
        );
    }

    let ppl = ppl_referral_claimed_by_cy(&runner);
    let claimed_at = runner.now();
    let seller = seller_claimed_by_ana(&runner);
    gen_3_contact_details_only_for_the_assigned_agent_and_closings(&runner, &seller);
    st_2_st_5_st_11_forward_moves_with_their_fields(&runner, &seller);
    let listed_early = st_3_coming_soon_lists_on_the_date_in_the_agents_zone(&runner, &seller);
    st_10_notes_with_who_and_when(&runner, &seller);
    es_1_es_2_st_4_st_7_closing_documents_once_per_entry(&runner, &seller);
    st_6_closed_paid_only_by_the_closings_payment(&runner, &seller);
    let buyer = buyer_claimed_by_ben(&runner);
    st_8_st_9_st_11_a_buyer_fails_and_comes_back(&runner, &buyer);
    lr_1_lists_by_stage_for_the_agent_and_their_lead(&runner, &seller, &buyer, &listed_early);
    ppl_6_ppl_8_pay_per_lead_fail_reasons_and_no_fee(&runner, &ppl, claimed_at);
    gen_3_no_offer_carries_the_clients_contacts(&runner);
}

/// A pay-per-lead referral reaches the PPL subscriber covering its zip and client type.
fn ppl_referral_claimed_by_cy(runner: &Runner) -> String {
    ok(
        runner,
        "POST",
        "/ppl/subscriptions",
        "cy",
        Some(json!({"zips": ["94110"], "clientTypes": ["buyer"], "referralsPerCycle": 2})),
    );
    let id = new_referral(runner, "ppl", "buyer");
    claim(runner, &id, "cy");
    ok(
        runner,
        "POST",
        &stage(&id),
        "cy",
        Some(json!({"stage": "connected"})),
    );
    id
}

/// Bay Team has no lead routing yet, so its referral is offered to its lead, Ana, alone.
fn seller_claimed_by_ana(runner: &Runner) -> String {
    let id = new_referral(runner, "routing", "seller");
    refused(
        runner,
        ("POST", &format!("/referrals/{id}/claim"), "ben", None),
        403,
        "forbidden",
    );
    claim(runner, &id, "ana");
    let v = view(runner, &id, "ana");
    assert_eq!(
        (&v["stage"], &v["assignedAgentId"]),
        (&json!("left_voicemail"), &json!("ana")),
        "{v}"
    );
    let won = history(&v, "claim_attempt");
    assert!(
        won.iter()
            .any(|e| e["agentId"] == "ana" && e["won"] == true),
        "{v}"
    );
    id
}

/// GEN-3: the client's phone and email are in the view of the assigned agent and of closings;
/// the advisor sees the referral without them; other agents not at all.
fn gen_3_contact_details_only_for_the_assigned_agent_and_closings(runner: &Runner, id: &str) {
    for who in ["ana", CLOSINGS] {
        let v = view(runner, id, who);
        assert_eq!(
            (&v["client"]["phone"], &v["client"]["email"]),
            (&json!(CLIENT_PHONE), &json!(CLIENT_EMAIL)),
            "{who}: {v}"
        );
    }
    let v = view(runner, id, ADVISOR);
    assert_eq!(v["stage"], "left_voicemail", "{v}");
    let text = v.to_string();
    assert!(
        !text.contains(CLIENT_PHONE) && !text.contains(CLIENT_EMAIL),
        "{text}"
    );
    for who in ["ben", "cy"] {
        refused(
            runner,
            ("GET", &format!("/referrals/{id}"), who, None),
            403,
            "forbidden",
        );
    }
}

/// ST-2, ST-5, ST-11: forward moves (skipping is fine), each refused backward or same-rank move
/// answered 409 with a note suggested instead; Meeting Scheduled needs its time (422); only the
/// assigned agent (or their lead, or closings) changes the referral (403).
fn st_2_st_5_st_11_forward_moves_with_their_fields(runner: &Runner, id: &str) {
    let path = stage(id);
    ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "connected"})),
    );
    for back in ["left_voicemail", "connected"] {
        let message = refused(
            runner,
            ("POST", &path, "ana", Some(json!({"stage": back}))),
            409,
            "backward_move",
        );
        assert!(message.contains("note"), "{message}");
    }
    for who in ["ben", "cy"] {
        refused(
            runner,
            (
                "POST",
                &path,
                who,
                Some(json!({"stage": "met_with_person"})),
            ),
            403,
            "forbidden",
        );
    }
    refused(
        runner,
        (
            "POST",
            &path,
            "ana",
            Some(json!({"stage": "meeting_scheduled"})),
        ),
        422,
        "missing_field",
    );
    let meeting = "2030-01-15T18:30:00Z";
    let v = ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "meeting_scheduled", "meetingAt": meeting})),
    );
    assert_eq!(v["pipeline"]["meetingAt"], meeting, "{v}");
    // A buyer's stage is not a seller's.
    refused(
        runner,
        (
            "POST",
            &path,
            "ana",
            Some(json!({"stage": "making_an_offer"})),
        ),
        422,
        "invalid_stage",
    );
    ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "met_with_person"})),
    );
    assert_eq!(stage_of(runner, id), "met_with_person");
}

/// ST-3: Coming Soon needs a list date; a new date replaces the old one's schedule; the
/// referral switches to Listing by itself at midnight of the date in the agent's time zone
/// (Los Angeles), not at UTC midnight; a referral that moved on before its date is left alone.
/// Returns that other referral (listed early, by hand).
fn st_3_coming_soon_lists_on_the_date_in_the_agents_zone(runner: &Runner, id: &str) -> String {
    let path = stage(id);
    refused(
        runner,
        ("POST", &path, "ana", Some(json!({"stage": "coming_soon"}))),
        422,
        "missing_field",
    );
    let today = runner
        .now()
        .to_zoned(TimeZone::get("America/Los_Angeles").unwrap())
        .date();
    let (first, moved) = (today + 3.days(), today + 6.days());
    ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "coming_soon", "listDate": first})),
    );
    let v = ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "coming_soon", "listDate": moved})),
    );
    assert_eq!(
        (&v["stage"], &v["pipeline"]["listDate"]),
        (&json!("coming_soon"), &json!(moved)),
        "{v}"
    );
    refused(
        runner,
        (
            "POST",
            &path,
            "ana",
            Some(json!({"stage": "coming_soon", "listDate": moved})),
        ),
        409,
        "backward_move",
    );

    // Another seller, listed by hand before its date: its schedule goes with it.
    let early = new_referral(runner, "routing", "seller");
    claim(runner, &early, "ana");
    ok(
        runner,
        "POST",
        &stage(&early),
        "ana",
        Some(json!({"stage": "coming_soon", "listDate": first})),
    );
    ok(
        runner,
        "POST",
        &stage(&early),
        "ana",
        Some(json!({"stage": "listing"})),
    );

    let schedule = format!("coming-soon-{id}");
    let advanced = runner.advance_to(la_midnight(first) + SignedDuration::from_hours(1));
    assert_eq!(fired_at(&advanced, &schedule), None, "{advanced}");
    assert_eq!(fired_at(&advanced, &format!("coming-soon-{early}")), None);
    assert_eq!(stage_of(runner, id), "coming_soon");
    assert_eq!(stage_of(runner, &early), "listing");

    // UTC has reached the new date, Los Angeles has not.
    let utc_midnight = moved.to_zoned(TimeZone::UTC).unwrap().timestamp();
    runner.advance_to(utc_midnight + SignedDuration::from_hours(1));
    assert_eq!(stage_of(runner, id), "coming_soon");
    let advanced = runner.advance_to(la_midnight(moved) + SignedDuration::from_mins(1));
    assert_eq!(
        fired_at(&advanced, &schedule),
        Some(la_midnight(moved)),
        "{advanced}"
    );
    let v = view(runner, id, "ana");
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
    early
}

/// ST-10: notes at any stage, kept with who and when; not by an agent who isn't on it.
fn st_10_notes_with_who_and_when(runner: &Runner, id: &str) {
    let notes = format!("/referrals/{id}/notes");
    let text = "Open house went well; two offers expected.";
    let v = ok(runner, "POST", &notes, "ana", Some(json!({"text": text})));
    let note = history(&v, "note")
        .into_iter()
        .find(|e| e["text"] == text)
        .cloned()
        .unwrap_or_else(|| panic!("the note is in the history: {v}"));
    assert_eq!(note["by"], "ana", "{note}");
    let at: Timestamp = note["at"].as_str().unwrap().parse().unwrap();
    assert!(runner.now().duration_since(at).as_secs() < 60, "{note}");
    refused(
        runner,
        ("POST", &notes, "cy", Some(json!({"text": "mine now"}))),
        403,
        "forbidden",
    );
    // Every stage change is there too, each with who and when.
    let changes = history(&v, "stage_changed");
    let by_ana = changes.iter().filter(|e| e["by"] == "ana").count();
    assert!(by_ana >= 5, "{v}");
    assert!(changes.iter().all(|e| e["at"].is_string()), "{v}");
}

/// ES-1, ES-2, ST-4, ST-7: In Escrow needs a sale price and a close date; on entry the closing
/// documents (a PDF) go to the agent with a copy to closings, stating the sale, the close date
/// and the fee under the agent's 25% agreement, once however often the event arrives. Only the
/// closings team moves it back to Listing; entering again sends a second set with the new
/// figures.
fn es_1_es_2_st_4_st_7_closing_documents_once_per_entry(runner: &Runner, id: &str) {
    let path = stage(id);
    for body in [
        json!({"stage": "in_escrow", "closeDate": "2030-03-01"}),
        json!({"stage": "in_escrow", "salePrice": "800000"}),
    ] {
        refused(
            runner,
            ("POST", &path, "ana", Some(body)),
            422,
            "missing_field",
        );
    }
    ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "in_escrow", "salePrice": "800000", "closeDate": "2030-03-01"})),
    );
    let text = wait_for_documents(runner, id, 1, "ana@agents.example.com");
    for line in [
        "Client: Casey Client",
        "Sale price: $800000.00",
        "Close date: 2030-03-01",
        "Referral fee: $200000.00 (25% of the sale price)",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }

    // The same StageChanged event delivered again sends nothing.
    let again = runner.invoke(
        "escrow-docs",
        &json!({
            "version": "0", "id": "redelivered", "source": "referrals",
            "detail-type": "StageChanged", "account": "123456789012", "region": "us-east-1",
            "time": runner.now(), "resources": [],
            "detail": {"referralId": id, "from": "listing", "to": "in_escrow", "escrowEntry": 1}
        }),
    );
    assert_eq!(again["sent"], false, "{again}");
    assert_eq!(documents(&runner.outbox(), id, 1).len(), 2);

    // ST-7: out of escrow by the closings team only.
    refused(
        runner,
        ("POST", &path, "ana", Some(json!({"stage": "listing"}))),
        403,
        "forbidden",
    );
    let correction = format!("/referrals/{id}/correction");
    refused(
        runner,
        (
            "POST",
            &correction,
            "ana",
            Some(json!({"stage": "listing"})),
        ),
        403,
        "forbidden",
    );
    refused(
        runner,
        (
            "POST",
            &correction,
            CLOSINGS,
            Some(json!({"stage": "making_an_offer"})),
        ),
        422,
        "invalid_stage",
    );
    let v = ok(
        runner,
        "POST",
        &correction,
        CLOSINGS,
        Some(json!({"stage": "listing"})),
    );
    assert_eq!(v["stage"], "listing", "{v}");

    // ST-4: a second entry, a second set, with its own figures.
    ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "in_escrow", "salePrice": "780000", "closeDate": "2030-04-01"})),
    );
    let text = wait_for_documents(runner, id, 2, "ana@agents.example.com");
    assert!(
        text.contains("Sale price: $780000.00")
            && text.contains("Referral fee: $195000.00 (25% of the sale price)"),
        "{text}"
    );
    let outbox = runner.outbox();
    assert_eq!(documents(&outbox, id, 1).len(), 2, "entry 1 still once");
    assert_eq!(documents(&outbox, id, 2).len(), 2);
    let v = view(runner, id, CLOSINGS);
    let sent: Vec<(&Value, &Value)> = history(&v, "documents_sent")
        .iter()
        .map(|e| (&e["escrowEntry"], &e["fee"]))
        .collect();
    assert_eq!(
        sent,
        vec![
            (&json!(1), &json!("200000.00")),
            (&json!(2), &json!("195000.00"))
        ],
        "{v}"
    );
}

/// ST-6: Closed-Paid is set only by the closings team recording the payment, on a Closed
/// referral; nothing moves back from it.
fn st_6_closed_paid_only_by_the_closings_payment(runner: &Runner, id: &str) {
    let (path, payment) = (stage(id), format!("/referrals/{id}/payment"));
    refused(
        runner,
        ("POST", &path, "ana", Some(json!({"stage": "closed_paid"}))),
        403,
        "forbidden",
    );
    refused(
        runner,
        ("POST", &payment, CLOSINGS, None),
        409,
        "not_closed",
    );
    ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "closed"})),
    );
    refused(runner, ("POST", &payment, "ana", None), 403, "forbidden");
    let v = ok(runner, "POST", &payment, CLOSINGS, None);
    assert_eq!(v["stage"], "closed_paid", "{v}");
    let paid = history(&v, "stage_changed");
    assert_eq!(paid.last().unwrap()["by"], CLOSINGS, "{v}");
    refused(
        runner,
        ("POST", &path, "ana", Some(json!({"stage": "connected"}))),
        409,
        "backward_move",
    );
}

/// With lead routing on, Ben (buyers) and Ana (the fallback) are offered the buyer; Ben claims.
fn buyer_claimed_by_ben(runner: &Runner) -> String {
    ok(
        runner,
        "PUT",
        "/teams/bay-team/routing",
        "ana",
        Some(json!({"enabled": true, "members": [{"agentId": "ben", "receives": "buyer"}]})),
    );
    let id = new_referral(runner, "routing", "buyer");
    claim(runner, &id, "ben");
    id
}

/// ST-8, ST-9, ST-11: the team lead may move her agent's referral (without seeing the client's
/// contacts, GEN-3); Failed needs a reason and is reachable from an active stage; from Failed
/// the referral returns to its last active stage (not below) and moves on, and its documents
/// still state the fee under Ben's 30% agreement.
fn st_8_st_9_st_11_a_buyer_fails_and_comes_back(runner: &Runner, id: &str) {
    let path = stage(id);
    ok(
        runner,
        "POST",
        &path,
        "ben",
        Some(json!({"stage": "connected"})),
    );
    let v = ok(
        runner,
        "POST",
        &path,
        "ana",
        Some(json!({"stage": "making_an_offer"})),
    );
    assert_eq!(v["stage"], "making_an_offer", "{v}");
    assert!(v.get("client").is_none(), "the lead's view: {v}");
    assert_eq!(view(runner, id, "ben")["client"]["phone"], CLIENT_PHONE);
    refused(
        runner,
        ("POST", &path, "cy", Some(json!({"stage": "in_escrow"}))),
        403,
        "forbidden",
    );
    refused(
        runner,
        (
            "POST",
            &path,
            "ben",
            Some(json!({"stage": "coming_soon", "listDate": "2030-01-01"})),
        ),
        422,
        "invalid_stage",
    );

    refused(
        runner,
        ("POST", &path, "ben", Some(json!({"stage": "failed"}))),
        422,
        "missing_field",
    );
    let v = ok(
        runner,
        "POST",
        &path,
        "ben",
        Some(json!({"stage": "failed", "failReason": "unresponsive"})),
    );
    assert_eq!(
        (&v["stage"], &v["pipeline"]["lastActive"]),
        (&json!("failed"), &json!("making_an_offer")),
        "{v}"
    );
    refused(
        runner,
        ("POST", &path, "ben", Some(json!({"stage": "connected"}))),
        409,
        "backward_move",
    );
    ok(
        runner,
        "POST",
        &path,
        "ben",
        Some(json!({"stage": "making_an_offer"})),
    );
    ok(
        runner,
        "POST",
        &path,
        "ben",
        Some(json!({"stage": "in_escrow", "salePrice": "500000", "closeDate": "2030-02-01"})),
    );
    let text = wait_for_documents(runner, id, 1, "ben@agents.example.com");
    assert!(
        text.contains("Referral fee: $150000.00 (30% of the sale price)"),
        "{text}"
    );
    // ST-7 for a buyer: back to Making an Offer.
    let v = ok(
        runner,
        "POST",
        &format!("/referrals/{id}/correction"),
        CLOSINGS,
        Some(json!({"stage": "making_an_offer"})),
    );
    assert_eq!(v["stage"], "making_an_offer", "{v}");
}

/// LR-1, GEN-3: an agent's list by stage, for the agent (with the contacts) and their team lead
/// (without); nobody else's.
fn lr_1_lists_by_stage_for_the_agent_and_their_lead(
    runner: &Runner,
    seller: &str,
    buyer: &str,
    listed_early: &str,
) {
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = ok(
        runner,
        "GET",
        "/agents/ana/referrals?stage=closed_paid",
        "ana",
        None,
    );
    assert_eq!(ids(&list), vec![seller.to_owned()], "{list}");
    assert_eq!(list[0]["client"]["phone"], CLIENT_PHONE, "{list}");
    let list = ok(
        runner,
        "GET",
        "/agents/ana/referrals?stage=listing",
        "ana",
        None,
    );
    assert_eq!(ids(&list), vec![listed_early.to_owned()], "{list}");
    let mut all = ids(&ok(runner, "GET", "/agents/ana/referrals", "ana", None));
    all.sort();
    let mut expected = vec![seller.to_owned(), listed_early.to_owned()];
    expected.sort();
    assert_eq!(all, expected);

    let path = "/agents/ben/referrals?stage=making_an_offer";
    let list = ok(runner, "GET", path, "ben", None);
    assert_eq!(ids(&list), vec![buyer.to_owned()], "{list}");
    assert_eq!(list[0]["client"]["phone"], CLIENT_PHONE, "{list}");
    let list = ok(runner, "GET", path, "ana", None);
    assert_eq!(ids(&list), vec![buyer.to_owned()], "{list}");
    assert!(
        !list.to_string().contains(CLIENT_PHONE),
        "the lead's list: {list}"
    );
    refused(runner, ("GET", path, "cy", None), 403, "forbidden");
    let list = ok(
        runner,
        "GET",
        "/agents/ben/referrals?stage=in_escrow",
        "ben",
        None,
    );
    assert_eq!(list, json!([]));
}

/// PPL-8, PPL-6: a pay-per-lead referral fails only as not a good fit, or as unresponsive once
/// more than 30 days have passed since the claim; its closing documents state no fee.
fn ppl_6_ppl_8_pay_per_lead_fail_reasons_and_no_fee(
    runner: &Runner,
    id: &str,
    claimed_at: Timestamp,
) {
    let path = stage(id);
    for reason in ["other", "unresponsive"] {
        refused(
            runner,
            (
                "POST",
                &path,
                "cy",
                Some(json!({"stage": "failed", "failReason": reason})),
            ),
            422,
            "invalid_stage",
        );
    }
    ok(
        runner,
        "POST",
        &path,
        "cy",
        Some(json!({"stage": "failed", "failReason": "not_a_good_fit"})),
    );
    ok(
        runner,
        "POST",
        &path,
        "cy",
        Some(json!({"stage": "connected"})),
    );
    runner.advance_to(claimed_at + SignedDuration::from_hours(24 * 30 + 1));
    let v = ok(
        runner,
        "POST",
        &path,
        "cy",
        Some(json!({"stage": "failed", "failReason": "unresponsive"})),
    );
    assert_eq!(v["pipeline"]["failReason"], "unresponsive", "{v}");
    ok(
        runner,
        "POST",
        &path,
        "cy",
        Some(json!({"stage": "connected"})),
    );
    ok(
        runner,
        "POST",
        &path,
        "cy",
        Some(json!({"stage": "in_escrow", "salePrice": "650000", "closeDate": "2030-05-01"})),
    );
    let text = wait_for_documents(runner, id, 1, "cy@agents.example.com");
    assert!(text.contains("Referral fee: none (pay per lead)"), "{text}");
}

/// GEN-3: no offer by SMS or push carried the client's phone or email.
fn gen_3_no_offer_carries_the_clients_contacts(runner: &Runner) {
    let outbox = runner.outbox();
    let offers: Vec<&Value> = outbox
        .iter()
        .filter(|m| m["channel"] == "sms" || m["channel"] == "push")
        .collect();
    assert!(!offers.is_empty());
    for m in offers {
        let body = m["body"].as_str().unwrap_or_default();
        assert!(
            !body.contains(CLIENT_PHONE) && !body.contains(CLIENT_EMAIL),
            "{m}"
        );
    }
}
