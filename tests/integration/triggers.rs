//! `kubetask events` against the test API server, with `manifests/events/rbac.yaml`'s
//! permissions: a signed `issues.opened` delivery creates exactly one Task whose context holds
//! the issue; redeliveries — 50 of them, and a receiver restart mid-burst — still leave one;
//! `Forbid` and `Replace` per issue; and each bad delivery refused with its reason, counted in
//! the trigger's status, creating nothing.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::ResourceExt as _;
use kube::api::ListParams;
use kubetask::api::{Task, TaskTrigger};
use kubetask::triggers::github::sign;
use serde_json::{Value, json};

use super::support::{Cluster, free_port};

const NS: &str = "team-a";
const SECRET: &str = "webhook-s3cret";
const OPENED: &str = include_str!("../fixtures/github/issues-opened.json");
const COMMENT: &str = include_str!("../fixtures/github/issue-comment-created.json");

/// `kubetask events` as its own user.
struct Receiver {
    child: Child,
    port: u16,
    metrics_port: u16,
}

impl Receiver {
    fn start(cluster: &Cluster) -> Receiver {
        let port = free_port();
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_kubetask"))
            .args(["events", "--kubeconfig"])
            .arg(&cluster.events_kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--max-body-bytes", "65536"])
            .env_remove("KUBECONFIG")
            // DEBUG_EVENTS=1 shows the receiver's output (its logs go to stdout).
            .stdout(if std::env::var("DEBUG_EVENTS").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if std::env::var("DEBUG_EVENTS").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("kubetask events starts");
        let receiver = Receiver {
            child,
            port,
            metrics_port,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return receiver;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("kubetask events does not listen");
    }

    /// POSTs `body` to the hook of `trigger` with `headers`; the status and the JSON answer.
    fn post(&self, trigger: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut request = format!(
            "POST /hooks/{NS}/{trigger} HTTP/1.1\r\nHost: hooks\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json = answer
            .split_once("\r\n\r\n")
            .and_then(|(_, body)| serde_json::from_str(body).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    /// Its `/metrics` text.
    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    /// A signed GitHub delivery.
    fn deliver(&self, trigger: &str, event: &str, delivery: &str, body: &str) -> (u16, Value) {
        self.post(
            trigger,
            &[
                ("X-GitHub-Event", event.to_owned()),
                ("X-GitHub-Delivery", delivery.to_owned()),
                (
                    "X-Hub-Signature-256",
                    sign(SECRET.as_bytes(), body.as_bytes()),
                ),
            ],
            body.as_bytes(),
        )
    }
}

impl Receiver {
    /// SIGTERM (a rolling restart): it writes what it counted, then exits.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("kubetask events did not stop on SIGTERM");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trigger_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1
kind: TaskTrigger
metadata: {{name: {name}, namespace: {NS}}}
spec:
  source:
    github: {{repository: myorg/service-a, events: [issues, issue_comment], webhookSecretRef: {{name: hook}}}}
  taskTemplate:
    spec:
      contexts:
        - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: 'Do what /workspace/event.md asks.'}}}}}}
{extra}"
    )
}

/// A GitHub trigger that polls the fake GitHub at `api` every second, with the `gh-api` token.
fn polling_trigger_yaml(name: &str, extra: &str, api: &str) -> String {
    trigger_yaml(name, extra).replace(
        "webhookSecretRef: {name: hook}",
        &format!(
            "webhookSecretRef: {{name: hook}}, tokenSecretRef: {{name: gh-api}}, apiURL: '{api}', poll: {{interval: 1s}}"
        ),
    )
}

async fn setup() -> Cluster {
    let cluster = Cluster::start().await;
    cluster
        .install_rbac_from("manifests/events/rbac.yaml")
        .await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "hook", "namespace": NS},
        "stringData": {"secret": SECRET},
    }))
    .unwrap();
    kube::Api::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    cluster
}

/// The Secret `gh-api` with the fake GitHub's API token.
async fn api_token(cluster: &Cluster) {
    let token: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "gh-api", "namespace": NS},
        "stringData": {"token": "gh-api-token"},
    }))
    .unwrap();
    kube::Api::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &token)
        .await
        .unwrap();
}

/// Creates the TaskTrigger of `yaml`, as `kubectl create` would.
async fn create(cluster: &Cluster, yaml: &str) {
    let trigger: TaskTrigger = serde_yaml::from_str(yaml).unwrap();
    kube::Api::<TaskTrigger>::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &trigger)
        .await
        .unwrap();
}

async fn tasks_of(cluster: &Cluster, trigger: &str) -> Vec<Task> {
    cluster
        .tasks(NS)
        .list(&ListParams::default().labels(&format!("kubetask.io/task-trigger={trigger}")))
        .await
        .unwrap()
        .items
}

