//! What no plugin may change or emit: the identity and ownership of the objects made for a
//! Task, and anything that would reach beyond them. Enforced after every stage, the built-in
//! default plugin's too (docs/plugins.md, "Threat model").

use k8s_openapi::{
    api::{batch::v1::Job, core::v1::ConfigMap},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kubetask_api::{Task, naming, ownership, plugin_labels};

/// Most ConfigMaps a Task's Job may come with.
pub const MAX_CONFIG_MAPS: usize = 16;

/// Restores what a plugin may not change and strips what it may not emit, whatever it did:
/// the Job's name, every object's namespace, the Task's controller owner reference (the only
/// owner reference kept) and our labels (on the pod template too); plugin labels and policy
/// annotations, finalizers and foreign owner references are removed. `Err` says why the
/// output cannot be made acceptable: a ConfigMap not named after the Job or one too many, or
/// a Job that picks its own pod selector.
pub fn apply_invariants(
    task: &Task,
    job: &mut Job,
    config_maps: &mut [ConfigMap],
) -> Result<(), String> {
    let task_name = task.metadata.name.as_deref().unwrap_or_default();
    let job_name = naming::job_name(task_name);
    if let Some(spec) = &job.spec {
        if spec.selector.is_some() {
            return Err(
                "job: spec.selector is set; the Job's pod selector is the API server's to choose"
                    .to_owned(),
            );
        }
        if spec.manual_selector.is_some() {
            return Err("job: spec.manualSelector is set; the Job's pod selector is the API server's to choose".to_owned());
        }
    }
    if config_maps.len() > MAX_CONFIG_MAPS {
        return Err(format!(
            "{} ConfigMaps: at most {MAX_CONFIG_MAPS} may come with a Job",
            config_maps.len()
        ));
    }
    for (index, config_map) in config_maps.iter().enumerate() {
        let name = config_map.metadata.name.as_deref().unwrap_or_default();
        let earlier = config_maps[..index]
            .iter()
            .filter_map(|earlier| earlier.metadata.name.as_deref());
        companion_name(
            &format!("configMaps[{index}]"),
            "ConfigMaps",
            &job_name,
            name,
            earlier,
        )?;
    }
    job.metadata.name = Some(job_name);
    restore_ownership(task, &mut job.metadata);
    if let Some(spec) = job.spec.as_mut() {
        let template = spec.template.metadata.get_or_insert_default();
        strip_foreign_marks(template);
        template
            .labels
            .get_or_insert_default()
            .extend(ownership::task_labels(task));
    }
    for config_map in config_maps {
        restore_ownership(task, &mut config_map.metadata);
    }
    Ok(())
}

/// Why `name`, of an object created with the Job (`at`: `configMaps[2]`; `kinds`: `ConfigMaps`),
/// is not acceptable, if it is not: it must be `<job name>-<suffix>` (so a Task cannot claim
/// another's), a valid object name, and not one of the `earlier` ones.
pub(super) fn companion_name<'a>(
    at: &str,
    kinds: &str,
    job_name: &str,
    name: &str,
    mut earlier: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let prefix = format!("{job_name}-");
    if !name.starts_with(&prefix) || name.len() == prefix.len() {
        return Err(format!(
            "{at}: metadata.name {name:?} must start with {prefix:?} ({kinds} are named after the Job, so a Task cannot claim another's)"
        ));
    }
    if let Some(why) = kubetask_validation::names::subdomain_error(name) {
        return Err(format!("{at}: metadata.name {name:?}: {why}"));
    }
    if earlier.any(|earlier| earlier == name) {
        return Err(format!("{at}: metadata.name {name:?} is used twice"));
    }
    Ok(())
}

pub(super) fn restore_ownership(task: &Task, metadata: &mut ObjectMeta) {
    metadata.namespace.clone_from(&task.metadata.namespace);
    strip_foreign_marks(metadata);
    metadata.finalizers = None;
    metadata
        .labels
        .get_or_insert_default()
        .extend(ownership::task_labels(task));
    metadata.owner_references = Some(vec![ownership::controller_owner_reference(task)]);
}

