//! The closing documents as the bus delivers them: on each entry into In Escrow, once, to the
//! agent and closings, with the fee under the agent's agreement (none for pay per lead); and
//! who may move a referral out of escrow.

use serde_json::{Value, json};

use super::{By, bay_team, history, in_escrow, ppl_buyer_of_cy, stage_path};
use crate::harness::{Agent, CLOSINGS_EMAIL, TestApp, spawn_app};

/// The closing documents for `id`'s escrow entry `entry`, one per recipient.
fn documents<'a>(outbox: &'a [Value], id: &str, entry: u32) -> Vec<&'a Value> {
    let file = json!([format!("closing-documents-{id}-{entry}.pdf")]);
    outbox
        .iter()
        .filter(|m| m["channel"] == "email" && m["attachments"] == file)
        .collect()
}

/// Waits for entry `entry`'s documents to reach the agent and closings, and returns the text.
fn wait_for_documents(app: &TestApp, id: &str, entry: u32, agent: &Agent) -> String {
    let outbox = app.outbox_until("the closing documents", |o| {
        documents(o, id, entry).len() >= 2
    });
    let docs = documents(&outbox, id, entry);
    let mut to: Vec<&str> = docs.iter().filter_map(|m| m["to"].as_str()).collect();
    to.sort_unstable();
    let mut expected = vec![agent.email.as_str(), CLOSINGS_EMAIL];
    expected.sort_unstable();
    assert_eq!(to, expected, "{docs:#?}");
    assert!(
        docs[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Closing documents: Casey Client ({id})")),
        "{}",
        docs[0]
    );
    docs[0]["body"].as_str().unwrap().to_owned()
}

/// ST-4: In Escrow needs a sale price and a close date.
#[test]
fn st_4_in_escrow_needs_a_sale_price_and_a_close_date() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let id = bay.seller_of_ana(&app);
    for body in [
        json!({"stage": "in_escrow", "closeDate": "2030-03-01"}),
        json!({"stage": "in_escrow", "salePrice": "800000"}),
    ] {
        app.refused(
            (ana, "POST", &stage_path(&id), Some(body)),
            422,
            "missing_field",
        );
    }
    let v = app.stage(ana, &id, in_escrow("800000", "2030-03-01"));
    assert_eq!(v["stage"], "in_escrow", "{v}");
}

/// ES-1: on entry into In Escrow the closing documents (a PDF) go to the agent with a copy to
/// closings, stating the client, the sale, the close date and the fee under the agent's 25%
/// agreement.
#[test]
fn es_1_the_closing_documents_go_to_the_agent_and_closings_with_the_fee() {
    let app = spawn_app();
    let bay = bay_team(&app);
    bay.agreement(&app, &bay.ana, 25);
    let id = bay.seller_of_ana(&app);
    app.stage(By::Agent(&bay.ana), &id, in_escrow("800000", "2030-03-01"));
    let text = wait_for_documents(&app, &id, 1, &bay.ana);
    for line in [
        "Client: Casey Client",
        "Sale price: $800000.00",
        "Close date: 2030-03-01",
        "Referral fee: $200000.00 (25% of the sale price)",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
}

/// ES-2: the same StageChanged event delivered again sends no second set of documents.
#[test]
fn es_2_a_redelivered_escrow_event_sends_nothing() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let id = bay.seller_of_ana(&app);
    app.stage(By::Agent(&bay.ana), &id, in_escrow("800000", "2030-03-01"));
    wait_for_documents(&app, &id, 1, &bay.ana);
    let again = app.invoke(
        "escrow-docs",
        &json!({
            "version": "0", "id": "redelivered", "source": "referrals",
            "detail-type": "StageChanged", "account": "123456789012", "region": "us-east-1",
            "time": app.now(), "resources": [],
            "detail": {"referralId": id, "from": "left_voicemail", "to": "in_escrow", "escrowEntry": 1}
        }),
    );
    assert_eq!(again["sent"], false, "{again}");
    assert_eq!(documents(&app.outbox(), &id, 1).len(), 2);
}