/// The trigger's Tasks once `done` holds of them (at most 30 s; then as they are, for the
/// caller's assertions to say what is missing).
async fn tasks_when(cluster: &Cluster, trigger: &str, done: impl Fn(&[Task]) -> bool) -> Vec<Task> {
    let mut tasks = Vec::new();
    for _ in 0..300 {
        tasks = tasks_of(cluster, trigger).await;
        if done(&tasks) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tasks
}

/// The trigger's status once the receiver wrote what it counted (at most a second later).
async fn status_when(
    cluster: &Cluster,
    name: &str,
    done: impl Fn(&kubetask::api::TaskTriggerStatus) -> bool,
) -> kubetask::api::TaskTriggerStatus {
    let triggers: kube::Api<TaskTrigger> = kube::Api::namespaced(cluster.client.clone(), NS);
    for _ in 0..100 {
        let status = triggers.get(name).await.unwrap().status.unwrap_or_default();
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the status of {name} never got there: {:?}",
        triggers.get(name).await.unwrap().status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_makes_one_task_however_often_it_is_delivered() {
    let cluster = setup().await;
    create(
        &cluster,
        &trigger_yaml(
            "issues",
            "  filter: {labels: [kubetask]}\n  concurrencyPolicy: Allow\n",
        ),
    )
    .await;
    let mut receiver = Receiver::start(&cluster);
    let (status, answer) = receiver.deliver("issues", "issues", "d-1", OPENED);
    assert_eq!(status, 201, "{answer}");
    let name = answer["task"].as_str().unwrap().to_owned();
    let task = cluster.tasks(NS).get(&name).await.unwrap();
    let event_file = task.spec.contexts[1].file.clone().unwrap();
    assert_eq!(event_file.file_path.as_deref(), Some("/workspace/event.md"));
    let text = event_file.source.inline.unwrap();
    assert!(
        text.contains("UNTRUSTED") && text.contains("Run tests and create PR."),
        "{text}"
    );
    assert_eq!(
        task.metadata.annotations.unwrap()["kubetask.io/source-url"],
        "https://github.com/myorg/service-a/issues/42"
    );

    // 50 redeliveries, the receiver restarted in the middle of them (its counts written
    // on SIGTERM; a SIGKILL would lose up to a second of counts, never a Task).
    let mut answers = Vec::new();
    for round in 0..50 {
        if round == 25 {
            receiver.terminate();
            receiver = Receiver::start(&cluster);
        }
        answers.push(receiver.deliver("issues", "issues", "d-1", OPENED).0);
    }
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    let metrics = receiver.metrics();
    assert!(
        metrics.contains("kubetask_trigger_deliveries_total{code=\"200\"} 25"),
        "the restarted receiver answered 25 duplicates: {metrics}"
    );
    assert_eq!(tasks_of(&cluster, "issues").await.len(), 1);
    let counted = status_when(&cluster, "issues", |s| s.duplicate == 50).await;
    assert_eq!((counted.received, counted.accepted), (51, 1));
    assert!(counted.last_event_time.is_some());
    assert_eq!(counted.conditions[0].reason, "Receiving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_records_an_event_of_a_running_issue_and_replace_cancels_the_old_task() {
    let cluster = setup().await;
    create(&cluster, &trigger_yaml("forbid", "")).await;
    create(
        &cluster,
        &trigger_yaml("replace", "  concurrencyPolicy: Replace\n"),
    )
    .await;
    let receiver = Receiver::start(&cluster);
    let labeled = OPENED.replace(
        "\"action\": \"opened\"",
        "\"action\": \"labeled\", \"label\": {\"name\": \"kubetask\"}",
    );
    for trigger in ["forbid", "replace"] {
        assert_eq!(receiver.deliver(trigger, "issues", "a", OPENED).0, 201);
    }
    // No controller runs: the first Tasks stay unfinished.
    let (status, answer) = receiver.deliver("forbid", "issues", "b", &labeled);
    assert_eq!(
        (status, answer["skipped"].as_str()),
        (202, Some("Forbidden")),
        "{answer}"
    );
    assert_eq!(tasks_of(&cluster, "forbid").await.len(), 1);
    let (status, answer) = receiver.deliver("replace", "issues", "b", &labeled);
    assert_eq!(status, 201, "{answer}");
    let tasks = tasks_of(&cluster, "replace").await;
    assert_eq!(tasks.len(), 2);
    let cancelled: Vec<&Task> = tasks.iter().filter(|t| t.spec.cancel.is_some()).collect();
    assert_eq!(
        cancelled.len(),
        1,
        "the older Task is cancelled, its logs kept"
    );
    assert_ne!(
        cancelled[0].metadata.name.as_deref(),
        answer["task"].as_str()
    );
    status_when(&cluster, "forbid", |s| {
        s.rejected.get("Forbidden") == Some(&1)
    })
    .await;
}

/// Every bad delivery gets a clear refusal, creates nothing, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_and_counted() {
    let cluster = setup().await;
    create(&cluster, &trigger_yaml("issues", "")).await;
    create(
        &cluster,
        &trigger_yaml(
            "members",
            "  filter: {commentPrefix: /kubetask, authorAssociation: [OWNER, MEMBER]}\n",
        ),
    )
    .await;
    let receiver = Receiver::start(&cluster);
    let headers = |signature: Option<String>| {
        let mut headers = vec![
            ("X-GitHub-Event", "issues".to_owned()),
            ("X-GitHub-Delivery", "x".to_owned()),
        ];
        if let Some(signature) = signature {
            headers.push(("X-Hub-Signature-256", signature));
        }
        headers
    };
    let forged = receiver.post(
        "issues",
        &headers(Some(sign(b"guess", OPENED.as_bytes()))),
        OPENED.as_bytes(),
    );
    assert_eq!(forged.0, 401, "{}", forged.1);
    let unsigned = receiver.post("issues", &headers(None), OPENED.as_bytes());
    assert_eq!(unsigned.0, 401);
    assert!(
        unsigned.1["error"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256")
    );
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000));
    let too_big = receiver.post(
        "issues",
        &headers(Some(sign(SECRET.as_bytes(), huge.as_bytes()))),
        huge.as_bytes(),
    );
    assert_eq!(
        (too_big.0, too_big.1["rejected"].as_str()),
        (413, Some("BodyTooLarge"))
    );
    let malformed = receiver.deliver("issues", "issues", "x", "{not json");
    assert_eq!(malformed.0, 400, "{}", malformed.1);
    let not_taken = receiver.deliver("issues", "push", "x", OPENED);
    assert_eq!(not_taken.0, 422);
    assert_eq!(not_taken.1["rejected"], "EventNotTaken");
    let unknown = receiver.deliver("nobody", "issues", "x", OPENED);
    assert_eq!(unknown.0, 404);
    // A collaborator's `/kubetask` comment where only owners and members may trigger.
    let outsider = receiver.deliver("members", "issue_comment", "x", COMMENT);
    assert_eq!(
        (outsider.0, outsider.1["skipped"].as_str()),
        (202, Some("AuthorNotAllowed")),
        "{}",
        outsider.1
    );
    // A template that makes an invalid Task (64 contexts, the most a Task has, and the event's
    // file makes 65): the API server's refusal, with the field.
    let full: String = (0..64)
        .map(|i| format!("        - {{type: File, file: {{filePath: /workspace/{i}.md, source: {{inline: x}}}}}}\n"))
        .collect();
    let mut yaml = trigger_yaml("invalid", "");
    let at = yaml.find("      contexts:\n").unwrap() + "      contexts:\n".len();
    let end = yaml[at..].find('\n').unwrap() + at + 1;
    yaml.replace_range(at..end, &full);
    create(&cluster, &yaml).await;
    let invalid = receiver.deliver("invalid", "issues", "x", OPENED);
    assert_eq!(invalid.0, 422, "{}", invalid.1);
    assert!(
        invalid.1["message"]
            .as_str()
            .unwrap()
            .contains("spec.contexts"),
        "{}",
        invalid.1
    );
    // A trigger whose Secret is missing: its condition says so; no crash, no Task.
    create(
        &cluster,
        &trigger_yaml("lost", "").replace("{name: hook}", "{name: gone}"),
    )
    .await;
    let lost = receiver.deliver("lost", "issues", "x", OPENED);
    assert_eq!(lost.0, 503);
    let status = status_when(&cluster, "lost", |s| !s.conditions.is_empty()).await;
    assert_eq!(
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str()
        ),
        ("False", "SecretMissing")
    );

    for trigger in ["issues", "members", "invalid", "lost"] {
        assert!(tasks_of(&cluster, trigger).await.is_empty(), "{trigger}");
    }
    // A rotated webhook secret applies at once (the receiver reads it again on a mismatch),
    // and the old one no longer works (within `CACHE_FOR` of the rotation at the latest).
    let rotated = json!({"stringData": {"secret": "rotated-s3cret"}});
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.client.clone(), NS)
        .patch(
            "hook",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&rotated),
        )
        .await
        .unwrap();
    let signed_with = |secret: &str| {
        let mut headers = headers(None);
        headers.push((
            "X-Hub-Signature-256",
            sign(secret.as_bytes(), OPENED.as_bytes()),
        ));
        headers
    };
    let new = receiver.post("issues", &signed_with("rotated-s3cret"), OPENED.as_bytes());
    assert_eq!(new.0, 201, "{}", new.1);
    let old = receiver.post("issues", &signed_with(SECRET), OPENED.as_bytes());
    assert_eq!(old.0, 401, "{}", old.1);
    let status = status_when(&cluster, "issues", |s| {
        s.rejected.get("SignatureInvalid") == Some(&3) && s.accepted == 1
    })
    .await;
    assert_eq!(status.rejected.get("SignatureInvalid"), Some(&3));
    assert_eq!(status.rejected.get("MalformedPayload"), Some(&1));
    assert_eq!(status.rejected.get("BodyTooLarge"), Some(&1));
    assert_eq!(status.rejected.get("EventNotTaken"), Some(&1));
    status_when(&cluster, "members", |s| {
        s.rejected.get("AuthorNotAllowed") == Some(&1)
    })
    .await;
    status_when(&cluster, "invalid", |s| {
        s.rejected.get("InvalidTask") == Some(&1)
    })
    .await;
}

