//! `kubetask gateway`'s proxy: a model API request authenticated by its virtual key
//! ([`super::keys`]) and its Task still running, forwarded to the provider with the real key
//! (which agents never see), and its response passed back chunk by chunk as it arrives —
//! streamed ones are never buffered — while its usage is read as the bytes pass
//! ([`super::usage`]), priced ([`super::prices`]) and counted per namespace, Agent and model.
//! A request with an unknown, forged or finished Task's key is refused `401` in the provider's
//! own error shape, so the CLI stops cleanly.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::batch::v1::Job;
use kube::Api as KubeApi;
use kubetask_api::Limits;
use kubetask_api::Task;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

use super::clamp;
use super::keys::{self, Caller};
use super::prices::PriceTable;
use super::usage::{Api, StreamMeter, Usage};
use crate::controller::status::is_finished;
use crate::render::lifecycle::job_budget;
use crate::render::needs::agent_name;

/// A body of either direction.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a Task found running is trusted to still run.
const TASK_CHECK_FOR: Duration = Duration::from_secs(5);
/// Most bytes of a whole (not streamed) response kept to read its usage from.
const MAX_METERED_BODY: usize = 8 * 1024 * 1024;

/// Where each API's provider is, and its real key.
#[derive(Clone, Debug, Default)]
pub struct Provider {
    /// Base URL, e.g. `https://api.anthropic.com` (no trailing `/`).
    pub url: String,
    /// The provider's key; `None`: requests for it are refused (`503`).
    pub key: Option<String>,
}

/// The providers of the APIs the gateway fronts.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    pub anthropic: Provider,
    pub openai: Provider,
    pub gemini: Provider,
}

impl Providers {
    fn of(&self, api: Api) -> &Provider {
        match api {
            Api::AnthropicMessages => &self.anthropic,
            Api::OpenAiChat | Api::OpenAiResponses => &self.openai,
            Api::Gemini => &self.gemini,
        }
    }
}

/// Metrics of the gateway.
#[derive(Default, Clone)]
pub struct Metrics {
    /// `kubetask_gateway_tokens_total{namespace,agent,model,kind}` (`kind`: input, output,
    /// cache_read, cache_write).
    pub tokens: Family<Vec<(String, String)>, Counter>,
    /// `kubetask_gateway_cost_microdollars_total{namespace,agent,model}`.
    pub cost: Family<Vec<(String, String)>, Counter>,
    /// `kubetask_gateway_unpriced_responses_total{namespace,agent,model}`: a model the price
    /// table does not know, or a response without usage (counted, flagged, never free).
    pub unpriced: Family<Vec<(String, String)>, Counter>,
    /// `kubetask_gateway_refusals_total{reason}`.
    pub refusals: Family<Vec<(String, String)>, Counter>,
    /// `kubetask_gateway_upstream_errors_total{code}`: the providers' error answers, passed on.
    pub upstream_errors: Family<Vec<(String, String)>, Counter>,
    /// `kubetask_gateway_price_table_errors_total`: edits of the price table refused.
    pub price_table_errors: Counter,
    /// `kubetask_gateway_clamped_requests_total`: requests whose output limit was lowered to
    /// what their Task's budget has left.
    pub clamped: Counter,
}

pub use super::ledger::Spent;

/// What the gateway knows about one Task it serves.
#[derive(Debug, Clone)]
struct Served {
    /// When the Task was last found running.
    checked: Instant,
    /// Its Agent (a label of the metrics).
    agent: String,
    /// The budget fixed on its Job, if any.
    budget: Option<Limits>,
    /// Its ledger (`status.usage`) as last read or written.
    recorded: Spent,
    /// What this replica metered since it last wrote the ledger.
    pending: Spent,
}

/// The gateway's state.
pub struct Gateway {
    signing_key: Vec<u8>,
    providers: Providers,
    /// The price table in force (replaced whole when the admin's file changes and parses).
    prices: std::sync::RwLock<Arc<PriceTable>>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>,
    kube: kube::Client,
    /// The Tasks served: found running when, their budget and ledger.
    meters: Mutex<HashMap<Caller, Served>>,
    pub metrics: Metrics,
    max_body: usize,
}

