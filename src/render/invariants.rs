//! What no plugin may change: the identity and ownership of the objects made for a Task.

use k8s_openapi::{
    api::{batch::v1::Job, core::v1::ConfigMap},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kubetask_api::{Task, naming, ownership};

/// Restores the Job's name, every object's namespace, the controller owner reference to the
/// Task and our labels, whatever a plugin did to them. Other owner references (not
/// controllers) and other labels are kept.
pub fn apply_invariants(task: &Task, job: &mut Job, config_maps: &mut [ConfigMap]) {
    let task_name = task.metadata.name.as_deref().unwrap_or_default();
    job.metadata.name = Some(naming::job_name(task_name));
    restore_ownership(task, &mut job.metadata);
    for config_map in config_maps {
        restore_ownership(task, &mut config_map.metadata);
    }
}

fn restore_ownership(task: &Task, metadata: &mut ObjectMeta) {
    metadata.namespace.clone_from(&task.metadata.namespace);
    metadata
        .labels
        .get_or_insert_default()
        .extend(ownership::task_labels(task));
    let owners = metadata.owner_references.get_or_insert_default();
    owners.retain(|owner| owner.controller != Some(true));
    owners.insert(0, ownership::controller_owner_reference(task));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kubetask_api::TaskSpec;

    use super::*;

    #[test]
    fn a_plugin_cannot_rename_move_or_reparent_objects() {
        let mut task = Task::new("fix-bug", TaskSpec::default());
        task.metadata.namespace = Some("team-a".to_owned());
        task.metadata.uid = Some("uid-1".to_owned());
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
        let tampered = ObjectMeta {
            name: Some("renamed".to_owned()),
            namespace: Some("kube-system".to_owned()),
            labels: Some(BTreeMap::from([
                ("kubetask.io/task".to_owned(), "other".to_owned()),
                ("team".to_owned(), "a".to_owned()),
            ])),
            owner_references: Some(vec![hijacker, bystander.clone()]),
            ..ObjectMeta::default()
        };
        let mut job = Job {
            metadata: tampered.clone(),
            ..Job::default()
        };
        let mut config_maps = [ConfigMap {
            metadata: tampered,
            ..ConfigMap::default()
        }];

        apply_invariants(&task, &mut job, &mut config_maps);

        assert_eq!(job.metadata.name.as_deref(), Some("fix-bug"));
        assert_eq!(
            config_maps[0].metadata.name.as_deref(),
            Some("renamed"),
            "ConfigMap names are the plugin's"
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
            let owners = metadata.owner_references.as_ref().expect("owners");
            assert_eq!(owners.len(), 2);
            assert_eq!(owners[0], ownership::controller_owner_reference(&task));
            assert_eq!(owners[1], bystander, "non-controller owners stay");
        }
    }
}
