//! Where the exit's decisions go: a counter by verdict (every decision), a log line (every
//! decision; refusals at `info`), and — at most [`EVENTS_PER_TASK`] per Task and window — an
//! Event on the Task through an [`EventSink`], so a Task's owner sees what was refused without
//! a flood.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::exit::{Audit, Decision, Verdict};

/// Most Events per Task in one [`EVENT_WINDOW`].
pub const EVENTS_PER_TASK: u32 = 10;
/// The window of [`EVENTS_PER_TASK`].
pub const EVENT_WINDOW: Duration = Duration::from_secs(60);
/// Most Tasks remembered for rate limiting; the oldest windows are dropped first.
const MAX_TRACKED_TASKS: usize = 10_000;

/// Receives the decisions that become Events on their Task.
pub trait EventSink: Send + Sync {
    /// Posts one decision (its Task is set) as an Event.
    fn post(&self, decision: &Decision);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

/// The exit's [`Audit`]: metric, log line, rate-limited Events.
pub struct ExitAudit {
    decisions: Family<VerdictLabel, Counter>,
    sink: Option<Arc<dyn EventSink>>,
    windows: Mutex<HashMap<(String, String), (Instant, u32)>>,
}

impl ExitAudit {
    /// An audit registering `kubetask_egress_decisions_total` in `registry`, posting Events
    /// to `sink` when there is one.
    pub fn new(registry: &mut Registry, sink: Option<Arc<dyn EventSink>>) -> Self {
        let decisions = Family::<VerdictLabel, Counter>::default();
        registry.register(
            "egress_decisions",
            "Connections the exit allowed or refused, by verdict",
            decisions.clone(),
        );
        Self {
            decisions,
            sink,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// How many decisions had `verdict`.
    pub fn count(&self, verdict: Verdict) -> u64 {
        self.decisions
            .get_or_create(&VerdictLabel {
                verdict: verdict.as_str(),
            })
            .get()
    }

    /// Whether this Task may get another Event now.
    fn admit_event(&self, task: &(String, String), now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        if windows.len() >= MAX_TRACKED_TASKS && !windows.contains_key(task) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < EVENT_WINDOW);
            if windows.len() >= MAX_TRACKED_TASKS {
                return false;
            }
        }
        let (start, count) = windows.entry(task.clone()).or_insert((now, 0));
        if now.duration_since(*start) >= EVENT_WINDOW {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= EVENTS_PER_TASK
    }
}

impl Audit for ExitAudit {
    fn record(&self, decision: &Decision) {
        self.decisions
            .get_or_create(&VerdictLabel {
                verdict: decision.verdict.as_str(),
            })
            .inc();
        let task = decision
            .task
            .as_ref()
            .map(|(ns, name)| format!("{ns}/{name}"))
            .unwrap_or_default();
        let target = decision.target.as_deref().unwrap_or("");
        if decision.verdict == Verdict::Allowed {
            tracing::debug!(
                task,
                target,
                verdict = decision.verdict.as_str(),
                "egress allowed"
            );
        } else {
            tracing::info!(
                task,
                target,
                verdict = decision.verdict.as_str(),
                reason = decision.reason,
                "egress refused"
            );
        }
        if let (Some(sink), Some(task)) = (&self.sink, &decision.task)
            && self.admit_event(task, Instant::now())
        {
            sink.post(decision);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<Decision>>);

    impl EventSink for Collect {
        fn post(&self, decision: &Decision) {
            if let Ok(mut posted) = self.0.lock() {
                posted.push(decision.clone());
            }
        }
    }

    fn decision(task: &str, verdict: Verdict) -> Decision {
        Decision {
            task: Some(("ns".to_owned(), task.to_owned())),
            target: Some("evil.example:443".to_owned()),
            verdict,
            reason: "test".to_owned(),
        }
    }

    #[test]
    fn every_decision_is_counted_and_events_are_bounded_per_task() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let mut registry = Registry::default();
        let audit = ExitAudit::new(&mut registry, Some(sink.clone()));
        for _ in 0..25 {
            audit.record(&decision("a", Verdict::DomainDenied));
        }
        audit.record(&decision("b", Verdict::Allowed));
        audit.record(&Decision {
            task: None,
            ..decision("x", Verdict::Unauthenticated)
        });
        assert_eq!(audit.count(Verdict::DomainDenied), 25);
        assert_eq!(audit.count(Verdict::Allowed), 1);
        assert_eq!(audit.count(Verdict::Unauthenticated), 1);
        let posted = sink.0.lock().map(|p| p.clone()).unwrap_or_default();
        let for_a = posted
            .iter()
            .filter(|d| d.task == decision("a", Verdict::Allowed).task);
        assert_eq!(for_a.count(), EVENTS_PER_TASK as usize);
        assert_eq!(
            posted.len(),
            EVENTS_PER_TASK as usize + 1,
            "b's, and none without a Task"
        );
        let mut text = String::new();
        let encoded = prometheus_client::encoding::text::encode(&mut text, &registry);
        assert!(encoded.is_ok());
        assert!(
            text.contains("egress_decisions_total{verdict=\"domain_denied\"} 25"),
            "{text}"
        );
    }

    #[test]
    fn the_window_reopens() {
        let mut registry = Registry::default();
        let audit = ExitAudit::new(&mut registry, None);
        let task = ("ns".to_owned(), "a".to_owned());
        let start = Instant::now();
        for _ in 0..EVENTS_PER_TASK {
            assert!(audit.admit_event(&task, start));
        }
        assert!(!audit.admit_event(&task, start + Duration::from_secs(1)));
        assert!(audit.admit_event(&task, start + EVENT_WINDOW));
    }
}
