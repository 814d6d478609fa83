//! kube-apiserver's table printers for the built-in kinds the server serves
//! (`pkg/printers/internalversion`): the columns `kubectl get` shows for Pods, Jobs,
//! ConfigMaps, Secrets and the rest. A server-side Table always carries the wide (priority 1)
//! cells; kubectl hides them without `-o wide`.

use serde_json::{Value, json};

use crate::age::{human_duration, since};

/// One column: name, type, priority.
type Column = (&'static str, &'static str, u8);

/// The columns and cells of one built-in kind.
pub struct Printer {
    /// After `Name`.
    pub columns: &'static [Column],
    /// The cells after the name, one per column.
    pub cells: fn(&Value) -> Vec<Value>,
}

impl Printer {
    /// The `columnDefinitions` of the table, `Name` first.
    pub fn definitions(&self, name_description: &str) -> Vec<Value> {
        let mut definitions = vec![json!({
            "name": "Name", "type": "string", "format": "name",
            "description": name_description, "priority": 0,
        })];
        definitions.extend(self.columns.iter().map(|(name, kind, priority)| {
            json!({"name": name, "type": kind, "format": "", "description": description(name),
                   "priority": priority})
        }));
        definitions
    }
}

/// The printer of a built-in kind, if kube-apiserver has one (otherwise the default table).
pub fn printer(group: &str, kind: &str) -> Option<Printer> {
    let printer = |columns, cells| Some(Printer { columns, cells });
    match (group, kind) {
        ("", "Pod") => printer(
            &[
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                ("Age", "string", 0),
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1),
            ],
            pod,
        ),
        ("batch", "Job") => printer(
            &[
                ("Status", "string", 0),
                ("Completions", "string", 0),
                ("Duration", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            job,
        ),
        ("apps", "Deployment") => printer(
            &[
                ("Ready", "string", 0),
                ("Up-to-date", "string", 0),
                ("Available", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
            deployment,
        ),
        ("", "ConfigMap") => printer(&[("Data", "string", 0), ("Age", "string", 0)], |o| {
            let count = |field: &str| {
                o.get(field)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            vec![json!(count("data") + count("binaryData")), age(o)]
        }),
        ("", "Secret") => printer(
            &[
                ("Type", "string", 0),
                ("Data", "string", 0),
                ("Age", "string", 0),
            ],
            |o| {
                let data = o
                    .get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
                vec![json!(text(o, "/type")), json!(data), age(o)]
            },
        ),
        ("", "ServiceAccount") => printer(&[("Secrets", "string", 0), ("Age", "string", 0)], |o| {
            let secrets = o
                .get("secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![json!(secrets), age(o)]
        }),
        ("", "Namespace") => printer(&[("Status", "string", 0), ("Age", "string", 0)], |o| {
            vec![json!(text(o, "/status/phase")), age(o)]
        }),
        ("coordination.k8s.io", "Lease") => {
            printer(&[("Holder", "string", 0), ("Age", "string", 0)], |o| {
                vec![json!(text(o, "/spec/holderIdentity")), age(o)]
            })
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            printer(&[("Created At", "date", 0)], |o| {
                vec![
                    o.pointer("/metadata/creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null),
                ]
            })
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => printer(
            &[
                ("Role", "string", 0),
                ("Age", "string", 0),
                ("Users", "string", 1),
                ("Groups", "string", 1),
                ("ServiceAccounts", "string", 1),
            ],
            binding,
        ),
        _ => None,
    }
}

/// The row's `conditions` (kube-apiserver marks finished pods).
pub fn row_conditions(group: &str, kind: &str, object: &Value) -> Option<Value> {
    if (group, kind) != ("", "Pod") {
        return None;
    }
    match text(object, "/status/phase").as_str() {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                                    "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed",
                                 "message": "The pod failed."}]),
        ),
        _ => None,
    }
}

fn description(column: &str) -> &'static str {
    match column {
        "Age" => {
            "CreationTimestamp is a timestamp representing the server time when this object was created."
        }
        "Ready" => "The aggregate readiness state of this pod for accepting traffic.",
        "Restarts" => {
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."
        }
        "Duration" => "Time required to complete the job.",
        "Containers" => "Names of each container in the template.",
        "Images" => "Images referenced by each container in the template.",
        _ => "",
    }
}

fn text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn items<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn timestamp(object: &Value, pointer: &str) -> Option<jiff::Timestamp> {
    object.pointer(pointer)?.as_str()?.parse().ok()
}

fn age(object: &Value) -> Value {
    json!(since(timestamp(object, "/metadata/creationTimestamp")))
}

/// `layoutContainerCells`: container names and images, comma-separated.
fn containers(object: &Value, pointer: &str) -> (Value, Value) {
    let containers = items(object, pointer);
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| text(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    (json!(join("/name")), json!(join("/image")))
}

/// `metav1.FormatLabelSelector`: requirements sorted by key, `<none>` when empty.
fn selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return "<none>".to_owned();
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            requirements.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expression in items(selector, "/matchExpressions") {
        let key = text(expression, "/key");
        let mut values: Vec<String> = items(expression, "/values")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        values.sort();
        let requirement = match text(expression, "/operator").as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".to_owned(),
        };
        requirements.push((key, requirement));
    }
    requirements.sort();
    let joined = requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",");
    if joined.is_empty() {
        "<none>".to_owned()
    } else {
        joined
    }
}

