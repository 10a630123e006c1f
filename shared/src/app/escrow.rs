//! The closing documents on entry into In Escrow (ES-1, ES-2, ST-4, PPL-6).

use jiff::Timestamp;

use super::{AppError, Services};
use crate::documents::{closing_lines, render_pdf};
use crate::domain::referral::{HistoryEntry, HistoryEvent};
use crate::domain::values::{Money, ReferralId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key};
use crate::ports::Attachment;

/// Sends the documents of one entry into In Escrow, once however often the event arrives
/// (ES-2): the email is committed with its history entry, once per entry (EF-1). An event for an entry that a later one has replaced sends nothing: that entry sends
/// its own, with its own figures.
pub async fn send_escrow_documents(
    s: &Services,
    id: &ReferralId,
    escrow_entry: u32,
    now: Timestamp,
) -> Result<bool, AppError> {
    let referral = s
        .referrals
        .get_referral(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?
        .value;
    let Some(pipeline) = referral.pipeline() else {
        return Ok(false);
    };
    if escrow_entry == 0 || pipeline.escrow_entries != escrow_entry {
        return Ok(false);
    }
    let Some(agent_id) = referral.assigned_agent() else {
        return Ok(false);
    };
    let agent = s
        .agents
        .get_agent(agent_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no agent {agent_id}")))?;
    let Some(to) = agent.email.clone() else {
        return Err(AppError::unprocessable(
            "no_email",
            format!("agent {agent_id} has no email"),
        ));
    };
    let fee = referral.fee_owed(agent.fee_percent).unwrap_or(Money::ZERO);
    let lines = closing_lines(&referral, &agent, escrow_entry, fee);
    // Sent before (an event redelivered long after its outbox item expired): nothing again.
    let sent_before = s.referrals.history(id).await?.iter().any(|h| {
        matches!(h.event, HistoryEvent::DocumentsSent { escrow_entry: e, .. } if e == escrow_entry)
    });
    if sent_before {
        return Ok(false);
    }
    let key = key::closing_documents(id, escrow_entry);
    let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
        key,
        referral_id: Some(id.clone()),
        to: Recipient::Email { email: to },
        message: Message::Email {
            subject: format!(
                "Closing documents: {} ({})",
                referral.client.name, referral.id
            ),
            body: format!("{}\n\nThe signed documents are attached.", lines.join("\n")),
            cc: vec![s.config.closings_email()?.clone()],
            attachments: vec![Attachment {
                filename: format!("closing-documents-{id}-{escrow_entry}.pdf"),
                content_type: "application/pdf".into(),
                bytes: render_pdf(&lines),
            }],
        },
    }));
    let entry = HistoryEntry::new(now, None, HistoryEvent::DocumentsSent { escrow_entry, fee });
    Ok(s.referrals.record(id, &[entry], &effects).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::claim::claim_referral;
    use crate::app::pipeline::{change_stage, correct_escrow};
    use crate::app::testing::services;
    use crate::app::{Actor, Role};
    use crate::domain::agent::fixtures::agent;
    use crate::domain::claim::fixtures::referral;
    use crate::domain::referral::{ClaimChannel, Program};
    use crate::domain::stage::{Stage, StageChange};
    use crate::domain::values::Percent;
    use crate::ports::{AgentDirectory, ReferralStore};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    async fn in_escrow(
        program: Program,
    ) -> (Services, std::sync::Arc<crate::memory::Outbox>, ReferralId) {
        let (s, store, outbox) = services();
        let mut a = agent("a1");
        a.fee_percent = Some(Percent::new(rust_decimal::Decimal::new(25, 0)).unwrap());
        store.put_agent(&a).await.unwrap();
        let r = referral(program, &["a1"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        claim_referral(
            &s,
            &"a1".parse().unwrap(),
            &r.id,
            ClaimChannel::App,
            t("2026-01-02T00:00:00Z"),
        )
        .await
        .unwrap();
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        let escrow = StageChange {
            sale_price: Some("640000".parse().unwrap()),
            close_date: Some(jiff::civil::date(2026, 3, 1)),
            ..StageChange::to(Stage::InEscrow)
        };
        change_stage(&s, &actor, &r.id, &escrow, t("2026-02-01T00:00:00Z"))
            .await
            .unwrap();
        (s, outbox, r.id)
    }

    /// The documents sent, once everything committed so far is delivered.
    async fn documents(
        s: &Services,
        outbox: &std::sync::Arc<crate::memory::Outbox>,
    ) -> Vec<crate::ports::EmailMessage> {
        let now = t("2026-02-01T00:00:02Z");
        crate::memory::deliver(s, outbox, now).await.unwrap();
        outbox
            .emails()
            .into_iter()
            .filter(|m| m.subject.starts_with("Closing documents"))
            .collect()
    }

    #[tokio::test]
    async fn es_1_documents_go_to_the_agent_and_closings_with_the_fee() {
        let (s, outbox, id) = in_escrow(Program::Routing).await;
        assert!(
            send_escrow_documents(&s, &id, 1, t("2026-02-01T00:00:01Z"))
                .await
                .unwrap()
        );
        let docs = documents(&s, &outbox).await;
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].to.as_str(), "a1@agents.example.com");
        assert_eq!(docs[0].cc[0].as_str(), "closings@referrals.example.com");
        assert!(
            docs[0]
                .body
                .contains("Referral fee: $160000.00 (25% of the sale price)"),
            "{}",
            docs[0].body
        );
        let pdf = &docs[0].attachments[0];
        assert_eq!(pdf.content_type, "application/pdf");
        assert!(String::from_utf8_lossy(&pdf.bytes).contains("(Sale price: $640000.00) Tj"));
        let history = s.referrals.history(&id).await.unwrap();
        assert!(history.iter().any(|h| matches!(
            h.event,
            HistoryEvent::DocumentsSent {
                escrow_entry: 1,
                ..
            }
        )));
    }

    #[tokio::test]
    async fn es_2_a_duplicated_event_sends_nothing_twice_but_a_new_entry_sends_again() {
        let (s, outbox, id) = in_escrow(Program::Routing).await;
        let now = t("2026-02-01T00:00:01Z");
        assert!(send_escrow_documents(&s, &id, 1, now).await.unwrap());
        assert!(!send_escrow_documents(&s, &id, 1, now).await.unwrap());
        assert_eq!(documents(&s, &outbox).await.len(), 1);
        // ST-4: back out of escrow by closings, then in again: a second set.
        let closings = Actor {
            user: "closer".parse().unwrap(),
            role: Role::Closings,
        };
        correct_escrow(&s, &closings, &id, Stage::Listing, now)
            .await
            .unwrap();
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        let escrow = StageChange {
            sale_price: Some("600000".parse().unwrap()),
            close_date: Some(jiff::civil::date(2026, 4, 1)),
            ..StageChange::to(Stage::InEscrow)
        };
        change_stage(&s, &actor, &id, &escrow, now).await.unwrap();
        assert!(
            !send_escrow_documents(&s, &id, 1, now).await.unwrap(),
            "entry 1 is superseded"
        );
        assert!(send_escrow_documents(&s, &id, 2, now).await.unwrap());
        let docs = documents(&s, &outbox).await;
        assert_eq!(docs.len(), 2);
        assert!(docs[1].body.contains("$600000.00"));
    }

    #[tokio::test]
    async fn ppl_6_pay_per_lead_documents_state_no_fee() {
        let (s, outbox, id) = in_escrow(Program::Ppl).await;
        send_escrow_documents(&s, &id, 1, t("2026-02-01T00:00:01Z"))
            .await
            .unwrap();
        assert!(
            documents(&s, &outbox).await[0]
                .body
                .contains("Referral fee: none (pay per lead)")
        );
    }
}
