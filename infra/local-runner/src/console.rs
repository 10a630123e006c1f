//! The local console (`GET /_local/`): one page of plain HTML, CSS and JavaScript, embedded in
//! the runner so `make run` serves it with no build step. The page calls the public API with dev
//! tokens and the `/_local/` endpoints; the two it needs that nothing else offered live here:
//! minting a dev token (`POST /_local/token`) and signing a telephony webhook
//! (`POST /_local/sign`), since the page must not hold the JWT secret or the Twilio auth token.

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::jwt;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// How long a token the console mints stays valid: a working day at the console.
const TOKEN_TTL: SignedDuration = SignedDuration::from_hours(12);

const ROLES: [&str; 4] = ["agent", "advisor", "closings", "admin"];

/// The console's file at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/_local" | "/_local/" => Some(("text/html; charset=utf-8", INDEX)),
        "/_local/console.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/_local/console.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsoleError {
    #[error(
        r#"expected {{"sub": "ben", "role": "agent|advisor|closings|admin", "email"?: "..."}}"#
    )]
    BadTokenRequest,
    #[error(
        r#"expected {{"url": "/twilio/voice/... or the full URL", "params": {{"Name": "value"}}}}"#
    )]
    BadSignRequest,
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    sub: String,
    role: String,
    #[serde(default)]
    email: Option<String>,
}

/// `POST /_local/token` `{sub, role, email?}`: a dev token as `local-runner token` makes one, with
/// the `email` claim advisors' tokens carry, valid from `now` (real time, as the gateway checks).
pub fn mint_token(secret: &str, body: &[u8], now: Timestamp) -> Result<Value, ConsoleError> {
    let request: TokenRequest =
        serde_json::from_slice(body).map_err(|_| ConsoleError::BadTokenRequest)?;
    if request.sub.trim().is_empty() || !ROLES.contains(&request.role.as_str()) {
        return Err(ConsoleError::BadTokenRequest);
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), request.sub.into());
    claims.insert("custom:role".into(), request.role.into());
    if let Some(email) = request.email.filter(|e| !e.is_empty()) {
        claims.insert("email".into(), email.into());
    }
    claims.insert("iat".into(), now.as_second().into());
    claims.insert("exp".into(), (now + TOKEN_TTL).as_second().into());
    Ok(json!({"token": jwt::sign(secret, &claims)}))
}

#[derive(Debug, Deserialize)]
struct SignRequest {
    url: String,
    #[serde(default)]
    params: Map<String, Value>,
}

/// `POST /_local/sign` `{url, params}`: the `X-Twilio-Signature` Twilio would send with `params`
/// to `url` (a path is taken as the gateway's own), keyed with the local auth token.
pub fn sign_webhook(auth_token: &str, base: &str, body: &[u8]) -> Result<Value, ConsoleError> {
    let request: SignRequest =
        serde_json::from_slice(body).map_err(|_| ConsoleError::BadSignRequest)?;
    let url = if request.url.starts_with('/') {
        format!("{base}{}", request.url)
    } else if request.url.starts_with("http://") || request.url.starts_with("https://") {
        request.url
    } else {
        return Err(ConsoleError::BadSignRequest);
    };
    let params: Vec<(String, String)> = request
        .params
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            _ => Err(ConsoleError::BadSignRequest),
        })
        .collect::<Result<_, _>>()?;
    let signature = shared::twilio::SignatureValidator::new(auth_token).sign(&url, &params);
    Ok(json!({"url": url, "signature": signature}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2027-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_page_its_script_and_its_style_are_served() {
        let (kind, page) = asset("/_local/").unwrap();
        assert!(kind.starts_with("text/html"));
        assert!(page.contains("/_local/console.js") && page.contains("/_local/console.css"));
        assert!(asset("/_local/console.js").is_some());
        assert!(asset("/_local/console.css").is_some());
        assert!(asset("/_local/outbox").is_none());
    }

    #[test]
    fn a_minted_token_passes_the_gateway_with_its_role_and_email() {
        let body = br#"{"sub": "advisor-1", "role": "advisor", "email": "a@example.com"}"#;
        let answer = mint_token("s3cret", body, now()).unwrap();
        let claims = jwt::verify("s3cret", answer["token"].as_str().unwrap(), now()).unwrap();
        assert_eq!(claims["sub"], "advisor-1");
        assert_eq!(claims["custom:role"], "advisor");
        assert_eq!(claims["email"], "a@example.com");
        let later = now() + SignedDuration::from_hours(13);
        assert!(jwt::verify("s3cret", answer["token"].as_str().unwrap(), later).is_err());
    }

    #[test]
    fn a_token_for_an_unknown_role_or_nobody_is_refused() {
        for body in [
            &br#"{"sub": "x", "role": "root"}"#[..],
            br#"{"sub": " ", "role": "agent"}"#,
            b"not json",
        ] {
            assert_eq!(
                mint_token("s", body, now()),
                Err(ConsoleError::BadTokenRequest)
            );
        }
    }

    #[test]
    fn a_signed_webhook_is_what_the_functions_accept() {
        let body = br#"{"url": "/twilio/voice/pin", "params": {"From": "+14155550102", "Digits": "123456"}}"#;
        let answer = sign_webhook("t0k3n", "http://127.0.0.1:3000", body).unwrap();
        assert_eq!(answer["url"], "http://127.0.0.1:3000/twilio/voice/pin");
        let params = vec![
            ("Digits".to_owned(), "123456".to_owned()),
            ("From".to_owned(), "+14155550102".to_owned()),
        ];
        let validator = shared::twilio::SignatureValidator::new("t0k3n");
        assert_eq!(
            answer["signature"],
            validator.sign("http://127.0.0.1:3000/twilio/voice/pin", &params)
        );
        // A full URL (a call's webhook, as the outbox shows it) is signed as given.
        let body =
            br#"{"url": "http://127.0.0.1:3000/twilio/voice/claim?referralId=r1", "params": {}}"#;
        let answer = sign_webhook("t0k3n", "http://127.0.0.1:9999", body).unwrap();
        assert_eq!(
            answer["url"],
            "http://127.0.0.1:3000/twilio/voice/claim?referralId=r1"
        );
        assert_eq!(
            sign_webhook("t", "b", br#"{"url": "twilio"}"#),
            Err(ConsoleError::BadSignRequest)
        );
    }
}
