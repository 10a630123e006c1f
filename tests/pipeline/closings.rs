//! The closings desk (RC-5): referrals in escrow and closed, each with the fee its closing owes,
//! the same fee the referral view and the closing documents state (ST-9, PPL-6).

use serde_json::json;

use super::{Bay, By, bay_team, in_escrow, ppl_buyer_of_cy};
use crate::harness::{TestApp, error_code, spawn_app};

/// Every page of the desk's list (`query` like `?stage=closed`), this world's referrals only:
/// the desk lists the whole table, which other tests share.
fn desk(app: &TestApp, query: &str, ours: &[&str]) -> Vec<(String, String, String)> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if query.is_empty() { "?" } else { "&" };
        let mut path = format!("/closings/referrals{query}{sep}limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.ok(By::Closings, "GET", &path, None);
        for item in page["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            if ours.contains(&id) {
                items.push((
                    id.to_owned(),
                    item["stage"].as_str().unwrap().to_owned(),
                    item["feeOwed"].as_str().unwrap_or("none").to_owned(),
                ));
            }
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    items.sort();
    items
}

/// Ana's seller in escrow at $400,000 under her 25%; Ben's buyer in escrow at $500,000, failed,
/// then closed under his 30% (ST-9); Cy's pay-per-lead buyer closed (PPL-6); Ana's second seller
/// closed and paid. Returns their ids in that order.
fn closings_world(app: &TestApp, bay: &Bay) -> [String; 4] {
    bay.agreement(app, &bay.ana, 25);
    bay.agreement(app, &bay.ben, 30);
    let ana = By::Agent(&bay.ana);
    let escrowed = bay.seller_of_ana(app);
    app.stage(ana, &escrowed, in_escrow("400000", "2030-02-01"));
    let paid = bay.seller_of_ana(app);
    app.stage(ana, &paid, in_escrow("300000", "2030-02-01"));
    app.stage(ana, &paid, json!({"stage": "closed"}));
    app.ok(
        By::Closings,
        "POST",
        &format!("/referrals/{paid}/payment"),
        None,
    );
    let ben = By::Agent(&bay.ben);
    let revived = bay.buyer_of_ben(app);
    app.stage(ben, &revived, in_escrow("500000", "2030-02-01"));
    app.stage(
        ben,
        &revived,
        json!({"stage": "failed", "failReason": "unresponsive"}),
    );
    app.stage(ben, &revived, json!({"stage": "closed"}));
    let cy = By::Agent(&bay.cy);
    let ppl = ppl_buyer_of_cy(app, &bay.cy);
    app.stage(cy, &ppl, in_escrow("650000", "2030-05-01"));
    app.stage(cy, &ppl, json!({"stage": "closed"}));
    [escrowed, revived, ppl, paid]
}

/// RC-5, ST-9: the closings team's list holds the referrals in escrow and closed awaiting
/// payment, each with its fee: the agreement's percent of the sale price, none for pay per lead,
/// still owed after a Failed; `?stage=closed` adds Closed-Paid. The referral view states the
/// same fee.
#[test]
fn rc_5_st_9_the_closings_list_shows_each_fee_owed_including_a_failed_then_closed_referral() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let [escrowed, revived, ppl, paid] = closings_world(&app, &bay);
    let ours = [
        escrowed.as_str(),
        revived.as_str(),
        ppl.as_str(),
        paid.as_str(),
    ];
    let row = |id: &str, stage: &str, fee: &str| (id.to_owned(), stage.to_owned(), fee.to_owned());
    let mut work = vec![
        row(&escrowed, "in_escrow", "100000.00"),
        row(&revived, "closed", "150000.00"),
        row(&ppl, "closed", "0.00"),
    ];
    work.sort();
    assert_eq!(desk(&app, "", &ours), work);
    assert_eq!(
        desk(&app, "?stage=in_escrow", &ours),
        vec![row(&escrowed, "in_escrow", "100000.00")]
    );
    let mut closed = vec![
        row(&revived, "closed", "150000.00"),
        row(&ppl, "closed", "0.00"),
        row(&paid, "closed_paid", "75000.00"),
    ];
    closed.sort();
    assert_eq!(desk(&app, "?stage=closed", &ours), closed);
    let view = app.view(By::Closings, &revived);
    assert_eq!(view["feeOwed"], "150000.00", "{view}");
}

/// RC-5, GEN-4: the desk is the closings team's; an agent is refused, and an unknown stage or
/// a limit out of bounds is a 400.
#[test]
fn rc_5_only_closings_read_the_desk_and_bad_filters_are_refused() {
    let app = spawn_app();
    let ana = app.agents(["ana"])[0].clone();
    let (status, body) = app.call_by(By::Agent(&ana), "GET", "/closings/referrals", None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    for query in [
        "?stage=listing",
        "?limit=0",
        "?limit=201",
        "?cursor=nonsense",
    ] {
        let (status, body) = app.call_by(
            By::Closings,
            "GET",
            &format!("/closings/referrals{query}"),
            None,
        );
        assert_eq!(
            (status, error_code(&body)),
            (400, "bad_request"),
            "{query}: {body}"
        );
    }
}

/// API.md, RC-5: an agent's `?stage=closed` lists Closed and Closed-Paid together.
#[test]
fn rc_5_an_agents_closed_list_holds_closed_and_closed_paid() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let closed = bay.seller_of_ana(&app);
    app.stage(ana, &closed, json!({"stage": "closed"}));
    let paid = bay.seller_of_ana(&app);
    app.stage(ana, &paid, json!({"stage": "closed"}));
    app.ok(
        By::Closings,
        "POST",
        &format!("/referrals/{paid}/payment"),
        None,
    );
    let list = app.ok(
        ana,
        "GET",
        &format!("/agents/{}/referrals?stage=closed", bay.ana.id),
        None,
    );
    let mut got: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["stage"].as_str().unwrap()))
        .collect();
    got.sort_unstable();
    let mut want = vec![(closed.as_str(), "closed"), (paid.as_str(), "closed_paid")];
    want.sort_unstable();
    assert_eq!(got, want);
}
