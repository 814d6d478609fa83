//! Deletion and garbage collection: finalizers, graceful deletion, foreground/background/orphan propagation, collections, and namespaces emptied before they go.

use super::*;

impl State {
    /// DELETE: deletes an object, honoring finalizers and the propagation policy.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let old = self
            .stored(&rt.storage_key(), namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(uid) = &options.precondition_uid
            && uid != text(&old, "uid")
        {
            return Err(ApiError::custom(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    rt.plural,
                    text(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = &options.precondition_rv
            && rv != text(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if options.dry_run {
            return Ok((200, present(rt, &old)));
        }
        let default_policy = if rt.group == "batch" && rt.kind == "Job" {
            "Orphan"
        } else {
            "Background"
        };
        let policy = options
            .propagation
            .clone()
            .unwrap_or_else(|| default_policy.to_owned());
        if !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![cause(
                    "FieldValueNotSupported",
                    "propagationPolicy",
                    format!(
                        "Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                )],
            ));
        }
        let uid = text(&old, "uid").to_owned();
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
        }
        let is_namespace = rt.group.is_empty() && rt.kind == "Namespace";
        let mut extra_finalizers: Vec<&str> = Vec::new();
        if policy == "Foreground" && !self.dependents_of(&uid).is_empty() {
            extra_finalizers.push("foregroundDeletion");
        }
        if finalizers(&old).is_empty() && extra_finalizers.is_empty() && !is_namespace {
            let deleted = self.remove(&rt.storage_key(), namespace, name);
            return Ok((200, present(rt, &deleted.unwrap_or(old))));
        }
        let mut marked = old.clone();
        if old.pointer("/metadata/deletionTimestamp").is_none() {
            marked["metadata"]["deletionTimestamp"] = json!(meta::now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if rt.generation {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                marked["metadata"]["generation"] = json!(generation);
            }
        }
        for finalizer in &extra_finalizers {
            let list = marked["metadata"]
                .as_object_mut()
                .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
            if let Some(Value::Array(list)) = list
                && !list.iter().any(|f| f == finalizer)
            {
                list.push(json!(finalizer));
            }
        }
        if is_namespace {
            marked["status"] = json!({"phase": "Terminating"});
        }
        let rv = self.next_rv();
        marked["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects
            .entry(rt.storage_key())
            .or_default()
            .insert((namespace.to_owned(), name.to_owned()), marked.clone());
        self.emit(Event {
            rv,
            storage_key: rt.storage_key(),
            namespace: namespace.to_owned(),
            event_type: EventType::Modified,
            object: marked.clone(),
            previous: Some(old),
        });
        if policy == "Foreground" {
            for (key, ns, dependent) in self.dependents_of(&uid) {
                self.delete_by_key(&key, &ns, &dependent, "Foreground");
            }
            self.release_foreground(&uid);
        }
        let now = self.stored(&rt.storage_key(), namespace, name).cloned();
        Ok(match now {
            Some(object) => (202, present(rt, &object)),
            None => (200, present(rt, &marked)),
        })
    }

    pub(super) fn delete_by_key(&mut self, key: &str, namespace: &str, name: &str, policy: &str) {
        if let Some(rt) = self.type_of_storage(key) {
            let options = DeleteOptions {
                propagation: Some(policy.to_owned()),
                ..Default::default()
            };
            if let Err(error) = self.delete(&rt, namespace, name, &options) {
                tracing::debug!(%error, "cascading delete");
            }
        }
    }

    /// DELETE on a collection: deletes every matching object, returns them.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
        options: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let targets: Vec<(String, String)> = self
            .objects
            .get(&rt.storage_key())
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((ns, _), o)| {
                        (namespace.is_empty() || ns == namespace)
                            && labels.matches(o)
                            && fields.matches(o)
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut deleted = Vec::new();
        for (ns, name) in targets {
            let (_, object) = self.delete(rt, &ns, &name, options)?;
            deleted.push(object);
        }
        Ok(deleted)
    }

    /// Removes an object from storage and runs what follows: DELETED event, CRD
    /// unregistration, garbage collection, foreground and namespace completion.
    pub(super) fn remove(&mut self, key: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .get_mut(key)?
            .remove(&(namespace.to_owned(), name.to_owned()))?;
        let uid = text(&object, "uid").to_owned();
        self.uids.remove(&uid);
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(Event {
            rv,
            storage_key: key.to_owned(),
            namespace: namespace.to_owned(),
            event_type: EventType::Deleted,
            object: object.clone(),
            previous: None,
        });
        if key == storage_key("apiextensions.k8s.io", "customresourcedefinitions") {
            self.unregister_crd(&object);
        }
        if self.admission.async_gc {
            self.garbage.push(uid);
        } else {
            self.collect_garbage(&uid);
        }
        // A dependent that blocked its owner's foreground deletion is gone.
        for owner in owner_uids(&object) {
            self.release_foreground(&owner);
        }
        if !namespace.is_empty() {
            let terminating = self
                .stored(&storage_key("", "namespaces"), "", namespace)
                .is_some_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_some());
            if terminating && self.namespace_is_empty(namespace) {
                self.remove(&storage_key("", "namespaces"), "", namespace);
            }
        }
        Some(object)
    }

    pub(super) fn dependents_of(&self, uid: &str) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for (key, objects) in &self.objects {
            for ((ns, name), object) in objects {
                if owner_uids(object).iter().any(|o| o == uid) {
                    found.push((key.clone(), ns.clone(), name.clone()));
                }
            }
        }
        found
    }

    /// Background garbage collection: dependents of a removed owner are deleted when no
    /// other owner of theirs exists, otherwise the dangling reference is removed.
    pub(super) fn collect_garbage(&mut self, uid: &str) {
        for (key, ns, name) in self.dependents_of(uid) {
            let Some(dependent) = self.stored(&key, &ns, &name).cloned() else {
                continue;
            };
            let live_owner = owner_uids(&dependent)
                .iter()
                .any(|o| o != uid && self.uids.contains_key(o));
            if live_owner {
                self.drop_owner_reference(&key, &ns, &name, uid);
            } else {
                self.delete_by_key(&key, &ns, &name, "Background");
            }
        }
    }

    /// One round of the asynchronous garbage collector: handles up to `budget` dependents of
    /// removed owners, picked at random (so in no particular order). Returns how many it
    /// handled.
    pub fn collect_some_garbage(&mut self, budget: usize) -> usize {
        let mut handled = 0;
        while handled < budget && !self.garbage.is_empty() {
            let pick = (self.rng.next_u64() % self.garbage.len() as u64) as usize;
            let owner = self.garbage[pick].clone();
            let dependents: Vec<(String, String, String)> = self
                .dependents_of(&owner)
                .into_iter()
                .filter(|(key, ns, name)| {
                    self.stored(key, ns, name)
                        .is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_none())
                })
                .collect();
            if dependents.is_empty() {
                self.garbage.swap_remove(pick);
                continue;
            }
            let (key, ns, name) =
                dependents[(self.rng.next_u64() % dependents.len() as u64) as usize].clone();
            let Some(dependent) = self.stored(&key, &ns, &name).cloned() else {
                continue;
            };
            let live_owner = owner_uids(&dependent)
                .iter()
                .any(|o| *o != owner && self.uids.contains_key(o));
            if live_owner {
                self.drop_owner_reference(&key, &ns, &name, &owner);
            } else {
                self.delete_by_key(&key, &ns, &name, "Background");
            }
            handled += 1;
        }
        handled
    }

    pub(super) fn orphan_dependents(&mut self, uid: &str) {
        for (key, ns, name) in self.dependents_of(uid) {
            self.drop_owner_reference(&key, &ns, &name, uid);
        }
    }

    pub(super) fn drop_owner_reference(
        &mut self,
        key: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) {
        let Some(rt) = self.type_of_storage(key) else {
            return;
        };
        let Some(old) = self.stored(key, namespace, name).cloned() else {
            return;
        };
        let mut new = old.clone();
        if let Some(Value::Array(refs)) = new.pointer_mut("/metadata/ownerReferences") {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            if refs.is_empty()
                && let Some(meta) = new["metadata"].as_object_mut()
            {
                meta.remove("ownerReferences");
            }
        }
        let options = WriteOptions {
            field_manager: "kube-controller-manager".into(),
            ..Default::default()
        };
        if let Err(error) = self.write(&rt, &old, new, "", &options) {
            tracing::debug!(%error, "removing an owner reference");
        }
    }

    pub(super) fn release_foreground(&mut self, owner_uid: &str) {
        let Some((key, ns, name)) = self.uids.get(owner_uid).cloned() else {
            return;
        };
        let Some(owner) = self.stored(&key, &ns, &name).cloned() else {
            return;
        };
        if !finalizers(&owner).iter().any(|f| f == "foregroundDeletion") {
            return;
        }
        let blocked = self.dependents_of(owner_uid).iter().any(|(k, n, d)| {
            self.stored(k, n, d).is_some_and(|o| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(owner_uid)
                            && r.get("blockOwnerDeletion") == Some(&json!(true))
                    })
            })
        });
        if blocked {
            return;
        }
        let Some(rt) = self.type_of_storage(&key) else {
            return;
        };
        let mut new = owner.clone();
        if let Some(Value::Array(list)) = new.pointer_mut("/metadata/finalizers") {
            list.retain(|f| f != "foregroundDeletion");
        }
        let options = WriteOptions {
            field_manager: "kube-controller-manager".into(),
            ..Default::default()
        };
        if let Err(error) = self.write(&rt, &owner, new, "", &options) {
            tracing::debug!(%error, "releasing a foreground deletion");
        }
    }

    pub(super) fn namespace_is_empty(&self, namespace: &str) -> bool {
        self.objects
            .values()
            .all(|objects| objects.keys().all(|(ns, _)| ns != namespace))
    }

    /// The namespace controller's work: delete everything in a terminating namespace, then
    /// the namespace once it is empty.
    pub fn empty_namespace(&mut self, namespace: &str) {
        let terminating = self
            .stored(&storage_key("", "namespaces"), "", namespace)
            .is_some_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_some());
        if !terminating {
            return;
        }
        let mut targets = Vec::new();
        for (key, objects) in &self.objects {
            for (ns, name) in objects.keys() {
                if ns == namespace {
                    targets.push((key.clone(), ns.clone(), name.clone()));
                }
            }
        }
        for (key, ns, name) in targets {
            self.delete_by_key(&key, &ns, &name, "Background");
        }
        if self.namespace_is_empty(namespace) {
            self.remove(&storage_key("", "namespaces"), "", namespace);
        }
    }
}
