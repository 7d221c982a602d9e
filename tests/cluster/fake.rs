//! Self-tests of the fake Kubernetes API server: each drives the real `kube::Client`,
//! watchers and reflectors against it and asserts what they observe.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncBufReadExt as _, Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Pod, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::core::{PartialObjectMeta, Request as RequestBuilder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use slate_tests::eventually;
use slate_tests::fake_kube::{FakeKube, NAMESPACE};

/// The longest any condition is waited for; tests normally finish in well under a second.
const WAIT: Duration = Duration::from_secs(8);

/// Awaits `future`; fails the test after [`WAIT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn config_map(name: &str, labels: Value, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "data": data,
    })
}

fn typed<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

fn names<K: Resource>(objects: impl IntoIterator<Item = impl Borrow<K>>) -> Vec<String> {
    let mut names: Vec<String> = objects.into_iter().map(|o| o.borrow().name_any()).collect();
    names.sort();
    names
}

fn store_names<K>(store: &Store<K>) -> Vec<String>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    names::<K>(store.state())
}

fn assert_api_error<T: Debug>(result: kube::Result<T>, code: u16, reason: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (code, reason),
                "{status:?}"
            );
        }
        other => panic!("expected an API error {code} {reason}, got {other:?}"),
    }
}

/// What a reflector's watcher emitted, in order: `init`, `apply NAME`, `error ...`, ...
type EventLog = Arc<Mutex<Vec<String>>>;

fn logged(log: &EventLog, prefix: &str) -> usize {
    let log = log.lock().expect("event log");
    log.iter().filter(|e| e.starts_with(prefix)).count()
}

/// Runs `watcher(api).default_backoff().reflect(..)` as Slate does, in the background.
fn reflect<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, EventLog)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let log = EventLog::default();
    let seen = log.clone();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let entry = match event {
                Ok(Event::Init) => "init".to_owned(),
                Ok(Event::InitApply(o)) => format!("init-apply {}", o.name_any()),
                Ok(Event::InitDone) => "init-done".to_owned(),
                Ok(Event::Apply(o)) => format!("apply {}", o.name_any()),
                Ok(Event::Delete(o)) => format!("delete {}", o.name_any()),
                Err(err) => format!("error {err}"),
            };
            seen.lock().expect("event log").push(entry);
        }
    });
    (store, log)
}

async fn synced<K>(store: &Store<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    within("the reflector's first list", store.wait_until_ready())
        .await
        .expect("the reflector runs");
}

/// The next line of a streamed body (`None` at its end); fails the test after [`WAIT`].
async fn next_line(
    lines: &mut (impl Stream<Item = std::io::Result<String>> + Unpin),
) -> Option<String> {
    within("a line", lines.try_next())
        .await
        .expect("read a line")
}

fn describe(event: kube::Result<WatchEvent<ConfigMap>>) -> String {
    match event.expect("a watch event") {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(status) => format!("ERROR {} {}", status.code, status.reason),
    }
}

#[tokio::test]
async fn get_list_create_replace_and_delete_through_kube() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("settings", json!({}), json!({"mode": "fast"})));
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());

    let got = api.get("settings").await.expect("get");
    assert_eq!(got.data.expect("data")["mode"], "fast");
    assert!(got.metadata.uid.is_some() && got.metadata.creation_timestamp.is_some());
    let listed = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(names::<ConfigMap>(&listed.items), ["settings"]);
    assert!(listed.metadata.resource_version.is_some());

    let new: ConfigMap = typed(config_map("new", json!({}), json!({"a": "1"})));
    let created = api
        .create(&PostParams::default(), &new)
        .await
        .expect("create");
    let stored = fake
        .get("v1", "ConfigMap", NAMESPACE, "new")
        .expect("stored");
    assert_eq!(stored["metadata"]["uid"], json!(created.metadata.uid));
    assert_api_error(
        api.create(&PostParams::default(), &new).await,
        409,
        "AlreadyExists",
    );

    let mut changed = created.clone();
    changed.data = Some([("a".to_owned(), "2".to_owned())].into());
    let replaced = api
        .replace("new", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        fake.get("v1", "ConfigMap", NAMESPACE, "new")
            .expect("stored")["data"]["a"],
        "2"
    );
    // `changed` still carries the old resourceVersion.
    assert_api_error(
        api.replace("new", &PostParams::default(), &changed).await,
        409,
        "Conflict",
    );

    api.delete("new", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(fake.get("v1", "ConfigMap", NAMESPACE, "new").is_none());
    assert_api_error(api.get("new").await, 404, "NotFound");
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let fake = FakeKube::start().await;
    for i in 0..1200 {
        fake.apply(config_map(&format!("cm-{i:04}"), json!({}), json!({})));
    }
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());

    let (mut seen, mut pages, mut versions) = (Vec::new(), Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(500);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = api.list(&params).await.expect("a page");
        pages.push(page.items.len());
        versions.push(page.metadata.resource_version.clone());
        seen.extend(page.items.iter().map(|c| c.name_any()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
        // Later pages come from the first page's snapshot, as on a real server.
        fake.apply(config_map("zz-late", json!({}), json!({})));
    }
    assert_eq!(pages, [500, 500, 200]);
    let expected: Vec<String> = (0..1200).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(seen, expected);
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");

    fake.clear_requests();
    let (store, _) = reflect(api, watcher::Config::default());
    synced(&store).await;
    assert_eq!(store.state().len(), 1201);
    let lists: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list")
        .map(|r| r.query)
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists.iter().all(|q| q.contains("limit=500")), "{lists:?}");
    assert!(!lists[0].contains("continue=") && lists[1].contains("continue="));
}

