//! The workflow pages: the list, with the form that adds a workflow (pasted JSON, or a
//! file posted to `/api/workflows/import`), and a workflow's page (its versions and
//! changes, the snippet a template uses, what the endpoint lacks, its nodes, and the
//! bindings editor that turns literal inputs into a run's parameters). The editor's
//! logic (rows from a version, a row back into a `Binding`) is in plain functions with
//! unit tests; the views only hold it in signals.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use serde_json::Value;

use super::api::{list_workflows, show_workflow, AddWorkflow, BindWorkflow};
use super::workflow::{Binding, NodeRow, WorkflowDetail, WorkflowSummary};
use crate::accounts::Role;
use crate::components::{encode_query_value, EmptyState, ErrorNote, PageHeader, Time};
use crate::error::AppError;
use crate::pipelines::template::{ParamType, Parameter};
use crate::shell::Auth;

/// Where the file form posts (a plain multipart form; the server answers 303 to the
/// workflow's page, or a 4xx with the reason as text).
pub const IMPORT_URL: &str = "/api/workflows/import";

/// A refusal as the forms show it: several problems (the server lists every one, a
/// line each) as a list, one as the usual note.
fn refusal(error: AppError, id: &'static str) -> AnyView {
    match error {
        AppError::Invalid(problems) if problems.lines().count() > 1 => view! {
            <div class="notice error" role="alert" id=id>
                <strong>"Not saved:"</strong>
                <ul>{problems.lines().map(|l| view! { <li>{l.to_owned()}</li> }).collect_view()}</ul>
            </div>
        }
        .into_any(),
        other => view! { <div id=id><ErrorNote error=other/></div> }.into_any(),
    }
}

fn origin(w: &WorkflowSummary) -> String {
    if w.bundled {
        "bundled with Slate".into()
    } else {
        w.created_by.clone().unwrap_or_else(|| "—".into())
    }
}

#[component]
pub fn WorkflowsPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let add = ServerAction::<AddWorkflow>::new();
    let list = Resource::new(move || add.version().get(), |_| list_workflows());
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok((name, version))) = add.value().get() {
            navigate(
                &format!("/workflows/{name}?version={version}"),
                Default::default(),
            );
        }
    });
    view! {
        <PageHeader title="Workflows" subtitle="ComfyUI graphs in API format, versioned, with the inputs a person fills in."/>
        <section class="card">
            <Transition fallback=|| view! { <p class="loading">"Loading workflows…"</p> }>
                {move || list.get().map(|r| match r {
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <EmptyState title="No workflows yet">
                            "A lead or an admin adds one: export it from ComfyUI with \"Export (API)\" and paste it below."
                        </EmptyState>
                    }.into_any(),
                    Ok(list) => workflows_table(list).into_any(),
                })}
            </Transition>
        </section>
        <Transition fallback=|| ()>
            {move || auth.me().get().filter(|me| me.role >= Role::Lead).map(|_| view! { <AddWorkflowCard add/> })}
        </Transition>
    }
}

