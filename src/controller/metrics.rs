//! Prometheus metrics: reconciles, errors by reason, reconcile and render durations, Tasks
//! by phase, leadership, cached objects by kind and the process's memory.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabel {
    namespace: String,
    budget: String,
}

type DollarGauge = Gauge<f64, AtomicU64>;

/// Each Budget's current period, as gauges.
#[derive(Default)]
struct BudgetGauges {
    spent_usd: Family<BudgetLabel, DollarGauge>,
    reserved_usd: Family<BudgetLabel, DollarGauge>,
    limit_usd: Family<BudgetLabel, DollarGauge>,
    spent_tokens: Family<BudgetLabel, Gauge>,
    reserved_tokens: Family<BudgetLabel, Gauge>,
    limit_tokens: Family<BudgetLabel, Gauge>,
}

impl BudgetGauges {
    fn register(&self, registry: &mut Registry) {
        let dollars = [
            (
                "budget_spent_usd",
                "What the Tasks a Budget governs spent in its current period, in US dollars",
                &self.spent_usd,
            ),
            (
                "budget_reserved_usd",
                "What its running Tasks hold, in US dollars",
                &self.reserved_usd,
            ),
            (
                "budget_limit_usd",
                "Its limit per period, in US dollars (Budgets with one)",
                &self.limit_usd,
            ),
        ];
        for (name, help, family) in dollars {
            registry.register(name, help, family.clone());
        }
        let tokens = [
            (
                "budget_spent_tokens",
                "The tokens the Tasks a Budget governs used in its current period",
                &self.spent_tokens,
            ),
            (
                "budget_reserved_tokens",
                "The tokens its running Tasks hold",
                &self.reserved_tokens,
            ),
            (
                "budget_limit_tokens",
                "Its token limit per period (Budgets with one)",
                &self.limit_tokens,
            ),
        ];
        for (name, help, family) in tokens {
            registry.register(name, help, family.clone());
        }
    }
}

/// The controller's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ReasonLabel, Counter>,
    reconcile_seconds: Histogram,
    render_seconds: Histogram,
    tasks: Family<PhaseLabel, Gauge>,
    leader: Gauge,
    cached: Family<KindLabel, Gauge>,
    resident: Gauge,
    limit: Gauge,
    budgets: BudgetGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubetask");
        let reconciles = Counter::default();
        let errors = Family::<ReasonLabel, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let render_seconds = Histogram::new(exponential_buckets(0.00002, 2.0, 16));
        let tasks = Family::<PhaseLabel, Gauge>::default();
        let leader = Gauge::default();
        let cached = Family::<KindLabel, Gauge>::default();
        let (resident, limit) = (Gauge::default(), Gauge::default());
        registry.register("reconciles", "Task reconciliations", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciliations and failed Tasks, by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one Task",
            reconcile_seconds.clone(),
        );
        registry.register(
            "render_duration_seconds",
            "Time to render one Task through the plugin pipeline",
            render_seconds.clone(),
        );
        registry.register(
            "tasks",
            "Tasks by phase (in the watched namespaces)",
            tasks.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "cached_objects",
            "Objects held in the controller's caches, by kind",
            cached.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident memory of the controller process",
            resident.clone(),
        );
        registry.register(
            "memory_limit_bytes",
            "The memory limit of the controller's cgroup (0: none)",
            limit.clone(),
        );
        let budgets = BudgetGauges::default();
        budgets.register(&mut registry);
        Self {
            registry,
            budgets,
            reconciles,
            errors,
            reconcile_seconds,
            render_seconds,
            tasks,
            leader,
            cached,
            resident,
            limit,
        }
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_seconds
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// Counts an error (API failure, or a Task failing or waiting) by reason.
    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records one render's duration.
    pub fn render(&self, seconds: f64) {
        self.render_seconds.observe(seconds);
    }

    /// Sets the Tasks-by-phase gauges.
    pub fn set_tasks(&self, counts: &[(&str, i64)]) {
        for (phase, count) in counts {
            self.tasks
                .get_or_create(&PhaseLabel {
                    phase: (*phase).to_owned(),
                })
                .set(*count);
        }
    }

    /// Sets the Budget gauges from `budgets` (a deleted Budget's go).
    pub fn set_budgets(&self, budgets: &[std::sync::Arc<kubetask_api::Budget>]) {
        let gauges = &self.budgets;
        gauges.spent_usd.clear();
        gauges.reserved_usd.clear();
        gauges.limit_usd.clear();
        gauges.spent_tokens.clear();
        gauges.reserved_tokens.clear();
        gauges.limit_tokens.clear();
        for budget in budgets {
            let label = BudgetLabel {
                namespace: budget.metadata.namespace.clone().unwrap_or_default(),
                budget: budget.metadata.name.clone().unwrap_or_default(),
            };
            let status = budget.status.clone().unwrap_or_default();
            gauges.spent_usd.get_or_create(&label).set(status.spent_usd);
            gauges
                .reserved_usd
                .get_or_create(&label)
                .set(status.reserved_usd);
            gauges
                .spent_tokens
                .get_or_create(&label)
                .set(status.spent_tokens);
            gauges
                .reserved_tokens
                .get_or_create(&label)
                .set(status.reserved_tokens);
            if let Some(limit) = budget.spec.limits.max_cost_usd {
                gauges.limit_usd.get_or_create(&label).set(limit);
            }
            if let Some(limit) = budget.spec.limits.max_tokens {
                gauges.limit_tokens.get_or_create(&label).set(limit);
            }
        }
    }

    /// Sets the cached-objects-by-kind gauges.
    pub fn set_cached(&self, counts: &[(&str, usize)]) {
        for (kind, count) in counts {
            self.cached
                .get_or_create(&KindLabel {
                    kind: (*kind).to_owned(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    /// Sets the resident memory and limit gauges (0 when unknown or unlimited).
    pub fn set_memory(&self, resident: Option<u64>, limit: Option<u64>) {
        let bytes = |b: Option<u64>| i64::try_from(b.unwrap_or(0)).unwrap_or(i64::MAX);
        self.resident.set(bytes(resident));
        self.limit.set(bytes(limit));
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_metric() {
        let metrics = Metrics::default();
        drop(metrics.reconcile());
        metrics.error("AgentNotFound");
        metrics.render(0.0001);
        metrics.set_tasks(&[("Running", 3)]);
        metrics.set_leader(true);
        metrics.set_cached(&[("Job", 7)]);
        metrics.set_memory(Some(1 << 20), None);
        let text = metrics.encode();
        for line in [
            "kubetask_reconciles_total 1",
            "kubetask_reconcile_errors_total{reason=\"AgentNotFound\"} 1",
            "kubetask_reconcile_duration_seconds_count 1",
            "kubetask_render_duration_seconds_count 1",
            "kubetask_tasks{phase=\"Running\"} 3",
            "kubetask_leader 1",
            "kubetask_cached_objects{kind=\"Job\"} 7",
            "kubetask_resident_memory_bytes 1048576",
            "kubetask_memory_limit_bytes 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
