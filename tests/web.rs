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
