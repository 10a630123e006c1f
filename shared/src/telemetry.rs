//! What an operator sees of every function: structured logs and metrics.
//!
//! Logs are JSON lines, fields not formatted strings, level from `RUST_LOG` (default info); each
//! carries the Lambda request id (the runtime's invocation span) and the ids it is about, never a
//! client's contacts.
//!
//! Metrics are lines of CloudWatch's embedded metric format (EMF) on stdout, of the stack's one
//! namespace ([`NAMESPACE_VARIABLE`]): CloudWatch Logs turns them into metrics, so recording one
//! is no AWS call and costs the path it is on nothing but a counter. The use cases record
//! outcomes through the functions below (the `metrics` facade, a no-op until a recorder is
//! installed, so tests and the in-memory adapters need nothing); the recorder
//! (`metrics_cloudwatch_embedded`) is installed by [`init`] and its lines written once per
//! invocation by [`run`] and [`run_http`], with the request id. Dimensions are few and bounded
//! (channel, program, function), never an id or a contact. Without the `metrics` feature every
//! recording does nothing (the bench measures what they cost).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use lambda_runtime::{Diagnostic, Error, IntoFunctionResponse, LambdaEvent, Service};
use serde::{Deserialize, Serialize};

use crate::wiring::WiringError;

/// The variable naming the stack's one metrics namespace (`ReferralRouting/<stack>`, set for
/// every function by the template, whose alarms and dashboard read it).
pub const NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";

/// The metrics' names, as CloudWatch shows them.
pub mod name {
    /// Milliseconds from an agent's offer to their winning claim; `Program`, `Channel`.
    pub const SPEED_TO_LEAD: &str = "SpeedToLead";
    /// Claims won; `Channel` (app, sms, call, pin, warm_transfer_line, introduction).
    pub const CLAIMS_WON: &str = "ClaimsWon";
    /// Claims lost to an earlier one; `Channel`.
    pub const CLAIMS_LOST: &str = "ClaimsLost";
    /// Messages sent; `Channel` (sms, push, email, call, opt_in, call_update).
    pub const ALERTS_SENT: &str = "AlertsSent";
    /// Messages the provider refused for good; `Channel`.
    pub const ALERTS_FAILED: &str = "AlertsFailed";
    /// Texts not sent because the number opted out (TX-2); `Channel`.
    pub const ALERTS_OPTED_OUT: &str = "AlertsOptedOut";
    /// Effects given up for good: a change's effects refused, a delivery refused or unreadable,
    /// an unreadable timer.
    pub const EFFECTS_PARKED: &str = "EffectsParked";
    /// Billing runs finished (one a day).
    pub const BILLING_RUNS: &str = "BillingRuns";
    /// Pay-per-lead charges made.
    pub const CHARGES: &str = "Charges";
    /// The amount charged, in dollars.
    pub const CHARGED_AMOUNT: &str = "ChargedAmount";
    /// Reminders sent.
    pub const REMINDERS_SENT: &str = "RemindersSent";
    /// Cold starts; `Function`.
    pub const COLD_STARTS: &str = "ColdStart";
}

/// Every metric the functions write, with the names of its dimensions (the template's alarms and
/// dashboard are checked against it).
pub const METRICS: &[(&str, &[&str])] = &[
    (name::SPEED_TO_LEAD, &["Program", "Channel"]),
    (name::CLAIMS_WON, &["Channel"]),
    (name::CLAIMS_LOST, &["Channel"]),
    (name::ALERTS_SENT, &["Channel"]),
    (name::ALERTS_FAILED, &["Channel"]),
    (name::ALERTS_OPTED_OUT, &["Channel"]),
    (name::EFFECTS_PARKED, &[]),
    (name::BILLING_RUNS, &[]),
    (name::CHARGES, &[]),
    (name::CHARGED_AMOUNT, &[]),
    (name::REMINDERS_SENT, &[]),
    (name::COLD_STARTS, &["Function"]),
];

/// What became of one message, as its metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    Sent,
    Failed,
    OptedOut,
}

/// Starts the JSON logs and installs the metrics recorder. Once, in `main`; a function without
/// its namespace stops.
pub fn init() -> Result<(), WiringError> {
    let namespace = std::env::var(NAMESPACE_VARIABLE)
        .ok()
        .filter(|n| !n.trim().is_empty())
        .ok_or(WiringError::Missing(NAMESPACE_VARIABLE))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .without_time()
        .with_target(false)
        .init();
    #[cfg(feature = "metrics")]
    emf::install(namespace);
    #[cfg(not(feature = "metrics"))]
    drop(namespace);
    Ok(())
}

/// `lambda_runtime::run`, with the invocation's metrics written when it ends.
pub async fn run<A, F, R, B, S, D, E>(handler: F) -> Result<(), Error>
where
    F: Service<LambdaEvent<A>, Response = R>,
    F::Future: Future<Output = Result<R, F::Error>>,
    F::Error: Into<Diagnostic> + std::fmt::Debug,
    A: for<'de> Deserialize<'de>,
    R: IntoFunctionResponse<B, S>,
    B: Serialize,
    S: futures_core::Stream<Item = Result<D, E>> + Unpin + Send + 'static,
    D: Into<bytes::Bytes> + Send,
    E: Into<Error> + Send + std::fmt::Debug,
{
    lambda_runtime::run(Metered(handler)).await
}

