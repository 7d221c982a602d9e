//! The architecture page at scale. Prints figures; asserts nothing about time.
//!
//! 1. Topology build + SVG render for a namespace of 2,000 objects (80 apps, each a
//!    Deployment with a ReplicaSet, 15 pods, a Service, two ConfigMaps and a Secret,
//!    plus PVCs, Jobs and Events), against the baseline of drawing the same namespace
//!    with every pod as its own box (no folding), measured in the same run.
//! 2. SSE fan-out: 500 browsers connected to a real Slate (connected to the fake API
//!    server); one Deployment changes; the time until each has the change, against the
//!    baseline of one connected browser in the same run. Both include the 200 ms debounce
//!    that gathers a burst of cluster events into one change.
//!
//! Run: SLATE_TEST_DATABASE_URL=… cargo bench -p slate-tests --bench architecture
//! (any PostgreSQL where the user may create databases, e.g. the one `slate db start`
//! prints).

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::architecture::diagram::render_svg;
use app::architecture::{Source, TopoNode, Topology};
use chrono::Utc;
use futures::StreamExt as _;
use serde_json::{json, Value};
use server::cluster::objects::Objects;
use server::cluster::topology::{build, External};
use slate_tests::eventually;
use slate_tests::fake_kube::FakeKube;
use slate_tests::kube_fixtures::{apply_settled_base, set_deployment_stalled};

fn namespace_of_2000() -> Vec<Value> {
    let mut docs = Vec::new();
    for a in 0..80 {
        let name = format!("app-{a:02}");
        let layer = ["application", "processing", "data"][a % 3];
        let labels = json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ai-film",
            "slate.dev/layer": layer});
        let uid = format!("uid-{name}");
        docs.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "uid": uid, "generation": 1, "labels": labels},
            "spec": {"replicas": 15, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main", "image": format!("registry.example/{name}:1.{a}"),
                    "env": [{"name": "UPSTREAM", "value": format!("http://app-{:02}:8080", (a + 1) % 80)},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": format!("{name}-creds"), "key": "p"}}}],
                    "envFrom": [{"configMapRef": {"name": format!("{name}-config")}}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{:02}", a % 40)}},
                                {"name": "extra", "configMap": {"name": format!("{name}-extra")}}]}}},
            "status": {"observedGeneration": 1, "replicas": 15, "updatedReplicas": 15, "readyReplicas": 15, "availableReplicas": 15}}));
        let rs_uid = format!("uid-{name}-rs");
        docs.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-7f9"), "uid": rs_uid, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true}]},
            "spec": {"selector": {}}}));
        for p in 0..15 {
            docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-7f9-{p}"), "uid": format!("uid-{name}-{p}"), "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-7f9"), "uid": rs_uid, "controller": true}]},
                "spec": {"containers": [{"name": "main"}], "nodeName": format!("node-{}", p % 6)},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
        }
        docs.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"port": 8080}]}}));
        for cm in ["config", "extra"] {
            docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-{cm}")}, "data": {"a": "b"}}));
        }
        docs.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-creds")}}));
    }
    for v in 0..40 {
        docs.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": format!("data-{v:02}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}, "status": {"phase": "Bound"}}));
    }
    let mut i = 0;
    while docs.len() < 2000 {
        docs.push(json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": format!("e{i}")},
            "involvedObject": {"kind": "Pod", "name": format!("app-{:02}-7f9-0", i % 80)}, "reason": "Pulled", "message": "ok"}));
        i += 1;
    }
    docs
}

