//! The transfer's call (WT-6, WT-10 to WT-12): the legs the system places, the conference's
//! callbacks and the introductions they start, a failed leg told on the advisor's call, and the
//! window closed to the second.

use super::*;
use crate::harness::{ADVISORS_EMAIL, WINDOW_SECONDS};

/// Plays Twilio's side of transfer `id`'s conference: posts the status callback `event`
/// (numbered `seq`) for the call `call` labelled `label`, signed; asserts it is taken.
fn conference_callback(app: &TestApp, id: &str, seq: u32, event: &str, call: Option<(&str, &str)>) {
    let conference = app.sid("CF", 1);
    let seq = seq.to_string();
    let mut params = vec![
        ("ConferenceSid", conference.as_str()),
        ("FriendlyName", "ignored"),
        ("SequenceNumber", seq.as_str()),
        ("StatusCallbackEvent", event),
    ];
    if let Some((sid, label)) = call {
        params.push(("CallSid", sid));
        params.push(("ParticipantLabel", label));
    }
    let path = format!("/twilio/voice/conference?referralId={id}");
    let (status, xml) = app.webhook(&path, &params, None);
    assert_eq!(status, 200, "{event}: {xml}");
}

/// Posts `events` as the conference's callbacks numbered from `first`, the whole run twice, as
/// Twilio may deliver each again.
fn conference_callbacks_twice(
    app: &TestApp,
    id: &str,
    first: u32,
    events: &[(&str, Option<(&str, &str)>)],
) {
    for _ in 0..2 {
        for (n, (event, call)) in (first..).zip(events) {
            conference_callback(app, id, n, event, *call);
        }
    }
}

/// The introductions' SMS so far.
fn intro_sms(outbox: &[Value]) -> Vec<String> {
    outbox
        .iter()
        .filter(|e| {
            e["channel"] == "sms" && e["body"].as_str().unwrap_or("").contains("introduced")
        })
        .map(|e| to(e).to_owned())
        .collect()
}

/// WT-11: when the winner's call with the client ends, the conference's callbacks start the
/// introductions by themselves, with no `complete`; every callback arriving twice introduces
/// nobody twice. The advisor leaving after the briefing ends nothing. A forged callback is
/// refused.
#[test]
fn wt_11_the_end_of_the_winners_call_with_the_client_introduces_two_agents_once() {
    let app = spawn_app();
    let agents = transfer_agents(&app);
    let (id, order) = four_respond_one_by_one(&app, &agents);
    let (agent, advisor, client) = (app.sid("CA", 201), app.sid("CA", 202), app.sid("CA", 203));
    let forged = app.webhook(
        &format!("/twilio/voice/conference?referralId={id}"),
        &[
            ("ConferenceSid", "CF1"),
            ("SequenceNumber", "1"),
            ("StatusCallbackEvent", "conference-end"),
        ],
        Some("forged"),
    );
    assert_eq!(forged.0, 403, "{}", forged.1);
    let briefing: [(&str, Option<(&str, &str)>); 5] = [
        ("conference-start", None),
        ("participant-join", Some((&agent, "agent"))),
        ("participant-join", Some((&advisor, "advisor"))),
        ("participant-join", Some((&client, "client"))),
        ("participant-leave", Some((&advisor, "advisor"))),
    ];
    conference_callbacks_twice(&app, &id, 1, &briefing);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        intro_sms(&app.outbox()).is_empty(),
        "the advisor leaving ends nothing"
    );
    let end: [(&str, Option<(&str, &str)>); 2] = [
        ("participant-leave", Some((&agent, "agent"))),
        ("conference-end", None),
    ];
    conference_callbacks_twice(&app, &id, 6, &end);
    let outbox = app.outbox_until("the two introductions", |o| intro_sms(o).len() >= 2);
    let mut told = intro_sms(&outbox);
    told.sort();
    let mut expected: Vec<String> = order[1..3].iter().map(|a| a.phone.clone()).collect();
    expected.sort();
    assert_eq!(told, expected);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(intro_sms(&app.outbox()).len(), 2, "once each");
    let (status, done) = app.call(
        "POST",
        &format!("/warm-transfers/{id}/complete"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{done}");
    let introduced: Vec<String> = done["introduced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["agentId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(introduced, agent_ids(&order[1..3]));
}

/// The outbox's call to `to` whose webhook is for `leg` of a warm transfer.
fn leg_call_to<'a>(outbox: &'a [Value], to_number: &str, leg: &str) -> Option<&'a Value> {
    outbox.iter().find(|e| {
        e["channel"] == "call"
            && to(e) == to_number
            && e["url"]
                .as_str()
                .unwrap_or("")
                .ends_with(&format!("&leg={leg}"))
    })
}

