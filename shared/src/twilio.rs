//! Twilio webhooks: signature validation (GEN-6), the form bodies they carry, and the TwiML
//! they are answered with.
//!
//! Twilio signs each webhook with HMAC-SHA1, keyed with the account's auth token, over the full
//! URL it requested followed by every POST parameter's name and value, names sorted, and sends
//! the base64 digest as `X-Twilio-Signature`. A request is accepted only when the digest we
//! compute over the same inputs matches; anything else (no header, another URL, a changed
//! parameter) is refused.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::encoding::{base64_decode, base64_encode};

/// The header Twilio puts its signature in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Checks webhook signatures with the account's auth token.
#[derive(Clone)]
pub struct SignatureValidator {
    auth_token: String,
}

impl std::fmt::Debug for SignatureValidator {
    // The token is the secret that makes signatures mean anything: never log it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureValidator { auth_token: <redacted> }")
    }
}

impl SignatureValidator {
    /// `auth_token` is `TWILIO_AUTH_TOKEN`.
    pub fn new(auth_token: impl Into<String>) -> Self {
        Self {
            auth_token: auth_token.into(),
        }
    }

    /// The signature Twilio would send for a POST to `url` with `params` (in any order).
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        base64_encode(&self.digest(url, params))
    }

    /// Whether `signature` (the `X-Twilio-Signature` header, `None` when absent) is Twilio's
    /// for this request. `url` is the full public URL Twilio requested, query included; `params`
    /// are the POST parameters as parsed from the body, in any order.
    ///
    /// Twilio signs the URL exactly as configured, and its SDKs document that the port may or
    /// may not be part of it (`https://host/...` vs `https://host:443/...`), depending on how
    /// the webhook was set up and on what proxies in front of us report. So both forms are
    /// tried: the URL as given and the URL with the scheme's default port added or removed.
    /// A non-default port is never dropped: that would be another endpoint.
    pub fn is_valid(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> bool {
        let Some(given) = signature.and_then(|s| base64_decode(s.trim()).ok()) else {
            return false;
        };
        let mut candidates = vec![url.to_owned()];
        candidates.extend(with_default_port_toggled(url));
        candidates
            .iter()
            .any(|candidate| self.verify(candidate, params, &given))
    }

    fn mac(&self, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
        let mut mac = Hmac::<Sha1>::new_from_slice(self.auth_token.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(url.as_bytes());
        for (name, value) in sorted(params) {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        mac
    }

    fn digest(&self, url: &str, params: &[(String, String)]) -> Vec<u8> {
        self.mac(url, params).finalize().into_bytes().to_vec()
    }

    /// Compares in constant time (`Mac::verify_slice`), so the time a refusal takes says
    /// nothing about how much of a forged signature was right.
    fn verify(&self, url: &str, params: &[(String, String)], given: &[u8]) -> bool {
        self.mac(url, params).verify_slice(given).is_ok()
    }
}

/// The claim function's view of its webhooks: the public URL Twilio requests them at, and the
/// token their signatures are keyed with (GEN-6).
#[derive(Debug, Clone)]
pub struct Webhooks {
    pub validator: SignatureValidator,
    /// `PUBLIC_BASE_URL`: the API's address as Twilio requests it.
    pub public_base_url: String,
}

impl Webhooks {
    /// The full URL Twilio requested for `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}{path_and_query}",
            self.public_base_url.trim_end_matches('/')
        )
    }

    /// Accepts the request only with Twilio's signature over this URL and these params.
    pub fn verify(
        &self,
        path_and_query: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<(), crate::app::AppError> {
        if self
            .validator
            .is_valid(&self.url(path_and_query), params, signature)
        {
            Ok(())
        } else {
            Err(crate::app::AppError::InvalidSignature)
        }
    }

    /// The local stack's webhooks, signed with the development token.
    pub fn development() -> Self {
        Self {
            validator: SignatureValidator::new(crate::app::DEVELOPMENT_TWILIO_TOKEN),
            public_base_url: "http://127.0.0.1:3000".into(),
        }
    }
}

/// Params ordered as Twilio signs them: by name, byte-wise (Unix `sort`, case-sensitive).
/// Repeated names are kept, ordered by value, as Twilio's Node and C# libraries do.
fn sorted(params: &[(String, String)]) -> Vec<&(String, String)> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted
}

