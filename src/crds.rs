//! The CustomResourceDefinitions of the KubeTask API, as installed on a cluster.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;
use kubetask_api::{Agent, Budget, CronTask, Task, TaskTrigger};

/// The CRDs of Task, Agent, CronTask, TaskTrigger and Budget.
pub fn definitions() -> [CustomResourceDefinition; 5] {
    [
        Task::crd(),
        Agent::crd(),
        CronTask::crd(),
        TaskTrigger::crd(),
        Budget::crd(),
    ]
}

/// The CRDs as a multi-document YAML stream (what `kubetask crds` prints and
/// `manifests/crds/crds.yaml` holds).
pub fn yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in definitions() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
