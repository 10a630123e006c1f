//! The local runner: plays API Gateway, the SQS and bus event sources and EventBridge Scheduler
//! around `cargo lambda watch`, from the wiring in `infra/template.yaml`.
//!
//! ```text
//! local-runner [serve] [--table NAME] [--api-port N] [--invoke-port N] [--template PATH] [--no-reload]
//! local-runner token --sub ID --role agent|advisor|closings|admin [--ttl 12h]
//! local-runner webhook PATH[?QUERY] [NAME=VALUE ...]
//! ```

mod activity;
mod clock;
mod functions;
mod gateway;
mod jwt;
mod outbox;
mod queues;
mod schedules;
mod setup;
mod streams;
mod telephony;
mod template;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::clock::LocalClock;
use crate::functions::Functions;
use crate::gateway::Gateway;
use crate::outbox::Outbox;
use crate::queues::{Delivery, QueuePoller};
use crate::schedules::Schedules;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ROLES: [&str; 4] = ["agent", "advisor", "closings", "admin"];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The workspace root: this crate lives in `<root>/infra/local-runner`.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct ServeOptions {
    table: String,
    api_port: u16,
    invoke_port: u16,
    template: PathBuf,
    reload: bool,
}

/// `--name value` pairs and `--flag`s after the subcommand.
fn options(args: &[String]) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = vec![];
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a}"))?;
        let value = match it.peek() {
            Some(v) if !v.starts_with("--") => it.next().cloned(),
            _ => None,
        };
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn port(value: Option<String>, what: &str) -> Result<u16, String> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("--{what} needs a port number"))
}

fn serve_options(args: &[String]) -> Result<ServeOptions, String> {
    let mut o = ServeOptions {
        table: "referrals-local".into(),
        api_port: env_or("LOCAL_API_PORT", "3000")
            .parse()
            .map_err(|_| "LOCAL_API_PORT is not a port number")?,
        invoke_port: env_or("LOCAL_INVOKE_PORT", "9000")
            .parse()
            .map_err(|_| "LOCAL_INVOKE_PORT is not a port number")?,
        template: workspace_root().join("infra/template.yaml"),
        reload: true,
    };
    for (name, value) in options(args)? {
        match name.as_str() {
            "table" => o.table = value.ok_or("--table needs a name")?,
            "api-port" => o.api_port = port(value, "api-port")?,
            "invoke-port" => o.invoke_port = port(value, "invoke-port")?,
            "template" => o.template = value.ok_or("--template needs a path")?.into(),
            "no-reload" => o.reload = false,
            other => return Err(format!("unknown option --{other}")),
        }
    }
    Ok(o)
}

fn token(args: &[String]) -> Result<(), String> {
    let (mut sub, mut role, mut ttl) = (None, None, "12h".to_owned());
    for (name, value) in options(args)? {
        match name.as_str() {
            "sub" => sub = value,
            "role" => role = value,
            "ttl" => ttl = value.ok_or("--ttl needs a duration such as 12h")?,
            other => return Err(format!("unknown option --{other}")),
        }
    }
    let sub = sub.ok_or("--sub is required")?;
    let role = role
        .filter(|r| ROLES.contains(&r.as_str()))
        .ok_or("--role must be one of agent, advisor, closings, admin")?;
    let ttl = clock::parse_advance(&ttl).ok_or("--ttl must look like 12h, 30m or 7d")?;
    let secret = env_or("LOCAL_JWT_SECRET", jwt::DEFAULT_SECRET);
    println!(
        "{}",
        jwt::dev_token(&secret, &sub, &role, jiff::Timestamp::now(), ttl)
    );
    Ok(())
}

