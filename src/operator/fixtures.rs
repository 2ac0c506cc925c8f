//! Test fixtures for the reconcile loop, after kube-rs/controller-rs: a mock API
//! server on a tower-test service, and named scenarios that set up what the
//! cluster holds before a pass. `berth enable` and `disable` (src/install) are
//! tested on the same mock, with their own field manager.
//!
//! The mock is a small in-memory API server rather than a script of expected
//! requests: it answers GET (an object, or a list), server-side apply, merge
//! patch, create, DELETE (a namespace takes what is in it) and event POSTs on the
//! paths kube builds, logs every request with its body, and plays the
//! controllers a pass waits for (a Deployment's pods become ready, a claim gets
//! bound, a CRD is established). Tests then assert on what the cluster holds,
//! which does not break when a pass reads one more object.

use super::crd::{Registry, RegistrySpec, SecretKeyRef, User};
use super::hosting::FINALIZER;
use super::htpasswd::LineCache;
use super::metrics::Metrics;
use super::reconcile::{Context, reconcile};
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const NAMESPACE: &str = "dev";
pub const NAME: &str = "cache";
pub const UID: &str = "0b6f1c1a-0000-4000-8000-00000000cafe";

/// The path of an object, as kube requests it.
pub fn path(api: &str, plural: &str, name: &str) -> String {
    let prefix = if api == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{api}")
    };
    format!("{prefix}/namespaces/{NAMESPACE}/{plural}/{name}")
}

pub fn registry_path() -> String {
    path("berth.dev/v1alpha1", "registries", NAME)
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// A test's hook on the mock: it sees `METHOD path` and may change the cluster.
pub type BeforeRequest = Box<dyn FnMut(&mut Cluster, &str) + Send>;

/// The state the mock API server holds, shared with the test.
pub struct Cluster {
    /// Objects by path.
    pub objects: BTreeMap<String, Value>,
    /// `METHOD path` of every request, in order.
    pub log: Vec<String>,
    /// Every request with its query and body, in order.
    pub requests: Vec<Logged>,
    /// The field manager every server-side apply must name (and force).
    pub field_manager: &'static str,
    /// Reasons of the events posted.
    pub events: Vec<String>,
    /// Requests to paths starting with the prefix are refused with the status
    /// (403 as without RBAC, 422 as for an object the server will not accept).
    pub refuse: Option<(String, StatusCode)>,
    /// When set, the Registry kind exists only while its CRD object does: until
    /// then its paths get what a real API server answers for a resource type it
    /// does not serve, a plain-text `404 page not found`, not a Status.
    pub registries_need_crd: bool,
    /// How many GETs a deleted namespace answers Terminating before it is gone
    /// (0: gone at once). While it is, creating in it is refused as the
    /// NamespaceLifecycle admission plugin does.
    pub namespace_deletion_polls: u32,
    /// Called with `METHOD path` before each request is served, to change the
    /// cluster at a chosen moment (what another client would do meanwhile).
    pub before_request: Option<BeforeRequest>,
    /// Namespaces being deleted, with the GETs each answers before it goes.
    terminating: BTreeMap<String, u32>,
    /// The cluster's controllers do nothing: a Deployment's pods never become
    /// ready and a claim stays Pending (what the pods and the claim say is
    /// then up to the test).
    pub stalled: bool,
    next_resource_version: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            objects: BTreeMap::new(),
            log: Vec::new(),
            requests: Vec::new(),
            field_manager: super::FIELD_MANAGER,
            events: Vec::new(),
            refuse: None,
            registries_need_crd: false,
            namespace_deletion_polls: 0,
            before_request: None,
            terminating: BTreeMap::new(),
            stalled: false,
            next_resource_version: 0,
        }
    }
}

impl Cluster {
    /// The requests that change something (not GET), as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Where request `METHOD path` first comes among the requests from the
    /// `from`th on, to assert the order of two writes.
    pub fn position(&self, from: usize, request: &str) -> usize {
        let since: Vec<String> = self.requests[from..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        since
            .iter()
            .position(|r| r == request)
            .unwrap_or_else(|| panic!("no {request} in {since:?}"))
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        self.objects.get(path)
    }

    pub fn insert(&mut self, path: String, mut object: Value) {
        self.next_resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.next_resource_version.to_string());
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
        self.objects.insert(path, object);
    }

