//! The web app's browser callers: CORS on the HTTP API, from the template's `CorsAllowedOrigins`
//! (locally `infra/local/parameters.env`, which allows a dev server on localhost:5173).

use crate::harness::spawn_app;

/// An origin `infra/local/parameters.env` allows.
const ALLOWED: &str = "http://localhost:5173";
/// An origin nobody named.
const REFUSED: &str = "https://elsewhere.example.net";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key",
        ),
    ]
}

#[test]
fn cors_a_preflight_from_an_allowed_origin_to_post_referrals_is_answered_without_a_token() {
    let app = spawn_app();
    let (status, headers, _) = app.request("OPTIONS", "/referrals", &preflight(ALLOWED), "");
    assert_eq!(status, 204, "{headers:?}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{m} in {methods}");
    }
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }

    // The call itself carries the origin back, so the browser hands the answer to the page.
    let [agent] = app.agents(["web"]);
    let token = format!("Bearer {}", app.token_of(&agent));
    let (status, headers, answer) = app.request(
        "PUT",
        &format!("/agents/{}", agent.id),
        &[
            ("Origin", ALLOWED),
            ("Authorization", &token),
            ("Content-Type", "application/json"),
        ],
        &app.profile(&agent).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );
}

#[test]
fn cors_a_refused_origin_gets_no_cors_headers_so_the_browser_blocks_it() {
    let app = spawn_app();
    let (status, headers, _) = app.request("OPTIONS", "/referrals", &preflight(REFUSED), "");
    assert_eq!(status, 204);
    assert!(
        headers
            .iter()
            .all(|(k, _)| !k.starts_with("access-control-")),
        "{headers:?}"
    );
    let token = format!("Bearer {}", app.advisor());
    let (status, headers, _) = app.request(
        "GET",
        "/referrals/nope",
        &[("Origin", REFUSED), ("Authorization", &token)],
        "",
    );
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

/// `clients/typescript`: its schema is the one `npm run generate` makes from infra/openapi.yaml
/// today, it compiles (`tsc --noEmit`), and it works against the stack: an advisor's referral,
/// claimed by the agent it was offered to.
#[test]
fn typescript_client_is_current_compiles_and_claims_a_referral_on_the_stack() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript");
    let bin = |tool: &str| dir.join("node_modules/.bin").join(tool);
    assert!(
        bin("tsc").exists() && bin("openapi-typescript").exists(),
        "clients/typescript/node_modules is missing: run `infra/local/stack.sh install` (make test does)"
    );
    let run = |command: &mut std::process::Command, what: &str| {
        let out = command
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let fresh = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schema.d.ts");
    run(
        std::process::Command::new(bin("openapi-typescript"))
            .args([
                "../../infra/openapi.yaml",
                "--default-non-nullable",
                "false",
                "--output",
            ])
            .arg(&fresh),
        "openapi-typescript",
    );
    let checked_in = std::fs::read_to_string(dir.join("src/schema.d.ts")).unwrap_or_default();
    assert!(
        std::fs::read_to_string(&fresh).unwrap_or_default() == checked_in,
        "clients/typescript/src/schema.d.ts is not what infra/openapi.yaml generates: \
         run `npm run generate` in clients/typescript and commit it"
    );
    run(
        std::process::Command::new(bin("tsc")).arg("--noEmit"),
        "tsc --noEmit",
    );

    let app = spawn_app();
    let agent = app.agent("ts");
    let team = app.id("ts-team");
    run(
        std::process::Command::new(bin("tsc")).args(["--project", "tsconfig.smoke.json"]),
        "tsc --project tsconfig.smoke.json",
    );
    let answer = run(
        std::process::Command::new("node")
            .arg("build/smoke.js")
            .env("API_URL", app.base())
            .env("AGENT_ID", &agent.id)
            .env("AGENT_PHONE", &agent.phone)
            .env("TEAM_ID", &team)
            .env("ZIP", &app.zip)
            .env("AGENT_EMAIL", &agent.email)
            .env("CLIENT_PHONE", &app.client.phone)
            .env("CLIENT_EMAIL", &app.client.email)
            .env("AGENT_TOKEN", app.token_of(&agent))
            .env("ADMIN_TOKEN", app.admin())
            .env("ADVISOR_TOKEN", app.advisor()),
        "node build/smoke.js",
    );
    let result: serde_json::Value =
        serde_json::from_str(answer.trim()).expect("the script prints JSON");
    let referral = result["referralId"].as_str().expect("a referral id");
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{referral}"),
        Some(&app.token_of(&agent)),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["assignedAgentId"], agent.id.as_str(), "{view}");
}

/// The local console (`GET /_local/`) in a real browser, Debian's Chromium driven by
/// playwright-core (both installed by `infra/local/stack.sh install`): an advisor creates a
/// referral there, the offer shows on cy's phone, cy texts its code back from that phone, the
/// referral's timeline shows it claimed and the rest of cy's text shows on the client's phone.
/// Leaves a screenshot at `<target>/artifacts/console.png`.
#[test]
fn console_shows_the_offer_on_the_agents_phone_and_the_claim_by_text_on_the_timeline() {
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run `infra/local/stack.sh install` (make test does), which installs Debian's chromium"
    );
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `infra/local/stack.sh install` (make test does)"
    );
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artifacts");
    std::fs::create_dir_all(&artifacts).expect("the artifacts folder can be made");
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);

    // A runner of its own, so the console shows this world's people only.
    let app = crate::harness::spawn_app_alone();
    let [ana, cy] = app.agents(["ana", "cy"]);
    let team = app.create_team("bay", &ana, &[&cy]);
    app.route(&team, &ana, &[(&cy, "seller")]);

    let out = std::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(&browser)
        .env("CHROMIUM", &chromium)
        .env("API_URL", app.base())
        .env("ADVISOR_ID", app.id("advisor"))
        .env("TEAM_ID", &team)
        .env("ZIP", &app.zip)
        .env("CLIENT_PHONE", &app.client.phone)
        .env("CLIENT_EMAIL", &app.client.email)
        .env("AGENT_ID", &cy.id)
        .env("AGENT_PHONE", &cy.phone)
        .env("SCREENSHOT", &screenshot)
        .output()
        .expect("node starts");
    assert!(
        out.status.success(),
        "the console's browser run failed (is Chromium able to start?):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let referral = result["referralId"].as_str().expect("a referral id");

    // What the page showed is what the service holds.
    let (status, view) = app.call(
        "GET",
        &format!("/referrals/{referral}"),
        Some(&app.token_of(&cy)),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["assignedAgentId"], cy.id.as_str(), "{view}");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "a screenshot at {}",
        screenshot.display()
    );
}