/// Posts a telephony webhook to the local gateway as the provider would: form-encoded and signed
/// with `TWILIO_AUTH_TOKEN` over the full URL. A missing `MessageSid` (SMS) or `CallSid` (calls)
/// is made up, as each real request carries its own. Prints the status and the answer.
async fn webhook(args: &[String]) -> Result<(), String> {
    let (path, fields) = args
        .split_first()
        .ok_or("usage: local-runner webhook PATH[?QUERY] [NAME=VALUE ...]")?;
    let mut params: Vec<(String, String)> = fields
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("{f}: fields are NAME=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    let sid = if path.starts_with("/twilio/sms") {
        "MessageSid"
    } else {
        "CallSid"
    };
    if !params.iter().any(|(k, _)| k == sid) {
        params.push((sid.to_owned(), telephony::call_sid()));
    }
    let url = format!(
        "http://127.0.0.1:{}{path}",
        env_or("LOCAL_API_PORT", "3000")
    );
    let token = env_or("TWILIO_AUTH_TOKEN", shared::app::DEVELOPMENT_TWILIO_TOKEN);
    let signature = shared::twilio::SignatureValidator::new(token).sign(&url, &params);
    let response = reqwest::Client::new()
        .post(&url)
        .header(shared::twilio::SIGNATURE_HEADER, signature)
        .form(&params)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    println!("{status} {body}");
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("token") => token(&args[1..]).map_err(BoxError::from),
        Some("webhook") => webhook(&args[1..]).await.map_err(BoxError::from),
        Some("serve") => serve(&args[1..]).await,
        _ => serve(&args).await,
    };
    if let Err(e) = result {
        eprintln!("local-runner: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: &[String]) -> Result<(), BoxError> {
    let o = serve_options(args)?;
    let text = std::fs::read_to_string(&o.template)
        .map_err(|e| format!("cannot read {}: {e}", o.template.display()))?;
    let wiring = template::parse(&text)?;
    let (dynamodb, moto) = setup::emulators().await?;
    let sdk = shared::aws::sdk_config().await;
    let region = sdk
        .region()
        .map_or("us-east-1".to_owned(), |r| r.to_string());
    setup::create_table(&sdk, &text, &o.table).await?;
    let sender = env_or("SENDER_EMAIL", "no-reply@referrals.example.com");
    let provisioned = setup::provision(&sdk, &wiring, &o.table, &sender).await?;

    let env = vec![
        ("TABLE_NAME".to_owned(), o.table.clone()),
        (
            "BROADCAST_QUEUE_URL".into(),
            provisioned.broadcast_queue_url.clone(),
        ),
        ("EVENT_BUS_NAME".into(), provisioned.bus.clone()),
        ("SCHEDULE_GROUP".into(), provisioned.schedule_group.clone()),
        // Any ARN naming the timers function: the runner maps a schedule's target back to it.
        (
            "TIMERS_FUNCTION_ARN".into(),
            "arn:aws:lambda:us-east-1:123456789012:function:timers".into(),
        ),
        (
            "SCHEDULER_ROLE_ARN".into(),
            "arn:aws:iam::123456789012:role/local-scheduler".into(),
        ),
        (
            "TWILIO_ACCOUNT_SID".into(),
            env_or("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000"),
        ),
        (
            "TWILIO_AUTH_TOKEN".into(),
            env_or("TWILIO_AUTH_TOKEN", shared::app::DEVELOPMENT_TWILIO_TOKEN),
        ),
        (
            "TWILIO_FROM_NUMBER".into(),
            env_or("TWILIO_FROM_NUMBER", "+15005550006"),
        ),
        (
            "TWILIO_API_BASE".into(),
            format!("http://127.0.0.1:{}{}", o.api_port, telephony::PREFIX),
        ),
        // Webhook URLs the functions build (and the signatures they check) name this gateway.
        (
            "PUBLIC_BASE_URL".into(),
            format!("http://127.0.0.1:{}", o.api_port),
        ),
        ("SENDER_EMAIL".into(), sender),
        (
            "PUSH_PLATFORM_APPLICATION_ARN".into(),
            provisioned.push_application_arn.clone(),
        ),
    ];
    // Kept alive for the runner's life; dropping it kills cargo lambda.
    let mut watch = functions::start_watch(&workspace_root(), o.invoke_port, &env, o.reload)
        .map_err(|e| format!("cannot start `cargo lambda watch` (is cargo-lambda on PATH? `pip install cargo-lambda`): {e}"))?;
    let functions = Functions::new(o.invoke_port);
    let mut waited = 0;
    while !functions.ready().await {
        if let Some(status) = watch.try_wait()? {
            return Err(format!("cargo lambda watch exited: {status}").into());
        }
        waited += 1;
        if waited > 120 {
            return Err("cargo lambda watch did not answer within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let clock = Arc::new(LocalClock::default());
    let activity = Arc::new(activity::Activity::default());
    let outbox = Arc::new(Outbox::new(&moto));
    outbox
        .skip_earlier()
        .await
        .map_err(|e| format!("cannot read moto's records at {moto}: {e}"))?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let poller =
        |binary: &str, queue: &setup::Queue, batch_size: i32, delivery: Delivery| QueuePoller {
            sqs: sqs.clone(),
            functions: functions.clone(),
            clock: clock.clone(),
            outbox: outbox.clone(),
            queue_url: queue.url.clone(),
            queue_arn: queue.arn.clone(),
            binary: binary.to_owned(),
            batch_size,
            delivery,
            region: region.clone(),
            activity: activity.clone(),
            pulse: activity.pulse(),
        };
    for source in &wiring.queue_sources {
        match provisioned.queues.get(&source.queue) {
            Some(q) => {
                tokio::spawn(
                    poller(&source.binary, q, source.batch_size, Delivery::SqsBatch).run(),
                );
            }
            None => tracing::warn!(queue = source.queue, "event source queue was not created"),
        }
    }
    for (rule, q) in &provisioned.rule_queues {
        tokio::spawn(poller(&rule.binary, q, 10, Delivery::BusEvent).run());
    }
    let schedules = Arc::new(Schedules::new(
        clock.clone(),
        functions.clone(),
        outbox.clone(),
        aws_sdk_scheduler::Client::new(&sdk),
        provisioned.schedule_group.clone(),
        wiring.schedules.clone(),
        activity.clone(),
    ));
    tokio::spawn(schedules.clone().run());
    if !wiring.stream_sources.is_empty() {
        let stream_arn = aws_sdk_dynamodb::Client::new(&sdk)
            .describe_table()
            .table_name(&o.table)
            .send()
            .await
            .map_err(|e| format!("DescribeTable {}: {e}", o.table))?
            .table()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_owned)
            .ok_or("the table has no stream: the template's StreamSpecification is missing")?;
        let http = reqwest::Client::new();
        for source in &wiring.stream_sources {
            tokio::spawn(
                streams::StreamPoller {
                    http: http.clone(),
                    endpoint: dynamodb.clone(),
                    functions: functions.clone(),
                    stream_arn: stream_arn.clone(),
                    source: source.clone(),
                    region: region.clone(),
                    activity: activity.clone(),
                    pulse: activity.pulse(),
                }
                .run(),
            );
        }
    }

    let gateway = Arc::new(Gateway {
        routes: wiring.routes.clone(),
        secret: env_or("LOCAL_JWT_SECRET", jwt::DEFAULT_SECRET),
        functions,
        clock,
        outbox,
        schedules,
        activity,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", o.api_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", o.api_port))?;
    tracing::info!(
        api = format!("http://127.0.0.1:{}", o.api_port),
        invoke_port = o.invoke_port,
        table = o.table,
        routes = wiring.routes.len(),
        queue_sources = wiring.queue_sources.len(),
        stream_sources = wiring.stream_sources.len(),
        rules = wiring.rules.len(),
        schedules = wiring.schedules.len(),
        "local runner ready"
    );
    let stopped = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| gateway.clone().handle(req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
            status = watch.wait() => break Err(format!("cargo lambda watch exited: {status:?}").into()),
        }
    };
    tracing::info!("stopping");
    let _ = watch.start_kill();
    stopped
}
