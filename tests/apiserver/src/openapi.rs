//! OpenAPI v3 documents, enough for kubectl: every PATCH operation declares the
//! `fieldValidation` parameter (so kubectl uses server-side field validation) and carries
//! `x-kubernetes-group-version-kind`; custom resources publish their structural schema.

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

fn path_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(types: &[ResourceType], generation: u64) -> Value {
    let mut paths = Map::new();
    for t in types {
        let key = path_key(&t.group, &t.version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={generation:016X}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api|apis/group>/<version>`.
pub fn document(types: &[ResourceType], key: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|t| path_key(&t.group, &t.version) == key)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in served {
        let gvk = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        let schema_name = format!(
            "{}.{}.{}",
            if t.group.is_empty() { "core" } else { &t.group },
            t.version,
            t.kind
        );
        let mut schema = t.schema.as_deref().cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] = gvk.clone();
        schemas.insert(schema_name.clone(), schema);
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ]);
        let operation = |id: &str| {
            json!({
                "operationId": format!("{id}{}", t.kind),
                "parameters": params,
                "requestBody": body,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
                "x-kubernetes-group-version-kind": gvk[0],
            })
        };
        let prefix = format!("/{key}");
        let collection = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        paths.insert(collection.clone(), json!({"post": operation("create")}));
        paths.insert(format!("{collection}/{{name}}"), json!({"get": operation("read"), "put": operation("replace"), "patch": operation("patch"), "delete": operation("delete")}));
        if t.status_subresource {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({"patch": operation("patchStatus")}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
