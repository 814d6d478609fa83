//! Runs reconciles: each Task at most once at a time, at most `concurrency` at once, and work
//! due now started at once.
//!
//! This replaces kube-runtime's `Controller` runner for one reason: its scheduler puts every
//! trigger, "now" included, through a `tokio_util` `DelayQueue`, which rounds the deadline up
//! to the next millisecond and then waits on a millisecond timer, so every watch event waited
//! 1–2 ms before its reconcile started (measured in `docs/performance.md`). Here a trigger
//! joins a first-in, first-out queue of due work, and only retries wait on a timer. The
//! guarantees are kube-runtime's: triggers for an object are merged while it waits, an object
//! triggered while its reconcile runs runs once more after it, the earliest of two retry times
//! wins, and nothing starts before the Task cache has listed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// What a reconcile asks for next: nothing until a watch event concerns the object again, or
/// another reconcile after a delay (unless a watch event comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `delay`, or earlier when a watch event concerns the object.
    pub const fn requeue(delay: Duration) -> Self {
        Self {
            requeue_after: Some(delay),
        }
    }

    /// Reconcile again only when a watch event concerns the object.
    pub const fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// The delay of a requested retry.
    pub const fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// After a reconcile panicked (a bug: it is logged as an error), when it runs again.
const AFTER_PANIC: Duration = Duration::from_secs(60);

/// The bookkeeping of [`run`], without the clock or the tasks: which objects are due, which
/// wait for a time, which run, and which were triggered while running.
#[derive(Debug)]
struct Queue<R> {
    /// Due now, in the order they were triggered.
    due: VecDeque<R>,
    due_set: HashSet<R>,
    /// Due later, by time (then by arrival, to keep equal times in order).
    later: BTreeMap<(Instant, u64), R>,
    later_at: HashMap<R, (Instant, u64)>,
    arrivals: u64,
    running: HashSet<R>,
    /// Triggered while running: due again once the running reconcile ends.
    rerun: HashSet<R>,
}

impl<R: Clone + Eq + Hash> Default for Queue<R> {
    fn default() -> Self {
        Self {
            due: VecDeque::new(),
            due_set: HashSet::new(),
            later: BTreeMap::new(),
            later_at: HashMap::new(),
            arrivals: 0,
            running: HashSet::new(),
            rerun: HashSet::new(),
        }
    }
}

impl<R: Clone + Eq + Hash> Queue<R> {
    /// `object` is due now (a watch event concerns it).
    fn trigger(&mut self, object: R) {
        if self.running.contains(&object) {
            self.rerun.insert(object);
            return;
        }
        if self.due_set.contains(&object) {
            return;
        }
        if let Some(key) = self.later_at.remove(&object) {
            self.later.remove(&key);
        }
        self.due_set.insert(object.clone());
        self.due.push_back(object);
    }

    /// `object` is due at `at`, unless it is due earlier already.
    fn requeue(&mut self, object: R, at: Instant) {
        if self.due_set.contains(&object) || self.rerun.contains(&object) {
            return;
        }
        if let Some(&(old, arrival)) = self.later_at.get(&object) {
            if old <= at {
                return;
            }
            self.later.remove(&(old, arrival));
        }
        self.arrivals += 1;
        let key = (at, self.arrivals);
        self.later.insert(key, object.clone());
        self.later_at.insert(object, key);
    }

    /// Makes the objects due at or before `now` due.
    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.later.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let object = entry.remove();
            self.later_at.remove(&object);
            self.trigger(object);
        }
    }

    /// When the next object waiting for a time is due.
    fn next_deadline(&self) -> Option<Instant> {
        self.later.keys().next().map(|(at, _)| *at)
    }

    /// The next due object, now counted as running.
    fn start(&mut self) -> Option<R> {
        let object = self.due.pop_front()?;
        self.due_set.remove(&object);
        self.running.insert(object.clone());
        Some(object)
    }

    /// `object`'s reconcile ended, asking for another at `again`.
    fn finished(&mut self, object: R, again: Option<Instant>) {
        self.running.remove(&object);
        if self.rerun.remove(&object) {
            self.trigger(object);
        } else if let Some(at) = again {
            self.requeue(object, at);
        }
    }

    fn running(&self) -> usize {
        self.running.len()
    }
}

