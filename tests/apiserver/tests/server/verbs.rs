//! Every verb, driven through `kube::Client`: errors carry the real `metav1.Status`.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery};
use kubetask_api::{Agent, Task};
use serde_json::json;

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".into(), "v".into())])),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_get_update_delete_with_real_errors() {
    let (_server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = maps
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );

    let duplicate = api_error(
        maps.create(&PostParams::default(), &config_map("a", &[]))
            .await,
    );
    assert_eq!(
        (duplicate.code, duplicate.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(duplicate.message, "configmaps \"a\" already exists");
    assert_eq!(duplicate.details.as_ref().unwrap().name, "a");

    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = maps
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Update with the current resourceVersion succeeds; with a stale one it conflicts.
    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("k".into(), "w".into())]));
    let updated = maps
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let old: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let new: u64 = updated
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new > old);
    let stale = api_error(maps.replace("a", &PostParams::default(), &changed).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    let missing = api_error(maps.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    maps.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(maps.get("a").await).code, 404);
    assert_eq!(
        api_error(maps.delete("a", &DeleteParams::default()).await).code,
        404
    );

    let bad_name = api_error(
        maps.create(&PostParams::default(), &config_map("Bad_Name", &[]))
            .await,
    );
    assert_eq!((bad_name.code, bad_name.reason.as_str()), (422, "Invalid"));
    assert_eq!(bad_name.details.unwrap().causes[0].field, "metadata.name");
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "missing");
    let no_namespace = api_error(
        elsewhere
            .create(&PostParams::default(), &config_map("a", &[]))
            .await,
    );
    assert_eq!(no_namespace.message, "namespaces \"missing\" not found");
}

#[tokio::test]
async fn patches_of_every_kind() {
    let (_server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("p", &[("a", "1")]))
        .await
        .unwrap();
    let merged = maps
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"data": {"k": null, "m": "x"}, "metadata": {"labels": {"b": "2"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data,
        Some(BTreeMap::from([("m".into(), "x".into())]))
    );
    assert_eq!(merged.metadata.labels.unwrap().len(), 2);
    let patch: json_patch_type::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/n", "value": "y"}])).unwrap();
    let patched = maps
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["n"], "y");
    let failed: json_patch_type::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/n", "value": "z"}])).unwrap();
    assert_eq!(
        api_error(
            maps.patch("p", &PatchParams::default(), &Patch::<()>::Json(failed))
                .await
        )
        .code,
        422
    );
    let strategic = maps
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"finalizers": ["x/y"]}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.metadata.finalizers, Some(vec!["x/y".to_owned()]));
    // A patch carrying a stale resourceVersion is a conflict.
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"q": "1"}}));
    assert_eq!(
        api_error(maps.patch("p", &PatchParams::default(), &stale).await).reason,
        "Conflict"
    );
    // Secrets fold stringData into data.
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"token": "abc"}}))
            .unwrap();
    let secret = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, b"abc");
}

/// The JSON patch type kube's `Patch::Json` takes.
mod json_patch_type {
    pub use json_patch::Patch;
}

#[tokio::test]
async fn lists_with_selectors_and_pages() {
    let (_server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, app, tier) in [
        ("a", "web", "front"),
        ("b", "web", "back"),
        ("c", "api", "back"),
        ("d", "db", ""),
    ] {
        let mut labels = vec![("app", app)];
        if !tier.is_empty() {
            labels.push(("tier", tier));
        }
        maps.create(&PostParams::default(), &config_map(name, &labels))
            .await
            .unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|m| m.metadata.name.unwrap())
            .collect()
    };
    for (selector, expected) in [
        ("app=web", vec!["a", "b"]),
        ("app!=web", vec!["c", "d"]),
        ("app in (api,db)", vec!["c", "d"]),
        ("app notin (web,api)", vec!["d"]),
        ("tier", vec!["a", "b", "c"]),
        ("!tier", vec!["d"]),
        ("app=web,tier=back", vec!["b"]),
    ] {
        let list = maps
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(list), expected, "{selector}");
    }
    let by_name = maps
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["c"]);
    let bad = api_error(maps.list(&ListParams::default().labels("app in web")).await);
    assert_eq!(bad.code, 400);

    let first = maps.list(&ListParams::default().limit(3)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    assert_eq!(names(first), ["a", "b", "c"]);
    let second = maps
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert!(second.metadata.continue_.is_none());
    assert_eq!(names(second), ["d"]);
    // All namespaces.
    let all: Api<ConfigMap> = Api::all(client);
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
}

