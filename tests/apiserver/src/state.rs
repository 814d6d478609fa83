//! The object store: every object, one global resourceVersion, the watch history, and the
//! write paths (create, update, patch, delete, garbage collection) with kube-apiserver's
//! semantics. All writes happen under one lock, so resourceVersions are strictly increasing
//! and every watcher sees every event in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::apply::{self, Operation};
use crate::error::{ApiError, Cause, cause};
use crate::kinds;
use crate::meta::{self, Rng, text};
use crate::patch;
use crate::rbac::{self, Attributes, Decision};
use crate::registry::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub storage_key: String,
    pub namespace: String,
    pub event_type: EventType,
    pub object: Value,
    /// The object before a modification (to turn selector transitions into ADDED/DELETED).
    pub previous: Option<Value>,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Options shared by the write verbs.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub field_manager: String,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being dropped.
    pub strict: bool,
    pub dry_run: bool,
    pub force: bool,
    /// Who writes (admission checks ask the authorizer about this user).
    pub user: String,
}

/// `DeleteOptions` that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// The result of a list call.
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

type Objects = BTreeMap<(String, String), Value>;

/// All server state.
pub struct State {
    types: Vec<ResourceType>,
    types_generation: u64,
    objects: HashMap<String, Objects>,
    uids: HashMap<String, (String, String, String)>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    compacted_rv: u64,
    events: broadcast::Sender<Arc<Event>>,
    rng: Rng,
    admission: Admission,
    /// Every authorization decision (requests and admission checks), in order.
    decisions: Vec<Decision>,
    /// Uids of removed owners whose dependents the garbage collector has not handled yet
    /// (asynchronous garbage collection only).
    garbage: Vec<String>,
}

/// The authorization and admission behaviour of a hardened cluster; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Authorize every request of a user not in `superusers` with RBAC.
    pub rbac: bool,
    /// Users that skip authorization (like members of `system:masters`).
    pub superusers: Vec<String>,
    /// The OwnerReferencesPermissionEnforcement admission plugin: setting
    /// `blockOwnerDeletion` needs `update` on the owner's `finalizers`, changing owner
    /// references of an existing object needs `delete` on it.
    pub owner_references: bool,
    /// Garbage collection some time after the owner is gone, in any order, by a background
    /// collector (like kube-controller-manager), instead of at once.
    pub async_gc: bool,
}

fn storage_key(group: &str, plural: &str) -> String {
    format!("{group}/{plural}")
}

impl State {
    /// A store with the built-in kinds and the standard namespaces.
    pub fn new(history_limit: usize, seed: u64) -> Self {
        let (events, _) = broadcast::channel(1 << 16);
        let mut state = Self {
            types: registry::builtins(),
            types_generation: 1,
            objects: HashMap::new(),
            uids: HashMap::new(),
            rv: 1000,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 1000,
            events,
            rng: Rng::new(seed),
            admission: Admission::default(),
            decisions: Vec::new(),
            garbage: Vec::new(),
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let rt = state.types[0].clone();
            if let Err(error) = state.create(&rt, "", namespace, &WriteOptions::default()) {
                tracing::error!(%error, "creating a standard namespace");
            }
        }
        state
    }

    /// A fresh bearer token (for `serviceaccounts/<name>/token`).
    pub fn random_token(&mut self) -> String {
        format!(
            "issued-{:016x}{:016x}",
            self.rng.next_u64(),
            self.rng.next_u64()
        )
    }

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
    fn admit_owner_references(
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

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Every served resource type.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Changes whenever the set of served types changes (OpenAPI document hashes).
    pub fn types_generation(&self) -> u64 {
        self.types_generation
    }

    /// The type served at `group/version/plural`.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    fn type_of_storage(&self, key: &str) -> Option<ResourceType> {
        self.types.iter().find(|t| t.storage_key() == key).cloned()
    }

