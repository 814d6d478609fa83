//! The HTTP front: authentication, request log, fault injection, routing, and the verbs
//! (watch streams included) on top of [`State`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::discovery;
use crate::error::ApiError;
use crate::faults::{self, FaultAction, Faults, RequestRecord};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::{DeleteOptions, Event, EventType, PatchType, State, WriteOptions, present};

pub type Body = BoxBody<Bytes, Infallible>;

/// The largest request body kube-apiserver reads (`--max-request-body-bytes`' default).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Server-wide settings the request path reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bearer token → user name. Empty: every request is `system:anonymous` and allowed.
    pub tokens: HashMap<String, String>,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// `host:port` for discovery documents.
    pub address: String,
}

/// Everything the connection handlers share.
pub struct Shared {
    pub state: Mutex<State>,
    pub faults: Mutex<Faults>,
    pub log: Mutex<Vec<RequestRecord>>,
    /// Tokens issued through `serviceaccounts/<name>/token` → the ServiceAccount's user.
    pub issued: Mutex<HashMap<String, String>>,
    /// The job simulator's container logs, by pod namespace and name (`pods/<name>/log`).
    pub pod_logs: Mutex<HashMap<(String, String), String>>,
    pub settings: Settings,
    pub shutdown: watch::Receiver<bool>,
}

/// The store's live events, for the controllers that run inside the server (the job
/// simulator, the namespace controller).
pub struct ServerEvents {
    events: broadcast::Receiver<Arc<Event>>,
    shutdown: watch::Receiver<bool>,
    consumer: &'static str,
}

impl ServerEvents {
    /// Events from now on, for `consumer` (named in the log if it falls behind).
    pub fn subscribe(shared: &Shared, consumer: &'static str) -> Self {
        Self {
            events: lock(&shared.state).subscribe(),
            shutdown: shared.shutdown.clone(),
            consumer,
        }
    }