fn workflows_table(list: Vec<WorkflowSummary>) -> AnyView {
    view! {
        <div class="table-scroll">
            <table class="table" id="workflows">
                <thead><tr>
                    <th scope="col">"Workflow"</th><th scope="col">"Version"</th><th scope="col">"Nodes"</th>
                    <th scope="col">"Bindings"</th><th scope="col">"Added by"</th><th scope="col">"When"</th>
                </tr></thead>
                <tbody>
                    {list.into_iter().map(|w| { let by = origin(&w); view! {
                        <tr data-workflow=w.name.clone()>
                            <td>
                                <A href=format!("/workflows/{}", w.name)>{w.title.clone()}</A><br/>
                                <code class="muted">{w.name.clone()}</code>
                                {w.description.clone().map(|d| view! { <br/><span class="muted small">{d}</span> })}
                            </td>
                            <td data-label="version">{w.version}</td>
                            <td data-label="nodes">{w.nodes}</td>
                            <td data-label="bindings">{w.bindings}</td>
                            <td data-label="added by">{by}</td>
                            <td data-label="when"><Time at=w.created_at/></td>
                        </tr>
                    } }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn AddWorkflowCard(add: ServerAction<AddWorkflow>) -> impl IntoView {
    let import_error = RwSignal::new(None::<AppError>);
    let importing = RwSignal::new(false);
    let navigate = use_navigate();
    // With the wasm loaded the file form is sent from here, so that a refusal shows
    // beside the form; without it the browser posts it and shows the answer.
    let on_import = move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            ev.prevent_default();
            let Some(form) = ev.target() else { return };
            let navigate = navigate.clone();
            importing.set(true);
            import_error.set(None);
            leptos::task::spawn_local(async move {
                let sent = browser::post_form(form.into(), IMPORT_URL).await;
                importing.set(false);
                match sent {
                    Ok(path) => navigate(&path, Default::default()),
                    Err(e) => import_error.set(Some(e)),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, &navigate, importing, import_error);
    };
    view! {
        <section class="card" id="workflow-add">
            <h2>"Add a workflow"</h2>
            <p class="muted">"In ComfyUI, open the Workflow menu and choose \"Export (API)\"; paste that file here. \
                The same name again adds a new version of that workflow."</p>
            <div class="add-ways">
                <div class="add-way">
                    <h3>"Paste it"</h3>
                    <ActionForm action=add attr:class="form" attr:id="workflow-add-form">
                        <div class="field-row">
                            <div class="field">
                                <label for="wf-name">"Name"</label>
                                <input id="wf-name" name="name" required maxlength="64" pattern="[a-z0-9_\\-]+"
                                    placeholder="e.g. storyboard-frames" autocomplete="off"/>
                                <span class="hint">"Lower-case letters, digits, - and _; a template names it."</span>
                            </div>
                            <div class="field grow">
                                <label for="wf-title">"Title"</label>
                                <input id="wf-title" name="title" required maxlength="200" placeholder="Storyboard frames"/>
                            </div>
                        </div>
                        <div class="field">
                            <label for="wf-description">"Description (optional)"</label>
                            <input id="wf-description" name="description" maxlength="2000"/>
                        </div>
                        <div class="field">
                            <label for="wf-json">"Workflow JSON (API format)"</label>
                            <textarea id="wf-json" name="json" rows="10" required spellcheck="false" class="code-input"
                                placeholder="{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {…}}, …}"></textarea>
                        </div>
                        <div class="form-actions">
                            <button type="submit" class="btn primary" id="workflow-add-submit" disabled=move || add.pending().get()>
                                "Add the workflow"
                            </button>
                        </div>
                    </ActionForm>
                    {move || add.value().get().and_then(Result::err).map(|e| refusal(e, "workflow-add-error"))}
                </div>
                <div class="add-way">
                    <h3>"Or upload the file"</h3>
                    <p class="muted">"The exported .json, or an image ComfyUI saved: a PNG from ComfyUI carries the workflow that made it."</p>
                    <form method="post" enctype="multipart/form-data" action=IMPORT_URL class="form" id="workflow-import-form"
                        on:submit=on_import>
                        <div class="field-row">
                            <div class="field">
                                <label for="wf-file-name">"Name"</label>
                                <input id="wf-file-name" name="name" required maxlength="64" pattern="[a-z0-9_\\-]+" autocomplete="off"/>
                            </div>
                            <div class="field grow">
                                <label for="wf-file-title">"Title"</label>
                                <input id="wf-file-title" name="title" required maxlength="200"/>
                            </div>
                        </div>
                        <div class="field">
                            <label for="wf-file-description">"Description (optional)"</label>
                            <input id="wf-file-description" name="description" maxlength="2000"/>
                        </div>
                        <div class="field">
                            <label for="wf-file">"File"</label>
                            <input id="wf-file" name="file" type="file" required accept=".json,.png,application/json,image/png"/>
                        </div>
                        <div class="form-actions">
                            <button type="submit" class="btn" id="workflow-import-submit" disabled=move || importing.get()>"Upload"</button>
                        </div>
                    </form>
                    {move || import_error.get().map(|e| refusal(e, "workflow-import-error"))}
                </div>
            </div>
        </section>
    }
}

/// Browser-only helpers: a multipart form sent with `fetch`, and the clipboard. Called
/// through `Reflect` so they need no more `web-sys` features than the app has.
#[cfg(feature = "hydrate")]
mod browser {
    use js_sys::{Array, Function, Object, Promise, Reflect};
    use wasm_bindgen::{JsCast as _, JsValue};
    use wasm_bindgen_futures::JsFuture;

    use crate::error::AppError;

    fn get(target: &JsValue, key: &str) -> Result<JsValue, JsValue> {
        Reflect::get(target, &JsValue::from_str(key))
    }

    fn function(target: &JsValue, key: &str) -> Result<Function, JsValue> {
        get(target, key)?.dyn_into::<Function>()
    }

    /// The error a refused request stands for, from its status and its text.
    fn from_status(status: u16, text: String) -> AppError {
        let text = if text.trim().is_empty() {
            format!("The server refused it (HTTP {status}).")
        } else {
            text
        };
        match status {
            400 => AppError::BadRequest(text),
            401 => AppError::Unauthenticated(text),
            403 => AppError::Forbidden(text),
            404 => AppError::NotFound(text),
            409 => AppError::Conflict(text),
            413 => AppError::TooLarge(text),
            422 => AppError::Invalid(text),
            429 => AppError::TooManyRequests(text),
            503 => AppError::Unavailable(text),
            _ => AppError::Internal(text),
        }
    }

    /// Posts `form` as multipart data to `url`, following the redirect; the path it
    /// ended on, or the refusal.
    pub async fn post_form(form: JsValue, url: &str) -> Result<String, AppError> {
        let transport = |_: JsValue| AppError::Transport("The file could not be sent.".into());
        let window: JsValue = web_sys::window()
            .ok_or_else(|| AppError::Transport("No window.".into()))?
            .into();
        let data = Reflect::construct(
            &function(&window, "FormData").map_err(transport)?,
            &Array::of1(&form),
        )
        .map_err(transport)?;
        let init = Object::new();
        for (key, value) in [
            ("method", JsValue::from_str("POST")),
            ("body", data),
            ("credentials", JsValue::from_str("same-origin")),
        ] {
            Reflect::set(&init, &JsValue::from_str(key), &value).map_err(transport)?;
        }
        let pending = function(&window, "fetch")
            .and_then(|f| f.call2(&window, &JsValue::from_str(url), &init))
            .and_then(|p| p.dyn_into::<Promise>())
            .map_err(transport)?;
        let res = JsFuture::from(pending).await.map_err(transport)?;
        let ok = get(&res, "ok")
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let status = get(&res, "status")
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0) as u16;
        if ok {
            let at = get(&res, "url")
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            let origin = web_sys::window()
                .and_then(|w| w.location().origin().ok())
                .unwrap_or_default();
            let path = at.strip_prefix(&origin).unwrap_or("/workflows");
            return Ok(if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            });
        }
        let text = match function(&res, "text")
            .and_then(|f| f.call0(&res))
            .and_then(|p| p.dyn_into::<Promise>())
        {
            Ok(p) => JsFuture::from(p)
                .await
                .ok()
                .and_then(|t| t.as_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        Err(from_status(status, text))
    }

    /// Puts `text` on the clipboard; false when the browser will not (no clipboard API
    /// outside HTTPS and localhost, or permission refused).
    pub async fn copy(text: &str) -> bool {
        let Some(window) = web_sys::window() else {
            return false;
        };
        let clipboard = get(&window, "navigator").and_then(|n| get(&n, "clipboard"));
        let Ok(clipboard) = clipboard else {
            return false;
        };
        if clipboard.is_undefined() || clipboard.is_null() {
            return false;
        }
        let written = function(&clipboard, "writeText")
            .and_then(|f| f.call1(&clipboard, &JsValue::from_str(text)))
            .and_then(|p| p.dyn_into::<Promise>());
        match written {
            Ok(p) => JsFuture::from(p).await.is_ok(),
            Err(_) => false,
        }
    }
}

/// A snippet with a button that copies it; when the browser will not, the text is
/// selected for the person to copy.
#[component]
fn CopySnippet(#[prop(into)] text: String, #[prop(into)] id: String) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let field = NodeRef::<leptos::html::Input>::new();
    let shown = text.clone();
    let on_copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let text = text.clone();
            leptos::task::spawn_local(async move {
                let done = browser::copy(&text).await;
                if !done {
                    if let Some(input) = field.get_untracked() {
                        input.select();
                    }
                }
                copied.set(Some(done));
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&text, field, copied);
    };
    view! {
        <div class="snippet">
            <input id=id readonly value=shown node_ref=field class="code-input" aria-label="Template line"
                on:focus=move |_| { if let Some(i) = field.get_untracked() { i.select(); } }/>
            <button type="button" class="btn small" on:click=on_copy>
                {move || match copied.get() {
                    Some(true) => "Copied",
                    Some(false) => "Selected: press Ctrl+C",
                    None => "Copy",
                }}
            </button>
        </div>
    }
}

#[component]
pub fn WorkflowPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let bind = ServerAction::<BindWorkflow>::new();
    let name = move || params.read().get("name").unwrap_or_default();
    let version = move || {
        query
            .read()
            .get("version")
            .and_then(|v| v.parse::<i32>().ok())
    };
    let detail = Resource::new(
        move || (name(), version(), bind.version().get()),
        |(name, version, _)| show_workflow(name, version),
    );
    let navigate = use_navigate();
    // Only a new save moves to its version: reading the address untracked lets a person
    // open other versions afterwards.
    Effect::new(move |_| {
        if let Some(Ok(v)) = bind.value().get() {
            let name = params.with_untracked(|p| p.get("name").unwrap_or_default());
            let shown =
                query.with_untracked(|q| q.get("version").and_then(|v| v.parse::<i32>().ok()));
            if shown != Some(v) {
                navigate(
                    &format!("/workflows/{name}?version={v}"),
                    Default::default(),
                );
            }
        }
    });
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the workflow…"</p> }>
            {move || detail.get().map(|r| match r {
                Err(e) => view! { <PageHeader title="Workflow"/><ErrorNote error=e/> }.into_any(),
                Ok(d) => workflow_view(d, bind).into_any(),
            })}
        </Transition>
    }
}

fn workflow_view(d: WorkflowDetail, bind: ServerAction<BindWorkflow>) -> impl IntoView {
    let s = d.summary.clone();
    let snippet = format!("workflow: {}@{}", s.name, s.version);
    let current = s.version;
    let versions = d
        .versions
        .iter()
        .rev()
        .map(|(v, at, by)| {
            let who = by.clone().unwrap_or_else(|| "bundled".into());
            let class = if *v == current { "version current" } else { "version" };
            view! {
                <li class=class>
                    <A href=format!("/workflows/{}?version={v}", s.name)>{format!("version {v}")}</A>
                    " "<span class="muted">{format!("{who} · {}", crate::components::format_time(*at))}</span>
                </li>
            }
        })
        .collect_view();
    let changes = if d.changes.is_empty() {
        view! { <p class="muted" id="workflow-changes">"First version."</p> }.into_any()
    } else {
        view! {
            <ul class="changes" id="workflow-changes">
                {d.changes.iter().map(|c| view! { <li><code>{c.clone()}</code></li> }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let gaps = match &d.gaps {
        None => view! {
            <div class="notice info" id="workflow-gaps">"No endpoint inventory is known: the check runs when a GPU endpoint is verified."</div>
        }
        .into_any(),
        Some(g) if g.is_empty() => view! {
            <div class="notice success" id="workflow-gaps">"The current endpoint has every node and model this workflow needs."</div>
        }
        .into_any(),
        Some(g) => view! {
            <div class="notice error" role="alert" id="workflow-gaps">
                <strong>"The current endpoint lacks what this workflow needs:"</strong>
                <ul>{g.iter().map(|l| view! { <li>{l.clone()}</li> }).collect_view()}</ul>
            </div>
        }
        .into_any(),
    };
    let run = d.template.clone().map(|t| {
        view! {
            <A href=format!("/runs/new?template={}", encode_query_value(&t)) attr:class="btn primary" attr:id="workflow-run">"Run it"</A>
        }
        .into_any()
    });
    let subtitle = format!("{}@{} · {}", s.name, s.version, origin_words(&d.origin));
    let description = s.description.clone();
    let bindings = if d.can_edit {
        view! { <BindingsEditor detail=d.clone() bind/> }.into_any()
    } else {
        bindings_table(&d.bindings).into_any()
    };
    // Each part is its own view: one view of all of it is a type too deep to compile.
    let top = view! {
        <div class="workflow-top">
            <section class="card" id="workflow-use">
                <h2>"Use it"</h2>
                <p class="muted">"In a template's comfyui stage, this line runs exactly this version:"</p>
                <CopySnippet text=snippet id="workflow-snippet"/>
                <p>{run.unwrap_or_else(|| view! {
                    <span class="muted" id="workflow-no-template">"Save its bindings to run it from the run form."</span>
                }.into_any())}</p>
                {gaps}
            </section>
            <section class="card" id="workflow-versions">
                <h2>"Versions"</h2>
                <ul class="plain versions">{versions}</ul>
                <h3>{format!("Changes in version {current}")}</h3>
                {changes}
            </section>
        </div>
    }
    .into_any();
    view! {
        <PageHeader title=s.title.clone() subtitle/>
        {description.map(|t| view! { <p class="muted">{t}</p> })}
        {top}
        <section class="card" id="workflow-bindings">
            <h2>"Bindings: what a person fills in"</h2>
            {bindings}
        </section>
        <section class="card" id="workflow-nodes">
            <h2>{format!("Nodes ({})", d.nodes.len())}</h2>
            {nodes_table(&d.nodes)}
        </section>
    }
    .into_any()
}

/// Where a version's graph came from, in words.
fn origin_words(origin: &str) -> String {
    match origin {
        "json" => "from its API-format JSON".into(),
        "image" => "from an image ComfyUI saved".into(),
        "bundled" => "bundled with Slate".into(),
        other => other.to_owned(),
    }
}

fn nodes_table(nodes: &[NodeRow]) -> AnyView {
    view! {
        <div class="table-scroll">
            <table class="table compact nodes" id="nodes">
                <thead><tr>
                    <th scope="col">"Node"</th><th scope="col">"Class"</th>
                    <th scope="col">"Values"</th><th scope="col">"Links"</th>
                </tr></thead>
                <tbody>
                    {nodes.iter().map(|n| view! {
                        <tr data-node=n.id.clone()>
                            <td><strong>{n.id.clone()}</strong>{n.title.clone().map(|t| view! { <br/><span class="muted">{t}</span> })}</td>
                            <td><code>{n.class.clone()}</code>{n.pack.clone().map(|p| view! { " "<span class="tag" title="custom node pack">{p}</span> })}</td>
                            <td>
                                <ul class="plain kv">
                                    {n.literals.iter().map(|(k, v)| view! { <li><span class="muted">{k.clone()}</span>" "<code>{v.clone()}</code></li> }).collect_view()}
                                </ul>
                            </td>
                            <td>
                                <ul class="plain kv">
                                    {n.links.iter().map(|(input, from, index)| view! {
                                        <li><span class="muted">{input.clone()}</span>{format!(" ← node {from} output {index}")}</li>
                                    }).collect_view()}
                                </ul>
                            </td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

/// A parameter type in a word or two, with its limits.
fn type_text(ty: &ParamType) -> String {
    match ty {
        ParamType::Integer { min, max } => format!("integer{}", range(min, max)),
        ParamType::Float { min, max } => format!("float{}", range(min, max)),
        ParamType::Enum { options } => format!("one of {}", options.join(", ")),
        ParamType::Asset { kind } => format!("{kind} asset"),
        ParamType::Assets { kind, .. } => format!("{kind} assets"),
        ParamType::Model { folder } => format!("model in {folder}"),
        other => super::workflow::type_word(other).to_owned(),
    }
}

fn range<T: std::fmt::Display>(min: &Option<T>, max: &Option<T>) -> String {
    match (min, max) {
        (None, None) => String::new(),
        (lo, hi) => format!(
            " {}–{}",
            lo.as_ref().map(ToString::to_string).unwrap_or_default(),
            hi.as_ref().map(ToString::to_string).unwrap_or_default()
        ),
    }
}

fn bindings_table(bindings: &[Binding]) -> AnyView {
    if bindings.is_empty() {
        return view! {
            <EmptyState title="No bindings yet">"A lead or an admin chooses which inputs become the run form's fields."</EmptyState>
        }
        .into_any();
    }
    view! {
        <div class="table-scroll">
            <table class="table compact" id="bindings">
                <thead><tr>
                    <th scope="col">"Parameter"</th><th scope="col">"Sets"</th><th scope="col">"Type"</th>
                    <th scope="col">"Default"</th><th scope="col">"Required"</th>
                </tr></thead>
                <tbody>
                    {bindings.iter().map(|b| view! {
                        <tr data-binding=b.param.name.clone()>
                            <td><code>{b.param.name.clone()}</code><br/><span class="muted">{b.param.label().to_owned()}</span></td>
                            <td>{format!("node {}, {}", b.node, b.input)}</td>
                            <td>{type_text(&b.param.ty)}</td>
                            <td><code>{b.param.default.as_ref().map(Value::to_string).unwrap_or_default()}</code></td>
                            <td>{if b.param.required { "yes" } else { "no" }}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

/// The choices of the editor's type select: (value, what it says).
pub const TYPES: &[(&str, &str)] = &[
    ("text", "text (several lines)"),
    ("string", "string (one line)"),
    ("integer", "integer"),
    ("float", "float"),
    ("enum", "choice (enum)"),
    ("boolean", "boolean"),
    ("seed", "seed"),
    ("asset:image", "image asset"),
    ("asset:video", "video asset"),
    ("asset:audio", "audio asset"),
    ("model", "model file"),
];

/// One literal input as the editor holds it: whether it is bound, and every field of
/// its parameter as typed (text, checked when it becomes a `Binding`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draft {
    pub node: String,
    pub input: String,
    /// The node's title (or its class) and class, shown with the input.
    pub node_title: String,
    pub class: String,
    /// The literal in the graph, as JSON text.
    pub value: String,
    pub bound: bool,
    pub name: String,
    pub label: String,
    pub help: String,
    /// One of [`TYPES`].
    pub ty: String,
    pub default: String,
    pub min: String,
    pub max: String,
    /// Comma-separated, for an enum.
    pub options: String,
    pub folder: String,
    pub required: bool,
    /// Kept from the binding it came from (the editor does not show it).
    pub max_length: Option<usize>,
}

/// The editor's word for a type.
pub fn type_value(ty: &ParamType) -> String {
    match ty {
        ParamType::Asset { kind } | ParamType::Assets { kind, .. } => format!("asset:{kind}"),
        other => super::workflow::type_word(other).to_owned(),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Every literal input of a version as an editor row: bound as the version binds it
/// or, when it binds nothing yet, as Slate proposes; every other input unbound, its
/// fields guessed from its value.
pub fn drafts(d: &WorkflowDetail) -> Vec<Draft> {
    let source = if d.bindings.is_empty() {
        &d.proposed
    } else {
        &d.bindings
    };
    // An input's own name is the first guess; one that several nodes share gets the
    // node's id too.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for n in &d.nodes {
        for (input, _) in &n.literals {
            *seen.entry(super::workflow::param_name(input)).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for n in &d.nodes {
        let node_title = n.title.clone().unwrap_or_else(|| n.class.clone());
        for (input, value) in &n.literals {
            let bound = source.iter().find(|b| b.node == n.id && b.input == *input);
            let mut draft = Draft {
                node: n.id.clone(),
                input: input.clone(),
                node_title: node_title.clone(),
                class: n.class.clone(),
                value: value.clone(),
                bound: bound.is_some(),
                required: true,
                ..Draft::default()
            };
            match bound {
                Some(b) => fill(&mut draft, &b.param),
                None => {
                    let base = super::workflow::param_name(input);
                    draft.name = if seen.get(&base).copied().unwrap_or(0) > 1 {
                        format!(
                            "{base}_{}",
                            super::workflow::param_name(&n.id).trim_start_matches('n')
                        )
                    } else {
                        base
                    };
                    draft.label = draft.name.replace('_', " ");
                    // The literal as the page has it (long ones are shortened, and
                    // then not a default).
                    let literal: Option<Value> = serde_json::from_str(value).ok();
                    draft.ty = match &literal {
                        Some(Value::Bool(_)) => "boolean",
                        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "integer",
                        Some(Value::Number(_)) => "float",
                        Some(Value::String(s)) if s.contains('\n') => "text",
                        _ => "string",
                    }
                    .into();
                    draft.default = literal.as_ref().map(as_text).unwrap_or_default();
                }
            }
            out.push(draft);
        }
    }
    out
}

fn fill(draft: &mut Draft, p: &Parameter) {
    draft.name = p.name.clone();
    draft.label = p.label.clone().unwrap_or_default();
    draft.help = p.help.clone().unwrap_or_default();
    draft.ty = type_value(&p.ty);
    draft.required = p.required;
    draft.default = p.default.as_ref().map(as_text).unwrap_or_default();
    match &p.ty {
        ParamType::Integer { min, max } => {
            draft.min = min.map(|v| v.to_string()).unwrap_or_default();
            draft.max = max.map(|v| v.to_string()).unwrap_or_default();
        }
        ParamType::Float { min, max } => {
            draft.min = min.map(|v| v.to_string()).unwrap_or_default();
            draft.max = max.map(|v| v.to_string()).unwrap_or_default();
        }
        ParamType::Enum { options } => draft.options = options.join(", "),
        ParamType::Model { folder } => draft.folder = folder.clone(),
        ParamType::String { max_length } | ParamType::Text { max_length } => {
            draft.max_length = *max_length
        }
        _ => {}
    }
}

impl Draft {
    /// The binding this row stands for, or what is wrong with it (naming the node and
    /// input, as the server does).
    pub fn binding(&self) -> Result<Binding, String> {
        let at = format!(
            "Node {} ({}), input \"{}\"",
            self.node, self.class, self.input
        );
        let text = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
        let int = |what: &str, s: &str| -> Result<Option<i64>, String> {
            match text(s) {
                None => Ok(None),
                Some(s) => s
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| format!("{at}: the {what} \"{s}\" is not a whole number.")),
            }
        };
        let float = |what: &str, s: &str| -> Result<Option<f64>, String> {
            match text(s) {
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(Some)
                    .ok_or_else(|| format!("{at}: the {what} \"{s}\" is not a number.")),
            }
        };
        let ty = match self.ty.as_str() {
            "text" => ParamType::Text {
                max_length: self.max_length,
            },
            "string" => ParamType::String {
                max_length: self.max_length,
            },
            "integer" => ParamType::Integer {
                min: int("minimum", &self.min)?,
                max: int("maximum", &self.max)?,
            },
            "float" => ParamType::Float {
                min: float("minimum", &self.min)?,
                max: float("maximum", &self.max)?,
            },
            "enum" => {
                let options: Vec<String> = self.options.split(',').filter_map(&text).collect();
                if options.is_empty() {
                    return Err(format!(
                        "{at}: a choice needs its options, separated by commas."
                    ));
                }
                ParamType::Enum { options }
            }
            "boolean" => ParamType::Boolean,
            "seed" => ParamType::Seed,
            "model" => match text(&self.folder) {
                Some(folder) => ParamType::Model { folder },
                None => {
                    return Err(format!(
                        "{at}: a model file needs its folder (checkpoints, loras, …)."
                    ))
                }
            },
            other => match other.strip_prefix("asset:") {
                Some(kind) if matches!(kind, "image" | "video" | "audio") => ParamType::Asset {
                    kind: kind.to_owned(),
                },
                _ => return Err(format!("{at}: \"{other}\" is not a type.")),
            },
        };
        let default = match (&ty, text(&self.default)) {
            (_, None) | (ParamType::Asset { .. }, _) => None,
            (ParamType::Integer { .. } | ParamType::Seed, Some(_)) => {
                int("default", &self.default)?.map(Value::from)
            }
            (ParamType::Float { .. }, Some(_)) => float("default", &self.default)?.map(Value::from),
            (ParamType::Boolean, Some(v)) => match v.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => return Err(format!("{at}: the default of a boolean is true or false.")),
            },
            // Text keeps its spaces: a prompt may mean them.
            (ParamType::Text { .. }, Some(_)) => Some(Value::String(self.default.clone())),
            (_, Some(v)) => Some(Value::String(v)),
        };
        Ok(Binding {
            node: self.node.clone(),
            input: self.input.clone(),
            param: Parameter {
                name: self.name.trim().to_owned(),
                label: text(&self.label),
                help: text(&self.help),
                ty,
                required: self.required,
                default,
            },
        })
    }
}

/// The bound rows as bindings, or every problem with them.
pub fn collect(rows: &[Draft]) -> Result<Vec<Binding>, Vec<String>> {
    let (ok, problems): (Vec<_>, Vec<_>) = rows
        .iter()
        .filter(|r| r.bound)
        .map(Draft::binding)
        .partition(Result::is_ok);
    if problems.is_empty() {
        Ok(ok.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(problems.into_iter().filter_map(Result::err).collect())
    }
}

#[component]
fn BindingsEditor(detail: WorkflowDetail, bind: ServerAction<BindWorkflow>) -> impl IntoView {
    let name = detail.summary.name.clone();
    let proposal = detail.bindings.is_empty() && !detail.proposed.is_empty();
    let rows: Vec<RwSignal<Draft>> = drafts(&detail).into_iter().map(RwSignal::new).collect();
    let filter = RwSignal::new(String::new());
    let local = RwSignal::new(Vec::<String>::new());
    let all = rows.clone();
    let on_save = move |_| {
        let current: Vec<Draft> = all.iter().map(|r| r.get_untracked()).collect();
        match collect(&current) {
            Err(problems) => local.set(problems),
            Ok(bindings) => {
                local.set(Vec::new());
                bind.dispatch(BindWorkflow {
                    name: name.clone(),
                    bindings,
                });
            }
        }
    };
    let count = {
        let rows = rows.clone();
        move || rows.iter().filter(|r| r.with(|d| d.bound)).count()
    };
    let body = rows
        .into_iter()
        .map(|row| draft_row(row, filter))
        .collect_view();
    // Each part is its own view: one view of all of it is a type too deep to compile.
    let intro = view! {
        <p class="muted">
            {if proposal {
                "Nothing is bound yet: the inputs Slate proposes are ticked. Tick what a person should fill in, then save: \
                 saving makes a new version and the template that runs it."
            } else {
                "Tick what a person should fill in, then save: saving makes a new version and the template that runs it."
            }}
        </p>
        <div class="binding-tools">
            <label for="binding-filter" class="visually-hidden">"Find an input"</label>
            <input id="binding-filter" type="search" placeholder="Find an input, node or class"
                on:input=move |e| filter.set(event_target_value(&e))/>
            <span class="muted" id="binding-count">{move || format!("{} bound", count())}</span>
        </div>
    }
    .into_any();
    let table = view! {
        <div class="table-scroll">
            <table class="table compact binding-editor" id="binding-editor">
                <thead><tr>
                    <th scope="col">"Bind"</th><th scope="col">"Input"</th><th scope="col">"Parameter"</th>
                </tr></thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
    .into_any();
    let notes = view! {
        {move || {
            let problems = local.get();
            (!problems.is_empty()).then(|| view! {
                <div class="notice error" role="alert" id="binding-problems">
                    <strong>"Not saved:"</strong>
                    <ul>{problems.into_iter().map(|p| view! { <li>{p}</li> }).collect_view()}</ul>
                </div>
            })
        }}
        {move || bind.value().get().map(|r| match r {
            Ok(v) => view! { <div class="notice success" role="status" id="bindings-saved">{format!("Bindings saved as version {v}.")}</div> }.into_any(),
            Err(e) => refusal(e, "binding-problems"),
        })}
    }
    .into_any();
    view! {
        {intro}
        {table}
        {notes}
        <div class="form-actions">
            <button type="button" class="btn primary" id="bindings-save" on:click=on_save
                disabled=move || bind.pending().get()>"Save the bindings"</button>
        </div>
    }
}

/// One input's row: its tick, what it is, and the parameter's fields while ticked.
fn draft_row(row: RwSignal<Draft>, filter: RwSignal<String>) -> AnyView {
    let d = row.get_untracked();
    let bound = Memo::new(move |_| row.with(|d| d.bound));
    let ty = Memo::new(move |_| row.with(|d| d.ty.clone()));
    let haystack = format!("{} {} {} {}", d.node, d.node_title, d.class, d.input).to_lowercase();
    let hidden = move || {
        let needle = filter.get().trim().to_lowercase();
        !needle.is_empty() && !haystack.contains(&needle)
    };
    let tick_id = format!(
        "bind-{}-{}",
        super::workflow::param_name(&d.node),
        super::workflow::param_name(&d.input)
    );
    let fields = move || {
        bound.get().then(|| {
            let now = row.get_untracked();
            let text_field = move |label: &'static str, class: &'static str, value: String, set: fn(&mut Draft, String)| {
                view! {
                    <label class=format!("mini {class}")>
                        <span>{label}</span>
                        <input class=class value=value on:input=move |e| { let v = event_target_value(&e); row.update(|d| set(d, v)); }/>
                    </label>
                }
            };
            let extra = move || {
                let now = row.get_untracked();
                match ty.get().as_str() {
                    "integer" | "float" => view! {
                        {text_field("min", "b-min", now.min.clone(), |d, v| d.min = v)}
                        {text_field("max", "b-max", now.max.clone(), |d, v| d.max = v)}
                    }.into_any(),
                    "enum" => text_field("options (commas)", "b-options wide", now.options.clone(), |d, v| d.options = v).into_any(),
                    "model" => text_field("folder", "b-folder", now.folder.clone(), |d, v| d.folder = v).into_any(),
                    _ => ().into_any(),
                }
            };
            let current_ty = now.ty.clone();
            view! {
                <div class="binding-fields">
                    {text_field("name", "b-name", now.name.clone(), |d, v| d.name = v)}
                    {text_field("label", "b-label", now.label.clone(), |d, v| d.label = v)}
                    <label class="mini b-type">
                        <span>"type"</span>
                        <select class="b-type" on:change=move |e| { let v = event_target_value(&e); row.update(|d| d.ty = v); }>
                            {TYPES.iter().map(|(value, says)| view! {
                                <option value=*value selected=current_ty == *value>{*says}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    {text_field("default", "b-default", now.default.clone(), |d, v| d.default = v)}
                    {extra}
                    {text_field("help", "b-help wide", now.help.clone(), |d, v| d.help = v)}
                    <label class="mini check b-required">
                        <input type="checkbox" class="b-required" checked=now.required
                            on:change=move |e| { let v = event_target_checked(&e); row.update(|d| d.required = v); }/>
                        <span>"required"</span>
                    </label>
                </div>
            }
            .into_any()
        })
    };
    view! {
        <tr data-node=d.node.clone() data-input=d.input.clone() class:bound=move || bound.get() hidden=hidden>
            <td class="tick">
                <input type="checkbox" class="bind-toggle" id=tick_id.clone() checked=d.bound
                    aria-label=format!("Bind {} of node {}", d.input, d.node)
                    on:change=move |e| { let v = event_target_checked(&e); row.update(|d| d.bound = v); }/>
            </td>
            <td class="what">
                <label for=tick_id><code>{d.input.clone()}</code></label>
                <span class="muted">{format!(" = {}", d.value)}</span><br/>
                <span class="muted small">{if d.node_title == d.class {
                    format!("node {} · {}", d.node, d.class)
                } else {
                    format!("node {} · {} · {}", d.node, d.node_title, d.class)
                }}</span>
            </td>
            <td class="param">{fields}</td>
        </tr>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(bindings: Vec<Binding>, proposed: Vec<Binding>) -> WorkflowDetail {
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        WorkflowDetail {
            summary: WorkflowSummary {
                id: uuid::Uuid::nil(),
                name: "flow".into(),
                version: 1,
                title: "Flow".into(),
                description: None,
                nodes: 2,
                bindings: bindings.len(),
                bundled: false,
                created_by: None,
                created_at: at,
            },
            origin: "pasted".into(),
            versions: vec![(1, at, None)],
            nodes: vec![
                NodeRow {
                    id: "3".into(),
                    class: "KSampler".into(),
                    title: None,
                    pack: None,
                    literals: vec![
                        ("cfg".into(), "7.5".into()),
                        ("seed".into(), "1".into()),
                        ("steps".into(), "20".into()),
                    ],
                    links: vec![("model".into(), "4".into(), 0)],
                },
                NodeRow {
                    id: "6".into(),
                    class: "CLIPTextEncode".into(),
                    title: Some("Positive".into()),
                    pack: None,
                    literals: vec![("text".into(), "\"a cat\"".into())],
                    links: vec![],
                },
                NodeRow {
                    id: "7".into(),
                    class: "CLIPTextEncode".into(),
                    title: None,
                    pack: None,
                    literals: vec![("text".into(), "\"\"".into())],
                    links: vec![],
                },
            ],
            bindings,
            proposed,
            changes: vec![],
            gaps: None,
            template: None,
            graph_json: "{}".into(),
            can_edit: true,
        }
    }

    fn binding(node: &str, input: &str, name: &str, ty: ParamType) -> Binding {
        Binding {
            node: node.into(),
            input: input.into(),
            param: Parameter {
                name: name.into(),
                label: Some(name.into()),
                help: None,
                ty,
                required: true,
                default: None,
            },
        }
    }

    #[test]
    fn the_proposal_is_ticked_until_something_is_bound() {
        let proposed = vec![binding("3", "seed", "seed", ParamType::Seed)];
        let rows = drafts(&detail(vec![], proposed.clone()));
        assert_eq!(rows.len(), 5, "every literal input is a row");
        let ticked: Vec<&str> = rows
            .iter()
            .filter(|r| r.bound)
            .map(|r| r.input.as_str())
            .collect();
        assert_eq!(ticked, ["seed"]);
        // Once bindings are saved, they are what is ticked, not the proposal.
        let saved = vec![binding(
            "3",
            "steps",
            "steps",
            ParamType::Integer {
                min: Some(1),
                max: None,
            },
        )];
        let rows = drafts(&detail(saved, proposed));
        let ticked: Vec<&Draft> = rows.iter().filter(|r| r.bound).collect();
        assert_eq!(ticked.len(), 1);
        assert_eq!(
            (
                ticked[0].input.as_str(),
                ticked[0].ty.as_str(),
                ticked[0].min.as_str()
            ),
            ("steps", "integer", "1")
        );
    }

    #[test]
    fn unbound_inputs_are_guessed_from_their_value_and_shared_names_get_the_node() {
        let rows = drafts(&detail(vec![], vec![]));
        let by = |node: &str, input: &str| {
            rows.iter()
                .find(|r| r.node == node && r.input == input)
                .unwrap()
                .clone()
        };
        assert_eq!(by("3", "cfg").ty, "float");
        assert_eq!(by("3", "steps").ty, "integer");
        assert_eq!(by("3", "steps").default, "20");
        assert_eq!(
            by("6", "text").name,
            "text_6",
            "two nodes have a text input"
        );
        assert_eq!(by("6", "text").default, "a cat");
        assert_eq!(by("6", "text").node_title, "Positive");
        assert_eq!(
            by("7", "text").node_title,
            "CLIPTextEncode",
            "no title: the class"
        );
    }

    #[test]
    fn a_row_becomes_a_binding_with_typed_limits_and_default() {
        let rows = drafts(&detail(vec![], vec![]));
        let mut steps = rows.iter().find(|r| r.input == "steps").unwrap().clone();
        steps.bound = true;
        steps.name = "steps".into();
        steps.min = "1".into();
        steps.max = " 150 ".into();
        let b = steps.binding().unwrap();
        assert_eq!(
            b.param.ty,
            ParamType::Integer {
                min: Some(1),
                max: Some(150)
            }
        );
        assert_eq!(b.param.default, Some(json!(20)));
        assert_eq!((b.node.as_str(), b.input.as_str()), ("3", "steps"));
        // The same row as JSON is what the server reads (flattened parameter).
        let sent = serde_json::to_value(&b).unwrap();
        assert_eq!(sent["type"], "integer");
        assert_eq!(sent["max"], 150);

        steps.ty = "enum".into();
        steps.options = "euler, , karras".into();
        assert_eq!(
            steps.binding().unwrap().param.ty,
            ParamType::Enum {
                options: vec!["euler".into(), "karras".into()]
            }
        );
        steps.ty = "asset:video".into();
        assert_eq!(
            steps.binding().unwrap().param.default,
            None,
            "an asset has no default"
        );
        steps.ty = "model".into();
        assert!(steps.binding().unwrap_err().contains("folder"));
    }

    #[test]
    fn bad_fields_are_named_with_node_and_input() {
        let mut rows = drafts(&detail(vec![], vec![]));
        for r in &mut rows {
            r.bound = r.input == "steps" || r.input == "cfg";
        }
        rows.iter_mut().find(|r| r.input == "steps").unwrap().min = "one".into();
        rows.iter_mut().find(|r| r.input == "cfg").unwrap().default = "high".into();
        let problems = collect(&rows).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("Node 3 (KSampler), input \"cfg\"")
                && problems[0].contains("\"high\" is not a number"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("input \"steps\"") && problems[1].contains("not a whole number"),
            "{problems:?}"
        );
        // Unticked rows are not sent, whatever they hold.
        for r in &mut rows {
            r.bound = false;
        }
        assert_eq!(collect(&rows).unwrap(), vec![]);
    }

    #[test]
    fn types_read_in_words() {
        assert_eq!(
            type_text(&ParamType::Integer {
                min: Some(1),
                max: Some(150)
            }),
            "integer 1–150"
        );
        assert_eq!(
            type_text(&ParamType::Model {
                folder: "loras".into()
            }),
            "model in loras"
        );
        assert_eq!(
            type_value(&ParamType::Asset {
                kind: "audio".into()
            }),
            "asset:audio"
        );
        assert!(TYPES
            .iter()
            .any(|(v, _)| *v == type_value(&ParamType::Seed)));
    }
}