/// `spec.report.comment: PerTask`: a comment on the issue when its Task is created, edited
/// with the result and the pull request when it ends — posted once, whichever replica sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_gets_a_comment_edited_with_the_tasks_result() {
    use kube::api::{Patch, PatchParams};
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    api_token(&cluster).await;
    // The label-router mapper plugin passes this issue's Task through (and the receiver reads
    // its ConfigMap: part of what the RBAC check below covers).
    cluster
        .install_plugin("plugins/examples/label-router/configmap.yaml")
        .await;
    create(
        &cluster,
        &trigger_yaml(
            "reported",
            "  report: {comment: PerTask}\n  mapper: label-router\n",
        )
        .replace(
            "webhookSecretRef: {name: hook}",
            &format!(
                "webhookSecretRef: {{name: hook}}, tokenSecretRef: {{name: gh-api}}, apiURL: '{}'",
                forge.github_url()
            ),
        ),
    )
    .await;
    // Two replicas watch the same Tasks.
    let receiver = Receiver::start(&cluster);
    let _second = Receiver::start(&cluster);
    let (status, answer) = receiver.deliver("reported", "issues", "r-1", OPENED);
    assert_eq!(status, 201, "{answer}");
    let name = answer["task"].as_str().unwrap().to_owned();
    let wait = |done: &dyn Fn(&[kubetask_test_apiserver::forge::IssueComment]) -> bool| {
        for _ in 0..200 {
            if done(&forge.comments()) {
                return forge.comments();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the comments never got there: {:?}", forge.comments());
    };
    let comments = wait(&|c| !c.is_empty());
    assert_eq!(
        (comments[0].project.as_str(), comments[0].number),
        ("myorg/service-a", 42)
    );
    assert!(comments[0].body.contains(&name), "{}", comments[0].body);

    // The Task ends (as the controller would write it) with a pull request.
    let finished = json!({"status": {
        "phase": "Completed",
        "startTime": "2026-12-07T01:00:00Z", "completionTime": "2026-12-07T01:04:05Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Completed", "message": "done",
                        "lastTransitionTime": "2026-12-07T01:04:05Z"}],
        "result": {"summary": "Updated 3 dependencies; tests pass.",
                   "pullRequest": {"url": "https://github.com/myorg/service-a/pull/43", "number": 43}},
        "usage": {"cost": "0.42"},
    }});
    cluster
        .tasks(NS)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&finished))
        .await
        .unwrap();
    let comments = wait(&|c| c.first().is_some_and(|c| c.edits >= 1));
    assert_eq!(comments.len(), 1, "one comment, whatever the replicas");
    let body = &comments[0].body;
    assert!(
        body.contains("**Completed**")
            && body.contains("https://github.com/myorg/service-a/pull/43")
            && body.contains("after 4m05s")
            && body.contains("Cost: 0.42"),
        "{body}"
    );
    for _ in 0..100 {
        let task = cluster.tasks(NS).get(&name).await.unwrap();
        if task.annotations().get("kubetask.io/report-done").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The receiver's flush of the counts, then: everything it did, with exactly what its
    // manifest grants.
    status_when(&cluster, "reported", |s| s.accepted == 1).await;
    super::rbac::assert_sufficient_and_minimal(
        &cluster,
        super::support::EVENTS_USER,
        "manifests/events/rbac.yaml",
    );
}