/// Removes what makes the controller treat an object as a plugin or policy: created in the
/// controller's namespace, such an object would be loaded for every Task.
fn strip_foreign_marks(metadata: &mut ObjectMeta) {
    if let Some(labels) = metadata.labels.as_mut() {
        labels.remove(plugin_labels::PLUGIN);
    }
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(plugin_labels::POLICY_ORDER);
        annotations.remove(plugin_labels::SHA256);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::{batch::v1::JobSpec, core::v1::PodTemplateSpec},
        apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference},
    };
    use kubetask_api::TaskSpec;

    use super::*;

    fn task() -> Task {
        let mut task = Task::new("fix-bug", TaskSpec::default());
        task.metadata.namespace = Some("team-a".to_owned());
        task.metadata.uid = Some("uid-1".to_owned());
        task
    }

    fn tampered(name: &str) -> ObjectMeta {
        let hijacker = OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: "Deployment".to_owned(),
            name: "other".to_owned(),
            uid: "uid-2".to_owned(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let bystander = OwnerReference {
            controller: None,
            ..hijacker.clone()
        };
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("kube-system".to_owned()),
            labels: Some(BTreeMap::from([
                ("kubetask.io/task".to_owned(), "other".to_owned()),
                ("kubetask.io/plugin".to_owned(), "".to_owned()),
                ("team".to_owned(), "a".to_owned()),
            ])),
            annotations: Some(BTreeMap::from([
                ("kubetask.io/policy-order".to_owned(), "1".to_owned()),
                ("kubetask.io/sha256".to_owned(), "00".to_owned()),
                ("note".to_owned(), "kept".to_owned()),
            ])),
            owner_references: Some(vec![hijacker, bystander]),
            finalizers: Some(vec!["example.com/never".to_owned()]),
            ..ObjectMeta::default()
        }
    }

    fn job(template_labels: Option<BTreeMap<String, String>>) -> Job {
        Job {
            metadata: tampered("renamed"),
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: template_labels,
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn a_plugin_cannot_rename_move_reparent_or_pin_objects() {
        let task = task();
        let mut job = job(Some(BTreeMap::from([(
            "kubetask.io/plugin".to_owned(),
            "x".to_owned(),
        )])));
        let mut config_maps = [ConfigMap {
            metadata: tampered("fix-bug-extra"),
            ..ConfigMap::default()
        }];

        apply_invariants(&task, &mut job, &mut config_maps).expect("acceptable");

        assert_eq!(job.metadata.name.as_deref(), Some("fix-bug"));
        assert_eq!(
            config_maps[0].metadata.name.as_deref(),
            Some("fix-bug-extra")
        );
        for metadata in [&job.metadata, &config_maps[0].metadata] {
            assert_eq!(metadata.namespace.as_deref(), Some("team-a"));
            let labels = metadata.labels.as_ref().expect("labels");
            assert_eq!(
                labels.get("kubetask.io/task").map(String::as_str),
                Some("fix-bug")
            );
            assert_eq!(
                labels
                    .get("app.kubernetes.io/managed-by")
                    .map(String::as_str),
                Some("kubetask")
            );
            assert_eq!(
                labels.get("team").map(String::as_str),
                Some("a"),
                "other labels stay"
            );
            assert!(!labels.contains_key("kubetask.io/plugin"), "{labels:?}");
            let annotations = metadata.annotations.as_ref().expect("annotations");
            assert_eq!(
                annotations.keys().collect::<Vec<_>>(),
                ["note"],
                "policy annotations are stripped"
            );
            assert_eq!(
                metadata.owner_references.as_deref(),
                Some(&[ownership::controller_owner_reference(&task)][..]),
                "only the Task owns what is made for it"
            );
            assert_eq!(metadata.finalizers, None);
        }
        let template_labels = job
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .expect("template labels");
        assert_eq!(
            template_labels.get("kubetask.io/task").map(String::as_str),
            Some("fix-bug")
        );
        assert!(!template_labels.contains_key("kubetask.io/plugin"));
    }

    #[test]
    fn dropped_pod_template_labels_come_back() {
        let mut job = job(None);
        apply_invariants(&task(), &mut job, &mut []).expect("acceptable");
        let labels = job
            .spec
            .and_then(|spec| spec.template.metadata)
            .and_then(|m| m.labels)
            .unwrap_or_default();
        assert_eq!(
            labels.get("kubetask.io/task").map(String::as_str),
            Some("fix-bug")
        );
    }

    #[test]
    fn outputs_that_reach_beyond_the_task_are_refused() {
        let config_map = |name: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let selected = |manual: bool| {
            let mut job = job(None);
            let spec = job.spec.as_mut().expect("spec");
            if manual {
                spec.manual_selector = Some(true);
            } else {
                spec.selector = Some(LabelSelector::default());
            }
            job
        };
        let many: Vec<ConfigMap> = (0..=MAX_CONFIG_MAPS)
            .map(|i| config_map(&format!("fix-bug-{i}")))
            .collect();
        let cases: [(Job, Vec<ConfigMap>, &str); 7] = [
            (
                job(None),
                vec![config_map("other-task-contexts")],
                "must start with \"fix-bug-\"",
            ),
            (job(None), vec![config_map("prompts")], "must start with"),
            (job(None), vec![config_map("fix-bug-")], "must start with"),
            (
                job(None),
                vec![config_map("fix-bug-Upper")],
                "RFC 1123 subdomain",
            ),
            (
                job(None),
                vec![config_map("fix-bug-a"), config_map("fix-bug-a")],
                "used twice",
            ),
            (job(None), many, "at most 16"),
            (selected(false), vec![], "spec.selector"),
        ];
        for (mut job, mut config_maps, message) in cases {
            let error = apply_invariants(&task(), &mut job, &mut config_maps).expect_err(message);
            assert!(error.contains(message), "{error}");
        }
        let error = apply_invariants(&task(), &mut selected(true), &mut []).expect_err("manual");
        assert!(error.contains("spec.manualSelector"), "{error}");
    }
}