    /// Marks namespace `name` as being deleted, as a DELETE does: it answers
    /// Terminating for `polls` GETs, then it and its content are gone.
    pub fn start_deleting_namespace(&mut self, name: &str, polls: u32) {
        let path = format!("/api/v1/namespaces/{name}");
        let Some(mut namespace) = self.objects.get(&path).cloned() else {
            return;
        };
        namespace["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        namespace["spec"] = json!({"finalizers": ["kubernetes"]});
        namespace["status"] = json!({"phase": "Terminating"});
        self.insert(path, namespace);
        self.terminating.insert(name.to_string(), polls);
    }

    /// Removes a namespace and everything in it.
    fn remove_namespace(&mut self, name: &str) {
        self.terminating.remove(name);
        self.objects.remove(&format!("/api/v1/namespaces/{name}"));
        let inside = format!("/namespaces/{name}/");
        self.objects.retain(|key, _| !key.contains(&inside));
    }

    /// Whether a request with this method reached this path.
    pub fn requested(&self, method: &str, path: &str) -> bool {
        self.log.iter().any(|l| *l == format!("{method} {path}"))
    }

    pub fn registry(&self) -> Registry {
        serde_json::from_value(self.objects[&registry_path()].clone()).expect("a Registry")
    }
}

/// Named starting points of the reconcile tests.
pub enum Scenario {
    /// A new Registry (with its finalizer already on) and nothing else.
    Fresh(RegistrySpec),
    /// A Registry whose children a first pass made, with the claim at `size`.
    Existing {
        spec: RegistrySpec,
        claim_size: String,
    },
}

/// A Registry as the API server hands it to the controller.
pub fn registry(spec: RegistrySpec) -> Registry {
    let mut registry = Registry::new(NAME, spec);
    registry.metadata.namespace = Some(NAMESPACE.into());
    registry.metadata.uid = Some(UID.into());
    registry.metadata.generation = Some(1);
    registry.metadata.resource_version = Some("1".into());
    registry.metadata.finalizers = Some(vec![FINALIZER.into()]);
    registry
}

/// A spec with one user, alice, whose password is key `password` of Secret
/// `alice-pw`.
pub fn alice() -> RegistrySpec {
    let mut spec = RegistrySpec::default();
    spec.auth.users = vec![User {
        name: "alice".into(),
        password_secret_ref: SecretKeyRef {
            name: "alice-pw".into(),
            key: "password".into(),
        },
    }];
    spec
}

/// A test context on the mock API server, and the cluster behind it; the
/// operator runs with BERTH_IMAGE set.
pub fn context(scenario: Scenario) -> (Arc<Context>, Arc<Mutex<Cluster>>) {
    context_with_image(scenario, Some("ghcr.io/berth/berth:test"))
}

pub fn context_with_image(
    scenario: Scenario,
    operator_image: Option<&str>,
) -> (Arc<Context>, Arc<Mutex<Cluster>>) {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    {
        let mut c = cluster.lock().unwrap();
        let (spec, claim_size) = match scenario {
            Scenario::Fresh(spec) => (spec, None),
            Scenario::Existing { spec, claim_size } => (spec, Some(claim_size)),
        };
        c.insert(
            registry_path(),
            serde_json::to_value(registry(spec)).unwrap(),
        );
        c.insert(
            "/apis/storage.k8s.io/v1/storageclasses/standard".into(),
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                   "metadata": {"name": "standard"}, "provisioner": "test",
                   "allowVolumeExpansion": false}),
        );
        if let Some(size) = claim_size {
            c.insert(
                path("v1", "persistentvolumeclaims", "cache-data"),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                       "metadata": {"name": "cache-data", "namespace": NAMESPACE},
                       "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                                "resources": {"requests": {"storage": size}}},
                       "status": {"phase": "Bound", "capacity": {"storage": size}}}),
            );
        }
    }

    let client = client(&cluster);
    let ctx = Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "berth-operator".into(),
                instance: Some("test".into()),
            },
        ),
        client,
        metrics: Arc::new(Metrics::default()),
        operator_image: operator_image.map(String::from),
        htpasswd_lines: Arc::new(LineCache::default()),
        unhealthy_pod_eviction: true,
    };
    (Arc::new(ctx), cluster)
}