fn has_condition(object: &Value, kind: &str) -> bool {
    items(object, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == kind)
        .is_some_and(|c| text(c, "/status") == "True")
}

/// `printJob`: STATUS, COMPLETIONS, DURATION, AGE; CONTAINERS, IMAGES, SELECTOR.
fn job(object: &Value) -> Vec<Value> {
    let succeeded = number(object, "/status/succeeded");
    let completions = match object.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match number(object, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(object, "/status/startTime"),
        timestamp(object, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start).as_secs()),
    };
    let status = if has_condition(object, "Complete") {
        "Complete"
    } else if has_condition(object, "Failed") {
        "Failed"
    } else if object.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(object, "Suspended") {
        "Suspended"
    } else if has_condition(object, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(object, "/spec/template/spec/containers");
    vec![
        json!(status),
        json!(completions),
        json!(duration),
        age(object),
        names,
        images,
        json!(selector(object.pointer("/spec/selector"))),
    ]
}

/// `printDeployment`: READY, UP-TO-DATE, AVAILABLE, AGE; CONTAINERS, IMAGES, SELECTOR.
fn deployment(object: &Value) -> Vec<Value> {
    let desired = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let (names, images) = containers(object, "/spec/template/spec/containers");
    vec![
        json!(format!(
            "{}/{desired}",
            number(object, "/status/readyReplicas")
        )),
        json!(number(object, "/status/updatedReplicas")),
        json!(number(object, "/status/availableReplicas")),
        age(object),
        names,
        images,
        json!(selector(object.pointer("/spec/selector"))),
    ]
}

