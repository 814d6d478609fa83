//! Default resource requests and limits for containers that set none.

use kubetask_plugin::{
    Error, Job, Object,
    k8s_openapi::{
        api::core::v1::ResourceRequirements, apimachinery::pkg::api::resource::Quantity,
    },
};

use crate::POD;

/// Requests a container gets for each resource it does not request.
pub const DEFAULT_REQUESTS: &[(&str, &str)] = &[("cpu", "250m"), ("memory", "512Mi")];
/// Limits a container gets for each resource it does not limit. No CPU limit: throttling an
/// agent helps nobody, memory is what must be bounded.
pub const DEFAULT_LIMITS: &[(&str, &str)] = &[("memory", "2Gi")];

/// Fills in [`DEFAULT_REQUESTS`] and [`DEFAULT_LIMITS`] on every container. A resource the
/// container limits itself gets no default request: Kubernetes then requests the limit, and a
/// default request above a smaller limit would make the pod invalid.
pub fn apply_defaults(job: &mut Object<Job>) -> Result<(), Error> {
    for list in ["initContainers", "containers"] {
        let list = format!("{POD}/{list}");
        for index in 0..job.len(&list)? {
            job.edit(&format!("{list}/{index}/resources"), apply)?;
        }
    }
    Ok(())
}

fn apply(resources: &mut ResourceRequirements) {
    let limits = resources.limits.get_or_insert_default();
    let limited_by_user: Vec<String> = limits.keys().cloned().collect();
    for (name, value) in DEFAULT_LIMITS {
        limits
            .entry((*name).to_owned())
            .or_insert_with(|| Quantity((*value).to_owned()));
    }
    for (name, value) in DEFAULT_REQUESTS {
        if !limited_by_user.iter().any(|limited| limited == name) {
            resources
                .requests
                .get_or_insert_default()
                .entry((*name).to_owned())
                .or_insert_with(|| Quantity((*value).to_owned()));
        }
    }
}
