//! The Colab page (admins): the endpoint now, its checks, what its machine has (nodes
//! and models), what happened before, and the controls. It follows health changes live through the architecture's event stream
//! (the external box changes whenever the endpoint's health does).

use leptos::prelude::*;

use super::*;
use crate::components::{follow_events, EmptyState, ErrorNote, PageHeader, Time};

/// Bumps `refresh` when the endpoint's health changes on the server.
fn follow_endpoint(refresh: RwSignal<u64>) {
    follow_events(
        crate::architecture::pages::EVENTS_URL,
        "change",
        |data| data.contains("External/comfyui-colab"),
        refresh,
    );
}

fn state_pill(state: EndpointState) -> impl IntoView {
    let (class, label) = match state {
        EndpointState::Healthy => ("pill health-healthy", "✓ Healthy"),
        EndpointState::Verifying => ("pill health-progressing", "↻ Verifying"),
        EndpointState::Down => ("pill health-degraded", "✕ Down"),
        EndpointState::Rejected => ("pill health-degraded", "✕ Rejected"),
        EndpointState::Replaced => ("pill health-suspended", "⏸ Replaced"),
    };
    view! { <span class=class>{label}</span> }
}

/// Latency of recent checks as bars; failed checks are red and full height.
fn latency_chart(checks: &[CheckView]) -> impl IntoView {
    let max = checks
        .iter()
        .filter_map(|c| c.latency_ms)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, h, gap) = (8.0, 48.0, 2.0);
    let width = (checks.len() as f64 * (w + gap)).max(w);
    let bars = checks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let x = i as f64 * (w + gap);
            let (bar_h, fill) = match (c.ok, c.latency_ms) {
                (true, Some(ms)) => ((ms as f64 / max * h).max(2.0), "#2f8a4c"),
                (true, None) => (2.0, "#2f8a4c"),
                (false, _) => (h, "#c53030"),
            };
            let title = match (c.ok, c.latency_ms, &c.class) {
                (true, Some(ms), _) => format!("{} ms", ms),
                (false, _, Some(class)) => format!("failed: {class}"),
                _ => "check".to_owned(),
            };
            view! {
                <rect x=format!("{x:.0}") y=format!("{:.0}", h - bar_h) width=format!("{w:.0}") height=format!("{bar_h:.0}") fill=fill>
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    view! {
        <svg class="latency-chart" viewBox=format!("0 0 {width:.0} {h:.0}") width=format!("{width:.0}") height=format!("{h:.0}") role="img" aria-label="Latency of recent checks; red bars are failed checks">
            {bars}
        </svg>
    }
}

#[component]
pub fn ColabPage() -> impl IntoView {
    let refresh = RwSignal::new(0u64);
    follow_endpoint(refresh);
    let set = ServerAction::<SetEndpoint>::new();
    let fallback = ServerAction::<SetFallback>::new();
    let verify = ServerAction::<Reverify>::new();
    let rotate = ServerAction::<RotateSecret>::new();
    let inventory = ServerAction::<RefreshInventory>::new();
    let overview = Resource::new(
        move || {
            (
                refresh.get(),
                set.version().get(),
                fallback.version().get(),
                verify.version().get(),
                rotate.version().get(),
                inventory.version().get(),
            )
        },
        |_| get_colab_overview(),
    );
    view! {
        <PageHeader title="Colab endpoint" subtitle="The ComfyUI on a Colab GPU, behind a Cloudflare tunnel whose address changes on every start."/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || overview.get().map(|r| match r {
                Ok(o) => overview_view(o, set, fallback, verify, rotate, inventory).into_any(),
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
            })}
        </Transition>
    }
}