/// A fresh default Registry on the mock, ready for its first pass.
pub fn fresh() -> (Arc<Context>, Arc<Mutex<Cluster>>, Arc<Registry>) {
    let (ctx, cluster) = context(Scenario::Fresh(RegistrySpec::default()));
    let registry = current(&cluster);
    (ctx, cluster, registry)
}

/// One reconcile pass, which must not fail.
pub async fn pass(ctx: &Arc<Context>, registry: Arc<Registry>) -> Action {
    reconcile(registry, ctx.clone()).await.expect("a pass")
}

/// A kube client whose API server is the mock holding `cluster`.
pub fn client(cluster: &Arc<Mutex<Cluster>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = cluster.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let response = serve(&server, request).await;
            respond.send_response(response);
        }
    });
    Client::new(service, "default")
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("a response")
}

/// What kube-apiserver answers for a path it serves nothing at, e.g. a custom
/// resource whose CRD is not installed: Go's http.NotFound, not a Status.
fn page_not_found() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Body::from(b"404 page not found\n".to_vec()))
        .expect("a response")
}

/// The NamespaceLifecycle admission plugin's refusal of new content in a
/// namespace being deleted (kube-apiserver 1.24: 403, reason Forbidden, a
/// NamespaceTerminating cause).
fn namespace_terminating(path: &str, namespace: &str, body: &Value) -> Response<Body> {
    let plural = resource_segments(path)
        .get(2)
        .copied()
        .unwrap_or_default()
        .to_string();
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    reply(
        StatusCode::FORBIDDEN,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{plural} \"{name}\" is forbidden: unable to create new content \
                                    in namespace {namespace} because it is being terminated"),
                "reason": "Forbidden",
                "details": {"name": name, "kind": plural, "causes": [
                    {"reason": "NamespaceTerminating",
                     "message": format!("namespace {namespace} is being terminated"),
                     "field": "metadata.namespace"}]},
                "code": 403}),
    )
}

/// RBAC's refusal, worded as kube-apiserver 1.24 words it for user "dev": the
/// verb, the resource and its API group, and where.
fn forbidden(method: &Method, path: &str, body: &Value) -> Response<Body> {
    let group = path
        .strip_prefix("/apis/")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default();
    let segments = resource_segments(path);
    let (namespace, rest) = match segments.as_slice() {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
        rest => (None, rest),
    };
    let plural = rest.first().copied().unwrap_or_default();
    let collection = is_collection(path);
    let name = match (collection, rest.get(1)) {
        (false, Some(name)) => name.to_string(),
        _ => body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let verb = match (method.as_str(), collection) {
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "update",
    };
    let qualified = match group {
        "" => plural.to_string(),
        group => format!("{plural}.{group}"),
    };
    let object = match name.as_str() {
        "" => qualified,
        name => format!("{qualified} \"{name}\""),
    };
    let scope = match namespace {
        Some(namespace) => format!("in the namespace \"{namespace}\""),
        None => "at the cluster scope".to_string(),
    };
    reply(
        StatusCode::FORBIDDEN,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{object} is forbidden: User \"dev\" cannot {verb} resource \
                                    \"{plural}\" in API group \"{group}\" {scope}"),
                "reason": "Forbidden",
                "details": {"name": name, "group": group, "kind": plural},
                "code": 403}),
    )
}

fn failure(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": reason, "message": message, "code": code.as_u16()}),
    )
}