#[tokio::test]
async fn a_reflector_follows_added_modified_and_deleted() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({"v": "1"})));
    let (store, log) = reflect(
        Api::<ConfigMap>::default_namespaced(fake.client()),
        watcher::Config::default(),
    );
    synced(&store).await;
    assert_eq!(store_names(&store), ["a"]);

    // Made right after the list, possibly before the watch starts: replayed either way.
    fake.apply(config_map("b", json!({}), json!({"v": "1"})));
    eventually("b to be added", WAIT, || async {
        store_names(&store) == ["a", "b"]
    })
    .await;
    fake.apply(config_map("a", json!({}), json!({"v": "2"})));
    let a = ObjectRef::new("a").within(NAMESPACE);
    eventually("a to be modified", WAIT, || async {
        store
            .get(&a)
            .is_some_and(|cm| cm.data.as_ref().is_some_and(|d| d["v"] == "2"))
    })
    .await;
    assert!(fake.delete("v1", "ConfigMap", NAMESPACE, "a"));
    eventually("a to be deleted", WAIT, || async {
        store_names(&store) == ["b"]
    })
    .await;

    assert_eq!(logged(&log, "init"), 3, "init, init-apply, init-done");
    assert_eq!(logged(&log, "error"), 0);
    let verbs: Vec<String> = fake.requests().into_iter().map(|r| r.verb).collect();
    assert_eq!(verbs, ["list", "watch"]);
}

#[tokio::test]
async fn watches_replay_history_end_on_timeout_and_expire() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({"v": "1"})));
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let listed = api.list(&ListParams::default()).await.expect("list");
    let version = listed.metadata.resource_version.expect("a resourceVersion");

    fake.apply(config_map("b", json!({}), json!({})));
    fake.apply(config_map("a", json!({}), json!({"v": "2"})));
    fake.delete("v1", "ConfigMap", NAMESPACE, "b");
    let stream = api
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watch");
    let events: Vec<String> = within("three events", stream.take(3).map(describe).collect()).await;
    assert_eq!(events, ["ADDED b", "MODIFIED a", "DELETED b"]);

    let short = api
        .watch(&WatchParams::default().timeout(1), &version)
        .await
        .expect("watch");
    let events: Vec<String> = within("timeoutSeconds", short.map(describe).collect()).await;
    assert_eq!(
        events.len(),
        3,
        "the same replay, then a clean end: {events:?}"
    );

    fake.expire_history();
    let expired = api
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watch");
    let events: Vec<String> = within("410", expired.map(describe).collect()).await;
    assert_eq!(events, ["ERROR 410 Expired"]);
}

#[tokio::test]
async fn expired_history_makes_a_watcher_relist() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({})));
    fake.apply(config_map("b", json!({}), json!({})));
    let (store, log) = reflect(
        Api::<ConfigMap>::default_namespaced(fake.client()),
        watcher::Config::default(),
    );
    synced(&store).await;
    eventually("the watch to start", WAIT, || async {
        fake.requests().iter().any(|r| r.verb == "watch")
    })
    .await;
    fake.clear_requests();

    fake.expire_history();
    fake.apply(config_map("c", json!({}), json!({})));
    fake.delete("v1", "ConfigMap", NAMESPACE, "a");
    eventually("the relisted state", WAIT, || async {
        store_names(&store) == ["b", "c"]
    })
    .await;
    assert!(logged(&log, "error") >= 1, "{log:?}");
    assert_eq!(logged(&log, "init-done"), 2, "{log:?}");
    assert!(fake.requests().iter().any(|r| r.verb == "list"));
}

#[tokio::test]
async fn a_watcher_recovers_after_the_server_comes_back() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({})));
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let (store, log) = reflect(api.clone(), watcher::Config::default());
    synced(&store).await;
    let mut open = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert_eq!(
        within("ADDED", open.next()).await.map(describe).as_deref(),
        Some("ADDED a")
    );
    let url = fake.url();

    fake.stop().await;
    let addr = url.trim_start_matches("http://");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port refuses"
    );
    within("the open watch to be cut", async {
        while let Some(Ok(_)) = open.next().await {}
    })
    .await;
    assert!(api.list(&ListParams::default()).await.is_err());
    eventually("the watcher to notice", WAIT, || async {
        logged(&log, "error") >= 1
    })
    .await;

    fake.apply(config_map("b", json!({}), json!({})));
    fake.delete("v1", "ConfigMap", NAMESPACE, "a");
    fake.restart().await;
    assert_eq!(fake.url(), url);
    eventually("changes made while down", WAIT, || async {
        store_names(&store) == ["b"]
    })
    .await;
    assert_eq!(
        logged(&log, "init-done"),
        1,
        "resumed without a relist: {log:?}"
    );
    let listed = api
        .list(&ListParams::default())
        .await
        .expect("list after restart");
    assert_eq!(names::<ConfigMap>(&listed.items), ["b"]);
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "old": "x"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "main", "image": "web:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "proxy:1"}
                ]}
            }
        },
        "status": {"observedGeneration": 1, "replicas": 1}
    })
}

