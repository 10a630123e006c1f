//! `make invoke`, as the README gives it: one function invoked with `cargo lambda invoke` on the
//! local stack, with what it needs brought up (the table, queues and bus, the function's settings
//! from the template), on the emulators `make test` runs.
//!
//! Never skipped: without the emulators it fails and says what is missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port of an emulator's endpoint, so `make invoke` finds the running one.
fn port_of(variable: &str) -> String {
    let url = std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: this test needs the emulators. Run `make test`, or \
             `infra/local/stack.sh start && eval \"$(infra/local/stack.sh env)\"`"
        )
    });
    url.rsplit(':')
        .next()
        .map(|p| p.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("{variable}={url} names no port"))
}

fn make_invoke(args: &[&str]) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let table = format!("invoke-{}", ulid::Ulid::new().to_string().to_lowercase());
    Command::new("make")
        .current_dir(root)
        .arg("--no-print-directory")
        .arg("invoke")
        .args(args)
        .arg(format!("TABLE={table}"))
        .env("DYNAMODB_PORT", port_of("DYNAMODB_ENDPOINT"))
        .env("MOTO_PORT", port_of("MOTO_ENDPOINT"))
        .env("LOCAL_INVOKE_PORT", free_port().to_string())
        .env("LOCAL_API_PORT", free_port().to_string())
        // Not a sub-make of the `make test` that may be running this test.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("make runs")
}

#[test]
fn make_invoke_runs_one_function_with_its_event() {
    let out = make_invoke(&["FN=settings", "EVENT=events/settings/put-agent.json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The function's answer, as cargo lambda prints it: the agent saved in the fresh table.
    assert!(stdout.contains(r#""statusCode":200"#), "{stdout}\n{stderr}");
    assert!(stdout.contains(r#"\"id\":\"ana\""#), "{stdout}");
}

#[test]
fn make_invoke_says_how_to_use_it_and_which_functions_there_are() {
    let out = make_invoke(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("usage: make invoke FN="),
        "{out:?}"
    );
    let out = make_invoke(&["FN=nosuch", "EVENT=events/settings/put-agent.json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no function nosuch") && stderr.contains("settings"),
        "{stderr}"
    );
}
