//! Watches through `kube::Client` and kube-runtime: initial events, resumption after a drop,
//! 410 Expired, bookmarks, streaming lists, selector transitions, and a Controller.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use kubetask_api::Task;
use kubetask_test_apiserver::{Config, Fault, FaultAction};
use serde_json::json;

fn config_map(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {"k": "v"}}),
    )
    .unwrap()
}

async fn next_event<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = Result<WatchEvent<ConfigMap>, kube::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("a decodable event")
}

fn name_of(event: &WatchEvent<ConfigMap>) -> (String, String) {
    match event {
        WatchEvent::Added(o) => ("ADDED".into(), o.name_any()),
        WatchEvent::Modified(o) => ("MODIFIED".into(), o.name_any()),
        WatchEvent::Deleted(o) => ("DELETED".into(), o.name_any()),
        WatchEvent::Bookmark(b) => ("BOOKMARK".into(), b.metadata.resource_version.clone()),
        WatchEvent::Error(e) => ("ERROR".into(), e.reason.clone()),
    }
}

#[tokio::test]
async fn watch_from_a_version_and_resume_after_a_drop() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("before", "x"))
        .await
        .unwrap();
    let list = maps.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();

    // The server ends this watch stream abruptly after 300 ms.
    server.inject(
        Fault::new(
            Some("watch"),
            Some("configmaps"),
            FaultAction::DropWatch {
                after: Duration::from_millis(300),
            },
        )
        .times(1),
    );
    let mut stream = maps
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    maps.create(&PostParams::default(), &config_map("one", "x"))
        .await
        .unwrap();
    let first = next_event(&mut stream).await;
    assert_eq!(name_of(&first), ("ADDED".into(), "one".into()));
    let WatchEvent::Added(one) = first else {
        unreachable!()
    };
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the dropped stream ends");
    assert!(ended.is_none(), "{ended:?}");

    // Changes made while nobody watched arrive on resumption, in order, exactly once.
    maps.create(&PostParams::default(), &config_map("two", "x"))
        .await
        .unwrap();
    maps.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    maps.delete("two", &Default::default()).await.unwrap();
    let resume_from = one.resource_version().unwrap();
    let mut resumed = maps
        .watch(&WatchParams::default(), &resume_from)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(name_of(&next_event(&mut resumed).await));
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_owned(), "two".to_owned()),
            ("MODIFIED".to_owned(), "one".to_owned()),
            ("DELETED".to_owned(), "two".to_owned()),
        ]
    );
}

#[tokio::test]
async fn expired_versions_get_410_and_the_watcher_relists() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("a", "x"))
        .await
        .unwrap();
    let old = maps.get("a").await.unwrap().resource_version().unwrap();
    maps.create(&PostParams::default(), &config_map("b", "x"))
        .await
        .unwrap();
    server.compact();
    let mut stream = maps
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Expired, got {other:?}"),
    }

    // kube's watcher starts over with a list when its resourceVersion has expired.
    let events = watcher::watcher(maps.clone(), watcher::Config::default());
    let objects = tokio::time::timeout(
        Duration::from_secs(5),
        events
            .default_backoff()
            .applied_objects()
            .take(2)
            .try_collect::<Vec<_>>(),
    )
    .await
    .expect("initial objects")
    .unwrap();
    let mut names: Vec<String> = objects.iter().map(ResourceExt::name_any).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn bookmarks_and_streaming_lists() {
    let config = Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let (server, client) = start_with(config).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("a", "x"))
        .await
        .unwrap();
    let rv = server.resource_version().to_string();
    let mut stream = maps
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            },
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    maps.create(&PostParams::default(), &config_map("b", "x"))
        .await
        .unwrap();
    let added = next_event(&mut stream).await;
    assert_eq!(name_of(&added).1, "b");
    let bookmark = next_event(&mut stream).await;
    let (kind, version) = name_of(&bookmark);
    assert_eq!(kind, "BOOKMARK");
    assert!(version.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());

    // sendInitialEvents: kube's streaming-list watcher gets every object, then InitDone.
    let streaming = watcher::watcher(maps.clone(), watcher::Config::default().streaming_lists());
    futures::pin_mut!(streaming);
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), streaming.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event {
            Event::Init => {}
            Event::InitApply(object) => initial.push(object.name_any()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    initial.sort();
    assert_eq!(initial, ["a", "b"]);
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.verb == "watch" && r.query.contains("sendInitialEvents=true"))
    );
}

