//! The kinds the server serves: the built-in ones and those registered by CRDs.

use std::sync::Arc;

use serde_json::{Value, json};

/// A schema's `x-kubernetes-validations`, compiled (kube-cel).
#[derive(Clone)]
pub struct CompiledRules(pub Arc<kubetask_validation::schema::CompiledSchema>);

impl CompiledRules {
    fn compile(schema: &Value) -> Self {
        Self(Arc::new(kubetask_validation::schema::compile(schema)))
    }
}

impl std::fmt::Debug for CompiledRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledRules")
    }
}

impl PartialEq for CompiledRules {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One served resource (a group/version/plural).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Whether `/status` is a subresource (status is then ignored on the main resource).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained.
    pub generation: bool,
    /// The structural schema of a custom resource version.
    pub schema: Option<Arc<Value>>,
    /// Its CEL rules, compiled once.
    pub rules: Option<CompiledRules>,
    /// Set for custom resources: the CRD's name.
    pub crd: Option<String>,
    /// A custom resource's printer columns (`kubectl get`); `None`: the default table.
    pub printer_columns: Option<Arc<Vec<Value>>>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced,
            status_subresource: false,
            generation: false,
            schema: None,
            rules: None,
            crd: None,
            printer_columns: None,
        }
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self.generation = true;
        self
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// `v1` or `<group>/<version>`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key shared by all versions of one resource.
    pub fn storage_key(&self) -> String {
        // Core and events.k8s.io Events are one resource (crate::events).
        if self.is_core_event() {
            return "events.k8s.io/events".to_owned();
        }
        format!("{}/{}", self.group, self.plural)
    }

    /// The core `v1` Event, served from the `events.k8s.io/v1` Events.
    pub fn is_core_event(&self) -> bool {
        self.group.is_empty() && self.plural == "events"
    }

    /// The `APIResource` entries (the resource and its subresources) for discovery.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if self.group.is_empty() && self.kind == "Namespace" {
            verbs.retain(|v| *v != "deletecollection");
        }
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.group.is_empty() && self.kind == "ServiceAccount" {
            entries.push(json!({
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
        entries
    }
}

/// The built-in kinds KubeTask and its tests use. Deployments are stored (so `kubectl apply -k
/// manifests/` works) but run no pods; RBAC objects take effect with `Admission::rbac`.
pub fn builtins() -> Vec<ResourceType> {
    let mut namespace =
        ResourceType::builtin("", "v1", "Namespace", "namespaces", false).short(&["ns"]);
    namespace.status_subresource = true;
    let mut pod = ResourceType::builtin("", "v1", "Pod", "pods", true).short(&["po"]);
    pod.status_subresource = true;
    pod.categories = vec!["all".into()];
    let mut job = ResourceType::builtin("batch", "v1", "Job", "jobs", true).with_status();
    job.categories = vec!["all".into()];
    let mut crd = ResourceType::builtin(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    )
    .short(&["crd", "crds"]);
    crd.status_subresource = true;
    crd.generation = true;
    let mut deployment = ResourceType::builtin("apps", "v1", "Deployment", "deployments", true)
        .with_status()
        .short(&["deploy"]);
    deployment.categories = vec!["all".into()];
    vec![
        namespace,
        ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        ResourceType::builtin("", "v1", "Secret", "secrets", true),
        ResourceType::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        ResourceType::builtin("", "v1", "Service", "services", true)
            .with_status()
            .short(&["svc"]),
        pod,
        ResourceType::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        job,
        ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        ResourceType::builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        )
        .short(&["netpol"]),
        deployment,
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        ResourceType::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        crd,
    ]
}

/// The resource types a CustomResourceDefinition serves (one per served version).
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let text = |field: &str| {
        names
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let plural = text("plural");
    let kind = text("kind");
    if plural.is_empty() {
        return Err("spec.names.plural: Required value".into());
    }
    if kind.is_empty() {
        return Err("spec.names.kind: Required value".into());
    }
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
            kubetask_validation::go_quote(name)
        ));
    }
    let scope = spec
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                kubetask_validation::go_quote(other)
            ));
        }
    };
    let strings = |field: &str| -> Vec<String> {
        names
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        return Err(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .into(),
        );
    }
    let mut types = Vec::new();
    for version in versions {
        if version.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let version_name = version
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        types.push(ResourceType {
            group: group.to_owned(),
            version: version_name.to_owned(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: if text("singular").is_empty() {
                kind.to_lowercase()
            } else {
                text("singular")
            },
            short_names: strings("shortNames"),
            categories: strings("categories"),
            namespaced,
            status_subresource: version.pointer("/subresources/status").is_some(),
            generation: true,
            schema: version
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .map(Arc::new),
            rules: version
                .pointer("/schema/openAPIV3Schema")
                .map(CompiledRules::compile),
            crd: Some(name.to_owned()),
            printer_columns: Some(Arc::new(crate::table::crd_columns(version))),
        });
    }
    Ok(types)
}