#[tokio::test]
async fn crds_register_kinds_with_validation_and_status() {
    let (_server, client) = start().await;
    install_crds(&client).await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("kubetask.io", "v1alpha1", "Task"))
        .expect("tasks are discoverable");
    assert_eq!(resource.plural, "tasks");
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural == "tasks/status" || r.plural == "status")
    );
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("batch", "v1", "Job"))
            .is_some()
    );

    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    let created = tasks
        .create(&PostParams::default(), &task("t", "default"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // Structural schema: types and required fields; unknown fields are pruned.
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ApiResource::erase::<Task>(&()));
    let object = |spec: serde_json::Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "metadata": {"name": "x"}, "spec": spec})).unwrap()
    };
    let missing = api_error(
        dynamic
            .create(&PostParams::default(), &object(json!({})))
            .await,
    );
    assert_eq!((missing.code, missing.reason.as_str()), (422, "Invalid"));
    assert_eq!(missing.details.unwrap().causes[0].field, "spec.contexts");
    let wrong_type = api_error(
        dynamic
            .create(&PostParams::default(), &object(json!({"contexts": "x"})))
            .await,
    );
    assert!(
        wrong_type.message.contains("must be of type array"),
        "{}",
        wrong_type.message
    );
    // A CEL rule: a file context needs exactly one source.
    let cel = api_error(
        dynamic
            .create(&PostParams::default(), &object(json!({"contexts": [{"type": "File", "file": {"filePath": "/workspace/a", "source": {}}}]})))
            .await,
    );
    assert_eq!(cel.code, 422, "{cel:?}");
    let pruned = dynamic
        .create(
            &PostParams::default(),
            &object(json!({"contexts": [], "typo": 1})),
        )
        .await
        .unwrap();
    assert!(pruned.data["spec"].get("typo").is_none());

    // Status goes through /status only; the main resource ignores it.
    let status = json!({"status": {"phase": "Running"}});
    let main = tasks
        .patch("t", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(main.status.is_none());
    let with_status = tasks
        .patch_status("t", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(with_status.status.unwrap().phase).unwrap(),
        "Running"
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status changes do not bump generation"
    );
    let through_status = tasks
        .patch_status(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert!(
        through_status.metadata.labels.is_none(),
        "/status ignores everything but status"
    );

    // Spec changes bump generation (Agent specs are mutable).
    let agents: Api<Agent> = Api::namespaced(client.clone(), "default");
    let agent: Agent = serde_json::from_value(
        json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "a"}, "spec": {"serviceAccountName": "sa"}}),
    )
    .unwrap();
    agents.create(&PostParams::default(), &agent).await.unwrap();
    let relabeled = agents
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(relabeled.metadata.generation, Some(1));
    let respecced = agents
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccountName": "other"}})),
        )
        .await
        .unwrap();
    assert_eq!(respecced.metadata.generation, Some(2));
    // The Task spec is immutable (a CEL transition rule).
    let immutable = api_error(
        tasks
            .patch(
                "t",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"agentRef": "b"}})),
            )
            .await,
    );
    assert_eq!(immutable.code, 422);

    // Deleting the CRD removes its objects and the kind.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("tasks.kubetask.io", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(tasks.list(&ListParams::default()).await).code,
        404
    );
}

