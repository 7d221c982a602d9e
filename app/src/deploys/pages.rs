//! The deploys page (leads and admins): the rollout of every workload now, the history
//! of the namespace or of one workload with filters, a side-by-side diff of any revision
//! against its previous one or another, restart (leads) and rollback with a confirmation
//! that shows what will change (admins). Everything follows the server live.

use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_query_map;

use super::api::{get_deploys, get_diff, preview_rollback, Restart, Rollback};
use super::diff::Change;
use super::*;
use crate::components::{
    encode_query_value, follow_events, EmptyState, ErrorNote, PageHeader, Time,
};

pub const EVENTS_URL: &str = "/api/lead/deploys/events";

fn rollout_pill(state: &str) -> impl IntoView {
    let (class, label) = match state {
        "complete" => ("pill health-healthy", "✓ Complete"),
        "progressing" => ("pill health-progressing", "↻ Progressing"),
        "failed" => ("pill health-degraded", "✕ Failed"),
        "paused" => ("pill health-suspended", "⏸ Paused"),
        _ => ("pill health-unknown", "? Unknown"),
    };
    view! { <span class=class>{label}</span> }
}

fn outcome_pill(outcome: &str) -> impl IntoView {
    let (class, label) = match outcome {
        "done" => ("pill health-healthy", "✓ done"),
        "started" => ("pill health-progressing", "↻ started"),
        "refused" => ("pill health-suspended", "⊘ refused"),
        "failed" => ("pill health-degraded", "✕ failed"),
        _ => ("pill health-unknown", "? unknown"),
    };
    view! { <span class=class>{label}</span> }
}

fn source_label(source: &str) -> &'static str {
    match source {
        "ci" => "CI",
        "slate" => "Slate",
        _ => "Cluster",
    }
}

/// The page's address with `changes` applied to the current query.
fn href_with(
    query: &leptos_router::params::ParamsMap,
    changes: &[(&str, Option<String>)],
) -> String {
    let keys = [
        "workload", "source", "actor", "outcome", "kind", "name", "rev", "against",
    ];
    let mut parts = Vec::new();
    for key in keys {
        let value = match changes.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => v.clone(),
            None => query.get(key),
        };
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            parts.push(format!("{key}={}", encode_query_value(&v)));
        }
    }
    if parts.is_empty() {
        "/deploys".into()
    } else {
        format!("/deploys?{}", parts.join("&"))
    }
}

