//! The architecture over HTTP, with the whole server connected to the fake API server
//! through a kubeconfig: who may see it, the event stream (snapshot, changes, resume with
//! Last-Event-ID), the exports, and the desired state when there is no cluster.

use std::time::Duration;

use app::architecture::{Health, Source, Topology, TopologyChange};
use futures::StreamExt as _;
use server::config::KubeMode;
use slate_tests::fake_kube::FakeKube;
use slate_tests::kube_fixtures::*;
use slate_tests::{eventually, seen, spawn_app_with, TestApp};

struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<u64>,
    data: String,
}

impl Sse {
    async fn open(app: &TestApp, client: &reqwest::Client, last_event_id: Option<u64>) -> Sse {
        let mut req = client.get(app.url("/api/lead/topology/events"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Sse {
            body: Box::pin(res.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        e.event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        e.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if e.data.is_empty() {
                    continue;
                }
                return Some(e);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn app_on(fake: &FakeKube) -> TestApp {
    let dir = std::env::temp_dir().join(format!(
        "slate-kubeconfig-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    fake.write_kubeconfig(&path);
    spawn_app_with(|c| {
        c.kube = KubeMode::Auto;
        c.kubeconfig = Some(format!("/nonexistent/first:{}", path.display()));
    })
    .await
}

#[tokio::test]
async fn leads_follow_the_cluster_live_and_resume_where_they_left_off() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    let app = app_on(&fake).await;
    let lead = app.signed_in("lead@example.com", "lead").await;

    // The first event is a snapshot; wait until it shows the synced cluster.
    let mut sse = Sse::open(&app, &lead, None).await;
    let first = sse.next(Duration::from_secs(10)).await.expect("a snapshot");
    assert_eq!(first.event, "snapshot");
    let mut topology: Topology = serde_json::from_str(&first.data).unwrap();
    assert_eq!(first.id, Some(topology.version));
    while !matches!(topology.source, Source::Live { synced: true, .. })
        || topology.node("Deployment/slate").is_none()
    {
        let e = sse
            .next(Duration::from_secs(10))
            .await
            .expect("changes until synced");
        assert_eq!(e.event, "change");
        let change: TopologyChange = serde_json::from_str(&e.data).unwrap();
        assert!(topology.apply(&change), "changes follow each other");
    }

    // A Deployment degrades: the change arrives on its own.
    set_deployment_stalled(&fake, "slate", true);
    let e = sse.next(Duration::from_secs(10)).await.expect("a change");
    let change: TopologyChange = serde_json::from_str(&e.data).unwrap();
    assert!(topology.apply(&change));
    assert_eq!(
        topology.node("Deployment/slate").unwrap().health,
        Health::Degraded
    );
    let last_seen = topology.version;
    drop(sse);

    // While the page is away, it recovers; on return only the missed change is sent.
    set_deployment_stalled(&fake, "slate", false);
    eventually(
        "Slate to see the recovery",
        Duration::from_secs(10),
        || async {
            // A page opened now starts from a snapshot of what Slate sees.
            let mut look = Sse::open(&app, &lead, None).await;
            let snapshot = look
                .next(Duration::from_secs(10))
                .await
                .expect("a snapshot");
            let now: Topology = serde_json::from_str(&snapshot.data).unwrap();
            seen(now.node("Deployment/slate").map(|n| n.health), |h| {
                *h == Some(Health::Healthy)
            })
        },
    )
    .await;
    let mut sse = Sse::open(&app, &lead, Some(last_seen)).await;
    let e = sse
        .next(Duration::from_secs(10))
        .await
        .expect("the missed change");
    assert_eq!(e.event, "change");
    let change: TopologyChange = serde_json::from_str(&e.data).unwrap();
    assert_eq!(change.from_version, last_seen);
    assert!(topology.apply(&change));
    assert_eq!(
        topology.node("Deployment/slate").unwrap().health,
        Health::Healthy
    );

    // A Last-Event-ID from nowhere gets a fresh snapshot.
    let mut sse = Sse::open(&app, &lead, Some(999_999)).await;
    assert_eq!(
        sse.next(Duration::from_secs(10)).await.unwrap().event,
        "snapshot"
    );
    app.stop().await;
}

#[tokio::test]
async fn exports_and_access() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    apply_pods(&fake, "comfyui", &[unschedulable_gpu()]);
    let app = app_on(&fake).await;
    let lead = app.signed_in("lead2@example.com", "lead").await;
    // Wait for the live state to be read.
    let ascii = eventually(
        "the live state to be read",
        Duration::from_secs(10),
        || async {
            let ascii = lead
                .get(app.url("/api/lead/architecture.txt"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen(ascii, |a| a.contains("[FAIL]"))
        },
    )
    .await;
    assert!(ascii.starts_with("ai-film -- live"), "{ascii}");
    assert!(ascii.contains("PROCESSING LAYER [FAIL]"), "{ascii}");
    assert!(ascii.contains("slate (Service) --selects--> slate (Deployment)"));

    let svg = lead
        .get(app.url("/api/lead/architecture.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        svg.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    assert!(svg.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("architecture.svg"));
    let svg = svg.text().await.unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("Waiting for a free GPU"));
    assert!(!svg.contains("tabindex"), "the export is not interactive");
    let mermaid = lead
        .get(app.url("/api/lead/architecture.mmd"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(mermaid.contains("flowchart TB") && mermaid.contains("-->|routes|"));

    // The page itself renders the diagram on the server.
    let page = lead.get(app.url("/architecture")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("data-node=\"Deployment/comfyui\""),
        "the diagram is in the HTML"
    );

    // Creators see none of it; signed-out visitors are sent to sign in.
    let creator = app.signed_in("creator@example.com", "creator").await;
    for path in [
        "/architecture",
        "/api/lead/architecture.svg",
        "/api/lead/topology/events",
    ] {
        let res = creator.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
    let res = app
        .bare_client()
        .get(app.url("/api/lead/architecture.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .call(&lead, "/api/lead/topology_node", &[("id", "nonsense")])
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        .call(
            &lead,
            "/api/lead/topology_node",
            &[("id", "Deployment/none")],
        )
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .call(
            &lead,
            "/api/lead/topology_node",
            &[("id", "Deployment/comfyui")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let detail: serde_json::Value = res.json().await.unwrap();
    assert_eq!(detail["pods"][0]["phase"], "Pending");
    app.stop().await;
}

#[tokio::test]
async fn without_a_cluster_the_desired_state_is_shown_and_labelled() {
    let app = spawn_app_with(|c| c.kube = KubeMode::Off).await;
    let admin = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let ascii = admin
        .get(app.url("/api/lead/architecture.txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ascii.starts_with("ai-film -- desired state from the k8s/ manifests (SLATE_KUBE=off)"),
        "{ascii}"
    );
    assert!(ascii.contains("comfyui") && ascii.contains("GPU"));
    let html = admin
        .get(app.url("/architecture"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Not live: this is the desired state"),
        "the page says so"
    );
    // A kubeconfig that names nothing readable also falls back, with the reason.
    let app2 = spawn_app_with(|c| {
        c.kube = KubeMode::Auto;
        c.kubeconfig = Some("/nonexistent/kubeconfig".into());
    })
    .await;
    let admin2 = app2.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let ascii = admin2
        .get(app2.url("/api/lead/architecture.txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ascii.contains("KUBECONFIG names no file"), "{ascii}");
    app.stop().await;
    app2.stop().await;
}
