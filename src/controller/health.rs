//! `/healthz`, `/readyz` and `/metrics` on one HTTP port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use kube::runtime::reflector::Store;
use kubetask_api::{Task, TaskPhase};
use tokio::sync::watch;

use super::caches::Caches;
use super::metrics::Metrics;

/// What the endpoints report on.
#[derive(Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    /// Set once the controller is initialised (plugins compiled, API server reached).
    pub ready: Arc<AtomicBool>,
    pub caches: Caches,
    /// The Budgets, whose spent, reserved and limit are gauges.
    pub budgets: Store<kubetask_api::Budget>,
}

fn phase_counts(tasks: &Store<Task>) -> [(&'static str, i64); 4] {
    let mut counts = TaskPhase::ALL.map(|phase| (phase.as_str(), 0));
    for task in tasks.state() {
        // A Task the controller has not written yet is Pending.
        let phase = task
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(TaskPhase::Pending);
        if let Some(index) = TaskPhase::ALL.iter().position(|p| *p == phase) {
            counts[index].1 += 1;
        }
    }
    counts
}

/// One endpoint's answer: status, content type, body.
type Answer = (StatusCode, &'static str, String);

/// The metrics text of a probe port, or `None` when it cannot be encoded (answered 500).
pub type MetricsText = Arc<dyn Fn() -> Option<String> + Send + Sync>;

fn answer(path: &str, ready: &AtomicBool, metrics: &MetricsText) -> Answer {
    match path {
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok".to_owned()),
        "/readyz" if ready.load(Ordering::Acquire) => {
            (StatusCode::OK, "text/plain", "ok".to_owned())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting".to_owned(),
        ),
        "/metrics" => match metrics() {
            Some(text) => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                String::new(),
            ),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_owned()),
    }
}

/// The controller's metrics, with the gauges read at scrape time brought up to date.
fn controller_metrics(probes: &Probes) -> String {
    let caches = &probes.caches;
    probes.metrics.set_tasks(&phase_counts(&caches.tasks));
    let counts = caches.counts();
    probes.metrics.set_cached(&[
        ("Task", counts.tasks),
        ("Job", counts.jobs),
        ("Agent", counts.agents),
    ]);
    probes.metrics.set_budgets(&probes.budgets.state());
    probes.metrics.set_memory(
        super::memory::resident_bytes(),
        super::memory::limit_bytes(),
    );
    probes.metrics.encode()
}

async fn respond(
    ready: Arc<AtomicBool>,
    metrics: MetricsText,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = answer(request.uri().path(), &ready, &metrics);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// Binds `address` and serves until `shutdown` turns true. Returns the bound address.
pub async fn serve(
    address: SocketAddr,
    probes: Probes,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let ready = probes.ready.clone();
    let metrics: MetricsText = Arc::new(move || Some(controller_metrics(&probes)));
    serve_with(address, ready, metrics, shutdown).await
}

/// Binds `address` and serves `/healthz`, `/livez`, `/readyz` (200 once `ready`) and
/// `/metrics` (`metrics()`) until `shutdown` turns true: the probe port of every long-running
/// command. Returns the bound address.
pub async fn serve_with(
    address: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: MetricsText,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (ready, metrics) = (ready.clone(), metrics.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| respond(ready.clone(), metrics.clone(), request));
                        if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!(%error, "health connection");
                        }
                    });
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(bound)
}
