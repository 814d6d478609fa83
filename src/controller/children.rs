//! Creating a Task's ConfigMaps and Job, or adopting them when they already exist and belong
//! to the Task (a restart, a retried request, a lost response). Anything else with the name
//! is a conflict the user must resolve: it is never overwritten.

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ConfigMap, Secret},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Resource, ResourceExt};
use serde::{Serialize, de::DeserializeOwned};

use crate::render::Rendered;

/// Field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "kubetask-controller";

/// The result of create-or-adopt.
#[derive(Debug)]
pub enum Created<K> {
    /// Created now, or found already created for this Task.
    Owned(K),
    /// An object with the name exists and is not controlled by this Task.
    Conflict {
        kind: &'static str,
        name: String,
        owner: String,
        /// It belongs to a deleted Task of the same name: the garbage collector removes it.
        previous: bool,
    },
}

/// Whether `meta` is controlled by an earlier Task named `task_name` (a different uid): a
/// Task deleted and created again, whose old children the garbage collector has not removed
/// yet.
pub fn controlled_by_previous(meta: &ObjectMeta, task_name: &str, uid: &str) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|r| {
            r.controller == Some(true) && r.kind == "Task" && r.name == task_name && r.uid != uid
        })
    })
}

/// Whether `meta`'s controller owner reference is the Task with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.controller == Some(true) && r.uid == uid)
    })
}

/// Who controls `meta`, for messages.
pub fn controller_name(meta: &ObjectMeta) -> String {
    meta.owner_references
        .as_ref()
        .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
        .map(|r| format!("{} {:?} (uid {})", r.kind, r.name, r.uid))
        .unwrap_or_else(|| "no controller".to_owned())
}

async fn create_or_adopt<K>(
    api: &Api<K>,
    object: &K,
    kind: &'static str,
    task_name: &str,
    task_uid: &str,
) -> Result<Created<K>, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let name = object.name_any();
    match api.create(&params, object).await {
        Ok(created) => Ok(Created::Owned(created)),
        Err(kube::Error::Api(status)) if status.code == 409 => match api.get_opt(&name).await? {
            Some(existing) if controlled_by(existing.meta(), task_uid) => {
                Ok(Created::Owned(existing))
            }
            Some(existing) => Ok(Created::Conflict {
                kind,
                name,
                owner: controller_name(existing.meta()),
                previous: controlled_by_previous(existing.meta(), task_name, task_uid),
            }),
            // Deleted between our create and get: the next reconcile creates it again.
            None => Err(kube::Error::Api(status)),
        },
        Err(error) => Err(error),
    }
}

/// A create that failed, with what it was doing (`create Job "x" in namespace "n"`).
#[derive(Debug)]
pub struct CreateError {
    pub action: String,
    pub error: kube::Error,
}

fn failed(kind: &str, name: &str, namespace: &str) -> impl FnOnce(kube::Error) -> CreateError {
    let action = format!("create {kind} {name:?} in namespace {namespace:?}");
    move |error| CreateError { action, error }
}

/// Creates each Secret (its name holds the Task's uid: one that exists is this Task's, from
/// an earlier reconcile), creates (or adopts) each policy and ConfigMap, then the Job: the
/// pod never starts before what restricts it.
pub async fn create(
    client: &kube::Client,
    namespace: &str,
    task_name: &str,
    task_uid: &str,
    rendered: &Rendered,
) -> Result<Created<Job>, CreateError> {
    let Rendered {
        job,
        config_maps,
        secrets,
        policies,
        ..
    } = rendered;
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    for secret in secrets {
        match secret_api.create(&params, secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(failed("Secret", &secret.name_any(), namespace)(error)),
        }
    }
    for policy in policies {
        let types = policy.types.clone().unwrap_or_default();
        let (group, version) = match types.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", types.api_version.as_str()),
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let kind = if types.kind == "NetworkPolicy" {
            "NetworkPolicy"
        } else {
            "CiliumNetworkPolicy"
        };
        let created = create_or_adopt(&api, policy, kind, task_name, task_uid)
            .await
            .map_err(failed(kind, &policy.name_any(), namespace))?;
        if let Some(conflict) = conflict(created) {
            return Ok(conflict);
        }
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for map in config_maps {
        let created = create_or_adopt(&maps, map, "ConfigMap", task_name, task_uid)
            .await
            .map_err(failed("ConfigMap", &map.name_any(), namespace))?;
        if let Some(conflict) = conflict(created) {
            return Ok(conflict);
        }
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    create_or_adopt(&jobs, job, "Job", task_name, task_uid)
        .await
        .map_err(failed("Job", &job.name_any(), namespace))
}

/// A conflict, as the Job's result (the Job is not created).
fn conflict<K>(created: Created<K>) -> Option<Created<Job>> {
    match created {
        Created::Owned(_) => None,
        Created::Conflict {
            kind,
            name,
            owner,
            previous,
        } => Some(Created::Conflict {
            kind,
            name,
            owner,
            previous,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(kind: &str, name: &str, uid: &str, controller: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "kubetask.io/v1alpha1".into(),
                kind: kind.into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(controller),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn ownership_decides_adoption() {
        assert!(controlled_by(&owned_by("Task", "t", "u1", true), "u1"));
        assert!(
            !controlled_by(&owned_by("Task", "t", "u1", false), "u1"),
            "a non-controller reference does not count"
        );
        assert!(!controlled_by(&ObjectMeta::default(), "u1"));
        assert!(
            controlled_by_previous(&owned_by("Task", "t", "u0", true), "t", "u1"),
            "same name, older uid"
        );
        assert!(!controlled_by_previous(
            &owned_by("Task", "other", "u0", true),
            "t",
            "u1"
        ));
        assert!(!controlled_by_previous(
            &owned_by("Job", "t", "u0", true),
            "t",
            "u1"
        ));
        assert!(!controlled_by_previous(
            &owned_by("Task", "t", "u1", true),
            "t",
            "u1"
        ));
    }
}
