//! Which Tasks a change concerns, without scanning all Tasks: every Task that has no Job yet
//! registers what it waits on (its Agent, the ConfigMaps its contexts and its Agent's default
//! contexts read) before it looks them up, so an Agent or ConfigMap event wakes exactly the
//! Tasks that depend on it, and a plugin event wakes the Tasks that are still to be rendered.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;
use kubetask_api::Task;

/// A namespaced name.
type Key = (String, String);

#[derive(Default)]
struct Index {
    /// What each registered Task depends on (to unregister it).
    by_task: HashMap<ObjectRef<Task>, (Key, Vec<Key>)>,
    agents: HashMap<Key, HashSet<ObjectRef<Task>>>,
    config_maps: HashMap<Key, HashSet<ObjectRef<Task>>>,
}

impl Index {
    fn remove(&mut self, task: &ObjectRef<Task>) {
        let Some((agent, maps)) = self.by_task.remove(task) else {
            return;
        };
        let drop_from = |index: &mut HashMap<Key, HashSet<ObjectRef<Task>>>, key: Key| {
            if let Some(tasks) = index.get_mut(&key) {
                tasks.remove(task);
                if tasks.is_empty() {
                    index.remove(&key);
                }
            }
        };
        drop_from(&mut self.agents, agent);
        for map in maps {
            drop_from(&mut self.config_maps, map);
        }
    }
}

/// The index of Tasks waiting to start, by what they wait on.
#[derive(Default)]
pub struct WaitIndex {
    index: Mutex<Index>,
}

impl WaitIndex {
    fn with<T>(&self, f: impl FnOnce(&mut Index) -> T) -> T {
        let mut index = match self.index.lock() {
            Ok(index) => index,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut index)
    }

    /// Records that `task` (in `namespace`) waits on the Agent `agent` and these ConfigMaps,
    /// replacing what it registered before.
    pub fn register(&self, task: &ObjectRef<Task>, namespace: &str, agent: &str, maps: &[&str]) {
        let agent = (namespace.to_owned(), agent.to_owned());
        let maps: Vec<Key> = maps
            .iter()
            .map(|name| (namespace.to_owned(), (*name).to_owned()))
            .collect();
        self.with(|index| {
            index.remove(task);
            index
                .agents
                .entry(agent.clone())
                .or_default()
                .insert(task.clone());
            for map in &maps {
                index
                    .config_maps
                    .entry(map.clone())
                    .or_default()
                    .insert(task.clone());
            }
            index.by_task.insert(task.clone(), (agent, maps));
        });
    }

    /// The Task has a Job, has finished or is gone: no change to an Agent or ConfigMap
    /// concerns it any more.
    pub fn forget(&self, task: &ObjectRef<Task>) {
        self.with(|index| index.remove(task));
    }

    /// The Tasks waiting on the Agent `namespace/name`.
    pub fn of_agent(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Task>> {
        let key = (namespace.to_owned(), name.to_owned());
        self.with(|index| {
            index
                .agents
                .get(&key)
                .map(|tasks| tasks.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// The Tasks waiting on the ConfigMap `namespace/name`.
    pub fn of_config_map(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Task>> {
        let key = (namespace.to_owned(), name.to_owned());
        self.with(|index| {
            index
                .config_maps
                .get(&key)
                .map(|tasks| tasks.iter().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Every Task that has no Job yet (a plugin change concerns them all: policies apply to
    /// every Task).
    pub fn waiting(&self) -> Vec<ObjectRef<Task>> {
        self.with(|index| index.by_task.keys().cloned().collect())
    }

    /// Drops the Tasks `live` says no longer exist.
    pub fn retain(&self, live: impl Fn(&ObjectRef<Task>) -> bool) {
        self.with(|index| {
            let gone: Vec<ObjectRef<Task>> =
                index.by_task.keys().filter(|t| !live(t)).cloned().collect();
            for task in gone {
                index.remove(&task);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str) -> ObjectRef<Task> {
        ObjectRef::new(name).within("n")
    }

    #[test]
    fn a_change_wakes_exactly_the_tasks_that_wait_on_it() {
        let wait_index = WaitIndex::default();
        wait_index.register(&task("a"), "n", "default", &["guide", "base"]);
        wait_index.register(&task("b"), "n", "claude", &["guide"]);
        assert_eq!(wait_index.of_agent("n", "default"), [task("a")]);
        assert_eq!(wait_index.of_agent("other", "default"), []);
        let mut readers = wait_index.of_config_map("n", "guide");
        readers.sort_by_key(|t| t.name.clone());
        assert_eq!(readers, [task("a"), task("b")]);
        assert_eq!(wait_index.of_config_map("n", "nothing"), []);

        // Registering again replaces; forgetting removes everywhere.
        wait_index.register(&task("a"), "n", "claude", &[]);
        assert_eq!(wait_index.of_agent("n", "default"), []);
        assert_eq!(wait_index.of_config_map("n", "base"), []);
        wait_index.forget(&task("b"));
        assert_eq!(wait_index.of_config_map("n", "guide"), []);
        assert_eq!(wait_index.waiting(), [task("a")]);
        wait_index.retain(|_| false);
        assert!(wait_index.waiting().is_empty());
    }
}