#[tokio::test]
async fn merge_strategic_json_and_apply_patches() {
    let fake = FakeKube::start().await;
    fake.apply(deployment());
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    let params = PatchParams::default();
    let as_json = |d: Deployment| serde_json::to_value(d).expect("json");

    let merged = as_json(
        api.patch(
            "web",
            &params,
            &Patch::Merge(json!({"metadata": {"labels": {"old": null, "new": "y"}}})),
        )
        .await
        .expect("merge patch"),
    );
    assert_eq!(
        merged["metadata"]["labels"],
        json!({"app": "web", "new": "y"})
    );
    assert_eq!(
        merged["metadata"]["generation"], 1,
        "metadata changes keep the generation"
    );

    let strategic = as_json(
        api.patch(
            "web",
            &params,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "web:2", "env": [{"name": "B", "value": "2"}]}
            ]}}}})),
        )
        .await
        .expect("strategic merge patch"),
    );
    let containers = &strategic["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "web:2");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    assert_eq!(
        containers[1]["name"], "sidecar",
        "merged by name, not replaced"
    );
    assert_eq!(strategic["metadata"]["generation"], 2);

    let json_patch = Patch::Json::<()>(typed(json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/metadata/annotations", "value": {}},
        {"op": "add", "path": "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
         "value": "2026-01-01T00:00:00Z"}
    ])));
    let patched = as_json(
        api.patch("web", &params, &json_patch)
            .await
            .expect("JSON patch"),
    );
    assert_eq!(patched["spec"]["replicas"], 3);
    assert_eq!(
        patched["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(patched["metadata"]["generation"], 3);

    let failing = Patch::Json::<()>(typed(json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 5}
    ])));
    assert_api_error(api.patch("web", &params, &failing).await, 422, "Invalid");
    let unchanged = fake
        .get("apps/v1", "Deployment", NAMESPACE, "web")
        .expect("stored");
    assert_eq!(unchanged["spec"]["replicas"], 3);
    assert_eq!(
        unchanged["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );

    let stale = json!({"metadata": {"resourceVersion": merged["metadata"]["resourceVersion"]}, "spec": {"replicas": 7}});
    assert_api_error(
        api.patch("web", &params, &Patch::Merge(stale)).await,
        409,
        "Conflict",
    );

    let ignored = as_json(
        api.patch(
            "web",
            &params,
            &Patch::Merge(json!({"status": {"replicas": 9}})),
        )
        .await
        .expect("status through the main resource"),
    );
    assert_eq!(
        ignored["status"]["replicas"], 1,
        "the main resource leaves status alone"
    );
    let status = as_json(
        api.patch_status(
            "web",
            &params,
            &Patch::Merge(json!({"status": {"observedGeneration": 3}})),
        )
        .await
        .expect("status patch"),
    );
    assert_eq!(
        status["status"],
        json!({"observedGeneration": 3, "replicas": 1})
    );
    assert_eq!(status["metadata"]["generation"], 3);

    let scale = api
        .patch_scale(
            "web",
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scale patch");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    let stored = fake
        .get("apps/v1", "Deployment", NAMESPACE, "web")
        .expect("stored");
    assert_eq!(stored["spec"]["replicas"], 2);

    let config_maps: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let apply = PatchParams::apply("slate");
    let first = Patch::Apply(config_map("applied", json!({}), json!({"a": "1"})));
    config_maps
        .patch("applied", &apply, &first)
        .await
        .expect("apply creates");
    let second = Patch::Apply(config_map("applied", json!({}), json!({"b": "2"})));
    let applied = config_maps
        .patch("applied", &apply, &second)
        .await
        .expect("apply merges");
    assert_eq!(applied.data.expect("data").len(), 2);
}

#[tokio::test]
async fn metadata_only_answers_never_carry_secret_data() {
    const VALUE: &str = "c3VwZXJzZWNyZXQ=";
    let fake = FakeKube::start().await;
    let secret = |label: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "db", "labels": {"rev": label}}, "data": {"password": VALUE}})
    };
    fake.apply(secret("1"));
    let client = fake.client();

    let full: Api<Secret> = Api::default_namespaced(client.clone());
    let read = serde_json::to_value(full.get("db").await.expect("get")).expect("json");
    assert_eq!(
        read["data"]["password"], VALUE,
        "a full read does carry the data"
    );

    let (store, _) = reflect(
        Api::<PartialObjectMeta<Secret>>::default_namespaced(client.clone()),
        watcher::Config::default(),
    );
    synced(&store).await;
    assert_eq!(store_names(&store), ["db"]);
    fake.apply(secret("2"));
    let db = ObjectRef::new("db").within(NAMESPACE);
    eventually("the new label", WAIT, || async {
        store
            .get(&db)
            .is_some_and(|s| s.labels().get("rev").map(String::as_str) == Some("2"))
    })
    .await;
    let accepts: Vec<String> = fake
        .requests()
        .into_iter()
        .filter_map(|r| Some(format!("{} {}", r.verb, r.accept?)))
        .collect();
    let listed = |verb: &str, mime: &str| {
        let prefix = format!("{verb} ");
        accepts
            .iter()
            .any(|a| a.starts_with(&prefix) && a.contains(mime))
    };
    assert!(
        listed("list", "as=PartialObjectMetadataList"),
        "{accepts:?}"
    );
    assert!(listed("watch", "as=PartialObjectMetadata"), "{accepts:?}");

    #[expect(deprecated, reason = "Slate may still use the older entry point")]
    let old_style = kube::runtime::metadata_watcher(full, watcher::Config::default());
    let first: Vec<String> = within(
        "metadata_watcher",
        old_style
            .take(3)
            .map_ok(|e| match e {
                Event::InitApply(s) => s.name_any(),
                other => format!("{other:?}").chars().take(8).collect(),
            })
            .try_collect(),
    )
    .await
    .expect("metadata_watcher events");
    assert_eq!(first[1], "db");

    // On the wire: neither the list nor the watch answer holds the data.
    let url = Secret::url_path(&(), Some(NAMESPACE));
    let list = RequestBuilder::new(&url)
        .list_metadata(&ListParams::default())
        .expect("request");
    let text = client.request_text(list).await.expect("metadata list");
    assert!(
        text.contains("\"PartialObjectMetadataList\"") && text.contains("\"db\""),
        "{text}"
    );
    assert!(
        !text.contains(VALUE) && !text.contains("\"data\""),
        "{text}"
    );
    let watch = RequestBuilder::new(&url)
        .watch_metadata(&WatchParams::default(), "0")
        .expect("request");
    let lines = client
        .request_stream(watch)
        .await
        .expect("metadata watch")
        .lines();
    let mut lines = std::pin::pin!(lines);
    fake.apply(secret("3"));
    for expected in ["ADDED", "MODIFIED"] {
        let line = next_line(&mut lines).await.expect("a line");
        assert!(
            line.contains(expected) && line.contains("\"PartialObjectMetadata\""),
            "{line}"
        );
        assert!(
            !line.contains(VALUE) && !line.contains("\"data\""),
            "{line}"
        );
    }
}

