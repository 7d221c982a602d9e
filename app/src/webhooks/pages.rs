//! The webhook admin pages: the subscriptions with their last delivery and the form that
//! makes one (its secret shown once), and one subscription's delivery log with each try,
//! resend, a test event and secret rotation.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_params_map, use_query_map};
use uuid::Uuid;

use super::api::{
    webhook_deliveries, CreateWebhook, DeleteWebhook, PingWebhook, ResendWebhook,
    RotateWebhookSecret, SetWebhookEnabled,
};
use super::{DeliveryView, SubscriptionView, TryView, EVENT_TYPES};
use crate::components::{encode_query_value, EmptyState, ErrorNote, PageHeader, Time};

/// A delivery's (or a try's) state as a coloured pill.
fn state_pill(state: &str) -> impl IntoView {
    let (class, label) = match state {
        "succeeded" => ("pill health-healthy", "✓ delivered"),
        "pending" => ("pill health-progressing", "↻ trying"),
        "failed" => ("pill health-degraded", "✕ given up"),
        _ => ("pill health-unknown", "? unknown"),
    };
    view! { <span class=class>{label}</span> }
}

/// What a subscription listens to, in words.
pub fn events_label(events: &Option<Vec<String>>) -> String {
    match events {
        None => "every event".to_owned(),
        Some(list) => list.join(", "),
    }
}

/// The form's chosen types as the server function reads them (`*` for all).
pub fn events_field(all: bool, chosen: &[String]) -> String {
    if all {
        "*".to_owned()
    } else {
        chosen.join(",")
    }
}

