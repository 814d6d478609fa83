//! The executor against the test API server, in-process: `reconcile` called directly with
//! empty watch caches (every miss is confirmed with a GET), its requests read from the
//! server's log.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::PostParams;
use kube::runtime::{reflector, watcher};
use kubetask_test_apiserver::{Config, Fault, FaultAction, RequestRecord, TestApiServer};

use super::*;
use crate::plugin::{Limits, PluginHost};
use crate::render::Settings;

async fn context(server: &TestApiServer) -> Arc<Context> {
    let client = server.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Task::crd(), Agent::crd()] {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    let host = Arc::new(PluginHost::new(Limits::default()).expect("host"));
    let pipeline = Arc::new(Pipeline::new(host.clone(), Settings::default()).expect("pipeline"));
    let (plugin_maps, mut plugin_writer) = reflector::store::<ConfigMap>();
    plugin_writer.apply_watcher_event(&watcher::Event::Init);
    plugin_writer.apply_watcher_event(&watcher::Event::InitDone);
    let registry = Arc::new(Registry::new(
        host,
        plugin_maps,
        "kubetask-system".into(),
        None,
        None,
    ));
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: None,
    };
    Arc::new(Context::new(
        client,
        pipeline,
        reporter,
        Arc::new(Metrics::default()),
        reflector::store::<Task>().0,
        registry,
        reflector::store::<Job>().0,
        reflector::store::<Agent>().0,
        Arc::new(WaitIndex::default()),
    ))
}

async fn new_task(ctx: &Context, name: &str) -> Arc<Task> {
    let task: Task = serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "Task",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "x"}}}]},
    }))
    .expect("a Task");
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), "default");
    Arc::new(
        tasks
            .create(&PostParams::default(), &task)
            .await
            .expect("created"),
    )
}

/// `verb resource[/subresource]` of every request since `from`, but Events.
fn calls(server: &TestApiServer, from: usize) -> Vec<String> {
    server.requests()[from..]
        .iter()
        .filter(|r: &&RequestRecord| r.resource != "events")
        .map(RequestRecord::call)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_once_then_only_observes() {
    let server = TestApiServer::start(Config::default().hardened()).expect("server");
    let ctx = context(&server).await;
    let task = new_task(&ctx, "t").await;
    let from = server.requests().len();
    let action = reconcile(task.clone(), ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        calls(&server, from),
        [
            "get agents",
            "create configmaps",
            "create jobs",
            "patch tasks/status"
        ],
        "a never reconciled Task: no GET of its Job; one write of each"
    );
    let stored = Api::<Task>::namespaced(ctx.client.clone(), "default")
        .get("t")
        .await
        .expect("the Task");
    let status = stored.status.expect("a status");
    assert_eq!(status::condition_reason(&status), Some(reason::JOB_CREATED));
    assert_eq!(status.rendered_by[0].name, "builtin-default");

    // The same (stale) Task again: the written status says it has a Job; it is read, and
    // nothing is written.
    let from = server.requests().len();
    let action = reconcile(task, ctx.clone()).await.expect("reconciled");
    assert_eq!(action, Action::await_change());
    assert_eq!(calls(&server, from), ["get jobs"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_create_backs_off_and_is_shown_from_the_third_attempt() {
    let server = TestApiServer::start(Config::default()).expect("server");
    let ctx = context(&server).await;
    let task = new_task(&ctx, "t").await;
    server.inject(Fault::new(
        Some("create"),
        Some("jobs"),
        FaultAction::InternalError,
    ));
    for attempt in 1..=3 {
        let from = server.requests().len();
        let action = reconcile(task.clone(), ctx.clone())
            .await
            .expect("reconciled");
        assert_ne!(
            action,
            Action::await_change(),
            "attempt {attempt} is retried"
        );
        let wrote = calls(&server, from).contains(&"patch tasks/status".to_owned());
        assert_eq!(
            wrote,
            attempt == 3,
            "attempt {attempt}: status written only from the third"
        );
    }
    let stored = Api::<Task>::namespaced(ctx.client.clone(), "default")
        .get("t")
        .await
        .expect("the Task");
    let status = stored.status.expect("a status");
    assert_eq!(
        status::condition_reason(&status),
        Some(reason::API_UNAVAILABLE)
    );
    assert!(
        status.conditions[0].message.contains("answered 500"),
        "{}",
        status.conditions[0].message
    );
    server.clear_faults();
    let action = reconcile(task, ctx.clone()).await.expect("reconciled");
    assert_eq!(action, Action::await_change());
    let stored = Api::<Task>::namespaced(ctx.client.clone(), "default")
        .get("t")
        .await
        .expect("the Task");
    assert_eq!(
        stored.status.as_ref().and_then(status::condition_reason),
        Some(reason::JOB_CREATED)
    );
}
