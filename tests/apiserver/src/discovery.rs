//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`.
//! Served in the legacy (unaggregated) format, which kubectl and kube's discovery accept when
//! the response is not `application/json;g=apidiscovery.k8s.io`.

use serde_json::{Value, json};

use crate::registry::ResourceType;

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-kubetask-test",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    })
}

/// `/api/v1` or `/apis/<group>/<version>`; `None` when nothing is served there.
pub fn resources(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let entries: Vec<Value> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(ResourceType::discovery_entries)
        .collect();
    if entries.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}),
    )
}

fn group_document(types: &[ResourceType], group: &str) -> Option<Value> {
    let mut versions: Vec<&str> = Vec::new();
    for t in types.iter().filter(|t| t.group == group) {
        if !versions.contains(&t.version.as_str()) {
            versions.push(&t.version);
        }
    }
    let preferred = versions.first()?;
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    Some(json!({
        "name": group,
        "versions": entries,
        "preferredVersion": {"groupVersion": format!("{group}/{preferred}"), "version": preferred},
    }))
}

/// `/apis`.
pub fn groups(types: &[ResourceType]) -> Value {
    let mut names: Vec<&str> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        if !names.contains(&t.group.as_str()) {
            names.push(&t.group);
        }
    }
    let groups: Vec<Value> = names
        .iter()
        .filter_map(|g| group_document(types, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(types: &[ResourceType], group: &str) -> Option<Value> {
    let mut document = group_document(types, group)?;
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}
