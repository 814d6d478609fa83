//! Writes: create, update, patch (merge, strategic, JSON, apply), and the simulator's server-side writes, with resourceVersion conflicts, managed fields and generation.

use super::*;

impl State {
    /// POST: creates an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut body: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_kind(rt, &body)?;
        if !body.get("metadata").is_some_and(Value::is_object) {
            body["metadata"] = json!({});
        }
        let body_namespace = text(&body, "namespace").to_owned();
        if rt.namespaced {
            if !body_namespace.is_empty() && body_namespace != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            body["metadata"]["namespace"] = json!(namespace);
        } else if let Some(meta) = body["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        if text(&body, "name").is_empty() {
            let prefix = text(&body, "generateName").to_owned();
            if !prefix.is_empty() {
                let name = format!("{prefix}{}", self.rng.name_suffix());
                body["metadata"]["name"] = json!(name);
            }
        }
        let name = text(&body, "name").to_owned();
        let label_name = (rt.group.is_empty() && rt.kind == "Namespace") || (rt.group == "batch");
        let mut causes: Vec<Cause> = kubetask_validation::names::validate_name(&name, label_name)
            .into_iter()
            .collect();
        causes.extend(kubetask_validation::metadata::validate_metadata(&body));
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
        }
        self.check_namespace(rt, namespace)?;
        if self.stored(&rt.storage_key(), namespace, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        let uid = self.rng.uid();
        if let Some(meta) = body["metadata"].as_object_mut() {
            for field in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(field);
            }
            meta.insert("uid".into(), json!(uid));
            meta.insert("creationTimestamp".into(), json!(meta::now()));
            if rt.generation {
                meta.insert("generation".into(), json!(1));
            }
        }
        if rt.status_subresource
            && let Some(object) = body.as_object_mut()
        {
            object.remove("status");
        }
        let mut causes = kinds::admit_create(rt, &mut body);
        if let Some(schema) = &rt.schema {
            let (failed, pruned) = kubetask_validation::schema::admit(
                schema,
                rt.rules.as_ref().map(|r| r.0.as_ref()),
                &mut body,
                None,
            );
            strict_check(rt, options, &pruned)?;
            causes.extend(failed);
        }
        let crd_types = self.admit_crd(rt, &mut body, &mut causes);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
        }
        self.admit_owner_references(rt, namespace, None, &body, &options.user)?;
        if options.field_manager.is_empty() {
            apply::record_update(None, &mut body, &operation(rt, "", "unknown"));
        } else {
            apply::record_update(None, &mut body, &operation(rt, "", &options.field_manager));
        }
        if options.dry_run {
            return Ok(present(rt, &body));
        }
        let rv = self.next_rv();
        body["metadata"]["resourceVersion"] = json!(rv.to_string());
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind);
        self.uids
            .insert(uid, (rt.storage_key(), namespace.to_owned(), name.clone()));
        self.objects
            .entry(rt.storage_key())
            .or_default()
            .insert((namespace.to_owned(), name), body.clone());
        if let Some(types) = crd_types {
            self.register_crd(&body, types);
        }
        self.emit(Event {
            rv,
            storage_key: rt.storage_key(),
            namespace: namespace.to_owned(),
            event_type: EventType::Added,
            object: body.clone(),
            previous: None,
        });
        Ok(present(rt, &body))
    }

    /// PUT: replaces an object (or its status).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: &str,
        mut body: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_kind(rt, &body)?;
        if text(&body, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                text(&body, "name")
            )));
        }
        let old = self
            .stored(&rt.storage_key(), namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let sent_rv = text(&body, "resourceVersion").to_owned();
        if sent_rv.is_empty() && rt.crd.is_some() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![cause(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )],
            ));
        }
        if !sent_rv.is_empty() && sent_rv != text(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        body["metadata"]["namespace"] = old["metadata"]
            .get("namespace")
            .cloned()
            .unwrap_or(Value::Null);
        if !rt.namespaced
            && let Some(meta) = body["metadata"].as_object_mut()
        {
            meta.remove("namespace");
        }
        self.write(rt, &old, body, subresource, options)
    }

    /// PATCH: applies a patch to an object (or its status); server-side apply creates.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: &str,
        patch_type: PatchType,
        body: &Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let existing = self.stored(&rt.storage_key(), namespace, name).cloned();
        let Some(old) = existing else {
            if patch_type == PatchType::Apply && subresource.is_empty() {
                return self.apply_create(rt, namespace, name, body, options);
            }
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        // A core Event is patched in its core form (the body names `message`, `count`, ...)
        // and stored back in its events.k8s.io form.
        let mut new = if rt.is_core_event() {
            present(rt, &old)
        } else {
            old.clone()
        };
        match patch_type {
            PatchType::Merge => patch::merge_patch(&mut new, body),
            PatchType::Json => patch::apply_json_patch(&mut new, body).map_err(|e| {
                ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    vec![cause("FieldValueInvalid", "", e)],
                )
            })?,
            PatchType::Strategic => {
                if rt.crd.is_some() {
                    return Err(ApiError::unsupported_media_type(
                        "application/strategic-merge-patch+json",
                    ));
                }
                patch::strategic_merge(&mut new, body).map_err(ApiError::bad_request)?;
            }
            PatchType::Apply => {
                check_kind(rt, body)?;
                check_apply_name(body, name)?;
                let applied = restrict_to(rt, subresource, body);
                let op = operation(rt, subresource, &options.field_manager);
                new = apply::apply(
                    &old,
                    &applied,
                    &op,
                    options.force,
                    (&rt.group, &rt.plural, name),
                )?;
            }
        }
        if rt.is_core_event() {
            new = crate::events::from_core(&new);
            for field in ["apiVersion", "kind"] {
                new[field] = old.get(field).cloned().unwrap_or(Value::Null);
            }
        }
        if !new.get("metadata").is_some_and(Value::is_object) {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![cause(
                    "FieldValueInvalid",
                    "metadata",
                    "Invalid value: the patched object has no metadata object",
                )],
            ));
        }
        let sent_rv = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !sent_rv.is_empty() && sent_rv != text(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        // Identity fields cannot be patched.
        keep_metadata(
            &old,
            &mut new,
            &[
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "resourceVersion",
                "generation",
            ],
        );
        let managed = patch_type == PatchType::Apply;
        self.write_inner(rt, &old, new, subresource, options, managed)
    }

    pub(super) fn apply_create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        body: &Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_kind(rt, body)?;
        check_apply_name(body, name)?;
        let op = operation(rt, "", &options.field_manager);
        let mut applied = restrict_to(rt, "", body);
        applied["metadata"]["name"] = json!(name);
        let object = apply::apply(
            &json!({}),
            &applied,
            &op,
            true,
            (&rt.group, &rt.plural, name),
        )?;
        let managed = object.pointer("/metadata/managedFields").cloned();
        let mut created = self.create(
            rt,
            namespace,
            object,
            &WriteOptions {
                field_manager: String::new(),
                ..options.clone()
            },
        )?;
        // Keep the apply ownership (create records an Update entry otherwise).
        if let (Some(managed), false) = (managed, options.dry_run) {
            let key = (namespace.to_owned(), name.to_owned());
            if let Some(stored) = self
                .objects
                .get_mut(&rt.storage_key())
                .and_then(|o| o.get_mut(&key))
            {
                stored["metadata"]["managedFields"] = managed.clone();
            }
            created["metadata"]["managedFields"] = managed;
        }
        Ok(created)
    }

    pub(super) fn write(
        &mut self,
        rt: &ResourceType,
        old: &Value,
        new: Value,
        subresource: &str,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.write_inner(rt, old, new, subresource, options, false)
    }

    /// The common tail of update and patch: subresource rules, admission, generation,
    /// no-op detection, finalization.
    pub(super) fn write_inner(
        &mut self,
        rt: &ResourceType,
        old: &Value,
        mut new: Value,
        subresource: &str,
        options: &WriteOptions,
        managed_by_apply: bool,
    ) -> Result<Value, ApiError> {
        let name = text(old, "name").to_owned();
        let namespace = text(old, "namespace").to_owned();
        if subresource == "status" {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if managed_by_apply {
                merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
            }
            if merged["status"].is_null()
                && let Some(o) = merged.as_object_mut()
            {
                o.remove("status");
            }
            new = merged;
        } else if rt.status_subresource {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        keep_metadata(
            old,
            &mut new,
            &[
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ],
        );
        if !managed_by_apply {
            keep_metadata(old, &mut new, &["managedFields"]);
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        let mut causes = kubetask_validation::metadata::validate_metadata(&new);
        causes.extend(kinds::admit_update(rt, old, &mut new));
        if let Some(schema) = &rt.schema {
            let (failed, pruned) = kubetask_validation::schema::admit(
                schema,
                rt.rules.as_ref().map(|r| r.0.as_ref()),
                &mut new,
                Some(old),
            );
            strict_check(rt, options, &pruned)?;
            causes.extend(failed);
        }
        let crd_types = self.admit_crd(rt, &mut new, &mut causes);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
        }
        if subresource.is_empty() {
            self.admit_owner_references(rt, &namespace, Some(old), &new, &options.user)?;
        }
        if rt.generation && spec_changed(rt, old, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        } else if let Some(generation) = old["metadata"].get("generation") {
            new["metadata"]["generation"] = generation.clone();
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if !managed_by_apply {
            let manager = if options.field_manager.is_empty() {
                "unknown"
            } else {
                options.field_manager.as_str()
            };
            apply::record_update(Some(old), &mut new, &operation(rt, subresource, manager));
        }
        if same_but_managed_times(&new, old) {
            return Ok(present(rt, old));
        }
        if options.dry_run {
            return Ok(present(rt, &new));
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (namespace.clone(), name.clone());
        self.objects
            .entry(rt.storage_key())
            .or_default()
            .insert(key, new.clone());
        if let Some(types) = crd_types {
            self.register_crd(&new, types);
        }
        self.emit(Event {
            rv,
            storage_key: rt.storage_key(),
            namespace: namespace.clone(),
            event_type: EventType::Modified,
            object: new.clone(),
            previous: Some(old.clone()),
        });
        if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            self.remove(&rt.storage_key(), &namespace, &name);
        }
        Ok(present(rt, &new))
    }

    /// The stored object and its type, with `change` applied, unless it is absent or being
    /// deleted: what a server-side component (Job simulator, scheduler, kubelet) writes.
    pub(super) fn server_change(
        &self,
        key: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<(ResourceType, Value, Value)> {
        let rt = self.type_of_storage(key)?;
        let old = self.stored(key, namespace, name)?.clone();
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let mut new = old.clone();
        change(&mut new);
        Some((rt, old, new))
    }

    /// Writes a status computed by the server itself (the Job simulator).
    pub fn server_status_write(
        &mut self,
        key: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> bool {
        let Some((rt, old, new)) = self.server_change(key, namespace, name, change) else {
            return false;
        };
        let options = WriteOptions {
            field_manager: "job-controller".into(),
            ..Default::default()
        };
        self.write(&rt, &old, new, "status", &options).is_ok()
    }

    /// Like [`Self::server_status_write`], for the whole object (the scheduler binding a pod
    /// and the kubelet reporting its status): the object's own fields, then its status.
    pub fn server_write(
        &mut self,
        key: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> bool {
        let Some((rt, old, new)) = self.server_change(key, namespace, name, change) else {
            return false;
        };
        let options = WriteOptions {
            field_manager: "kubelet".into(),
            ..Default::default()
        };
        let status = new.get("status").cloned();
        let Ok(written) = self.write(&rt, &old, new, "", &options) else {
            return false;
        };
        let mut with_status = written.clone();
        match status {
            Some(status) => with_status["status"] = status,
            None => return true,
        }
        with_status == written
            || self
                .write(&rt, &written, with_status, "status", &options)
                .is_ok()
    }
}