/// The baseline: the same topology with every pod drawn as its own box.
fn unfolded(mut t: Topology, objects: &Objects) -> Topology {
    for p in &objects.pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut node: TopoNode = t.nodes[0].clone();
        node.id = format!("Pod/{name}");
        node.kind = "Pod".into();
        node.name = name;
        t.nodes.push(node);
    }
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bench_render() {
    let docs = namespace_of_2000();
    let objects = Objects::from_documents(&docs).expect("valid objects");
    let source = Source::Live {
        unreachable_since: None,
        synced: true,
        unwatched: Vec::new(),
    };
    let external = External::default();
    let runs = 30;
    let (mut build_t, mut render_t, mut base_t) = (vec![], vec![], vec![]);
    let mut boxes = 0;
    let mut svg_len = 0;
    let mut base_boxes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let t = build(&objects, "ai-film", source.clone(), &external, Utc::now());
        build_t.push(start.elapsed());
        let start = Instant::now();
        let svg = render_svg(&t, true, None);
        render_t.push(start.elapsed());
        boxes = t.nodes.len();
        svg_len = svg.len();
        let flat = unfolded(t, &objects);
        base_boxes = flat.nodes.len();
        let start = Instant::now();
        let svg = render_svg(&flat, true, None);
        base_t.push(start.elapsed());
        std::hint::black_box(svg);
    }
    let (b, r, base) = (median(build_t), median(render_t), median(base_t));
    println!(
        "topology of {} objects → {boxes} boxes, SVG {} KiB (median of {runs})",
        objects.len(),
        svg_len / 1024
    );
    println!("  build   {:>8.2} ms", ms(b));
    println!("  render  {:>8.2} ms", ms(r));
    println!("  total   {:>8.2} ms   (aim: under 20 ms)", ms(b + r));
    println!("  baseline, every pod drawn ({base_boxes} boxes): render {:>8.2} ms; folded build+render is {:.2}× of it", ms(base), ms(b + r) / ms(base));
}

async fn fan_out(
    app: &slate_tests::TestApp,
    fake: &FakeKube,
    clients: usize,
    stall: bool,
) -> (Duration, Duration) {
    let lead = app.client();
    assert!(app
        .login(&lead, slate_tests::ADMIN_EMAIL, slate_tests::PASSWORD)
        .await
        .status()
        .is_success());
    let ready = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    for _ in 0..clients {
        let (lead, url, ready, tx) = (
            lead.clone(),
            app.url("/api/lead/topology/events"),
            ready.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            let res = lead.get(url).send().await.expect("stream");
            let mut body = res.bytes_stream();
            let mut text = String::new();
            // The snapshot first.
            while !text.contains("\n\n") {
                text.push_str(&String::from_utf8_lossy(
                    &body.next().await.unwrap().unwrap(),
                ));
            }
            ready.wait().await;
            text.clear();
            while !text.contains("event: change") {
                match body.next().await {
                    Some(Ok(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                    _ => return,
                }
            }
            let _ = tx.send(Instant::now());
        });
    }
    drop(tx);
    ready.wait().await;
    let start = Instant::now();
    set_deployment_stalled(fake, "slate", stall);
    let mut times = Vec::new();
    while let Some(at) = rx.recv().await {
        times.push(at - start);
        if times.len() == clients {
            break;
        }
    }
    assert_eq!(times.len(), clients, "every client got the change");
    times.sort();
    (times[0], times[clients - 1])
}

async fn bench_fan_out() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    let dir = std::env::temp_dir().join(format!(
        "slate-bench-kube-{}",
        uuid::Uuid::now_v7().simple()
    ));
    fake.write_kubeconfig(&dir);
    let app = slate_tests::spawn_app_with(|c| {
        c.kube = server::config::KubeMode::Auto;
        c.kubeconfig = Some(dir.display().to_string());
    })
    .await;
    let lead = app.client();
    assert!(app
        .login(&lead, slate_tests::ADMIN_EMAIL, slate_tests::PASSWORD)
        .await
        .status()
        .is_success());
    eventually(
        "the watchers to settle",
        Duration::from_secs(30),
        || async {
            let t: Topology = app
                .call(&lead, "/api/lead/topology", &[])
                .await
                .json()
                .await
                .expect("a topology");
            let synced = matches!(t.source, Source::Live { synced: true, .. });
            synced && t.node("Deployment/slate").is_some()
        },
    )
    .await;
    let (one_first, one_last) = fan_out(&app, &fake, 1, true).await;
    let (first, last) = fan_out(&app, &fake, 500, false).await;
    println!("SSE fan-out of one cluster change (fake API server → watcher → 200 ms debounce → every browser)");
    println!(
        "  baseline, 1 client:  {:>8.1} ms",
        ms(one_last.max(one_first))
    );
    println!(
        "  500 clients: first   {:>8.1} ms, last {:>8.1} ms   (aim: all within 500 ms)",
        ms(first),
        ms(last)
    );
    println!(
        "  last of 500 / 1 client: {:.2}×; spread first→last {:.1} ms",
        ms(last) / ms(one_last),
        ms(last - first)
    );
    let _ = std::fs::remove_file(dir);
}

fn main() {
    bench_render();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench_fan_out());
}
