//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the built-in kinds
//! imperative kubectl commands send (`kubectl create namespace|configmap|secret|
//! serviceaccount|token|role|rolebinding|clusterrole|clusterrolebinding`): the `k8s\0` envelope around a `runtime.Unknown`, decoded with the
//! `k8s-pb` types and turned into the JSON the rest of the server works on. Responses are
//! JSON, which clients accept alongside protobuf.

use base64::Engine as _;
use k8s_pb::api::authentication::v1::TokenRequest;
use k8s_pb::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_pb::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// The media type of protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf: {message}"))
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut out = Map::new();
    let mut text = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.insert(key.to_owned(), json!(value));
        }
    };
    text("name", meta.name);
    text("generateName", meta.generate_name);
    text("namespace", meta.namespace);
    text("resourceVersion", meta.resource_version);
    if !meta.labels.is_empty() {
        out.insert("labels".into(), json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        out.insert("annotations".into(), json!(meta.annotations));
    }
    if !meta.finalizers.is_empty() {
        out.insert("finalizers".into(), json!(meta.finalizers));
    }
    if !meta.owner_references.is_empty() {
        let owners: Vec<Value> = meta
            .owner_references
            .into_iter()
            .map(|r| {
                json!({
                    "apiVersion": r.api_version.unwrap_or_default(),
                    "kind": r.kind.unwrap_or_default(),
                    "name": r.name.unwrap_or_default(),
                    "uid": r.uid.unwrap_or_default(),
                    "controller": r.controller,
                    "blockOwnerDeletion": r.block_owner_deletion,
                })
            })
            .collect();
        out.insert("ownerReferences".into(), Value::Array(owners));
    }
    Value::Object(out)
}

fn base64_map(map: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    let encoded: Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    Value::Object(encoded)
}

fn rules(rules: Vec<PolicyRule>) -> Value {
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|r| {
            let mut rule =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                rule["resourceNames"] = json!(r.resource_names);
            }
            if !r.non_resource_ur_ls.is_empty() {
                rule["nonResourceURLs"] = json!(r.non_resource_ur_ls);
            }
            rule
        })
        .collect();
    Value::Array(rules)
}

fn binding(meta: Option<ObjectMeta>, subjects: Vec<Subject>, role_ref: Option<RoleRef>) -> Value {
    let role_ref = role_ref.unwrap_or_default();
    let subjects: Vec<Value> = subjects
        .into_iter()
        .map(|s| {
            let mut subject = json!({"kind": s.kind, "name": s.name});
            if let Some(group) = s.api_group.filter(|g| !g.is_empty()) {
                subject["apiGroup"] = json!(group);
            }
            if let Some(namespace) = s.namespace.filter(|n| !n.is_empty()) {
                subject["namespace"] = json!(namespace);
            }
            subject
        })
        .collect();
    json!({
        "metadata": metadata(meta),
        "subjects": subjects,
        "roleRef": {"apiGroup": role_ref.api_group, "kind": role_ref.kind, "name": role_ref.name},
    })
}

/// Decodes a protobuf body into the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the body does not start with the k8s protobuf magic"))?;
    let unknown = Unknown::decode(envelope).map_err(bad)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let namespace = Namespace::decode(raw.as_slice()).map_err(bad)?;
            let finalizers = namespace.spec.map(|s| s.finalizers).unwrap_or_default();
            let mut object = json!({"metadata": metadata(namespace.metadata)});
            if !finalizers.is_empty() {
                object["spec"] = json!({"finalizers": finalizers});
            }
            object
        }
        ("v1", "ConfigMap") => {
            let map = ConfigMap::decode(raw.as_slice()).map_err(bad)?;
            let mut object = json!({"metadata": metadata(map.metadata)});
            if !map.data.is_empty() {
                object["data"] = json!(map.data);
            }
            if !map.binary_data.is_empty() {
                object["binaryData"] = base64_map(map.binary_data);
            }
            if let Some(immutable) = map.immutable {
                object["immutable"] = json!(immutable);
            }
            object
        }
        ("v1", "Secret") => {
            let secret = Secret::decode(raw.as_slice()).map_err(bad)?;
            let mut object = json!({"metadata": metadata(secret.metadata)});
            if !secret.data.is_empty() {
                object["data"] = base64_map(secret.data);
            }
            if !secret.string_data.is_empty() {
                object["stringData"] = json!(secret.string_data);
            }
            if let Some(kind) = secret.r#type.filter(|t| !t.is_empty()) {
                object["type"] = json!(kind);
            }
            if let Some(immutable) = secret.immutable {
                object["immutable"] = json!(immutable);
            }
            object
        }
        ("v1", "ServiceAccount") => {
            let account = ServiceAccount::decode(raw.as_slice()).map_err(bad)?;
            let mut object = json!({"metadata": metadata(account.metadata)});
            if let Some(automount) = account.automount_service_account_token {
                object["automountServiceAccountToken"] = json!(automount);
            }
            object
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            let request = TokenRequest::decode(raw.as_slice()).map_err(bad)?;
            let spec = request.spec.unwrap_or_default();
            json!({
                "metadata": metadata(request.metadata),
                "spec": {
                    "audiences": spec.audiences,
                    "expirationSeconds": spec.expiration_seconds,
                },
            })
        }
        ("rbac.authorization.k8s.io/v1", "Role") => {
            let role = Role::decode(raw.as_slice()).map_err(bad)?;
            json!({"metadata": metadata(role.metadata), "rules": rules(role.rules)})
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            let role = ClusterRole::decode(raw.as_slice()).map_err(bad)?;
            json!({"metadata": metadata(role.metadata), "rules": rules(role.rules)})
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            let bound = RoleBinding::decode(raw.as_slice()).map_err(bad)?;
            binding(bound.metadata, bound.subjects, bound.role_ref)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let bound = ClusterRoleBinding::decode(raw.as_slice()).map_err(bad)?;
            binding(bound.metadata, bound.subjects, bound.role_ref)
        }
        _ => {
            return Err(ApiError::unsupported_media_type(&format!(
                "{MEDIA_TYPE} for {api_version} {kind} (this test server decodes protobuf for Namespace, ConfigMap, Secret, ServiceAccount, TokenRequest and the RBAC kinds; send JSON)"
            )));
        }
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn decodes_what_kubectl_create_sends() {
        let map = ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("c".into()),
                labels: BTreeMap::from([("a".into(), "b".into())]),
                ..ObjectMeta::default()
            }),
            data: BTreeMap::from([("k".into(), "v".into())]),
            binary_data: BTreeMap::from([("bin".into(), vec![0, 1, 2])]),
            immutable: None,
        };
        let object = decode(&envelope("v1", "ConfigMap", map.encode_to_vec())).unwrap();
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "labels": {"a": "b"}},
                "data": {"k": "v"}, "binaryData": {"bin": "AAEC"}})
        );
        let namespace = Namespace {
            metadata: Some(ObjectMeta {
                name: Some("x".into()),
                ..ObjectMeta::default()
            }),
            ..Namespace::default()
        };
        let object = decode(&envelope("v1", "Namespace", namespace.encode_to_vec())).unwrap();
        assert_eq!(object["metadata"]["name"], "x");
        assert!(decode(b"{}").is_err());
        let job = envelope("batch/v1", "Job", vec![]);
        assert_eq!(decode(&job).unwrap_err().code, 415);
    }
}