#[component]
pub fn WebhooksPage() -> impl IntoView {
    let create = ServerAction::<CreateWebhook>::new();
    let enable = ServerAction::<SetWebhookEnabled>::new();
    let delete = ServerAction::<DeleteWebhook>::new();
    let ping = ServerAction::<PingWebhook>::new();
    let list = Resource::new(
        move || {
            (
                create.version().get(),
                enable.version().get(),
                delete.version().get(),
                ping.version().get(),
            )
        },
        |_| super::api::list_webhooks(),
    );
    view! {
        <PageHeader
            title="Webhooks"
            subtitle="Slate's events out: runs, stages, outputs and the Colab endpoint, signed (Standard Webhooks) and retried with backoff."
        />
        <CreateWebhookCard create/>
        {move || enable.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
        {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
        {move || match ping.value().get() {
            Some(Ok(_)) => Some(view! { <div class="notice success" role="status" id="ping-sent">"Test event queued: it shows in the subscription's deliveries."</div> }.into_any()),
            Some(Err(e)) => Some(view! { <ErrorNote error=e/> }.into_any()),
            None => None,
        }}
        <section class="card">
            <h2>"Subscriptions"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading subscriptions…"</p> }>
                {move || list.get().map(|result| match result {
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <EmptyState title="No webhook subscriptions yet">
                            "Add one above: a Dagster sensor's receiver, a chat channel's relay or any HTTPS endpoint. "
                            "docs/webhooks.md shows how a receiver checks the signature."
                        </EmptyState>
                    }.into_any(),
                    Ok(list) => view! {
                        <table class="table" id="webhooks-table">
                            <thead>
                                <tr>
                                    <th>"URL"</th><th>"Events"</th><th>"Last delivery"</th>
                                    <th>"Trying"</th><th>"Given up"</th><th></th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|s| subscription_row(s, enable, delete, ping)).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

#[component]
fn CreateWebhookCard(create: ServerAction<CreateWebhook>) -> impl IntoView {
    let url = RwSignal::new(String::new());
    let all = RwSignal::new(true);
    let chosen = RwSignal::new(Vec::<String>::new());
    let secret = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let none_chosen = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let nothing = !all.get_untracked() && chosen.with_untracked(Vec::is_empty);
        none_chosen.set(nothing);
        if nothing {
            return;
        }
        let given = secret.get_untracked();
        create.dispatch(CreateWebhook {
            url: url.get_untracked(),
            events: events_field(all.get_untracked(), &chosen.get_untracked()),
            secret: (!given.trim().is_empty()).then_some(given),
            description: Some(description.get_untracked()),
        });
    };
    view! {
        <section class="card">
            <h2>"Add a subscription"</h2>
            <form class="form" id="webhook-create-form" on:submit=submit>
                <div class="field">
                    <label for="webhook-url">"URL"</label>
                    <input id="webhook-url" name="url" type="url" required maxlength="2048"
                        placeholder="https://hooks.example.com/slate"
                        prop:value=move || url.get()
                        on:input=move |e| url.set(event_target_value(&e))/>
                    <p class="muted">"http or https. Private and loopback addresses are refused unless the host is in SLATE_WEBHOOK_ALLOW (for in-cluster services)."</p>
                </div>
                <fieldset class="field" id="webhook-events">
                    <legend>"Events"</legend>
                    <label class="check">
                        <input type="checkbox" id="webhook-all-events" prop:checked=move || all.get()
                            on:change=move |e| all.set(event_target_checked(&e))/>
                        <span>"Every event (and those added later)"</span>
                    </label>
                    <Show when=move || !all.get()>
                        <ul class="event-types">
                            {EVENT_TYPES.iter().map(|&(label, what)| {
                                let name = label.to_owned();
                                let key = name.clone();
                                view! {
                                    <li>
                                        <label class="check">
                                            <input type="checkbox" class="webhook-event" value=name.clone()
                                                prop:checked=move || chosen.with(|c| c.contains(&key))
                                                on:change=move |e| {
                                                    let on = event_target_checked(&e);
                                                    let name = name.clone();
                                                    chosen.update(|c| {
                                                        c.retain(|x| *x != name);
                                                        if on { c.push(name); }
                                                    });
                                                }/>
                                            <code>{label}</code>" "<span class="muted">{what}</span>
                                        </label>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    </Show>
                    <Show when=move || none_chosen.get()>
                        <div class="notice error" role="alert">"Choose at least one event type, or every event."</div>
                    </Show>
                </fieldset>
                <div class="field">
                    <label for="webhook-secret">"Secret (optional)"</label>
                    <input id="webhook-secret" name="secret" autocomplete="off" placeholder="whsec_… — left empty, Slate makes one"
                        prop:value=move || secret.get()
                        on:input=move |e| secret.set(event_target_value(&e))/>
                </div>
                <div class="field">
                    <label for="webhook-description">"Description"</label>
                    <input id="webhook-description" name="description" maxlength="500" placeholder="e.g. Dagster sensor for the render jobs"
                        prop:value=move || description.get()
                        on:input=move |e| description.set(event_target_value(&e))/>
                </div>
                <button type="submit" class="btn primary" disabled=move || create.pending().get()>
                    "Add subscription"
                </button>
            </form>
            {move || match create.value().get() {
                Some(Ok(created)) => Some(view! {
                    <div class="notice success" role="status" id="webhook-created">
                        <strong>"Subscription added. Copy its secret now: it is not shown again."</strong>
                        <code class="secret" id="webhook-secret-shown">{created.secret}</code>
                    </div>
                }.into_any()),
                Some(Err(e)) => Some(view! { <ErrorNote error=e/> }.into_any()),
                None => None,
            }}
        </section>
    }
}

fn subscription_row(
    s: SubscriptionView,
    enable: ServerAction<SetWebhookEnabled>,
    delete: ServerAction<DeleteWebhook>,
    ping: ServerAction<PingWebhook>,
) -> impl IntoView {
    let id = s.id;
    let enabled = s.enabled;
    let confirming = RwSignal::new(false);
    view! {
        <tr class:disabled=!enabled data-webhook=id.to_string()>
            <td>
                <A href=format!("/admin/webhooks/{id}")><code>{s.url.clone()}</code></A>
                {(!s.description.is_empty()).then(|| view! { <div class="muted">{s.description.clone()}</div> })}
                {(!enabled).then(|| view! { <span class="badge muted">"disabled"</span> })}
            </td>
            <td>{events_label(&s.events)}</td>
            <td>{match s.last {
                Some(last) => view! {
                    {state_pill(&last.state)}" "<code>{last.kind}</code>
                    {last.last_status.map(|c| view! { " "<span class="badge">{c}</span> })}
                    <div class="muted"><Time at=last.at/></div>
                }.into_any(),
                None => view! { <span class="muted">"nothing sent yet"</span> }.into_any(),
            }}</td>
            <td>{s.pending}</td>
            <td>{s.failed}</td>
            <td class="actions">
                <A href=format!("/admin/webhooks/{id}") attr:class="btn small">"Deliveries"</A>
                <button type="button" class="btn small" disabled=!enabled
                    on:click=move |_| { ping.dispatch(PingWebhook { id }); }>"Send test event"</button>
                <button type="button" class="btn small"
                    on:click=move |_| { enable.dispatch(SetWebhookEnabled { id, enabled: !enabled }); }>
                    {if enabled { "Disable" } else { "Enable" }}
                </button>
                <Show
                    when=move || confirming.get()
                    fallback=move || view! {
                        <button type="button" class="btn small danger" on:click=move |_| confirming.set(true)>"Delete"</button>
                    }
                >
                    <button type="button" class="btn small danger"
                        on:click=move |_| { delete.dispatch(DeleteWebhook { id }); }>"Confirm delete (and its log)"</button>
                    <button type="button" class="btn small" on:click=move |_| confirming.set(false)>"Keep"</button>
                </Show>
            </td>
        </tr>
    }
}

#[component]
pub fn WebhookPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let resend = ServerAction::<ResendWebhook>::new();
    let ping = ServerAction::<PingWebhook>::new();
    let rotate = ServerAction::<RotateWebhookSecret>::new();
    let id = move || params.read().get("id").and_then(|s| s.parse::<Uuid>().ok());
    let before = move || query.read().get("before").and_then(|s| s.parse().ok());
    let log = Resource::new(
        move || (id(), before(), resend.version().get(), ping.version().get()),
        |(id, before, _, _)| async move {
            match id {
                Some(id) => webhook_deliveries(id, before).await,
                None => Err(crate::error::AppError::NotFound(
                    "This is not a subscription's address.".into(),
                )),
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the delivery log…"</p> }>
            {move || log.get().map(|r| match r {
                Err(e) => view! {
                    <PageHeader title="Webhook deliveries"/>
                    <ErrorNote error=e/>
                    <p><A href="/admin/webhooks">"← All subscriptions"</A></p>
                }.into_any(),
                Ok(log) => {
                    let s = log.subscription.clone();
                    let id = s.id;
                    let next = log.next_before.map(|b| format!("/admin/webhooks/{id}?before={}", encode_query_value(&b.to_rfc3339())));
                    view! {
                        <PageHeader title="Webhook deliveries" subtitle=s.url.clone()/>
                        <p><A href="/admin/webhooks">"← All subscriptions"</A></p>
                        <section class="card">
                            <dl class="facts">
                                <dt>"Events"</dt><dd>{events_label(&s.events)}</dd>
                                <dt>"State"</dt><dd>{if s.enabled { "enabled" } else { "disabled: nothing is sent" }}</dd>
                                <dt>"Added"</dt><dd><Time at=s.created_at/>{s.created_by.clone().map(|b| format!(" by {b}"))}</dd>
                                {(!s.description.is_empty()).then(|| view! { <dt>"Description"</dt><dd>{s.description.clone()}</dd> })}
                            </dl>
                            <div class="actions">
                                <button type="button" class="btn" disabled=!s.enabled
                                    on:click=move |_| { ping.dispatch(PingWebhook { id }); }>"Send test event"</button>
                                <button type="button" class="btn"
                                    on:click=move |_| { rotate.dispatch(RotateWebhookSecret { id, secret: None }); }>"Rotate the secret"</button>
                            </div>
                            {move || match rotate.value().get() {
                                Some(Ok(secret)) => Some(view! {
                                    <div class="notice success" role="status" id="webhook-rotated">
                                        <strong>"New secret. Copy it now: it is not shown again, and the old one no longer signs."</strong>
                                        <code class="secret">{secret}</code>
                                    </div>
                                }.into_any()),
                                Some(Err(e)) => Some(view! { <ErrorNote error=e/> }.into_any()),
                                None => None,
                            }}
                            {move || ping.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
                            {move || resend.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
                        </section>
                        <section class="card">
                            {if log.deliveries.is_empty() {
                                view! {
                                    <EmptyState title="Nothing delivered yet">
                                        "Deliveries appear here when an event this subscription listens to happens. Send a test event to try the receiver now."
                                    </EmptyState>
                                }.into_any()
                            } else {
                                view! {
                                    <table class="table" id="webhook-deliveries">
                                        <thead>
                                            <tr><th>"Made"</th><th>"Event"</th><th>"State"</th><th>"Tries"</th><th>"Answer"</th><th>"webhook-id"</th><th></th></tr>
                                        </thead>
                                        <tbody>
                                            {log.deliveries.into_iter().map(|d| delivery_rows(d, resend)).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any()
                            }}
                            {next.map(|href| view! { <p class="pager"><A href=href>"Older deliveries →"</A></p> })}
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
    }
}

fn delivery_rows(d: DeliveryView, resend: ServerAction<ResendWebhook>) -> impl IntoView {
    let delivery = d.id;
    let answer = match (d.last_status, d.last_error.clone()) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(e)) => e,
        (None, None) => "—".to_owned(),
    };
    view! {
        <tr data-delivery=d.id.to_string() data-state=d.state.clone()>
            <td><Time at=d.created_at/></td>
            <td><code>{d.kind.clone()}</code></td>
            <td>
                {state_pill(&d.state)}
                {d.next_try_at.map(|at| view! { <div class="muted">"next try "<Time at/></div> })}
            </td>
            <td>{d.tries}</td>
            <td>{answer}</td>
            <td><code>{d.webhook_id.clone()}</code></td>
            <td class="actions">
                <button type="button" class="btn small" disabled=move || resend.pending().get()
                    on:click=move |_| { resend.dispatch(ResendWebhook { delivery }); }>"Resend"</button>
            </td>
        </tr>
        <tr class="tries">
            <td colspan="7">
                <details>
                    <summary>{format!("{} {}", d.attempts.len(), if d.attempts.len() == 1 { "try" } else { "tries" })}</summary>
                    <ol class="webhook-tries">
                        {d.attempts.into_iter().map(try_item).collect_view()}
                    </ol>
                </details>
            </td>
        </tr>
    }
}

fn try_item(t: TryView) -> impl IntoView {
    let what = match t.status_code {
        Some(code) => format!("HTTP {code}"),
        None => "no answer".to_owned(),
    };
    view! {
        <li data-try=t.number>
            <Time at=t.at/>
            {format!(" · {what} · {} ms", t.duration_ms)}
            {t.resend.then(|| view! { " "<span class="badge">"resend"</span> })}
            {t.error.map(|e| view! { <div class="muted">{e}</div> })}
            {t.excerpt.map(|x| view! { <pre class="code">{x}</pre> })}
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_sends_every_event_or_the_chosen_ones() {
        assert_eq!(events_field(true, &["run.failed".into()]), "*");
        assert_eq!(
            events_field(false, &["run.failed".into(), "stage.waiting".into()]),
            "run.failed,stage.waiting"
        );
        assert_eq!(events_label(&None), "every event");
        assert_eq!(
            super::super::parse_events(&events_field(false, &["run.failed".into()])).unwrap(),
            Some(vec!["run.failed".to_owned()])
        );
    }
}
