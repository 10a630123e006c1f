//! The functions' metric lines (`shared::telemetry`), as CloudWatch reads them: the embedded
//! metric format. A process of its own, as the recorder is the process's one global recorder.
#![cfg(feature = "metrics")]

use serde_json::{Value, json};
use shared::telemetry::{self, AlertOutcome};

fn with_metric<'a>(lines: &'a [Value], metric: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l.get(metric).is_some())
        .unwrap_or_else(|| panic!("no line has {metric}: {lines:#?}"))
}

#[test]
fn metrics_are_emf_lines_of_the_stack_namespace_with_their_dimensions_values_and_request_id() {
    let collector = telemetry::install("ReferralRouting/test".into(), Some(1_700_000_000_000))
        .expect("the first recorder of the process");
    let flush = || -> Vec<Value> {
        let mut out = Vec::new();
        collector.flush(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
            .collect()
    };
    assert!(flush().is_empty(), "nothing recorded writes no line");

    collector.set_property("RequestId", "req-1");
    telemetry::alert("sms", AlertOutcome::Sent);
    telemetry::alert("sms", AlertOutcome::Sent);
    telemetry::alert("push", AlertOutcome::OptedOut);
    telemetry::claim_won("routing", "app", Some(41_500));
    telemetry::billing_run(2, 300.0);
    let lines = flush();

    assert_eq!(
        with_metric(&lines, "AlertsSent"),
        &json!({
            "_aws": {
                "Timestamp": 1_700_000_000_000u64,
                "CloudWatchMetrics": [{
                    "Namespace": "ReferralRouting/test",
                    "Dimensions": [["Channel"]],
                    "Metrics": [{"Name": "AlertsSent", "Unit": "Count"}]
                }]
            },
            "Channel": "sms",
            "RequestId": "req-1",
            "AlertsSent": 2
        })
    );
    assert_eq!(with_metric(&lines, "AlertsOptedOut")["Channel"], "push");

    let speed = with_metric(&lines, "SpeedToLead");
    let meta = &speed["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(meta["Namespace"], "ReferralRouting/test");
    assert_eq!(meta["Dimensions"], json!([["Program", "Channel"]]));
    assert_eq!(
        meta["Metrics"],
        json!([{"Name": "SpeedToLead", "Unit": "Milliseconds"}])
    );
    assert_eq!(
        (&speed["Program"], &speed["Channel"]),
        (&json!("routing"), &json!("app"))
    );
    assert_eq!(speed["SpeedToLead"], json!([41500.0]));
    let won = with_metric(&lines, "ClaimsWon");
    assert_eq!(
        (&won["Channel"], &won["ClaimsWon"]),
        (&json!("app"), &json!(1))
    );

    let billing = with_metric(&lines, "BillingRuns");
    assert_eq!(
        billing["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([[]])
    );
    assert_eq!(billing["BillingRuns"], 1);
    assert_eq!(billing["Charges"], 2);
    assert_eq!(billing["ChargedAmount"], json!([300.0]));

    assert!(flush().is_empty(), "a flush writes each count once");
}
