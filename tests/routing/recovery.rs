//! Recovery and fairness (RC): daily caps, the advisors' queue and re-offers, the contact
//! deadline, duplicates offered first to the client's agent.

use super::*;

/// Saves bay's routing with cy, who takes sellers, capped at `cap` referrals a day.
fn cap_cy(app: &TestApp, bay: &Bay, cap: Value) -> (u16, Value) {
    let routing = json!({"enabled": true, "members": [
        {"agentId": bay.ben.id, "receives": "buyer"},
        {"agentId": bay.cy.id, "receives": "seller", "dailyCap": cap},
    ]});
    app.call(
        "PUT",
        &format!("/teams/{}/routing", bay.team),
        Some(&app.token_of(&bay.ana)),
        Some(&routing.to_string()),
    )
}

fn offered_to(app: &TestApp, bay: &Bay) -> Value {
    let mut body = app.referral("routing", "seller");
    body["teamId"] = bay.team.clone().into();
    app.create_referral(&body)["offeredTo"].clone()
}

/// RC-3: cy's cap of one a day: her second seller of the day goes to the fallback agent alone,
/// and the next day she is offered again. A cap out of range is refused and changes nothing.
#[test]
fn rc_3_an_agent_at_their_daily_cap_is_skipped() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let (status, saved) = cap_cy(&app, &bay, json!(1));
    assert_eq!(status, 200, "{saved}");
    for bad in [json!(0), json!(1001)] {
        let (status, refused) = cap_cy(&app, &bay, bad);
        assert_eq!(status, 400, "{refused}");
        assert_eq!(error_code(&refused), "bad_request");
    }
    let (_, read) = app.call(
        "GET",
        &format!("/teams/{}/routing", bay.team),
        Some(&app.token_of(&bay.ana)),
        None,
    );
    let cy = read["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["agentId"] == bay.cy.id.as_str())
        .unwrap();
    assert_eq!(cy["dailyCap"], 1, "{read}");

    assert_eq!(offered_to(&app, &bay), json!([bay.ana.id, bay.cy.id]));
    assert_eq!(offered_to(&app, &bay), json!([bay.ana.id]));
    app.advance("24h");
    assert_eq!(offered_to(&app, &bay), json!([bay.ana.id, bay.cy.id]));
}