fn overview_view(
    o: ColabOverview,
    set: ServerAction<SetEndpoint>,
    fallback: ServerAction<SetFallback>,
    verify: ServerAction<Reverify>,
    rotate: ServerAction<RotateSecret>,
    refresh_inventory: ServerAction<RefreshInventory>,
) -> impl IntoView {
    let ColabOverview {
        inventory,
        current,
        checks,
        history,
        fallback: fallback_now,
        active_secrets,
        publishes,
        webhook_url,
    } = o;
    let last_queue = checks.iter().rev().find_map(|c| c.queue_remaining);
    let last_check = checks.last().cloned();
    let machine = current
        .as_ref()
        .map(|e| inventory_view(e.id, inventory, refresh_inventory));
    view! {
        <section class="card" id="colab-current">
            <h2>"Now"</h2>
            {match current {
                Some(e) => {
                    let id = e.id;
                    let reveal = ServerAction::<RevealEndpoint>::new();
                    view! {
                        <div class="endpoint-head">
                            {state_pill(e.state)}
                            <code id="endpoint-url">{move || match reveal.value().get() {
                                Some(Ok(url)) => url,
                                _ => e.redacted.clone(),
                            }}</code>
                            <ActionForm action=reveal attr:class="inline">
                                <input type="hidden" name="id" value=id.to_string()/>
                                <button type="submit" class="btn small">"Reveal"</button>
                            </ActionForm>
                        </div>
                        <dl class="facts">
                            <dt>"GPU"</dt><dd id="endpoint-gpu">{e.gpu.clone().unwrap_or_else(|| "—".into())}</dd>
                            <dt>"VRAM"</dt><dd>{e.vram_total.map(gib).unwrap_or_else(|| "—".into())}</dd>
                            <dt>"ComfyUI"</dt><dd>{e.comfyui_version.clone().unwrap_or_else(|| "not reported (older build)".into())}</dd>
                            <dt>"Python"</dt><dd>{e.python_version.clone().unwrap_or_else(|| "—".into())}</dd>
                            <dt>"Queue"</dt><dd>{last_queue.map(|q| format!("{q} waiting")).unwrap_or_else(|| "—".into())}</dd>
                            <dt>"Last heartbeat"</dt><dd>{e.last_heartbeat_at.map(|at| view! { <Time at/> }.into_any()).unwrap_or_else(|| "—".into_any())}</dd>
                            <dt>"Came from"</dt><dd>{format!("{} ({})", e.source, e.actor)}</dd>
                            <dt>"In the cluster"</dt><dd>{e.publication.clone().unwrap_or_else(|| if publishes { "not yet published".into() } else { "not published: Slate has no cluster".into() })}</dd>
                        </dl>
                        {last_check.filter(|c| !c.ok).map(|c| view! {
                            <div class="notice error" role="status">{format!("Last check failed: {}", c.detail.unwrap_or_default())}</div>
                        })}
                        <h3>"Recent checks"</h3>
                        {if checks.is_empty() {
                            view! { <p class="muted">"No checks yet: the first comes within a check interval."</p> }.into_any()
                        } else {
                            latency_chart(&checks).into_any()
                        }}
                        <ActionForm action=verify attr:class="inline">
                            <button type="submit" class="btn" disabled=move || verify.pending().get()>"Re-run verification"</button>
                        </ActionForm>
                        {move || verify.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
                    }.into_any()
                }
                None => view! {
                    <EmptyState title="No endpoint">
                        "Start the notebook with the cell below, or set an address by hand. Until then, pipeline stages that need ComfyUI wait."
                    </EmptyState>
                }.into_any(),
            }}
        </section>
        {machine}
        <div class="grid two">
            <section class="card">
                <h2>"Set an endpoint by hand"</h2>
                <ActionForm action=set attr:class="form" attr:id="set-endpoint-form">
                    <div class="field">
                        <label for="endpoint-input">"Address"</label>
                        <input id="endpoint-input" name="url" required placeholder="https://….trycloudflare.com"/>
                    </div>
                    <button type="submit" class="btn primary" disabled=move || set.pending().get()>"Verify and use"</button>
                </ActionForm>
                {move || set.value().get().map(|r| match r {
                    Ok(()) => view! { <div class="notice success" role="status">"Accepted: verifying now."</div> }.into_any(),
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                })}
            </section>
            <section class="card">
                <h2>"Fallback"</h2>
                <p class="muted">{match fallback_now {
                    Some(f) => format!("When the current endpoint fails, Slate switches to {f}, else to the last one that still answers."),
                    None => "No fallback: when the current endpoint fails, Slate tries the last ones that answered before.".into(),
                }}</p>
                <ActionForm action=fallback attr:class="form" attr:id="fallback-form">
                    <div class="field">
                        <label for="fallback-input">"Fallback address (empty to clear)"</label>
                        <input id="fallback-input" name="url" placeholder="https://…"/>
                    </div>
                    <button type="submit" class="btn" disabled=move || fallback.pending().get()>"Save"</button>
                </ActionForm>
                {move || fallback.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
            </section>
        </div>
        <section class="card" id="colab-webhook">
            <h2>"Notebook and webhook"</h2>
            <p>"The notebook reports its tunnel to "<code>{webhook_url}</code>", signed with the webhook secret. "
               {format!("{active_secrets} secret(s) active.")}</p>
            <ActionForm action=rotate attr:class="inline">
                <button type="submit" class="btn" disabled=move || rotate.pending().get()>"Rotate the webhook secret"</button>
            </ActionForm>
            <p class="muted">"Rotating creates a new secret and the notebook cell that uses it; the old secret keeps working for 24 hours."</p>
            {move || rotate.value().get().map(|r| match r {
                Ok(RotatedSecret { secret, cell }) => view! {
                    <div class="notice success" role="status" id="secret-created">
                        <strong>"New secret. Copy it now: it is not shown again."</strong>
                        <code class="secret">{secret}</code>
                    </div>
                    <h3>"Paste this cell into the notebook, after the cell that starts ComfyUI"</h3>
                    <pre class="code" id="notebook-cell">{cell}</pre>
                }.into_any(),
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
            })}
        </section>
        <section class="card">
            <h2>"History"</h2>
            {if history.is_empty() {
                view! { <p class="muted">"Nothing yet."</p> }.into_any()
            } else {
                view! {
                    <table class="table" id="colab-history">
                        <thead><tr><th>"Came"</th><th>"Address"</th><th>"From"</th><th>"State"</th><th>"GPU"</th><th>"Ended"</th></tr></thead>
                        <tbody>
                            {history.into_iter().map(|e| view! {
                                <tr>
                                    <td><Time at=e.received_at/></td>
                                    <td><code>{e.redacted}</code></td>
                                    <td>{format!("{} · {}", e.source, e.actor)}</td>
                                    <td>{state_pill(e.state)}</td>
                                    <td>{e.gpu.unwrap_or_else(|| "—".into())}</td>
                                    <td>{e.ended_at.map(|at| view! { <Time at/> }.into_any()).unwrap_or_else(|| "—".into_any())}
                                        {e.end_reason.map(|r| view! { <div class="muted">{r}</div> })}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

/// Lists longer than this fold away behind their count.
const FOLD_AFTER: usize = 4;

/// Files of a folder, folded when there are many.
fn files_view(files: Vec<String>) -> impl IntoView {
    let list = |files: Vec<String>| {
        view! {
            <ul class="chips">
                {files.into_iter().map(|f| view! { <li class="tag"><code>{f}</code></li> }).collect_view()}
            </ul>
        }
    };
    if files.len() > FOLD_AFTER {
        view! {
            <details>
                <summary>{format!("Show all {} files", files.len())}</summary>
                {list(files)}
            </details>
        }
        .into_any()
    } else {
        list(files).into_any()
    }
}

/// "What the GPU has": the current endpoint's ComfyUI, its node classes (core and each
/// custom pack) and its model files by folder, with a refresh.
fn inventory_view(
    endpoint: uuid::Uuid,
    inventory: Option<InventoryView>,
    refresh: ServerAction<RefreshInventory>,
) -> impl IntoView {
    let error = inventory.as_ref().and_then(|i| i.error.clone());
    let attempted = inventory.as_ref().map(|i| i.attempted_at);
    let body = match inventory.filter(|i| i.fetched_at.is_some()) {
        None => view! {
            <EmptyState title="No inventory yet">
                "It is fetched when the endpoint is verified; Refresh asks for it now."
            </EmptyState>
            {error.map(|e| view! {
                <div class="notice error" role="status">
                    {format!("The last attempt failed: {e}")}
                    {attempted.map(|at| view! { <span class="muted">"Tried "<Time at/></span> })}
                </div>
            })}
        }
        .into_any(),
        Some(i) => {
            let total = i.nodes();
            let (filled, empty): (Vec<_>, Vec<_>) = i
                .models
                .into_iter()
                .partition(|(_, files)| !files.is_empty());
            let packs = i.packs;
            let nodes = match packs.len() {
                0 => format!("{total} node classes, all ComfyUI's own"),
                n => format!(
                    "{total} node classes: {} ComfyUI's own, {} from {n} custom pack{}",
                    i.core_nodes,
                    total - i.core_nodes,
                    if n == 1 { "" } else { "s" }
                ),
            };
            view! {
                <dl class="facts">
                    <dt>"ComfyUI"</dt><dd id="inventory-version">{i.comfyui_version.unwrap_or_else(|| "not reported".into())}</dd>
                    <dt>"Fetched"</dt><dd>{i.fetched_at.map(|at| view! { <Time at/> })}</dd>
                    <dt>"Nodes"</dt><dd id="inventory-nodes">{nodes}</dd>
                </dl>
                {error.map(|e| view! {
                    <div class="notice warn" role="status">{format!("Some of it could not be read: {e}")}</div>
                })}
                <h3>"Custom node packs"</h3>
                {if packs.is_empty() {
                    view! { <p class="muted">"None: core nodes only."</p> }.into_any()
                } else {
                    view! {
                        <table class="table compact" id="inventory-packs">
                            <thead><tr><th>"Pack"</th><th>"Node classes"</th></tr></thead>
                            <tbody>
                                {packs.into_iter().map(|(pack, n)| view! {
                                    <tr><td><code>{pack}</code></td><td>{n}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
                <h3>"Models"</h3>
                {if filled.is_empty() {
                    view! { <p class="muted">"No model files in any folder."</p> }.into_any()
                } else {
                    view! {
                        <table class="table compact" id="inventory-models">
                            <thead><tr><th>"Folder"</th><th>"Files"</th><th></th></tr></thead>
                            <tbody>
                                {filled.into_iter().map(|(folder, files)| view! {
                                    <tr>
                                        <td><code>{folder}</code></td>
                                        <td>{files.len()}</td>
                                        <td>{files_view(files)}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
                {(!empty.is_empty()).then(|| view! {
                    <p class="muted">{format!(
                        "Empty: {}.",
                        empty.into_iter().map(|(f, _)| f).collect::<Vec<_>>().join(", ")
                    )}</p>
                })}
            }
            .into_any()
        }
    };
    view! {
        <section class="card" id="colab-inventory">
            <h2>"What the GPU has"</h2>
            {body}
            <ActionForm action=refresh attr:class="inline">
                <input type="hidden" name="id" value=endpoint.to_string()/>
                <button type="submit" class="btn" disabled=move || refresh.pending().get()>
                    {move || if refresh.pending().get() { "Fetching…" } else { "Refresh" }}
                </button>
            </ActionForm>
            {move || refresh.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
        </section>
    }
}