/// ST-7: only the closings team moves a referral out of escrow, a seller back to Listing and a
/// buyer back to Making an Offer.
#[test]
fn st_7_only_closings_move_a_referral_out_of_in_escrow() {
    let app = spawn_app();
    let bay = bay_team(&app);
    let ana = By::Agent(&bay.ana);
    let seller = bay.seller_of_ana(&app);
    app.stage(ana, &seller, in_escrow("800000", "2030-03-01"));
    app.refused(
        (
            ana,
            "POST",
            &stage_path(&seller),
            Some(json!({"stage": "listing"})),
        ),
        403,
        "forbidden",
    );
    let correction = format!("/referrals/{seller}/correction");
    app.refused(
        (ana, "POST", &correction, Some(json!({"stage": "listing"}))),
        403,
        "forbidden",
    );
    app.refused(
        (
            By::Closings,
            "POST",
            &correction,
            Some(json!({"stage": "making_an_offer"})),
        ),
        422,
        "invalid_stage",
    );
    let v = app.ok(
        By::Closings,
        "POST",
        &correction,
        Some(json!({"stage": "listing"})),
    );
    assert_eq!(v["stage"], "listing", "{v}");

    let buyer = bay.buyer_of_ben(&app);
    app.stage(
        By::Agent(&bay.ben),
        &buyer,
        in_escrow("500000", "2030-02-01"),
    );
    let v = app.ok(
        By::Closings,
        "POST",
        &format!("/referrals/{buyer}/correction"),
        Some(json!({"stage": "making_an_offer"})),
    );
    assert_eq!(v["stage"], "making_an_offer", "{v}");
}

/// ST-4, ES-2: each entry into In Escrow sends its own set of documents, with its own figures,
/// once; both are kept in the history with their fees.
#[test]
fn st_4_each_entry_into_escrow_sends_its_own_documents_once() {
    let app = spawn_app();
    let bay = bay_team(&app);
    bay.agreement(&app, &bay.ana, 25);
    let ana = By::Agent(&bay.ana);
    let id = bay.seller_of_ana(&app);
    app.stage(ana, &id, in_escrow("800000", "2030-03-01"));
    wait_for_documents(&app, &id, 1, &bay.ana);
    app.ok(
        By::Closings,
        "POST",
        &format!("/referrals/{id}/correction"),
        Some(json!({"stage": "listing"})),
    );
    app.stage(ana, &id, in_escrow("780000", "2030-04-01"));
    let text = wait_for_documents(&app, &id, 2, &bay.ana);
    assert!(
        text.contains("Sale price: $780000.00")
            && text.contains("Referral fee: $195000.00 (25% of the sale price)"),
        "{text}"
    );
    let outbox = app.outbox();
    assert_eq!(documents(&outbox, &id, 1).len(), 2, "entry 1 still once");
    assert_eq!(documents(&outbox, &id, 2).len(), 2);
    let v = app.view(By::Closings, &id);
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

/// ST-9: a referral back from Failed still owes its fee: its closing documents state the fee
/// under Ben's 30% agreement.
#[test]
fn st_9_a_referral_back_from_failed_still_owes_its_fee() {
    let app = spawn_app();
    let bay = bay_team(&app);
    bay.agreement(&app, &bay.ben, 30);
    let ben = By::Agent(&bay.ben);
    let id = bay.buyer_of_ben(&app);
    app.stage(ben, &id, json!({"stage": "making_an_offer"}));
    app.stage(
        ben,
        &id,
        json!({"stage": "failed", "failReason": "unresponsive"}),
    );
    app.stage(ben, &id, json!({"stage": "making_an_offer"}));
    app.stage(ben, &id, in_escrow("500000", "2030-02-01"));
    let text = wait_for_documents(&app, &id, 1, &bay.ben);
    assert!(
        text.contains("Referral fee: $150000.00 (30% of the sale price)"),
        "{text}"
    );
}

/// PPL-6: a pay-per-lead referral owes no referral fee at closing: its documents say so.
#[test]
fn ppl_6_a_pay_per_lead_closing_owes_no_referral_fee() {
    let app = spawn_app();
    let cy = app.agents(["cy"])[0].clone();
    let id = ppl_buyer_of_cy(&app, &cy);
    app.stage(By::Agent(&cy), &id, in_escrow("650000", "2030-05-01"));
    let text = wait_for_documents(&app, &id, 1, &cy);
    assert!(text.contains("Referral fee: none (pay per lead)"), "{text}");
}