/// `printRoleBinding`/`printClusterRoleBinding`: ROLE, AGE; USERS, GROUPS, SERVICEACCOUNTS.
fn binding(object: &Value) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        text(object, "/roleRef/kind"),
        text(object, "/roleRef/name")
    );
    let subjects = items(object, "/subjects");
    let of_kind = |kind: &str| {
        subjects
            .iter()
            .filter(|s| text(s, "/kind") == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", text(s, "/namespace"), text(s, "/name")),
                _ => text(s, "/name"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        json!(role),
        age(object),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}

/// `printPod`: READY, STATUS, RESTARTS, AGE; IP, NODE, NOMINATED NODE, READINESS GATES.
fn pod(object: &Value) -> Vec<Value> {
    let phase = text(object, "/status/phase");
    let mut reason = match text(object, "/status/reason") {
        r if r.is_empty() => phase.clone(),
        r => r,
    };
    if items(object, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }
    let init_specs = items(object, "/spec/initContainers");
    // Sidecars (init containers that restart) count as containers.
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
    };
    let total = items(object, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| text(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_sidecar_restart: Option<jiff::Timestamp> = None;
    let later = |a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>| a.max(b);
    let terminated_code = |state: &Value, prefix: &str| {
        let signal = number(state, "/signal");
        if signal != 0 {
            format!("{prefix}Signal:{signal}")
        } else {
            format!("{prefix}ExitCode:{}", number(state, "/exitCode"))
        }
    };
    let init_statuses = items(object, "/status/initContainerStatuses");
    let mut initializing = false;
    for (i, status) in init_statuses.iter().enumerate() {
        let finished = timestamp(status, "/lastState/terminated/finishedAt");
        restarts += number(status, "/restartCount");
        last_restart = later(last_restart, finished);
        let name = text(status, "/name");
        if restartable(&name) {
            sidecar_restarts += number(status, "/restartCount");
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| number(t, "/exitCode") == 0) {
            continue;
        }
        if restartable(&name) && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match text(terminated, "/reason") {
                r if r.is_empty() => terminated_code(terminated, "Init:"),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    let initialized = items(object, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "Initialized" && text(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut running = false;
        for status in items(object, "/status/containerStatuses").iter().rev() {
            restarts += number(status, "/restartCount");
            last_restart = later(
                last_restart,
                timestamp(status, "/lastState/terminated/finishedAt"),
            );
            let waiting = text(status, "/state/waiting/reason");
            let terminated = status.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting;
            } else if let Some(terminated) = terminated {
                reason = match text(terminated, "/reason") {
                    r if r.is_empty() => terminated_code(terminated, ""),
                    r => r,
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if has_condition(object, "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }
    let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && text(object, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_owned();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_owned();
    }
    let restarts = match last_restart {
        Some(time) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(time))),
        _ => restarts.to_string(),
    };
    let or_none = |value: String| {
        if value.is_empty() {
            "<none>".to_owned()
        } else {
            value
        }
    };
    let gates = items(object, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| has_condition(object, &text(g, "/conditionType")))
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        age(object),
        json!(or_none(text(object, "/status/podIPs/0/ip"))),
        json!(or_none(text(object, "/spec/nodeName"))),
        json!(or_none(text(object, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(group: &str, kind: &str, object: Value) -> Vec<Value> {
        (printer(group, kind).expect("a printer").cells)(&object)
    }

    #[test]
    fn jobs_as_kubectl_get_jobs() {
        let running = json!({"metadata": {"creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"spec": {"containers": [
                         {"name": "agent", "image": "a:1"}, {"name": "side", "image": "b:2"}]}}},
            "status": {"active": 1, "startTime": "2020-01-01T00:00:00Z"}});
        let row = cells("batch", "Job", running.clone());
        assert_eq!(row[0], "Running");
        assert_eq!(row[1], "0/1");
        assert!(row[2].as_str().unwrap().ends_with('y') || row[2].as_str().unwrap().ends_with('d'));
        assert_eq!(row[4], "agent,side");
        assert_eq!(row[5], "a:1,b:2");
        assert_eq!(row[6], "batch.kubernetes.io/controller-uid=u1");
        let mut done = running;
        done["status"] = json!({"succeeded": 1, "startTime": "2020-01-01T00:00:00Z",
            "completionTime": "2020-01-01T00:02:05Z",
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                           {"type": "Complete", "status": "True"}]});
        let row = cells("batch", "Job", done.clone());
        assert_eq!(
            (&row[0], &row[1], &row[2]),
            (&json!("Complete"), &json!("1/1"), &json!("2m5s"))
        );
        done["status"]["conditions"] = json!([{"type": "Failed", "status": "True"}]);
        assert_eq!(cells("batch", "Job", done)[0], "Failed");
        let unstarted = json!({"spec": {"parallelism": 3}, "metadata": {"deletionTimestamp": "x"}});
        let row = cells("batch", "Job", unstarted);
        assert_eq!(
            (&row[0], &row[1], &row[2]),
            (&json!("Terminating"), &json!("0/1 of 3"), &json!(""))
        );
    }

    #[test]
    fn pods_as_kubectl_get_pods() {
        let pending = json!({"spec": {"containers": [{"name": "agent"}]},
                             "status": {"phase": "Pending"}});
        let row = cells("", "Pod", pending);
        assert_eq!(
            (&row[0], &row[1], &row[2]),
            (&json!("0/1"), &json!("Pending"), &json!("0"))
        );
        assert_eq!(
            (&row[4], &row[5], &row[7]),
            (&json!("<none>"), &json!("<none>"), &json!("<none>"))
        );
        let running = json!({"spec": {"containers": [{"name": "agent"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}],
                "containerStatuses": [{"name": "agent", "ready": true, "restartCount": 2,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"finishedAt": "2020-01-01T00:00:00Z"}}}]}});
        let row = cells("", "Pod", running);
        assert_eq!((&row[0], &row[1]), (&json!("1/1"), &json!("Running")));
        assert!(row[2].as_str().unwrap().starts_with("2 ("), "{}", row[2]);
        assert_eq!((&row[4], &row[5]), (&json!("10.0.0.7"), &json!("n1")));
        let done = json!({"spec": {"containers": [{"name": "agent"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "agent",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(cells("", "Pod", done.clone())[1], "Completed");
        assert!(row_conditions("", "Pod", &done).is_some());
        let killed = json!({"spec": {"containers": [{"name": "agent"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "agent",
                "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(cells("", "Pod", killed)[1], "Signal:9");
        let init = json!({"spec": {"initContainers": [{"name": "clone"}, {"name": "install"}],
                                   "containers": [{"name": "agent"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "clone", "state": {"terminated": {"exitCode": 0}}},
                {"name": "install", "state": {"running": {}}}]}});
        assert_eq!(cells("", "Pod", init)[1], "Init:1/2");
        let crash = json!({"spec": {"containers": [{"name": "agent"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "agent",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(cells("", "Pod", crash)[1], "CrashLoopBackOff");
        let deleting = json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "agent"}]}, "status": {"phase": "Running"}});
        assert_eq!(cells("", "Pod", deleting)[1], "Terminating");
    }

    #[test]
    fn other_kinds() {
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(cells("", "ConfigMap", cm)[0], 3);
        let secret = json!({"type": "Opaque", "data": {"k": ""}});
        assert_eq!(
            cells("", "Secret", secret)[..2],
            [json!("Opaque"), json!(1)]
        );
        let binding = json!({"roleRef": {"kind": "ClusterRole", "name": "edit"}, "subjects": [
            {"kind": "ServiceAccount", "namespace": "kubetask-system", "name": "kubetask"},
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}]});
        let row = cells("rbac.authorization.k8s.io", "RoleBinding", binding);
        assert_eq!(row[0], "ClusterRole/edit");
        assert_eq!(
            row[2..],
            [
                json!("alice"),
                json!("devs"),
                json!("kubetask-system/kubetask")
            ]
        );
        let deployment = json!({"spec": {"replicas": 2, "selector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["b", "a"]}, {"key": "x", "operator": "Exists"}]}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}});
        let row = cells("apps", "Deployment", deployment);
        assert_eq!(row[..3], [json!("1/2"), json!(2), json!(1)]);
        assert_eq!(row[6], "app in (a,b),x");
        assert!(printer("apiextensions.k8s.io", "CustomResourceDefinition").is_none());
    }
}
