//! Context files: what a Task (or an Agent's defaults) puts under `/workspace`.

use k8s_openapi::api::core::v1::ConfigMapKeySelector;
use kube_derive::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::syntax::{
    DATA_KEY_PATTERN, MAX_DATA_KEY, MAX_SUBDOMAIN, PATH_PATTERN, SUBDOMAIN_PATTERN,
};

/// One piece of context given to the agent.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type != 'File' || has(self.file)").message("file is required when type is File").field_path(".file").reason(Reason::FieldValueRequired),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct Context {
    /// Kind of context. Only `File` exists today.
    #[serde(rename = "type")]
    pub type_: ContextType,
    /// A file or directory placed in the agent's filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileContext>,
}

/// Kinds of context.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextType {
    /// A file (`filePath`) or a directory (`dirPath`).
    File,
}

/// A file or directory mounted into the agent container.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.filePath) != has(self.dirPath)").message("exactly one of filePath or dirPath must be set").field_path(".filePath"),
    validation = Rule::new("has(self.dirPath) == has(self.source.configMapRef)").message("dirPath goes with source.configMapRef, and configMapRef needs dirPath").field_path(".dirPath"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct FileContext {
    /// Absolute path of a single file, e.g. `/workspace/task.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), regex(pattern = PATH_PATTERN))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')").message("must be an absolute path without '..' segments"))]
    pub file_path: Option<String>,
    /// Absolute path of a directory holding every key of `source.configMapRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), regex(pattern = PATH_PATTERN))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')").message("must be an absolute path without '..' segments"))]
    pub dir_path: Option<String>,
    /// Where the content comes from.
    pub source: FileSource,
}

/// The content of a file context. Exactly one field is set.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.inline), has(self.configMapKeyRef), has(self.configMapRef)].filter(x, x).size() == 1").message("exactly one of inline, configMapKeyRef or configMapRef must be set"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct FileSource {
    /// The file's content, written in the Task itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1048576))]
    pub inline: Option<String>,
    /// One key of a ConfigMap in the Task's namespace, mounted as the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "config_map_key_ref_schema")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
    /// A whole ConfigMap in the Task's namespace, every key a file of `dirPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapReference>,
}

/// A ConfigMap mounted as a directory.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapReference {
    /// Name of the ConfigMap, in the Task's namespace.
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub name: String,
    /// When true, a missing ConfigMap gives an empty directory instead of blocking the Task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// The schema of `configMapKeyRef`: Kubernetes' `ConfigMapKeySelector` with the bounds and
/// patterns the API server checks without CEL (a `matches()` rule on unbounded strings in a list
/// exceeds kube-apiserver's cost budget; a `pattern` costs none).
fn config_map_key_ref_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "One key of a ConfigMap in the Task's namespace, mounted as the file.",
        "type": "object",
        "nullable": true,
        "required": ["key", "name"],
        "properties": {
            "name": {
                "description": "Name of the ConfigMap, in the Task's namespace (a DNS subdomain).",
                "type": "string",
                "maxLength": MAX_SUBDOMAIN,
                "pattern": SUBDOMAIN_PATTERN,
            },
            "key": {
                "description": "The key to mount: [-._a-zA-Z0-9]+, not '.' or '..'.",
                "type": "string",
                "maxLength": MAX_DATA_KEY,
                "pattern": DATA_KEY_PATTERN,
            },
            "optional": {
                "description": "When true, a missing ConfigMap or key gives an empty file instead of blocking the Task.",
                "type": "boolean",
                "nullable": true,
            },
        },
    })
}