    /// The next event, or none once the server shuts down. Events missed by falling behind
    /// are logged and skipped.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            let event = tokio::select! {
                event = self.events.recv() => event,
                _ = self.shutdown.changed() => return None,
            };
            match event {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        consumer = self.consumer,
                        "fell behind the server's events; some were skipped"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked (a test server keeps serving).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET pods/<name>/log`: the simulated container's log while the pod exists (`tailLines`
/// honoured; `follow` returns what there is and ends, as for a finished container).
fn pod_log(shared: &Shared, target: &Target, call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let key = (target.namespace.clone(), target.name.clone());
    let pod_exists = {
        let state = lock(&shared.state);
        state
            .find_type("", "v1", "pods")
            .is_some_and(|rt| state.get(&rt, &target.namespace, &target.name).is_ok())
    };
    let log = lock(&shared.pod_logs).get(&key).cloned();
    let (true, Some(log)) = (pod_exists, log) else {
        return Err(ApiError::not_found("", "pods", &target.name));
    };
    if let Some(container) = call.param("container")
        && container != "agent"
        && container != "tools"
    {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {}",
            target.name
        )));
    }
    let log = match call
        .param("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => {
            let lines: Vec<&str> = log.lines().collect();
            let mut tail = lines[lines.len().saturating_sub(n)..].join("\n");
            tail.push('\n');
            tail
        }
        None => log,
    };
    let mut response = Response::new(full(log));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_response(error.code, &error.status());
    if let Some(seconds) = error.details.retry_after_seconds
        && let Ok(value) = hyper::header::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// A request for a resource (as opposed to discovery).
#[derive(Debug, Default, Clone)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: String,
    name: String,
    subresource: String,
}

enum Route {
    Version,
    OpenApiIndex,
    OpenApi(String),
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Resource(Target),
    NotFound,
}

fn parse_route(path: &str) -> Route {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Route::Version,
        ["openapi", "v3"] => return Route::OpenApiIndex,
        ["openapi", "v3", rest @ ..] => return Route::OpenApi(rest.join("/")),
        ["healthz" | "readyz" | "livez", ..] => return Route::Health,
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", group] => return Route::Group((*group).to_owned()),
        ["api", version] => return Route::Resources(String::new(), (*version).to_owned()),
        ["apis", group, version] => {
            return Route::Resources((*group).to_owned(), (*version).to_owned());
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::NotFound,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, resource, tail @ ..]
            if !matches!(*resource, "status" | "finalize") =>
        {
            (*namespace, [&[*resource][..], tail].concat())
        }
        other => ("", other.to_vec()),
    };
    let mut target = Target {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    match rest.as_slice() {
        [plural] => target.plural = (*plural).to_owned(),
        [plural, name] => {
            target.plural = (*plural).to_owned();
            target.name = (*name).to_owned();
        }
        [plural, name, subresource] => {
            target.plural = (*plural).to_owned();
            target.name = (*name).to_owned();
            target.subresource = (*subresource).to_owned();
        }
        _ => return Route::NotFound,
    }
    Route::Resource(target)
}

fn verb_of(method: &Method, target: &Target, params: &HashMap<String, String>) -> &'static str {
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, target.name.is_empty()) {
        (&Method::GET, true) if watching => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        _ => "",
    }
}

fn authenticate(shared: &Shared, headers: &hyper::HeaderMap) -> Option<String> {
    if shared.settings.tokens.is_empty() {
        return Some("system:anonymous".into());
    }
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))?
        .trim();
    shared
        .settings
        .tokens
        .get(token)
        .cloned()
        .or_else(|| lock(&shared.issued).get(token).cloned())
}

/// Serves one HTTP request.
pub async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let user = authenticate(&shared, request.headers());
    let route = parse_route(&path);
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        user: user.clone().unwrap_or_else(|| "system:anonymous".into()),
        verb: String::new(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        code: 0,
        received: std::time::Instant::now(),
    };
    if let Route::Resource(target) = &route {
        record.verb = verb_of(&method, target, &params).to_owned();
        record.group = target.group.clone();
        record.version = target.version.clone();
        record.resource = target.plural.clone();
        record.subresource = target.subresource.clone();
        record.namespace = target.namespace.clone();
        record.name = target.name.clone();
    }
    let forbidden = match (&route, &user) {
        (Route::Resource(target), Some(user)) => {
            let attributes = crate::rbac::Attributes {
                user: user.clone(),
                verb: record.verb.clone(),
                group: target.group.clone(),
                resource: target.plural.clone(),
                subresource: target.subresource.clone(),
                namespace: target.namespace.clone(),
                name: target.name.clone(),
            };
            let allowed = lock(&shared.state).authorize(attributes.clone());
            (!allowed).then(|| crate::rbac::forbidden(&attributes))
        }
        _ => None,
    };
    let response = if user.is_none() {
        error_response(&ApiError::unauthorized())
    } else if let Some(forbidden) = forbidden {
        error_response(&forbidden)
    } else {
        let actions = lock(&shared.faults).decide(
            &record.user,
            &record.verb,
            &record.resource,
            &record.subresource,
        );
        let mut drop_after = None;
        let mut watch_lag = None;
        let mut injected = None;
        for action in &actions {
            match action {
                FaultAction::Latency(delay) => tokio::time::sleep(*delay).await,
                FaultAction::DropWatch { after } => drop_after = Some(*after),
                FaultAction::LagWatch(lag) => watch_lag = Some(*lag),
                other => injected = injected.or_else(|| faults::error_for(other)),
            }
        }
        match injected {
            Some(error) => error_response(&error),
            None => {
                let user_agent = request
                    .headers()
                    .get("user-agent")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("unknown")
                    .to_owned();
                let content_type = request
                    .headers()
                    .get("content-type")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let accept = request
                    .headers()
                    .get("accept")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let limited =
                    http_body_util::Limited::new(request.into_body(), MAX_REQUEST_BODY_BYTES);
                match limited.collect().await {
                    Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                        error_response(&ApiError::too_large(MAX_REQUEST_BODY_BYTES))
                    }
                    collected => {
                        let body = match collected {
                            Ok(collected) => collected.to_bytes(),
                            Err(error) => Bytes::from(error.to_string()),
                        };
                        let call = Call {
                            params: &params,
                            body: &body,
                            content_type: &content_type,
                            user_agent: &user_agent,
                            user: &record.user,
                            metadata_only: accept.contains("as=PartialObjectMetadata"),
                            table: accept.contains("as=Table"),
                            drop_after,
                            watch_lag,
                        };
                        match route {
                            Route::Resource(target) => {
                                serve_resource(&shared, &target, &record.verb, &call)
                            }
                            other => serve_discovery(&shared, other, &path),
                        }
                    }
                }
            }
        }
    };
    record.code = response.status().as_u16();
    lock(&shared.log).push(record);
    Ok(response)
}

fn serve_discovery(shared: &Shared, route: Route, path: &str) -> Response<Body> {
    let state = lock(&shared.state);
    let document = match route {
        Route::Version => Some(discovery::version()),
        Route::OpenApiIndex => Some(crate::openapi::index(
            state.types(),
            state.types_generation(),
        )),
        Route::OpenApi(key) => crate::openapi::document(state.types(), &key),
        Route::Health => return Response::new(full("ok")),
        Route::CoreVersions => Some(discovery::core_versions(&shared.settings.address)),
        Route::Groups => Some(discovery::groups(state.types())),
        Route::Group(group) => discovery::group(state.types(), &group),
        Route::Resources(group, version) => discovery::resources(state.types(), &group, &version),
        Route::Resource(_) | Route::NotFound => None,
    };
    match document {
        Some(document) => json_response(200, &document),
        None => error_response(&ApiError::custom(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )),
    }
}

/// The parts of a request the verbs read.
struct Call<'a> {
    params: &'a HashMap<String, String>,
    body: &'a Bytes,
    content_type: &'a str,
    user_agent: &'a str,
    /// The authenticated user.
    user: &'a str,
    /// `Accept: ...;as=PartialObjectMetadata[List]`: objects are served as their metadata.
    metadata_only: bool,
    /// `Accept: ...;as=Table`: a `meta.k8s.io/v1` Table, as `kubectl get` asks.
    table: bool,
    drop_after: Option<Duration>,
    /// Each live watch event is delivered this much late (`FaultAction::LagWatch`).
    watch_lag: Option<Duration>,
}

impl Call<'_> {
    /// `?includeObject=` of a Table request.
    fn include_object(&self) -> crate::table::IncludeObject {
        crate::table::IncludeObject::parse(self.param("includeObject"))
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        let media = self
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if media == crate::protobuf::MEDIA_TYPE {
            return crate::protobuf::decode(self.body);
        }
        if media.contains("protobuf") || media.contains("cbor") {
            // Clients (kubectl, client-go) fall back to JSON on 415.
            return Err(ApiError::unsupported_media_type(media));
        }
        if self.content_type.contains("yaml") {
            let text =
                std::str::from_utf8(self.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            return serde_yaml::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
        }
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }

    fn write_options(&self) -> WriteOptions {
        let manager = self
            .param("fieldManager")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                self.user_agent
                    .split('/')
                    .next()
                    .unwrap_or("unknown")
                    .to_owned()
            });
        WriteOptions {
            field_manager: manager,
            dry_run: self.param("dryRun") == Some("All"),
            force: self.param("force") == Some("true"),
            strict: self.param("fieldValidation") == Some("Strict"),
            user: self.user.to_owned(),
        }
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels = LabelSelector::parse(self.param("labelSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.param("fieldSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        Ok((labels, fields))
    }

    fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        let mut options = DeleteOptions {
            propagation: self.param("propagationPolicy").map(str::to_owned),
            dry_run: self.param("dryRun") == Some("All"),
            ..Default::default()
        };
        if !self.body.is_empty() {
            let body = self.json_body()?;
            if let Some(policy) = body.get("propagationPolicy").and_then(Value::as_str) {
                options.propagation = Some(policy.to_owned());
            }
            if body.get("orphanDependents") == Some(&json!(true)) {
                options.propagation = Some("Orphan".into());
            }
            options.precondition_uid = body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            options.precondition_rv = body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"))
            {
                options.dry_run = true;
            }
        }
        Ok(options)
    }
}

fn serve_resource(
    shared: &Arc<Shared>,
    target: &Target,
    verb: &str,
    call: &Call<'_>,
) -> Response<Body> {
    match dispatch(shared, target, verb, call) {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    target: &Target,
    verb: &str,
    call: &Call<'_>,
) -> Result<Response<Body>, ApiError> {
    let not_found = || {
        ApiError::custom(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let rt = lock(&shared.state)
        .find_type(&target.group, &target.version, &target.plural)
        .ok_or_else(not_found)?;
    let named = !target.name.is_empty();
    if (rt.namespaced && named && target.namespace.is_empty())
        || (!rt.namespaced && !target.namespace.is_empty())
    {
        return Err(not_found());
    }
    if target.subresource == "token" && rt.group.is_empty() && rt.kind == "ServiceAccount" {
        return issue_token(shared, target, verb, call);
    }
    if target.subresource == "log" && rt.group.is_empty() && rt.kind == "Pod" && verb == "get" {
        return pod_log(shared, target, call);
    }
    if !target.subresource.is_empty()
        && !(target.subresource == "status" && (rt.status_subresource || rt.crd.is_none()))
    {
        return Err(not_found());
    }
    let ns = target.namespace.as_str();
    let name = target.name.as_str();
    let sub = target.subresource.as_str();
    match verb {
        "get" => {
            let object = lock(&shared.state).get(&rt, ns, name)?;
            if call.table {
                let metadata =
                    json!({"resourceVersion": crate::meta::text(&object, "resourceVersion")});
                return Ok(json_response(
                    200,
                    &as_table(&rt, call.include_object(), &[object], metadata, true),
                ));
            }
            Ok(json_response(
                200,
                &as_requested(object, call.metadata_only),
            ))
        }
        "list" => {
            let (labels, fields) = call.selectors()?;
            let limit = call
                .param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let result = lock(&shared.state).list(
                &rt,
                ns,
                &labels,
                &fields,
                limit,
                call.param("continue"),
            )?;
            let mut metadata = json!({"resourceVersion": result.resource_version.to_string()});
            if let Some(token) = result.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(remaining) = result.remaining {
                metadata["remainingItemCount"] = json!(remaining);
            }
            let list = if call.table {
                as_table(&rt, call.include_object(), &result.items, metadata, true)
            } else if call.metadata_only {
                json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                    "items": result.items.into_iter().map(|o| as_requested(o, true)).collect::<Vec<_>>(),
                })
            } else {
                json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": metadata,
                    "items": result.items,
                })
            };
            Ok(json_response(200, &list))
        }
        "watch" => watch(shared, &rt, ns, call),
        "create" => {
            if named {
                return Err(ApiError::method_not_allowed(
                    "POST on a named resource is not supported",
                ));
            }
            let body = stored_form(&rt, call.json_body()?);
            let created = lock(&shared.state).create(&rt, ns, body, &call.write_options())?;
            Ok(json_response(201, &created))
        }
        "update" => {
            let body = stored_form(&rt, call.json_body()?);
            Ok(json_response(
                200,
                &lock(&shared.state).update(&rt, ns, name, sub, body, &call.write_options())?,
            ))
        }
        "patch" => {
            let media = call
                .content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            let patch_type = match media {
                "application/json-patch+json" => PatchType::Json,
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" => PatchType::Apply,
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let options = call.write_options();
            if patch_type == PatchType::Apply && call.param("fieldManager").is_none() {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager",
                ));
            }
            if patch_type != PatchType::Apply && call.param("force").is_some() {
                return Err(ApiError::bad_request(
                    "force is only allowed for server-side apply",
                ));
            }
            let body = call.json_body()?;
            let mut state = lock(&shared.state);
            let existed = state.get(&rt, ns, name).is_ok();
            let patched = state.patch(&rt, ns, name, sub, patch_type, &body, &options)?;
            Ok(json_response(if existed { 200 } else { 201 }, &patched))
        }
        "delete" => {
            let options = call.delete_options()?;
            let (code, object) = lock(&shared.state).delete(&rt, ns, name, &options)?;
            Ok(json_response(code, &object))
        }
        "deletecollection" => {
            let (labels, fields) = call.selectors()?;
            let options = call.delete_options()?;
            let items =
                lock(&shared.state).delete_collection(&rt, ns, &labels, &fields, &options)?;
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": {},
                    "items": items,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed("method not allowed")),
    }
}

/// `POST serviceaccounts/<name>/token` (`kubectl create token`): a token that authenticates
/// as the ServiceAccount from then on.
fn issue_token(
    shared: &Arc<Shared>,
    target: &Target,
    verb: &str,
    call: &Call<'_>,
) -> Result<Response<Body>, ApiError> {
    if verb != "create" {
        return Err(ApiError::method_not_allowed(
            "only create is allowed on serviceaccounts/token",
        ));
    }
    let mut request = call.json_body()?;
    let (token, expires) = {
        let mut state = lock(&shared.state);
        let rt = state
            .find_type("", "v1", "serviceaccounts")
            .ok_or_else(|| ApiError::internal("no ServiceAccount type"))?;
        state.get(&rt, &target.namespace, &target.name)?;
        (state.random_token(), crate::meta::now_plus(3600))
    };
    lock(&shared.issued).insert(
        token.clone(),
        format!("system:serviceaccount:{}:{}", target.namespace, target.name),
    );
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"]["name"] = json!(target.name);
    request["metadata"]["namespace"] = json!(target.namespace);
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(json_response(201, &request))
}

/// A written object as it is stored: a core Event in its events.k8s.io form.
fn stored_form(rt: &ResourceType, body: Value) -> Value {
    if rt.is_core_event() {
        crate::events::from_core(&body)
    } else {
        body
    }
}

/// Objects as a server-side Table (`kubectl get`); `headers: false` after a watch's first event.
fn as_table(
    rt: &ResourceType,
    include: crate::table::IncludeObject,
    objects: &[Value],
    metadata: Value,
    headers: bool,
) -> Value {
    if rt.is_core_event() {
        return crate::table::event_table(objects, include, metadata, headers);
    }
    let columns = match rt.printer_columns.as_deref() {
        Some(columns) => crate::table::Columns::Crd(columns),
        None => crate::table::Columns::Builtin(&rt.group, &rt.kind),
    };
    crate::table::table(columns, objects, include, metadata, headers)
}

/// An object as the client asked for it: whole, or as `PartialObjectMetadata`.
fn as_requested(object: Value, metadata_only: bool) -> Value {
    if !metadata_only {
        return object;
    }
    crate::meta::partial_object_metadata(&object)
}

/// What one watch stream filters on.
struct WatchFilter {
    rt: ResourceType,
    namespace: String,
    labels: LabelSelector,
    fields: FieldSelector,
    metadata_only: bool,
    /// `as=Table`: each event's object is a Table of one row (what `kubectl get -w` asks).
    table: Option<crate::table::IncludeObject>,
    /// Whether a Table with the column definitions was sent (only the first event has them).
    headers_sent: bool,
    /// Live events are held back this long each (`FaultAction::LagWatch`).
    lag: Option<Duration>,
}

impl WatchFilter {
    /// Sends a live event this watcher sees (held back by its lag, if any); false once the
    /// client is gone.
    async fn deliver(&mut self, event: &Event, tx: &mpsc::Sender<Bytes>) -> bool {
        let Some((event_type, object)) = self.view(event) else {
            return true;
        };
        if let Some(lag) = self.lag {
            tokio::time::sleep(lag).await;
        }
        tx.send(self.frame(event_type.as_str(), object))
            .await
            .is_ok()
    }

    /// One event's line, the object as the client asked for it.
    fn frame(&mut self, event_type: &str, object: Value) -> Bytes {
        let object = match self.table {
            Some(include) => {
                let metadata =
                    json!({"resourceVersion": crate::meta::text(&object, "resourceVersion")});
                let headers = !std::mem::replace(&mut self.headers_sent, true);
                as_table(&self.rt, include, &[object], metadata, headers)
            }
            None => as_requested(object, self.metadata_only),
        };
        frame(event_type, &object)
    }

    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event this watcher sees, if any (selector transitions become ADDED/DELETED).
    fn view(&self, event: &Event) -> Option<(EventType, Value)> {
        if event.storage_key != self.rt.storage_key()
            || (!self.namespace.is_empty() && event.namespace != self.namespace)
        {
            return None;
        }
        let now = self.matches(&event.object);
        let event_type = match (
            event.event_type,
            event.previous.as_ref().map(|p| self.matches(p)),
        ) {
            (EventType::Modified, Some(true)) if now => EventType::Modified,
            (EventType::Modified, Some(false)) if now => EventType::Added,
            (EventType::Modified, Some(true)) => EventType::Deleted,
            (EventType::Modified, _) => return None,
            (other, _) if now => other,
            _ => return None,
        };
        Some((event_type, present(&self.rt, &event.object)))
    }
}

fn frame(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    frame(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

fn watch(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    namespace: &str,
    call: &Call<'_>,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = call.selectors()?;
    let mut filter = WatchFilter {
        rt: rt.clone(),
        namespace: namespace.to_owned(),
        labels,
        fields,
        metadata_only: call.metadata_only,
        table: call.table.then(|| call.include_object()),
        headers_sent: false,
        lag: call.watch_lag,
    };
    let bookmarks = call.param("allowWatchBookmarks") == Some("true");
    let send_initial = call.param("sendInitialEvents") == Some("true");
    if send_initial && (!bookmarks || call.param("resourceVersionMatch") != Some("NotOlderThan")) {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![crate::error::cause(
                "FieldValueForbidden",
                "sendInitialEvents",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
            )],
        ));
    }
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let requested = call.param("resourceVersion").unwrap_or("0");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut frames: Vec<Bytes> = Vec::new();
    let (live, start_rv) = {
        let state = lock(&shared.state);
        let start_rv = state.resource_version();
        if send_initial || requested == "0" {
            for object in state.snapshot(rt, namespace, &filter.labels, &filter.fields) {
                frames.push(filter.frame("ADDED", object));
            }
            if send_initial {
                frames.push(bookmark(rt, start_rv, true));
            }
        } else {
            let from = requested.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {requested}"))
            })?;
            match state.events_since(from) {
                Ok(events) => {
                    for event in events {
                        if let Some((event_type, object)) = filter.view(&event) {
                            frames.push(filter.frame(event_type.as_str(), object));
                        }
                    }
                }
                Err(expired) => {
                    // kube-apiserver answers 200 and sends the 410 as an ERROR event.
                    frames.push(frame("ERROR", &expired.status()));
                    drop(state);
                    return Ok(stream_response(frames, None));
                }
            }
        }
        (state.subscribe(), start_rv)
    };
    let shared = shared.clone();
    let drop_after = call.drop_after;
    tokio::spawn(async move {
        for bytes in frames {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        pump(
            shared, filter, live, tx, start_rv, bookmarks, timeout, drop_after,
        )
        .await;
    });
    Ok(stream_response(Vec::new(), Some(rx)))
}

fn stream_response(frames: Vec<Bytes>, rx: Option<mpsc::Receiver<Bytes>>) -> Response<Body> {
    use futures_util::StreamExt as _;
    let head = futures_util::stream::iter(frames);
    let tail = futures_util::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        let next = rx.recv().await?;
        Some((next, Some(rx)))
    });
    let stream = head
        .chain(tail)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Forwards live events to one watcher until timeout, drop fault, shutdown or disconnect.
#[allow(clippy::too_many_arguments)]
async fn pump(
    shared: Arc<Shared>,
    mut filter: WatchFilter,
    mut live: broadcast::Receiver<std::sync::Arc<Event>>,
    tx: mpsc::Sender<Bytes>,
    mut last_rv: u64,
    bookmarks: bool,
    timeout: Duration,
    drop_after: Option<Duration>,
) {
    let mut shutdown = shared.shutdown.clone();
    let deadline = tokio::time::sleep(drop_after.unwrap_or(timeout).min(timeout));
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(shared.settings.bookmark_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    if event.rv <= last_rv {
                        continue;
                    }
                    last_rv = event.rv;
                    if !filter.deliver(&event, &tx).await {
                        return;
                    }
                }
                // Too slow to keep up: end the stream; the client resumes from its last
                // resourceVersion, which history still covers.
                Err(_) => return,
            },
            _ = ticker.tick(), if bookmarks => {
                let current = lock(&shared.state).resource_version();
                // Deliver everything up to `current` before promising it in a bookmark.
                loop {
                    match live.try_recv() {
                        Ok(event) => {
                            if event.rv > last_rv {
                                last_rv = event.rv;
                                if !filter.deliver(&event, &tx).await {
                                    return;
                                }
                            }
                            if event.rv >= current {
                                break;
                            }
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(_) => return,
                    }
                }
                let rv = last_rv.max(current);
                last_rv = rv;
                if tx.send(bookmark(&filter.rt, rv, false)).await.is_err() {
                    return;
                }
            },
            _ = &mut deadline => return,
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