async fn serve(cluster: &Mutex<Cluster>, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let full_path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request.into_body().collect_bytes().await.expect("a body");
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("a JSON body")
    };

    let mut c = cluster.lock().unwrap();
    if let Some(mut before) = c.before_request.take() {
        before(&mut c, &format!("{method} {full_path}"));
        c.before_request = Some(before);
    }
    c.log.push(format!("{method} {full_path}"));
    c.requests.push(Logged {
        method: method.to_string(),
        path: full_path.clone(),
        body: body.clone(),
    });
    if let Some((_, code)) = c
        .refuse
        .as_ref()
        .filter(|(prefix, _)| full_path.starts_with(prefix))
    {
        if *code == StatusCode::FORBIDDEN {
            return forbidden(&method, &full_path, &body);
        }
        return failure(*code, "Invalid", format!("{full_path} is refused"));
    }
    let (path, status_subresource) = match full_path.strip_suffix("/status") {
        Some(object) => (object.to_string(), true),
        None => (full_path.clone(), false),
    };

    if full_path.ends_with("/events") && method == Method::POST {
        c.events
            .push(body["reason"].as_str().unwrap_or_default().to_string());
        return reply(StatusCode::CREATED, &body);
    }
    // The Recorder patches a repeated event into a series instead of posting it
    // again; that is one more occurrence too.
    if full_path.contains("/events/") {
        c.events
            .push(body["reason"].as_str().unwrap_or_default().to_string());
        return reply(StatusCode::OK, &body);
    }

    if c.registries_need_crd
        && full_path.starts_with("/apis/berth.dev/")
        && !c.objects.contains_key(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/registries.berth.dev",
        )
    {
        return page_not_found();
    }
    // A namespace being deleted: it answers Terminating a few times, then is
    // gone; nothing new can be made in it meanwhile.
    if let Some(name) = path.strip_prefix("/api/v1/namespaces/")
        && !name.contains('/')
        && let Some(left) = c.terminating.get(name).copied()
    {
        let name = name.to_string();
        match method {
            Method::GET if left <= 1 => c.remove_namespace(&name),
            Method::GET => {
                c.terminating.insert(name, left - 1);
                return reply(StatusCode::OK, &c.objects[&path]);
            }
            // Applying a namespace being deleted changes nothing of its fate.
            _ => return reply(StatusCode::OK, &c.objects[&path]),
        }
    }
    let namespace_of_request = match resource_segments(&path).as_slice() {
        ["namespaces", namespace, ..] => Some(namespace.to_string()),
        _ => None,
    };
    if let Some(namespace) = namespace_of_request
        && c.terminating.contains_key(&namespace)
        && resource_segments(&path).len() > 2
        // Admission refuses creates only: a POST, or an apply of a new object.
        && (method == Method::POST || (method == Method::PATCH && !c.objects.contains_key(&path)))
    {
        return namespace_terminating(&path, &namespace, &body);
    }

    let not_found = || {
        failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{path} not found"),
        )
    };
    match method {
        Method::GET if is_collection(&path) => {
            let items: Vec<Value> = c
                .objects
                .iter()
                .filter(|(key, _)| in_collection(key, &path))
                .filter(|(_, object)| matches_labels(object, &query))
                .map(|(_, object)| object.clone())
                .collect();
            reply(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        Method::GET => match c.get(&path) {
            Some(object) => reply(StatusCode::OK, object),
            None => not_found(),
        },
        Method::POST if is_collection(&path) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            let path = format!("{path}/{name}");
            if c.objects.contains_key(&path) {
                return failure(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{path} already exists"),
                );
            }
            let object = applied(None, body);
            c.insert(path.clone(), object);
            reply(StatusCode::CREATED, &c.objects[&path])
        }
        Method::DELETE => match c.objects.remove(&path) {
            // An object with finalizers stays, marked for deletion, until they go.
            Some(mut object) if has_finalizers(&object) => {
                object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                c.insert(path.clone(), object);
                reply(StatusCode::OK, &c.objects[&path])
            }
            Some(object) => {
                // A namespace takes everything in it, at once or after a few looks.
                if let Some(namespace) = path.strip_prefix("/api/v1/namespaces/") {
                    let polls = c.namespace_deletion_polls;
                    if polls == 0 {
                        c.remove_namespace(namespace);
                        return reply(StatusCode::OK, &object);
                    }
                    c.objects.insert(path.clone(), object);
                    c.start_deleting_namespace(namespace, polls);
                    return reply(StatusCode::OK, &c.objects[&path]);
                }
                reply(StatusCode::OK, &object)
            }
            None => not_found(),
        },
        Method::PATCH if content_type.starts_with("application/apply-patch") => {
            // The contract: every apply by one field manager, forced.
            let manager = format!("fieldManager={}", c.field_manager);
            if !(query.split('&').any(|q| q == manager) && query.contains("force=true")) {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "apply without the {} field manager and force: {query}",
                        c.field_manager
                    ),
                );
            }
            let existing = c.get(&path).cloned();
            let object = match (existing, status_subresource) {
                (Some(mut existing), true) => {
                    existing["status"] = body["status"].clone();
                    existing
                }
                (None, true) => return not_found(),
                (existing, false) => applied(existing, body),
            };
            let object = if c.stalled {
                stall(object)
            } else {
                play_controllers(object)
            };
            c.insert(path.clone(), object);
            reply(StatusCode::OK, &c.objects[&path])
        }
        Method::PATCH if content_type.starts_with("application/merge-patch") => {
            let Some(mut existing) = c.get(&path).cloned() else {
                return not_found();
            };
            let wanted_version = &body["metadata"]["resourceVersion"];
            if !wanted_version.is_null()
                && *wanted_version != existing["metadata"]["resourceVersion"]
            {
                return failure(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object changed".into(),
                );
            }
            merge(&mut existing, &body);
            if !existing["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(&existing) {
                c.objects.remove(&path);
                return reply(StatusCode::OK, &existing);
            }
            c.insert(path.clone(), existing);
            reply(StatusCode::OK, &c.objects[&path])
        }
        _ => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the mock does not serve {method} {content_type}"),
        ),
    }
}

