//! The local runner: plays Lambda, API Gateway, the SQS and stream event sources, bus rules and
//! EventBridge Scheduler around the emulators, from the wiring in `infra/template.yaml`.
//!
//! ```text
//! local-runner [serve] [--table NAME] [--api-port N] [--invoke-port N] [--template PATH]
//!              [--no-reload] [--max-instances N] [--parameter Name=Value ...]
//! local-runner token --sub ID --role agent|advisor|closings|admin [--ttl 12h]
//! local-runner webhook PATH[?QUERY] [NAME=VALUE ...]
//! local-runner permissions --log DIR [--template PATH]
//! local-runner environment [FUNCTION ...] [--build]
//! local-runner invoke FUNCTION --data-file EVENT [serve options]
//! ```
//!
//! `local-runner help [COMMAND]` says more.

mod activity;
mod authorize;
mod binaries;
mod clock;
mod cloudformation;
mod console;
mod cors;
mod delays;
mod environment;
mod functions;
mod gateway;
mod iam;
mod jwt;
mod lambda;
mod meter;
mod outbox;
mod parameters;
mod permissions;
mod proxy;
mod queues;
mod schedules;
mod setup;
mod streams;
mod telephony;
mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::SignedDuration;

use crate::clock::LocalClock;
use crate::cloudformation::Stack;
use crate::environment::Endpoints;
use crate::functions::Functions;
use crate::gateway::Gateway;
use crate::lambda::Lambda;
use crate::outbox::Outbox;
use crate::queues::{Delivery, QueuePoller};
use crate::schedules::Schedules;
use crate::template::Template;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The workspace root: this crate lives in `<root>/infra/local-runner`.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The local values of the template's parameters (see `parameters`).
fn parameters_file() -> PathBuf {
    workspace_root().join("infra/local/parameters.env")
}

/// Parameters only the runner knows: the gateway's URL (webhook URLs and their signatures name
/// it) and the push platform application it created.
const PUBLIC_BASE_URL: &str = "PublicBaseUrl";
const PUSH_APPLICATION: &str = "PushPlatformApplicationArn";
/// The verified SES identity every email is sent from.
const SENDER_EMAIL: &str = "SenderEmail";

#[derive(Debug, Parser)]
#[command(
    name = "local-runner",
    about = "Plays Lambda, API Gateway, event sources, bus rules and schedules on the local emulators, as infra/template.yaml wires them.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand, the runner serves.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every function as the template wires them (the default).
    Serve(ServeArgs),
    /// Print a development token the local gateway accepts.
    Token(TokenArgs),
    /// Post a telephony webhook to the local gateway, signed as the provider signs it.
    Webhook(WebhookArgs),
    /// Report the permissions the template grants that no run used, and the requests refused,
    /// from the runners' permission logs; fails if any request was refused.
    Permissions(PermissionsArgs),
    /// Print each function's environment as the runner gives it, as JSON: the template's
    /// variables and those Lambda sets (with the local endpoints).
    Environment(EnvironmentArgs),
    /// Bring up the local stack, invoke one function with `cargo lambda invoke` and stop.
    Invoke(InvokeArgs),
}

#[derive(Debug, Args)]
struct EnvironmentArgs {
    /// The functions (binaries) to show; all of them when none is named.
    functions: Vec<String>,
    /// The local stack's name, as `serve --table`.
    #[arg(long, default_value = "referrals-local")]
    table: String,
    #[arg(long, env = "LOCAL_API_PORT", default_value_t = 3000)]
    api_port: u16,
    #[arg(long, env = "LOCAL_TEMPLATE")]
    template: Option<PathBuf>,
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = name_value)]
    parameters: Vec<(String, String)>,
    /// Build the binaries first and name each one's executable.
    #[arg(long)]
    build: bool,
}

#[derive(Debug, Args)]
struct InvokeArgs {
    /// The function: its binary (as `cargo lambda` names it), deployed name or ARN.
    function: String,
    /// The event, e.g. events/settings/put-agent.json.
    #[arg(long)]
    data_file: PathBuf,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Args)]
