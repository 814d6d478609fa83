//! What marks an object as created for a Task: labels and the controller owner reference.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::{API_VERSION, Task, labels, naming};

/// The labels every object created for `task` carries.
pub fn task_labels(task: &Task) -> BTreeMap<String, String> {
    let task_name = task.metadata.name.as_deref().unwrap_or_default();
    BTreeMap::from([
        (
            labels::MANAGED_BY.to_owned(),
            labels::MANAGED_BY_VALUE.to_owned(),
        ),
        (labels::TASK.to_owned(), naming::job_name(task_name)),
    ])
}

/// The controller owner reference to `task`, which makes Kubernetes delete the Job and its
/// ConfigMaps with the Task. Its `uid` is empty when the Task has none yet (offline rendering).
pub fn controller_owner_reference(task: &Task) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: "Task".to_owned(),
        name: task.metadata.name.clone().unwrap_or_default(),
        uid: task.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