/// The new instructions given to the live call `sid` (`call_update` entries), waited for until
/// `pred` holds. Read from the whole outbox: a call SID names no test's world, and is unique.
fn call_updates_until(
    app: &TestApp,
    sid: &str,
    what: &str,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, body) = app.call("GET", "/_local/outbox", None, None);
        assert_eq!(status, 200, "{body}");
        let updates: Vec<String> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["channel"] == "call_update" && to(e) == sid)
            .map(|e| e["body"].as_str().unwrap_or("").to_owned())
            .collect();
        if pred(&updates) {
            return updates;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 120 s for {what}: {updates:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Twilio requesting a placed call's `url` when it answers (with `Digits` once keyed in).
fn answer(app: &TestApp, call: &Value, digits: Option<&str>) -> String {
    let path = call["url"]
        .as_str()
        .unwrap()
        .strip_prefix(app.base())
        .unwrap()
        .to_owned();
    let sid = call["callSid"].as_str().unwrap();
    let mut params = vec![("CallSid", sid), ("To", to(call)), ("From", "+15005550006")];
    if let Some(d) = digits {
        params.push(("Digits", d));
    }
    let (status, xml) = app.webhook(&path, &params, None);
    assert_eq!(status, 200, "{xml}");
    xml
}

/// WT-10, WT-5, WT-11: a whole transfer with Twilio's side played by signed webhooks. Five
/// agents are alerted; one wins in the app; the system calls the winner (asked for their code,
/// then held with the briefing) and the advisor (the lead details spoken, starting the
/// conference); the advisor connects the client (their live call moved in) and leaves; the
/// conference ends; two introductions go out, once, though every callback arrives twice.
#[test]
fn wt_10_a_whole_transfer_the_system_places_every_leg_and_the_end_introduces_once() {
    let app = spawn_app();
    let agents = transfer_agents(&app);
    let mut body = app.referral("warm_transfer", "seller");
    body["briefing"] = BRIEFING.into();
    body["advisorPhone"] = app.advisor_phone().into();
    // The advisor's live call with the client: a call SID is CA and 32 hex digits.
    let client_call = app.sid("CA", 300);
    body["clientCallSid"] = client_call.clone().into();
    let started = app.create_referral(&body);
    let id = started["id"].as_str().unwrap().to_owned();
    let alerted = ids(&started["offeredTo"]);
    assert_eq!(alerted.len(), 5, "{started}");
    let by_id = |a: &str| agents.iter().find(|x| x.id == a).unwrap().clone();
    let winner = by_id(&alerted[0]);
    let (late1, late2) = (by_id(&alerted[1]), by_id(&alerted[2]));
    for (i, agent) in [&winner, &late1, &late2].into_iter().enumerate() {
        let answer = respond(&app, &id, agent, false, &app.sid("CA", i as u32));
        assert_eq!(won(&answer), i == 0, "{}: {answer}", agent.id);
    }

    // The system calls the winner and the advisor.
    let outbox = app.outbox_until("the calls to the winner and the advisor", |o| {
        leg_call_to(o, &winner.phone, "agent").is_some()
            && leg_call_to(o, &app.advisor_phone(), "advisor").is_some()
    });
    let agent_call = leg_call_to(&outbox, &winner.phone, "agent")
        .unwrap()
        .clone();
    let advisor_call = leg_call_to(&outbox, &app.advisor_phone(), "advisor")
        .unwrap()
        .clone();
    for call in [&agent_call, &advisor_call] {
        assert!(
            call["statusCallback"]
                .as_str()
                .unwrap()
                .contains(&format!("/twilio/voice/status?referralId={id}&leg=")),
            "{call}"
        );
    }
    // The winner is asked for their alert's code (TX-4), then held with the briefing.
    let ask = answer(&app, &agent_call, None);
    assert!(ask.contains("<Gather numDigits=\"4\""), "{ask}");
    assert!(!ask.contains("<Conference"), "{ask}");
    let wrong = answer(&app, &agent_call, Some("0000"));
    let code = alert_code(&app, &winner);
    if code != "0000" {
        assert!(!wrong.contains("<Conference"), "{wrong}");
    }
    let held = answer(&app, &agent_call, Some(&code));
    assert!(held.contains("worried about repairs"), "{held}");
    assert!(
        held.contains(
            r#"startConferenceOnEnter="false" endConferenceOnExit="true" participantLabel="agent""#
        ),
        "{held}"
    );
    // The advisor hears the lead details and starts the conference.
    let advisor_twiml = answer(&app, &advisor_call, None);
    assert!(advisor_twiml.contains("Seller in"), "{advisor_twiml}");
    assert!(
        advisor_twiml.contains(r#"startConferenceOnEnter="true" endConferenceOnExit="false" participantLabel="advisor""#)
            && advisor_twiml.contains(&format!(">wt-{id}</Conference>")),
        "{advisor_twiml}"
    );
    let (agent_sid, advisor_sid) = (
        agent_call["callSid"].as_str().unwrap().to_owned(),
        advisor_call["callSid"].as_str().unwrap().to_owned(),
    );
    let briefing: [(&str, Option<(&str, &str)>); 3] = [
        ("conference-start", None),
        ("participant-join", Some((&advisor_sid, "advisor"))),
        ("participant-join", Some((&agent_sid, "agent"))),
    ];
    conference_callbacks_twice(&app, &id, 1, &briefing);

    // Only the advisor who started it connects the client.
    let connect = format!("/warm-transfers/{id}/connect-client");
    let (status, body) = app.call("POST", &connect, Some(&app.token_of(&winner)), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let stranger = app.token(&app.id("other-advisor"), "advisor");
    let (status, body) = app.call("POST", &connect, Some(&stranger), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, connected) = app.call("POST", &connect, Some(&app.advisor()), None);
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["clientLeg"], "moved", "{connected}");
    assert_eq!(connected["advisorLeaves"], true, "{connected}");
    let moved = call_updates_until(&app, &client_call, "the client's call moved in", |u| {
        !u.is_empty()
    })
    .remove(0);
    assert!(
        moved.contains(r#"participantLabel="client""#)
            && moved.contains(&format!(">wt-{id}</Conference>")),
        "{moved}"
    );
    let out = call_updates_until(&app, &advisor_sid, "the advisor's leg taken out", |u| {
        !u.is_empty()
    });
    assert!(out[0].contains("<Hangup/>"), "{out:?}");

    let rest: [(&str, Option<(&str, &str)>); 4] = [
        ("participant-join", Some((&client_call, "client"))),
        ("participant-leave", Some((&advisor_sid, "advisor"))),
        ("participant-leave", Some((&agent_sid, "agent"))),
        ("conference-end", None),
    ];
    conference_callbacks_twice(&app, &id, 4, &rest);
    let outbox = app.outbox_until("the two introductions", |o| intro_sms(o).len() >= 2);
    let mut told = intro_sms(&outbox);
    told.sort();
    let mut expected = vec![late1.phone.clone(), late2.phone.clone()];
    expected.sort();
    assert_eq!(told, expected);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(intro_sms(&app.outbox()).len(), 2, "once each");
    let (status, again) = app.call("POST", &connect, Some(&app.advisor()), None);
    assert_eq!((status, error_code(&again)), (409, "completed"), "{again}");
}

/// WT-10: a leg that does not answer is texted to the advisor, once however often its status
/// is reported; the winner can still join on the line.
#[test]
fn wt_10_a_busy_winner_leg_tells_the_advisor_by_sms_once() {
    let app = spawn_app();
    let agents = transfer_agents(&app);
    let mut body = app.referral("warm_transfer", "seller");
    body["advisorPhone"] = app.advisor_phone().into();
    let started = app.create_referral(&body);
    let id = started["id"].as_str().unwrap().to_owned();
    let winner = agents
        .iter()
        .find(|a| a.id == ids(&started["offeredTo"])[0])
        .unwrap();
    assert!(won(&respond(&app, &id, winner, false, &app.sid("CA", 1))));
    let outbox = app.outbox_until("the call to the winner", |o| {
        leg_call_to(o, &winner.phone, "agent").is_some()
    });
    let call = leg_call_to(&outbox, &winner.phone, "agent").unwrap();
    let path = call["statusCallback"]
        .as_str()
        .unwrap()
        .strip_prefix(app.base())
        .unwrap()
        .to_owned();
    let sid = call["callSid"].as_str().unwrap();
    for _ in 0..2 {
        let (status, xml) = app.webhook(&path, &[("CallSid", sid), ("CallStatus", "busy")], None);
        assert_eq!(status, 200, "{xml}");
    }
    let busy = |o: &[Value]| {
        sms_to(o, &app.advisor_phone())
            .iter()
            .filter(|b| b.contains(&id) && b.contains("busy"))
            .count()
    };
    app.outbox_until("the advisor told", |o| busy(o) == 1);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(busy(&app.outbox()), 1);
    // The winner can still join by dialing the line with their code.
    let xml = line_call(&app, winner, &app.sid("CA", 2));
    assert!(xml.contains("<Conference"), "{xml}");
}

/// A transfer with the advisor's phone, won in the app; the advisor answers the system's call
/// and is in the conference; the winner's leg is busy (reported twice). Returns the transfer's
/// id, the winner, the advisor's call SID and the TwiML the advisor's call was updated with.
fn winner_leg_busy_with_the_advisor_on_the_call(app: &TestApp) -> (String, Agent, String, String) {
    let agents = transfer_agents(app);
    let mut body = app.referral("warm_transfer", "seller");
    body["advisorPhone"] = app.advisor_phone().into();
    let started = app.create_referral(&body);
    let id = started["id"].as_str().unwrap().to_owned();
    let winner = agents
        .iter()
        .find(|a| a.id == ids(&started["offeredTo"])[0])
        .unwrap()
        .clone();
    assert!(won(&respond(app, &id, &winner, false, &app.sid("CA", 1))));
    let outbox = app.outbox_until("the calls to the winner and the advisor", |o| {
        leg_call_to(o, &winner.phone, "agent").is_some()
            && leg_call_to(o, &app.advisor_phone(), "advisor").is_some()
    });
    let advisor_call = leg_call_to(&outbox, &app.advisor_phone(), "advisor")
        .unwrap()
        .clone();
    answer(app, &advisor_call, None);
    let advisor_sid = advisor_call["callSid"].as_str().unwrap().to_owned();
    conference_callback(
        app,
        &id,
        1,
        "participant-join",
        Some((&advisor_sid, "advisor")),
    );
    let agent_call = leg_call_to(&outbox, &winner.phone, "agent").unwrap();
    let status = agent_call["statusCallback"]
        .as_str()
        .unwrap()
        .strip_prefix(app.base())
        .unwrap()
        .to_owned();
    let sid = agent_call["callSid"].as_str().unwrap();
    for _ in 0..2 {
        let (code, xml) = app.webhook(&status, &[("CallSid", sid), ("CallStatus", "busy")], None);
        assert_eq!(code, 200, "{xml}");
    }
    let told = |what: &str| call_updates_until(app, &advisor_sid, what, |u| !u.is_empty());
    let twiml = told("the advisor told on their call").remove(0);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(told("the same").len(), 1, "told once");
    (id, winner, advisor_sid, twiml)
}

/// The webhook path of the `<Gather>` in `twiml` (its `action`, unescaped, without the base).
fn gather_action(app: &TestApp, twiml: &str) -> String {
    let action = twiml
        .split(r#"<Gather numDigits="1" action=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a one-key Gather: {twiml}"))
        .replace("&amp;", "&");
    action.strip_prefix(app.base()).unwrap().to_owned()
}

/// WT-10: the winner's leg is busy while the advisor is on their call in the conference: the
/// advisor hears it there, with the choice (1: call the agent again; 2: send the client to
/// routing), once, and is still texted; pressing 1, posted twice, calls the winner exactly once
/// more and returns the advisor to the conference.
#[test]
fn wt_10_a_busy_winner_leg_is_told_on_the_advisors_call_and_1_calls_the_winner_again_once() {
    let app = spawn_app();
    let (id, winner, advisor_sid, twiml) = winner_leg_busy_with_the_advisor_on_the_call(&app);
    assert!(
        twiml.contains("gave busy")
            && twiml.contains("Press 1")
            && twiml.contains("Press 2")
            && twiml.contains(r#"participantLabel="advisor""#),
        "{twiml}"
    );
    app.outbox_until("the advisor texted", |o| {
        sms_to(o, &app.advisor_phone())
            .iter()
            .any(|b| b.contains(&id) && b.contains("busy"))
    });
    let choice = gather_action(&app, &twiml);
    for _ in 0..2 {
        let (status, xml) = app.webhook(
            &choice,
            &[("CallSid", advisor_sid.as_str()), ("Digits", "1")],
            None,
        );
        assert_eq!(status, 200, "{xml}");
        assert!(
            xml.contains(r#"participantLabel="advisor""#)
                && xml.contains(&format!(">wt-{id}</Conference>")),
            "back to the call: {xml}"
        );
    }
    let winner_calls = |o: &[Value]| {
        o.iter()
            .filter(|e| {
                e["channel"] == "call"
                    && to(e) == winner.phone
                    && e["url"].as_str().unwrap_or("").ends_with("&leg=agent")
            })
            .count()
    };
    app.outbox_until("the winner called again", |o| winner_calls(o) == 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(winner_calls(&app.outbox()), 2, "exactly one new call");
}

/// WT-10, WT-6: the winner's leg is busy and the advisor presses 2 on their call, posted twice:
/// the winner is let go and told, and the client goes to ordinary routing once, the agents who
/// serve the area offered it once each.
#[test]
fn wt_10_pressing_2_sends_the_client_to_routing_once_even_when_posted_twice() {
    let app = spawn_app();
    let (id, winner, advisor_sid, twiml) = winner_leg_busy_with_the_advisor_on_the_call(&app);
    let choice = gather_action(&app, &twiml);
    for _ in 0..2 {
        let (status, xml) = app.webhook(
            &choice,
            &[("CallSid", advisor_sid.as_str()), ("Digits", "2")],
            None,
        );
        assert_eq!(status, 200, "{xml}");
        assert!(
            xml.contains(&format!("ordinary routing as referral {id}-routed"))
                && xml.contains("<Hangup/>"),
            "{xml}"
        );
    }
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert!(view["assignedAgentId"].is_null(), "{view}");
    assert_eq!(view["warmTransfer"]["outcome"], "not_connected", "{view}");
    let (status, routed) = app.call(
        "GET",
        &format!("/referrals/{id}-routed"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{routed}");
    assert_eq!(routed["program"], "routing", "{routed}");
    let offers = |o: &[Value]| {
        o.iter()
            .filter(|e| {
                e["channel"] == "sms" && e["body"].as_str().unwrap_or("").contains("Reply #")
            })
            .map(|e| to(e).to_owned())
            .collect::<Vec<_>>()
    };
    app.outbox_until("the routed offers and the winner told", |o| {
        !offers(o).is_empty()
            && sms_to(o, &winner.phone)
                .iter()
                .any(|b| b.contains("could not reach you"))
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut sent = offers(&app.outbox());
    let all = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), all, "one offer each: {sent:?}");
    assert_eq!(
        sms_to(&app.outbox(), &winner.phone)
            .iter()
            .filter(|b| b.contains("could not reach you"))
            .count(),
        1
    );
}

/// WT-6: a transfer nobody takes. When the window closes the advisor who started it is told and the client
/// goes to ordinary routing (every agent serving the zip, the one not opted in too); a response
/// after that is refused.
#[test]
fn wt_6_when_nobody_responds_the_advisors_are_told_and_the_client_is_routed() {
    let app = spawn_app_alone();
    let agents = transfer_agents(&app);
    let started = start_transfer(&app);
    let id = started["id"].as_str().unwrap().to_owned();
    app.advance(&format!("{}s", WINDOW_SECONDS + 5));
    let advisor = app.advisor_email();
    let outbox = app.outbox_until("the advisor told", |o| {
        o.iter()
            .any(|e| to(e) == advisor && e["body"].as_str().unwrap_or("").contains(&id))
    });
    let told = outbox
        .iter()
        .find(|e| to(e) == advisor && e["body"].as_str().unwrap_or("").contains(&id))
        .unwrap();
    assert!(
        told["body"]
            .as_str()
            .unwrap()
            .contains(&format!("{id}-routed")),
        "{told}"
    );
    let first_alerted = agents
        .iter()
        .find(|a| a.id == ids(&started["offeredTo"])[0])
        .unwrap();
    let late = line_call(&app, first_alerted, &app.sid("CA", 100));
    assert!(late.contains("has ended"), "{late}");
    let (status, body) = app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(first_alerted)),
        None,
    );
    assert_eq!(status, 409, "{body}");
    app.outbox_until("the routed offer to w6", |o| {
        sms_to(o, &agents[5].phone)
            .iter()
            .any(|b| b.contains("Reply #"))
    });
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["warmTransfer"]["outcome"], "timed_out", "{view}");
    assert_eq!(view["warmTransfer"]["responded"], 0, "{view}");
}

/// WT-12, WT-6: the window is a delayed message, kept to the second on the local clock: a second
/// before it closes nothing has happened; a second after, the transfer has timed out within 5
/// seconds of its end, and the advisor who started it is told by SMS at the phone they gave and
/// by email at their token's address, not at a shared desk.
#[test]
fn wt_12_the_window_closes_within_seconds_and_the_advisor_is_told_by_sms_and_email() {
    let app = spawn_app_alone();
    transfer_agents(&app);
    let mut body = app.referral("warm_transfer", "seller");
    body["advisorPhone"] = app.advisor_phone().into();
    let started = app.create_referral(&body);
    let id = started["id"].as_str().unwrap().to_owned();
    let end: jiff::Timestamp = started["warmTransfer"]["respondBy"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let told = |o: &[Value]| {
        o.iter()
            .filter(|e| {
                (to(e) == app.advisor_email() || to(e) == app.advisor_phone())
                    && e["body"].as_str().unwrap_or("").contains(&id)
            })
            .count()
    };
    let outcome = || {
        let (status, view) = app.call(
            "GET",
            &format!("/referrals/{id}"),
            Some(&app.advisor()),
            None,
        );
        assert_eq!(status, 200, "{view}");
        view["warmTransfer"]["outcome"].clone()
    };

    let early = app.advance_to(end - jiff::SignedDuration::from_secs(1));
    assert_eq!(early["fired"], json!([]), "{early}");
    // The clock also runs in real time: a second on, the window has closed whether this
    // advance fires it or the runner's own tick did.
    let second = end + jiff::SignedDuration::from_secs(1);
    let late = if app.now() < second {
        app.advance_to(second)
    } else {
        json!({"fired": []})
    };
    // Fired by this advance, it is over at once; fired by the runner's tick while the test was
    // slower than the clock, a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while outcome() != "timed_out" {
        assert!(
            std::time::Instant::now() < deadline,
            "the window did not close: {late}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let outbox = app.outbox_until("the advisor told by SMS and email", |o| told(o) == 2);
    // When it fired: as the advance reports it, or else when the advisor was told.
    let fired_at: jiff::Timestamp = match late["fired"].as_array().and_then(|f| f.first()) {
        Some(f) => f["at"].as_str().unwrap().parse().unwrap(),
        None => outbox
            .iter()
            .filter(|e| told(std::slice::from_ref(e)) == 1)
            .map(|e| e["at"].as_str().unwrap().parse().unwrap())
            .min()
            .unwrap(),
    };
    // Fired by the advance, its time is the timer's; seen only in the outbox, it is the time the
    // advisor's message was stamped, after the timer, the stream and the broadcast queue.
    let allowed = if late["fired"].as_array().is_some_and(|f| !f.is_empty()) {
        5
    } else {
        10
    };
    assert!(
        fired_at >= end && fired_at <= end + jiff::SignedDuration::from_secs(allowed),
        "fired at {fired_at}, the window ends at {end}"
    );
    assert!(
        outbox
            .iter()
            .any(|e| e["channel"] == "sms" && to(e) == app.advisor_phone()),
        "SMS to the advisor's phone"
    );
    assert!(
        outbox
            .iter()
            .any(|e| e["channel"] == "email" && to(e) == app.advisor_email()),
        "email to the advisor's address"
    );
    assert!(
        !outbox
            .iter()
            .any(|e| to(e) == ADVISORS_EMAIL && e["body"].as_str().unwrap_or("").contains(&id)),
        "not the shared desk"
    );
}