#[component]
pub fn DeploysPage() -> impl IntoView {
    let query = use_query_map();
    let refresh = RwSignal::new(0u64);
    follow_events(EVENTS_URL, "changed", |_| true, refresh);
    let restart = ServerAction::<Restart>::new();
    let rollback = ServerAction::<Rollback>::new();
    let filter = move || {
        let q = query.read();
        DeployFilter {
            workload: q.get("workload").unwrap_or_default(),
            source: q.get("source").unwrap_or_default(),
            actor: q.get("actor").unwrap_or_default(),
            outcome: q.get("outcome").unwrap_or_default(),
        }
    };
    let view_data = Resource::new(
        move || {
            (
                filter(),
                refresh.get(),
                restart.version().get(),
                rollback.version().get(),
            )
        },
        |(f, ..)| get_deploys(f),
    );
    let selected = move || {
        let q = query.read();
        let kind = q.get("kind")?;
        let name = q.get("name")?;
        let rev = q.get("rev")?.parse::<i64>().ok()?;
        let against = q.get("against").and_then(|a| a.parse::<i64>().ok());
        Some((kind, name, rev, against))
    };
    let diff = Resource::new(
        move || (selected(), rollback.version().get()),
        |(sel, _)| async move {
            match sel {
                Some((kind, name, rev, against)) => Some(get_diff(kind, name, rev, against).await),
                None => None,
            }
        },
    );
    // The revision an admin is about to roll back to.
    let confirming = RwSignal::new(None::<(String, i64)>);
    // Bring the diff (or the confirmation) into view when it opens: it is above the
    // timeline the link was clicked in.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let target = match (confirming.get(), diff.get()) {
            (Some(_), _) => "rollback-confirm",
            (None, Some(Some(_))) => "diff-panel",
            _ => return,
        };
        request_animation_frame(move || {
            if let Some(e) = document().get_element_by_id(target) {
                e.scroll_into_view();
            }
        });
    });
    let value = move |key: &'static str| move || query.read().get(key).unwrap_or_default();

    view! {
        <PageHeader title="Deploys" subtitle="Every rollout in the namespace, whoever made it: the cluster's revisions, CI's reports and Slate's own actions."/>
        {move || restart.value().get().map(|r| match r {
            Ok(message) => view! { <div class="notice success" role="status" id="deploy-message">{message}</div> }.into_any(),
            Err(e) => view! { <ErrorNote error=e/> }.into_any(),
        })}
        {move || rollback.value().get().map(|r| match r {
            Ok(message) => view! { <div class="notice success" role="status" id="deploy-message">{message}</div> }.into_any(),
            Err(e) => view! { <ErrorNote error=e/> }.into_any(),
        })}
        <Transition fallback=|| ()>
            {move || diff.get().flatten().map(|r| match r {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(d) => {
                    let data = view_data.get().and_then(|v| v.ok());
                    let can_rollback = data.as_ref().is_some_and(|v| v.can_rollback);
                    let running = data.and_then(|v| {
                        v.rollouts.into_iter().find(|r| r.kind == d.kind && r.name == d.name)?.revision
                    });
                    diff_panel(d, query.get(), can_rollback, running, confirming).into_any()
                }
            })}
        </Transition>
        {move || confirming.get().map(|(name, revision)| view! { <RollbackConfirm name revision rollback confirming/> })}
        <Transition fallback=|| view! { <p class="loading">"Loading the deploy history…"</p> }>
            {move || view_data.get().map(|r| match r {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(v) => {
                    let q = query.get();
                    let workloads = v.workloads.clone();
                    let actors = v.actors.clone();
                    view! {
                        {v.offline.clone().map(|why| view! { <div class="notice" role="status">{why}</div> })}
                        <section class="card" id="rollouts">
                            <h2>"Rollouts now"</h2>
                            {if v.rollouts.is_empty() {
                                view! { <EmptyState title="No workloads to show">{if v.offline.is_some() { "Connect Slate to a cluster to see live rollouts." } else { "The namespace has no Deployments or StatefulSets yet." }}</EmptyState> }.into_any()
                            } else {
                                rollouts_table(&v, &q, restart).into_any()
                            }}
                        </section>
                        <section class="card" id="history">
                            <h2>"History"</h2>
                            <Form method="GET" action="" attr:class="form inline-form filters" attr:id="deploy-filter">
                                <div class="field">
                                    <label for="f-workload">"Workload"</label>
                                    <select id="f-workload" name="workload">
                                        <option value="">"All"</option>
                                        {workloads.into_iter().map(|w| { let (sel, label) = (w.clone(), w.clone()); view! { <option value=w selected=move || value("workload")() == sel>{label}</option> } }).collect_view()}
                                    </select>
                                </div>
                                <div class="field">
                                    <label for="f-source">"Source"</label>
                                    <select id="f-source" name="source">
                                        <option value="">"Any"</option>
                                        {SOURCES.into_iter().map(|(s, l)| view! { <option value=s selected=move || value("source")() == s>{l}</option> }).collect_view()}
                                    </select>
                                </div>
                                <div class="field">
                                    <label for="f-actor">"Actor"</label>
                                    <input id="f-actor" name="actor" list="f-actors" placeholder="name or email" value=value("actor")/>
                                    <datalist id="f-actors">
                                        {actors.into_iter().map(|a| view! { <option value=a/> }).collect_view()}
                                    </datalist>
                                </div>
                                <div class="field">
                                    <label for="f-outcome">"Outcome"</label>
                                    <select id="f-outcome" name="outcome">
                                        <option value="">"Any"</option>
                                        {OUTCOMES.into_iter().map(|o| view! { <option value=o selected=move || value("outcome")() == o>{o}</option> }).collect_view()}
                                    </select>
                                </div>
                                <button type="submit" class="btn">"Apply"</button>
                                <A href="/deploys" attr:class="btn link">"Clear"</A>
                            </Form>
                            {if v.entries.is_empty() {
                                view! { <EmptyState title="Nothing recorded yet">{if q.get("workload").is_some() || q.get("source").is_some() || q.get("actor").is_some() || q.get("outcome").is_some() { "Nothing matches these filters." } else { "New revisions appear here as soon as the cluster makes them; CI reports arrive through POST /api/deploys." }}</EmptyState> }.into_any()
                            } else {
                                timeline(&v.entries, &q).into_any()
                            }}
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
    }
}

fn rollouts_table(
    v: &DeploysView,
    q: &leptos_router::params::ParamsMap,
    restart: ServerAction<Restart>,
) -> impl IntoView {
    let can_restart = v.can_restart;
    let rows = v
        .rollouts
        .iter()
        .map(|r| {
            let workload = format!("{}/{}", r.kind, r.name);
            let history = href_with(q, &[("workload", Some(workload.clone()))]);
            let id = format!("rollout-{}-{}", r.kind.to_lowercase(), r.name);
            let (kind, name) = (r.kind.clone(), r.name.clone());
            view! {
                <tr id=id data-state=r.state.clone()>
                    <td><strong>{r.name.clone()}</strong><br/><span class="muted">{r.kind.clone()}</span></td>
                    <td>{r.revision.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                    <td>{rollout_pill(&r.state)}<br/><span class="muted rollout-message">{r.message.clone()}</span></td>
                    <td>{format!("{}/{}", r.ready, r.desired)}</td>
                    <td>{r.images.iter().map(|i| view! { <code class="image">{i.clone()}</code> }).collect_view()}</td>
                    <td class="actions">
                        <A href=history attr:class="btn small link">"History"</A>
                        {can_restart.then(|| view! {
                            <details class="inline-confirm">
                                <summary class="btn small">"Restart…"</summary>
                                <ActionForm action=restart attr:class="form compact">
                                    <input type="hidden" name="kind" value=kind.clone()/>
                                    <input type="hidden" name="name" value=name.clone()/>
                                    <label for=format!("reason-{kind}-{name}")>"Reason (recorded)"</label>
                                    <input id=format!("reason-{kind}-{name}") name="reason" maxlength="500" placeholder="e.g. pick up the new Secret"/>
                                    <button type="submit" class="btn small danger">{format!("Restart {name}")}</button>
                                </ActionForm>
                            </details>
                        })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="table rollouts">
            <thead><tr><th scope="col">"Workload"</th><th scope="col">"Revision"</th><th scope="col">"Rollout"</th><th scope="col">"Ready"</th><th scope="col">"Images"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

fn timeline(entries: &[DeployEntry], q: &leptos_router::params::ParamsMap) -> impl IntoView {
    let items = entries
        .iter()
        .map(|e| {
            let workload = (!e.kind.is_empty()).then(|| format!("{}/{}", e.kind, e.name));
            let diff_href = match (&workload, e.revision, e.entry.as_str()) {
                (Some(_), Some(rev), "revision") => Some(href_with(
                    q,
                    &[
                        ("kind", Some(e.kind.clone())),
                        ("name", Some(e.name.clone())),
                        ("rev", Some(rev.to_string())),
                        ("against", None),
                    ],
                )),
                _ => None,
            };
            let what = match (&workload, e.entry.as_str()) {
                (Some(w), _) => format!("{w} · {}", e.title),
                (None, _) => e.title.clone(),
            };
            let sha = e.sha.clone().map(|s| s.chars().take(12).collect::<String>());
            view! {
                <li class=format!("entry entry-{} source-{}", e.entry, e.source) data-key=e.key.clone()>
                    <div class="entry-head">
                        <Time at=e.at/>
                        <span class=format!("badge source-{}", e.source)>{source_label(&e.source)}</span>
                        <strong class="entry-title">{what}</strong>
                        {outcome_pill(&e.outcome)}
                    </div>
                    <div class="entry-body">
                        {match e.actor.clone() {
                            Some(a) => view! { <span>"by "<strong>{a}</strong></span> }.into_any(),
                            None => view! { <span class="muted">"who: not recorded"</span> }.into_any(),
                        }}
                        {e.reason.clone().map(|r| view! { <span class="entry-reason">{format!("— {r}")}</span> })}
                        {e.change_cause.clone().filter(|c| Some(c) != e.reason.as_ref()).map(|c| view! { <span class="entry-reason">{format!("change-cause: {c}")}</span> })}
                        {sha.map(|s| view! { <span class="muted">"commit "<code>{s}</code></span> })}
                        {e.ci_run.clone().map(|run| match e.ci_url.clone() {
                            Some(url) => view! { <a href=url rel="noopener noreferrer" target="_blank">{format!("CI run {run}")}</a> }.into_any(),
                            None => view! { <span>{format!("CI run {run}")}</span> }.into_any(),
                        })}
                    </div>
                    {(!e.images.is_empty()).then(|| view! {
                        <div class="entry-images">{e.images.iter().map(|i| view! { <code class="image">{i.clone()}</code> }).collect_view()}</div>
                    })}
                    {diff_href.map(|href| view! { <A href=href attr:class="btn small">"Diff"</A> })}
                </li>
            }
        })
        .collect_view();
    view! { <ol class="timeline" id="timeline">{items}</ol> }
}

fn diff_table(d: &TemplateDiff) -> impl IntoView {
    side_by_side(&d.rows, d.left_label.clone(), d.right_label.clone())
}

/// A side-by-side diff as a table (also the template editor's).
pub fn side_by_side(
    rows: &[super::diff::Row],
    left_label: String,
    right_label: String,
) -> impl IntoView {
    let rows = rows
        .iter()
        .map(|r| {
            let (class, mark) = match r.change {
                Change::Same => ("same", ""),
                Change::Changed => ("changed", "~"),
                Change::Removed => ("removed", "−"),
                Change::Added => ("added", "+"),
            };
            let left = r.left.clone();
            let right = r.right.clone();
            view! {
                <tr class=class>
                    <td class="ln">{left.as_ref().map(|l| l.0.to_string())}</td>
                    <td class="code left">{left.map(|l| l.1)}</td>
                    <td class="mark" aria-label=class>{mark}</td>
                    <td class="ln">{right.as_ref().map(|l| l.0.to_string())}</td>
                    <td class="code right">{right.map(|l| l.1)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="diff-wrap">
            <table class="diff" id="template-diff">
                <colgroup>
                    <col class="ln"/><col class="code"/><col class="mark"/><col class="ln"/><col class="code"/>
                </colgroup>
                <thead><tr>
                    <th colspan="2" scope="colgroup">{left_label}</th>
                    <th><span class="visually-hidden">"Change"</span></th>
                    <th colspan="2" scope="colgroup">{right_label}</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

fn diff_panel(
    d: TemplateDiff,
    q: leptos_router::params::ParamsMap,
    can_rollback: bool,
    running: Option<i64>,
    confirming: RwSignal<Option<(String, i64)>>,
) -> impl IntoView {
    let changes = d.changes();
    let revision = d.revision;
    let name = d.name.clone();
    let choice = d.choices.iter().find(|c| c.revision == revision).cloned();
    let others = d
        .choices
        .iter()
        .filter(|c| c.revision != revision)
        .map(|c| {
            let href = href_with(&q, &[("against", Some(c.revision.to_string()))]);
            let current = d.against == Some(c.revision);
            view! {
                <li>
                    <A href=href attr:class=if current { "chip active" } else { "chip" } attr:aria-current=if current { "true" } else { "false" }>
                        {format!("revision {}", c.revision)}
                    </A>
                </li>
            }
        })
        .collect_view();
    let close = href_with(
        &q,
        &[
            ("kind", None),
            ("name", None),
            ("rev", None),
            ("against", None),
        ],
    );
    let is_running = running == Some(revision);
    let rollback_button = (can_rollback && d.kind == "Deployment" && !is_running).then(|| {
        view! {
            <button type="button" class="btn danger" id="rollback-open"
                on:click=move |_| confirming.set(Some((name.clone(), revision)))>
                {format!("Roll back to revision {revision}…")}
            </button>
        }
    });
    view! {
        <section class="card" id="diff-panel" aria-labelledby="diff-title">
            <div class="card-head">
                <h2 id="diff-title">{format!("{}/{} · revision {}", d.kind, d.name, revision)}</h2>
                <A href=close attr:class="btn small link">"Close"</A>
            </div>
            {choice.map(|c| view! {
                <p class="muted">"Made "<Time at=c.at/>" · "{c.images.join(", ")}</p>
            })}
            <nav class="compare" aria-label="Compare with">
                <span>"Compare with: "</span>
                <ul class="chips">{others}</ul>
            </nav>
            <p id="diff-summary">{match changes { 0 => "No differences.".to_owned(), 1 => format!("1 changed line between {} and {}.", d.left_label, d.right_label), n => format!("{n} changed lines between {} and {}.", d.left_label, d.right_label) }}</p>
            {diff_table(&d)}
            {is_running.then(|| view! { <p class="muted" id="diff-running">"This is the revision running now."</p> })}
            {rollback_button}
        </section>
    }
}

#[component]
fn RollbackConfirm(
    name: String,
    revision: i64,
    rollback: ServerAction<Rollback>,
    confirming: RwSignal<Option<(String, i64)>>,
) -> impl IntoView {
    let preview_name = name.clone();
    let preview = Resource::new(
        move || (preview_name.clone(), revision),
        |(name, revision)| preview_rollback(name, revision),
    );
    // Close the confirmation once the rollback has been answered.
    Effect::new(move |seen: Option<usize>| {
        let v = rollback.version().get();
        if seen.is_some_and(|s| s != v) {
            confirming.set(None);
        }
        v
    });
    view! {
        <section class="card confirm" id="rollback-confirm" role="dialog" aria-modal="false" aria-labelledby="rollback-title">
            <h2 id="rollback-title">{format!("Roll Deployment/{name} back to revision {revision}?")}</h2>
            <Transition fallback=|| view! { <p class="loading">"Working out what would change…"</p> }>
                {
                    let name = name.clone();
                    move || preview.get().map(|r| match r {
                        Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                        Ok(p) => {
                            let name = name.clone();
                            view! {
                                {p.paused.then(|| view! { <div class="notice error" role="alert">"This Deployment is paused: resume it first (kubectl rollout resume). The rollback would be refused."</div> })}
                                {p.already_current.then(|| view! { <div class="notice" role="status">"It already runs this revision's template: rolling back changes nothing."</div> })}
                                {p.from_store.then(|| view! { <p class="muted">"The cluster has pruned this revision's ReplicaSet; Slate uses the template it stored."</p> })}
                                <p>"Left: what runs now. Right: what will run after the rollback."</p>
                                {diff_table(&p.diff)}
                                <ActionForm action=rollback attr:class="form compact" attr:id="rollback-form">
                                    <input type="hidden" name="name" value=name/>
                                    <input type="hidden" name="revision" value=revision.to_string()/>
                                    <label for="rollback-reason">"Reason (recorded in the history and the audit log)"</label>
                                    <input id="rollback-reason" name="reason" maxlength="500" placeholder="e.g. v1.5 renders black frames"/>
                                    <div class="form-actions">
                                        <button type="submit" class="btn danger" id="rollback-confirm-button">"Roll back"</button>
                                        <button type="button" class="btn link" on:click=move |_| confirming.set(None)>"Cancel"</button>
                                    </div>
                                </ActionForm>
                            }.into_any()
                        }
                    })
                }
            </Transition>
        </section>
    }
}
