//! Context files: what a Task (or an Agent's defaults) puts under `/workspace`.

use k8s_openapi::api::core::v1::ConfigMapKeySelector;
use kube_derive::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::syntax::{
    CONFIG_MAP_KEY_REF_MESSAGE, CONFIG_MAP_KEY_REF_RULE, MAX_SUBDOMAIN, SUBDOMAIN_PATTERN,
};

/// One piece of context given to the agent.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type != 'File' || has(self.file)").message("file is required when type is File"),
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
    validation = Rule::new("has(self.filePath) != has(self.dirPath)").message("exactly one of filePath or dirPath must be set"),
    validation = Rule::new("has(self.dirPath) == has(self.source.configMapRef)").message("dirPath goes with source.configMapRef, and configMapRef needs dirPath"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct FileContext {
    /// Absolute path of a single file, e.g. `/workspace/task.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')").message("must be an absolute path without '..' segments"))]
    pub file_path: Option<String>,
    /// Absolute path of a directory holding every key of `source.configMapRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
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
    #[x_kube(validation = Rule::new(CONFIG_MAP_KEY_REF_RULE).message(CONFIG_MAP_KEY_REF_MESSAGE))]
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
