//! Admission: who may do what (RBAC decisions, recorded) and the admission plugins' checks of owner references, as kube-apiserver runs them before a write.

use super::*;

impl State {
    /// Sets how requests are authorized and admitted.
    pub fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
    }

    /// Every authorization decision so far.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// Whether RBAC allows the request (always, when RBAC is off or for a superuser); the
    /// decision is logged either way.
    pub fn authorize(&mut self, attributes: Attributes) -> bool {
        // An empty user is the server itself (its garbage and namespace collectors).
        if !self.admission.rbac
            || attributes.user.is_empty()
            || self.admission.superusers.contains(&attributes.user)
        {
            return true;
        }
        let rbac_group = "rbac.authorization.k8s.io";
        let all = |plural: &str| -> Vec<(&str, &Value)> {
            self.objects
                .get(&storage_key(rbac_group, plural))
                .into_iter()
                .flatten()
                .map(|((ns, _), object)| (ns.as_str(), object))
                .collect()
        };
        let policy = rbac::Policy {
            cluster_role_bindings: all("clusterrolebindings")
                .into_iter()
                .map(|(_, o)| o)
                .collect(),
            role_bindings: all("rolebindings"),
            cluster_roles: all("clusterroles").into_iter().map(|(_, o)| o).collect(),
            roles: all("roles"),
        };
        let allowed = policy.allows(&attributes);
        self.decisions.push(Decision {
            attributes,
            allowed,
        });
        allowed
    }

    /// OwnerReferencesPermissionEnforcement, as kube-apiserver's `gc` admission plugin: an
    /// update that changes owner references needs `delete` on the object; an owner
    /// reference that newly sets `blockOwnerDeletion` needs `update` on the owner's
    /// `finalizers` subresource.
    pub(super) fn admit_owner_references(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        old: Option<&Value>,
        new: &Value,
        user: &str,
    ) -> Result<(), ApiError> {
        if !self.admission.owner_references || user.is_empty() {
            return Ok(());
        }
        let references = |object: Option<&Value>| -> Vec<Value> {
            object
                .and_then(|o| o.pointer("/metadata/ownerReferences"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (before, after) = (references(old), references(Some(new)));
        if before == after {
            return Ok(());
        }
        let name = text(new, "name").to_owned();
        let attributes =
            |verb: &str, group: &str, resource: &str, subresource: &str, name: &str| Attributes {
                user: user.to_owned(),
                verb: verb.to_owned(),
                group: group.to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            };
        let forbidden = |why: &str| {
            let qualified = if rt.group.is_empty() {
                rt.plural.clone()
            } else {
                format!("{}.{}", rt.plural, rt.group)
            };
            ApiError::forbidden_about(
                &rt.group,
                &rt.plural,
                &name,
                format!("{qualified} \"{name}\" is forbidden: {why}"),
            )
        };
        if old.is_some() && !self.authorize(attributes("delete", &rt.group, &rt.plural, "", &name))
        {
            return Err(forbidden(
                "cannot set an ownerRef on a resource you can't delete: , <nil>",
            ));
        }
        let blocking = |r: &Value| r.get("blockOwnerDeletion") == Some(&json!(true));
        for reference in after.iter().filter(|r| blocking(r)) {
            let uid = reference.get("uid");
            if before.iter().any(|b| blocking(b) && b.get("uid") == uid) {
                continue;
            }
            let api_version = reference
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = reference.get("kind").and_then(Value::as_str).unwrap_or("");
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let Some(owner_type) = self
                .types
                .iter()
                .find(|t| t.group == group && t.version == version && t.kind == kind)
                .cloned()
            else {
                return Err(forbidden(&format!(
                    "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}"
                )));
            };
            let owner = reference.get("name").and_then(Value::as_str).unwrap_or("");
            if !self.authorize(attributes(
                "update",
                &owner_type.group,
                &owner_type.plural,
                "finalizers",
                owner,
            )) {
                return Err(forbidden(
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>",
                ));
            }
        }
        Ok(())
    }
}
