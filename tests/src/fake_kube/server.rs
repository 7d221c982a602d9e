//! The HTTP side of the fake: binding and tracking connections, routing Kubernetes API
//! paths, and one handler per verb.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as Shared;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::discovery;
use super::kinds::{self, KindInfo};
use super::patch;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{self, Key, Origin};
use super::streams::{LogStream, Selection, WatchStream};
use super::{Inner, Request};

/// A listening socket with SO_REUSEADDR, so `restart` can take the same port again while
/// the connections `stop` cut linger in TIME_WAIT.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves on `listener` until `Inner::halt` aborts the task.
pub(super) fn spawn(inner: &Arc<Inner>, listener: TcpListener) {
    let app = Router::new().fallback(handle).with_state(inner.clone());
    let listener = Tracked {
        listener,
        inner: inner.clone(),
    };
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    *inner.serving.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
}

/// Keeps a clone of every accepted socket: aborting the accept loop does not end the
/// connection tasks, shutting their sockets down does.
struct Tracked {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl Tracked {
    fn track(&self, stream: TcpStream) -> io::Result<TcpStream> {
        stream.set_nodelay(true)?;
        let stream = stream.into_std()?;
        let clone = stream.try_clone()?;
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(clone);
        TcpStream::from_std(stream)
    }
}

impl axum::serve::Listener for Tracked {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    if let Ok(stream) = self.track(stream) {
                        return (stream, addr);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// What a path names.
enum Route {
    Version,
    CoreVersions,
    Groups,
    Resources { group: String, version: String },
    Object(Target),
    Unknown,
}

/// A resource path: `/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]` or
/// the same under `/apis/{group}/{version}`.
struct Target {
    group: String,
    version: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let target = |namespace: Option<&str>, parts: &[&str]| {
        Route::Object(Target {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: parts[0].to_owned(),
            namespace: namespace.map(str::to_owned),
            name: parts.get(1).map(|s| (*s).to_owned()),
            subresource: parts.get(2).map(|s| (*s).to_owned()),
        })
    };
    match rest {
        [] => Route::Resources {
            group: group.to_owned(),
            version: version.to_owned(),
        },
        ["namespaces", namespace, resource, more @ ..]
            if !matches!(*resource, "status" | "finalize") && more.len() <= 2 =>
        {
            target(Some(namespace), &rest[2..])
        }
        [_] | [_, _] | [_, _, _] => target(None, rest),
        _ => Route::Unknown,
    }
}

/// The query string, decoded; empty values count as absent.
struct Params(HashMap<String, String>);

impl Params {
    fn parse(query: &str) -> Self {
        Self(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Failure> {
        match self.get(name).map(str::parse) {
            None => Ok(None),
            Some(Ok(n)) => Ok(Some(n)),
            Some(Err(_)) => Err(failure(400, format!("invalid {name}"))),
        }
    }
}

/// The RBAC verb of a request.
fn verb(method: &Method, target: Option<&Target>, params: &Params) -> String {
    let named = target.is_some_and(|t| t.name.is_some());
    let verb = match *method {
        Method::GET | Method::HEAD if params.flag("watch") => "watch",
        Method::GET | Method::HEAD if named || target.is_none() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return method.as_str().to_lowercase(),
    };
    verb.to_owned()
}

/// The body as JSON, or as YAML when the content type says so.
fn parse_body(body: &[u8], content_type: Option<&str>) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    serde_json::from_slice(body).ok().or_else(|| {
        content_type
            .is_some_and(|ct| ct.contains("yaml"))
            .then(|| serde_yaml::from_slice(body).ok())
            .flatten()
    })
}

async fn handle(Shared(inner): Shared<Arc<Inner>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(bytes) => bytes,
        Err(err) => return failure(400, format!("reading the body: {err}")).into_response(),
    };
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let params = Params::parse(&query);
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(header::CONTENT_TYPE);
    let accept = header(header::ACCEPT);
    let route = route(parts.uri.path());
    let target = match &route {
        Route::Object(target) => Some(target),
        _ => None,
    };
    let body = parse_body(&body, content_type.as_deref());
    let record = Request {
        method: parts.method.to_string(),
        verb: verb(&parts.method, target, &params),
        group: target.map(|t| t.group.clone()).unwrap_or_default(),
        version: target.map(|t| t.version.clone()).unwrap_or_default(),
        resource: target.map(|t| t.resource.clone()).unwrap_or_default(),
        subresource: target.and_then(|t| t.subresource.clone()),
        namespace: target.and_then(|t| t.namespace.clone()),
        name: target.and_then(|t| t.name.clone()),
        query,
        content_type: content_type.clone(),
        accept: accept.clone(),
        body: body.clone(),
    };
    {
        let mut state = inner.lock();
        state.requests.push(record);
        if state.failures.0 > 0 {
            state.failures.0 -= 1;
            let code = state.failures.1;
            return failure(code, format!("injected failure ({code})")).into_response();
        }
    }
    let call = Call {
        metadata_only: accept.is_some_and(|a| a.contains("as=PartialObjectMetadata")),
        inner,
        params,
        content_type,
        body,
    };
    match route {
        Route::Version => respond(200, &discovery::version()),
        Route::CoreVersions => respond(200, &discovery::core_versions(&call.inner.addr)),
        Route::Groups => respond(200, &discovery::groups()),
        Route::Resources { group, version } => discovery::resources(&group, &version),
        Route::Object(target) => call
            .object(&parts.method, target)
            .unwrap_or_else(IntoResponse::into_response),
        Route::Unknown => {
            failure(404, "the server could not find the requested resource").into_response()
        }
    }
}

pub(super) fn respond(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// A refusal: an error code with a `Status` body, which kube turns into `kube::Error::Api`.
pub(super) struct Failure {
    code: u16,
    status: Box<Value>,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        respond(self.code, &self.status)
    }
}

fn status_response(code: u16, reason: &str, message: String, details: Option<Value>) -> Failure {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    Failure {
        code,
        status: Box::new(body),
    }
}

pub(super) fn failure(code: u16, message: impl Into<String>) -> Failure {
    status_response(code, reason_for(code), message.into(), None)
}

/// The metadata-only form of an object.
pub(super) fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"],
    })
}