struct PermissionsArgs {
    /// The directory the runners logged to (their `LOCAL_PERMISSIONS_LOG`).
    #[arg(long, env = "LOCAL_PERMISSIONS_LOG")]
    log: PathBuf,
    /// The template the report is about [default: infra/template.yaml]; runs of other templates
    /// are left out.
    #[arg(long, env = "LOCAL_TEMPLATE")]
    template: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct ServeArgs {
    /// The table's name, also the local stack's name that prefixes every resource.
    #[arg(long, default_value = "referrals-local")]
    table: String,
    /// The HTTP API's port.
    #[arg(long, env = "LOCAL_API_PORT", default_value_t = 3000)]
    api_port: u16,
    /// The Lambda invoke API's port (`cargo lambda invoke --invoke-port`).
    #[arg(long, env = "LOCAL_INVOKE_PORT", default_value_t = 9000)]
    invoke_port: u16,
    /// The SAM template to play [default: infra/template.yaml].
    #[arg(long, env = "LOCAL_TEMPLATE")]
    template: Option<PathBuf>,
    /// Do not rebuild the functions when their sources change.
    #[arg(long)]
    no_reload: bool,
    /// Most instances one function runs at once; more concurrent invocations wait for one.
    #[arg(long, env = "LOCAL_RUNNER_MAX_INSTANCES", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    max_instances: u16,
    /// A template parameter's local value, over infra/local/parameters.env.
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = name_value)]
    parameters: Vec<(String, String)>,
}

impl ServeArgs {
    fn template(&self) -> PathBuf {
        self.template
            .clone()
            .unwrap_or_else(|| workspace_root().join("infra/template.yaml"))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    Agent,
    Advisor,
    Closings,
    Admin,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The user id (an agent's id).
    #[arg(long)]
    sub: String,
    #[arg(long, value_enum)]
    role: Role,
    /// How long the token lives: 12h, 30m, 7d.
    #[arg(long, default_value = "12h", value_parser = duration)]
    ttl: SignedDuration,
}

#[derive(Debug, Args)]
struct WebhookArgs {
    /// The path and query, e.g. "/twilio/voice/claim?referralId=R&agentId=ben".
    path: String,
    /// Form fields.
    #[arg(value_name = "NAME=VALUE", value_parser = name_value)]
    fields: Vec<(String, String)>,
}

fn name_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text}: expected NAME=VALUE"))
}

fn duration(text: &str) -> Result<SignedDuration, String> {
    clock::parse_advance(text).ok_or_else(|| "expected a duration such as 12h, 30m or 7d".into())
}

/// A setting of the runner's own: its environment variable, unless empty, or the default.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn token(args: &TokenArgs) {
    let secret = env_or("LOCAL_JWT_SECRET", jwt::DEFAULT_SECRET);
    let role = format!("{:?}", args.role).to_lowercase();
    println!(
        "{}",
        jwt::dev_token(&secret, &args.sub, &role, jiff::Timestamp::now(), args.ttl)
    );
}

/// Posts a telephony webhook to the local gateway as the provider would: form-encoded and signed
/// with the local Twilio auth token over the full URL. A missing `CallSid` is made up, as each
/// real request carries its own (Twilio carries voice only; texts arrive by `POST /_local/sms`).
/// Prints the status and the answer.
async fn webhook(args: &WebhookArgs) -> Result<(), BoxError> {
    let path = &args.path;
    let mut params = args.fields.clone();
    let sid = "CallSid";
    if !params.iter().any(|(k, _)| k == sid) {
        params.push((sid.to_owned(), telephony::call_sid()));
    }
    let url = format!(
        "http://127.0.0.1:{}{path}",
        env_or("LOCAL_API_PORT", "3000")
    );
    let token = local_setting("TWILIO_AUTH_TOKEN")?;
    let signature = shared::twilio::SignatureValidator::new(token).sign(&url, &params);
    let response = reqwest::Client::new()
        .post(&url)
        .header(shared::twilio::SIGNATURE_HEADER, signature)
        .form(&params)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.text().await?;
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
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(args)) => {
            token(&args);
            Ok(())
        }
        Some(Command::Webhook(args)) => webhook(&args).await,
        Some(Command::Permissions(args)) => permissions_report(&args),
        Some(Command::Environment(args)) => print_environment(&args).await,
        Some(Command::Invoke(args)) => invoke(args).await,
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    };
    if let Err(e) = result {
        eprintln!("local-runner: {e}");
        std::process::exit(1);
    }
}