/// `lambda_http::run`, with the invocation's metrics written when it ends.
#[cfg(feature = "http")]
pub async fn run_http<'a, R, S, E>(handler: S) -> Result<(), Error>
where
    S: Service<lambda_http::Request, Response = R, Error = E>,
    S::Future: Send + 'a,
    R: lambda_http::IntoResponse,
    E: std::fmt::Debug + Into<Diagnostic>,
{
    run(lambda_http::Adapter::from(handler)).await
}

/// A handler whose invocations record a cold start on the first and write their metrics, with
/// their request id, when they end.
struct Metered<S>(S);

impl<A, S: Service<LambdaEvent<A>>> Service<LambdaEvent<A>> for Metered<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = Flushed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<A>) -> Self::Future {
        #[cfg(feature = "metrics")]
        emf::begin(&event.context.request_id);
        Flushed {
            inner: self.0.call(event),
        }
    }
}

pin_project_lite::pin_project! {
    /// An invocation under way; its metrics are written when it ends.
    struct Flushed<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Flushed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let output = ready!(self.project().inner.poll(cx));
        #[cfg(feature = "metrics")]
        emf::flush();
        Poll::Ready(output)
    }
}

/// An agent's winning claim: how long after their offer it came (GEN-1), and on which channel.
pub fn claim_won(program: &str, channel: &str, speed_to_lead_ms: Option<u64>) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(name::CLAIMS_WON, "Channel" => channel.to_owned()).increment(1);
        if let Some(ms) = speed_to_lead_ms {
            metrics::histogram!(
                name::SPEED_TO_LEAD,
                "Program" => program.to_owned(),
                "Channel" => channel.to_owned()
            )
            .record(ms as f64);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (program, channel, speed_to_lead_ms);
}

/// A claim that came after another agent's won.
pub fn claim_lost(channel: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name::CLAIMS_LOST, "Channel" => channel.to_owned()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = channel;
}

/// One message's outcome on its channel.
pub fn alert(channel: &'static str, outcome: AlertOutcome) {
    #[cfg(feature = "metrics")]
    {
        let metric = match outcome {
            AlertOutcome::Sent => name::ALERTS_SENT,
            AlertOutcome::Failed => name::ALERTS_FAILED,
            AlertOutcome::OptedOut => name::ALERTS_OPTED_OUT,
        };
        metrics::counter!(metric, "Channel" => channel).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (channel, outcome);
}

/// An effect given up for good (it is in the logs, and an alarm counts it).
pub fn effect_parked() {
    #[cfg(feature = "metrics")]
    metrics::counter!(name::EFFECTS_PARKED).increment(1);
}

/// A billing run that finished: the charges it made and their total in dollars.
pub fn billing_run(charges: usize, amount: f64) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(name::BILLING_RUNS).increment(1);
        metrics::counter!(name::CHARGES).increment(charges as u64);
        metrics::histogram!(name::CHARGED_AMOUNT).record(amount);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (charges, amount);
}

/// Reminders sent by one run.
pub fn reminders_sent(count: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name::REMINDERS_SENT).increment(count as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = count;
}

/// Installs the metrics recorder for `namespace` (once a process; `init` does it) and returns
/// its collector. `timestamp` stamps every line with that time instead of the clock's (tests).
#[cfg(feature = "metrics")]
pub fn install(
    namespace: String,
    timestamp: Option<u64>,
) -> Result<&'static metrics_cloudwatch_embedded::Collector, String> {
    let mut builder = metrics_cloudwatch_embedded::Builder::new().cloudwatch_namespace(namespace);
    if let Some(at) = timestamp {
        builder = builder.with_timestamp(at);
    }
    let collector = builder.init().map_err(|e| e.to_string())?;
    emf::describe();
    Ok(collector)
}

/// The recorder's collector, written to stdout once per invocation.
#[cfg(feature = "metrics")]
mod emf {
    use std::sync::{Once, OnceLock};

    use metrics::Unit;
    use metrics_cloudwatch_embedded::Collector;

    use super::name;

    static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

    /// The metrics' units (a metric without one is a plain number).
    pub(super) fn describe() {
        metrics::describe_histogram!(name::SPEED_TO_LEAD, Unit::Milliseconds, "offer to claim");
        for count in [
            name::CLAIMS_WON,
            name::CLAIMS_LOST,
            name::ALERTS_SENT,
            name::ALERTS_FAILED,
            name::ALERTS_OPTED_OUT,
            name::EFFECTS_PARKED,
            name::BILLING_RUNS,
            name::CHARGES,
            name::REMINDERS_SENT,
            name::COLD_STARTS,
        ] {
            metrics::describe_counter!(count, Unit::Count, "");
        }
    }

    pub(super) fn install(namespace: String) {
        match super::install(namespace, None) {
            Ok(collector) => {
                let _ = COLLECTOR.set(collector);
            }
            Err(e) => tracing::warn!(error = %e, "metrics recorder not installed"),
        }
    }

    /// An invocation begins: its metrics carry its request id; the first records a cold start.
    pub(super) fn begin(request_id: &str) {
        let Some(collector) = COLLECTOR.get() else {
            return;
        };
        collector.set_property("RequestId", request_id.to_owned());
        static COLD: Once = Once::new();
        COLD.call_once(|| {
            let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
            metrics::counter!(name::COLD_STARTS, "Function" => function).increment(1);
        });
    }

    /// Writes what the invocation recorded: one EMF line per dimension set.
    pub(super) fn flush() {
        if let Some(collector) = COLLECTOR.get()
            && let Err(e) = collector.flush(std::io::stdout().lock())
        {
            tracing::warn!(error = %e, "metrics not written");
        }
    }
}
