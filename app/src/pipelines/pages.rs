//! The runs pages: the list with counts per state and filters, the form that submits a
//! template (generated from its parameters, checked in the browser by the same rules the
//! server applies again), and a run's page (its stages as a graph, progress, timings,
//! the live log with search, outputs, and cancel / retry / run again). Everything follows
//! the server live over SSE.

use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use uuid::Uuid;

use super::api::{
    get_run, get_runs, get_template_form, CancelRun, ResubmitRun, RetryStage, SubmitRun,
};
use super::template::{ParamType, Parameter};
use super::*;
use crate::components::{
    encode_query_value, follow_events, EmptyState, ErrorNote, PageHeader, ProgressBar, Time,
};

pub const EVENTS_URL: &str = "/api/runs/events";

fn state_pill(state: &str) -> impl IntoView {
    let (class, label) = match state {
        "succeeded" => ("pill health-healthy", "✓ succeeded"),
        "running" => ("pill health-progressing", "↻ running"),
        "queued" => ("pill health-suspended", "… queued"),
        "waiting" => ("pill health-suspended", "… waiting"),
        "failed" => ("pill health-degraded", "✕ failed"),
        "cancelled" => ("pill health-unknown", "⊘ cancelled"),
        "skipped" => ("pill health-unknown", "– skipped"),
        "lost" => ("pill health-unknown", "⚠ lost"),
        _ => ("pill health-unknown", "? unknown"),
    };
    view! { <span class=class>{label}</span> }
}

fn progress_bar(fraction: f32, label: String) -> impl IntoView {
    view! { <ProgressBar fraction=f64::from(fraction) label/> }
}