/// The advisors' queue as the world's advisor reads it: the ids listed.
fn advisors_queue(app: &TestApp) -> Vec<String> {
    let (status, page) = app.call(
        "GET",
        "/referrals?status=unassigned",
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The advisor's email and text about referral `id`, once both have arrived.
fn advisor_told(app: &TestApp, id: &str) -> Vec<Value> {
    let (email, phone) = (app.advisor_email(), app.advisor_phone());
    let outbox = app.outbox_until("the advisor told by email and text", |o| {
        [&email, &phone].iter().all(|address| {
            o.iter()
                .any(|e| to(e) == address.as_str() && e["body"].as_str().unwrap_or("").contains(id))
        })
    });
    outbox
        .into_iter()
        .filter(|e| to(e) == email || to(e) == phone)
        .collect()
}

/// RC-2: the team lead declines a referral for the team: it lands in the advisors' queue, and
/// the advisor who created it is told at once by email and text, without the client's contacts.
#[test]
fn rc_2_a_team_wide_decline_lands_in_the_advisors_queue_and_the_advisor_is_told() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = bay.team.clone().into();
    body["advisorPhone"] = app.advisor_phone().into();
    let id = app.create_referral(&body)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(advisors_queue(&app).is_empty());
    let (status, declined) = app.call(
        "POST",
        &format!("/referrals/{id}/decline"),
        Some(&app.token_of(&bay.ana)),
        Some(r#"{"forTeam": true}"#),
    );
    assert_eq!(status, 200, "{declined}");
    let told = advisor_told(&app, &id);
    assert_eq!(told.len(), 2, "told once on each channel: {told:#?}");
    for message in &told {
        let text = message["body"].as_str().unwrap();
        assert!(text.contains("every agent declined it"), "{text}");
        assert!(!text.contains(&app.client.phone) && !text.contains(&app.client.email));
    }
    assert_eq!(advisors_queue(&app), [id]);
    let (status, refused) = app.call(
        "GET",
        "/referrals?status=unassigned",
        Some(&app.token_of(&bay.ana)),
        None,
    );
    assert_eq!(status, 403, "the queue is the advisors': {refused}");
}

/// RC-2: an offer nobody claims within 24 hours lands in the advisors' queue, and its advisor is
/// told; one claimed in time never does.
#[test]
fn rc_2_an_offer_unclaimed_for_24_hours_lands_in_the_advisors_queue() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let idle = bay.referral(&app, "seller");
    let taken = bay.referral(&app, "seller");
    let (status, claimed) = app.call(
        "POST",
        &format!("/referrals/{taken}/claim"),
        Some(&app.token_of(&bay.cy)),
        None,
    );
    assert_eq!(status, 200, "{claimed}");
    app.advance("23h");
    assert!(advisors_queue(&app).is_empty());
    app.advance("1h");
    assert_eq!(advisors_queue(&app), std::slice::from_ref(&idle));
    let email = app.advisor_email();
    let outbox = app.outbox_until("the advisor emailed", |o| o.iter().any(|e| to(e) == email));
    let told: Vec<&Value> = outbox.iter().filter(|e| to(e) == email).collect();
    assert_eq!(told.len(), 1, "{told:#?}");
    let text = told[0]["body"].as_str().unwrap();
    assert!(text.contains(&idle) && text.contains("nobody claimed it within 24 hours"));
}

/// Sets the team's contact deadline (RC-1) as its lead; answers the status and body.
fn contact_deadline(app: &TestApp, bay: &Bay, minutes: Value) -> (u16, Value) {
    app.call(
        "PUT",
        &format!("/teams/{}/routing", bay.team),
        Some(&app.token_of(&bay.ana)),
        Some(&json!({"enabled": true, "contactDeadlineMinutes": minutes}).to_string()),
    )
}

/// A seller referral of the team with a 30-minute contact deadline, claimed by cy in the app;
/// returns its id once the claim's follow-up (its email to cy, which starts the deadline with it)
/// is done.
fn claimed_by_cy_with_a_deadline(app: &TestApp, bay: &Bay) -> String {
    let (status, saved) = contact_deadline(app, bay, json!(30));
    assert_eq!(
        (status, &saved["contactDeadlineMinutes"]),
        (200, &json!(30)),
        "{saved}"
    );
    let id = bay.referral(app, "seller");
    let (status, claimed) = app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(&bay.cy)),
        None,
    );
    assert_eq!(status, 200, "{claimed}");
    app.outbox_until("the claim's email to cy", |o| {
        o.iter().any(|e| {
            to(e) == bay.cy.email && e["subject"].as_str().unwrap_or("").contains("new referral")
        })
    });
    id
}

/// Whether the clock's answer says a contact deadline fired on the way.
fn deadline_fired(advanced: &Value) -> bool {
    advanced["fired"].as_array().is_some_and(|f| {
        f.iter()
            .any(|f| f["schedule"].as_str().unwrap_or("").starts_with("contact-"))
    })
}

fn taken_back_notice(e: &Value) -> bool {
    e["body"].as_str().unwrap_or("").contains("taken back")
}

