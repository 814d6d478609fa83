//! The Agent resource: how Tasks run (image, tools, credentials, scheduling).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Affinity;
use kube_derive::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::Context;
use crate::egress::Egress;
use crate::lifecycle::{DURATION_PATTERN, MAX_RETRIES};
use crate::syntax::{
    DATA_KEY_PATTERN, ENV_NAME_PATTERN, IMAGE_PATTERN, LABEL_KEYS_MESSAGE, LABEL_KEYS_RULE,
    LABEL_VALUE_PATTERN, MAX_IMAGE, MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_LABELS, MAX_SUBDOMAIN,
    MAX_TOLERATIONS, SUBDOMAIN_PATTERN, TOLERATION_KEY_PATTERN,
};
use crate::workspace::Workspace;

/// How Tasks that reference this Agent are executed.
#[derive(CustomResource, Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kubetask.io",
    version = "v1alpha1",
    kind = "Agent",
    namespaced,
    derive = "PartialEq",
    shortname = "ag",
    category = "kubetask",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.agentImage"}"#,
    printcolumn = r#"{"name":"ServiceAccount","type":"string","jsonPath":".spec.serviceAccountName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "How Tasks that reference this Agent run: image, tools, credentials, scheduling.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[x_kube(crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde"))]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Container image of the agent. Default: the controller's default agent image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE_PATTERN), length(max = MAX_IMAGE))]
    pub agent_image: Option<String>,
    /// Image whose files appear read-only under `/tools` in the agent container, with
    /// `/tools/bin` first on `PATH` (see docs/tools-image.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE_PATTERN), length(max = MAX_IMAGE))]
    pub tools_image: Option<String>,
    /// Contexts every Task of this Agent gets; a Task's own context at the same path wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub default_contexts: Vec<Context>,
    /// Secrets given to the agent as environment variables and/or files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub credentials: Vec<Credential>,
    /// Extra labels of the agent pod (for NetworkPolicies, monitoring, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = {"type": "string", "pattern": LABEL_VALUE_PATTERN, "maxLength": MAX_LABEL_VALUE}))]
    #[x_kube(validation = Rule::new(LABEL_KEYS_RULE).message(LABEL_KEYS_MESSAGE))]
    pub pod_labels: BTreeMap<String, String>,
    /// Where the agent pod may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<PodScheduling>,
    /// ServiceAccount the agent pod runs as.
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub service_account_name: String,
    /// Render plugins (ConfigMaps in the controller's namespace labelled `kubetask.io/plugin`)
    /// that reshape this Agent's Jobs, run in order after the built-in default plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN)))]
    pub plugins: Vec<String>,
    /// Timeout of the Agent's Tasks that set none (see `Task.spec.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    pub default_timeout: Option<String>,
    /// Retries of the Agent's Tasks that set none (0–10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_RETRIES))]
    pub retries: Option<i32>,
    /// TTL of the Agent's finished Tasks that set none (see `Task.spec.ttlSecondsAfterFinished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// At most this many of the Agent's Tasks have an unfinished Job; the others wait
    /// `Pending/Queued`, admitted first-in first-out by creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_tasks: Option<i32>,
    /// Where the agent pods of this Agent's Tasks may connect (docs/security.md); a Task may
    /// narrow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// The repository its Tasks work in, cloned before the agent starts (docs/workspaces.md);
    /// a Task's `spec.workspace` fields replace these one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// The budget of its Tasks that set none (see `Task.spec.budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::budget::Limits>,
}

/// A Secret key handed to the agent.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.env) || has(self.mountPath)").message("set env, mountPath or both").field_path(".env").reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.fileMode) || has(self.mountPath)").message("fileMode needs mountPath").field_path(".fileMode").reason(Reason::FieldValueForbidden),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct Credential {
    /// Name of this credential (for people and error messages).
    #[schemars(length(max = MAX_SUBDOMAIN))]
    pub name: String,
    /// The Secret key holding the value, in the Task's namespace.
    pub secret_ref: SecretKeyRef,
    /// Environment variable that receives the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ENV_NAME_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub env: Option<String>,
    /// Absolute path of a file that receives the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')").message("must be an absolute path without '..' segments"))]
    pub mount_path: Option<String>,
    /// Permission bits of the file at `mountPath` (e.g. `0400`). Default `0644`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 511").message("must be a file mode between 0 and 0777"))]
    pub file_mode: Option<i32>,
}

/// Selects one key of a Secret.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(regex(pattern = DATA_KEY_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub key: String,
}

/// Scheduling constraints copied into the agent pod.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde"))]
pub struct PodScheduling {
    /// Node labels the pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = {"type": "string", "pattern": LABEL_VALUE_PATTERN, "maxLength": MAX_LABEL_VALUE}))]
    #[x_kube(validation = Rule::new(LABEL_KEYS_RULE).message(LABEL_KEYS_MESSAGE))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_TOLERATIONS))]
    pub tolerations: Vec<Toleration>,
    /// Node and pod (anti-)affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// A taint the agent pod tolerates (the fields of a pod's toleration, validated as the API
/// server validates them).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')").message("a toleration without a key must have operator Exists (it then matches every taint)").field_path(".operator"),
    validation = Rule::new("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''").message("value must be empty when operator is Exists").field_path(".value"),
    validation = Rule::new("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')").message("tolerationSeconds needs effect NoExecute").field_path(".tolerationSeconds").reason(Reason::FieldValueForbidden),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct Toleration {
    /// Taint key the toleration applies to; empty with operator `Exists` matches every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TOLERATION_KEY_PATTERN), length(max = MAX_LABEL_KEY))]
    pub key: Option<String>,
    /// `Equal` (the default: the taint's value must be `value`) or `Exists` (any value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["", "Exists", "Equal"]))]
    pub operator: Option<String>,
    /// Taint value the toleration matches (with operator `Equal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = LABEL_VALUE_PATTERN), length(max = MAX_LABEL_VALUE))]
    pub value: Option<String>,
    /// Taint effect to match: `NoSchedule`, `PreferNoSchedule` or `NoExecute`; empty: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]))]
    pub effect: Option<String>,
    /// With effect `NoExecute`: how long the pod stays bound once tainted (default: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl From<Toleration> for k8s_openapi::api::core::v1::Toleration {
    fn from(toleration: Toleration) -> Self {
        Self {
            key: toleration.key,
            operator: toleration.operator,
            value: toleration.value,
            effect: toleration.effect,
            toleration_seconds: toleration.toleration_seconds,
        }
    }
}