/// How long from `from` to `to`, or to `now` (the server's clock: the browser's is not
/// used) while it goes on.
fn duration(
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    match from {
        None => "—".into(),
        Some(start) => {
            let end = to.unwrap_or(now);
            let s = (end - start).num_seconds().max(0);
            if s < 60 {
                format!("{s} s")
            } else if s < 3600 {
                format!("{} min {} s", s / 60, s % 60)
            } else {
                format!("{} h {} min", s / 3600, (s % 3600) / 60)
            }
        }
    }
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let refresh = RwSignal::new(0u64);
    follow_events(EVENTS_URL, "run", |_| true, refresh);
    let filter = move || {
        let q = query.read();
        RunFilter {
            state: q.get("state").unwrap_or_default(),
            template: q.get("template").unwrap_or_default(),
            submitter: q.get("submitter").unwrap_or_default(),
            from: q.get("from").unwrap_or_default(),
            to: q.get("to").unwrap_or_default(),
        }
    };
    let data = Resource::new(move || (filter(), refresh.get()), |(f, _)| get_runs(f));
    let value = move |key: &'static str| move || query.read().get(key).unwrap_or_default();
    view! {
        <PageHeader title="Runs" subtitle="Pipeline runs: generated images, renders and encodes, as they happen."/>
        <p><A href="/runs/new" attr:class="btn primary" attr:id="new-run">"New run"</A></p>
        <Transition fallback=|| view! { <p class="loading">"Loading runs…"</p> }>
            {move || data.get().map(|r| match r {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(v) => {
                    let counts = RunState::ALL.iter().map(|s| {
                        let n = v.counts.iter().find(|(state, _)| state == s).map(|c| c.1).unwrap_or(0);
                        let href = format!("/runs?state={s}");
                        view! { <A href=href attr:class="chip">{format!("{s} {n}")}</A> }
                    }).collect_view();
                    let templates = v.templates.clone();
                    let now = v.now;
                    view! {
                        <nav class="chips" aria-label="Runs by state">{counts}</nav>
                        <section class="card">
                            <Form method="GET" action="" attr:class="form inline-form filters" attr:id="runs-filter">
                                <div class="field">
                                    <label for="r-state">"State"</label>
                                    <select id="r-state" name="state">
                                        <option value="">"Any"</option>
                                        {RunState::ALL.iter().map(|s| s.as_str()).map(|s| view! { <option value=s selected=move || value("state")() == s>{s}</option> }).collect_view()}
                                    </select>
                                </div>
                                <div class="field">
                                    <label for="r-template">"Template"</label>
                                    <select id="r-template" name="template">
                                        <option value="">"Any"</option>
                                        {templates.into_iter().map(|t| { let (v1, v2) = (t.name.clone(), t.name.clone()); view! { <option value=v1 selected=move || value("template")() == v2>{t.title}</option> } }).collect_view()}
                                    </select>
                                </div>
                                <div class="field">
                                    <label for="r-submitter">"Submitted by"</label>
                                    <input id="r-submitter" name="submitter" placeholder="email" value=value("submitter")/>
                                </div>
                                <div class="field">
                                    <label for="r-from">"From"</label>
                                    <input id="r-from" name="from" type="date" value=value("from")/>
                                </div>
                                <div class="field">
                                    <label for="r-to">"To"</label>
                                    <input id="r-to" name="to" type="date" value=value("to")/>
                                </div>
                                <button type="submit" class="btn">"Apply"</button>
                                <A href="/runs" attr:class="btn link">"Clear"</A>
                            </Form>
                            {if v.runs.is_empty() {
                                view! { <EmptyState title="No runs here">"Start one with New run: pick a template, fill in its form, and follow it live."</EmptyState> }.into_any()
                            } else {
                                view! {
                                    <table class="table runs" id="runs">
                                        <thead><tr><th scope="col">"Run"</th><th scope="col">"State"</th><th scope="col">"Progress"</th><th scope="col">"Submitted"</th><th scope="col">"Took"</th></tr></thead>
                                        <tbody>
                                            {v.runs.into_iter().map(|r| { let bar = progress_bar(r.progress, format!("{} progress", r.title)); view! {
                                                <tr data-run=r.id.to_string()>
                                                    <td><A href=format!("/runs/{}", r.id)>{r.title.clone()}</A><br/><span class="muted">{format!("{} v{}", r.template, r.version)}</span></td>
                                                    <td>{state_pill(r.state.as_str())}</td>
                                                    <td>{bar}<span class="muted">{format!("{} of {} stages", r.stages_done, r.stages_total)}</span></td>
                                                    <td><Time at=r.created_at/><br/><span class="muted">{r.submitted_by.clone()}</span></td>
                                                    <td>{duration(r.started_at, r.finished_at, now)}</td>
                                                </tr>
                                            } }).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any()
                            }}
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
    }
}

#[component]
pub fn NewRunPage() -> impl IntoView {
    let query = use_query_map();
    let chosen = move || query.read().get("template");
    let from = move || {
        query
            .read()
            .get("from")
            .and_then(|f| f.parse::<Uuid>().ok())
    };
    let list = Resource::new(|| (), |_| get_runs(RunFilter::default()));
    let form = Resource::new(
        move || (chosen(), from()),
        |(name, from)| async move {
            match name {
                Some(n) => Some(get_template_form(n, from).await),
                None => None,
            }
        },
    );
    view! {
        <PageHeader title="New run" subtitle="Choose a template, fill in its parameters, submit: the run's page follows it live."/>
        <Transition fallback=|| view! { <p class="loading">"Loading templates…"</p> }>
            {move || list.get().map(|r| match r {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(v) => view! {
                    <nav class="template-cards" aria-label="Templates">
                        {v.templates.into_iter().map(|t| {
                            let current = chosen().as_deref() == Some(t.name.as_str());
                            let stages = t.stages.iter().map(|(s, e)| format!("{s} ({e})")).collect::<Vec<_>>().join(" → ");
                            view! {
                                <A href=format!("/runs/new?template={}", encode_query_value(&t.name))
                                    attr:class=if current { "template-card active" } else { "template-card" }
                                    attr:aria-current=if current { "true" } else { "false" }>
                                    <strong>{t.title}</strong>
                                    <span class="muted">{t.description.unwrap_or_default()}</span>
                                    <span class="stages">{stages}</span>
                                </A>
                            }
                        }).collect_view()}
                    </nav>
                }.into_any(),
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || form.get().flatten().map(|r| match r {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(f) => view! { <RunForm form=f/> }.into_any(),
            })}
        </Transition>
    }
}

fn field(p: &Parameter, choices: &[(Uuid, String)], files: Option<&[String]>) -> impl IntoView {
    let id = format!("param-{}", p.name);
    let name = format!("params[{}]", p.name);
    let label = p.label().to_owned();
    let required = p.required && p.ty != ParamType::Seed;
    let default = p
        .default
        .as_ref()
        .map(|d| match d {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let help = p.help.clone();
    let input = match &p.ty {
        ParamType::Text { max_length } => view! {
            <textarea id=id.clone() name=name rows="3" required=required maxlength=max_length.map(|m| m.to_string())>{default}</textarea>
        }.into_any(),
        ParamType::String { max_length } => view! {
            <input id=id.clone() name=name required=required value=default maxlength=max_length.map(|m| m.to_string())/>
        }.into_any(),
        ParamType::Integer { min, max } => view! {
            <input id=id.clone() name=name type="number" step="1" required=required value=default
                min=min.map(|m| m.to_string()) max=max.map(|m| m.to_string())/>
        }.into_any(),
        ParamType::Float { min, max } => view! {
            <input id=id.clone() name=name type="number" step="any" required=required value=default
                min=min.map(|m| m.to_string()) max=max.map(|m| m.to_string())/>
        }.into_any(),
        ParamType::Seed => view! {
            <input id=id.clone() name=name type="number" step="1" min="0" max=super::template::MAX_SEED.to_string()
                placeholder="random" value=default/>
        }.into_any(),
        ParamType::Boolean => view! {
            <input id=id.clone() name=name type="checkbox" value="true" checked=default == "true"/>
        }.into_any(),
        ParamType::Enum { options } => view! {
            <select id=id.clone() name=name required=required>
                {options.iter().map(|o| { let selected = *o == default; view! { <option value=o.clone() selected=selected>{o.clone()}</option> } }).collect_view()}
            </select>
        }.into_any(),
        ParamType::Asset { kind } => view! {
            <select id=id.clone() name=name required=required>
                <option value="">{format!("Choose a {kind}…")}</option>
                {choices.iter().map(|(a, n)| { let selected = a.to_string() == default; view! { <option value=a.to_string() selected=selected>{n.clone()}</option> } }).collect_view()}
            </select>
        }.into_any(),
        ParamType::Model { folder } => match files {
            Some(files) if !files.is_empty() => view! {
                <select id=id.clone() name=name required=required>
                    {(!required).then(|| view! { <option value="">{format!("The endpoint's first file in {folder}")}</option> })}
                    {files.iter().map(|f| { let selected = *f == default; view! { <option value=f.clone() selected=selected>{f.clone()}</option> } }).collect_view()}
                </select>
            }.into_any(),
            _ => view! {
                <input id=id.clone() name=name required=required value=default
                    placeholder=format!("a file in the endpoint's {folder} folder")/>
            }.into_any(),
        },
        ParamType::Assets { .. } => {
            let chosen: Vec<String> = p.default.as_ref().and_then(|d| d.as_array()).into_iter().flatten()
                .filter_map(|v| v.as_str().map(str::to_owned)).collect();
            view! {
                <select id=id.clone() name=format!("lists[{}][]", p.name) multiple=true required=required size="5">
                    {choices.iter().map(|(a, n)| { let selected = chosen.contains(&a.to_string()); view! { <option value=a.to_string() selected=selected>{n.clone()}</option> } }).collect_view()}
                </select>
            }
        }.into_any(),
    };
    let empty_assets =
        matches!(p.ty, ParamType::Asset { .. } | ParamType::Assets { .. }) && choices.is_empty();
    let no_inventory =
        matches!(p.ty, ParamType::Model { .. }) && files.is_none_or(|f| f.is_empty());
    view! {
        <div class="field">
            <label for=id>{label}{required.then_some(" *")}</label>
            {input}
            {help.map(|h| view! { <span class="hint">{h}</span> })}
            {empty_assets.then(|| view! { <span class="hint">"No ready asset of this kind yet: upload one in Assets first."</span> })}
            {no_inventory.then(|| view! { <span class="hint">"The endpoint's model list is not known yet (no healthy endpoint, or not fetched): type the file's name."</span> })}
        </div>
    }
}

#[component]
fn RunForm(form: TemplateForm) -> impl IntoView {
    let submit = ServerAction::<SubmitRun>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = submit.value().get() {
            navigate(&format!("/runs/{id}"), Default::default());
        }
    });
    let fields = form
        .parameters
        .iter()
        .map(|p| {
            let choices = form
                .choices
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|c| c.1.clone())
                .unwrap_or_default();
            let files = form
                .models
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|m| m.1.as_slice());
            field(p, &choices, files)
        })
        .collect_view();
    let template = form.summary.name.clone();
    view! {
        <section class="card" id="run-form-card">
            <h2>{format!("{} (version {})", form.summary.title, form.summary.version)}</h2>
            {form.unavailable.clone().map(|why| view! { <div class="notice error" role="alert">{why}</div> })}
            {move || submit.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNote error=e/> })}
            <ActionForm action=submit attr:class="form" attr:id="run-form">
                <input type="hidden" name="template" value=template/>
                {fields}
                <div class="field">
                    <label for="run-priority">"Priority"</label>
                    <input id="run-priority" name="priority" type="number" min="-100" max="100" step="1" value="0"/>
                    <span class="hint">"Higher runs first; raising it above 0 is for leads and admins."</span>
                </div>
                <button type="submit" class="btn primary" id="run-submit" disabled=form.unavailable.is_some()>"Submit"</button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|i| i.parse::<Uuid>().ok());
    let refresh = RwSignal::new(0u64);
    follow_events(EVENTS_URL, "run", |_| true, refresh);
    // Outputs become ready (thumbnails, proxies) after the run: follow the library too.
    follow_events("/api/assets/events", "asset", |_| true, refresh);
    let cancel = ServerAction::<CancelRun>::new();
    let retry = ServerAction::<RetryStage>::new();
    let again = ServerAction::<ResubmitRun>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(new)) = again.value().get() {
            navigate(&format!("/runs/{new}"), Default::default());
        }
    });
    let detail = Resource::new(
        move || {
            (
                id(),
                refresh.get(),
                cancel.version().get(),
                retry.version().get(),
            )
        },
        |(id, ..)| async move {
            match id {
                Some(id) => get_run(id).await,
                None => Err(crate::error::AppError::NotFound(
                    "There is no such run.".into(),
                )),
            }
        },
    );
    let search = RwSignal::new(String::new());
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the run…"</p> }>
            {move || detail.get().map(|r| match r {
                Err(e) => view! { <PageHeader title="Run"/><ErrorNote error=e/> }.into_any(),
                Ok(d) => run_view(d, cancel, retry, again, search).into_any(),
            })}
        </Transition>
        {move || cancel.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNote error=e/> })}
        {move || retry.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNote error=e/> })}
        {move || again.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNote error=e/> })}
    }
}