/// One object of a resource, as a path names it.
struct At {
    info: &'static KindInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl At {
    fn key(&self) -> Key {
        store::key(
            &self.info.api_version(),
            self.info.kind,
            self.namespace.as_deref().unwrap_or_default(),
            self.name.as_deref().unwrap_or_default(),
        )
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn details(&self) -> Value {
        json!({"name": self.name(), "group": self.info.group, "kind": self.info.plural})
    }

    fn not_found(&self) -> Failure {
        let message = format!(
            "{} \"{}\" not found",
            self.info.qualified_plural(),
            self.name()
        );
        status_response(404, "NotFound", message, Some(self.details()))
    }

    fn conflict(&self) -> Failure {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please \
             apply your changes to the latest version and try again",
            self.info.qualified_plural(),
            self.name()
        );
        status_response(409, "Conflict", message, Some(self.details()))
    }

    /// Sets apiVersion, kind, namespace and (when the path has one) name on a body,
    /// refusing a body that names others.
    fn conform(&self, object: &mut Value) -> Result<(), Failure> {
        let api_version = self.info.api_version();
        for (field, expected) in [
            ("apiVersion", api_version.as_str()),
            ("kind", self.info.kind),
        ] {
            match object[field].as_str() {
                Some(given) if !given.is_empty() && given != expected => {
                    return Err(failure(
                        400,
                        format!(
                            "the {field} in the data ({given}) does not match the expected {field} ({expected})"
                        ),
                    ));
                }
                _ => object[field] = json!(expected),
            }
        }
        let metadata = store::metadata_mut(object);
        if self.info.namespaced {
            let namespace = self.namespace.as_deref().unwrap_or_default();
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(failure(
                        400,
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => metadata.insert("namespace".into(), json!(namespace)),
            };
        } else {
            metadata.remove("namespace");
        }
        if let Some(name) = &self.name {
            match metadata.get("name").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != name => {
                    return Err(failure(
                        400,
                        format!(
                            "the name of the object ({given}) does not match the name on the URL ({name})"
                        ),
                    ));
                }
                _ => metadata.insert("name".into(), json!(name)),
            };
        }
        Ok(())
    }
}

