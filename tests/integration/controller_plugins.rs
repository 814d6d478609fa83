//! End-to-end: plugins from ConfigMaps. An Agent's render plugin, cluster policies (raw and
//! gzip, pinned), missing plugins that appear later, and hostile plugins that fail only their
//! own Task. The plugin used is `plugins/testing/hostile.wasm`: it passes drafts through, or
//! misbehaves as the Task's `test.kubetask.io/behavior` annotation says.

use crate::support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kubetask::api::TaskPhase;
use kubetask_test_apiserver::{Fault, FaultAction};
use support::*;

const NS: &str = "team-a";
/// The controller's namespace, where plugins are installed.
const PLUGINS_NS: &str = "kubetask-system";
const HOSTILE: &[u8] = include_bytes!("../../plugins/testing/hostile.wasm");

fn plugin_map(name: &str, namespace: &str, gzip: bool, annotations: &[(&str, &str)]) -> ConfigMap {
    let (key, bytes) = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(HOSTILE).unwrap();
        ("plugin.wasm.gz", encoder.finish().unwrap())
    } else {
        ("plugin.wasm", HOSTILE.to_vec())
    };
    let mut map = ConfigMap::default();
    map.metadata.name = Some(name.into());
    map.metadata.namespace = Some(namespace.into());
    map.metadata.labels = Some(BTreeMap::from([(
        "kubetask.io/plugin".to_owned(),
        "true".to_owned(),
    )]));
    map.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    map.binary_data = Some(BTreeMap::from([(key.to_owned(), ByteString(bytes))]));
    map
}