/// Reconciles the objects `triggers` names until `shutdown` resolves or `triggers` ends, then
/// waits for the running reconciles. Nothing starts before `ready` resolves (the cache `get`
/// reads has listed); an object `get` does not find (deleted meanwhile) is skipped. Each
/// reconcile runs as its own tokio task, so reconciles use every worker thread.
pub async fn run<R, K, Fut>(
    triggers: impl Stream<Item = Vec<R>>,
    ready: impl Future<Output = ()>,
    get: impl Fn(&R) -> Option<K>,
    concurrency: usize,
    reconcile: impl Fn(K) -> Fut,
    shutdown: impl Future<Output = ()>,
) where
    R: Clone + Eq + Hash + std::fmt::Display + Send + 'static,
    Fut: Future<Output = Action> + Send + 'static,
{
    let concurrency = concurrency.max(1);
    let mut queue = Queue::<R>::default();
    let mut tasks: JoinSet<(R, Action)> = JoinSet::new();
    let mut ids = HashMap::new();
    let mut is_ready = false;
    let mut triggers = std::pin::pin!(triggers.fuse());
    let mut ready = std::pin::pin!(ready);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed: Option<Instant> = None;
    loop {
        if is_ready {
            while queue.running() < concurrency {
                let Some(object) = queue.start() else { break };
                let Some(item) = get(&object) else {
                    queue.finished(object, None);
                    continue;
                };
                let span = tracing::info_span!("reconciling object", "object.ref" = %object);
                let reconciling = span.in_scope(|| reconcile(item)).instrument(span);
                let handle = tasks.spawn({
                    let object = object.clone();
                    async move { (object, reconciling.await) }
                });
                ids.insert(handle.id(), object);
            }
        }
        let deadline = queue.next_deadline();
        if deadline != armed {
            if let Some(at) = deadline {
                timer.as_mut().reset(at);
            }
            armed = deadline;
        }
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = &mut ready, if !is_ready => is_ready = true,
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let (id, object, action) = match joined {
                    Ok((id, (object, action))) => (id, Some(object), action),
                    Err(error) => {
                        let object = ids.get(&error.id()).cloned();
                        if let Some(object) = &object {
                            tracing::error!(%object, %error, "a reconcile panicked");
                        }
                        (error.id(), object, Action::requeue(AFTER_PANIC))
                    }
                };
                ids.remove(&id);
                if let Some(object) = object {
                    let again = action.requeue_after().map(|delay| Instant::now() + delay);
                    queue.finished(object, again);
                }
            }
            () = &mut timer, if armed.is_some() => {
                queue.promote(Instant::now());
                armed = None;
            }
            concerned = triggers.next() => match concerned {
                Some(objects) => objects.into_iter().for_each(|object| queue.trigger(object)),
                None => break,
            },
        }
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn started(queue: &mut Queue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.start()).collect()
    }

    #[test]
    fn due_objects_start_in_trigger_order_once_each() {
        let mut queue = Queue::default();
        for object in ["a", "b", "a", "c", "b"] {
            queue.trigger(object);
        }
        assert_eq!(started(&mut queue), ["a", "b", "c"]);
        assert_eq!(queue.running(), 3);
        assert_eq!(queue.start(), None);
    }

    #[test]
    fn an_object_triggered_while_it_runs_runs_once_more_after_it() {
        let mut queue = Queue::default();
        queue.trigger("a");
        assert_eq!(started(&mut queue), ["a"]);
        queue.trigger("a");
        queue.trigger("a");
        assert_eq!(queue.start(), None, "never twice at once");
        let now = Instant::now();
        queue.finished("a", Some(now + ms(500)));
        assert_eq!(started(&mut queue), ["a"], "once more, at once");
        queue.finished("a", None);
        assert_eq!(
            queue.next_deadline(),
            None,
            "the retry gave way to the rerun"
        );
        assert_eq!(queue.start(), None);
    }

    #[test]
    fn the_earliest_time_wins_and_a_trigger_overtakes_a_retry() {
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.requeue("a", now + ms(300));
        queue.requeue("a", now + ms(100));
        queue.requeue("a", now + ms(200));
        queue.requeue("b", now + ms(100));
        assert_eq!(queue.next_deadline(), Some(now + ms(100)));
        queue.promote(now + ms(50));
        assert_eq!(queue.start(), None, "nothing due yet");
        queue.promote(now + ms(100));
        assert_eq!(
            started(&mut queue),
            ["a", "b"],
            "equal times keep their order"
        );
        queue.finished("a", None);
        queue.finished("b", None);
        assert_eq!(queue.next_deadline(), None, "each ran once");

        queue.requeue("c", now + ms(100));
        queue.trigger("c");
        assert_eq!(
            queue.next_deadline(),
            None,
            "the trigger replaced the retry"
        );
        assert_eq!(started(&mut queue), ["c"]);
        queue.finished("c", None);
        queue.promote(now + ms(1000));
        assert_eq!(queue.start(), None);
    }

    #[test]
    fn a_due_object_ignores_a_later_retry() {
        let now = Instant::now();
        let mut queue = Queue::default();
        queue.trigger("a");
        queue.requeue("a", now + ms(100));
        assert_eq!(queue.next_deadline(), None);
        assert_eq!(started(&mut queue), ["a"]);
    }

    /// What the reconciles of a [`run`] saw: how many ran at once at most, and each start.
    #[derive(Default)]
    struct Seen {
        running: HashMap<String, usize>,
        at_once: usize,
        most_at_once: usize,
        overlapping: bool,
        starts: Vec<(String, Instant)>,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconciles_run_once_per_object_at_a_time_within_the_concurrency() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (send, receive) = futures::channel::mpsc::unbounded::<Vec<String>>();
        let (ready_send, ready_receive) = tokio::sync::oneshot::channel::<()>();
        let (stop_send, stop_receive) = tokio::sync::oneshot::channel::<()>();
        let record = seen.clone();
        let running = tokio::spawn(run(
            receive,
            async move {
                let _ = ready_receive.await;
            },
            |name: &String| (name != "gone").then(|| name.clone()),
            3,
            move |name: String| {
                let seen = record.clone();
                async move {
                    if let Ok(mut seen) = seen.lock() {
                        let count = seen.running.entry(name.clone()).or_default();
                        *count += 1;
                        let overlapping = *count > 1;
                        seen.overlapping |= overlapping;
                        seen.at_once += 1;
                        seen.most_at_once = seen.most_at_once.max(seen.at_once);
                        seen.starts.push((name.clone(), Instant::now()));
                    }
                    tokio::time::sleep(ms(20)).await;
                    if let Ok(mut seen) = seen.lock() {
                        seen.at_once -= 1;
                        if let Some(count) = seen.running.get_mut(&name) {
                            *count -= 1;
                        }
                    }
                    if name == "retry" {
                        Action::requeue(ms(30))
                    } else {
                        Action::await_change()
                    }
                }
            },
            async move {
                let _ = stop_receive.await;
            },
        ));
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        send.unbounded_send(names(&["a", "b", "gone"])).ok();
        // Give an eager runner the chance to start before its cache is ready.
        tokio::time::sleep(ms(30)).await;
        let made_ready = Instant::now();
        ready_send.send(()).ok();
        for _ in 0..5 {
            send.unbounded_send(names(&["a", "b", "c", "d", "e", "retry"]))
                .ok();
            tokio::time::sleep(ms(5)).await;
        }
        let last_trigger = Instant::now();
        // Until "retry" has run twice on its own after the last trigger.
        let limit = Instant::now() + Duration::from_secs(10);
        loop {
            let retried = seen.lock().map(|s| {
                s.starts
                    .iter()
                    .filter(|(name, at)| name == "retry" && *at > last_trigger + ms(45))
                    .count()
            });
            if retried.unwrap_or(0) >= 2 || Instant::now() > limit {
                break;
            }
            tokio::time::sleep(ms(10)).await;
        }
        stop_send.send(()).ok();
        let _ = running.await;
        let seen = seen
            .lock()
            .map(|s| (s.most_at_once, s.overlapping, s.starts.clone()));
        let Ok((most_at_once, overlapping, starts)) = seen else {
            panic!("poisoned");
        };
        let names: Vec<&str> = starts.iter().map(|(name, _)| name.as_str()).collect();
        assert!(
            starts.iter().all(|(_, at)| *at >= made_ready),
            "nothing starts before the cache is ready"
        );
        assert!(
            !overlapping,
            "an object reconciled twice at once: {names:?}"
        );
        assert_eq!(most_at_once, 3, "the concurrency is used and not exceeded");
        assert!(!names.contains(&"gone"), "{names:?}");
        for name in ["a", "b", "c", "d", "e"] {
            assert!(names.contains(&name), "{name} never ran: {names:?}");
        }
        let retried = starts
            .iter()
            .filter(|(name, at)| name == "retry" && *at > last_trigger + ms(45))
            .count();
        assert!(
            retried >= 2,
            "a requested retry runs again by itself: {names:?}"
        );
    }
}
