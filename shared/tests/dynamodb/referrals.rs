//! Referrals on DynamoDB Local: creation once, the claim race, versioned updates with history.

use std::sync::Arc;
use std::time::Instant;

use shared::domain::claim::{self, ClaimRefusal};
use shared::domain::referral::{ClaimChannel, Closure, HistoryEntry, HistoryEvent, Program};
use shared::domain::stage::Stage;
use shared::domain::values::AgentId;
use shared::ports::{ClaimLines, ClaimOutcome, Created, ReferralStore, Saved};
use tokio::sync::Barrier;

use crate::harness::{at, id, referral, referral_id, table};

fn created(program: Program, when: &str) -> HistoryEntry {
    HistoryEntry::new(
        at(when),
        Some(id("advisor1")),
        HistoryEvent::Created {
            program,
            duplicate_of: None,
            reoffer_of: None,
        },
    )
}

fn note(text: &str, when: &str) -> HistoryEntry {
    HistoryEntry::new(
        at(when),
        Some(id("a1")),
        HistoryEvent::Note { text: text.into() },
    )
}

fn won_attempts(history: &[HistoryEntry]) -> Vec<AgentId> {
    history
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::ClaimAttempt {
                agent_id,
                won: true,
                ..
            } => Some(agent_id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn gen_5_create_referral_once_with_its_history() {
    let t = table("create-referral").await;
    let r = referral("r1", &[id("a1"), id("a2")]);
    let first = [created(Program::Routing, "2026-01-01T00:00:00Z")];
    assert!(
        t.store
            .create_referral(&r, &first, &shared::effects::Effects::default())
            .await
            .unwrap()
            .is_new()
    );

    // A retried intake creates nothing twice: no second referral, no second history entry.
    let mut changed = r.clone();
    changed.briefing = "a retry with other text".into();
    assert_eq!(
        t.store
            .create_referral(&changed, &first, &shared::effects::Effects::default())
            .await
            .unwrap(),
        Created::Exists
    );

    let stored = t.store.get_referral(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.value, r);
    assert_eq!(stored.version, 1);
    assert_eq!(t.store.history(&r.id).await.unwrap(), first.to_vec());
    assert_eq!(
        t.store.get_referral(&referral_id("nope")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn gen_2_history_is_oldest_first_and_keeps_order_within_a_millisecond() {
    let t = table("history-order").await;
    let r = referral("r1", &[id("a1")]);
    let later = note("second", "2026-01-02T00:00:00Z");
    let earlier = created(Program::Routing, "2026-01-01T00:00:00Z");
    // Given out of order: read back by time.
    assert!(
        t.store
            .create_referral(
                &r,
                &[later.clone(), earlier.clone()],
                &shared::effects::Effects::default()
            )
            .await
            .unwrap()
            .is_new()
    );
    let same_ms: Vec<HistoryEntry> = (0..5)
        .map(|i| note(&format!("same instant {i}"), "2026-01-03T00:00:00Z"))
        .collect();
    t.store.append_history(&r.id, &same_ms).await.unwrap();
    t.store.append_history(&r.id, &[]).await.unwrap();

    let mut expected = vec![earlier, later];
    expected.extend(same_ms);
    assert_eq!(t.store.history(&r.id).await.unwrap(), expected);
}

/// RC-1: what followed a moment is read alone, from that moment on, without older entries.
#[tokio::test]
async fn rc_1_history_since_a_moment_reads_only_what_followed() {
    let t = table("history-since").await;
    let r = referral("r1", &[id("a1")]);
    let before = created(Program::Routing, "2026-01-01T00:00:00Z");
    let at_claim = note("at the claim", "2026-01-02T00:00:00Z");
    let after = note("after", "2026-01-02T00:10:00Z");
    t.store
        .create_referral(
            &r,
            &[before, at_claim.clone(), after.clone()],
            &shared::effects::Effects::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        t.store
            .history_since(&r.id, at("2026-01-02T00:00:00Z"))
            .await
            .unwrap(),
        [at_claim, after]
    );
    assert!(
        t.store
            .history_since(&r.id, at("2026-01-03T00:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn wt_4_first_claim_wins_and_a_later_one_is_told_the_winner() {
    let t = table("claim-won-taken").await;
    let r = referral("r1", &[id("a1"), id("a2")]);
    assert!(
        t.store
            .create_referral(&r, &[], &shared::effects::Effects::default())
            .await
            .unwrap()
            .is_new()
    );
    let now = at("2026-01-01T00:00:42Z");

    let ClaimOutcome::Won(assignment) = t
        .store
        .claim(&r.id, &id("a1"), ClaimChannel::Sms, now)
        .await
        .unwrap()
    else {
        panic!("the first claim must win");
    };
    // Exactly what the domain's own claim makes of the referral.
    let won = claim::claim(&r, &id("a1"), ClaimChannel::Sms, now).unwrap();
    assert_eq!(Some(&assignment), won.assignment());
    assert_eq!(
        t.store.get_referral(&r.id).await.unwrap().unwrap().value,
        won
    );
    assert_eq!(won.stage(), Some(Stage::LeftVoicemail));
    assert_eq!(
        t.store.get_referral(&r.id).await.unwrap().unwrap().version,
        2
    );

    let later = t
        .store
        .claim(&r.id, &id("a2"), ClaimChannel::App, now)
        .await
        .unwrap();
    assert_eq!(
        later,
        ClaimOutcome::Refused(ClaimRefusal::Taken { winner: id("a1") })
    );
    // The winner claiming again is refused too, and nothing more is written.
    let again = t
        .store
        .claim(&r.id, &id("a1"), ClaimChannel::App, now)
        .await
        .unwrap();
    assert_eq!(
        again,
        ClaimOutcome::Refused(ClaimRefusal::Taken { winner: id("a1") })
    );
    let history = t.store.history(&r.id).await.unwrap();
    assert_eq!(won_attempts(&history), vec![id::<AgentId>("a1")]);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].at, now);
    assert_eq!(
        t.store.get_referral(&r.id).await.unwrap().unwrap().version,
        2
    );

    // LR-1: the claim puts it in the winner's list, at its stage.
    let mine = t.store.agent_referrals(&id("a1"), None).await.unwrap();
    assert_eq!(mine, vec![won.clone()]);
    assert_eq!(
        t.store
            .agent_referrals(&id("a1"), Some(Stage::LeftVoicemail))
            .await
            .unwrap(),
        vec![won]
    );
    assert!(
        t.store
            .agent_referrals(&id("a1"), Some(Stage::Connected))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        t.store
            .agent_referrals(&id("a2"), None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn lr_1_lr_8_not_offered_declined_and_closed_claims_are_refused_without_writing() {
    let t = table("claim-refusals").await;
    let now = at("2026-01-01T00:01:00Z");
    let mut r = referral("r1", &[id("a1"), id("a2")]);
    r.declined.insert(id("a2"));
    assert!(
        t.store
            .create_referral(&r, &[], &shared::effects::Effects::default())
            .await
            .unwrap()
            .is_new()
    );

    let (a1, a2, x9): (AgentId, AgentId, AgentId) = (id("a1"), id("a2"), id("x9"));
    let claim = |agent| t.store.claim(&r.id, agent, ClaimChannel::App, now);
    assert_eq!(
        claim(&x9).await.unwrap(),
        ClaimOutcome::Refused(ClaimRefusal::NotOffered)
    );
    assert_eq!(
        claim(&a2).await.unwrap(),
        ClaimOutcome::Refused(ClaimRefusal::Declined)
    );
    let stored = t.store.get_referral(&r.id).await.unwrap().unwrap();
    assert_eq!((stored.value, stored.version), (r.clone(), 1));
    assert!(t.store.history(&r.id).await.unwrap().is_empty());

    // The team lead declined it for everyone: closed to the agent who had not declined.
    let mut closed = referral("r2", &[id("a1")]);
    closed.closure = Some(Closure::DeclinedByTeam);
    assert!(
        t.store
            .create_referral(&closed, &[], &shared::effects::Effects::default())
            .await
            .unwrap()
            .is_new()
    );
    assert_eq!(
        t.store
            .claim(&closed.id, &id("a1"), ClaimChannel::App, now)
            .await
            .unwrap(),
        ClaimOutcome::Refused(ClaimRefusal::Closed(Closure::DeclinedByTeam))
    );

    // The agent who may still claim it does win.
    assert!(matches!(claim(&a1).await.unwrap(), ClaimOutcome::Won(_)));
}

#[tokio::test]
async fn claim_of_a_missing_referral_is_not_found_and_creates_nothing() {
    let t = table("claim-missing").await;
    let missing = referral_id("ghost");
    let outcome = t
        .store
        .claim(
            &missing,
            &id("a1"),
            ClaimChannel::App,
            at("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(outcome, ClaimOutcome::NotFound);
    assert_eq!(t.store.get_referral(&missing).await.unwrap(), None);
    assert!(t.store.history(&missing).await.unwrap().is_empty());
}

/// WT-4: 40 referrals, each offered to 50 agents who all claim at once from their own tasks.
/// (The bench races 5 000 claims; this keeps `make test` steady on a busy 2-core machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wt_4_race_exactly_one_winner_and_every_loser_learns_who_won() {
    const REFERRALS: usize = 40;
    const AGENTS: usize = 50;
    /// Referrals raced at the same time: 2 x 50 claims in flight.
    const REFERRALS_AT_ONCE: usize = 2;

    let t = table("claim-race").await;
    let store = Arc::new(t.store.clone());
    let agents: Vec<AgentId> = (0..AGENTS).map(|i| id(&format!("agent-{i:02}"))).collect();
    let referrals: Vec<_> = (0..REFERRALS)
        .map(|i| referral(&format!("race-{i:03}"), &agents))
        .collect();
    let mut seeding = tokio::task::JoinSet::new();
    for r in referrals.clone() {
        let store = store.clone();
        seeding.spawn(async move {
            store
                .create_referral(&r, &[], &shared::effects::Effects::default())
                .await
        });
    }
    while let Some(created) = seeding.join_next().await {
        assert!(created.unwrap().unwrap().is_new());
    }

    let started = Instant::now();
    let now = at("2026-01-01T00:00:05Z");
    for batch in referrals.chunks(REFERRALS_AT_ONCE) {
        let mut claims = tokio::task::JoinSet::new();
        for r in batch {
            let barrier = Arc::new(Barrier::new(AGENTS));
            for agent in &agents {
                let (store, barrier, rid, agent) =
                    (store.clone(), barrier.clone(), r.id.clone(), agent.clone());
                claims.spawn(async move {
                    barrier.wait().await;
                    let outcome = store.claim(&rid, &agent, ClaimChannel::App, now).await;
                    (rid, agent, outcome)
                });
            }
        }
        let mut outcomes = std::collections::BTreeMap::<_, Vec<_>>::new();
        while let Some(joined) = claims.join_next().await {
            let (rid, agent, outcome) = joined.unwrap();
            let outcome =
                outcome.unwrap_or_else(|e| panic!("{agent}'s claim on {rid} failed: {e:?}"));
            outcomes.entry(rid).or_default().push((agent, outcome));
        }
        for (rid, outcomes) in outcomes {
            assert_eq!(outcomes.len(), AGENTS);
            let winners: Vec<&AgentId> = outcomes
                .iter()
                .filter_map(|(agent, o)| match o {
                    ClaimOutcome::Won(won) => {
                        assert_eq!(&won.agent_id, agent);
                        Some(agent)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "{rid}: exactly one winner, got {winners:?}"
            );
            let winner = winners[0].clone();
            for (agent, outcome) in &outcomes {
                if agent != &winner {
                    assert_eq!(
                        outcome,
                        &ClaimOutcome::Refused(ClaimRefusal::Taken {
                            winner: winner.clone()
                        }),
                        "{rid}: loser {agent} must be told {winner} won"
                    );
                }
            }
            let stored = store.get_referral(&rid).await.unwrap().unwrap();
            assert_eq!(stored.value.assigned_agent(), Some(&winner));
            assert_eq!(
                won_attempts(&store.history(&rid).await.unwrap()),
                vec![winner]
            );
        }
    }
    let elapsed = started.elapsed();
    println!(
        "race: {} claims on {REFERRALS} referrals in {elapsed:.2?}",
        REFERRALS * AGENTS
    );
}

#[tokio::test]
async fn st_10_update_is_versioned_and_lands_with_its_history_or_not_at_all() {
    let t = table("versioned-update").await;
    let r = referral("r1", &[id("a1")]);
    assert!(
        t.store
            .create_referral(&r, &[], &shared::effects::Effects::default())
            .await
            .unwrap()
            .is_new()
    );
    let claimed_at = at("2026-01-01T00:01:00Z");
    let outcome = t
        .store
        .claim(&r.id, &id("a1"), ClaimChannel::App, claimed_at)
        .await
        .unwrap();
    assert!(matches!(outcome, ClaimOutcome::Won(_)), "claim must win");
    let read = t.store.get_referral(&r.id).await.unwrap().unwrap();
    assert_eq!(read.version, 2);
    let won = read.value.clone();

    let mut connected = won.clone();
    let pipeline = &mut connected.assigned.as_mut().unwrap().pipeline;
    pipeline.stage = Stage::Connected;
    pipeline.updated_at = at("2026-01-02T00:00:00Z");
    let change = HistoryEntry::new(
        at("2026-01-02T00:00:00Z"),
        Some(id("a1")),
        HistoryEvent::StageChanged {
            from: Some(Stage::LeftVoicemail),
            to: Stage::Connected,
        },
    );
    assert_eq!(
        t.store
            .update_referral(
                &connected,
                read.version,
                std::slice::from_ref(&change),
                &shared::effects::Effects::default()
            )
            .await
            .unwrap(),
        Saved::Ok
    );
    let after = t.store.get_referral(&r.id).await.unwrap().unwrap();
    assert_eq!((after.value.clone(), after.version), (connected.clone(), 3));

    // A writer still holding version 2 is stale, and its history entry is not written either.
    let mut stale = won.clone();
    stale.assigned.as_mut().unwrap().pipeline.stage = Stage::MeetingScheduled;
    let stale_note = note("written by a stale writer", "2026-01-03T00:00:00Z");
    assert_eq!(
        t.store
            .update_referral(
                &stale,
                read.version,
                &[stale_note],
                &shared::effects::Effects::default()
            )
            .await
            .unwrap(),
        Saved::Stale
    );
    assert_eq!(t.store.get_referral(&r.id).await.unwrap().unwrap(), after);
    let history = t.store.history(&r.id).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1], change);

    // The agent's list follows the stage.
    assert_eq!(
        t.store
            .agent_referrals(&id("a1"), Some(Stage::Connected))
            .await
            .unwrap(),
        vec![connected]
    );
    assert!(
        t.store
            .agent_referrals(&id("a1"), Some(Stage::LeftVoicemail))
            .await
            .unwrap()
            .is_empty()
    );

    // Updating a referral that does not exist is stale, not a silent create.
    let ghost = referral("ghost", &[id("a1")]);
    assert_eq!(
        t.store
            .update_referral(&ghost, 1, &[], &shared::effects::Effects::default())
            .await
            .unwrap(),
        Saved::Stale
    );
    assert_eq!(t.store.get_referral(&ghost.id).await.unwrap(), None);
}

#[tokio::test]
async fn lr_9_claim_codes_are_written_with_the_referral_and_unique_per_agent() {
    let t = table("claim-codes").await;
    let mut r = referral("r1", &[id("a1"), id("a2")]);
    r.codes = [(id("a1"), "#4821".into()), (id("a2"), "#4821".into())].into();
    assert_eq!(
        t.store
            .create_referral(&r, &[], &shared::effects::Effects::default())
            .await
            .unwrap(),
        Created::Yes
    );
    let now = r.created_at;
    assert_eq!(
        t.store
            .code_referral(&id("a1"), "#4821", now)
            .await
            .unwrap(),
        Some(r.id.clone())
    );
    assert_eq!(
        t.store
            .code_referral(&id("a1"), "#1111", now)
            .await
            .unwrap(),
        None
    );

    // a1 holds #4821 for r1: another referral offering a1 the same code writes nothing at all.
    let mut other = referral("r2", &[id("a1"), id("a3")]);
    other.codes = [(id("a1"), "#4821".into()), (id("a3"), "#0007".into())].into();
    assert_eq!(
        t.store
            .create_referral(&other, &[], &shared::effects::Effects::default())
            .await
            .unwrap(),
        Created::CodeInUse
    );
    assert!(t.store.get_referral(&other.id).await.unwrap().is_none());
    assert_eq!(
        t.store
            .code_referral(&id("a3"), "#0007", now)
            .await
            .unwrap(),
        None
    );

    // Codes stop working when their offer expires, and may then be drawn again.
    let later = now + claim::CODE_LIFETIME + jiff::SignedDuration::from_secs(1);
    assert_eq!(
        t.store
            .code_referral(&id("a1"), "#4821", later)
            .await
            .unwrap(),
        None
    );
    other.created_at = later;
    assert_eq!(
        t.store
            .create_referral(&other, &[], &shared::effects::Effects::default())
            .await
            .unwrap(),
        Created::Yes
    );
}

#[tokio::test]
async fn lr_10_claim_calls_are_versioned_and_a_pin_reaches_the_pin_line() {
    let t = table("claim-calls").await;
    let r = referral_id("r1");
    let a = id("a1");
    let first = t.store.claim_calls(&r, &a).await.unwrap();
    assert_eq!(first.version, 0);
    let mut calls = first.value.clone();
    assert!(!calls.record_failed_call());
    assert_eq!(
        t.store
            .save_claim_calls(&r, &a, &calls, 0, &[], &shared::effects::Effects::default())
            .await
            .unwrap(),
        Saved::Ok
    );
    // A concurrent status callback that read version 0 must read again.
    assert_eq!(
        t.store
            .save_claim_calls(&r, &a, &calls, 0, &[], &shared::effects::Effects::default())
            .await
            .unwrap(),
        Saved::Stale
    );
    assert_eq!(t.store.pin_referral(&a).await.unwrap(), None);

    let mut second = t.store.claim_calls(&r, &a).await.unwrap();
    assert_eq!((second.version, second.value.failed_calls), (1, 1));
    assert!(second.value.record_failed_call());
    second.value.pin = Some(claim::Pin::from_random(123_456));
    assert_eq!(
        t.store
            .save_claim_calls(
                &r,
                &a,
                &second.value,
                1,
                &[],
                &shared::effects::Effects::default()
            )
            .await
            .unwrap(),
        Saved::Ok
    );
    assert_eq!(t.store.pin_referral(&a).await.unwrap(), Some(r.clone()));
    let stored = t.store.claim_calls(&r, &a).await.unwrap();
    assert_eq!(stored.value.pin.unwrap().code, "123456");
    // Claim calls live outside the referral's partition: its history never reads them.
    assert!(t.store.history(&r).await.unwrap().is_empty());
}

#[tokio::test]
async fn ppl_4_call_first_referral_refuses_app_and_text_claims_in_the_write_itself() {
    let t = table("call-first").await;
    let mut r = referral("r1", &[id("a1")]);
    r.call_first = true;
    assert!(
        t.store
            .create_referral(&r, &[], &shared::effects::Effects::default())
            .await
            .unwrap()
            .is_new()
    );
    let now = at("2026-01-01T00:01:00Z");
    for channel in [ClaimChannel::App, ClaimChannel::Sms] {
        assert_eq!(
            t.store.claim(&r.id, &id("a1"), channel, now).await.unwrap(),
            ClaimOutcome::Refused(ClaimRefusal::CallFirst)
        );
    }
    assert!(matches!(
        t.store
            .claim(&r.id, &id("a1"), ClaimChannel::Call, now)
            .await
            .unwrap(),
        ClaimOutcome::Won(_)
    ));
}

/// RC-5: a referral is on the closings desk while in escrow or closed, listed by stage in id
/// order and in pages; put back to Listing, it leaves the desk.
#[tokio::test]
async fn rc_5_the_desk_lists_referrals_by_stage_and_forgets_one_put_back() {
    let t = table("desk").await;
    let s = &t.store;
    let a1: AgentId = id("a1");
    let at_stage = |rid: &str, stage: Stage| {
        let mut r = referral(rid, std::slice::from_ref(&a1));
        let mut assigned = shared::domain::referral::Assigned::claimed(
            a1.clone(),
            at("2026-01-02T00:00:00Z"),
            ClaimChannel::App,
        );
        assigned.pipeline.stage = stage;
        r.assigned = Some(assigned);
        r
    };
    for (rid, stage) in [
        ("r1", Stage::InEscrow),
        ("r2", Stage::Closed),
        ("r3", Stage::InEscrow),
        ("r4", Stage::ClosedPaid),
        ("r5", Stage::Listing),
        ("r6", Stage::InEscrow),
    ] {
        s.create_referral(
            &at_stage(rid, stage),
            &[],
            &shared::effects::Effects::default(),
        )
        .await
        .unwrap();
    }
    let ids = |list: Vec<shared::domain::referral::Referral>| {
        list.into_iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.desk_referrals(Stage::InEscrow, None, 10).await.unwrap()),
        ["r1", "r3", "r6"]
    );
    assert_eq!(
        ids(s.desk_referrals(Stage::InEscrow, None, 2).await.unwrap()),
        ["r1", "r3"]
    );
    assert_eq!(
        ids(s
            .desk_referrals(Stage::InEscrow, Some(&id("r3")), 2)
            .await
            .unwrap()),
        ["r6"]
    );
    assert_eq!(
        ids(s.desk_referrals(Stage::Closed, None, 10).await.unwrap()),
        ["r2"]
    );
    assert_eq!(
        ids(s.desk_referrals(Stage::ClosedPaid, None, 10).await.unwrap()),
        ["r4"]
    );
    let stored = s.get_referral(&id("r1")).await.unwrap().unwrap();
    let back = at_stage("r1", Stage::Listing);
    assert_eq!(
        s.update_referral(
            &back,
            stored.version,
            &[],
            &shared::effects::Effects::default()
        )
        .await
        .unwrap(),
        Saved::Ok
    );
    assert_eq!(
        ids(s.desk_referrals(Stage::InEscrow, None, 10).await.unwrap()),
        ["r3", "r6"]
    );
}

/// RC-4: a client's referrals are found by either contact key, newest first, only those of the
/// window asked for; the index item holds the key and the referral, never the contact.
#[tokio::test]
async fn rc_4_referrals_by_contact_key_newest_first_within_the_window() {
    let t = table("contact-keys").await;
    let none = shared::effects::Effects::default();
    let mut old = referral("r-old", &[id("a1")]);
    old.contact_keys = vec!["phone-key".into(), "email-key".into()];
    let mut new = referral("r-new", &[id("a1")]);
    new.created_at = at("2026-02-01T00:00:00Z");
    new.contact_keys = vec!["phone-key".into(), "other-email-key".into()];
    for r in [&old, &new] {
        let history = [created(Program::Routing, "2026-01-01T00:00:00Z")];
        assert!(
            t.store
                .create_referral(r, &history, &none)
                .await
                .unwrap()
                .is_new()
        );
    }
    let keys = ["phone-key".to_owned(), "email-key".to_owned()];
    let found = t
        .store
        .referrals_by_contact(&keys, at("2025-12-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(found, [referral_id("r-new"), referral_id("r-old")]);
    let recent = t
        .store
        .referrals_by_contact(&keys, at("2026-01-15T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(recent, [referral_id("r-new")]);
    let by_email = t
        .store
        .referrals_by_contact(&["email-key".to_owned()], at("2025-12-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(by_email, [referral_id("r-old")]);
}