fn task(name: &str, behavior: Option<&str>, agent: Option<&str>) -> String {
    let annotations = behavior
        .map(|b| format!("\n  annotations: {{test.kubetask.io/behavior: {b}}}"))
        .unwrap_or_default();
    let agent = agent
        .map(|a| format!("  agentRef: {a}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\n  namespace: {NS}{annotations}\nspec:\n{agent}  contexts:\n  - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: x}}}}}}\n"
    )
}

fn digest() -> String {
    kubetask::plugin::source::hex_sha256(HOSTILE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_plugin_that_appears_later_renders_the_job() {
    let cluster = Cluster::start().await;
    cluster.namespace("elsewhere").await;
    let _controller = cluster.controller(&[]);
    cluster.apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: shaped, namespace: team-a}\nspec: {serviceAccountName: default, plugins: [shaper]}\n").await;
    // A plugin ConfigMap outside the controller's namespace is never loaded.
    let elsewhere = plugin_map("shaper", "elsewhere", false, &[]);
    cluster
        .config_maps("elsewhere")
        .create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    cluster
        .apply_yaml(&task("uses-plugin", None, Some("shaped")))
        .await;
    let waiting = cluster
        .wait_reason(NS, "uses-plugin", "PluginNotFound", Duration::from_secs(30))
        .await;
    let message = &waiting.status.unwrap().conditions[0].message;
    assert!(
        message.contains("spec.plugins: plugin \"shaper\" is not installed"),
        "{message}"
    );

    cluster
        .config_maps(PLUGINS_NS)
        .create(
            &PostParams::default(),
            &plugin_map("shaper", PLUGINS_NS, false, &[]),
        )
        .await
        .unwrap();
    let done = cluster
        .wait_phase(NS, "uses-plugin", TaskPhase::Completed)
        .await;
    let rendered_by: Vec<(String, String)> = done
        .status
        .unwrap()
        .rendered_by
        .into_iter()
        .map(|p| (p.name, p.digest))
        .collect();
    assert_eq!(rendered_by.len(), 2, "{rendered_by:?}");
    assert_eq!(rendered_by[0].0, "builtin-default");
    assert_eq!(
        rendered_by[1],
        ("shaper".to_owned(), format!("sha256:{}", digest()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_policies_deny_and_hostile_plugins_fail_only_their_task() {
    let cluster = Cluster::start().await;
    let pin = format!("sha256:{}", digest());
    let policy = plugin_map(
        "site-policy",
        PLUGINS_NS,
        true,
        &[
            ("kubetask.io/policy-order", "10"),
            ("kubetask.io/sha256", &pin),
        ],
    );
    cluster
        .config_maps(PLUGINS_NS)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    // Started after the policy exists, so its first list holds it (a policy created just
    // before a Task: a_policy_created_just_before_a_task_governs_it_despite_a_lagging_watch).
    let _controller = cluster.controller(&["--plugin-timeout-ms", "300"]);

    for (name, behavior) in [
        ("denied", "deny"),
        ("loops", "loop"),
        ("bomb", "memory"),
        ("garbage", "garbage"),
        ("hijack", "hijack"),
        ("fine", "pass"),
    ] {
        cluster.apply_yaml(&task(name, Some(behavior), None)).await;
    }
    let fine = cluster.wait_phase(NS, "fine", TaskPhase::Completed).await;
    let names: Vec<String> = fine
        .status
        .unwrap()
        .rendered_by
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["builtin-default", "site-policy"]);

    let denied = cluster.wait_phase(NS, "denied", TaskPhase::Failed).await;
    assert_eq!(reason(&denied), "PolicyDenied");
    assert!(
        denied.status.unwrap().conditions[0]
            .message
            .contains("hostile policy says no")
    );
    for (name, expected) in [
        ("loops", "deadline"),
        ("bomb", "memory limit"),
        ("garbage", "invalid output"),
    ] {
        let failed = cluster.wait_phase(NS, name, TaskPhase::Failed).await;
        assert_eq!(reason(&failed), "PluginError", "{name}");
        let message = &failed.status.unwrap().conditions[0].message;
        assert!(
            message.contains(expected) && message.contains("site-policy"),
            "{name}: {message}"
        );
        assert!(cluster.jobs(NS).get_opt(name).await.unwrap().is_none());
    }
    // A policy that renames the Job or moves it does not get its way.
    let hijack = cluster.wait_phase(NS, "hijack", TaskPhase::Completed).await;
    assert_eq!(hijack.status.unwrap().job_name.as_deref(), Some("hijack"));
    assert!(cluster.jobs(NS).get_opt("hijack").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_makes_tasks_wait_until_it_is_removed() {
    let cluster = Cluster::start().await;
    let policy = plugin_map(
        "pinned",
        PLUGINS_NS,
        false,
        &[
            ("kubetask.io/policy-order", "1"),
            ("kubetask.io/sha256", "sha256:0000"),
        ],
    );
    cluster
        .config_maps(PLUGINS_NS)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    // Started after the policy exists (see cluster_policies_deny_…).
    let _controller = cluster.controller(&[]);
    cluster.apply_yaml(&task("t", None, None)).await;
    // A pin mismatch is refused before compiling, and fails closed: the Task waits.
    let waiting = cluster
        .wait_reason(NS, "t", "PluginUnavailable", Duration::from_secs(30))
        .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Pending));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("plugin \"pinned\"")
            && message.contains("kubetask.io/sha256 is sha256:0000")
            && message.contains("fixed or removed"),
        "{message}"
    );
    assert!(cluster.jobs(NS).get_opt("t").await.unwrap().is_none());
    // The policy's ConfigMap gets a warning Event naming the problem.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.client.clone(), PLUGINS_NS);
    let mut about_policy = Vec::new();
    for _ in 0..200 {
        about_policy = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("pinned")
                    && e.reason.as_deref() == Some("PluginUnavailable")
            })
            .collect();
        if !about_policy.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(about_policy.len(), 1, "one Event on the policy's ConfigMap");
    // Removing the policy lets the Task start.
    cluster
        .config_maps(PLUGINS_NS)
        .delete("pinned", &Default::default())
        .await
        .unwrap();
    cluster.wait_phase(NS, "t", TaskPhase::Completed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_and_a_standby_load_compiled_plugins_from_the_cache() {
    let cluster = Cluster::start().await;
    let cache = tempfile::tempdir().expect("a temp dir");
    let cache_dir = cache.path().to_str().expect("UTF-8 path");
    let policy = plugin_map(
        "site-policy",
        PLUGINS_NS,
        true,
        &[("kubetask.io/policy-order", "5")],
    );
    cluster
        .config_maps(PLUGINS_NS)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let lease = [
        "--leader-elect",
        "--lease-duration-seconds",
        "3",
        "--lease-renew-grace-seconds",
        "1",
    ];
    let args: Vec<&str> = [&["--plugin-cache-dir", cache_dir][..], &lease[..]].concat();
    let mut first = cluster.controller(&args);
    cluster.apply_yaml(&task("before", None, None)).await;
    cluster.wait_phase(NS, "before", TaskPhase::Completed).await;
    let log = first.log();
    assert!(
        log.contains("plugin compiled") && log.contains("site-policy"),
        "the first controller compiles the policy:\n{log}"
    );
    // A standby starts while the first leads: it loads the policy ahead, from the cache.
    let standby = cluster.controller(&args);
    for _ in 0..200 {
        if standby.log().contains("plugin loaded ahead") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = standby.log();
    assert!(log.contains("plugin loaded ahead"), "{log}");
    assert!(
        log.contains("plugin loaded from the artifact cache") && compilations(&log) == 0,
        "the standby does not compile again:\n{log}"
    );
    assert_ne!(standby.is_leader(), Some(true));
    // Fail-over: the standby renders at once.
    first.kill();
    cluster.apply_yaml(&task("after", None, None)).await;
    let after = cluster.wait_phase(NS, "after", TaskPhase::Completed).await;
    let names: Vec<String> = after
        .status
        .unwrap()
        .rendered_by
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["builtin-default", "site-policy"]);
    assert_eq!(
        compilations(&standby.log()),
        0,
        "the new leader never compiled:\n{}",
        standby.log()
    );
}

/// How many plugins a controller's log says it compiled (rather than loaded from the cache).
fn compilations(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("plugin compiled") && !l.contains("plugin loaded ahead"))
        .count()
}

/// A policy created just before a Task governs it, however late the controller's watch brings
/// the policy: the store is checked against a fresh list before a Task is first rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_created_just_before_a_task_governs_it_despite_a_lagging_watch() {
    let cluster = Cluster::start().await;
    let mut lag = Fault::new(
        Some("watch"),
        Some("configmaps"),
        FaultAction::LagWatch(Duration::from_secs(3)),
    );
    lag.user = Some(CONTROLLER_USER.to_owned());
    cluster.server.inject(lag);
    let _controller = cluster.controller(&[]);
    // Running: its watches are open (and lagging).
    cluster
        .apply_yaml(&task("before", Some("deny"), None))
        .await;
    cluster.wait_phase(NS, "before", TaskPhase::Completed).await;

    let policy = plugin_map(
        "late-policy",
        PLUGINS_NS,
        false,
        &[("kubetask.io/policy-order", "1")],
    );
    cluster
        .config_maps(PLUGINS_NS)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    cluster.apply_yaml(&task("after", Some("deny"), None)).await;
    let after = cluster.wait_phase(NS, "after", TaskPhase::Failed).await;
    assert_eq!(reason(&after), "PolicyDenied");
    assert!(cluster.jobs(NS).get_opt("after").await.unwrap().is_none());
}
