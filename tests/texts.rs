//! Texts and identity (TX): who a phone number identifies, texts both ways, opt-outs, and the
//! bounds on guessing.

use serde_json::json;

use crate::harness::{error_code, spawn_app};

/// TX-3: a number another agent proved is refused to a second agent, however it is written:
/// saved in a profile, or offered for verification (409 `phone_taken`), and nothing is texted
/// to it for the second agent.
#[test]
fn tx_3_a_second_agent_is_refused_a_verified_number() {
    let app = spawn_app();
    let [ana] = app.agents(["ana"]);
    let mallory = app.agent("mallory");
    // The same number as ana's, written the way people write it.
    let digits = &ana.phone[2..];
    let written = format!("+1 ({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]);
    let mut profile = app.profile(&mallory);
    profile["cellPhone"] = written.clone().into();
    let (status, body) = app.call(
        "PUT",
        &format!("/agents/{}", mallory.id),
        Some(&app.token_of(&mallory)),
        Some(&profile.to_string()),
    );
    assert_eq!((status, error_code(&body)), (409, "phone_taken"), "{body}");
    let texts_before = app.outbox().len();
    let (status, body) = app.call(
        "POST",
        &format!("/agents/{}/phone-verification", mallory.id),
        Some(&app.token_of(&mallory)),
        Some(&json!({"phone": written}).to_string()),
    );
    assert_eq!((status, error_code(&body)), (409, "phone_taken"), "{body}");
    assert_eq!(
        app.outbox().len(),
        texts_before,
        "no code texted for mallory"
    );
    // Mallory's profile was never saved.
    let (status, _) = app.call(
        "PUT",
        &format!("/agents/{}/vacation", mallory.id),
        Some(&app.token_of(&mallory)),
        Some(r#"{"start": "2027-01-01", "end": "2027-01-02"}"#),
    );
    assert_eq!(status, 404);
}

/// TX-3: a number saved in a profile but never proved identifies nobody: a call to the PIN line
/// from it is turned away politely and asked for nothing.
#[test]
fn tx_3_an_unverified_number_identifies_nobody_on_the_pin_line() {
    let app = spawn_app();
    let dee = app.agent("dee");
    app.save_profile(&dee, &app.profile(&dee));
    let sid = app.sid("CA", 1);
    let call = [("From", dee.phone.as_str()), ("CallSid", sid.as_str())];
    let (status, xml) = app.webhook("/twilio/voice/pin", &call, None);
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("a phone you verified"), "{xml}");
    assert!(!xml.contains("<Gather"), "{xml}");
}

/// TX-3: a number is written in international form, and one no country issues is refused.
#[test]
fn tx_3_a_number_no_country_issues_is_refused() {
    let app = spawn_app();
    let dee = app.agent("dee");
    let mut profile = app.profile(&dee);
    profile["cellPhone"] = "+10995550123".into();
    let (status, body) = app.call(
        "PUT",
        &format!("/agents/{}", dee.id),
        Some(&app.token_of(&dee)),
        Some(&profile.to_string()),
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
}
