//! Per-Task memory of failed attempts: how many transient failures in a row (for the backoff),
//! and the permanent failure a Task is blocked on together with what it depended on then, so
//! that it is not tried again until one of those changes (or the longest retry has passed).
//! Also the budget that keeps failure logs at a bounded rate however many Tasks fail.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::failure::{Class, Failure, LONGEST_RETRY};

/// What a permanent failure may depend on: the Task's Agent (by resourceVersion) and the
/// installed plugins (a counter bumped on every plugin ConfigMap event).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub agent_version: Option<String>,
    pub plugins_generation: u64,
}

#[derive(Debug)]
struct Record {
    failures: u32,
    blocked: Option<(Fingerprint, Failure, Instant)>,
}

/// Failed attempts by Task uid.
#[derive(Default)]
pub struct Attempts {
    records: Mutex<HashMap<String, Record>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Attempts {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Record>) -> T) -> T {
        let mut records = match self.records.lock() {
            Ok(records) => records,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut records)
    }

    /// Records a failure of the Task `uid`; returns how many failures in a row it has had.
    pub fn failed(&self, uid: &str, failure: &Failure, fingerprint: Fingerprint) -> u32 {
        self.with(|records| {
            let record = records.entry(uid.to_owned()).or_insert(Record {
                failures: 0,
                blocked: None,
            });
            record.failures = record.failures.saturating_add(1);
            record.blocked = (failure.class == Class::Blocked)
                .then(|| (fingerprint, failure.clone(), Instant::now()));
            record.failures
        })
    }

    /// The Task `uid` got past the step that failed.
    pub fn succeeded(&self, uid: &str) {
        self.with(|records| records.remove(uid));
    }

    /// The permanent failure the Task is still blocked on: recorded with this fingerprint and
    /// less than the longest retry ago.
    pub fn blocked(&self, uid: &str, fingerprint: &Fingerprint) -> Option<Failure> {
        self.with(|records| {
            let (recorded, failure, at) = records.get(uid)?.blocked.as_ref()?;
            (recorded == fingerprint && at.elapsed() < LONGEST_RETRY).then(|| failure.clone())
        })
    }

    /// A number in `[0, 1)` for the jitter of the Task's next retry, different for every Task
    /// and attempt.
    pub fn jitter(&self, uid: &str, attempts: u32) -> f64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(uid.as_bytes());
        hasher.write_u32(attempts);
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Forgets the Tasks `live` says no longer exist.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.with(|records| records.retain(|uid, _| live(uid)));
    }
}

/// At most `per_window` failure log lines per window; the rest are counted and summed up in
/// the next line that gets through.
pub struct LogBudget {
    per_window: u32,
    window: Duration,
    state: Mutex<(Instant, u32, u64)>,
}

impl LogBudget {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// Whether a line may be logged now; `Some(n)`: yes, and `n` lines were suppressed since
    /// the last one.
    pub fn admit(&self) -> Option<u64> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (started, used, suppressed) = &mut *state;
        if started.elapsed() >= self.window {
            *started = Instant::now();
            *used = 0;
        }
        if *used < self.per_window {
            *used += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::reason;

    fn failure(class: Class) -> Failure {
        Failure {
            class,
            reason: reason::FORBIDDEN,
            message: "m".into(),
        }
    }

    #[test]
    fn counts_in_a_row_and_blocks_until_a_dependency_changes() {
        let attempts = Attempts::default();
        let transient = failure(Class::Transient {
            retry_after: None,
            give_up_after: None,
        });
        let before = Fingerprint::default();
        assert_eq!(attempts.failed("u", &transient, before.clone()), 1);
        assert_eq!(attempts.failed("u", &transient, before.clone()), 2);
        assert_eq!(
            attempts.blocked("u", &before),
            None,
            "transient does not block"
        );
        attempts.succeeded("u");
        assert_eq!(attempts.failed("u", &transient, before.clone()), 1);

        let blocked = failure(Class::Blocked);
        attempts.failed("u", &blocked, before.clone());
        assert_eq!(attempts.blocked("u", &before), Some(blocked));
        let agent_changed = Fingerprint {
            agent_version: Some("7".into()),
            ..before.clone()
        };
        assert_eq!(attempts.blocked("u", &agent_changed), None);
        assert_eq!(attempts.blocked("other", &before), None);
        attempts.retain(|_| false);
        assert_eq!(attempts.blocked("u", &before), None);

        let a = attempts.jitter("u", 1);
        assert!((0.0..1.0).contains(&a));
        assert_ne!(a, attempts.jitter("v", 1));
    }

    #[test]
    fn the_log_budget_bounds_lines_per_window() {
        let budget = LogBudget::new(2, Duration::from_secs(3600));
        assert_eq!(budget.admit(), Some(0));
        assert_eq!(budget.admit(), Some(0));
        assert_eq!(budget.admit(), None);
        assert_eq!(budget.admit(), None);
        let reopened = LogBudget::new(1, Duration::ZERO);
        assert_eq!(reopened.admit(), Some(0));
        assert_eq!(reopened.admit(), Some(0), "a new window");
    }
}
