//! The Secrets the controller adds beside a Task's Job (its egress proxy URL, its model
//! gateway key): one key each, owned and labelled as the Job is, so they die with the Task.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest as _, Sha256};

/// `<job>-<kind>-<hash of the Task's uid>`: a Task recreated under the same name never meets
/// its predecessor's Secret (the controller may create Secrets, not read them).
pub fn name(job_name: &str, kind: &str, uid: &str) -> String {
    let digest = Sha256::digest(uid.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{job_name}-{kind}-{hash}")
}

/// The Secret `name` beside `job` in `namespace`, holding `value` under `key`.
pub fn secret(job: &Job, namespace: String, name: &str, key: &str, value: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace),
            labels: job.metadata.labels.clone(),
            owner_references: job.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.into_bytes()),
        )])),
        ..Secret::default()
    }
}
