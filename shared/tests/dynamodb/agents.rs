//! Agents, phones, the eligibility index, teams and routing on DynamoDB Local.

use std::sync::Arc;

use shared::domain::team::{Receives, RoutingMember, RoutingSettings, Team};
use shared::domain::values::{AgentId, ClientType, Phone, Zip};
use shared::ports::AgentDirectory;

use crate::harness::{agent, id, table};

fn ids(agents: &[shared::domain::agent::Agent]) -> Vec<AgentId> {
    let mut ids: Vec<AgentId> = agents.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn agent_profile_round_trips_and_batch_reads_skip_unknown_ids() {
    let t = table("agent-profile").await;
    let mut a1 = agent("a1");
    a1.office_phone = Some(id("+14155550111"));
    a1.fee_percent = Some(id("25"));
    a1.vacation =
        Some(shared::domain::agent::Vacation::new(id("2026-12-01"), id("2026-12-05")).unwrap());
    t.store.put_agent(&a1).await.unwrap();
    t.store.put_agent(&agent("a2")).await.unwrap();

    assert_eq!(
        t.store.get_agent(&id("a1")).await.unwrap(),
        Some(a1.clone())
    );
    assert_eq!(t.store.get_agent(&id("nobody")).await.unwrap(), None);
    let found = t
        .store
        .get_agents(&[id("a2"), id("nobody"), id("a1"), id("a2")])
        .await
        .unwrap();
    assert_eq!(ids(&found), vec![id::<AgentId>("a1"), id("a2")]);
    assert!(t.store.get_agents(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn wt_3_agents_serving_follow_the_profile_and_drop_what_it_no_longer_serves() {
    let t = table("agents-serving").await;
    let z94110: Zip = id("94110");
    let z94117: Zip = id("94117");
    let mut a1 = agent("a1");
    a1.zips = [z94110.clone(), z94117.clone()].into();
    let mut a2 = agent("a2");
    a2.client_types = [ClientType::Buyer].into();
    t.store.put_agent(&a1).await.unwrap();
    t.store.put_agent(&a2).await.unwrap();

    let serving = |zip: Zip, ct| {
        let store = t.store.clone();
        async move { ids(&store.agents_serving(&zip, ct).await.unwrap()) }
    };
    assert_eq!(
        serving(z94110.clone(), ClientType::Buyer).await,
        vec![id::<AgentId>("a1"), id("a2")]
    );
    assert_eq!(
        serving(z94110.clone(), ClientType::Seller).await,
        vec![id::<AgentId>("a1")]
    );
    assert_eq!(
        serving(z94117.clone(), ClientType::Seller).await,
        vec![id::<AgentId>("a1")]
    );
    assert!(serving(id("10001"), ClientType::Buyer).await.is_empty());

    // a1 stops serving 94117 and sellers: the index items for those go, the rest stay.
    a1.zips = [z94110.clone()].into();
    a1.client_types = [ClientType::Buyer].into();
    t.store.put_agent(&a1).await.unwrap();
    assert!(serving(z94117.clone(), ClientType::Seller).await.is_empty());
    assert!(serving(z94117, ClientType::Buyer).await.is_empty());
    assert!(serving(z94110.clone(), ClientType::Seller).await.is_empty());
    assert_eq!(
        serving(z94110, ClientType::Buyer).await,
        vec![id::<AgentId>("a1"), id("a2")]
    );
}

#[tokio::test]
async fn tx_3_a_number_finds_its_agent_only_once_taken_and_has_one_owner() {
    let t = table("agent-by-phone").await;
    let mut a1 = agent("a1");
    a1.cell_phone = Some(id("+14155550101"));
    a1.office_phone = Some(id("+14155550199"));
    t.store.put_agent(&a1).await.unwrap();
    // Saved, not proved: the number identifies nobody yet.
    assert_eq!(
        t.store.agent_by_phone(&id("+14155550101")).await.unwrap(),
        None
    );
    for phone in ["+14155550101", "+14155550199"] {
        assert!(t.store.take_phone(&id("a1"), &id(phone)).await.unwrap());
    }
    assert_eq!(
        t.store.agent_by_phone(&id("+14155550199")).await.unwrap(),
        Some(id("a1"))
    );
    // Taking it again is harmless; another agent cannot take it.
    assert!(
        t.store
            .take_phone(&id("a1"), &id("+14155550199"))
            .await
            .unwrap()
    );
    assert!(
        !t.store
            .take_phone(&id("a2"), &id("+14155550199"))
            .await
            .unwrap()
    );

    // a1 drops the office line: released, and then a2 can prove it.
    a1.office_phone = None;
    t.store.put_agent(&a1).await.unwrap();
    assert_eq!(
        t.store.agent_by_phone(&id("+14155550199")).await.unwrap(),
        None
    );
    assert!(
        t.store
            .take_phone(&id("a2"), &id("+14155550199"))
            .await
            .unwrap()
    );
    assert_eq!(
        t.store.agent_by_phone(&id("+14155550199")).await.unwrap(),
        Some(id("a2"))
    );
}

#[tokio::test]
async fn tx_3_a_pending_code_is_saved_with_its_text_and_ended_by_taking_the_number() {
    use shared::effects::{Delivery, Effect, Effects, Message, Recipient};
    use shared::ports::PhoneVerification;
    let t = table("phone-verification").await;
    let phone: Phone = id("+14155550101");
    let pending = PhoneVerification {
        code: "123456".into(),
        sent_at: "2026-03-02T17:00:00Z".parse().unwrap(),
        valid_until: "2026-03-02T17:15:00Z".parse().unwrap(),
        wrong_tries: 1,
    };
    let text = Effects::new("verify#a1#1").with(Effect::Deliver(Delivery {
        key: "verify#a1#1".into(),
        referral_id: None,
        to: Recipient::Phone {
            phone: phone.clone(),
        },
        message: Message::Sms {
            body: "Code: 123456".into(),
        },
    }));
    t.store
        .save_phone_verification(&id("a1"), &phone, Some(&pending), &text)
        .await
        .unwrap();
    assert_eq!(
        t.store.phone_verification(&id("a1"), &phone).await.unwrap(),
        Some(pending)
    );
    assert_eq!(t.store.effects("verify#a1#1").await.unwrap(), Some(text));
    assert!(t.store.take_phone(&id("a1"), &phone).await.unwrap());
    assert_eq!(
        t.store.phone_verification(&id("a1"), &phone).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_1_response_times_are_all_kept_under_concurrent_recording() {
    let t = table("response-times").await;
    t.store.put_agent(&agent("a1")).await.unwrap();
    let store = Arc::new(t.store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for ms in [1000u64, 2000, 3000, 4000, 5000] {
        let store = store.clone();
        tasks.spawn(async move { store.record_response_time(&id("a1"), ms).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let a1 = t.store.get_agent(&id("a1")).await.unwrap().unwrap();
    assert_eq!(a1.response_times.len(), 5);
    assert_eq!(a1.response_times.median_millis(), Some(3000));
    // The rest of the profile is untouched.
    assert_eq!(a1.name, "Agent a1");
    // WT-3: the serving-area copies that rank a warm transfer's agents carry the new times.
    let serving = t
        .store
        .agents_serving(
            &"94110".parse().unwrap(),
            shared::domain::values::ClientType::Buyer,
        )
        .await
        .unwrap();
    assert_eq!(serving.len(), 1);
    assert_eq!(serving[0].response_times.median_millis(), Some(3000));
    // An unknown agent's response is dropped, not an error for the claim that reported it.
    t.store
        .record_response_time(&id("nobody"), 10)
        .await
        .unwrap();
    assert_eq!(t.store.get_agent(&id("nobody")).await.unwrap(), None);
}

#[tokio::test]
async fn gen_1_lr_7_concurrent_profile_edits_and_response_times_are_all_kept() {
    let t = table("profile-edits").await;
    t.store.put_agent(&agent("a1")).await.unwrap();
    let store = Arc::new(t.store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for ms in [1000u64, 2000, 3000, 4000] {
        let store = store.clone();
        tasks.spawn(async move { store.record_response_time(&id("a1"), ms).await });
    }
    // An admin's fee agreement and the agent's vacation, edited at the same moment.
    let (s1, s2) = (store.clone(), store.clone());
    tasks.spawn(async move {
        let edit = |a: Option<&shared::domain::agent::Agent>| {
            a.map(|a| {
                let mut a = a.clone();
                a.fee_percent = Some("25".parse().unwrap());
                a
            })
        };
        s1.edit_agent(&id("a1"), &edit).await.map(drop)
    });
    tasks.spawn(async move {
        let vacation = shared::domain::agent::Vacation::new(
            "2026-07-01".parse().unwrap(),
            "2026-07-14".parse().unwrap(),
        )
        .unwrap();
        let edit = |a: Option<&shared::domain::agent::Agent>| {
            a.map(|a| {
                let mut a = a.clone();
                a.vacation = Some(vacation);
                a
            })
        };
        s2.edit_agent(&id("a1"), &edit).await.map(drop)
    });
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let a1 = t.store.get_agent(&id("a1")).await.unwrap().unwrap();
    assert_eq!(a1.response_times.len(), 4);
    assert_eq!(a1.fee_percent, Some("25".parse().unwrap()));
    assert!(a1.vacation.is_some());
    // An edit of an agent that does not exist saves nothing.
    let none = t
        .store
        .edit_agent(&id("nobody"), &|a| a.cloned())
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(t.store.get_agent(&id("nobody")).await.unwrap(), None);
}

#[tokio::test]
async fn lr_1_teams_by_lead_and_routing_settings() {
    let t = table("teams").await;
    let team = Team {
        id: id("t1"),
        name: "Mission Homes".into(),
        lead_agent_id: id("lead"),
        agent_ids: [id("lead"), id("a1"), id("a2")].into(),
    };
    let other = Team {
        id: id("t2"),
        name: "Sunset".into(),
        ..team.clone()
    };
    t.store.put_team(&team).await.unwrap();
    t.store.put_team(&other).await.unwrap();
    assert_eq!(
        t.store.get_team(&id("t1")).await.unwrap(),
        Some(team.clone())
    );
    assert_eq!(t.store.get_team(&id("t9")).await.unwrap(), None);
    let mut led = t.store.teams_led_by(&id("lead")).await.unwrap();
    led.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(led, vec![team.clone(), other.clone()]);
    assert!(t.store.teams_led_by(&id("a1")).await.unwrap().is_empty());

    // A new lead for t2: it moves from one lead's list to the other's.
    let handed_over = Team {
        lead_agent_id: id("a1"),
        ..other
    };
    t.store.put_team(&handed_over).await.unwrap();
    assert_eq!(
        t.store.teams_led_by(&id("lead")).await.unwrap(),
        vec![team.clone()]
    );
    assert_eq!(
        t.store.teams_led_by(&id("a1")).await.unwrap(),
        vec![handed_over]
    );

    assert_eq!(t.store.get_routing(&id("t1")).await.unwrap(), None);
    let settings = RoutingSettings::new(
        true,
        id("lead"),
        vec![
            RoutingMember {
                agent_id: id("lead"),
                receives: Receives::Both,
                warm_transfer: true,
                daily_cap: None,
            },
            RoutingMember {
                agent_id: id("a1"),
                receives: Receives::Buyer,
                warm_transfer: false,
                daily_cap: None,
            },
        ],
    )
    .unwrap();
    t.store.put_routing(&id("t1"), &settings).await.unwrap();
    assert_eq!(
        t.store.get_routing(&id("t1")).await.unwrap(),
        Some(settings)
    );
    // Routing is stored beside the team, not over it.
    assert_eq!(t.store.get_team(&id("t1")).await.unwrap(), Some(team));
}
