//! HS256 development tokens: what the local gateway accepts in place of Cognito's JWTs.
//!
//! Only HS256 is accepted, whatever the header says, so a token with `alg: none` or another
//! algorithm can never pass (the classic algorithm-confusion hole). Signing and checking are
//! jsonwebtoken's.

use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// The development default of `LOCAL_JWT_SECRET`, as the README states it.
pub const DEFAULT_SECRET: &str = "local-dev-secret";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not three base64url parts")]
    Malformed,
    #[error("only HS256 tokens are accepted")]
    WrongAlgorithm,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// Signs `claims` as a compact HS256 JWT with `secret`, which must not be empty (the runner's
/// settings never are).
pub fn sign(secret: &str, claims: &Map<String, Value>) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("a non-empty secret");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .expect("a JSON object of claims always encodes")
}

/// A dev token for `sub` with `role`, valid for `ttl` from `now`.
pub fn dev_token(
    secret: &str,
    sub: &str,
    role: &str,
    now: Timestamp,
    ttl: SignedDuration,
) -> String {
    let mut claims = Map::new();
    claims.insert("sub".into(), sub.into());
    claims.insert("custom:role".into(), role.into());
    claims.insert("iat".into(), now.as_second().into());
    claims.insert("exp".into(), (now + ttl).as_second().into());
    sign(secret, &claims)
}

/// Checks the algorithm, the signature and `exp` (when present, against `now`, the caller's
/// clock) and returns the claims.
pub fn verify(secret: &str, token: &str, now: Timestamp) -> Result<Map<String, Value>, TokenError> {
    // A header naming an algorithm jsonwebtoken does not know (`none` among them) does not
    // decode; that too is the wrong algorithm.
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::Json(_) => TokenError::WrongAlgorithm,
        _ => TokenError::Malformed,
    })?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::WrongAlgorithm);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // `exp` is optional and checked below against `now`, not the system clock.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| TokenError::BadSignature)?;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
            _ => TokenError::Malformed,
        })?
        .claims;
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_f64().ok_or(TokenError::Malformed)?;
        if (now.as_second() as f64) >= exp {
            return Err(TokenError::Expired);
        }
    }
    Ok(claims)
}

/// The claims as API Gateway's JWT authorizer passes them to a function: every value a string
/// (numbers and booleans in their JSON text, arrays and objects as JSON).
pub fn claims_as_strings(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), Value::String(s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};

    fn mac(secret: &str, signing_input: &str) -> Hmac<sha2::Sha256> {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        mac
    }

    fn now() -> Timestamp {
        "2027-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let token = dev_token(
            "s3cret",
            "ana",
            "agent",
            now(),
            SignedDuration::from_hours(12),
        );
        let claims = verify("s3cret", &token, now()).unwrap();
        assert_eq!(claims["sub"], "ana");
        assert_eq!(claims["custom:role"], "agent");
        assert_eq!(claims["exp"], now().as_second() + 12 * 3600);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = dev_token(
            "other",
            "ana",
            "agent",
            now(),
            SignedDuration::from_hours(1),
        );
        assert_eq!(
            verify("s3cret", &token, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let token = dev_token(
            "s3cret",
            "ana",
            "agent",
            now(),
            SignedDuration::from_hours(1),
        );
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"ana","custom:role":"admin"}"#);
        let token = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            verify("s3cret", &token, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn other_algorithms_are_refused_even_with_a_valid_mac() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"ana","custom:role":"admin"}"#);
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(mac("s3cret", &input).finalize().into_bytes());
        assert_eq!(
            verify("s3cret", &format!("{input}.{sig}"), now()),
            Err(TokenError::WrongAlgorithm)
        );
        assert_eq!(
            verify("s3cret", &format!("{input}."), now()),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let token = dev_token(
            "s3cret",
            "ana",
            "agent",
            now(),
            SignedDuration::from_hours(1),
        );
        let later = now() + SignedDuration::from_hours(2);
        assert_eq!(verify("s3cret", &token, later), Err(TokenError::Expired));
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(verify("s", "abc", now()), Err(TokenError::Malformed));
        assert_eq!(verify("s", "a.b.c.d", now()), Err(TokenError::Malformed));
    }

    #[test]
    fn claims_reach_the_function_as_strings() {
        let mut claims = Map::new();
        claims.insert("sub".into(), "ana".into());
        claims.insert("exp".into(), 17.into());
        let s = claims_as_strings(&claims);
        assert_eq!(s["sub"], "ana");
        assert_eq!(s["exp"], "17");
    }
}
