//! The object store: every object, one global resourceVersion, the watch history, and the
//! write paths (create, update, patch, delete, garbage collection) with kube-apiserver's
//! semantics. All writes happen under one lock, so resourceVersions are strictly increasing
//! and every watcher sees every event in order.

mod admission;
mod crds;
mod deletion;
mod writes;

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