/// A template's path as the permission log names it.
fn canonical(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// Every function's policy against `stack`, with the callers the permission check knows them by.
fn callers(
    template: &Template,
    stack: &Stack,
) -> Result<BTreeMap<String, proxy::Caller>, BoxError> {
    let sam = iam::SamTemplates::installed(&workspace_root())?;
    let mut out = BTreeMap::new();
    for f in &template.functions {
        let mut role = format!("{}-{}Role", stack.name, f.logical_id);
        role.truncate(64);
        out.insert(
            environment::access_key_id(&f.binary),
            proxy::Caller {
                name: environment::function_name(f, stack),
                role,
                policy: iam::policy(f, stack, &sam)?,
            },
        );
    }
    Ok(out)
}

fn permissions_report(args: &PermissionsArgs) -> Result<(), BoxError> {
    let path = args
        .template
        .clone()
        .unwrap_or_else(|| workspace_root().join("infra/template.yaml"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let template = Template::parse(&text)?;
    // Grants are named as the template names them; only the conditions need local values, the
    // ones a runner decides them with.
    let computed = BTreeMap::from([
        (PUBLIC_BASE_URL.to_owned(), "http://127.0.0.1".to_owned()),
        (
            PUSH_APPLICATION.to_owned(),
            format!(
                "arn:aws:sns:us-east-1:{}:app/GCM/local",
                cloudformation::ACCOUNT
            ),
        ),
    ]);
    let stack = Stack {
        name: "local".into(),
        region: "us-east-1".into(),
        parameters: local_parameters(&template, &[], &computed)?,
        resources: BTreeMap::new(),
        conditions: template.conditions(),
        placeholders: true,
    };
    let granted: Vec<iam::Grant> = callers(&template, &stack)?
        .into_values()
        .flat_map(|c| c.policy.grants())
        .collect();
    let records = permissions::read_log(&args.log, &canonical(&path))?;
    let (report, refused) = permissions::report(&granted, &records);
    print!("{report}");
    if refused {
        return Err("some requests were refused: see above".into());
    }
    Ok(())
}

/// The local value of the parameter the template sets `variable` from.
fn local_setting(variable: &str) -> Result<String, BoxError> {
    let path = workspace_root().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let template = Template::parse(&text)?;
    let values = local_parameters(&template, &[], &BTreeMap::new())?;
    let parameter = parameters::variables_from_parameters(&template)
        .remove(variable)
        .ok_or_else(|| format!("the template sets {variable} from no parameter"))?;
    Ok(values.get(&parameter).cloned().unwrap_or_default())
}

fn local_parameters(
    template: &Template,
    overrides: &[(String, String)],
    computed: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, BoxError> {
    let path = parameters_file();
    let file = parameters::read_file(&path)?;
    Ok(parameters::local_values(
        template,
        &file,
        &path.display().to_string(),
        |v| std::env::var(v).ok(),
        overrides,
        computed,
    )?)
}

/// Rebuilds the functions when their sources change and moves new invocations to the new
/// binaries.
async fn reload(lambda: Arc<Lambda>, root: PathBuf, mut built: BTreeMap<String, PathBuf>) {
    let mut seen = binaries::sources_changed_at(&root);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = binaries::sources_changed_at(&root);
        if now <= seen {
            continue;
        }
        seen = now;
        let before: BTreeMap<String, _> = built
            .iter()
            .map(|(b, p)| (b.clone(), binaries::modified(p)))
            .collect();
        tracing::info!("sources changed; rebuilding the functions");
        match binaries::build(&root, &lambda.binaries()).await {
            Ok(next) => {
                lambda.built(Ok(next.clone()));
                for (binary, path) in &next {
                    if before.get(binary) != Some(&binaries::modified(path)) {
                        tracing::info!(function = binary, "serving the new build");
                        lambda.retire(binary, path.clone());
                    }
                }
                built = next;
            }
            Err(e) => tracing::error!(error = e, "the rebuild failed; serving the last build"),
        }
    }
}

/// The local stack before anything is created: its name, parameters, conditions and the names
/// of its resources (`sqs_base` is where its queues' URLs point).
fn planned_stack(
    template: &Template,
    table: &str,
    region: &str,
    api_port: u16,
    overrides: &[(String, String)],
    sqs_base: &str,
) -> Result<Stack, BoxError> {
    let mut stack = Stack {
        name: table.to_owned(),
        region: region.to_owned(),
        parameters: BTreeMap::new(),
        resources: BTreeMap::new(),
        conditions: template.conditions(),
        placeholders: false,
    };
    let computed = BTreeMap::from([
        (
            PUBLIC_BASE_URL.to_owned(),
            format!("http://127.0.0.1:{api_port}"),
        ),
        (
            PUSH_APPLICATION.to_owned(),
            setup::push_application_arn(&stack),
        ),
    ]);
    stack.parameters = local_parameters(template, overrides, &computed)?;
    setup::plan(template, &mut stack, sqs_base)?;
    Ok(stack)
}

/// A running local stack: resources provisioned, the permission check and the Lambda service
/// (with its invoke API) started, the binaries building.
struct Up {
    template: Template,
    wiring: template::Wiring,
    stack: Stack,
    provisioned: setup::Provisioned,
    lambda: Arc<Lambda>,
    usage: Arc<proxy::Usage>,
    origins: Arc<outbox::TextOrigins>,
    sends: Arc<outbox::Sends>,
    clock: Arc<LocalClock>,
    delayed: Arc<delays::DelayedMessages>,
    sdk: aws_config::SdkConfig,
    dynamodb: String,
    moto: String,
    gateway_url: String,
    /// The first build's outcome.
    build: tokio::task::JoinHandle<()>,
}

async fn up(o: &ServeArgs) -> Result<Up, BoxError> {
    let template_path = o.template();
    let text = std::fs::read_to_string(&template_path)
        .map_err(|e| format!("cannot read {}: {e}", template_path.display()))?;
    let template = Template::parse(&text)?;
    let wiring = template::parse(&text)?;
    let (dynamodb, moto) = setup::emulators().await?;
    let root = workspace_root();

    let sdk = shared::aws::sdk_config().await;
    let region = sdk
        .region()
        .map_or("us-east-1".to_owned(), |r| r.to_string());
    let gateway_url = format!("http://127.0.0.1:{}", o.api_port);
    let mut stack = planned_stack(
        &template,
        &o.table,
        &region,
        o.api_port,
        &o.parameters,
        &moto,
    )?;
    setup::create_table(&sdk, &text, &o.table, &mut stack).await?;
    let sender = stack
        .parameters
        .get(SENDER_EMAIL)
        .cloned()
        .unwrap_or_default();
    let provisioned = setup::provision(&sdk, &template, &wiring, &mut stack, &sender).await?;

    // Every AWS request of every function goes through the permission check.
    let log = std::env::var_os("LOCAL_PERMISSIONS_LOG")
        .filter(|d| !d.is_empty())
        .map(|d| {
            let dir = PathBuf::from(d);
            let _ = std::fs::create_dir_all(&dir);
            dir.join(format!("{}.jsonl", o.table))
        });
    let usage = Arc::new(proxy::Usage::new(canonical(&template_path), log));
    let origins = Arc::new(outbox::TextOrigins::default());
    let sends = Arc::new(outbox::Sends::default());
    let clock = Arc::new(LocalClock::default());
    let delayed = Arc::new(delays::DelayedMessages::new(clock.clone(), moto.clone()));
    let checked = proxy::Proxy {
        callers: callers(&template, &stack)?,
        dynamodb: dynamodb.clone(),
        moto: moto.clone(),
        usage: usage.clone(),
        http: reqwest::Client::new(),
        origins: origins.clone(),
        sends: sends.clone(),
        delayed: delayed.clone(),
    }
    .start()
    .await?;
    let endpoints = Endpoints {
        aws: BTreeMap::from([("AWS_ENDPOINT_URL".to_owned(), checked)]),
        twilio_api_base: format!("{gateway_url}{}", telephony::PREFIX),
    };
    let specs = template
        .functions
        .iter()
        .map(|f| environment::spec(f, &stack, PathBuf::new(), &endpoints))
        .collect::<Result<Vec<_>, _>>()?;
    let lambda = Lambda::start(specs, o.max_instances.into()).await?;
    let invoke_listener = tokio::net::TcpListener::bind(("127.0.0.1", o.invoke_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", o.invoke_port))?;
    tokio::spawn(lambda::serve_invoke_api(lambda.clone(), invoke_listener));
    // Built while the rest starts; an invocation waits for the build, never for a compile of
    // its own.
    let build = {
        let (lambda, binaries, watch) = (lambda.clone(), wiring.binaries.clone(), !o.no_reload);
        tokio::spawn(async move {
            tracing::info!("building the functions");
            let result = binaries::build(&root, &binaries).await;
            match &result {
                Ok(_) => tracing::info!("functions built"),
                Err(e) => tracing::error!(error = e, "the functions did not build"),
            }
            let built = result.clone().unwrap_or_default();
            lambda.built(result);
            if watch {
                tokio::spawn(reload(lambda, root, built));
            }
        })
    };
    Ok(Up {
        template,
        wiring,
        stack,
        provisioned,
        lambda,
        usage,
        origins,
        sends,
        clock,
        delayed,
        sdk,
        dynamodb,
        moto,
        gateway_url,
        build,
    })
}

/// The AWS endpoint `environment` shows: serving, it is the permission check's address.
const SHOWN_AWS_ENDPOINT: &str = "http://127.0.0.1:1";

async fn print_environment(args: &EnvironmentArgs) -> Result<(), BoxError> {
    let path = args
        .template
        .clone()
        .unwrap_or_else(|| workspace_root().join("infra/template.yaml"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let template = Template::parse(&text)?;
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let sqs_base = std::env::var("MOTO_ENDPOINT")
        .unwrap_or_else(|_| format!("https://sqs.{region}.amazonaws.com"));
    let stack = planned_stack(
        &template,
        &args.table,
        &region,
        args.api_port,
        &args.parameters,
        &sqs_base,
    )?;
    let chosen: Vec<&template::FunctionDecl> = template
        .functions
        .iter()
        .filter(|f| args.functions.is_empty() || args.functions.contains(&f.binary))
        .collect();
    if let Some(unknown) = args
        .functions
        .iter()
        .find(|b| !template.functions.iter().any(|f| &f.binary == *b))
    {
        return Err(format!("the template has no function {unknown}").into());
    }
    let built = if args.build {
        let binaries: Vec<String> = chosen.iter().map(|f| f.binary.clone()).collect();
        binaries::build(&workspace_root(), &binaries).await?
    } else {
        BTreeMap::new()
    };
    let endpoints = Endpoints {
        aws: BTreeMap::from([("AWS_ENDPOINT_URL".to_owned(), SHOWN_AWS_ENDPOINT.to_owned())]),
        twilio_api_base: format!("http://127.0.0.1:{}{}", args.api_port, telephony::PREFIX),
    };
    let mut out = serde_json::Map::new();
    for f in chosen {
        let executable = built.get(&f.binary).cloned().unwrap_or_default();
        let spec = environment::spec(f, &stack, executable.clone(), &endpoints)?;
        let from_template = environment::template_variables(f, &stack)?;
        let lambda: BTreeMap<&String, &String> = spec
            .environment
            .iter()
            .filter(|(k, _)| !from_template.contains_key(*k))
            .collect();
        let mut entry = serde_json::json!({
            "function": f.logical_id,
            "name": spec.name,
            "template": from_template,
            "lambda": lambda,
        });
        if args.build {
            entry["executable"] = executable.display().to_string().into();
        }
        out.insert(f.binary.clone(), entry);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `make invoke`: the local stack up for one invocation by `cargo lambda invoke`.
async fn invoke(mut args: InvokeArgs) -> Result<(), BoxError> {
    args.serve.no_reload = true;
    let running = up(&args.serve).await?;
    let binary = running.lambda.binary_of(&args.function).ok_or_else(|| {
        format!(
            "the template has no function {}; it has {}",
            args.function,
            running.lambda.binaries().join(", ")
        )
    })?;
    running.build.await?;
    let status = tokio::process::Command::new("cargo-lambda")
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &args.serve.invoke_port.to_string()])
        .arg(&binary)
        .arg("--data-file")
        .arg(&args.data_file)
        .status()
        .await
        .map_err(|e| {
            format!("cannot run cargo-lambda ({e}): `infra/local/stack.sh install` puts it in .local/venv/bin")
        })?;
    if !status.success() {
        return Err(format!("cargo lambda invoke {binary} failed ({status})").into());
    }
    Ok(())
}

/// The Twilio account the functions are given (by the parameters the template sets
/// `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN` from), which the telephony stand-in accepts.
fn twilio_account(template: &Template, stack: &Stack) -> telephony::Account {
    let feeds = parameters::variables_from_parameters(template);
    let value = |variable: &str| {
        feeds
            .get(variable)
            .and_then(|p| stack.parameters.get(p))
            .cloned()
            .unwrap_or_default()
    };
    telephony::Account {
        sid: value("TWILIO_ACCOUNT_SID"),
        auth_token: value("TWILIO_AUTH_TOKEN"),
    }
}

/// Where `POST /_local/sms` delivers: the functions subscribed to an SNS topic, with the topic's
/// ARN, and the number texts are sent to (the broadcast function's `SMS_ORIGINATION_NUMBER`).
fn inbound_texts(
    template: &Template,
    wiring: &template::Wiring,
    stack: &Stack,
) -> gateway::InboundTexts {
    let feeds = parameters::variables_from_parameters(template);
    gateway::InboundTexts {
        number: feeds
            .get("SMS_ORIGINATION_NUMBER")
            .and_then(|p| stack.parameters.get(p))
            .cloned()
            .unwrap_or_default(),
        subscribers: wiring
            .topic_sources
            .iter()
            .filter_map(|source| {
                let topic = stack.resources.get(&source.topic)?;
                Some((source.binary.clone(), topic.reference.clone()))
            })
            .collect(),
    }
}

async fn serve(o: ServeArgs) -> Result<(), BoxError> {
    let Up {
        template,
        wiring,
        stack,
        provisioned,
        lambda,
        usage,
        origins,
        sends,
        clock,
        delayed,
        sdk,
        dynamodb,
        moto,
        gateway_url,
        build: _,
    } = up(&o).await?;
    let region = stack.region.clone();
    let functions = Functions::new(lambda);

    let activity = Arc::new(activity::Activity::default());
    let outbox = Arc::new(Outbox::new(&moto, origins, sends));
    outbox
        .skip_earlier()
        .await
        .map_err(|e| format!("cannot read moto's records at {moto}: {e}"))?;
    // Lambda's pollers are AWS's side: a receive that stalls (moto stopped) is waited for, not
    // given up on. A receive the poller abandoned would still be served once moto answers, and
    // hide its messages for the queue's whole visibility timeout, which AWS never does.
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .stalled_stream_protection(
                aws_sdk_sqs::config::StalledStreamProtectionConfig::disabled(),
            )
            .build(),
    );
    // Each queue's pollers (queues::POLLERS), sharing the signal of a backlog.
    let pollers = |binary: &str, queue: &setup::Queue, batch_size: i32, delivery: Delivery| {
        let backlog = Arc::new(tokio::sync::Notify::new());
        for n in 0..queues::POLLERS {
            let poller = QueuePoller {
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
                pulse: if n == 0 {
                    activity.pulse()
                } else {
                    activity.extra_pulse()
                },
                leader: n == 0,
                backlog: backlog.clone(),
            };
            tokio::spawn(poller.run());
        }
    };
    for source in &wiring.queue_sources {
        match provisioned.queues.get(&source.queue) {
            Some(q) => pollers(&source.binary, q, source.batch_size, Delivery::SqsBatch),
            None => tracing::warn!(queue = source.queue, "event source queue was not created"),
        }
    }
    for (rule, q) in &provisioned.rule_queues {
        pollers(&rule.binary, q, 10, Delivery::BusEvent);
    }
    let schedules = Arc::new(Schedules::new(
        delayed,
        functions.clone(),
        outbox.clone(),
        aws_sdk_scheduler::Client::new(&sdk),
        provisioned.schedule_groups.clone(),
        wiring.schedules.clone(),
        activity.clone(),
    ));
    tokio::spawn(schedules.clone().run());
    if !wiring.stream_sources.is_empty() {
        let stream_arn = stack
            .resources
            .get(shared::dynamodb::table::RESOURCE)
            .and_then(|t| t.attributes.get("StreamArn"))
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or("the table has no stream: the template's StreamSpecification is missing")?;
        let http = reqwest::Client::new();
        for source in &wiring.stream_sources {
            tokio::spawn(
                streams::StreamPoller {
                    http: http.clone(),
                    clock: clock.clone(),
                    endpoint: dynamodb.clone(),
                    functions: functions.clone(),
                    stream_arn: stream_arn.clone(),
                    source: source.clone(),
                    region: region.clone(),
                    activity: activity.clone(),
                    pulse: activity.stream_pulse(),
                    failure_queue: source
                        .on_failure
                        .as_ref()
                        .and_then(|q| provisioned.queues.get(q))
                        .map(|q| (sqs.clone(), q.url.clone())),
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
        permissions: usage,
        twilio: twilio_account(&template, &stack),
        public_base: gateway_url.clone(),
        cors: cors::Cors::from_template(&template, &stack)?,
        texts: inbound_texts(&template, &wiring, &stack),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", o.api_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", o.api_port))?;
    tracing::info!(
        api = gateway_url,
        invoke_port = o.invoke_port,
        table = o.table,
        functions = template.functions.len(),
        routes = wiring.routes.len(),
        queue_sources = wiring.queue_sources.len(),
        stream_sources = wiring.stream_sources.len(),
        rules = wiring.rules.len(),
        schedules = wiring.schedules.len(),
        "local runner ready"
    );
    loop {
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
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping");
    Ok(())
}