impl Gateway {
    /// A gateway that verifies keys with `signing_key`, checks Tasks with `kube`, forwards to
    /// `providers` and prices with `prices`.
    pub fn new(
        signing_key: Vec<u8>,
        providers: Providers,
        prices: PriceTable,
        kube: kube::Client,
        max_body: usize,
    ) -> anyhow::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Gateway {
            signing_key,
            providers,
            prices: std::sync::RwLock::new(Arc::new(prices)),
            client: Client::builder(TokioExecutor::new()).build(https),
            kube,
            meters: Mutex::default(),
            metrics: Metrics::default(),
            max_body,
        })
    }

    /// What `caller`'s Task spent so far: its ledger and what this replica has not written
    /// to it yet.
    pub fn spent(&self, caller: &Caller) -> Spent {
        self.meters
            .lock()
            .ok()
            .and_then(|m| m.get(caller).map(|m| m.recorded.plus(m.pending)))
            .unwrap_or_default()
    }

    /// Adds what was metered since the last write to each Task's ledger (`status.usage`);
    /// what cannot be written now stays for the next time.
    pub async fn flush(&self) {
        let due: Vec<(Caller, Spent)> = match self.meters.lock() {
            Ok(meters) => meters
                .iter()
                .filter(|(_, m)| !m.pending.is_zero())
                .map(|(c, m)| (c.clone(), m.pending))
                .collect(),
            Err(_) => return,
        };
        for (caller, delta) in due {
            let written = super::ledger::add(&self.kube, &caller, delta).await;
            let Ok(mut meters) = self.meters.lock() else {
                return;
            };
            match written {
                Ok(super::ledger::Written::Total(total)) => {
                    if let Some(meter) = meters.get_mut(&caller) {
                        meter.recorded = total;
                        meter.pending = meter.pending.minus(delta);
                    }
                }
                Ok(super::ledger::Written::Gone) => {
                    meters.remove(&caller);
                }
                Err(error) => {
                    self.metrics
                        .refusals
                        .get_or_create(&vec![("reason".to_owned(), "LedgerWriteFailed".to_owned())])
                        .inc();
                    tracing::warn!(namespace = %caller.namespace, task = %caller.task, %error, "cannot write the Task's usage; kept for the next write");
                }
            }
        }
    }

    /// Reads the price table at `path` again every `interval`, and takes it when it changed
    /// and parses; a table with a bad entry is refused (logged with the field, counted in
    /// `kubetask_gateway_price_table_errors_total`) and the one in force kept.
    pub async fn reload_prices_every(
        self: Arc<Self>,
        path: std::path::PathBuf,
        interval: Duration,
    ) {
        let mut last = std::fs::read_to_string(&path).ok();
        loop {
            tokio::time::sleep(interval).await;
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            last = Some(text.clone());
            match PriceTable::parse(&text) {
                Ok(table) => {
                    if let Ok(mut prices) = self.prices.write() {
                        *prices = Arc::new(table);
                    }
                    tracing::info!(path = %path.display(), "price table reloaded");
                }
                Err(error) => {
                    self.metrics.price_table_errors.inc();
                    tracing::warn!(path = %path.display(), %error, "price table refused; the previous one stays in force");
                }
            }
        }
    }

    /// Writes the ledgers every `interval` until the process ends.
    pub async fn flush_every(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            self.flush().await;
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        if path == "/" {
            // A CLI's connectivity check (Claude Code sends `HEAD /`): the gateway is up.
            return Response::new(full(Bytes::new()));
        }
        let Some(api) = Api::of_path(&path) else {
            return self.refuse(
                None,
                StatusCode::NOT_FOUND,
                "NotMetered",
                &format!("{path} is not a model API the gateway meters"),
            );
        };
        let Some(caller) =
            presented_key(api, &request).and_then(|k| keys::verify(&self.signing_key, &k))
        else {
            return self.refuse(
                Some(api),
                StatusCode::UNAUTHORIZED,
                "UnknownKey",
                "the API key is not a KubeTask virtual key for a Task",
            );
        };
        let (agent, budget, spent) = match self.task_running(&caller).await {
            Ok(Some((agent, budget, spent))) => {
                if let Some(why) = budget.as_ref().and_then(|b| b.exceeded(&spent.to_usage())) {
                    return self.refuse(
                        Some(api),
                        StatusCode::FORBIDDEN,
                        "BudgetExceeded",
                        &format!(
                            "Task {}/{} is over its budget: {why} (docs/budgets.md)",
                            caller.namespace, caller.task
                        ),
                    );
                }
                (agent, budget, spent)
            }
            Ok(None) => {
                return self.refuse(
                    Some(api),
                    StatusCode::UNAUTHORIZED,
                    "TaskNotRunning",
                    &format!(
                        "Task {}/{} has finished or is gone: its key died with it",
                        caller.namespace, caller.task
                    ),
                );
            }
            Err(error) => {
                return self.refuse(
                    Some(api),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ApiUnavailable",
                    &format!("cannot check the Task: {error}"),
                );
            }
        };
        let provider = self.providers.of(api).clone();
        let Some(real_key) = provider.key.clone() else {
            return self.refuse(
                Some(api),
                StatusCode::SERVICE_UNAVAILABLE,
                "NoProviderKey",
                "the gateway has no key for this provider",
            );
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > self.max_body) {
            return self.refuse(
                Some(api),
                StatusCode::PAYLOAD_TOO_LARGE,
                "BodyTooLarge",
                &format!("the request is over {} bytes", self.max_body),
            );
        }
        let (parts, body) = request.into_parts();
        // A Task with a budget: its request is read whole, and its output limit lowered to
        // what the budget has left. Any other request streams through as it comes.
        let body = match &budget {
            Some(limits) => match self.clamped(api, &path, body, limits, &spent).await {
                Some(bytes) => Full::new(bytes).map_err(|never| match never {}).boxed(),
                None => {
                    return self.refuse(
                        Some(api),
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "BodyTooLarge",
                        &format!("the request is over {} bytes", self.max_body),
                    );
                }
            },
            None => http_body_util::Limited::new(body, self.max_body)
                .map_err(|e| -> BoxError { e })
                .boxed(),
        };
        let target = upstream_target(api, &provider.url, &path);
        let mut upstream = Request::builder().method(parts.method).uri(target);
        let rewritten = budget.is_some();
        for (name, value) in &parts.headers {
            // A body read whole is sent with its own length (it may have been rewritten).
            let stale_length = rewritten && name == header::CONTENT_LENGTH;
            if !is_hop_by_hop(name.as_str())
                && !is_credential(name.as_str())
                && name != header::HOST
                && !stale_length
            {
                upstream = upstream.header(name, value);
            }
        }
        upstream = match api {
            Api::AnthropicMessages => upstream.header("x-api-key", &real_key),
            Api::OpenAiChat | Api::OpenAiResponses => {
                upstream.header(header::AUTHORIZATION, format!("Bearer {real_key}"))
            }
            Api::Gemini => upstream.header("x-goog-api-key", &real_key),
        };
        let Ok(upstream) = upstream.body(body) else {
            return self.refuse(
                Some(api),
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the request cannot be forwarded",
            );
        };
        let response = match self.client.request(upstream).await {
            Ok(response) => response,
            Err(error) => {
                return self.refuse(
                    Some(api),
                    StatusCode::BAD_GATEWAY,
                    "ProviderUnreachable",
                    &format!("the provider cannot be reached: {error}"),
                );
            }
        };
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let model_of_path = api.model_of_path(&path);
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            // The provider's refusal (401, 429, 529, 5xx) goes to the CLI as it came, and is
            // not a model response: nothing to meter (the providers charge none).
            self.metrics
                .upstream_errors
                .get_or_create(&vec![(
                    "code".to_owned(),
                    parts.status.as_u16().to_string(),
                )])
                .inc();
            return Response::from_parts(
                parts,
                body.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
            );
        }
        let gateway = self.clone();
        let meter = if streamed {
            Meter::Stream(StreamMeter::new(api))
        } else {
            Meter::Whole(Vec::new())
        };
        let metered = MeteredBody {
            inner: body,
            api,
            meter: Some(meter),
            done: Some(Box::new(move |usage: Option<Usage>| {
                gateway.record(&caller, &agent, model_of_path, usage);
            })),
        };
        Response::from_parts(parts, metered.boxed())
    }

    /// The request of a Task with a budget, read whole, its output limit lowered to what the
    /// budget leaves after `spent` ([`clamp`]); as it came when it is not JSON or nothing
    /// needs lowering. `None` when it is over the size limit.
    async fn clamped(
        &self,
        api: Api,
        path: &str,
        body: Incoming,
        limits: &Limits,
        spent: &Spent,
    ) -> Option<Bytes> {
        let bytes = http_body_util::Limited::new(body, self.max_body)
            .collect()
            .await
            .ok()?
            .to_bytes();
        let Ok(mut request) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Some(bytes);
        };
        let model = api
            .model_of_path(path)
            .or_else(|| clamp::model_of_body(&request).map(str::to_owned));
        let prices = self
            .prices
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let Some(allowance) = clamp::allowance(limits, spent, model.as_deref(), &prices) else {
            return Some(bytes);
        };
        if !clamp::clamp(api, &mut request, allowance) {
            return Some(bytes);
        }
        self.metrics.clamped.inc();
        Some(serde_json::to_vec(&request).map_or(bytes, Bytes::from))
    }

    /// Counts what a response used (or that it reported nothing).
    fn record(
        &self,
        caller: &Caller,
        agent: &str,
        model_of_path: Option<String>,
        usage: Option<Usage>,
    ) {
        let mut usage = usage;
        if let Some(usage) = usage.as_mut()
            && usage.model.is_none()
        {
            usage.model = model_of_path.clone();
        }
        let model = usage
            .as_ref()
            .and_then(|u| u.model.clone())
            .or(model_of_path)
            .unwrap_or_else(|| "unknown".to_owned());
        let labels = |extra: Option<(&str, &str)>| {
            let mut labels = vec![
                ("namespace".to_owned(), caller.namespace.clone()),
                ("agent".to_owned(), agent.to_owned()),
                ("model".to_owned(), model.clone()),
            ];
            if let Some((k, v)) = extra {
                labels.push((k.to_owned(), v.to_owned()));
            }
            labels
        };
        let prices = self
            .prices
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let cost = usage.as_ref().and_then(|u| prices.cost(u));
        if let Some(usage) = &usage {
            for (kind, tokens) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
            ] {
                self.metrics
                    .tokens
                    .get_or_create(&labels(Some(("kind", kind))))
                    .inc_by(tokens);
            }
        }
        match cost {
            Some(micro) => {
                self.metrics.cost.get_or_create(&labels(None)).inc_by(micro);
            }
            None => {
                self.metrics.unpriced.get_or_create(&labels(None)).inc();
                tracing::warn!(namespace = %caller.namespace, task = %caller.task, %model, "a response without usage or price: counted in tokens, flagged");
            }
        }
        let mut spent = Spent::default();
        if let Some(usage) = &usage {
            spent.input_tokens =
                usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens;
            spent.output_tokens = usage.output_tokens;
        }
        match cost {
            Some(micro) => spent.cost_micro = micro,
            None => spent.unpriced = 1,
        }
        if let Ok(mut meters) = self.meters.lock()
            && let Some(meter) = meters.get_mut(caller)
        {
            meter.pending = meter.pending.plus(spent);
        }
    }

    /// If `caller`'s Task runs (exists with the key's uid, unfinished, not cancelled): its
    /// Agent, the budget fixed on its Job and what it spent so far.
    async fn task_running(
        &self,
        caller: &Caller,
    ) -> Result<Option<(String, Option<Limits>, Spent)>, kube::Error> {
        if let Ok(meters) = self.meters.lock()
            && let Some(meter) = meters.get(caller)
            && meter.checked.elapsed() < TASK_CHECK_FOR
        {
            return Ok(Some((
                meter.agent.clone(),
                meter.budget.clone(),
                meter.recorded.plus(meter.pending),
            )));
        }
        let tasks: KubeApi<Task> = KubeApi::namespaced(self.kube.clone(), &caller.namespace);
        let Some(task) = tasks.get_opt(&caller.task).await? else {
            return Ok(None);
        };
        if task.metadata.uid.as_deref() != Some(caller.uid.as_str())
            || task.status.as_ref().is_some_and(is_finished)
            || task.spec.cancel.is_some()
        {
            return Ok(None);
        }
        let agent = agent_name(&task).to_owned();
        let budget = match task.status.as_ref().and_then(|s| s.job_name.as_deref()) {
            Some(job) => {
                let jobs: KubeApi<Job> = KubeApi::namespaced(self.kube.clone(), &caller.namespace);
                jobs.get_opt(job).await?.as_ref().and_then(job_budget)
            }
            None => None,
        };
        let recorded = Spent::of_usage(task.status.as_ref().and_then(|s| s.usage.as_ref()));
        let Ok(mut meters) = self.meters.lock() else {
            return Ok(Some((agent, budget, recorded)));
        };
        let meter = meters.entry(caller.clone()).or_insert_with(|| Served {
            checked: Instant::now(),
            agent: agent.clone(),
            budget: None,
            recorded,
            pending: Spent::default(),
        });
        meter.checked = Instant::now();
        meter.agent = agent.clone();
        meter.budget = budget.clone();
        // The ledger only grows: a read older than this replica's last write is not taken.
        if recorded.input_tokens + recorded.output_tokens
            >= meter.recorded.input_tokens + meter.recorded.output_tokens
        {
            meter.recorded = recorded;
        }
        Ok(Some((agent, budget, meter.recorded.plus(meter.pending))))
    }

    /// A refusal in the provider's own error shape (so its CLI reports it and stops), counted.
    fn refuse(
        &self,
        api: Option<Api>,
        status: StatusCode,
        reason: &str,
        message: &str,
    ) -> Response<ProxyBody> {
        self.metrics
            .refusals
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
        let body = error_body(api, status, message);
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(Bytes::from(body.to_string())))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())))
    }
}