/// `spec.source.github.poll`: an open issue found through the REST API makes the same Task
/// its webhook delivery would (which is then a duplicate); an unchanged list is a 304 by ETag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_finds_an_issue_without_a_webhook_and_agrees_with_it() {
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    forge.open_issue("myorg/service-a", 77, "Found by polling", &["kubetask"]);
    forge.open_issue("myorg/service-a", 78, "Not labelled", &[]);
    api_token(&cluster).await;
    create(
        &cluster,
        &polling_trigger_yaml(
            "polled",
            "  filter: {labels: [kubetask]}\n",
            &forge.github_url(),
        ),
    )
    .await;
    let receiver = Receiver::start(&cluster);
    let tasks = tasks_when(&cluster, "polled", |t| !t.is_empty()).await;
    assert_eq!(tasks.len(), 1, "the labelled issue only");
    assert_eq!(
        tasks[0].annotations()["kubetask.io/trigger-issue"],
        "myorg/service-a#77"
    );
    // The same issue's `issues.opened` delivery is the same Task.
    let mut payload: Value = serde_json::from_str(OPENED).unwrap();
    payload["issue"]["id"] = json!(5_000_077);
    payload["issue"]["number"] = json!(77);
    let (status, answer) = receiver.deliver("polled", "issues", "w-77", &payload.to_string());
    assert_eq!(
        (status, answer["duplicate"].as_str()),
        (200, tasks[0].metadata.name.as_deref()),
        "{answer}"
    );
    // The next polls find the list unchanged: 304, by its ETag.
    for _ in 0..300 {
        if forge.seen().iter().any(|s| s.status == 304) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        forge
            .seen()
            .iter()
            .any(|s| s.status == 304 && s.target.contains("/issues?")),
        "{:?}",
        forge.seen()
    );
    assert_eq!(tasks_of(&cluster, "polled").await.len(), 1);
}

/// Polling loses nothing: an issue that cannot be made into a Task now (its mapper plugin is
/// not installed yet: `503`) is read again at every poll — the watermark stays and the list is
/// not taken as unchanged by its ETag — until it can, and the condition says why meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_reads_again_what_it_could_not_make_into_a_task() {
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    forge.open_issue("myorg/service-a", 79, "Wait for the plugin", &["kubetask"]);
    api_token(&cluster).await;
    create(
        &cluster,
        &polling_trigger_yaml("later", "  mapper: label-router\n", &forge.github_url()),
    )
    .await;
    let _receiver = Receiver::start(&cluster);
    let status = status_when(&cluster, "later", |s| {
        s.rejected.get("MapperMissing").is_some_and(|n| *n >= 2)
    })
    .await;
    let polling = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Polling")
        .unwrap();
    assert_eq!(polling.reason, "Retrying", "{polling:?}");
    assert!(polling.message.contains("label-router"), "{polling:?}");
    assert!(
        !forge
            .seen()
            .iter()
            .any(|s| s.status == 304 && s.target.contains("/issues?")),
        "the issues are read whole again: {:?}",
        forge.seen()
    );
    assert!(tasks_of(&cluster, "later").await.is_empty());
    cluster
        .install_plugin("plugins/examples/label-router/configmap.yaml")
        .await;
    let tasks = tasks_when(&cluster, "later", |t| !t.is_empty()).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].annotations()["kubetask.io/trigger-issue"],
        "myorg/service-a#79"
    );
    status_when(&cluster, "later", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Polling" && c.reason == "Polled")
    })
    .await;
}

const GITLAB_ISSUE: &str = include_str!("../fixtures/gitlab/issue-open.json");
const GITLAB_NOTE: &str = include_str!("../fixtures/gitlab/note-on-issue.json");

fn gitlab_trigger_yaml(name: &str, api: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1
kind: TaskTrigger
metadata: {{name: {name}, namespace: {NS}}}
spec:
  source:
    gitlab:
      project: gitlabhq/gitlab-test
      events: [issue, note]
      webhookSecretRef: {{name: hook}}
      tokenSecretRef: {{name: gh-api}}
      apiURL: '{api}'
  concurrencyPolicy: Allow
  taskTemplate:
    spec:
      contexts:
        - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: 'Do what /workspace/event.md asks.'}}}}}}
{extra}"
    )
}

/// A GitLab delivery (`X-Gitlab-Token`).
fn gitlab_post(
    receiver: &Receiver,
    trigger: &str,
    event: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut headers = vec![("X-Gitlab-Event", event.to_owned())];
    if let Some(token) = token {
        headers.push(("X-Gitlab-Token", token.to_owned()));
    }
    receiver.post(trigger, &headers, body.as_bytes())
}

