//! CustomResourceDefinitions: admitting one (structural schema, CEL rules within the cost budget) and serving or retiring its types.

use super::*;

impl State {
    pub(super) fn admit_crd(
        &self,
        rt: &ResourceType,
        body: &mut Value,
        causes: &mut Vec<Cause>,
    ) -> Option<Vec<ResourceType>> {
        if rt.group != "apiextensions.k8s.io" {
            return None;
        }
        match registry::from_crd(body) {
            Err(message) => {
                let (field, message) = message.split_once(": ").unwrap_or(("", &message));
                causes.push(cause("FieldValueInvalid", field, message));
                None
            }
            Ok(types) => {
                // Its rules as kube-apiserver judges them (fieldPaths, the CEL cost budget),
                // refused in the server's own words.
                let refused = kubetask_validation::crd_rules::check_crd(body);
                if !refused.is_empty() {
                    causes.extend(refused);
                    return None;
                }
                let crd_name = text(body, "name").to_owned();
                for t in &types {
                    let taken = self.types.iter().any(|o| {
                        o.group == t.group
                            && o.plural == t.plural
                            && o.crd.as_deref() != Some(crd_name.as_str())
                    });
                    if taken {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.names.plural",
                            format!("Invalid value: \"{}\": already served", t.plural),
                        ));
                    }
                }
                let names = body.pointer("/spec/names").cloned().unwrap_or_default();
                let stored: Vec<Value> = body
                    .pointer("/spec/versions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned())
                    .collect();
                let now = meta::now();
                body["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": stored,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                    ],
                });
                Some(types)
            }
        }
    }

    pub(super) fn register_crd(&mut self, crd: &Value, types: Vec<ResourceType>) {
        let name = text(crd, "name").to_owned();
        self.types
            .retain(|t| t.crd.as_deref() != Some(name.as_str()));
        self.types.extend(types);
        self.types_generation = self.rv;
    }

    pub(super) fn unregister_crd(&mut self, crd: &Value) {
        let name = text(crd, "name").to_owned();
        let Some(rt) = self
            .types
            .iter()
            .find(|t| t.crd.as_deref() == Some(name.as_str()))
            .cloned()
        else {
            return;
        };
        let keys: Vec<(String, String)> = self
            .objects
            .get(&rt.storage_key())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, object) in keys {
            self.remove(&rt.storage_key(), &ns, &object);
        }
        self.types
            .retain(|t| t.crd.as_deref() != Some(name.as_str()));
        self.types_generation = self.rv;
    }
}