/// Whether an object has every `key=value` of the query's labelSelector (the
/// equality form, the only one the operator sends).
fn matches_labels(object: &Value, query: &str) -> bool {
    let Some(selector) = query
        .split('&')
        .find_map(|q| q.strip_prefix("labelSelector="))
    else {
        return true;
    };
    percent_decode(selector).split(',').all(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        object["metadata"]["labels"][key].as_str() == Some(value)
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// The part of a path after the group and version: `[namespaces, NS,] PLURAL [, NAME]`.
fn resource_segments(path: &str) -> Vec<&str> {
    let rest = match path.strip_prefix("/api/v1") {
        Some(rest) => rest,
        None => path
            .strip_prefix("/apis/")
            .and_then(|p| p.splitn(3, '/').nth(2))
            .unwrap_or_default(),
    };
    rest.split('/').filter(|s| !s.is_empty()).collect()
}

/// Whether a path names a collection (a list, or where a create goes) rather
/// than an object.
fn is_collection(path: &str) -> bool {
    match resource_segments(path).as_slice() {
        ["namespaces", _, _] => true,
        ["namespaces", _, _, _] => false,
        [_] => true,
        _ => false,
    }
}

/// Whether the object at `key` is in the collection at `path`; a collection
/// with no namespace holds the objects of every namespace.
fn in_collection(key: &str, path: &str) -> bool {
    let Some((parent, _)) = key.rsplit_once('/') else {
        return false;
    };
    if parent == path {
        return true;
    }
    let prefix_len = path.len() - resource_segments(path).join("/").len();
    match resource_segments(key).as_slice() {
        ["namespaces", _, plural, _] if resource_segments(path).len() == 1 => {
            key.starts_with(&path[..prefix_len]) && resource_segments(path)[0] == *plural
        }
        _ => false,
    }
}

/// A server-side apply, simplified: the applied object replaces the old one's
/// fields, and what the server owns (uid, status) stays. The generation grows
/// when the spec changes.
fn applied(existing: Option<Value>, mut body: Value) -> Value {
    let Some(existing) = existing else {
        body["metadata"]["uid"] = json!(format!(
            "uid-{}",
            body["metadata"]["name"].as_str().unwrap_or("x")
        ));
        body["metadata"]["generation"] = json!(1);
        return body;
    };
    for key in ["uid", "generation"] {
        body["metadata"][key] = existing["metadata"][key].clone();
    }
    if body.get("spec") != existing.get("spec") {
        let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
        body["metadata"]["generation"] = json!(generation + 1);
    }
    if let Some(status) = existing.get("status") {
        body["status"] = status.clone();
    }
    body
}

/// What the cluster's controllers would do soon after: pods become ready, a
/// claim is bound at its request.
fn play_controllers(mut object: Value) -> Value {
    match object["kind"].as_str() {
        Some("Deployment") => {
            let replicas = object["spec"]["replicas"].clone();
            object["status"] = json!({
                "observedGeneration": object["metadata"]["generation"],
                "replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": replicas,
            });
        }
        Some("PersistentVolumeClaim") => {
            let request = object["spec"]["resources"]["requests"]["storage"].clone();
            object["status"] = json!({"phase": "Bound", "capacity": {"storage": request}});
        }
        Some("CustomResourceDefinition") => {
            object["status"] = json!({"conditions": [
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted"}]});
        }
        _ => {}
    }
    object
}

/// What a cluster whose pods do not start shows: the Deployment has seen its
/// spec and has one pod, not ready; a new claim is Pending.
fn stall(mut object: Value) -> Value {
    match object["kind"].as_str() {
        Some("Deployment") => {
            object["status"] = json!({
                "observedGeneration": object["metadata"]["generation"],
                "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
            });
        }
        Some("PersistentVolumeClaim") if object.get("status").is_none() => {
            object["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
    object
}

/// A registry pod of the test Registry, with this status, as the kubelet
/// writes it.
pub fn registry_pod(cluster: &Mutex<Cluster>, name: &str, status: Value) {
    cluster.lock().unwrap().insert(
        path("v1", "pods", name),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NAMESPACE,
                            "labels": {"app.kubernetes.io/name": "berth-registry",
                                       "app.kubernetes.io/instance": NAME}},
               "spec": {"containers": [{"name": "registry"}]},
               "status": status}),
    );
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            target.as_object_mut().map(|t| t.remove(key));
        } else {
            merge(&mut target[key], value);
        }
    }
}

/// The condition of this type in a Registry's status.
pub fn condition<'a>(
    registry: &'a Registry,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    registry
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Changes the stored Registry's spec as `kubectl edit` would (the generation
/// grows).
pub fn edit(cluster: &Mutex<Cluster>, change: impl FnOnce(&mut RegistrySpec)) {
    let mut c = cluster.lock().unwrap();
    let mut registry = c.registry();
    change(&mut registry.spec);
    registry.metadata.generation = registry.metadata.generation.map(|g| g + 1);
    c.insert(registry_path(), serde_json::to_value(registry).unwrap());
}

/// The Registry as the cluster holds it, with its status.
pub fn status_of(cluster: &Mutex<Cluster>) -> Registry {
    cluster.lock().unwrap().registry()
}

/// The object at `path`, if the cluster holds it.
pub fn get(cluster: &Mutex<Cluster>, path: &str) -> Option<Value> {
    cluster.lock().unwrap().get(path).cloned()
}

/// The Registry as the cluster holds it now, for the next pass.
pub fn current(cluster: &Mutex<Cluster>) -> Arc<Registry> {
    Arc::new(cluster.lock().unwrap().registry())
}

/// Paths of every child of the test Registry the operator applies by default.
pub fn default_children() -> Vec<String> {
    vec![
        path("v1", "secrets", "cache-htpasswd"),
        path("v1", "secrets", "cache-admin"),
        path("v1", "persistentvolumeclaims", "cache-data"),
        path("v1", "services", "cache"),
        path("v1", "services", "cache-nodeport"),
        path("apps/v1", "deployments", "cache"),
        path("batch/v1", "cronjobs", "cache-gc"),
        "/api/v1/namespaces/kube-public/configmaps/local-registry-hosting".into(),
    ]
}

/// The uid of an object's first owner reference.
pub fn owner_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"][0]["uid"].as_str()
}