/// GitLab: the secret token checked, the actor's role read from GitLab's API deciding who may
/// trigger, confidential events never taken; the note that triggered gets its reaction; one
/// sticky comment per issue edited by each of its Tasks; polling finds an issue too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_events_make_tasks_for_members_and_report_back() {
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    forge.add_member("gitlabhq/gitlab-test", 1, 30);
    forge.open_gitlab_issue(
        "gitlabhq/gitlab-test",
        31,
        "Polled",
        &["kubetask"],
        (1, "root"),
    );
    api_token(&cluster).await;
    create(
        &cluster,
        &gitlab_trigger_yaml(
            "gl",
            &forge.gitlab_url(),
            "  report: {comment: Sticky, reaction: eyes}\n",
        ),
    )
    .await;
    let receiver = Receiver::start(&cluster);
    let (status, answer) = gitlab_post(&receiver, "gl", "Issue Hook", Some(SECRET), GITLAB_ISSUE);
    assert_eq!(status, 201, "{answer}");
    let first = answer["task"].as_str().unwrap().to_owned();
    assert_eq!(
        gitlab_post(&receiver, "gl", "Issue Hook", Some(SECRET), GITLAB_ISSUE).0,
        200,
        "a redelivery"
    );
    let wait =
        |what: &str, done: &dyn Fn(&[kubetask_test_apiserver::forge::IssueComment]) -> bool| {
            for _ in 0..200 {
                if done(&forge.comments()) {
                    return forge.comments();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("{what} never happened: {:?}", forge.comments());
        };
    wait("the first report", &|c| {
        c.iter().any(|c| c.body.contains(&first))
    });
    // Refused, each with its reason.
    let wrong = gitlab_post(&receiver, "gl", "Issue Hook", Some("guess"), GITLAB_ISSUE);
    assert_eq!(
        (wrong.0, wrong.1["rejected"].as_str()),
        (401, Some("SignatureInvalid"))
    );
    assert_eq!(
        gitlab_post(&receiver, "gl", "Issue Hook", None, GITLAB_ISSUE).0,
        401
    );
    let confidential = gitlab_post(
        &receiver,
        "gl",
        "Confidential Issue Hook",
        Some(SECRET),
        GITLAB_ISSUE,
    );
    assert_eq!(
        (confidential.0, confidential.1["rejected"].as_str()),
        (422, Some("EventNotTaken"))
    );
    let stranger = GITLAB_ISSUE.replace(
        "\"id\": 1, \"name\": \"Administrator\"",
        "\"id\": 99, \"name\": \"Stranger\"",
    );
    let refused = gitlab_post(&receiver, "gl", "Issue Hook", Some(SECRET), &stranger);
    assert_eq!(
        (refused.0, refused.1["skipped"].as_str()),
        (202, Some("AuthorNotAllowed")),
        "{}",
        refused.1
    );

    // A `/kubetask` note on the same issue (the fixture's note, on issue 23 here).
    let note_id = forge.add_comment(
        "gitlab",
        "gitlabhq/gitlab-test",
        23,
        "/kubetask please fix the flaky test",
    );
    let mut note: Value = serde_json::from_str(GITLAB_NOTE).unwrap();
    note["project"]["path_with_namespace"] = json!("gitlabhq/gitlab-test");
    note["issue"]["iid"] = json!(23);
    note["object_attributes"]["id"] = json!(note_id);
    let (status, answer) = gitlab_post(
        &receiver,
        "gl",
        "Note Hook",
        Some(SECRET),
        &note.to_string(),
    );
    assert_eq!(status, 201, "{answer}");
    let second = answer["task"].as_str().unwrap().to_owned();
    wait("the reaction", &|c| {
        c.iter().any(|c| c.id == note_id && c.reactions == ["eyes"])
    });
    // One sticky report for the issue, naming the later Task (each Task's report edits it).
    let comments = wait("the sticky report", &|c| {
        c.iter()
            .any(|c| c.id != note_id && c.body.contains(&second))
    });
    let reports: Vec<_> = comments
        .iter()
        .filter(|c| c.id != note_id && c.number == 23)
        .collect();
    assert_eq!(reports.len(), 1, "one sticky comment: {comments:?}");
    assert!(
        reports[0]
            .body
            .contains("<!-- kubetask:sticky team-a/gl -->")
    );
    assert_ne!(first, second);

    // Polling finds issue 31 (its author a member) without a webhook — GitLab named by its
    // base URL this time (the API is `<baseURL>/api/v4`); both at once are refused.
    let yaml = gitlab_trigger_yaml("gl-polled", &forge.gitlab_url(), "").replace(
        "      apiURL:",
        &format!(
            "      poll: {{interval: 1s}}\n      baseURL: '{}'\n      apiURL:",
            forge.github_url()
        ),
    );
    let both: TaskTrigger = serde_yaml::from_str(&yaml).unwrap();
    let refused = kube::Api::<TaskTrigger>::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &both)
        .await
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("set one of apiURL and baseURL"),
        "{refused}"
    );
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.contains("apiURL:"))
        .map(|l| format!("{l}\n"))
        .collect();
    create(&cluster, &yaml).await;
    let polled = tasks_when(&cluster, "gl-polled", |tasks| {
        tasks
            .iter()
            .any(|t| t.annotations()["kubetask.io/trigger-issue"] == "gitlabhq/gitlab-test#31")
    })
    .await;
    assert_eq!(polled.len(), 1, "issue 31 only");
    let status = status_when(&cluster, "gl-polled", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Polling" && c.status == "True")
            && s.conditions
                .iter()
                .any(|c| c.type_ == "CredentialsValid" && c.reason == "Accepted")
    })
    .await;
    assert_eq!(
        status.source.as_deref(),
        Some("gitlab gitlabhq/gitlab-test")
    );
    assert_eq!(status.events.as_deref(), Some("issue,note"));
    let counted = status_when(&cluster, "gl", |s| s.accepted == 2 && s.duplicate == 1).await;
    assert_eq!(counted.rejected.get("SignatureInvalid"), Some(&2));
    assert_eq!(counted.rejected.get("EventNotTaken"), Some(&1));
    assert_eq!(counted.rejected.get("AuthorNotAllowed"), Some(&1));
}

/// A generic webhook: HMAC over `<timestamp>.<body>`, a replay outside the window refused,
/// a redelivery within it a duplicate, events of the same `keyPointer` the same work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_makes_tasks_and_replays_are_refused() {
    use kubetask::triggers::webhook;
    let cluster = setup().await;
    let yaml = format!(
        "apiVersion: kubetask.io/v1alpha1
kind: TaskTrigger
metadata: {{name: alerts, namespace: {NS}}}
spec:
  source:
    webhook:
      hmac: {{secretRef: {{name: hook}}, header: X-Signature, prefix: 'v1=', timestampHeader: X-Timestamp, maxSkewSeconds: 60}}
      keyPointer: /alert/fingerprint
      titlePointer: /alert/summary
  taskTemplate:
    spec:
      contexts:
        - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: 'Look into the alert in /workspace/event.md.'}}}}}}
"
    );
    create(&cluster, &yaml).await;
    let trigger: TaskTrigger = serde_yaml::from_str(&yaml).unwrap();
    let hmac = trigger.spec.source.webhook.clone().unwrap().hmac;
    let receiver = Receiver::start(&cluster);
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let send = |body: &str, at: i64, secret: &str| {
        receiver.post(
            "alerts",
            &[
                (
                    "X-Signature",
                    webhook::sign(&hmac, secret.as_bytes(), body.as_bytes(), Some(at)),
                ),
                ("X-Timestamp", at.to_string()),
            ],
            body.as_bytes(),
        )
    };
    let alert = r#"{"alert":{"fingerprint":"fp-1","summary":"disk full on node-3"}}"#;
    let (status, answer) = send(alert, now, SECRET);
    assert_eq!(status, 201, "{answer}");
    let name = answer["task"].as_str().unwrap().to_owned();
    assert_eq!(
        send(alert, now, SECRET).0,
        200,
        "a redelivery within the window"
    );
    let replay = send(alert, now - 600, SECRET);
    assert_eq!(
        (replay.0, replay.1["rejected"].as_str()),
        (401, Some("Replayed")),
        "{}",
        replay.1
    );
    assert_eq!(send(alert, now, "guess").0, 401);
    let unkeyed = send(r#"{"alert":{}}"#, now, SECRET);
    assert_eq!(
        (unkeyed.0, unkeyed.1["rejected"].as_str()),
        (400, Some("MalformedPayload"))
    );
    // The same alert firing again later: the same work, so Forbid (the default) holds it.
    let (status, answer) = send(alert, now + 1, SECRET);
    assert_eq!(
        (status, answer["skipped"].as_str()),
        (202, Some("Forbidden")),
        "{answer}"
    );
    let task = cluster.tasks(NS).get(&name).await.unwrap();
    let text = task.spec.contexts[1]
        .file
        .clone()
        .unwrap()
        .source
        .inline
        .unwrap();
    assert!(
        text.contains("disk full on node-3") && text.contains("UNTRUSTED"),
        "{text}"
    );
    assert_eq!(tasks_of(&cluster, "alerts").await.len(), 1);
    let status = status_when(&cluster, "alerts", |s| {
        s.rejected.get("Forbidden") == Some(&1) && s.source.is_some()
    })
    .await;
    assert_eq!(status.rejected.get("Replayed"), Some(&1));
    assert_eq!(status.rejected.get("SignatureInvalid"), Some(&1));
    assert_eq!(status.source.as_deref(), Some("webhook"));
}