/// The rules the Agent CRD carries (patterns, enums, bounds, CEL) are enforced at the server,
/// as `kubectl apply` would meet them, with the field of each cause.
#[tokio::test]
async fn the_agent_crd_refuses_what_a_job_would_fail_on() {
    let (_server, client) = start().await;
    install_crds(&client).await;
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ApiResource::erase::<Agent>(&()));
    let agent = |extra: serde_json::Value| -> DynamicObject {
        let mut spec = json!({"serviceAccountName": "runner"});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Agent", "metadata": {"name": "a"}, "spec": spec})).unwrap()
    };
    let cases = [
        (
            json!({"serviceAccountName": "Bad_SA"}),
            "spec.serviceAccountName",
            "should match",
        ),
        (
            json!({"agentImage": "team/Agent:v1"}),
            "spec.agentImage",
            "should match",
        ),
        (
            json!({"podLabels": {"bad key": "x"}}),
            "spec.podLabels",
            "keys must be label keys",
        ),
        (
            json!({"podLabels": {"team": "not valid"}}),
            "spec.podLabels.team",
            "should match",
        ),
        (
            json!({"scheduling": {"tolerations": [{"key": "k", "operator": "Maybe"}]}}),
            "spec.scheduling.tolerations[0].operator",
            "Unsupported value",
        ),
        (
            json!({"scheduling": {"tolerations": [{"operator": "Equal", "value": "v"}]}}),
            "spec.scheduling.tolerations[0].operator",
            "without a key",
        ),
        (
            json!({"credentials": [{"name": "c", "secretRef": {"name": "s", "key": "k"}, "env": "1X"}]}),
            "spec.credentials[0].env",
            "should match",
        ),
        (
            json!({"plugins": ["Not_A_Name"]}),
            "spec.plugins[0]",
            "should match",
        ),
    ];
    for (spec, field, message) in cases {
        let refused = api_error(
            dynamic
                .create(&PostParams::default(), &agent(spec.clone()))
                .await,
        );
        assert_eq!(refused.code, 422, "{spec}: {refused:?}");
        let causes = refused.details.expect("details").causes;
        assert!(
            causes
                .iter()
                .any(|c| c.field == field && c.message.contains(message)),
            "{spec}: {causes:?}"
        );
    }
    let fine = agent(
        json!({"agentImage": "registry.example.com:5000/team/agent:v1", "podLabels": {"example.com/team": "a"},
        "scheduling": {"tolerations": [{"operator": "Exists"}, {"key": "gpu", "value": "a100", "effect": "NoExecute", "tolerationSeconds": 30}]}}),
    );
    dynamic
        .create(&PostParams::default(), &fine)
        .await
        .expect("a valid Agent is stored");
}