/// RC-1: with a 30-minute contact deadline, cy claims and records nothing: at the deadline the
/// referral is taken back, cy is told why by SMS and push (without the client's contacts) and can
/// neither see nor claim it again; ana, offered it again, claims it; the history shows the
/// take-back. A deadline out of 5 to 240 minutes is refused and changes nothing.
#[test]
fn rc_1_an_idle_winner_loses_the_referral_at_the_deadline_and_the_next_member_claims_it() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let id = claimed_by_cy_with_a_deadline(&app, &bay);
    for bad in [json!(4), json!(241)] {
        let (status, refused) = contact_deadline(&app, &bay, bad);
        assert_eq!(
            (status, error_code(&refused)),
            (400, "bad_request"),
            "{refused}"
        );
    }
    let (_, read) = app.call(
        "GET",
        &format!("/teams/{}/routing", bay.team),
        Some(&app.token_of(&bay.ana)),
        None,
    );
    assert_eq!(read["contactDeadlineMinutes"], 30, "{read}");

    app.advance("29m");
    let cy_view = |app: &TestApp| {
        app.call(
            "GET",
            &format!("/referrals/{id}"),
            Some(&app.token_of(&bay.cy)),
            None,
        )
    };
    let (status, seen) = cy_view(&app);
    assert_eq!(
        (status, &seen["assignedAgentId"]),
        (200, &json!(bay.cy.id)),
        "{seen}"
    );
    let fired = app.advance("2m");
    assert!(deadline_fired(&fired), "{fired}");
    let outbox = app.outbox_until("cy told by SMS and push, ana offered again", |o| {
        o.iter()
            .any(|e| e["channel"] == "sms" && to(e) == bay.cy.phone && taken_back_notice(e))
            && o.iter()
                .any(|e| e["channel"] == "push" && to(e) == bay.cy.device && taken_back_notice(e))
            && sms_to(o, &bay.ana.phone)
                .iter()
                .any(|b| b.starts_with("Offered again"))
    });
    let notices: Vec<&Value> = outbox.iter().filter(|e| taken_back_notice(e)).collect();
    assert_eq!(notices.len(), 2, "{notices:#?}");
    for n in &notices {
        let text = n["body"].as_str().unwrap();
        assert!(
            text.contains("no contact was recorded within 30 minutes"),
            "{text}"
        );
        assert!(!text.contains(&app.client.phone) && !text.contains(&app.client.email));
    }
    let (status, seen) = cy_view(&app);
    assert_eq!(status, 403, "cy no longer sees the client: {seen}");
    let claim = |agent: &Agent| {
        app.call(
            "POST",
            &format!("/referrals/{id}/claim"),
            Some(&app.token_of(agent)),
            None,
        )
    };
    let (status, refused) = claim(&bay.cy);
    assert_eq!(status, 403, "{refused}");
    let (status, claimed) = claim(&bay.ana);
    assert_eq!(status, 200, "{claimed}");
    let (status, seen) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.token_of(&bay.ana)),
        None,
    );
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["assignedAgentId"], bay.ana.id.as_str(), "{seen}");
    assert!(
        seen["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["type"] == "taken_back"
                && h["agentId"] == bay.cy.id.as_str()
                && h["reason"] == "no_contact"),
        "{seen}"
    );
    // Ana's own claim starts her deadline: it fires once for her, never again for cy.
    app.outbox_until("the claim's email to ana", |o| {
        o.iter().any(|e| {
            to(e) == bay.ana.email && e["subject"].as_str().unwrap_or("").contains("new referral")
        })
    });
}

/// RC-1: cy moves the stage before the deadline: the deadline passes and the referral stays
/// hers, and nobody is told anything.
#[test]
fn rc_1_a_winner_who_moves_the_stage_before_the_deadline_keeps_the_referral() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let id = claimed_by_cy_with_a_deadline(&app, &bay);
    app.advance("20m");
    let (status, moved) = app.call(
        "POST",
        &format!("/referrals/{id}/stage"),
        Some(&app.token_of(&bay.cy)),
        Some(r#"{"stage": "connected"}"#),
    );
    assert_eq!(status, 200, "{moved}");
    let fired = app.advance("15m");
    assert!(deadline_fired(&fired), "the deadline came: {fired}");
    let (status, seen) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.token_of(&bay.cy)),
        None,
    );
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["assignedAgentId"], bay.cy.id.as_str(), "{seen}");
    assert!(
        !seen["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["type"] == "taken_back"),
        "{seen}"
    );
    assert!(!app.outbox().iter().any(taken_back_notice));
}

/// Team `bay` of three where every member takes buyers and sellers: ana leads it (the fallback
/// agent); ben claims a referral of the world's client. Answers the team and the claimed id.
fn client_of_ben(app: &TestApp) -> (String, [Agent; 3], String) {
    let [ana, ben, cy] = app.agents(["ana", "ben", "cy"]);
    let team = app.create_team("bay", &ana, &[&ben, &cy]);
    app.route(&team, &ana, &[(&ben, "both"), (&cy, "both")]);
    let mut body = app.referral("routing", "seller");
    body["teamId"] = team.clone().into();
    let first = app.create_referral(&body);
    assert_eq!(first.get("duplicateOf"), None, "{first}");
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(claim_as(app, &first_id, &ben).0, 200);
    (team, [ana, ben, cy], first_id)
}

fn claim_as(app: &TestApp, id: &str, agent: &Agent) -> (u16, Value) {
    app.call(
        "POST",
        &format!("/referrals/{id}/claim"),
        Some(&app.token_of(agent)),
        None,
    )
}

