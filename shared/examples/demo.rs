//! A scripted day in the life of the service, played in process over the in-memory adapters:
//! a team sets up lead routing, a referral is claimed in a race, moves through its stages, and a
//! month passes with billing and reminders. `make run` plays it.

use jiff::{SignedDuration, Timestamp};
use shared::app::billing::{run_billing, sign_up};
use shared::app::claim::{after_claim, claim_referral};
use shared::app::pipeline::{add_note, change_stage, list_on_date, record_payment};
use shared::app::reminders::run_reminders;
use shared::app::settings::put_routing;
use shared::app::{Actor, AppError, Role};
use shared::domain::billing::SignUp;
use shared::domain::referral::ClaimChannel;
use shared::domain::stage::{Stage, StageChange};
use shared::domain::team::{Receives, RoutingMember, RoutingUpdate};
use shared::domain::values::{AgentId, ClientType};
use shared::fixtures::seed_example;
use shared::memory::{Sent, in_memory_services};

fn agent(id: &str) -> Actor {
    Actor {
        user: id.parse().expect("example id"),
        role: Role::Agent,
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let day0: Timestamp = "2027-01-01T17:00:00Z".parse().expect("example time");
    let day = |n: i64| day0 + SignedDuration::from_hours(24 * n);
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, day0).await;
    println!(
        "Seeded: agents ana (team lead), ben and cy of bay-team; referral ref-1, a seller in 94110."
    );

    let routing = put_routing(
        &s,
        &agent("ana"),
        &"bay-team".parse().expect("example id"),
        RoutingUpdate {
            enabled: true,
            fallback_agent_id: None,
            members: Some(vec![
                RoutingMember {
                    agent_id: "ben".parse().expect("example id"),
                    receives: Receives::Seller,
                    warm_transfer: true,
                    daily_cap: None,
                },
                RoutingMember {
                    agent_id: "cy".parse().expect("example id"),
                    receives: Receives::Buyer,
                    warm_transfer: false,
                    daily_cap: None,
                },
            ]),
            ..Default::default()
        },
    )
    .await?;
    println!(
        "Lead routing on: fallback {}, {} members (LR-2, LR-4).",
        routing.fallback_agent_id(),
        routing.members().len()
    );
    let overfull = put_routing(
        &s,
        &agent("ana"),
        &"bay-team".parse().expect("example id"),
        RoutingUpdate {
            enabled: true,
            fallback_agent_id: None,
            members: Some(vec![RoutingMember {
                agent_id: "ghost".parse().expect("example id"),
                receives: Receives::Both,
                warm_transfer: false,
                daily_cap: None,
            }]),
            ..Default::default()
        },
    )
    .await;
    if let Err(e) = overfull {
        println!("Refused as expected: {} ({})", e.public_message(), e.code());
    }

    let id = "ref-1".parse().expect("example id");
    let claim_at = day0 + SignedDuration::from_secs(42);
    let (ben_id, ana_id): (AgentId, AgentId) = (
        "ben".parse().expect("example id"),
        "ana".parse().expect("example id"),
    );
    let (ben, ana) = tokio::join!(
        claim_referral(&s, &ben_id, &id, ClaimChannel::Sms, claim_at),
        claim_referral(&s, &ana_id, &id, ClaimChannel::App, claim_at),
    );
    for (who, outcome) in [("ben", ben), ("ana", ana)] {
        match outcome {
            Ok(_) => println!("{who} claimed ref-1 first (WT-4)."),
            Err(e) => println!("{who} was told: {} ({})", e.public_message(), e.code()),
        }
    }
    let winner: AgentId = store
        .get_referral_sync(&id)
        .and_then(|r| r.assigned_agent().cloned())
        .expect("someone won");
    after_claim(&s, &id, &winner, claim_at).await?;
    let owner = agent(winner.as_str());

    change_stage(&s, &owner, &id, &StageChange::to(Stage::Connected), day(1)).await?;
    match change_stage(
        &s,
        &owner,
        &id,
        &StageChange::to(Stage::LeftVoicemail),
        day(2),
    )
    .await
    {
        Err(e) => println!("Backward move refused: {}", e.public_message()),
        Ok(_) => println!("unexpected: a backward move was accepted"),
    }
    add_note(
        &s,
        &owner,
        &id,
        "Client wants to list in three weeks.",
        None,
        day(2),
    )
    .await?;
    let soon = StageChange {
        list_date: Some(jiff::civil::date(2027, 1, 25)),
        ..StageChange::to(Stage::ComingSoon)
    };
    change_stage(&s, &owner, &id, &soon, day(3)).await?;
    let listed = list_on_date(
        &s,
        &id,
        "2027-01-25T08:00:00Z".parse().expect("example time"),
    )
    .await?;
    println!("Coming Soon listed on its date: {listed} (ST-3).");

    let ana_actor = agent("ana");
    let sub = sign_up(
        &s,
        &ana_actor,
        SignUp {
            zips: ["94110".parse().expect("example zip")].into(),
            client_types: [ClientType::Seller].into(),
            referrals_per_cycle: 3,
        },
        None,
        day0,
    )
    .await?
    .0;
    println!(
        "PPL subscription {}: {} referrals a cycle, first charge {} (PPL-2), for what it receives (PPL-11).",
        sub.subscription.id,
        sub.quota_this_cycle,
        sub.next_charge_at
            .map_or_else(|| "none".to_owned(), |at| at.to_string())
    );
    for n in [13, 15, 29, 30, 30] {
        let charged = run_billing(&s, day(n)).await?.charged.len();
        let reminded = run_reminders(&s, day(n)).await?.reminded.len();
        shared::memory::deliver(&s, &outbox, day(n)).await?;
        println!("Day {n}: {charged} charge(s), {reminded} reminder(s).");
    }

    let escrow = StageChange {
        sale_price: Some("915000".parse().expect("example price")),
        close_date: Some(jiff::civil::date(2027, 3, 1)),
        ..StageChange::to(Stage::InEscrow)
    };
    change_stage(&s, &owner, &id, &escrow, day(35)).await?;
    change_stage(&s, &owner, &id, &StageChange::to(Stage::Closed), day(60)).await?;
    let closings = Actor {
        user: "closer-1".parse().expect("example id"),
        role: Role::Closings,
    };
    record_payment(&s, &closings, &id, day(70)).await?;
    println!("ref-1 is Closed-Paid (ST-6).");

    println!("\nOutbox:");
    for sent in outbox.sent() {
        match sent {
            Sent::Sms { to, body } => println!("  sms   {to}: {body}"),
            Sent::Push { token, title, .. } => println!("  push  {token}: {title}"),
            Sent::Email(m) => println!("  email {}: {}", m.to, m.subject),
            Sent::Queued(d) => println!("  queue {} ({})", d.key, d.channel()),
            Sent::Event(kind, detail) => println!("  event {kind}: {detail}"),
            Sent::Scheduled(timer) => println!("  timer {} at {}", timer.name, timer.at),
            Sent::Delayed { timer, delay } => {
                println!(
                    "  timer {} at {} (queued, delayed {delay})",
                    timer.name, timer.at
                )
            }
            Sent::Cancelled { name } => println!("  cancel {name}"),
            Sent::Call { to, url, .. } => println!("  call  {to}: {url}"),
            Sent::OptIn { to } => println!("  opt in {to}"),
            Sent::CallUpdate { call_sid, .. } => println!("  call update {call_sid}"),
        }
    }
    Ok(())
}
