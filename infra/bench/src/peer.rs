//! The peer (issue: "a peer, side by side"): the same claim as a Python Lambda with boto3
//! (`infra/bench/peer/claim.py`), the usual alternative, run under AWS's runtime interface
//! client (`awslambdaric`) against the same Runtime API harness and DynamoDB Local as the claim
//! function. Cold start (spawn to first poll) and warm claim (an event handed over to its
//! answer), each as the peer's time over ours, interleaved so the machine's drift hits both.

use std::collections::HashMap;
use std::path::Path;

use jiff::Timestamp;
use shared::dynamodb::DynamoDbStore;
use shared::ports::ReferralStore;

use crate::cold::{self, Runtime, Warm};
use crate::{Error, claim_event, median, quantile, referral, spread};

/// Spawns of each, interleaved.
const COLD_ROUNDS: usize = 31;
/// Warm claims of each, interleaved, after `WARM_UP` of each.
const WARM_CLAIMS: usize = 60;
const WARM_UP: usize = 10;

fn answered_200(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["statusCode"].as_u64())
        == Some(200)
}

pub async fn compare(
    store: &DynamoDbStore,
    workspace: &Path,
    env: &HashMap<String, String>,
    now: Timestamp,
) -> Result<(), Error> {
    let ours = Runtime::Binary(cold::release_binary(workspace, "claim")?);
    let python = workspace.join(".local/venv/bin/python");
    if !python.is_file() {
        return Err(format!("{} is missing: `make bench` installs it", python.display()).into());
    }
    let peer = Runtime::Python {
        python,
        root: workspace.join("infra/bench/peer"),
        handler: "claim.handler".into(),
    };
    // boto3 reads the region from AWS_DEFAULT_REGION, which Lambda sets beside AWS_REGION.
    let mut env = env.clone();
    env.insert("AWS_DEFAULT_REGION".into(), env["AWS_REGION"].clone());

    let (mut our_cold, mut peer_cold) = (Vec::new(), Vec::new());
    for _ in 0..COLD_ROUNDS {
        our_cold.push(cold::start_command(&ours, &env, None).await?);
        peer_cold.push(cold::start_command(&peer, &env, None).await?);
    }
    let init = |starts: &[cold::Start]| median(starts.iter().map(|s| s.init).collect());
    let peak = |starts: &[cold::Start]| {
        starts.iter().map(|s| s.peak_kib).max().unwrap_or(0) as f64 * 1024.0 / 1e6
    };
    let inits = |starts: &[cold::Start]| starts.iter().map(|s| s.init).collect::<Vec<_>>();
    println!(
        "peer (Python 3 + boto3 under awslambdaric), cold start to the first poll, median of \
         {COLD_ROUNDS}: ours {:?} ({}, peak {:.1} MB), peer {:?} ({}, peak {:.1} MB): peer / \
         ours {:.1}",
        init(&our_cold),
        spread(&inits(&our_cold)),
        peak(&our_cold),
        init(&peer_cold),
        spread(&inits(&peer_cold)),
        peak(&peer_cold),
        init(&peer_cold).as_secs_f64() / init(&our_cold).as_secs_f64()
    );

    let (mut our_fn, mut peer_fn) = (
        Warm::start(&ours, &env).await?,
        Warm::start(&peer, &env).await?,
    );
    let (mut our_warm, mut peer_warm) = (Vec::new(), Vec::new());
    for i in 0..WARM_UP + WARM_CLAIMS {
        let (a, b) = (format!("peer-ours-{i}"), format!("peer-boto3-{i}"));
        for id in [&a, &b] {
            store
                .create_referral(&referral(id, now)?, &[], &Default::default())
                .await?;
        }
        let (took, body) = our_fn.invoke(claim_event(&a)).await?;
        if !answered_200(&body) {
            return Err(format!("our claim {i} did not win: {body}").into());
        }
        let (peer_took, peer_body) = peer_fn.invoke(claim_event(&b)).await?;
        if !answered_200(&peer_body) {
            return Err(format!("the peer's claim {i} did not win: {peer_body}").into());
        }
        if i >= WARM_UP {
            our_warm.push(took);
            peer_warm.push(peer_took);
        }
    }
    println!(
        "peer, warm claim through the Runtime API, {WARM_CLAIMS} each: ours median {:?} \
         (p90 {:?}), peer median {:?} (p90 {:?}): peer / ours {:.2}",
        median(our_warm.clone()),
        quantile(our_warm.clone(), 0.9),
        median(peer_warm.clone()),
        quantile(peer_warm.clone(), 0.9),
        median(peer_warm).as_secs_f64() / median(our_warm).as_secs_f64()
    );
    Ok(())
}
