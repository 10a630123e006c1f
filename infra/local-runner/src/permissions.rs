//! The permission report: from the logs the runners' permission checks wrote
//! (`LOCAL_PERMISSIONS_LOG`), each function's grants that no run used, and every request that was
//! refused, for one template. Least privilege both ways: a refusal is a permission the template
//! lacks (or a call the code should not make); an unused grant is one it may not need.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use crate::iam::Grant;
use crate::proxy::{Denial, Record};

/// Every record in the `*.jsonl` files of `dir` about `template`.
pub fn read_log(dir: &Path, template: &str) -> Result<Vec<Record>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut records = vec![];
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: Record = serde_json::from_str(line)
                .map_err(|e| format!("{}: {e}: {line}", path.display()))?;
            if record.template == template {
                records.push(record);
            }
        }
    }
    Ok(records)
}

/// The report's text, and whether any request was refused.
pub fn report(granted: &[Grant], records: &[Record]) -> (String, bool) {
    let used: BTreeSet<&Grant> = records.iter().filter_map(|r| r.used.as_ref()).collect();
    let denied: BTreeSet<&Denial> = records.iter().filter_map(|r| r.denied.as_ref()).collect();
    let mut by_function: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
    for g in granted {
        by_function.entry(&g.function).or_default().push(g);
    }
    let mut out = String::new();
    let unused_total = granted.iter().filter(|g| !used.contains(g)).count();
    let _ = writeln!(
        out,
        "Permissions the template grants: {} in all, {} used by the runs, {} unused.",
        granted.len(),
        granted.len() - unused_total,
        unused_total
    );
    for (function, grants) in &by_function {
        let unused: Vec<&&Grant> = grants.iter().filter(|g| !used.contains(**g)).collect();
        let _ = writeln!(
            out,
            "  {function}: {} of {} used",
            grants.len() - unused.len(),
            grants.len()
        );
        for g in unused {
            let _ = writeln!(out, "    unused: {} on {}", g.action, g.resource);
        }
    }
    if denied.is_empty() {
        let _ = writeln!(out, "Refused requests: none.");
    } else {
        let _ = writeln!(
            out,
            "Refused requests (the template lacks these permissions, or the code should not ask):"
        );
        for d in &denied {
            let _ = writeln!(out, "  {}: {} on {}", d.function, d.action, d.resource);
        }
    }
    (out, !denied.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(function: &str, action: &str, resource: &str) -> Grant {
        Grant {
            function: function.into(),
            action: action.into(),
            resource: resource.into(),
        }
    }

    #[test]
    fn unused_grants_and_refusals_are_listed_per_function() {
        let granted = vec![
            grant("ClaimFunction", "dynamodb:GetItem", "${ReferralTable.Arn}"),
            grant("ClaimFunction", "dynamodb:Query", "${ReferralTable.Arn}"),
            grant(
                "SettingsFunction",
                "dynamodb:GetItem",
                "${ReferralTable.Arn}",
            ),
        ];
        let records = vec![
            Record {
                template: "t".into(),
                used: Some(granted[0].clone()),
                denied: None,
            },
            Record {
                template: "t".into(),
                used: Some(granted[2].clone()),
                denied: None,
            },
        ];
        let (text, refused) = report(&granted, &records);
        assert!(!refused);
        assert!(
            text.contains("3 in all, 2 used by the runs, 1 unused"),
            "{text}"
        );
        assert!(text.contains("ClaimFunction: 1 of 2 used"), "{text}");
        assert!(
            text.contains("unused: dynamodb:Query on ${ReferralTable.Arn}"),
            "{text}"
        );
        let mut with_refusal = records.clone();
        with_refusal.push(Record {
            template: "t".into(),
            used: None,
            denied: Some(Denial {
                function: "ClaimFunction".into(),
                action: "dynamodb:Query".into(),
                resource: "arn:aws:dynamodb:us-east-1:123456789012:table/x".into(),
            }),
        });
        let (text, refused) = report(&granted, &with_refusal);
        assert!(refused);
        assert!(
            text.contains("ClaimFunction: dynamodb:Query on arn:"),
            "{text}"
        );
    }
}