#[tokio::test]
async fn pod_logs_follow_appended_text() {
    let fake = FakeKube::start().await;
    fake.apply(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"},
                      "spec": {"containers": [{"name": "main", "image": "busybox"}]}}),
    );
    fake.set_pod_log(NAMESPACE, "worker", None, "one\ntwo\nthree\n");
    let pods: Api<Pod> = Api::default_namespaced(fake.client());

    let all = pods
        .logs("worker", &LogParams::default())
        .await
        .expect("logs");
    assert_eq!(all, "one\ntwo\nthree\n");
    let last = LogParams {
        tail_lines: Some(1),
        ..LogParams::default()
    };
    assert_eq!(pods.logs("worker", &last).await.expect("tail"), "three\n");

    let follow = LogParams {
        follow: true,
        tail_lines: Some(1),
        container: Some("main".to_owned()),
        ..LogParams::default()
    };
    let lines = pods
        .log_stream("worker", &follow)
        .await
        .expect("follow")
        .lines();
    let mut lines = std::pin::pin!(lines);
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("three"));
    fake.append_pod_log(NAMESPACE, "worker", None, "four\n");
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("four"));
    fake.append_pod_log(NAMESPACE, "worker", None, "five\nsix\n");
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("five"));
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("six"));
    fake.delete("v1", "Pod", NAMESPACE, "worker");
    assert_eq!(
        next_line(&mut lines).await,
        None,
        "the stream ends with the pod"
    );

    assert_api_error(
        pods.logs("ghost", &LogParams::default()).await,
        404,
        "NotFound",
    );
    let log_requests = fake
        .requests()
        .into_iter()
        .filter(|r| r.subresource.as_deref() == Some("log"))
        .filter(|r| r.verb == "get" && r.resource == "pods")
        .count();
    assert_eq!(log_requests, 4);
}

#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let fake = FakeKube::start().await;
    fake.apply(config_map(
        "web",
        json!({"app": "web", "tier": "front"}),
        json!({}),
    ));
    fake.apply(config_map(
        "api",
        json!({"app": "api", "tier": "back"}),
        json!({}),
    ));
    fake.apply(config_map("db", json!({"app": "db"}), json!({})));
    fake.apply(config_map("plain", json!({}), json!({})));
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let list = |params: ListParams| {
        let api = api.clone();
        async move { names::<ConfigMap>(&api.list(&params).await.expect("list").items) }
    };
    let labels = |s: &str| ListParams::default().labels(s);
    assert_eq!(list(labels("app=web")).await, ["web"]);
    assert_eq!(list(labels("app==web,tier=front")).await, ["web"]);
    assert_eq!(list(labels("app!=web")).await, ["api", "db", "plain"]);
    assert_eq!(list(labels("tier")).await, ["api", "web"]);
    assert_eq!(list(labels("!tier")).await, ["db", "plain"]);
    assert_eq!(list(labels("app in (web, api)")).await, ["api", "web"]);
    assert_eq!(
        list(labels("app notin (web)")).await,
        ["api", "db", "plain"]
    );
    assert_eq!(
        list(ListParams::default().fields("metadata.name=db")).await,
        ["db"]
    );
    assert_eq!(
        list(ListParams::default().fields("metadata.name!=db"))
            .await
            .len(),
        3
    );
    assert_api_error(api.list(&labels("app in (web")).await, 400, "BadRequest");

    for (name, kind) in [("e1", "Pod"), ("e2", "Deployment")] {
        fake.apply(
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                          "involvedObject": {"kind": kind, "name": "worker"}, "reason": "Started"}),
        );
    }
    let events: Api<CoreEvent> = Api::default_namespaced(fake.client());
    let pod_events = events
        .list(&ListParams::default().fields("involvedObject.name=worker,involvedObject.kind=Pod"))
        .await
        .expect("events");
    assert_eq!(names::<CoreEvent>(&pod_events.items), ["e1"]);

    let (store, _) = reflect(api, watcher::Config::default().labels("app=web"));
    synced(&store).await;
    assert_eq!(store_names(&store), ["web"]);
    fake.apply(config_map("api", json!({"app": "web"}), json!({})));
    eventually("api to enter the selection", WAIT, || async {
        store_names(&store) == ["api", "web"]
    })
    .await;
    fake.apply(config_map("web", json!({"app": "other"}), json!({})));
    eventually("web to leave the selection", WAIT, || async {
        store_names(&store) == ["api"]
    })
    .await;
}

