//! The `StageChanged` fixture through the escrow-documents handler.

use lambda_runtime::{Context, LambdaEvent};
use shared::app::pipeline::change_stage;
use shared::app::{Actor, Role};
use shared::domain::stage::{Stage, StageChange};
use shared::fixtures::claimed_example;
use shared::fixtures::event;

#[tokio::test]
async fn es_2_in_escrow_fixture_sends_the_documents_once_when_delivered_twice() {
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    let (s, _, outbox) = claimed_example(at).await;
    let id = "ref-1".parse().unwrap();
    let ana = Actor {
        user: "ana".parse().unwrap(),
        role: Role::Agent,
    };
    let escrow = StageChange {
        sale_price: Some("915000".parse().unwrap()),
        close_date: Some(jiff::civil::date(2027, 3, 1)),
        ..StageChange::to(Stage::InEscrow)
    };
    change_stage(&s, &ana, &id, &escrow, at).await.unwrap();
    for _ in 0..2 {
        escrow_docs::handle(
            &s,
            LambdaEvent::new(
                event("escrow-docs", "stage-changed-in-escrow"),
                Context::default(),
            ),
        )
        .await
        .unwrap();
    }
    shared::memory::deliver(&s, &outbox, at).await.unwrap();
    let docs = outbox.emails();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].attachments.len(), 1);
    assert!(docs[0].body.contains("$915000.00"));
}