#[tokio::test]
async fn label_selector_transitions_are_added_and_deleted() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("m", "other"))
        .await
        .unwrap();
    let rv = server.resource_version().to_string();
    let mut stream = maps
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    maps.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_event(&mut stream).await),
        ("ADDED".into(), "m".into())
    );
    maps.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_event(&mut stream).await),
        ("MODIFIED".into(), "m".into())
    );
    maps.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_event(&mut stream).await),
        ("DELETED".into(), "m".into())
    );
}

struct Context {
    client: kube::Client,
    reconciles: std::sync::atomic::AtomicUsize,
}

async fn reconcile(task: Arc<Task>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    ctx.reconciles
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let owner = task.controller_owner_ref(&()).expect("tasks have uids");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": task.name_any(), "ownerReferences": [owner]},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "busybox"}]}}},
    }))
    .expect("job");
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Action::await_change()),
        Err(error) => Err(error),
    }
}

#[tokio::test]
async fn a_kube_runtime_controller_owns_jobs() {
    let config = Config::default().with_job_simulator(kubetask_test_apiserver::JobSimulator {
        start_delay: Duration::from_millis(10),
        run_time: Duration::from_millis(50),
        ..Default::default()
    });
    let (server, client) = start_with(config).await;
    install_crds(&client).await;
    let tasks: Api<Task> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let context = Arc::new(Context {
        client: client.clone(),
        reconciles: Default::default(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(tasks, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(
            reconcile,
            |_, _: &kube::Error, _| Action::requeue(Duration::from_millis(100)),
            context.clone(),
        )
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    // Tasks created after the controller started get Jobs, which the simulator completes;
    // the Job's status changes reach the controller through `owns`.
    let namespaced: Api<Task> = Api::namespaced(client.clone(), "default");
    for name in ["t1", "t2"] {
        namespaced
            .create(&PostParams::default(), &task(name, "default"))
            .await
            .unwrap();
    }
    let jobs_ns: Api<Job> = Api::namespaced(client.clone(), "default");
    for name in ["t1", "t2"] {
        let job = eventually(Duration::from_secs(10), || {
            let jobs_ns = jobs_ns.clone();
            async move {
                let job = jobs_ns.get_opt(name).await.unwrap()?;
                let complete = job
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True");
                complete.then_some(job)
            }
        })
        .await;
        let status = job.status.unwrap();
        assert_eq!(status.succeeded, Some(1));
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert_eq!(job.metadata.owner_references.unwrap()[0].name, name);
    }
    // Each Task was reconciled for its creation and again for its Job's changes.
    assert!(context.reconciles.load(std::sync::atomic::Ordering::SeqCst) >= 4);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the controller stops")
        .unwrap();
    // The server set the Job controller's labels on the pod template, as kube-apiserver does.
    let job = jobs_ns.get("t1").await.unwrap();
    let template_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        template_labels.get("job-name").map(String::as_str),
        Some("t1")
    );
    server.shutdown();
}

#[tokio::test]
async fn watches_end_at_their_timeout() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv = server.resource_version().to_string();
    let params = WatchParams {
        timeout: Some(1),
        ..WatchParams::default()
    };
    let mut stream = maps.watch(&params, &rv).await.unwrap().boxed();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(WatchEvent::Bookmark(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends by itself");
    assert!(ended.is_none(), "{ended:?}");
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.verb == "watch")
        .unwrap();
    assert!(watch.query.contains("timeoutSeconds=1"), "{}", watch.query);
}

/// A watch asked `as=Table` (what `kubectl get -w` sends) gets one Table per event, the column
/// definitions in the first only (kube-apiserver's `NoHeaders` after the first event).
#[tokio::test]
async fn watches_as_tables_send_the_columns_once() {
    let (_server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("first", "x"))
        .await
        .unwrap();
    let request = hyper::Request::get(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=10",
    )
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap();
    let mut events = client
        .request_events::<serde_json::Value>(request)
        .await
        .unwrap()
        .boxed();
    let mut next = async || match tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("a decodable event")
    {
        WatchEvent::Added(table) | WatchEvent::Modified(table) => table,
        other => panic!("unexpected {other:?}"),
    };
    let table = next().await;
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("the first event has the columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Data", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!((&cells[0], &cells[1]), (&json!("first"), &json!(1)));
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    maps.create(&PostParams::default(), &config_map("second", "x"))
        .await
        .unwrap();
    let table = next().await;
    assert!(table["columnDefinitions"].is_null(), "{table}");
    assert_eq!(table["rows"][0]["cells"][0], "second");
}
