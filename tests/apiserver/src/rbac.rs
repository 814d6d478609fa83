//! RBAC authorization as kube-apiserver's RBAC authorizer does it: a request is allowed when a
//! ClusterRoleBinding, or a RoleBinding in the request's namespace, binds the user (directly,
//! as a ServiceAccount or through a group) to a rule matching its verb, API group, resource
//! (`resource/subresource`) and name. Superusers (the kubeconfig's `admin`) skip it, as members
//! of `system:masters` do.

use serde_json::Value;

use crate::error::ApiError;

/// One authorization question: may `user` do `verb` on this resource?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: String,
    pub verb: String,
    pub group: String,
    /// The plural resource name (`jobs`).
    pub resource: String,
    /// `status`, `finalizers`, … or empty.
    pub subresource: String,
    /// Empty for cluster-scoped requests.
    pub namespace: String,
    /// Empty for collection requests.
    pub name: String,
}

/// One decision, for the authorization log tests read (RBAC sufficiency and minimality).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub attributes: Attributes,
    pub allowed: bool,
}

/// The role bindings and roles of the store, as JSON objects.
pub struct Policy<'a> {
    pub cluster_role_bindings: Vec<&'a Value>,
    pub role_bindings: Vec<(&'a str, &'a Value)>,
    pub cluster_roles: Vec<&'a Value>,
    pub roles: Vec<(&'a str, &'a Value)>,
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The groups every authenticated user (and every ServiceAccount) is in.
fn groups_of(user: &str) -> Vec<String> {
    let mut groups = vec!["system:authenticated".to_owned()];
    if let Some(rest) = user.strip_prefix("system:serviceaccount:") {
        groups.push("system:serviceaccounts".to_owned());
        if let Some((namespace, _)) = rest.split_once(':') {
            groups.push(format!("system:serviceaccounts:{namespace}"));
        }
    }
    groups
}

fn binds(binding: &Value, binding_namespace: &str, user: &str) -> bool {
    let groups = groups_of(user);
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|subject| {
            let text = |field: &str| subject.get(field).and_then(Value::as_str).unwrap_or("");
            match text("kind") {
                "User" => text("name") == user,
                "Group" => groups.iter().any(|g| g == text("name")),
                "ServiceAccount" => {
                    let namespace = match text("namespace") {
                        "" => binding_namespace,
                        namespace => namespace,
                    };
                    user == format!("system:serviceaccount:{namespace}:{}", text("name"))
                }
                _ => false,
            }
        })
}

fn rule_allows(rule: &Value, request: &Attributes) -> bool {
    let any_or = |values: &[String], wanted: &str| values.iter().any(|v| v == "*" || v == wanted);
    let resource = if request.subresource.is_empty() {
        request.resource.clone()
    } else {
        format!("{}/{}", request.resource, request.subresource)
    };
    let resources = strings(rule, "resources");
    let resource_matches = resources.iter().any(|r| {
        *r == "*"
            || *r == resource
            || (!request.subresource.is_empty()
                && (*r == format!("{}/*", request.resource)
                    || *r == format!("*/{}", request.subresource)))
    });
    let names = strings(rule, "resourceNames");
    any_or(&strings(rule, "verbs"), &request.verb)
        && any_or(&strings(rule, "apiGroups"), &request.group)
        && resource_matches
        && (names.is_empty() || names.contains(&request.name))
}

impl Policy<'_> {
    fn rules_of(&self, role_ref: &Value, namespace: &str) -> Vec<&Value> {
        let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
        let role = match kind {
            "ClusterRole" => self
                .cluster_roles
                .iter()
                .find(|r| name_of(r) == name)
                .copied(),
            "Role" => self
                .roles
                .iter()
                .find(|(ns, r)| *ns == namespace && name_of(r) == name)
                .map(|(_, r)| *r),
            _ => None,
        };
        role.and_then(|r| r.get("rules"))
            .and_then(Value::as_array)
            .map(|rules| rules.iter().collect())
            .unwrap_or_default()
    }

    /// Whether the bindings allow the request.
    pub fn allows(&self, request: &Attributes) -> bool {
        let cluster = self.cluster_role_bindings.iter().filter_map(|binding| {
            binds(binding, "", &request.user)
                .then(|| binding.get("roleRef").map(|r| (r, "")))
                .flatten()
        });
        let local = self
            .role_bindings
            .iter()
            .filter(|(ns, _)| !request.namespace.is_empty() && *ns == request.namespace)
            .filter_map(|(ns, binding)| {
                binds(binding, ns, &request.user)
                    .then(|| binding.get("roleRef").map(|r| (r, *ns)))
                    .flatten()
            });
        cluster.chain(local).any(|(role_ref, namespace)| {
            self.rules_of(role_ref, namespace)
                .into_iter()
                .any(|rule| rule_allows(rule, request))
        })
    }
}

/// The `403 Forbidden` kube-apiserver's authorizer returns.
pub fn forbidden(request: &Attributes) -> ApiError {
    let qualified = if request.group.is_empty() {
        request.resource.clone()
    } else {
        format!("{}.{}", request.resource, request.group)
    };
    let object = if request.name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{}\"", request.name)
    };
    let resource = if request.subresource.is_empty() {
        format!("resource \"{}\"", request.resource)
    } else {
        format!("resource \"{}/{}\"", request.resource, request.subresource)
    };
    let scope = if request.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", request.namespace)
    };
    ApiError::forbidden_about(
        &request.group,
        &request.resource,
        &request.name,
        format!(
            "{object} is forbidden: User \"{}\" cannot {} {resource} in API group \"{}\" {scope}",
            request.user, request.verb, request.group
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes(verb: &str, resource: &str, subresource: &str, namespace: &str) -> Attributes {
        Attributes {
            user: "system:serviceaccount:sys:ctl".into(),
            verb: verb.into(),
            group: "batch".into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: "x".into(),
        }
    }

    #[test]
    fn bindings_and_rules_decide() {
        let cluster_role = json!({"metadata": {"name": "r"}, "rules": [
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs/status"], "verbs": ["create", "get"]}
        ]});
        let role = json!({"metadata": {"name": "local"}, "rules": [
            {"apiGroups": ["*"], "resources": ["jobs/*"], "verbs": ["*"], "resourceNames": ["x"]}
        ]});
        let cluster_binding = json!({"roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "ctl", "namespace": "sys"}]});
        let role_binding = json!({"roleRef": {"kind": "Role", "name": "local"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:sys"}]});
        let policy = Policy {
            cluster_role_bindings: vec![&cluster_binding],
            role_bindings: vec![("team", &role_binding)],
            cluster_roles: vec![&cluster_role],
            roles: vec![("team", &role)],
        };
        assert!(policy.allows(&attributes("create", "jobs", "", "any")));
        assert!(!policy.allows(&attributes("delete", "jobs", "", "any")));
        assert!(!policy.allows(&attributes("get", "jobs", "status", "any")));
        assert!(policy.allows(&attributes("delete", "jobs", "status", "team")));
        assert!(!policy.allows(&attributes("delete", "jobs", "status", "other")));
        let mut stranger = attributes("create", "jobs", "", "any");
        stranger.user = "someone".into();
        assert!(!policy.allows(&stranger));
        let message = forbidden(&attributes("update", "tasks", "finalizers", "n")).message;
        assert_eq!(
            message,
            "tasks.batch \"x\" is forbidden: User \"system:serviceaccount:sys:ctl\" cannot update resource \"tasks/finalizers\" in API group \"batch\" in the namespace \"n\""
        );
    }
}
