//! The architecture page: the live diagram, its status line, the exports, and a side
//! panel with the pods, conditions, events and containers of the box clicked.

use leptos::prelude::*;

use super::diagram::render_svg;
use super::*;
use crate::components::{format_time, ErrorNote, PageHeader, Time};

/// Where the browser follows changes (snapshot first, then changes; resumable).
pub const EVENTS_URL: &str = "/api/lead/topology/events";

/// Keeps `live` up to date from the server's event stream.
fn follow_topology(live: RwSignal<Option<Topology>>) {
    #[cfg(feature = "hydrate")]
    {
        use std::cell::RefCell;
        use std::rc::Rc;
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast as _;

        type Held = (
            web_sys::EventSource,
            Closure<dyn Fn(web_sys::MessageEvent)>,
            Closure<dyn Fn(web_sys::MessageEvent)>,
        );
        fn open(live: RwSignal<Option<Topology>>, slot: Rc<RefCell<Option<Held>>>) {
            let Ok(source) = web_sys::EventSource::new(EVENTS_URL) else {
                return;
            };
            let on_snapshot =
                Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                    if let Some(t) = e
                        .data()
                        .as_string()
                        .and_then(|d| serde_json::from_str::<Topology>(&d).ok())
                    {
                        live.set(Some(t));
                    }
                });
            let again = slot.clone();
            let on_change =
                Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                    let Some(change) = e
                        .data()
                        .as_string()
                        .and_then(|d| serde_json::from_str::<TopologyChange>(&d).ok())
                    else {
                        return;
                    };
                    let mut applied = false;
                    live.update(|t| {
                        if let Some(t) = t {
                            applied = t.version >= change.version || t.apply(&change);
                        }
                    });
                    if !applied {
                        // Out of step: start over with a fresh snapshot.
                        let slot = again.clone();
                        if let Some((source, ..)) = slot.borrow_mut().take() {
                            source.close();
                        }
                        open(live, slot);
                    }
                });
            let _ = source
                .add_event_listener_with_callback("snapshot", on_snapshot.as_ref().unchecked_ref());
            let _ = source
                .add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
            *slot.borrow_mut() = Some((source, on_snapshot, on_change));
        }

        Effect::new(move |_| {
            let slot: Rc<RefCell<Option<Held>>> = Rc::new(RefCell::new(None));
            open(live, slot.clone());
            let kept = send_wrapper::SendWrapper::new(slot);
            on_cleanup(move || {
                if let Some((source, ..)) = kept.take().borrow_mut().take() {
                    source.close();
                }
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = live;
}

/// The `data-node` of the box an event happened in, if any.
#[cfg(feature = "hydrate")]
fn node_of(target: Option<web_sys::EventTarget>) -> Option<String> {
    use wasm_bindgen::JsCast as _;
    let element = target?.dyn_into::<web_sys::Element>().ok()?;
    element
        .closest("[data-node]")
        .ok()??
        .get_attribute("data-node")
}

#[component]
pub fn ArchitecturePage() -> impl IntoView {
    let initial = Resource::new(|| (), |_| get_topology());
    let live = RwSignal::new(None::<Topology>);
    follow_topology(live);
    let current = Memo::new(move |_| live.get().or_else(|| initial.get().and_then(Result::ok)));
    let selected = RwSignal::new(None::<String>);

    let on_click = move |e: leptos::ev::MouseEvent| {
        #[cfg(feature = "hydrate")]
        if let Some(id) = node_of(e.target()) {
            selected.set(Some(id));
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = e;
    };
    let on_key = move |e: leptos::ev::KeyboardEvent| {
        #[cfg(feature = "hydrate")]
        match e.key().as_str() {
            "Enter" | " " => {
                if let Some(id) = node_of(e.target()) {
                    e.prevent_default();
                    selected.set(Some(id));
                }
            }
            "Escape" => selected.set(None),
            _ => {}
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = e;
    };

    view! {
        <PageHeader title="Architecture" subtitle="The pipeline as it runs: every workload, service, volume and setting in the namespace, with its health."/>
        <Transition fallback=|| view! { <p class="loading">"Loading the topology…"</p> }>
            {move || initial.get().map(|first| match first {
                Err(e) if live.with(Option::is_none) => view! { <ErrorNote error=e/> }.into_any(),
                _ => view! {
                    {move || current.get().map(|t| status_bar(&t))}
                    <div class="architecture">
                        <div
                            class="diagram-wrap card"
                            id="diagram"
                            data-version=move || current.with(|t| t.as_ref().map(|t| t.version))
                            on:click=on_click
                            on:keydown=on_key
                            inner_html=move || {
                                let chosen = selected.get();
                                current.with(|t| t.as_ref().map(|t| render_svg(t, true, chosen.as_deref())).unwrap_or_default())
                            }
                        ></div>
                        {move || selected.get().map(|id| view! { <NodePanel id selected current/> })}
                    </div>
                }.into_any(),
            })}
        </Transition>
    }
}

fn status_bar(t: &Topology) -> impl IntoView {
    let (class, text) = match &t.source {
        Source::Live {
            unreachable_since: Some(since),
            ..
        } => (
            "notice error",
            format!(
                "Cluster unreachable since {} — showing the last known state.",
                format_time(*since)
            ),
        ),
        Source::Live { synced: false, .. } => (
            "notice",
            "Connected to the cluster; reading its objects…".to_owned(),
        ),
        Source::Live { .. } => (
            "notice ok",
            format!("Live from the cluster, namespace {}.", t.namespace),
        ),
        Source::Desired { why } => (
            "notice warn",
            format!(
                "Not live: this is the desired state from the k8s/ manifests built into Slate ({why})."
            ),
        ),
    };
    let unwatched = match &t.source {
        Source::Live { unwatched, .. } if !unwatched.is_empty() => Some(view! {
            <div class="notice warn" id="cluster-unwatched">
                "Not watched, so not drawn: "
                <ul>
                    {unwatched.iter().map(|u| view! {
                        <li><code>{u.kind.clone()}</code>" — "{u.reason.clone()}</li>
                    }).collect_view()}
                </ul>
            </div>
        }),
        _ => None,
    };
    let counts = t.health_counts();
    let folded = t.folded.then(|| view! {
        <span class="muted">"Large namespace: Services and configuration are folded into the workloads that use them."</span>
    });
    view! {
        <div class="arch-status">
            <div class=class role="status" id="cluster-status">{text}</div>
            {unwatched}
            <div class="arch-summary">
                <span class="muted">{format!("{} objects, {} boxes · updated ", t.objects, t.nodes.len())}<Time at=t.generated_at/></span>
                <span class="health-counts">
                    {counts.into_iter().map(|(h, n)| view! {
                        <span class=format!("pill health-{}", h.label().to_ascii_lowercase())>{format!("{} {} {}", h.icon(), n, h.label())}</span>
                    }).collect_view()}
                </span>
                {folded}
                <span class="exports">
                    "Export: "
                    <a href="/api/lead/architecture.svg" download="architecture.svg">"SVG"</a>" · "
                    <a href="/api/lead/architecture.mmd" download="architecture.mmd">"Mermaid"</a>" · "
                    <a href="/api/lead/architecture.txt" download="architecture.txt">"ASCII"</a>
                </span>
            </div>
        </div>
    }
}

#[component]
fn NodePanel(
    id: String,
    selected: RwSignal<Option<String>>,
    current: Memo<Option<Topology>>,
) -> impl IntoView {
    // Refetch when the box itself changes.
    let key = {
        let id = id.clone();
        Memo::new(move |_| {
            (
                id.clone(),
                current.with(|t| t.as_ref().and_then(|t| t.node(&id).cloned())),
            )
        })
    };
    let detail = Resource::new(move || key.get(), |(id, _)| get_node_detail(id));
    view! {
        <aside class="card node-panel" id="node-panel" aria-label="Details">
            <div class="panel-head">
                <h2>{id.clone()}</h2>
                <button type="button" class="btn small" on:click=move |_| selected.set(None)>"Close"</button>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || detail.get().map(|r| match r {
                    Ok(d) => detail_view(d).into_any(),
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                })}
            </Transition>
        </aside>
    }
}

fn detail_view(d: NodeDetail) -> impl IntoView {
    let NodeDetail {
        node,
        pods,
        conditions,
        events,
        containers,
        related,
    } = d;
    let health_class = format!("pill health-{}", node.health.label().to_ascii_lowercase());
    view! {
        <p>
            <span class=health_class>{format!("{} {}", node.health.icon(), node.health.label())}</span>
            " "{node.kind.clone()}" · "{node.layer.label()}
            {node.gpu.then(|| view! { " " <span class="pill gpu">"GPU"</span> })}
        </p>
        {node.reason.clone().map(|r| view! { <p class="reason">{r}</p> })}
        {diagram::replicas_text(node.ready, node.desired).map(|r| view! { <p class="muted">{r}{format!(" · {} pods", node.pods)}</p> })}
        {(!node.facts.is_empty()).then(|| view! { <p class="muted">{node.facts.join(" · ")}</p> })}
        {(!pods.is_empty()).then(|| view! {
            <h3>"Pods"</h3>
            <table class="table compact">
                <thead><tr><th>"Name"</th><th>"Phase"</th><th>"Restarts"</th><th>"Node"</th></tr></thead>
                <tbody>
                    {pods.into_iter().map(|p| view! {
                        <tr>
                            <td><code>{p.name}</code>{p.reason.map(|r| view! { <div class="reason">{r}</div> })}</td>
                            <td>{p.phase}{if p.ready { " ✓" } else { "" }}</td>
                            <td>{p.restarts}</td>
                            <td>{p.node.unwrap_or_else(|| "—".into())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        })}
        {(!conditions.is_empty()).then(|| view! {
            <h3>"Conditions"</h3>
            <ul class="plain">
                {conditions.into_iter().map(|c| view! {
                    <li><strong>{c.kind}</strong>" = "{c.status}
                        {c.reason.map(|r| view! { " · " <code>{r}</code> })}
                        {c.message.map(|m| view! { <div class="muted">{m}</div> })}
                    </li>
                }).collect_view()}
            </ul>
        })}
        {(!containers.is_empty()).then(|| view! {
            <h3>"Containers"</h3>
            <table class="table compact">
                <thead><tr><th>"Name"</th><th>"Image"</th><th>"Requests"</th><th>"Limits"</th></tr></thead>
                <tbody>
                    {containers.into_iter().map(|c| view! {
                        <tr><td>{c.name}</td><td><code>{c.image}</code></td><td>{c.requests}</td><td>{c.limits}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        })}
        <h3>"Recent events"</h3>
        {if events.is_empty() {
            view! { <p class="muted">"No recent events for this object or its pods."</p> }.into_any()
        } else {
            view! {
                <ul class="plain events">
                    {events.into_iter().map(|e| view! {
                        <li class=if e.kind == "Warning" { "event warning" } else { "event" }>
                            {e.at.map(|at| view! { <Time at/> " " })}
                            <strong>{e.reason}</strong>" "<span class="muted">{e.object}</span>
                            {(e.count > 1).then(|| format!(" ×{}", e.count))}
                            <div>{e.message}</div>
                        </li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
        {(!related.is_empty()).then(|| view! {
            <h3>"Connections"</h3>
            <ul class="plain">
                {related.into_iter().map(|(dir, kind, other)| view! {
                    <li>{dir}" "<em>{kind.label()}</em>" "<code>{other}</code></li>
                }).collect_view()}
            </ul>
        })}
    }
}