#[tokio::test]
async fn injected_failures_surface_as_errors_then_recover() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({})));
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());

    fake.fail_next(2, 500);
    assert_api_error(api.list(&ListParams::default()).await, 500, "InternalError");
    assert_api_error(api.get("a").await, 500, "InternalError");
    api.get("a").await.expect("recovered");

    // kube's default client retries 503 by itself...
    fake.clear_requests();
    fake.fail_next(2, 503);
    api.get("a").await.expect("retried by kube");
    assert_eq!(fake.requests().len(), 3);

    // ...so it surfaces only without that retry.
    let mut config = fake.config();
    config.default_retry = false;
    let bare: Api<ConfigMap> =
        Api::default_namespaced(kube::Client::try_from(config).expect("client"));
    fake.fail_next(2, 503);
    assert_api_error(bare.get("a").await, 503, "ServiceUnavailable");
    assert_api_error(bare.get("a").await, 503, "ServiceUnavailable");
    bare.get("a").await.expect("recovered");
}

#[tokio::test]
async fn requests_are_recorded_with_their_rbac_verbs() {
    let fake = FakeKube::start().await;
    fake.apply(deployment());
    fake.apply(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                      "spec": {"containers": [{"name": "main", "image": "busybox"}]}}),
    );
    fake.clear_requests();
    let client = fake.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client);
    let params = PatchParams::default();

    deployments.get("web").await.expect("get");
    deployments
        .list(&ListParams::default())
        .await
        .expect("list");
    let mut watch = deployments
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    within("ADDED", watch.next())
        .await
        .expect("an event")
        .expect("ok");
    let created = config_maps
        .create(
            &PostParams::default(),
            &typed(config_map("x", json!({}), json!({}))),
        )
        .await
        .expect("create");
    config_maps
        .replace("x", &PostParams::default(), &created)
        .await
        .expect("replace");
    deployments
        .patch(
            "web",
            &params,
            &Patch::Strategic(json!({"spec": {"paused": true}})),
        )
        .await
        .expect("patch");
    deployments
        .patch_status(
            "web",
            &params,
            &Patch::Merge(json!({"status": {"replicas": 2}})),
        )
        .await
        .expect("patch status");
    pods.logs("p", &LogParams::default()).await.expect("logs");
    config_maps
        .delete("x", &DeleteParams::default())
        .await
        .expect("delete");
    config_maps
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("gone=yes"),
        )
        .await
        .expect("delete collection");

    let requests = fake.requests();
    let seen: Vec<String> = requests
        .iter()
        .map(|r| {
            let sub = r
                .subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            let name = r.name.as_deref().unwrap_or("*");
            format!("{} {}{sub} {name}", r.verb, r.resource)
        })
        .collect();
    assert_eq!(
        seen,
        [
            "get deployments web",
            "list deployments *",
            "watch deployments *",
            "create configmaps *",
            "update configmaps x",
            "patch deployments web",
            "patch deployments/status web",
            "get pods/log p",
            "delete configmaps x",
            "deletecollection configmaps *",
        ]
    );
    let get = &requests[0];
    assert_eq!(
        (
            get.method.as_str(),
            get.group.as_str(),
            get.version.as_str(),
            get.namespace.as_deref()
        ),
        ("GET", "apps", "v1", Some(NAMESPACE))
    );
    assert!(requests[2].query.contains("watch=true"));
    assert_eq!(
        requests[3].body.as_ref().expect("a body")["metadata"]["name"],
        "x"
    );
    assert_eq!(
        requests[5].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(requests[5].body, Some(json!({"spec": {"paused": true}})));
    assert!(requests[9].query.contains("labelSelector=gone%3Dyes"));
}

#[tokio::test]
async fn kubeconfig_and_discovery_lead_kube_to_the_fake() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({})));
    let path = std::env::temp_dir().join(format!(
        "fake-kubeconfig-{}.yaml",
        uuid::Uuid::now_v7().simple()
    ));
    fake.write_kubeconfig(&path);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("a kubeconfig");
    std::fs::remove_file(&path).expect("remove the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a config");
    assert_eq!(config.default_namespace, NAMESPACE);
    let client = kube::Client::try_from(config).expect("client");

    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "36")
    );
    let core = client.list_core_api_versions().await.expect("/api");
    assert_eq!(core.versions, ["v1"]);
    let groups = client.list_api_groups().await.expect("/apis");
    assert!(groups.groups.iter().any(|g| g.name == "apps"));
    let apps = client
        .list_api_group_resources("apps/v1")
        .await
        .expect("/apis/apps/v1");
    let deployments = apps.resources.iter().find(|r| r.name == "deployments");
    assert!(
        deployments.is_some_and(|r| r.namespaced),
        "{:?}",
        apps.resources
    );

    let listed = Api::<ConfigMap>::default_namespaced(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list through the kubeconfig");
    assert_eq!(names::<ConfigMap>(&listed.items), ["a"]);

    let widgets = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let unknown: Api<DynamicObject> = Api::default_namespaced_with(client, &widgets);
    assert_api_error(unknown.list(&ListParams::default()).await, 404, "NotFound");
}

#[tokio::test]
async fn streaming_list_watchers_are_served() {
    let fake = FakeKube::start().await;
    fake.apply(config_map("a", json!({}), json!({})));
    fake.apply(config_map("b", json!({}), json!({})));
    let (store, _) = reflect(
        Api::<ConfigMap>::default_namespaced(fake.client()),
        watcher::Config::default().streaming_lists(),
    );
    synced(&store).await;
    assert_eq!(store_names(&store), ["a", "b"]);
    fake.apply(config_map("c", json!({}), json!({})));
    eventually("c", WAIT, || async {
        store_names(&store) == ["a", "b", "c"]
    })
    .await;
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.verb == "watch"));
    assert!(requests[0].query.contains("sendInitialEvents=true"));
}