/// The URL with the default port of its scheme added when it has none, or removed when it is
/// the default; `None` for a non-default port or a URL without `scheme://host`.
fn with_default_port_toggled(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // Credentials (`user:pass@`) come before the host, and IPv6 hosts contain colons inside
    // brackets: the port is after the last colon that follows both.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_and_port = &authority[host_start..];
    let port_colon = host_and_port
        .rfind(':')
        .filter(|&colon| !host_and_port[colon..].contains(']'));
    let toggled = match port_colon {
        Some(colon) if &host_and_port[colon + 1..] == default_port => {
            format!("{}{}", &authority[..host_start], &host_and_port[..colon])
        }
        Some(_) => return None,
        None => format!("{authority}:{default_port}"),
    };
    Some(format!("{scheme}://{toggled}{tail}"))
}

/// Parses an `application/x-www-form-urlencoded` body into its params, sorted by name (then
/// value), as the signature is computed over them. Bytes that are not UTF-8 become U+FFFD, so such
/// a request fails validation rather than being misread.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    params.sort();
    params
}

/// The first value of `name` in parsed params.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// TwiML answers, built verb by verb with every text and attribute escaped.
///
/// ```
/// use shared::twilio::twiml::Twiml;
/// let xml = Twiml::new().say("New buyer lead in 94110.").build();
/// assert!(xml.ends_with("<Response><Say>New buyer lead in 94110.</Say></Response>"));
/// ```
pub mod twiml {
    /// The XML declaration every answer starts with.
    const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    /// Escapes text for XML content and attribute values alike.
    pub fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                c => out.push(c),
            }
        }
        out
    }

    /// `<Response/>`: the answer that tells Twilio to do nothing (hang up a call, send no reply
    /// to an SMS).
    pub fn empty() -> String {
        format!("{DECLARATION}<Response/>")
    }

    /// A conference leg: who waits, who starts it, who ends it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Conference {
        /// The room; everyone dialled into the same name meets.
        pub room: String,
        /// Whether this participant starts the conference (others hear hold music until then).
        pub start_on_enter: bool,
        /// Whether the conference ends when this participant leaves.
        pub end_on_exit: bool,
        /// What callers waiting for the start hear; `None` for Twilio's default music.
        pub wait_url: Option<String>,
        /// The participant's label, which the conference's callbacks carry (`ParticipantLabel`).
        pub label: Option<String>,
        /// Where the conference reports its start, end, joins and leaves.
        pub status_callback: Option<String>,
    }

    /// A TwiML `<Response>` under construction.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Twiml {
        verbs: String,
    }

    impl Twiml {
        pub fn new() -> Self {
            Self::default()
        }

        /// `<Say>text</Say>`: read out to the caller.
        pub fn say(mut self, text: &str) -> Self {
            self.verbs.push_str(&say(text));
            self
        }

        /// `<Gather numDigits="n" action="..." method="POST"><Say>prompt</Say></Gather>`:
        /// reads the prompt while listening for `num_digits` key presses, then posts them as
        /// `Digits` to `action`. One digit for "press 1 to claim"; more for the PIN line.
        pub fn gather(mut self, num_digits: u8, action: &str, prompt: &str) -> Self {
            self.verbs.push_str(&format!(
                r#"<Gather numDigits="{num_digits}" action="{}" method="POST">{}</Gather>"#,
                escape(action),
                say(prompt)
            ));
            self
        }

        /// `<Pause length="n"/>`: silence, e.g. while a warm transfer is put together.
        pub fn pause(mut self, seconds: u32) -> Self {
            self.verbs
                .push_str(&format!(r#"<Pause length="{seconds}"/>"#));
            self
        }

        /// `<Dial><Conference ...>room</Conference></Dial>`: joins the caller to a conference.
        pub fn conference(mut self, conference: &Conference) -> Self {
            let mut attributes = format!(
                r#" startConferenceOnEnter="{}" endConferenceOnExit="{}""#,
                conference.start_on_enter, conference.end_on_exit
            );
            if let Some(url) = &conference.wait_url {
                attributes.push_str(&format!(r#" waitUrl="{}""#, escape(url)));
            }
            if let Some(label) = &conference.label {
                attributes.push_str(&format!(r#" participantLabel="{}""#, escape(label)));
            }
            if let Some(url) = &conference.status_callback {
                attributes.push_str(&format!(
                    r#" statusCallback="{}" statusCallbackMethod="POST" statusCallbackEvent="start end join leave""#,
                    escape(url)
                ));
            }
            self.verbs.push_str(&format!(
                "<Dial><Conference{attributes}>{}</Conference></Dial>",
                escape(&conference.room)
            ));
            self
        }

        /// `<Message>text</Message>`: an SMS reply to an inbound SMS.
        pub fn message(mut self, text: &str) -> Self {
            self.verbs
                .push_str(&format!("<Message>{}</Message>", escape(text)));
            self
        }

        /// `<Hangup/>`.
        pub fn hangup(mut self) -> Self {
            self.verbs.push_str("<Hangup/>");
            self
        }

        /// The document; with no verbs, the empty `<Response/>`.
        pub fn build(self) -> String {
            if self.verbs.is_empty() {
                empty()
            } else {
                format!("{DECLARATION}<Response>{}</Response>", self.verbs)
            }
        }
    }

    fn say(text: &str) -> String {
        format!("<Say>{}</Say>", escape(text))
    }
}

/// A call's next instructions as TwiML.
pub fn render(voice: &crate::app::voice::Voice) -> String {
    use crate::app::voice::Voice;
    use twiml::Twiml;
    match voice {
        Voice::Ask {
            digits,
            prompt,
            action,
            otherwise,
        } => {
            let twiml = Twiml::new().gather(*digits, action, prompt);
            match otherwise {
                Some(text) => twiml.say(text),
                None => twiml,
            }
            .build()
        }
        Voice::Goodbye(text) => Twiml::new().say(text).hangup().build(),
        Voice::Join { text, leg } => Twiml::new().say(text).conference(&conference(leg)).build(),
        Voice::Choose {
            prompt,
            action,
            back,
        } => Twiml::new()
            .gather(1, action, prompt)
            .conference(&conference(back))
            .build(),
        Voice::Nothing => twiml::empty(),
    }
}

/// A caller's place in a conference, as TwiML's `<Conference>` takes it.
fn conference(leg: &crate::app::voice::ConferenceLeg) -> twiml::Conference {
    twiml::Conference {
        room: leg.room.clone(),
        start_on_enter: leg.start_on_enter,
        end_on_exit: leg.end_on_exit,
        wait_url: None,
        label: Some(leg.label.as_str().to_owned()),
        status_callback: Some(leg.status_callback.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::twiml::{Conference, Twiml};
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// The example in Twilio's security documentation and in its SDKs' own tests
    /// (twilio-python, twilio-php, twilio-csharp), given here out of order on purpose.
    fn published_params() -> Vec<(String, String)> {
        params(&[
            ("To", "+18005551212"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
            ("CallSid", "CA1234567890ABCDE"),
        ])
    }

    #[test]
    fn gen_6_a_webhook_needs_the_providers_signature() {
        let hooks = Webhooks::development();
        let params = params(&[("Body", "#1234 hi"), ("From", "+14155550200")]);
        let good = hooks
            .validator
            .sign("http://127.0.0.1:3000/twilio/sms", &params);
        assert!(hooks.verify("/twilio/sms", &params, Some(&good)).is_ok());
        let forged = hooks
            .verify("/twilio/sms", &params, Some("AAAA"))
            .unwrap_err();
        assert_eq!((forged.status(), forged.code()), (403, "invalid_signature"));
        assert!(hooks.verify("/twilio/sms", &params, None).is_err());
        // Signed for another path or with another parameter: refused too.
        assert!(
            hooks
                .verify("/twilio/voice/pin", &params, Some(&good))
                .is_err()
        );
        let mut changed = params.clone();
        changed[1].1 = "+14155550201".into();
        assert!(hooks.verify("/twilio/sms", &changed, Some(&good)).is_err());
    }

    #[test]
    fn gen_6_matches_twilios_published_test_vector() {
        let validator = SignatureValidator::new("12345");
        assert_eq!(
            validator.sign(URL, &published_params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(validator.is_valid(
            URL,
            &published_params(),
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
    }

    #[test]
    fn gen_6_same_algorithm_over_other_caller_numbers() {
        // The same example with +12349013030 as From and Caller, checked against an independent
        // computation (Python's hmac module) of the same algorithm.
        let validator = SignatureValidator::new("12345");
        let params = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(validator.sign(URL, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(!validator.is_valid(URL, &params, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")));
    }

    #[test]
    fn gen_6_a_signature_over_the_url_with_port_validates_the_url_without() {
        let validator = SignatureValidator::new("12345");
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signature = validator.sign(with_port, &published_params());
        assert_eq!(signature, "kvajT1Ptam85bY51eRf/AJRuM3w=");
        assert!(validator.is_valid(URL, &published_params(), Some(&signature)));
        assert!(validator.is_valid(with_port, &published_params(), Some(&signature)));
    }

    #[test]
    fn gen_6_a_signature_over_the_url_without_port_validates_the_url_with() {
        let validator = SignatureValidator::new("12345");
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert!(validator.is_valid(
            with_port,
            &published_params(),
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        let local = "http://127.0.0.1/twilio/sms";
        let signature = validator.sign(local, &published_params());
        assert!(validator.is_valid(
            "http://127.0.0.1:80/twilio/sms",
            &published_params(),
            Some(&signature)
        ));
    }

    #[test]
    fn gen_6_another_port_or_path_or_host_is_invalid() {
        let validator = SignatureValidator::new("12345");
        let good = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        for url in [
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "https://evil.com/myapp.php?foo=1&bar=2",
        ] {
            assert!(!validator.is_valid(url, &published_params(), good), "{url}");
        }
    }

    #[test]
    fn gen_6_a_tampered_param_is_invalid() {
        let validator = SignatureValidator::new("12345");
        let good = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let mut tampered = published_params();
        tampered[1].1 = "1235".into();
        assert!(!validator.is_valid(URL, &tampered, good));
        let mut added = published_params();
        added.push(("Extra".into(), "1".into()));
        assert!(!validator.is_valid(URL, &added, good));
        assert!(!validator.is_valid(URL, &published_params()[1..], good));
        assert!(!SignatureValidator::new("54321").is_valid(URL, &published_params(), good));
    }

    #[test]
    fn gen_6_a_missing_or_malformed_signature_is_invalid() {
        let validator = SignatureValidator::new("12345");
        assert!(!validator.is_valid(URL, &published_params(), None));
        assert!(!validator.is_valid(URL, &published_params(), Some("")));
        assert!(!validator.is_valid(URL, &published_params(), Some("not base64!")));
        // A prefix of the right digest must not pass.
        assert!(!validator.is_valid(URL, &published_params(), Some("RSOYDt4T1cUT")));
    }

    #[test]
    fn gen_6_a_parsed_form_body_validates() {
        let body = "Digits=1234&To=%2B18005551212&From=%2B14158675309\
                    &Caller=%2B14158675309&CallSid=CA1234567890ABCDE";
        let parsed = parse_form(body.as_bytes());
        assert!(SignatureValidator::new("12345").is_valid(
            URL,
            &parsed,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        assert_eq!(param(&parsed, "From"), Some("+14158675309"));
    }

    #[test]
    fn gen_6_the_debug_form_hides_the_token() {
        assert!(!format!("{:?}", SignatureValidator::new("12345")).contains("12345"));
    }

    #[test]
    fn default_port_toggling_handles_credentials_ipv6_and_other_ports() {
        assert_eq!(
            with_default_port_toggled("https://u:p@host.com/x").as_deref(),
            Some("https://u:p@host.com:443/x")
        );
        assert_eq!(
            with_default_port_toggled("https://u:p@host.com:443?x=1").as_deref(),
            Some("https://u:p@host.com?x=1")
        );
        assert_eq!(
            with_default_port_toggled("http://[::1]/x").as_deref(),
            Some("http://[::1]:80/x")
        );
        assert_eq!(
            with_default_port_toggled("http://[::1]:80/x").as_deref(),
            Some("http://[::1]/x")
        );
        assert_eq!(with_default_port_toggled("http://127.0.0.1:3000/x"), None);
        assert_eq!(with_default_port_toggled("ftp://host/x"), None);
        assert_eq!(with_default_port_toggled("no scheme"), None);
    }

    #[test]
    fn form_bodies_are_percent_decoded_with_plus_as_space_and_sorted() {
        assert_eq!(
            parse_form(
                b"Body=%231234+I%27ll+take+it%21&From=%2B14155550123&&Empty&A=%E2%9C%93&Bad=%zz%4"
            ),
            params(&[
                ("A", "✓"),
                ("Bad", "%zz%4"),
                ("Body", "#1234 I'll take it!"),
                ("Empty", ""),
                ("From", "+14155550123"),
            ])
        );
        assert_eq!(parse_form(b""), Vec::new());
        assert_eq!(parse_form(b"x=%FF").first().unwrap().1, "\u{FFFD}");
    }

    #[test]
    fn twiml_escapes_text_and_attributes() {
        assert_eq!(
            twiml::escape(r#"a&b<c>d"e'f"#),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f"
        );
        let xml = Twiml::new()
            .say("Lead for Smith & Sons <buyer>")
            .gather(
                1,
                "/twilio/voice/claim?referral=r-1&agent=a-1",
                "Press 1 to claim.",
            )
            .build();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
             <Say>Lead for Smith &amp; Sons &lt;buyer&gt;</Say>\
             <Gather numDigits=\"1\" action=\"/twilio/voice/claim?referral=r-1&amp;agent=a-1\" method=\"POST\">\
             <Say>Press 1 to claim.</Say></Gather></Response>"
        );
    }

    #[test]
    fn twiml_conference_message_and_empty_answers() {
        let xml = Twiml::new()
            .pause(1)
            .conference(&Conference {
                room: "wt-r-1".into(),
                start_on_enter: true,
                end_on_exit: false,
                wait_url: Some("https://example.com/hold?x=1&y=2".into()),
                label: None,
                status_callback: None,
            })
            .build();
        assert!(xml.ends_with(
            "<Response><Pause length=\"1\"/><Dial><Conference startConferenceOnEnter=\"true\" \
             endConferenceOnExit=\"false\" waitUrl=\"https://example.com/hold?x=1&amp;y=2\">\
             wt-r-1</Conference></Dial></Response>"
        ));
        let labelled = Twiml::new()
            .conference(&Conference {
                room: "wt-r-1".into(),
                start_on_enter: false,
                end_on_exit: true,
                wait_url: None,
                label: Some("agent".into()),
                status_callback: Some(
                    "https://api.example.com/twilio/voice/conference?referralId=r-1".into(),
                ),
            })
            .build();
        assert!(
            labelled.contains(
                r#"participantLabel="agent" statusCallback="https://api.example.com/twilio/voice/conference?referralId=r-1" statusCallbackMethod="POST" statusCallbackEvent="start end join leave">wt-r-1</Conference>"#
            ),
            "{labelled}"
        );
        assert!(
            Twiml::new()
                .message("Claimed: it's yours")
                .build()
                .ends_with("<Response><Message>Claimed: it&apos;s yours</Message></Response>")
        );
        assert!(
            Twiml::new()
                .hangup()
                .build()
                .ends_with("<Response><Hangup/></Response>")
        );
        assert_eq!(
            Twiml::new().build(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"
        );
        assert_eq!(twiml::empty(), Twiml::new().build());
    }
}