    /// Subscribes to live events. Call with the lock held, after reading history.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The events after `rv`, or 410 Expired when history no longer reaches back that far.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        if rv < self.compacted_rv {
            return Err(ApiError::expired(rv, self.compacted_rv + 1));
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Drops all watch history up to now (tests: force a 410 on resumption).
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(&mut self, event: Event) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.events.send(event);
    }

    /// The object at `namespace/name`, presented at `rt`'s version.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rt.storage_key())
            .and_then(|o| o.get(&(namespace.to_owned(), name.to_owned())))
            .map(|o| present(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    fn stored(&self, key: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)
            .and_then(|o| o.get(&(namespace.to_owned(), name.to_owned())))
    }

    /// Lists objects (all namespaces when `namespace` is empty), paged by `limit`/`continue`.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListResult, ApiError> {
        let start = match continue_token {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let mut items = Vec::new();
        let mut last: Option<(&String, &String)> = None;
        let mut next = None;
        let mut remaining = 0;
        if let Some(objects) = self.objects.get(&rt.storage_key()) {
            let iter = objects.iter().filter(|((ns, name), _)| {
                (namespace.is_empty() || ns == namespace)
                    && start
                        .as_ref()
                        .is_none_or(|(sns, sname)| (ns, name) > (sns, sname))
            });
            for ((ns, name), object) in iter {
                if !labels.matches(object) || !fields.matches(object) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    if next.is_none() {
                        next = last.map(|(ns, name)| encode_continue(self.rv, ns, name));
                    }
                    remaining += 1;
                    continue;
                }
                items.push(present(rt, object));
                last = Some((ns, name));
            }
        }
        Ok(ListResult {
            items,
            resource_version: self.rv,
            continue_token: next,
            remaining: (remaining > 0).then_some(remaining),
        })
    }

    /// Every object of a type in a namespace (all when empty) matching the selectors, for a
    /// watch's initial events.
    pub fn snapshot(
        &self,
        rt: &ResourceType,
        namespace: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .get(&rt.storage_key())
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((ns, _), o)| {
                        (namespace.is_empty() || ns == namespace)
                            && labels.matches(o)
                            && fields.matches(o)
                    })
                    .map(|(_, o)| present(rt, o))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_namespace(&self, rt: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        match self.stored(&storage_key("", "namespaces"), "", namespace) {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some(ns) if ns.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    rt.plural,
                    text(ns, "name")
                )))
            }
            Some(_) => Ok(()),
        }
    }

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

    fn admit_crd(
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

    fn register_crd(&mut self, crd: &Value, types: Vec<ResourceType>) {
        let name = text(crd, "name").to_owned();
        self.types
            .retain(|t| t.crd.as_deref() != Some(name.as_str()));
        self.types.extend(types);
        self.types_generation = self.rv;
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

    fn apply_create(
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

    fn write(
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
    fn write_inner(
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
    fn server_change(
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

    fn delete_by_key(&mut self, key: &str, namespace: &str, name: &str, policy: &str) {
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
    fn remove(&mut self, key: &str, namespace: &str, name: &str) -> Option<Value> {
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

    fn unregister_crd(&mut self, crd: &Value) {
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

    fn dependents_of(&self, uid: &str) -> Vec<(String, String, String)> {
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
    fn collect_garbage(&mut self, uid: &str) {
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

    fn orphan_dependents(&mut self, uid: &str) {
        for (key, ns, name) in self.dependents_of(uid) {
            self.drop_owner_reference(&key, &ns, &name, uid);
        }
    }

    fn drop_owner_reference(&mut self, key: &str, namespace: &str, name: &str, uid: &str) {
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

    fn release_foreground(&mut self, owner_uid: &str) {
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

    fn namespace_is_empty(&self, namespace: &str) -> bool {
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

/// Sets `metadata.<field>` of `new` to what it is in `old` (absent when absent there), for
/// fields a request may not change.
fn keep_metadata(old: &Value, new: &mut Value, fields: &[&str]) {
    for field in fields {
        match old["metadata"].get(*field) {
            Some(value) => new["metadata"][*field] = value.clone(),
            None => {
                if let Some(meta) = new["metadata"].as_object_mut() {
                    meta.remove(*field);
                }
            }
        }
    }
}

/// An applied configuration may omit `metadata.name` (the URL names the object), but may not
/// name another object.
fn check_apply_name(body: &Value, name: &str) -> Result<(), ApiError> {
    let sent = text(body, "name");
    if sent.is_empty() || sent == name {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the name of the object ({sent}) does not match the name on the URL ({name})"
        )))
    }
}

/// `fieldValidation=Strict` refuses what pruning would silently drop.
fn strict_check(
    rt: &ResourceType,
    options: &WriteOptions,
    pruned: &[String],
) -> Result<(), ApiError> {
    if !options.strict || pruned.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = pruned
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
        rt.kind,
        rt.version,
        rt.kind,
        fields.join(", ")
    )))
}

fn operation(rt: &ResourceType, subresource: &str, manager: &str) -> Operation {
    Operation {
        manager: manager.to_owned(),
        subresource: subresource.to_owned(),
        api_version: rt.api_version(),
        time: meta::now(),
    }
}

/// Whether two objects differ in nothing but the times of their `managedFields` entries
/// (such a write is a no-op: no new resourceVersion, no event).
fn same_but_managed_times(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if a.len() != b.len()
        || a.iter()
            .any(|(k, v)| k != "metadata" && b.get(k) != Some(v))
    {
        return false;
    }
    let (Some(ma), Some(mb)) = (
        a.get("metadata").and_then(Value::as_object),
        b.get("metadata").and_then(Value::as_object),
    ) else {
        return a.get("metadata") == b.get("metadata");
    };
    if ma.len() != mb.len()
        || ma
            .iter()
            .any(|(k, v)| k != "managedFields" && mb.get(k) != Some(v))
    {
        return false;
    }
    let entries = |m: &Map<String, Value>| {
        m.get("managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (ea, eb) = (entries(ma), entries(mb));
    ea.len() == eb.len()
        && ea
            .iter()
            .zip(&eb)
            .all(|(x, y)| match (x.as_object(), y.as_object()) {
                (Some(x), Some(y)) => {
                    x.len() == y.len() && x.iter().all(|(k, v)| k == "time" || y.get(k) == Some(v))
                }
                _ => x == y,
            })
}

fn spec_changed(rt: &ResourceType, old: &Value, new: &Value) -> bool {
    let ignored: &[&str] = if rt.status_subresource {
        &["metadata", "status"]
    } else {
        &["metadata"]
    };
    !kubetask_validation::metadata::equal_except(old, new, ignored)
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The object as served at `rt`'s version.
pub fn present(rt: &ResourceType, object: &Value) -> Value {
    let mut copy = if rt.is_core_event() {
        crate::events::to_core(object)
    } else {
        object.clone()
    };
    copy["apiVersion"] = json!(rt.api_version());
    copy["kind"] = json!(rt.kind);
    copy
}

/// Checks a body's `apiVersion`/`kind` against the endpoint.
fn check_kind(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if (!kind.is_empty() && kind != rt.kind)
        || (!api_version.is_empty() && api_version != rt.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

/// The part of an applied configuration a request may set: status only on `/status`,
/// everything but status on the main resource of a type with a status subresource.
fn restrict_to(rt: &ResourceType, subresource: &str, body: &Value) -> Value {
    let mut applied = body.clone();
    if let Some(object) = applied.as_object_mut() {
        if subresource == "status" {
            object
                .retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
            }
        } else if rt.status_subresource {
            object.remove("status");
        }
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
        }
    }
    applied
}

fn encode_continue(rv: u64, namespace: &str, name: &str) -> String {
    use base64::Engine as _;
    let raw = json!({"rv": rv, "ns": namespace, "last": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The key of the last item of the previous page.
fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let ns = value.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let last = value.get("last").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((ns.to_owned(), last.to_owned()))
}
