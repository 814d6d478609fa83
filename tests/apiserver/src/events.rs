//! One Event resource under two APIs, as in kube-apiserver: an `events.k8s.io/v1` Event (what
//! kube-rs' `Recorder` writes) is the same object as a core `v1` Event (what `kubectl describe`
//! and `kubectl get events` read). They are stored in the `events.k8s.io/v1` form and converted
//! field by field for the core API (`regarding` is `involvedObject`, `note` is `message`,
//! `reportingController` is `reportingComponent`, `deprecatedSource` is `source`, …).

use serde_json::{Map, Value, json};

/// `(events.k8s.io/v1 field, core v1 field)`.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(object: &Value, to_core: bool) -> Value {
    let Value::Object(fields) = object else {
        return object.clone();
    };
    let mut converted = Map::new();
    for (key, value) in fields {
        let renamed = RENAMED.iter().find_map(|(events, core)| {
            let (from, to) = if to_core {
                (events, core)
            } else {
                (core, events)
            };
            (key == from).then_some(*to)
        });
        converted.insert(renamed.unwrap_or(key).to_owned(), value.clone());
    }
    Value::Object(converted)
}

/// A stored Event as the core API shows it.
pub fn to_core(stored: &Value) -> Value {
    let mut core = rename(stored, true);
    if core.get("source").is_none() {
        core["source"] = json!({});
    }
    for field in ["firstTimestamp", "lastTimestamp"] {
        if core.get(field).is_none() {
            core[field] = Value::Null;
        }
    }
    core
}

/// A core Event as it is stored.
pub fn from_core(core: &Value) -> Value {
    rename(core, false)
}

/// The stored fields a core field selector names (`involvedObject.name` is `regarding.name`).
pub fn stored_field(field: &str) -> String {
    for (events, core) in RENAMED {
        if field == core {
            return events.to_owned();
        }
        if let Some(rest) = field.strip_prefix(core).and_then(|r| r.strip_prefix('.')) {
            return format!("{events}.{rest}");
        }
    }
    field.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_k8s_io_event_reads_as_the_real_servers_core_event() {
        let posted = json!({
            "metadata": {"name": "hello.1", "namespace": "demo"},
            "eventTime": "2026-12-05T16:00:01.000000Z",
            "reportingController": "kubetask.io/controller",
            "reportingInstance": "kubetask-controller-0",
            "action": "Reconcile", "reason": "JobCreated", "type": "Normal",
            "regarding": {"kind": "Task", "namespace": "demo", "name": "hello"},
            "note": "Created Job hello",
        });
        let core = to_core(&posted);
        assert_eq!(core["involvedObject"]["name"], "hello");
        assert_eq!(core["message"], "Created Job hello");
        assert_eq!(core["reportingComponent"], "kubetask.io/controller");
        assert_eq!(core["source"], json!({}));
        assert_eq!(core["firstTimestamp"], Value::Null);
        assert_eq!(from_core(&core)["regarding"], posted["regarding"]);
        assert_eq!(stored_field("involvedObject.uid"), "regarding.uid");
        assert_eq!(stored_field("metadata.name"), "metadata.name");
    }
}