/// `existing` with its status replaced (or removed).
fn with_status(existing: &Value, status: Option<&Value>) -> Value {
    let mut object = existing.clone();
    let map = object.as_object_mut().expect("stored objects are objects");
    match status {
        Some(status) if !status.is_null() => map.insert("status".into(), status.clone()),
        _ => map.remove("status"),
    };
    object
}

/// The `autoscaling/v1` Scale of a Deployment, StatefulSet or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut metadata = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = object["metadata"].get(field) {
            metadata.insert(field.into(), value.clone());
        }
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": metadata,
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

/// `existing` with `spec.replicas` set as a Scale asks.
fn with_replicas(existing: &Value, scale: &Value) -> Result<Value, Failure> {
    let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
        return Err(failure(422, "spec.replicas: Required value"));
    };
    let mut object = existing.clone();
    object["spec"]["replicas"] = json!(replicas);
    Ok(object)
}

/// The names of a pod's containers.
fn containers_of(pod: &Value) -> Vec<&str> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| pod["spec"][field].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The last `lines` lines of a log.
fn tail(text: &str, lines: Option<usize>) -> &str {
    let Some(lines) = lines else { return text };
    if lines == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(lines - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

/// One request to a resource path, after recording.
struct Call {
    inner: Arc<Inner>,
    params: Params,
    content_type: Option<String>,
    metadata_only: bool,
    body: Option<Value>,
}

impl Call {
    fn object(self, method: &Method, target: Target) -> Result<Response, Failure> {
        let Some(info) = kinds::by_resource(&target.group, &target.version, &target.resource)
        else {
            return Err(failure(
                404,
                "the server could not find the requested resource",
            ));
        };
        let scoped = if info.namespaced {
            target.namespace.is_some() || target.name.is_none()
        } else {
            target.namespace.is_none()
        };
        let subresource = match target.subresource.as_deref() {
            None => true,
            Some("status") => info.status,
            Some("scale") => info.scale,
            Some("log") => info.kind == "Pod" && info.group.is_empty(),
            Some(_) => false,
        };
        if !scoped || !subresource {
            return Err(failure(
                404,
                "the server could not find the requested resource",
            ));
        }
        let at = At {
            info,
            namespace: target.namespace,
            name: target.name,
            subresource: target.subresource,
        };
        let named = at.name.is_some();
        let sub = at.subresource.as_deref();
        match *method {
            Method::GET | Method::HEAD if !named && self.params.flag("watch") => self.watch(&at),
            Method::GET | Method::HEAD if !named => self.list(&at),
            Method::GET | Method::HEAD if sub == Some("log") => self.log(&at),
            Method::GET | Method::HEAD => self.get(&at),
            Method::POST if !named => self.create(&at),
            Method::PUT if named && sub != Some("log") => self.replace(&at),
            Method::PATCH if named && sub != Some("log") => self.patch(&at),
            Method::DELETE if named && sub.is_none() => self.delete(&at),
            Method::DELETE if !named => self.delete_collection(&at),
            _ => Err(failure(
                405,
                format!("{method} is not supported on this path"),
            )),
        }
    }

    fn shape(&self, object: &Value) -> Value {
        if self.metadata_only {
            partial(object)
        } else {
            object.clone()
        }
    }

    fn dry_run(&self) -> bool {
        self.params.get("dryRun").is_some()
            || self.body.as_ref().is_some_and(|b| {
                b["kind"] == "DeleteOptions"
                    && b["dryRun"].as_array().is_some_and(|d| !d.is_empty())
            })
    }

    fn selectors(&self) -> Result<impl Fn(&Value) -> bool, Failure> {
        let labels = LabelSelector::parse(self.params.get("labelSelector").unwrap_or_default())
            .map_err(|e| failure(400, format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(self.params.get("fieldSelector").unwrap_or_default())
            .map_err(|e| failure(400, e))?;
        Ok(move |object: &Value| labels.matches(object) && fields.matches(object))
    }

    fn body_object(&self) -> Result<Value, Failure> {
        match &self.body {
            Some(body @ Value::Object(_)) => Ok(body.clone()),
            _ => Err(failure(400, "the body must be a JSON object")),
        }
    }

    fn get(&self, at: &At) -> Result<Response, Failure> {
        let Some(object) = self.inner.lock().objects.get(&at.key()).cloned() else {
            return Err(at.not_found());
        };
        match at.subresource.as_deref() {
            Some("scale") => Ok(respond(200, &scale_of(&object))),
            _ => Ok(respond(200, &self.shape(&object))),
        }
    }

    fn list(&self, at: &At) -> Result<Response, Failure> {
        let selects = self.selectors()?;
        let limit = self.params.number::<usize>("limit")?.unwrap_or(0);
        let page_end = |offset: usize, total: usize| {
            if limit == 0 {
                total
            } else {
                total.min(offset.saturating_add(limit))
            }
        };
        let mut state = self.inner.lock();
        // (resourceVersion, items of this page, (snapshot, next offset, items left))
        let (rv, page, next) = if let Some(token) = self.params.get("continue") {
            let parsed = token.split_once('/').and_then(|(id, offset)| {
                Some((id.parse::<u64>().ok()?, offset.parse::<usize>().ok()?))
            });
            let Some((id, offset)) = parsed else {
                return Err(failure(400, "invalid continue token"));
            };
            let Some(snapshot) = state.snapshot(id) else {
                return Err(failure(
                    410,
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter.",
                ));
            };
            let total = snapshot.items.len();
            let offset = offset.min(total);
            let end = page_end(offset, total);
            let page = snapshot.items[offset..end].to_vec();
            let rv = snapshot.rv;
            if end < total {
                (rv, page, Some((id, end, total - end)))
            } else {
                state.drop_snapshot(id);
                (rv, page, None)
            }
        } else {
            let items: Vec<Value> = state
                .select(
                    &at.info.api_version(),
                    at.info.kind,
                    at.namespace.as_deref(),
                    selects,
                )
                .into_iter()
                .map(|(_, object)| object)
                .collect();
            let rv = state.rv;
            let total = items.len();
            let end = page_end(0, total);
            if end < total {
                let page = items[..end].to_vec();
                let id = state.save_snapshot(rv, items);
                (rv, page, Some((id, end, total - end)))
            } else {
                (rv, items, None)
            }
        };
        drop(state);
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some((id, end, remaining)) = next {
            metadata["continue"] = json!(format!("{id}/{end}"));
            metadata["remainingItemCount"] = json!(remaining);
        }
        let (api_version, kind) = if self.metadata_only {
            (
                "meta.k8s.io/v1".to_owned(),
                "PartialObjectMetadataList".to_owned(),
            )
        } else {
            (at.info.api_version(), format!("{}List", at.info.kind))
        };
        let items: Vec<Value> = page.iter().map(|object| self.shape(object)).collect();
        Ok(respond(
            200,
            &json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}),
        ))
    }

    fn watch(&self, at: &At) -> Result<Response, Failure> {
        let (labels, fields) = match (
            LabelSelector::parse(self.params.get("labelSelector").unwrap_or_default()),
            FieldSelector::parse(self.params.get("fieldSelector").unwrap_or_default()),
        ) {
            (Ok(labels), Ok(fields)) => (labels, fields),
            (Err(e), _) | (_, Err(e)) => return Err(failure(400, e)),
        };
        let timeout = self.params.number::<u64>("timeoutSeconds")?;
        let from = self.params.get("resourceVersion").unwrap_or("0");
        let send_initial = self.params.flag("sendInitialEvents");
        let selection = Selection {
            api_version: at.info.api_version(),
            kind: at.info.kind,
            namespace: at.namespace.clone(),
            labels,
            fields,
            metadata_only: self.metadata_only,
        };
        let stream = WatchStream::start(self.inner.clone(), selection, from, send_initial, timeout)
            .map_err(|message| failure(400, message))?;
        let body = futures::stream::unfold(stream, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((Ok::<_, Infallible>(chunk), stream))
        });
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response())
    }

    fn log(&self, at: &At) -> Result<Response, Failure> {
        let namespace = at.namespace.clone().unwrap_or_default();
        let pod = at.name().to_owned();
        let container = self.params.get("container").map(str::to_owned);
        let tail_lines = self.params.number::<usize>("tailLines")?;
        let text = {
            let state = self.inner.lock();
            let object = state.objects.get(&at.key());
            let log = state.log_for(&namespace, &pod, container.as_deref());
            match (object, &log, container.as_deref()) {
                (None, None, _) => return Err(at.not_found()),
                (Some(object), None, Some(container))
                    if !containers_of(object).contains(&container) =>
                {
                    return Err(failure(
                        400,
                        format!("container {container} is not valid for pod {pod}"),
                    ));
                }
                (Some(object), None, None) if containers_of(object).len() > 1 => {
                    return Err(failure(
                        400,
                        format!(
                            "a container name must be specified for pod {pod}, choose one of: {:?}",
                            containers_of(object)
                        ),
                    ));
                }
                _ => {}
            }
            log.and_then(|key| state.logs.get(&key).cloned())
                .unwrap_or_default()
        };
        let shown = tail(&text, tail_lines).to_owned();
        if !self.params.flag("follow") {
            return Ok(([(header::CONTENT_TYPE, "text/plain")], shown).into_response());
        }
        let stream = LogStream::new(self.inner.clone(), at.key(), container, text.len(), shown);
        let body = futures::stream::unfold(stream, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((Ok::<_, Infallible>(chunk), stream))
        });
        Ok((
            [(header::CONTENT_TYPE, "text/plain")],
            Body::from_stream(body),
        )
            .into_response())
    }

    fn create(&self, at: &At) -> Result<Response, Failure> {
        if at.info.namespaced && at.namespace.is_none() {
            return Err(failure(
                404,
                "the server could not find the requested resource",
            ));
        }
        let mut object = self.body_object()?;
        at.conform(&mut object)?;
        let metadata = store::metadata_mut(&mut object);
        let named = metadata
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !named {
            let Some(prefix) = metadata.get("generateName").and_then(Value::as_str) else {
                return Err(failure(
                    422,
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            let random = uuid::Uuid::now_v7().simple().to_string();
            let name = format!("{prefix}{}", &random[random.len() - 5..]);
            metadata.insert("name".into(), json!(name));
        }
        if at.info.status {
            object.as_object_mut().expect("an object").remove("status");
        }
        let key = store::key_of(&object);
        let stored = {
            let mut state = self.inner.lock();
            if state.objects.contains_key(&key) {
                let message = format!(
                    "{} \"{}\" already exists",
                    at.info.qualified_plural(),
                    key.3
                );
                let details =
                    json!({"name": key.3, "group": at.info.group, "kind": at.info.plural});
                return Err(status_response(
                    409,
                    "AlreadyExists",
                    message,
                    Some(details),
                ));
            }
            if self.dry_run() {
                return Ok(respond(201, &object));
            }
            state.create(object, Origin::Api)
        };
        self.inner.notify();
        Ok(respond(201, &stored))
    }

    fn replace(&self, at: &At) -> Result<Response, Failure> {
        let mut body = self.body_object()?;
        let key = at.key();
        let stored = {
            let mut state = self.inner.lock();
            let Some(existing) = state.objects.get(&key).cloned() else {
                return Err(at.not_found());
            };
            if store::resource_version(&body)
                .is_some_and(|rv| Some(rv) != store::resource_version(&existing))
            {
                return Err(at.conflict());
            }
            let new = match at.subresource.as_deref() {
                Some("scale") => with_replicas(&existing, &body)?,
                Some(_) => {
                    at.conform(&mut body)?;
                    with_status(&existing, body.get("status"))
                }
                None => {
                    at.conform(&mut body)?;
                    if at.info.status {
                        with_status(&body, existing.get("status"))
                    } else {
                        body
                    }
                }
            };
            if self.dry_run() {
                return Ok(respond(200, &new));
            }
            state.update(&key, new, Origin::Api)
        };
        self.inner.notify();
        match at.subresource.as_deref() {
            Some("scale") => Ok(respond(200, &scale_of(&stored))),
            _ => Ok(respond(200, &stored)),
        }
    }

    fn patch(&self, at: &At) -> Result<Response, Failure> {
        let content_type = self
            .content_type
            .as_deref()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let Some(patch) = self.body.clone() else {
            return Err(failure(
                400,
                "the patch is not valid JSON (or YAML for apply)",
            ));
        };
        let apply = content_type == "application/apply-patch+yaml";
        if apply && self.params.get("fieldManager").is_none() {
            return Err(failure(
                422,
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        let key = at.key();
        let mut state = self.inner.lock();
        let Some(existing) = state.objects.get(&key).cloned() else {
            if !(apply && at.subresource.is_none()) {
                return Err(at.not_found());
            }
            // Server-side apply creates what does not exist.
            let mut object = patch;
            if !object.is_object() {
                return Err(failure(400, "the apply body must be an object"));
            }
            at.conform(&mut object)?;
            if at.info.status {
                object.as_object_mut().expect("an object").remove("status");
            }
            if self.dry_run() {
                return Ok(respond(201, &object));
            }
            let stored = state.create(object, Origin::Api);
            drop(state);
            self.inner.notify();
            return Ok(respond(201, &stored));
        };
        let mut patched = match at.subresource.as_deref() {
            Some("scale") => scale_of(&existing),
            _ => existing.clone(),
        };
        match content_type.as_str() {
            "application/merge-patch+json" => patch::merge_patch(&mut patched, &patch),
            "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
                patch::strategic_merge(&mut patched, &patch);
            }
            "application/json-patch+json" => match patch::json_patch(&patched, &patch) {
                Ok(result) => patched = result,
                Err(err) => return Err(failure(err.code, err.message)),
            },
            other => {
                return Err(failure(
                    415,
                    format!(
                        "the body of the request was in an unknown format ({other}) - accepted \
                         media types include: application/json-patch+json, \
                         application/merge-patch+json, application/apply-patch+yaml, \
                         application/strategic-merge-patch+json"
                    ),
                ));
            }
        }
        if !patched.is_object() {
            return Err(failure(
                422,
                "the patch made the object something other than an object",
            ));
        }
        if store::resource_version(&patched)
            .is_some_and(|rv| Some(rv) != store::resource_version(&existing))
        {
            return Err(at.conflict());
        }
        let new = match at.subresource.as_deref() {
            Some("scale") => with_replicas(&existing, &patched)?,
            Some(_) => with_status(&existing, patched.get("status")),
            None => {
                at.conform(&mut patched)?;
                if at.info.status {
                    with_status(&patched, existing.get("status"))
                } else {
                    patched
                }
            }
        };
        if self.dry_run() {
            return Ok(respond(200, &new));
        }
        let stored = state.update(&key, new, Origin::Api);
        drop(state);
        self.inner.notify();
        match at.subresource.as_deref() {
            Some("scale") => Ok(respond(200, &scale_of(&stored))),
            _ => Ok(respond(200, &stored)),
        }
    }

    fn delete(&self, at: &At) -> Result<Response, Failure> {
        let key = at.key();
        let deleted = {
            let mut state = self.inner.lock();
            let Some(existing) = state.objects.get(&key).cloned() else {
                return Err(at.not_found());
            };
            let preconditions = self
                .body
                .as_ref()
                .map(|b| b["preconditions"].clone())
                .unwrap_or_default();
            for (field, actual) in [
                ("uid", existing["metadata"]["uid"].as_str()),
                ("resourceVersion", store::resource_version(&existing)),
            ] {
                if let Some(wanted) = preconditions[field].as_str() {
                    if Some(wanted) != actual {
                        let message = format!(
                            "Precondition failed: {field} in precondition: {wanted}, {field} in \
                             object meta: {}",
                            actual.unwrap_or_default()
                        );
                        return Err(status_response(
                            409,
                            "Conflict",
                            message,
                            Some(at.details()),
                        ));
                    }
                }
            }
            if self.dry_run() {
                return Ok(respond(200, &existing));
            }
            state.delete(&key)
        };
        self.inner.notify();
        match deleted {
            Some(object) => Ok(respond(200, &object)),
            None => Err(at.not_found()),
        }
    }

    fn delete_collection(&self, at: &At) -> Result<Response, Failure> {
        let selects = self.selectors()?;
        let (rv, items) = {
            let mut state = self.inner.lock();
            let matching = state.select(
                &at.info.api_version(),
                at.info.kind,
                at.namespace.as_deref(),
                selects,
            );
            let items: Vec<Value> = if self.dry_run() {
                matching.into_iter().map(|(_, object)| object).collect()
            } else {
                matching
                    .iter()
                    .filter_map(|(key, _)| state.delete(key))
                    .collect()
            };
            (state.rv, items)
        };
        self.inner.notify();
        Ok(respond(
            200,
            &json!({
                "apiVersion": at.info.api_version(),
                "kind": format!("{}List", at.info.kind),
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items,
            }),
        ))
    }
}