/// The example TaskTriggers are accepted as a real API server would accept them; a source
/// must be exactly one of `github`, `gitlab` and `webhook`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_triggers_are_accepted_and_a_trigger_has_exactly_one_source() {
    let cluster = setup().await;
    let triggers: kube::Api<TaskTrigger> = kube::Api::namespaced(cluster.client.clone(), NS);
    for example in [
        "github-issues-trigger.yaml",
        "github-pull-request-trigger.yaml",
        "gitlab-issues-trigger.yaml",
        "alert-webhook-trigger.yaml",
    ] {
        let path = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let trigger: TaskTrigger =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        triggers
            .create(&kube::api::PostParams::default(), &trigger)
            .await
            .unwrap_or_else(|e| panic!("{example}: {e}"));
    }
    let webhook = "    webhook: {hmac: {secretRef: {name: hook}, header: X-Signature}}\n";
    let both = trigger_yaml("both", "").replace("  source:\n", &format!("  source:\n{webhook}"));
    let neither: String = trigger_yaml("neither", "")
        .lines()
        .filter(|l| !l.contains("github:"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("  source:\n", "  source: {}\n");
    for yaml in [both, neither] {
        let trigger: TaskTrigger = serde_yaml::from_str(&yaml).unwrap();
        let refused = triggers
            .create(&kube::api::PostParams::default(), &trigger)
            .await
            .expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("set exactly one of github, gitlab and webhook"),
            "{refused}"
        );
    }
    // GitHub lets only Apps create check runs: a token-only trigger cannot ask for one.
    let checks = trigger_yaml("checks", "  report: {checkRun: kubetask}\n");
    let refused = triggers
        .create(
            &kube::api::PostParams::default(),
            &serde_yaml::from_str(&checks).unwrap(),
        )
        .await
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("checkRun needs spec.source.github.app"),
        "{refused}"
    );
}

/// A mapper plugin (`spec.mapper`, the label-router example) decides in the sandbox: labels
/// pick an offered Agent and the team, `wontfix` makes nothing; the Task keeps the built-in
/// mapper's name (a redelivery is still a duplicate) and event file; a missing plugin is a
/// `503` that creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_plugin_routes_events_in_the_sandbox() {
    let cluster = setup().await;
    cluster
        .install_plugin("plugins/examples/label-router/configmap.yaml")
        .await;
    let routed = trigger_yaml("routed", "  mapper: label-router\n  concurrencyPolicy: Allow\n").replace(
        "metadata: {name: routed, namespace: team-a}",
        "metadata: {name: routed, namespace: team-a, annotations: {label-router.kubetask.io/agents: 'claude-code,gemini'}}",
    );
    create(&cluster, &routed).await;
    create(
        &cluster,
        &trigger_yaml("unmapped", "  mapper: no-such-plugin\n"),
    )
    .await;
    let receiver = Receiver::start(&cluster);
    let labelled = |labels: &[&str], id: i64| {
        let mut payload: Value = serde_json::from_str(OPENED).unwrap();
        payload["issue"]["id"] = json!(id);
        payload["issue"]["number"] = json!(id);
        payload["issue"]["labels"] = json!(
            labels
                .iter()
                .map(|l| json!({"name": l}))
                .collect::<Vec<_>>()
        );
        payload.to_string()
    };
    let body = labelled(&["kubetask", "agent:gemini", "team:payments"], 1);
    let (status, answer) = receiver.deliver("routed", "issues", "m-1", &body);
    assert_eq!(status, 201, "{answer}");
    let name = answer["task"].as_str().unwrap().to_owned();
    let task = cluster.tasks(NS).get(&name).await.unwrap();
    assert_eq!(task.spec.agent_ref.as_deref(), Some("gemini"));
    assert_eq!(task.labels()["kubetask.io/team"], "payments");
    assert_eq!(task.labels()["kubetask.io/task-trigger"], "routed");
    let event_file = task.spec.contexts[1].file.clone().unwrap();
    assert_eq!(event_file.file_path.as_deref(), Some("/workspace/event.md"));
    assert_eq!(
        receiver.deliver("routed", "issues", "m-1", &body),
        (200, json!({"duplicate": name})),
        "the plugin's Task keeps the event's name"
    );
    let (status, answer) = receiver.deliver("routed", "issues", "m-2", &labelled(&["wontfix"], 2));
    assert_eq!(
        (status, answer["skipped"].as_str()),
        (202, Some("WontFix")),
        "{answer}"
    );
    let (status, answer) = receiver.deliver(
        "routed",
        "issues",
        "m-3",
        &labelled(&["agent:root-shell"], 3),
    );
    assert_eq!(
        (status, answer["skipped"].as_str()),
        (202, Some("AgentNotAllowed")),
        "{answer}"
    );
    let (status, answer) = receiver.deliver("unmapped", "issues", "m-4", OPENED);
    assert_eq!(
        (status, answer["rejected"].as_str()),
        (503, Some("MapperMissing")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("no-such-plugin"),
        "{answer}"
    );
    assert_eq!(tasks_of(&cluster, "routed").await.len(), 1);
    assert!(tasks_of(&cluster, "unmapped").await.is_empty());
    let status = status_when(&cluster, "routed", |s| {
        s.rejected.get("AgentNotAllowed") == Some(&1)
    })
    .await;
    assert_eq!(status.rejected.get("WontFix"), Some(&1));
    status_when(&cluster, "unmapped", |s| {
        s.rejected.get("MapperMissing") == Some(&1)
    })
    .await;
}

