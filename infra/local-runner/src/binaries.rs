//! The functions' binaries, built once by cargo before anything is served (so a first request
//! never waits for a compile), and rebuilt when their sources change (`make run`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The cargo profile the functions are built with: `dev` unless `LOCAL_RUNNER_PROFILE` names
/// another (`make bench` serves the release binaries it has built, as Lambda runs them).
const PROFILE: &str = "LOCAL_RUNNER_PROFILE";

/// Builds `binaries` (`PROFILE`) in `workspace` and returns each one's executable. Cargo's
/// progress and diagnostics go to the runner's error output.
pub async fn build(
    workspace: &Path,
    binaries: &[String],
) -> Result<BTreeMap<String, PathBuf>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .args(["build", "--message-format=json-render-diagnostics"])
        .args([
            "--profile",
            &std::env::var(PROFILE).unwrap_or_else(|_| "dev".into()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for b in binaries {
        command.args(["--bin", b]);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {cargo} build: {e}"))?;
    let mut built = BTreeMap::new();
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["reason"] != "compiler-artifact" {
                continue;
            }
            let (Some(name), Some(executable)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            ) else {
                continue;
            };
            if binaries.iter().any(|b| b == name) {
                built.insert(name.to_owned(), PathBuf::from(executable));
            }
        }
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "building the functions failed ({status}); see cargo's output above"
        ));
    }
    if let Some(missing) = binaries.iter().find(|b| !built.contains_key(*b)) {
        return Err(format!("cargo built no binary named {missing}"));
    }
    Ok(built)
}

/// The latest change to the sources the functions are built from: the workspace manifests and
/// everything under `functions/` and `shared/`.
pub fn sources_changed_at(workspace: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    let mut visit = vec![workspace.join("functions"), workspace.join("shared")];
    for file in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(workspace.join(file))
            && let Ok(t) = m.modified()
        {
            latest = latest.max(t);
        }
    }
    while let Some(dir) = visit.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                visit.push(path);
            } else if let Ok(t) = meta.modified() {
                latest = latest.max(t);
            }
        }
    }
    latest
}

pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