/// A body of these bytes, whole.
fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|e| -> BoxError { match e {} })
        .boxed()
}

/// The error body each provider sends for `status` (`403`: the Task is over its budget,
/// which each provider's clients take as final, not as a reason to retry).
pub fn error_body(api: Option<Api>, status: StatusCode, message: &str) -> serde_json::Value {
    let code = status.as_u16();
    match api {
        Some(Api::AnthropicMessages) => json!({"type": "error", "error": {
            "type": match code { 401 => "authentication_error", 403 => "permission_error", 413 => "request_too_large", 429 => "rate_limit_error", 503 | 502 => "api_error", _ => "invalid_request_error" },
            "message": message}}),
        Some(Api::OpenAiChat | Api::OpenAiResponses) => {
            let (kind, error_code) = match code {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                403 => ("insufficient_quota", json!("insufficient_quota")),
                _ => ("server_error", json!(null)),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": error_code}})
        }
        Some(Api::Gemini) => json!({"error": {"code": code, "message": message,
            "status": match code { 401 => "UNAUTHENTICATED", 403 => "PERMISSION_DENIED", 413 | 400 => "INVALID_ARGUMENT", _ => "UNAVAILABLE" }}}),
        None => json!({"error": message}),
    }
}

/// The key a request presents, where its API's clients put it.
fn presented_key<B>(api: Api, request: &Request<B>) -> Option<String> {
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
    match api {
        Api::AnthropicMessages => header("x-api-key").or(bearer),
        Api::OpenAiChat | Api::OpenAiResponses => bearer,
        Api::Gemini => header("x-goog-api-key").or_else(|| {
            request
                .uri()
                .query()?
                .split('&')
                .find_map(|pair| pair.strip_prefix("key=").map(str::to_owned))
        }),
    }
}

/// The provider's URL for `path` (Gemini's `key` query parameter removed: the real key goes in
/// a header).
fn upstream_target(api: Api, base: &str, path: &str) -> String {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let query: Vec<&str> = query
        .split('&')
        .filter(|pair| !(pair.is_empty() || api == Api::Gemini && pair.starts_with("key=")))
        .collect();
    let base = base.trim_end_matches('/');
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{}", query.join("&"))
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn is_credential(name: &str) -> bool {
    matches!(name, "authorization" | "x-api-key" | "x-goog-api-key")
}

enum Meter {
    Stream(StreamMeter),
    Whole(Vec<u8>),
}

type Done = Box<dyn FnOnce(Option<Usage>) + Send + Sync>;

/// A response body passed through frame by frame, read by its meter as it goes; the usage is
/// recorded when it ends — or when the client goes away first (what was streamed still counts).
struct MeteredBody {
    inner: Incoming,
    api: Api,
    meter: Option<Meter>,
    done: Option<Done>,
}

impl MeteredBody {
    fn finish(&mut self) {
        let (Some(meter), Some(done)) = (self.meter.take(), self.done.take()) else {
            return;
        };
        let usage = match meter {
            Meter::Stream(meter) => meter.finish(),
            Meter::Whole(bytes) => super::usage::from_body(self.api, &bytes),
        };
        done(usage);
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    match &mut this.meter {
                        Some(Meter::Stream(meter)) => meter.feed(data),
                        Some(Meter::Whole(bytes))
                            if bytes.len() + data.len() <= MAX_METERED_BODY =>
                        {
                            bytes.extend_from_slice(data)
                        }
                        _ => {}
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish();
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Serves the gateway on `listener` until the process ends (HTTP/1.1, a task per connection).
pub async fn serve(gateway: Arc<Gateway>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, std::convert::Infallible>(gateway.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(30))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_where_each_api_puts_them_and_never_forwarded() {
        let request = |api_header: (&str, &str), uri: &str| {
            Request::builder()
                .uri(uri)
                .header(api_header.0, api_header.1)
                .body(())
                .unwrap_or_default()
        };
        assert_eq!(
            presented_key(
                Api::AnthropicMessages,
                &request(("x-api-key", "ktk_a.b"), "/v1/messages")
            )
            .as_deref(),
            Some("ktk_a.b")
        );
        assert_eq!(
            presented_key(
                Api::OpenAiChat,
                &request(("authorization", "Bearer ktk_a.b"), "/v1/chat/completions")
            )
            .as_deref(),
            Some("ktk_a.b")
        );
        assert_eq!(
            presented_key(
                Api::Gemini,
                &request(
                    ("x-other", "1"),
                    "/v1beta/models/g:generateContent?alt=sse&key=ktk_a.b"
                )
            )
            .as_deref(),
            Some("ktk_a.b")
        );
        assert_eq!(
            upstream_target(
                Api::Gemini,
                "https://g.example/",
                "/v1beta/models/g:streamGenerateContent?alt=sse&key=ktk_a.b"
            ),
            "https://g.example/v1beta/models/g:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            upstream_target(Api::OpenAiChat, "http://o", "/v1/chat/completions"),
            "http://o/v1/chat/completions"
        );
        assert!(
            is_credential("x-api-key")
                && is_credential("authorization")
                && is_hop_by_hop("transfer-encoding")
        );
    }

    #[test]
    fn refusals_are_in_each_providers_shape() {
        let anthropic = error_body(Some(Api::AnthropicMessages), StatusCode::UNAUTHORIZED, "no");
        assert_eq!(anthropic["error"]["type"], "authentication_error");
        let openai = error_body(Some(Api::OpenAiChat), StatusCode::UNAUTHORIZED, "no");
        assert_eq!(openai["error"]["code"], "invalid_api_key");
        let gemini = error_body(Some(Api::Gemini), StatusCode::UNAUTHORIZED, "no");
        assert_eq!(gemini["error"]["status"], "UNAUTHENTICATED");
    }
}