/// A GitHub App instead of a token: the receiver mints an installation token for the one
/// repository (its JWT checked by the fake GitHub) and, for a pull request's Task, follows it
/// with a check run on the head commit — in progress, then concluded with the Task's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_reports_a_check_run_on_the_pull_request() {
    use kube::api::{Patch, PatchParams};
    let key = include_str!("../apiserver/fixtures/github-app-test-key.pem");
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("installation-token")
        .with_app("4242", key, 77);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "gh-app", "namespace": NS},
        "stringData": {"private-key": key},
    }))
    .unwrap();
    kube::Api::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    let yaml = trigger_yaml("prs", "  report: {checkRun: kubetask, comment: PerTask}\n").replace(
        "events: [issues, issue_comment], webhookSecretRef: {name: hook}",
        &format!(
            "events: [pull_request], webhookSecretRef: {{name: hook}}, apiURL: '{}', app: {{appID: '4242', installationID: 77, privateKeySecretRef: {{name: gh-app}}}}",
            forge.github_url()
        ),
    );
    create(&cluster, &yaml).await;
    let receiver = Receiver::start(&cluster);
    // The shape of GitHub's `pull_request` `opened` payload, trimmed to what is read.
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let opened = json!({
        "action": "opened", "number": 5,
        "pull_request": {"id": 555, "number": 5, "title": "Fix the flaky test", "body": "Please look.",
            "html_url": "https://github.com/myorg/service-a/pull/5", "user": {"login": "octocat"},
            "author_association": "MEMBER", "labels": [], "head": {"ref": "fix-flake", "sha": sha}},
        "repository": {"full_name": "myorg/service-a"},
    })
    .to_string();
    let (status, answer) = receiver.deliver("prs", "pull_request", "p-1", &opened);
    assert_eq!(status, 201, "{answer}");
    let name = answer["task"].as_str().unwrap().to_owned();
    let wait = |what: &str, done: &dyn Fn(&[kubetask_test_apiserver::forge::CheckRun]) -> bool| {
        for _ in 0..200 {
            if done(&forge.check_runs()) {
                return forge.check_runs();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{what} never happened: {:?} {:?}",
            forge.check_runs(),
            forge.seen()
        );
    };
    let runs = wait("the check run", &|r| !r.is_empty());
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (
            runs[0].name.as_str(),
            runs[0].head_sha.as_str(),
            runs[0].status.as_str()
        ),
        ("kubetask", sha, "in_progress")
    );
    let minted = forge.minted();
    assert!(!minted.is_empty());
    assert_eq!(minted[0].repositories, ["service-a"], "the one repository");
    assert_eq!(minted[0].permissions["checks"], "write");
    let finished = json!({"status": {
        "phase": "Completed",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Completed", "message": "done",
                        "lastTransitionTime": "2026-12-07T01:04:05Z"}],
        "result": {"summary": "Fixed the race in the test."},
    }});
    cluster
        .tasks(NS)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&finished))
        .await
        .unwrap();
    let runs = wait("the conclusion", &|r| {
        r.first().is_some_and(|r| r.status == "completed")
    });
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
    assert!(
        runs[0].summary.contains("Fixed the race"),
        "{}",
        runs[0].summary
    );
    // The comment on the pull request too, with the same installation token.
    assert!(
        forge
            .comments()
            .iter()
            .any(|c| c.number == 5 && c.body.contains(&name))
    );
    let status = status_when(&cluster, "prs", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "CredentialsValid" && c.status == "True")
    })
    .await;
    assert_eq!(status.accepted, 1);
}

/// GitLab: a merge request's Task is followed by a commit status on its head commit
/// (`running`, then the result) — what a merge request's pipeline rules can require.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_merge_request_gets_a_commit_status() {
    use kube::api::{Patch, PatchParams};
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    forge.add_member("gitlabhq/gitlab-test", 1, 40);
    api_token(&cluster).await;
    let yaml = gitlab_trigger_yaml(
        "gl-mr",
        &forge.gitlab_url(),
        "  report: {checkRun: kubetask}\n",
    )
    .replace("events: [issue, note]", "events: [merge_request]");
    create(&cluster, &yaml).await;
    let receiver = Receiver::start(&cluster);
    let body = include_str!("../fixtures/gitlab/merge-request-update.json");
    let (status, answer) =
        gitlab_post(&receiver, "gl-mr", "Merge Request Hook", Some(SECRET), body);
    assert_eq!(status, 201, "{answer}");
    let name = answer["task"].as_str().unwrap().to_owned();
    let wait = |state: &str| {
        for _ in 0..200 {
            let runs = forge.check_runs();
            if runs.iter().any(|r| r.status == state) {
                return runs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {state} status: {:?}", forge.check_runs());
    };
    let runs = wait("running");
    assert_eq!(
        (
            runs[0].provider,
            runs[0].project.as_str(),
            runs[0].head_sha.as_str(),
            runs[0].name.as_str()
        ),
        (
            "gitlab",
            "gitlabhq/gitlab-test",
            "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "kubetask"
        )
    );
    let failed = json!({"status": {
        "phase": "Failed",
        "conditions": [{"type": "Succeeded", "status": "False", "reason": "Timeout", "message": "ran out of time",
                        "lastTransitionTime": "2026-12-07T01:04:05Z"}],
    }});
    cluster
        .tasks(NS)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&failed))
        .await
        .unwrap();
    let runs = wait("failed");
    assert_eq!(runs.len(), 1, "one status, updated: {runs:?}");
}

/// Polling reads every list of the trigger's events: open pull requests and new comments (with
/// their issue) as their webhooks would deliver them, and never KubeTask's own comments (its
/// reports come back in the comments list: they must not trigger). Its watermark is kept in
/// the trigger's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_finds_pull_requests_and_comments_but_not_its_own_reports() {
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    api_token(&cluster).await;
    create(
        &cluster,
        &polling_trigger_yaml(
            "polled-prs",
            "  report: {comment: PerTask}\n  concurrencyPolicy: Allow\n",
            &forge.github_url(),
        )
        .replace(
            "events: [issues, issue_comment]",
            "events: [pull_request, issue_comment]",
        ),
    )
    .await;
    // Made after the trigger: a comment before it would not be new.
    forge.open_issue("myorg/service-a", 90, "Flaky test", &[]);
    forge.add_comment("github", "myorg/service-a", 90, "/kubetask please fix this");
    forge.open_pull("myorg/service-a", 91, "Add retries", "retries");
    let _receiver = Receiver::start(&cluster);
    let tasks = tasks_when(&cluster, "polled-prs", |t| t.len() >= 2).await;
    let mut issues: Vec<String> = tasks
        .iter()
        .map(|t| t.annotations()["kubetask.io/trigger-issue"].clone())
        .collect();
    issues.sort();
    assert_eq!(issues, ["myorg/service-a#90", "myorg/service-a#91"]);
    let pull = tasks
        .iter()
        .find(|t| t.annotations()["kubetask.io/trigger-issue"].ends_with("#91"))
        .unwrap();
    assert_eq!(
        pull.annotations().get("kubetask.io/trigger-head-sha"),
        forge.pull_head_sha("myorg/service-a", 91).as_ref()
    );
    // The reports are posted, polled back in the comments list, and make nothing.
    for _ in 0..100 {
        if forge
            .comments()
            .iter()
            .filter(|c| c.author == "kubetask-bot")
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let polls_before = forge
        .seen()
        .iter()
        .filter(|s| s.target.contains("/issues/comments"))
        .count();
    for _ in 0..100 {
        let polls = forge
            .seen()
            .iter()
            .filter(|s| s.target.contains("/issues/comments"))
            .count();
        if polls >= polls_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tasks_of(&cluster, "polled-prs").await.len(),
        2,
        "{:?}",
        forge.comments()
    );
    let status = status_when(&cluster, "polled-prs", |s| s.polled_until.is_some()).await;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Polling" && c.status == "True")
    );
}