#[tokio::test]
async fn server_side_apply_with_field_managers() {
    let (_server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let applied = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let alice = PatchParams::apply("alice");
    let created = maps
        .patch(
            "ssa",
            &alice,
            &Patch::Apply(applied(json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    let managers = created.metadata.managed_fields.unwrap();
    assert_eq!(
        (
            managers[0].manager.as_deref(),
            managers[0].operation.as_deref()
        ),
        (Some("alice"), Some("Apply"))
    );
    let dropped = maps
        .patch("ssa", &alice, &Patch::Apply(applied(json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(
        dropped.data,
        Some(BTreeMap::from([("a".into(), "1".into())])),
        "a field no longer applied is removed"
    );

    let bob = PatchParams::apply("bob");
    let conflict = api_error(
        maps.patch("ssa", &bob, &Patch::Apply(applied(json!({"a": "2"}))))
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(conflict.message.contains("alice"), "{}", conflict.message);
    let forced = maps
        .patch(
            "ssa",
            &bob.clone().force(),
            &Patch::Apply(applied(json!({"a": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["a"], "2");
    let missing_manager = api_error(
        maps.patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Apply(applied(json!({}))),
        )
        .await,
    );
    assert_eq!(missing_manager.code, 400);
}

#[tokio::test]
async fn finalizers_and_cascading_deletes() {
    let (_server, client) = start().await;
    install_crds(&client).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");

    // Finalizers hold an object with a deletionTimestamp until they are removed.
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    maps.create(&PostParams::default(), &held).await.unwrap();
    maps.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = maps.get("held").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    maps.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(maps.get("held").await).code, 404);

    let owned = |name: &str, owner: &Task, block: bool| -> ConfigMap {
        let mut map = config_map(name, &[]);
        let mut reference = kube::Resource::controller_owner_ref(owner, &()).unwrap();
        reference.block_owner_deletion = Some(block);
        map.metadata.owner_references = Some(vec![reference]);
        map
    };
    // Background: the dependent goes with its owner.
    let owner = tasks
        .create(&PostParams::default(), &task("bg", "default"))
        .await
        .unwrap();
    maps.create(&PostParams::default(), &owned("bg-cm", &owner, false))
        .await
        .unwrap();
    tasks
        .delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(api_error(maps.get("bg-cm").await).code, 404);

    // Orphan: the dependent stays, without the reference.
    let owner = tasks
        .create(&PostParams::default(), &task("orphan", "default"))
        .await
        .unwrap();
    maps.create(&PostParams::default(), &owned("orphan-cm", &owner, false))
        .await
        .unwrap();
    tasks
        .delete("orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    assert!(
        maps.get("orphan-cm")
            .await
            .unwrap()
            .metadata
            .owner_references
            .is_none()
    );

    // Foreground: the owner waits (foregroundDeletion) for a blocking dependent to go.
    let owner = tasks
        .create(&PostParams::default(), &task("fg", "default"))
        .await
        .unwrap();
    let mut blocking = owned("fg-cm", &owner, true);
    blocking.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    maps.create(&PostParams::default(), &blocking)
        .await
        .unwrap();
    tasks
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    let waiting = tasks.get("fg").await.unwrap();
    assert!(
        waiting
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_owned())
    );
    assert!(
        maps.get("fg-cm")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    maps.patch(
        "fg-cm",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api_error(tasks.get("fg").await).code,
        404,
        "the owner goes once its dependents are gone"
    );

    // Deleting a namespace deletes its contents.
    create_namespace(&client, "doomed").await;
    let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    doomed
        .create(&PostParams::default(), &config_map("x", &[]))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = namespaces.get_opt("doomed").await.unwrap();
    if let Some(namespace) = terminating {
        assert_eq!(
            namespace.status.unwrap().phase.as_deref(),
            Some("Terminating")
        );
        let refused = api_error(
            doomed
                .create(&PostParams::default(), &config_map("y", &[]))
                .await,
        );
        assert_eq!(refused.code, 403);
    }
    eventually(std::time::Duration::from_secs(5), || {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .get_opt("doomed")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(api_error(doomed.get("x").await).code, 404);

    // Preconditions.
    maps.create(&PostParams::default(), &config_map("pre", &[]))
        .await
        .unwrap();
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_error(maps.delete("pre", &wrong).await).code, 409);
}

#[tokio::test]
async fn bearer_tokens_are_required() {
    let (server, client) = start().await;
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.root_cert = Some(vec![pem_to_der(kubetask_test_apiserver::test_ca_pem())]);
    config.auth_info.token = Some("wrong".to_owned().into());
    let stranger = kube::Client::try_from(config).unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(stranger, "default");
    let denied = api_error(maps.list(&ListParams::default()).await);
    assert_eq!((denied.code, denied.reason.as_str()), (401, "Unauthorized"));
    let users: Vec<String> = server.requests().into_iter().map(|r| r.user).collect();
    assert!(
        users.contains(&"admin".to_owned()) && users.contains(&"system:anonymous".to_owned()),
        "{users:?}"
    );
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn shutdown_closes_watches_and_releases_the_port() {
    let (server, client) = start().await;
    let address = server.address();
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = maps
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::StreamExt::next(&mut stream),
    )
    .await
    .unwrap();
    assert!(
        ended.is_none() || matches!(ended, Some(Err(_))),
        "{ended:?}"
    );
    std::net::TcpListener::bind(address).expect("the port is free again");
}

#[tokio::test]
async fn delete_collection_and_dry_run() {
    let (_server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        maps.create(&PostParams::default(), &config_map(name, &[("app", app)]))
            .await
            .unwrap();
    }
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let would = maps.create(&dry, &config_map("d", &[])).await.unwrap();
    assert_eq!(would.metadata.name.as_deref(), Some("d"));
    assert_eq!(
        api_error(maps.get("d").await).code,
        404,
        "a dry run stores nothing"
    );
    let deleted = maps
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let left: Vec<String> = maps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["c"]);
}

/// A CRD whose CEL rules exceed kube-apiserver's cost budget is refused as a real v1.36 server
/// refused the project's own CRDs of commit 55f7de9 (`validation/tests/real-apiserver/`), and
/// nothing of it is served.
#[tokio::test]
async fn a_crd_over_the_cel_cost_budget_is_refused_in_the_servers_words() {
    let (_server, client) = start().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let fixtures = format!("{root}/../../validation/tests/real-apiserver/crd-budget");
    let text = std::fs::read_to_string(format!("{fixtures}/project-crds-55f7de9.yaml")).unwrap();
    let verdicts =
        std::fs::read_to_string(format!("{fixtures}/project-crds-55f7de9.verdict.txt")).unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let documents: Vec<&str> = text
        .split("\n---")
        .filter(|d| d.contains("kind:"))
        .collect();
    assert_eq!(documents.len(), 2);
    for (document, verdict) in documents.iter().zip(verdicts.lines()) {
        let crd = serde_yaml::from_str(document).unwrap();
        let status = api_error(crds.create(&PostParams::default(), &crd).await);
        assert_eq!(status.code, 422);
        assert_eq!(
            format!("Error from server (Invalid): {}", status.message),
            verdict,
            "the test server refuses with the real server's message"
        );
    }
    let tasks: Api<Task> = Api::namespaced(client, "default");
    assert!(
        tasks.list(&ListParams::default()).await.is_err(),
        "no Task kind was registered"
    );
    // The committed CRDs fit the budget.
    let committed =
        std::fs::read_to_string(format!("{root}/../../manifests/crds/crds.yaml")).unwrap();
    for document in committed.split("\n---").filter(|d| d.contains("kind:")) {
        let crd = serde_yaml::from_str(document).unwrap();
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("the committed CRDs are within the budget");
    }
}

/// What a real kube-apiserver v1.36 answered (`tests/real-apiserver/responses/`, copied from
/// `shared/real-apiserver/`), asked of the test server in the same state: the same Table for
/// `kubectl get tasks` (columns to the letter, cells but the age), and an `events.k8s.io/v1`
/// Event listed as the same core Event under `kubectl describe`'s field selector.
#[tokio::test]
async fn tables_and_events_answer_as_the_recorded_real_server() {
    let (_server, client) = start().await;
    let recorded = |name: &str| -> serde_json::Value {
        let path = format!(
            "{}/tests/real-apiserver/responses/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let crds_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/crds/crds.yaml"
    ))
    .unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for document in crds_text.split("\n---").filter(|d| d.contains("kind:")) {
        let mut crd: serde_json::Value = serde_yaml::from_str(document).unwrap();
        // The recorded server had the CRD of its day: the Tasks' priority-1 `Pull Request`
        // column came after it, and is left out so that the same CRD is asked the same.
        for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
            if let Some(columns) = version["additionalPrinterColumns"].as_array_mut() {
                columns.retain(|c| c["name"] != "Pull Request");
            }
        }
        crds.create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    }
    create_namespace(&client, "demo").await;
    let table = recorded("get-tasks-as-table.json");
    let with_object = recorded("get-tasks-as-table-includeObject.json");
    let recorded_task = &with_object["rows"][0]["object"];
    let tasks: Api<Task> = Api::namespaced(client.clone(), "demo");
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": "hello", "namespace": "demo"},
        "spec": recorded_task["spec"],
    }))
    .unwrap();
    let created = tasks.create(&PostParams::default(), &task).await.unwrap();
    tasks
        .patch_status(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": recorded_task["status"]})),
        )
        .await
        .unwrap();

    let get_table = |query: &'static str| {
        let client = client.clone();
        async move {
            let request = hyper::Request::builder()
                .uri(format!(
                    "/apis/kubetask.io/v1alpha1/namespaces/demo/tasks{query}"
                ))
                .header(
                    "Accept",
                    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                )
                .body(Vec::new())
                .unwrap();
            let text = client.request_text(request).await.unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    for (ours, theirs) in [
        (get_table("").await, &table),
        (get_table("?includeObject=Object").await, &with_object),
    ] {
        assert_eq!(
            (&ours["kind"], &ours["apiVersion"]),
            (&theirs["kind"], &theirs["apiVersion"])
        );
        assert_eq!(ours["columnDefinitions"], theirs["columnDefinitions"]);
        let (our_cells, their_cells) = (&ours["rows"][0]["cells"], &theirs["rows"][0]["cells"]);
        let last = their_cells.as_array().unwrap().len() - 1;
        assert_eq!(
            our_cells.as_array().unwrap()[..last],
            their_cells.as_array().unwrap()[..last]
        );
        let age = our_cells[last].as_str().unwrap();
        assert!(
            age.ends_with('s') && age[..age.len() - 1].parse::<u32>().is_ok(),
            "{age}"
        );
        assert_eq!(
            ours["rows"][0]["object"]["kind"],
            theirs["rows"][0]["object"]["kind"]
        );
    }

    let uid = created.metadata.uid.clone().unwrap();
    let mut posted = recorded("post-events-k8s-io-v1.json");
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        posted["metadata"].as_object_mut().unwrap().remove(field);
    }
    posted["regarding"]["uid"] = json!(uid);
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "demo",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    events
        .create(
            &PostParams::default(),
            &serde_json::from_value(posted).unwrap(),
        )
        .await
        .unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "demo");
    let selector =
        format!("involvedObject.name=hello,involvedObject.namespace=demo,involvedObject.uid={uid}");
    let listed = core
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let ours = serde_json::to_value(&listed.items[0]).unwrap();
    let mut theirs =
        recorded("list-core-v1-events-field-selector-as-kubectl-describe.json")["items"][0].clone();
    theirs["involvedObject"]["uid"] = json!(uid);
    for field in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "type",
        "eventTime",
        "action",
        "reportingComponent",
        "reportingInstance",
    ] {
        assert_eq!(ours[field], theirs[field], "{field}");
    }
    let other = "involvedObject.name=other,involvedObject.namespace=demo";
    assert!(
        core.list(&ListParams::default().fields(other))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // client-go's event recorder bumps a repeated core Event with a strategic merge patch of
    // its core fields; the events.k8s.io view shows the same change.
    let name = listed.items[0].metadata.name.clone().unwrap();
    let bump = json!({"count": 2, "message": "Created Job hello again",
                      "lastTimestamp": "2026-12-05T16:05:00Z"});
    let patched = core
        .patch(&name, &PatchParams::default(), &Patch::Strategic(&bump))
        .await
        .unwrap();
    assert_eq!(patched.count, Some(2));
    assert_eq!(patched.message.as_deref(), Some("Created Job hello again"));
    assert_eq!(patched.involved_object.name.as_deref(), Some("hello"));
    let stored = events.get(&name).await.unwrap();
    assert_eq!(stored.data["note"], "Created Job hello again");
    assert_eq!(stored.data["deprecatedCount"], 2);
    assert_eq!(
        stored.data["deprecatedLastTimestamp"],
        "2026-12-05T16:05:00Z"
    );
    assert!(stored.data.get("message").is_none(), "{:?}", stored.data);
    assert_eq!(stored.types.unwrap().api_version, "events.k8s.io/v1");
}

#[tokio::test]
async fn network_policies_and_services_are_validated_as_kube_apiserver_does() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let (_server, client) = start().await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "default");
    let policy = |name: &str, spec: serde_json::Value| -> NetworkPolicy {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    policies
        .create(
            &PostParams::default(),
            &policy(
                "task-egress",
                json!({"podSelector": {"matchLabels": {"kubetask.io/task": "t"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}], "ports": [{"port": 3128}]}]}),
            ),
        )
        .await
        .unwrap();
    let refused = api_error(
        policies
            .create(
                &PostParams::default(),
                &policy(
                    "bad",
                    json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.1.0.0/24"]}}]}]}),
                ),
            )
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert!(
        refused.message.contains("NetworkPolicy.networking.k8s.io \"bad\" is invalid")
            && refused
                .message
                .contains("spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`"),
        "{refused:?}"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(
        json!({"metadata": {"name": "exit"}, "spec": {"ports": [{"name": "proxy", "port": 3128}]}}),
    )
    .unwrap();
    let created = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.is_some());
    let portless: Service =
        serde_json::from_value(json!({"metadata": {"name": "portless"}, "spec": {}})).unwrap();
    let refused = api_error(services.create(&PostParams::default(), &portless).await);
    assert_eq!(refused.code, 422);
    assert!(
        refused.message.contains("spec.ports: Required value"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_job_name_is_a_label_value_and_refused_past_63_characters() {
    use k8s_openapi::api::batch::v1::Job;
    let (_server, client) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = |name: &str| -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "a", "image": "busybox"}]}}},
        }))
        .unwrap()
    };
    let long = "j".repeat(64);
    let refused = api_error(jobs.create(&PostParams::default(), &job(&long)).await);
    assert_eq!(refused.code, 422);
    assert!(
        refused.message.contains(&format!(
            "metadata.name: Invalid value: \"{long}\": must be no more than 63 characters"
        )),
        "{refused:?}"
    );
    jobs.create(&PostParams::default(), &job(&"j".repeat(63)))
        .await
        .unwrap();
}