/// Most instances of a fanned-out stage drawn in its box (the rest are counted).
const INSTANCES_SHOWN: usize = 120;
/// Most questions of a fanned-out stage's instances shown at once.
const QUESTIONS_SHOWN: usize = 5;

/// What a Dagster run materialized, each asset with its metadata (labels and values).
fn materializations(all: Option<&serde_json::Value>) -> Option<AnyView> {
    let all = all?.as_array()?;
    if all.is_empty() {
        return None;
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let items = all
        .iter()
        .map(|m| {
            let key = m["asset_key"].as_str().unwrap_or("?").to_owned();
            let step = m["step"].as_str().map(|s| format!(" (step {s})")).unwrap_or_default();
            let facts = m["metadata"]
                .as_object()
                .map(|meta| {
                    meta.iter()
                        .map(|(label, value)| view! { <dt>{label.clone()}</dt><dd>{text(value)}</dd> })
                        .collect_view()
                })
                .unwrap_or_default();
            view! { <li><strong>{key}</strong>{step}<dl class="facts">{facts}</dl></li> }
        })
        .collect_view();
    Some(
        view! {
            <details class="materializations">
                <summary>{format!("{} materialized", all.len())}</summary>
                <ul>{items}</ul>
            </details>
        }
        .into_any(),
    )
}

/// Whether a stage is running and waiting for a person's answer (a LangGraph interrupt:
/// only those ask, and each question follows the run's events on its own).
fn waits_for_a_person(st: &StageView) -> bool {
    st.state == StageState::Running
        && st.executor == "langgraph"
        && st
            .status
            .as_deref()
            .is_some_and(|m| m.starts_with("Waiting for a person"))
}

/// One stage's box in the graph: its state, attempts, progress, status, last image and
/// retry button, and for a fanned-out stage its instances, each a small box of its own.
fn stage_card(
    st: &StageView,
    instances: &[StageView],
    id: Uuid,
    may_retry: bool,
    now: chrono::DateTime<chrono::Utc>,
    retry: ServerAction<RetryStage>,
) -> impl IntoView {
    let can_retry = may_retry && matches!(st.state, StageState::Failed | StageState::Cancelled);
    let stage = st.name.clone();
    let retry_label = if st.fanned.is_some() {
        "Retry what failed"
    } else {
        "Retry this stage"
    };
    let fanned = st.fanned.map(|n| {
        let shown = instances.iter().take(INSTANCES_SHOWN).map(|i| instance_card(i, id, may_retry, retry)).collect_view();
        let more = instances.len().saturating_sub(INSTANCES_SHOWN);
        let count = |state: StageState| instances.iter().filter(|i| i.state == state).count();
        let summary = format!(
            "{n} instances · {} succeeded · {} running · {} failed",
            count(StageState::Succeeded),
            count(StageState::Running),
            count(StageState::Failed)
        );
        // Instances waiting for a person ask their questions below the grid.
        let asking = instances
            .iter()
            .filter(|i| waits_for_a_person(i))
            .take(QUESTIONS_SHOWN)
            .map(|i| view! { <crate::pipelines::question::StageQuestion run=id stage=i.name.clone()/> })
            .collect_view();
        view! {
            <div class="instances">
                <span class="muted">{summary}</span>
                <ol class="instance-grid" aria-label=format!("Instances of {}", st.name)>{shown}</ol>
                {(more > 0).then(|| view! { <span class="muted">{format!("and {more} more")}</span> })}
                {asking}
            </div>
        }
    });
    let question = waits_for_a_person(st).then(
        || view! { <crate::pipelines::question::StageQuestion run=id stage=st.name.clone()/> },
    );
    view! {
        <li class=format!("stage stage-{}", st.state) data-stage=st.name.clone()>
            <div class="stage-head"><strong>{st.name.clone()}</strong>{state_pill(st.state.as_str())}</div>
            <span class="muted">{if st.fanned.is_some() {
                format!("{} · once per item", st.executor)
            } else {
                format!("{} · attempt {} of {}", st.executor, st.attempt.max(1).min(st.attempts_max), st.attempts_max)
            }}</span>
            {progress_bar(st.progress.unwrap_or(if st.state == StageState::Succeeded { 1.0 } else { 0.0 }), format!("{} progress", st.name))}
            <span class="muted">{format!("queued {} · ran {}", duration(st.queued_at, st.started_at, now), duration(st.started_at, st.finished_at, now))}</span>
            {st.status.clone().map(|m| view! { <span class="stage-status">{m}</span> })}
            {st.preview_at.map(|at| view! {
                <img class="stage-preview" alt=format!("The last image {} produced", st.name)
                    src=format!("/api/runs/{id}/stages/{}/preview?at={}", encode_query_value(&st.name), at.timestamp_millis())/>
            })}
            {question}
            {fanned}
            {can_retry.then(|| view! {
                <ActionForm action=retry attr:class="inline">
                    <input type="hidden" name="id" value=id.to_string()/>
                    <input type="hidden" name="stage" value=stage/>
                    <button type="submit" class="btn small">{retry_label}</button>
                </ActionForm>
            })}
        </li>
    }
}

/// One instance of a fanned-out stage: its item, state, progress and last image.
fn instance_card(
    st: &StageView,
    id: Uuid,
    may_retry: bool,
    retry: ServerAction<RetryStage>,
) -> impl IntoView {
    let can_retry = may_retry && matches!(st.state, StageState::Failed | StageState::Cancelled);
    let index = st.item_index.unwrap_or_default();
    let failed = st.state == StageState::Failed;
    let label = st.item_label.clone().unwrap_or_default();
    let stage = st.name.clone();
    view! {
        <li class=format!("instance stage-{}", st.state) data-stage=st.name.clone()
            title=st.status.clone().unwrap_or_else(|| st.state.as_str().to_owned())>
            <div class="stage-head"><span>{format!("#{index}")}</span>{state_pill(st.state.as_str())}</div>
            {(!label.is_empty()).then(|| view! { <span class="instance-label">{label.clone()}</span> })}
            {progress_bar(st.progress.unwrap_or(if st.state == StageState::Succeeded { 1.0 } else { 0.0 }), format!("{} progress", st.name))}
            {st.preview_at.map(|at| view! {
                <img class="instance-preview" alt=format!("The last image of instance {index}")
                    src=format!("/api/runs/{id}/stages/{}/preview?at={}", encode_query_value(&st.name), at.timestamp_millis())/>
            })}
            {st.status.clone().filter(|_| failed).map(|m| view! { <span class="stage-status">{m}</span> })}
            {can_retry.then(|| view! {
                <ActionForm action=retry attr:class="inline">
                    <input type="hidden" name="id" value=id.to_string()/>
                    <input type="hidden" name="stage" value=stage/>
                    <button type="submit" class="btn small">"Retry"</button>
                </ActionForm>
            })}
        </li>
    }
}

/// Each stage's column in the graph: the length of its longest chain of upstream stages.
fn depths(stages: &[StageView]) -> Vec<usize> {
    let mut depth = vec![0usize; stages.len()];
    for _ in 0..stages.len() {
        for (i, s) in stages.iter().enumerate() {
            let d = s
                .needs
                .iter()
                .filter_map(|n| stages.iter().position(|o| &o.name == n))
                .map(|j| depth[j] + 1)
                .max()
                .unwrap_or(0);
            depth[i] = d;
        }
    }
    depth
}

fn run_view(
    d: RunDetail,
    cancel: ServerAction<CancelRun>,
    retry: ServerAction<RetryStage>,
    again: ServerAction<ResubmitRun>,
    search: RwSignal<String>,
) -> impl IntoView {
    let s = d.summary.clone();
    let id = s.id;
    let finished = s.state.is_finished();
    // The graph draws the template's stages; a fanned-out stage's instances are drawn
    // inside its box.
    let (instances, stages): (Vec<StageView>, Vec<StageView>) =
        d.stages.iter().cloned().partition(|st| st.fan_of.is_some());
    let depth = depths(&stages);
    let columns = depth.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let graph = (0..columns)
        .map(|col| {
            let boxes = stages
                .iter()
                .zip(&depth)
                .filter(|(_, dep)| **dep == col)
                .map(|(st, _)| {
                    let mine: Vec<StageView> = instances
                        .iter()
                        .filter(|i| i.fan_of.as_deref() == Some(st.name.as_str()))
                        .cloned()
                        .collect();
                    stage_card(st, &mine, id, d.can_change && finished, d.now, retry)
                })
                .collect_view();
            view! { <ol class="stage-column">{boxes}</ol> }
        })
        .collect_view();
    let outputs = d.outputs.clone();
    let log = d.log.clone();
    view! {
        <PageHeader title=s.title.clone() subtitle=format!("{} version {} · submitted by {}", s.template, s.version, s.submitted_by)/>
        <section class="card run-head" id="run-head">
            {state_pill(s.state.as_str())}
            {progress_bar(s.progress, "Run progress".into())}
            <span class="muted">{format!("{} of {} stages done · took {}", s.stages_done, s.stages_total, duration(s.started_at, s.finished_at, d.now))}</span>
            <div class="actions">
                {(d.can_change && !finished).then(|| view! {
                    <ActionForm action=cancel attr:class="inline">
                        <input type="hidden" name="id" value=id.to_string()/>
                        <button type="submit" class="btn danger" id="run-cancel">"Cancel run"</button>
                    </ActionForm>
                })}
                {d.can_change.then(|| view! {
                    <ActionForm action=again attr:class="inline">
                        <input type="hidden" name="id" value=id.to_string()/>
                        <button type="submit" class="btn" id="run-again" title="The same template version and parameters, seed included">"Run again exactly"</button>
                    </ActionForm>
                    <A href=format!("/runs/new?template={}&from={id}", encode_query_value(&d.summary.template)) attr:class="btn" attr:id="run-edit"
                        attr:title="The form of the template's current version, filled with this run's values">"Edit and run again"</A>
                })}
            </div>
        </section>
        <section class="card" id="run-stages">
            <h2>"Stages"</h2>
            <div class="stage-graph">{graph}</div>
        </section>
        <section class="card" id="run-outputs">
            <h2>"Outputs"</h2>
            {if outputs.is_empty() {
                view! { <p class="muted">{if finished { "This run produced no files." } else { "Files appear here as stages finish." }}</p> }.into_any()
            } else {
                view! {
                    <div class="asset-grid">
                        {outputs.into_iter().map(|o| { let data_name = o.name.clone(); view! {
                            <A href=format!("/assets/{}", o.asset) attr:class="asset-tile" attr:data-name=data_name>
                                <div class="thumb">{o.has_thumbnail.then(|| view! { <img src=format!("/api/assets/{}/thumbnail", o.asset) alt=""/> })}</div>
                                <div class="tile-name">{o.name.clone()}</div>
                                <div class="tile-meta">{format!("{} · {}", o.stage, o.state)}</div>
                            </A>
                        } }).collect_view()}
                    </div>
                }.into_any()
            }}
        </section>
        <section class="card" id="run-attempts">
            <h2>"Attempts"</h2>
            {if d.attempts.is_empty() {
                view! { <p class="muted">"No stage has started yet."</p> }.into_any()
            } else {
                view! {
                    <table class="table">
                        <thead><tr><th scope="col">"Stage"</th><th scope="col">"Attempt"</th><th scope="col">"State"</th><th scope="col">"Ran"</th><th scope="col">"Ran as"</th><th scope="col">"Log"</th></tr></thead>
                        <tbody>
                            {d.attempts.iter().map(|a| view! {
                                <tr data-attempt=a.id.to_string()>
                                    <td>{a.stage.clone()}</td>
                                    <td>{a.number}</td>
                                    <td>{state_pill(a.state.as_str())}{a.error.clone().map(|e| view! { <br/><span class="muted">{e}</span> })}</td>
                                    <td><Time at=a.started_at/><br/><span class="muted">{duration(Some(a.started_at), a.finished_at, d.now)}</span></td>
                                    <td><code>{a.reference.clone().unwrap_or_default()}</code>{materializations(a.materializations.as_ref())}</td>
                                    <td>{if a.has_log {
                                        view! { <a href=format!("/api/runs/{id}/attempts/{}/log", a.id) target="_blank" rel="noopener">"Whole log"</a> }.into_any()
                                    } else {
                                        view! { <span class="muted">"when it ends"</span> }.into_any()
                                    }}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="card" id="run-params">
            <h2>"Parameters"</h2>
            <dl class="facts">{d.params.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}</dl>
        </section>
        <section class="card" id="run-log">
            <h2>"Log"</h2>
            <label for="log-search" class="visually-hidden">"Search the log"</label>
            <input id="log-search" type="search" placeholder="Search the log" prop:value=move || search.get()
                on:input=move |e| search.set(event_target_value(&e))/>
            <pre class="code log">
                {move || {
                    let needle = search.get().to_lowercase();
                    log.iter()
                        .filter(|l| needle.is_empty() || l.line.to_lowercase().contains(&needle))
                        .map(|l| format!("[{}] {}\n", l.stage, l.line))
                        .collect::<String>()
                }}
            </pre>
        </section>
    }
}

/// The admins' template editor: every template and its versions; a version's YAML to
/// edit and save as the next version (refused with every problem and its line); and the
/// differences from the version before it or any other.
#[component]
pub fn TemplatesPage() -> impl IntoView {
    use super::api::{get_template_source, get_template_versions, SaveTemplate};
    let query = use_query_map();
    let save = ServerAction::<SaveTemplate>::new();
    let list = Resource::new(move || save.version().get(), |_| get_template_versions());
    let chosen = move || {
        let q = query.read();
        (
            q.get("name"),
            q.get("version").and_then(|v| v.parse::<i32>().ok()),
            q.get("against").and_then(|v| v.parse::<i32>().ok()),
        )
    };
    let source = Resource::new(
        move || (chosen(), save.version().get()),
        |((name, version, against), _)| async move {
            match name {
                Some(n) => Some(get_template_source(n, version, against).await),
                None => None,
            }
        },
    );
    view! {
        <PageHeader title="Pipeline templates" subtitle="Every template and every saved version; a run names the version it ran."/>
        {move || save.value().get().map(|r| match r {
            Ok((name, version)) => view! { <div class="notice success" role="status" id="template-saved">{format!("Saved {name} version {version}.")}</div> }.into_any(),
            Err(crate::error::AppError::Invalid(problems)) => view! {
                <div class="notice error" role="alert" id="template-problems">
                    <strong>"The template was not saved:"</strong>
                    <ul>{problems.lines().map(|l| view! { <li>{l.to_owned()}</li> }).collect_view()}</ul>
                </div>
            }.into_any(),
            Err(e) => view! { <ErrorNote error=e/> }.into_any(),
        })}
        <div class="editor-layout">
            <Transition fallback=|| view! { <p class="loading">"Loading templates…"</p> }>
                {move || list.get().map(|r| match r {
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    Ok(templates) => view! {
                        <nav class="card template-list" aria-label="Templates">
                            {templates.into_iter().map(|t| view! {
                                <h3>{t.title.clone()}</h3>
                                <ul>
                                    {t.versions.iter().map(|(v, at, builtin, by)| view! {
                                        <li>
                                            <A href=format!("/admin/pipelines?name={}&version={v}", encode_query_value(&t.name))>{format!("version {v}")}</A>
                                            " "<span class="muted">{format!("{} · {}", if *builtin { "built in".to_owned() } else { by.clone().unwrap_or_else(|| "—".into()) }, crate::components::format_time(*at))}</span>
                                        </li>
                                    }).collect_view()}
                                </ul>
                            }).collect_view()}
                        </nav>
                    }.into_any(),
                })}
            </Transition>
            <Transition fallback=|| ()>
                {move || match source.get().flatten() {
                    None => view! { <EmptyState title="Choose a version">"Pick a template's version to read it, change it and save the next version."</EmptyState> }.into_any(),
                    Some(Err(e)) => view! { <ErrorNote error=e/> }.into_any(),
                    Some(Ok(t)) => {
                        let changed = t.diff.iter().filter(|r| r.change != super::super::deploys::diff::Change::Same).count();
                        let left = t.against.map(|a| format!("version {a}")).unwrap_or_else(|| "nothing before".into());
                        view! {
                            <section class="card" id="template-editor">
                                <h2>{format!("{} · version {}", t.name, t.version)}</h2>
                                <ActionForm action=save attr:class="form">
                                    <label for="template-source">"YAML (saving makes the next version; runs keep the version they ran)"</label>
                                    <textarea id="template-source" name="source" rows="24" spellcheck="false" class="code-input">{t.source.clone()}</textarea>
                                    <button type="submit" class="btn primary" id="template-save">"Save as a new version"</button>
                                </ActionForm>
                                <h3>{format!("Changes from {left}: {changed} lines")}</h3>
                                {crate::deploys::pages::side_by_side(&t.diff, left, format!("version {}", t.version))}
                            </section>
                        }.into_any()
                    }
                }}
            </Transition>
        </div>
    }
}