/// The same client again, their phone and email written differently, for `team`.
fn same_client_again(app: &TestApp, team: &str) -> Value {
    let mut body = app.referral("routing", "buyer");
    body["teamId"] = team.into();
    let digits = app.client.phone.trim_start_matches("+1");
    body["client"]["phone"] =
        format!("+1 ({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]).into();
    body["client"]["email"] = app.client.email.to_uppercase().into();
    app.create_referral(&body)
}

/// RC-4: the same client again within 60 days (phone and email written differently): the
/// advisor is shown `duplicateOf`, in the answer and in the referral's view and history; ben,
/// who has the client, is offered it first, with ana (the fallback agent, LR-4); cy only once
/// the clock passes five minutes.
#[test]
fn rc_4_a_duplicate_client_is_offered_to_their_agent_first() {
    let app = spawn_app_alone();
    let (team, [ana, ben, cy], first_id) = client_of_ben(&app);
    let again = same_client_again(&app, &team);
    assert_eq!(again["duplicateOf"], first_id.as_str(), "{again}");
    let mut first_look = vec![ana.id.clone(), ben.id.clone()];
    first_look.sort();
    assert_eq!(again["offeredTo"], json!(first_look), "{again}");
    let id = again["id"].as_str().unwrap().to_owned();
    let (status, seen) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(
        (status, &seen["duplicateOf"]),
        (200, &json!(first_id)),
        "{seen}"
    );
    assert_eq!(seen["history"][0]["type"], "created", "{seen}");
    assert_eq!(
        seen["history"][0]["duplicateOf"],
        first_id.as_str(),
        "{seen}"
    );
    let outbox = app.outbox_until("the first look's offers", |o| {
        offers(o, &ben).len() >= 2 && offers(o, &ana).len() >= 2
    });
    assert_eq!(
        offers(&outbox, &cy).len(),
        1,
        "cy has only the first referral's offer"
    );
    let (status, refused) = claim_as(&app, &id, &cy);
    assert_eq!(status, 403, "not offered to cy yet: {refused}");

    app.advance("4m");
    assert_eq!(
        offers(&app.outbox(), &cy).len(),
        1,
        "still ben's alone at 4 minutes"
    );
    app.advance("1m");
    let outbox = app.outbox_until("the offer to cy after the first look", |o| {
        offers(o, &cy).len() >= 2
    });
    assert_eq!(offers(&outbox, &cy).len(), 2);
    assert_eq!(claim_as(&app, &id, &cy).0, 200);
}

/// RC-4: when the agent who has the client claims the duplicate within its five minutes, the
/// rest of the team never hears of it.
#[test]
fn rc_4_a_duplicate_claimed_by_their_agent_within_5_minutes_never_reaches_the_others() {
    let app = spawn_app_alone();
    let (team, [_ana, ben, cy], first_id) = client_of_ben(&app);
    let again = same_client_again(&app, &team);
    assert_eq!(again["duplicateOf"], first_id.as_str(), "{again}");
    let id = again["id"].as_str().unwrap().to_owned();
    app.advance("2m");
    assert_eq!(claim_as(&app, &id, &ben).0, 200);
    app.advance("10m");
    // The offers ben and the fallback agent were due are out: the timer has long fired.
    app.outbox_until("ben's offer of the duplicate", |o| {
        offers(o, &ben).len() >= 2
    });
    assert_eq!(
        offers(&app.outbox(), &cy).len(),
        1,
        "only the first referral's offer"
    );
    let (status, refused) = claim_as(&app, &id, &cy);
    assert_eq!((status, error_code(&refused)), (409, "taken"), "{refused}");
}

/// The referral `program` nobody can take, from the advisor with their phone: answered 201.
fn nobody_can_take(app: &TestApp, program: &str) -> Value {
    let mut body = app.referral(program, "seller");
    body["advisorPhone"] = app.advisor_phone().into();
    let created = app.create_referral(&body);
    assert_eq!(created["offeredTo"], json!([]), "{created}");
    assert!(created["unassignedSince"].is_string(), "{created}");
    created
}

/// RC-2: a pay-per-lead or warm-transfer referral nobody can take (no subscriber, nobody
/// opted in) is stored all the same: it lands in the advisors' queue and the advisor is told.
#[test]
fn rc_2_a_pay_per_lead_or_warm_transfer_referral_nobody_can_take_lands_in_the_advisors_queue() {
    let app = spawn_app_alone();
    for program in ["ppl", "warm_transfer"] {
        let id = nobody_can_take(&app, program)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let told = advisor_told(&app, &id);
        assert!(
            told.iter().all(|m| m["body"]
                .as_str()
                .unwrap()
                .contains("no agent could be offered it")),
            "{told:#?}"
        );
        assert!(advisors_queue(&app).contains(&id), "{program}");
    }
}

/// A re-offer of `queued` to `team` as its advisor sends it, without the client.
/// The queued referral as its advisor sees it, and its history's `reoffered` entries.
fn reoffers_of(app: &TestApp, queued: &str) -> (Value, Vec<Value>) {
    let (status, old) = app.call(
        "GET",
        &format!("/referrals/{queued}"),
        Some(&app.advisor()),
        None,
    );
    assert_eq!(status, 200, "{old}");
    let reoffers = old["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["type"] == "reoffered")
        .cloned()
        .collect();
    (old, reoffers)
}

fn reoffer(app: &TestApp, queued: &str, team: &str, key: &str) -> (u16, Value) {
    let mut body = app.referral("routing", "seller");
    body.as_object_mut().unwrap().remove("client");
    body["teamId"] = team.into();
    body["reofferOf"] = queued.into();
    let token = format!("Bearer {}", app.advisor());
    let (status, _, text) = app.request(
        "POST",
        "/referrals",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &token),
            ("Idempotency-Key", key),
        ],
        &body.to_string(),
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// RC-2: an advisor re-offers a queued pay-per-lead referral to a team: a new referral linked
/// to it, with its client; the queued one leaves the queue with the re-offer in its history,
/// once (a retry answers the same referral, another re-offer is refused), and the team's
/// member claims the client.
#[test]
fn rc_2_an_advisor_reoffers_a_queued_referral_to_another_team_once() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let queued = nobody_can_take(&app, "ppl")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(advisors_queue(&app), std::slice::from_ref(&queued));
    let (status, created) = reoffer(&app, &queued, &bay.team, "reoffer-1");
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["reofferOf"], queued.as_str(), "{created}");
    assert_eq!(created.get("duplicateOf"), None, "{created}");
    let mut offered = vec![bay.ana.id.clone(), bay.cy.id.clone()];
    offered.sort();
    assert_eq!(created["offeredTo"], json!(offered), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(advisors_queue(&app).is_empty());
    let (old, reoffers) = reoffers_of(&app, &queued);
    assert_eq!(reoffers.len(), 1, "{old}");
    assert_eq!(reoffers[0]["referralId"], id.as_str(), "{old}");

    let (status, again) = reoffer(&app, &queued, &bay.team, "reoffer-1");
    assert_eq!((status, &again["id"]), (200, &json!(id)), "{again}");
    let (status, refused) = reoffer(&app, &queued, &bay.team, "reoffer-2");
    assert_eq!(
        (status, error_code(&refused)),
        (409, "not_in_queue"),
        "{refused}"
    );

    assert_eq!(claim_as(&app, &id, &bay.cy).0, 200);
    let (status, mine) = app.call(
        "GET",
        &format!("/referrals/{id}"),
        Some(&app.token_of(&bay.cy)),
        None,
    );
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["client"]["phone"], app.client.phone.as_str(), "{mine}");
}

/// RC-2: two advisors' re-offers of one queued referral at the same instant: one is stored, the
/// other is refused with 409 `not_in_queue`, and the queued one names the one stored.
#[test]
fn rc_2_two_reoffers_of_one_queued_referral_at_once_store_one() {
    let app = spawn_app_alone();
    let bay = bay_team(&app);
    let queued = nobody_can_take(&app, "ppl")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["race-a", "race-b"]
            .into_iter()
            .map(|key| {
                let (app, queued, team) = (&app, &queued, &bay.team);
                scope.spawn(move || reoffer(app, queued, team, key))
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{answers:#?}");
    let (_, won) = answers.iter().find(|(s, _)| *s == 201).unwrap();
    let (_, lost) = answers.iter().find(|(s, _)| *s == 409).unwrap();
    assert_eq!(error_code(lost), "not_in_queue", "{lost}");
    let (old, reoffers) = reoffers_of(&app, &queued);
    assert_eq!(reoffers.len(), 1, "{old}");
    assert_eq!(reoffers[0]["referralId"], won["id"], "{old}");
}