#[tokio::test]
async fn deletion_waits_for_finalizers() {
    let fake = FakeKube::start().await;
    let mut guarded = config_map("guarded", json!({}), json!({}));
    guarded["metadata"]["finalizers"] = json!(["slate.dev/keep"]);
    fake.apply(guarded);
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());

    api.delete("guarded", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = api.get("guarded").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());

    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("guarded", &PatchParams::default(), &release)
        .await
        .expect("remove the finalizer");
    assert!(fake.get("v1", "ConfigMap", NAMESPACE, "guarded").is_none());
    assert_api_error(api.get("guarded").await, 404, "NotFound");
}

/// The opt-in Deployment controller: ReplicaSets and revisions as rollout history sees them.
mod deployment_controller {
    use k8s_openapi::api::apps::v1::ReplicaSet;

    use super::*;

    const REVISION: &str = "deployment.kubernetes.io/revision";
    const HISTORY: &str = "deployment.kubernetes.io/revision-history";
    const CAUSE: &str = "kubernetes.io/change-cause";
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    /// Deployment `site`: two replicas of `image`, with the annotations `kubectl apply`
    /// and a change cause leave.
    fn site(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "site",
                "namespace": NAMESPACE,
                "labels": {"app": "site"},
                "annotations": {LAST_APPLIED: "{}", CAUSE: format!("deploy {image}")},
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "site"}},
                "template": {
                    "metadata": {"labels": {"app": "site", "tier": "web"}},
                    "spec": {"containers": [{"name": "main", "image": image}]},
                },
            },
        })
    }

    /// A strategic merge patch to `image` with `cause` as the change cause.
    fn set_image(image: &str, cause: &str) -> Patch<Value> {
        Patch::Strategic(json!({
            "metadata": {"annotations": {CAUSE: cause}},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}},
        }))
    }

    fn replica_sets(fake: &FakeKube) -> Vec<Value> {
        fake.list("apps/v1", "ReplicaSet", NAMESPACE)
    }

    fn revision(object: &Value) -> u64 {
        object["metadata"]["annotations"][REVISION]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    /// Every ReplicaSet as `REVISION IMAGE xREPLICAS`, by revision.
    fn rollout(fake: &FakeKube) -> Vec<String> {
        let mut sets = replica_sets(fake);
        sets.sort_by_key(revision);
        sets.iter()
            .map(|rs| {
                format!(
                    "{} {} x{}",
                    revision(rs),
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default(),
                    rs["spec"]["replicas"]
                )
            })
            .collect()
    }

    /// The one ReplicaSet running `image`.
    fn with_image(fake: &FakeKube, image: &str) -> Value {
        let mut found: Vec<Value> = replica_sets(fake)
            .into_iter()
            .filter(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == image)
            .collect();
        assert_eq!(found.len(), 1, "one ReplicaSet runs {image}: {found:?}");
        found.remove(0)
    }

    fn name_of(object: &Value) -> String {
        object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned()
    }

    fn stored_site(fake: &FakeKube) -> Value {
        fake.get("apps/v1", "Deployment", NAMESPACE, "site")
            .expect("the Deployment")
    }

    fn event_name<K: Resource>(event: kube::Result<WatchEvent<K>>) -> String {
        match event.expect("a watch event") {
            WatchEvent::Added(o) => format!("ADDED {}", o.meta().name.clone().unwrap_or_default()),
            WatchEvent::Modified(o) => {
                format!("MODIFIED {}", o.meta().name.clone().unwrap_or_default())
            }
            WatchEvent::Deleted(o) => {
                format!("DELETED {}", o.meta().name.clone().unwrap_or_default())
            }
            WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
            WatchEvent::Error(status) => format!("ERROR {} {}", status.code, status.reason),
        }
    }

    #[tokio::test]
    async fn a_new_deployment_gets_a_replica_set_at_revision_1() {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        let api: Api<Deployment> = Api::default_namespaced(fake.client());
        let created = api
            .create(&PostParams::default(), &typed(site("web:1")))
            .await
            .expect("create");
        let uid = created.metadata.uid.clone().expect("a uid");

        let sets = replica_sets(&fake);
        assert_eq!(sets.len(), 1, "{sets:?}");
        let rs = &sets[0];
        let name = name_of(rs);
        let hash = name
            .strip_prefix("site-")
            .expect("named after the Deployment");
        assert_eq!(hash.len(), 10, "{hash}");
        assert!(
            hash.chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{hash}"
        );
        let labels = json!({"app": "site", "tier": "web", "pod-template-hash": hash});
        assert_eq!(rs["metadata"]["labels"], labels);
        assert_eq!(rs["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(
            rs["spec"]["template"]["spec"],
            json!({"containers": [{"name": "main", "image": "web:1"}]})
        );
        assert_eq!(
            rs["spec"]["selector"],
            json!({"matchLabels": {"app": "site", "pod-template-hash": hash}})
        );
        assert_eq!(
            rs["metadata"]["ownerReferences"],
            json!([{
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "site",
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }])
        );
        assert_eq!(
            rs["metadata"]["annotations"],
            json!({
                CAUSE: "deploy web:1",
                REVISION: "1",
                "deployment.kubernetes.io/desired-replicas": "2",
                "deployment.kubernetes.io/max-replicas": "3",
            }),
            "the Deployment's annotations but last-applied-configuration, and the revision"
        );
        assert_eq!(rs["spec"]["replicas"], 2);
        assert_eq!(
            rs["status"],
            json!({
                "replicas": 2,
                "fullyLabeledReplicas": 2,
                "readyReplicas": 2,
                "availableReplicas": 2,
                "observedGeneration": 1,
            })
        );

        let got = api.get("site").await.expect("get");
        assert_eq!(
            got.annotations().get(REVISION).map(String::as_str),
            Some("1")
        );
        let status = got.status.expect("a status");
        assert_eq!(
            (
                status.observed_generation,
                status.replicas,
                status.updated_replicas,
                status.available_replicas
            ),
            (Some(1), Some(2), Some(2), Some(2))
        );
        let conditions = status.conditions.expect("conditions");
        let progressing = conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .expect("Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("True", Some("NewReplicaSetAvailable"))
        );
        assert_eq!(
            progressing.message.as_deref(),
            Some(format!("ReplicaSet \"{name}\" has successfully progressed.").as_str())
        );
        assert!(conditions
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True"));

        let typed_sets: Api<ReplicaSet> = Api::default_namespaced(fake.client());
        let listed = typed_sets
            .list(&ListParams::default())
            .await
            .expect("list ReplicaSets");
        assert_eq!(names::<ReplicaSet>(&listed.items), [name.as_str()]);
        let requests: Vec<String> = fake
            .requests()
            .into_iter()
            .map(|r| format!("{} {}", r.verb, r.resource))
            .collect();
        assert_eq!(
            requests,
            ["create deployments", "get deployments", "list replicasets"],
            "the controller's writes are not requests"
        );

        let mut twin = site("web:1");
        twin["metadata"]["name"] = json!("twin");
        fake.apply(twin);
        assert!(
            fake.get("apps/v1", "ReplicaSet", NAMESPACE, &format!("twin-{hash}"))
                .is_some(),
            "the same template hashes the same"
        );
    }

    #[tokio::test]
    async fn enabling_reconciles_existing_deployments_and_keeps_a_current_status() {
        let fake = FakeKube::start().await;
        let mut stalled = site("web:1");
        stalled["status"] = json!({
            "observedGeneration": 1,
            "replicas": 2,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ],
        });
        fake.apply(stalled.clone());
        assert!(replica_sets(&fake).is_empty(), "off until enabled");

        fake.enable_deployment_controller();
        assert_eq!(rollout(&fake), ["1 web:1 x2"]);
        let stored = stored_site(&fake);
        assert_eq!(stored["metadata"]["annotations"][REVISION], "1");
        assert_eq!(
            stored["status"], stalled["status"],
            "a status for the current generation stays"
        );

        let reapplied = fake.apply(stalled.clone());
        assert_eq!(
            reapplied["metadata"]["annotations"][REVISION], "1",
            "apply returns the object after the controller ran"
        );
        assert_eq!(reapplied["status"], stalled["status"]);
        assert_eq!(rollout(&fake), ["1 web:1 x2"]);
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn a_template_patch_rolls_out_revision_2_and_scales_the_old_one_down() {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        let api: Api<Deployment> = Api::default_namespaced(fake.client());
        api.create(&PostParams::default(), &typed(site("web:1")))
            .await
            .expect("create");
        let first = name_of(&with_image(&fake, "web:1"));

        let params = PatchParams::default();
        api.patch("site", &params, &set_image("web:2", "deploy web:2"))
            .await
            .expect("patch the image");
        assert_eq!(rollout(&fake), ["1 web:1 x0", "2 web:2 x2"]);
        let new = with_image(&fake, "web:2");
        let second = name_of(&new);
        assert_ne!(second, first);
        assert_eq!(new["metadata"]["annotations"][CAUSE], "deploy web:2");
        assert_eq!(new["metadata"]["annotations"][REVISION], "2");
        assert!(new["metadata"]["annotations"].get(LAST_APPLIED).is_none());
        let old = with_image(&fake, "web:1");
        assert_eq!(old["metadata"]["annotations"][CAUSE], "deploy web:1");
        assert_eq!(
            (&old["status"]["replicas"], &old["status"]["readyReplicas"]),
            (&json!(0), &json!(0))
        );

        let stored = stored_site(&fake);
        assert_eq!(stored["metadata"]["annotations"][REVISION], "2");
        assert_eq!(stored["metadata"]["generation"], 2);
        assert_eq!(stored["status"]["observedGeneration"], 2);
        assert_eq!(
            stored["status"]["conditions"][1]["message"],
            format!("ReplicaSet \"{second}\" has successfully progressed.")
        );

        // The same patch again changes nothing, so nothing is written.
        let versions = |fake: &FakeKube| -> Vec<Value> {
            let mut all: Vec<Value> = replica_sets(fake)
                .iter()
                .map(|rs| rs["metadata"]["resourceVersion"].clone())
                .collect();
            all.push(stored_site(fake)["metadata"]["resourceVersion"].clone());
            all
        };
        let before = versions(&fake);
        api.patch("site", &params, &set_image("web:2", "deploy web:2"))
            .await
            .expect("patch again");
        assert_eq!(versions(&fake), before);

        // Scaling goes to the current ReplicaSet only, and is no new revision.
        api.patch_scale(
            "site",
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
        assert_eq!(rollout(&fake), ["1 web:1 x0", "2 web:2 x3"]);
        let scaled = with_image(&fake, "web:2");
        assert_eq!(scaled["status"]["availableReplicas"], 3);
        assert_eq!(
            scaled["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
            "3"
        );
    }

    #[tokio::test]
    async fn putting_an_old_template_back_rolls_back_to_its_replica_set() {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        let api: Api<Deployment> = Api::default_namespaced(fake.client());
        api.create(&PostParams::default(), &typed(site("web:1")))
            .await
            .expect("create");
        let first = name_of(&with_image(&fake, "web:1"));
        let params = PatchParams::default();
        api.patch("site", &params, &set_image("web:2", "deploy web:2"))
            .await
            .expect("to web:2");
        let second = name_of(&with_image(&fake, "web:2"));

        api.patch("site", &params, &set_image("web:1", "roll back"))
            .await
            .expect("back to web:1");
        assert_eq!(rollout(&fake), ["2 web:2 x0", "3 web:1 x2"]);
        let back = with_image(&fake, "web:1");
        assert_eq!(name_of(&back), first, "no new ReplicaSet");
        assert_eq!(back["metadata"]["annotations"][HISTORY], "1");
        assert_eq!(back["metadata"]["annotations"][CAUSE], "roll back");
        assert_eq!(stored_site(&fake)["metadata"]["annotations"][REVISION], "3");

        api.patch("site", &params, &set_image("web:2", "forward"))
            .await
            .expect("to web:2 again");
        assert_eq!(rollout(&fake), ["3 web:1 x0", "4 web:2 x2"]);
        let again = with_image(&fake, "web:2");
        assert_eq!(name_of(&again), second);
        assert_eq!(again["metadata"]["annotations"][HISTORY], "2");

        api.patch("site", &params, &set_image("web:1", "back again"))
            .await
            .expect("to web:1 again");
        assert_eq!(rollout(&fake), ["4 web:2 x0", "5 web:1 x2"]);
        assert_eq!(
            with_image(&fake, "web:1")["metadata"]["annotations"][HISTORY],
            "1,3"
        );
        assert_eq!(stored_site(&fake)["metadata"]["annotations"][REVISION], "5");
        assert_eq!(replica_sets(&fake).len(), 2);
    }

    #[tokio::test]
    async fn a_paused_deployment_rolls_nothing_out_until_resumed() {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        let api: Api<Deployment> = Api::default_namespaced(fake.client());
        api.create(&PostParams::default(), &typed(site("web:1")))
            .await
            .expect("create");
        let params = PatchParams::default();

        api.patch(
            "site",
            &params,
            &Patch::Strategic(json!({"spec": {
                "paused": true,
                "template": {"spec": {"containers": [{"name": "main", "image": "web:2"}]}},
            }})),
        )
        .await
        .expect("pause and change the image");
        assert_eq!(rollout(&fake), ["1 web:1 x2"]);
        let paused = stored_site(&fake);
        assert_eq!(paused["metadata"]["annotations"][REVISION], "1");
        assert_eq!(paused["metadata"]["generation"], 2);
        assert_eq!(paused["status"]["observedGeneration"], 1);

        api.patch(
            "site",
            &params,
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .expect("resume");
        assert_eq!(rollout(&fake), ["1 web:1 x0", "2 web:2 x2"]);
        let resumed = stored_site(&fake);
        assert_eq!(resumed["metadata"]["annotations"][REVISION], "2");
        assert_eq!(resumed["status"]["observedGeneration"], 3);
    }

    #[tokio::test]
    async fn the_revision_history_limit_deletes_the_oldest_replica_sets() {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        let limited = |image: &str| {
            let mut deployment = site(image);
            deployment["spec"]["revisionHistoryLimit"] = json!(2);
            deployment
        };
        fake.apply(limited("web:1"));
        let mut names = vec![name_of(&with_image(&fake, "web:1"))];
        for n in 2..=6 {
            let image = format!("web:{n}");
            fake.apply(limited(&image));
            names.push(name_of(&with_image(&fake, &image)));
        }
        assert_eq!(rollout(&fake), ["4 web:4 x0", "5 web:5 x0", "6 web:6 x2"]);
        for gone in &names[..3] {
            assert!(
                fake.get("apps/v1", "ReplicaSet", NAMESPACE, gone).is_none(),
                "{gone} was deleted"
            );
        }
        let mut kept: Vec<String> = replica_sets(&fake).iter().map(name_of).collect();
        kept.sort();
        let mut expected = names[3..].to_vec();
        expected.sort();
        assert_eq!(kept, expected);
        assert_eq!(stored_site(&fake)["metadata"]["annotations"][REVISION], "6");
    }

    #[tokio::test]
    async fn watchers_see_the_controllers_replica_set_changes() {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        let mut deployment = site("web:1");
        deployment["spec"]["revisionHistoryLimit"] = json!(1);
        fake.apply(deployment);
        let first = name_of(&with_image(&fake, "web:1"));
        let sets: Api<ReplicaSet> = Api::default_namespaced(fake.client());
        let listed = sets.list(&ListParams::default()).await.expect("list");
        let version = listed.metadata.resource_version.expect("a resourceVersion");
        let stream = sets
            .watch(&WatchParams::default(), &version)
            .await
            .expect("watch");
        let (store, _) = reflect(sets.clone(), watcher::Config::default());
        synced(&store).await;

        let api: Api<Deployment> = Api::default_namespaced(fake.client());
        let params = PatchParams::default();
        api.patch("site", &params, &set_image("web:2", "deploy web:2"))
            .await
            .expect("to web:2");
        let second = name_of(&with_image(&fake, "web:2"));
        let mut both = vec![first.clone(), second.clone()];
        both.sort();
        eventually("the reflector to see the new ReplicaSet", WAIT, || async {
            store_names(&store) == both
        })
        .await;
        api.patch("site", &params, &set_image("web:3", "deploy web:3"))
            .await
            .expect("to web:3");
        let third = name_of(&with_image(&fake, "web:3"));

        let events: Vec<String> =
            within("five events", stream.take(5).map(event_name).collect()).await;
        assert_eq!(
            events,
            [
                format!("ADDED {second}"),
                format!("MODIFIED {first}"),
                format!("ADDED {third}"),
                format!("MODIFIED {second}"),
                format!("DELETED {first}"),
            ]
        );
        let mut expected = vec![second.clone(), third.clone()];
        expected.sort();
        eventually("the reflector to follow", WAIT, || async {
            store_names(&store) == expected
        })
        .await;
    }
}
