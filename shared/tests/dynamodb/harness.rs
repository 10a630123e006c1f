//! A fresh table per test on DynamoDB Local, created from `infra/template.yaml`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use jiff::Timestamp;
use shared::domain::agent::Agent;
use shared::domain::referral::{
    Client as ReferralClient, LeadDetails, PriceRange, Program, Referral,
};
use shared::domain::speed::ResponseTimes;
use shared::domain::values::{AgentId, ClientType, ReferralId};
use shared::dynamodb::DynamoDbStore;
use shared::dynamodb::table::{self, TableDeclaration};

const HOW_TO_START: &str = "run `make test`, or start it with \
    `infra/local/stack.sh start dynamodb && eval \"$(infra/local/stack.sh env)\"`";

/// The table declaration, read from the template exactly as it ships. Parsed as a YAML `Value`
/// first, so CloudFormation tags elsewhere in the template (`!Ref`, `!GetAtt`) do no harm.
pub fn declaration() -> TableDeclaration {
    let template: serde_norway::Value =
        serde_norway::from_str(table::TEMPLATE).expect("infra/template.yaml is valid YAML");
    let properties = template["Resources"][table::RESOURCE]["Properties"].clone();
    serde_norway::from_value(properties)
        .expect("Resources.ReferralTable.Properties declares a DynamoDB table")
}

/// The DynamoDB Local endpoint; fails the test (never skips it) when there is none.
async fn endpoint() -> String {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        panic!(
            "DYNAMODB_ENDPOINT is not set, so DynamoDB Local is not running at any known \
             address; {HOW_TO_START}"
        );
    };
    let authority = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let reachable = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(authority.as_str()),
    )
    .await;
    if !matches!(reachable, Ok(Ok(_))) {
        panic!("DynamoDB Local is not running at {endpoint}; {HOW_TO_START}");
    }
    endpoint
}

/// A client for DynamoDB Local: us-east-1, dummy static credentials, production's HTTP client.
pub async fn local_client() -> Client {
    let endpoint = endpoint().await;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(shared::aws::http::sdk_client_over(
            shared::aws::http::build(),
        ))
        .load()
        .await;
    Client::new(&config)
}

pub struct TestTable {
    pub store: DynamoDbStore,
    pub client: Client,
    pub name: String,
}

/// A new table named after the test, created from the template's declaration.
pub async fn table(test: &str) -> TestTable {
    let client = local_client().await;
    let name = format!("{test}-{}", ulid::Ulid::new());
    declaration()
        .create(&client, &name)
        .await
        .unwrap_or_else(|e| panic!("creating table {name} from infra/template.yaml: {e:?}"));
    TestTable {
        store: DynamoDbStore::new(client.clone(), name.clone()),
        client,
        name,
    }
}

pub fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// A licensed, reachable agent serving 94110 buyers and sellers.
pub fn agent(name: &str) -> Agent {
    Agent {
        id: id(name),
        name: format!("Agent {name}"),
        email: Some(id(&format!("{name}@agents.example.com"))),
        cell_phone: Some(id("+14155550100")),
        office_phone: None,
        licensed: true,
        zips: [id("94110")].into(),
        client_types: [ClientType::Buyer, ClientType::Seller].into(),
        warm_transfer: true,
        push_token: None,
        time_zone: id("America/Los_Angeles"),
        vacation: None,
        fee_percent: None,
        response_times: ResponseTimes::default(),
    }
}

/// An open routing referral offered to `offered`, created at 2026-01-01T00:00:00Z.
pub fn referral(referral_id: &str, offered: &[AgentId]) -> Referral {
    let client = ReferralClient {
        name: "Casey Client".into(),
        phone: id("+14155559876"),
        email: id("casey@example.com"),
    };
    let lead = LeadDetails {
        client_type: ClientType::Seller,
        zip: id("94110"),
        price_range: PriceRange::new(id("500000"), id("700000")).unwrap(),
        timeline: "1-3 months".into(),
    };
    Referral {
        briefing: "Wants to sell before school starts".into(),
        ..Referral::offered(
            id(referral_id),
            Program::Routing,
            client,
            lead,
            id("advisor1"),
            at("2026-01-01T00:00:00Z"),
            offered.iter().cloned(),
        )
    }
}

pub fn referral_id(s: &str) -> ReferralId {
    id(s)
}