/// A spent rate limit (`X-RateLimit-Remaining: 0`, then GitHub's 403) stops polling until
/// `X-RateLimit-Reset`, and the trigger says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_waits_for_a_spent_rate_limit_to_reset() {
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    forge.open_issue("myorg/service-a", 60, "Before the limit", &[]);
    let reset = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_second()).unwrap() + 3600;
    forge.rate_limit(1, reset);
    api_token(&cluster).await;
    create(
        &cluster,
        &polling_trigger_yaml("limited", "", &forge.github_url())
            .replace("events: [issues, issue_comment]", "events: [issues]"),
    )
    .await;
    let _receiver = Receiver::start(&cluster);
    let status = status_when(&cluster, "limited", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Polling" && c.reason == "RateLimited")
    })
    .await;
    let polling = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Polling")
        .unwrap();
    assert!(
        polling.message.contains("rate limit"),
        "{}",
        polling.message
    );
    assert_eq!(
        tasks_of(&cluster, "limited").await.len(),
        1,
        "the one issue read before the limit"
    );
    let asked = forge.seen().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        forge.seen().len(),
        asked,
        "no request until the reset: {:?}",
        forge.seen()
    );
}

/// `spec.checkout: PullRequest`: a comment on a pull request makes a Task that
/// checks out the pull request's branch (read from GitHub: a comment's payload does not say
/// it); a fork's pull request and one GitHub does not know are refused, counted; the CRD
/// requires API credentials for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_on_a_pull_request_works_on_its_branch() {
    let cluster = setup().await;
    let forge = kubetask_test_apiserver::forge::Forge::start("gh-api-token");
    forge.open_pull("myorg/service-a", 7, "Fix the failing test", "fix-test");
    api_token(&cluster).await;
    let template =
        "      workspace: {repository: 'https://github.com/myorg/service-a.git', ref: main}\n";
    let yaml = trigger_yaml("pr-work", "  checkout: PullRequest\n")
        .replace(
            "events: [issues, issue_comment], webhookSecretRef: {name: hook}",
            &format!(
                "events: [issue_comment, pull_request], webhookSecretRef: {{name: hook}}, tokenSecretRef: {{name: gh-api}}, apiURL: '{}'",
                forge.github_url()
            ),
        )
        .replace("      contexts:\n", &format!("{template}      contexts:\n"));
    // Without API credentials the API server refuses it, naming the field.
    let without: TaskTrigger = serde_yaml::from_str(
        &yaml
            .replace("pr-work", "no-token")
            .replace(", tokenSecretRef: {name: gh-api}", ""),
    )
    .unwrap();
    let refused = kube::Api::<TaskTrigger>::namespaced(cluster.client.clone(), NS)
        .create(&kube::api::PostParams::default(), &without)
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("spec.checkout"), "{refused}");
    create(&cluster, &yaml).await;
    let receiver = Receiver::start(&cluster);

    let (status, answer) = receiver.deliver("pr-work", "issue_comment", "c-1", COMMENT);
    assert_eq!(status, 201, "{answer}");
    let task = cluster
        .tasks(NS)
        .get(answer["task"].as_str().unwrap())
        .await
        .unwrap();
    let workspace = task.spec.workspace.clone().unwrap();
    assert_eq!(
        (
            workspace.repository.as_deref(),
            workspace.git_ref.as_deref()
        ),
        (
            Some("https://github.com/myorg/service-a.git"),
            Some("fix-test")
        )
    );
    assert!(
        forge
            .seen()
            .iter()
            .any(|s| s.method == "GET" && s.target.ends_with("/repos/myorg/service-a/pulls/7")),
        "{:?}",
        forge.seen()
    );

    // A pull request from a fork: its branch is not the repository's to check out.
    let fork = json!({
        "action": "opened", "number": 8,
        "pull_request": {"id": 888, "number": 8, "title": "Drive-by", "body": "",
            "html_url": "https://github.com/myorg/service-a/pull/8", "user": {"login": "outsider"},
            "author_association": "MEMBER", "labels": [],
            "head": {"ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                     "repo": {"full_name": "outsider/service-a"}},
            "base": {"ref": "main", "repo": {"full_name": "myorg/service-a"}}},
        "repository": {"full_name": "myorg/service-a"},
    })
    .to_string();
    let (status, answer) = receiver.deliver("pr-work", "pull_request", "p-8", &fork);
    assert_eq!(
        (status, answer["skipped"].as_str()),
        (202, Some("ForkPullRequest")),
        "{answer}"
    );
    // A comment on a pull request GitHub does not know (deleted since).
    let unknown = COMMENT
        .replace("\"number\": 7", "\"number\": 99")
        .replace("\"id\": 99,", "\"id\": 100,");
    assert!(unknown.contains("\"number\": 99"));
    let (status, answer) = receiver.deliver("pr-work", "issue_comment", "c-2", &unknown);
    assert_eq!(
        (status, answer["skipped"].as_str()),
        (202, Some("PullRequestUnknown")),
        "{answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("404"),
        "{answer}"
    );
    let status = status_when(&cluster, "pr-work", |s| {
        s.rejected.get("PullRequestUnknown") == Some(&1)
            && s.rejected.get("ForkPullRequest") == Some(&1)
    })
    .await;
    assert_eq!(status.accepted, 1);
    assert_eq!(tasks_of(&cluster, "pr-work").await.len(), 1);
}
