//! The sign-in page and the admin pages for users, tokens and the audit log.

use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_query_map;

use super::*;
use crate::components::{encode_query_value, EmptyState, ErrorNote, PageHeader, Time};
use crate::Auth;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = expect_context::<Auth>().login;
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let failure = move || login.value().get().and_then(Result::err);
    view! {
        <div class="auth-page">
            <div class="card auth-card">
                <div class="brand-large">"Slate"</div>
                <h1>"Sign in"</h1>
                <ActionForm action=login attr:class="form" attr:id="login-form">
                    <input type="hidden" name="next" value=next/>
                    <label for="login-email">"Email"</label>
                    <input
                        id="login-email"
                        name="email"
                        type="email"
                        autocomplete="username"
                        required
                        autofocus
                    />
                    <label for="login-password">"Password"</label>
                    <input
                        id="login-password"
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        required
                    />
                    {move || failure().map(|e| view! { <ErrorNote error=e/> })}
                    <button type="submit" class="btn primary" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </ActionForm>
                <p class="hint">"No account? Ask an admin of your studio to create one."</p>
            </div>
        </div>
    }
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let set_role = ServerAction::<SetUserRole>::new();
    let set_disabled = ServerAction::<SetUserDisabled>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                set_role.version().get(),
                set_disabled.version().get(),
            )
        },
        |_| list_users(),
    );
    let change_error = move || {
        set_role
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| set_disabled.value().get().and_then(Result::err))
    };
    let me = expect_context::<Auth>().me();

    view! {
        <PageHeader title="Users" subtitle="Who can sign in, and what each person may do."/>
        <section class="card">
            <h2>"Add a user"</h2>
            <ActionForm action=create attr:class="form inline-form" attr:id="create-user-form">
                <div class="field">
                    <label for="new-user-email">"Email"</label>
                    <input id="new-user-email" name="email" type="email" required/>
                </div>
                <div class="field">
                    <label for="new-user-role">"Role"</label>
                    <select id="new-user-role" name="role">
                        {Role::ALL
                            .into_iter()
                            .map(|r| view! { <option value=r.as_str()>{r.label()}</option> })
                            .collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="new-user-password">"Password"</label>
                    <input
                        id="new-user-password"
                        name="password"
                        type="password"
                        autocomplete="new-password"
                        placeholder="leave empty to generate one"
                    />
                </div>
                <button type="submit" class="btn primary" disabled=move || create.pending().get()>
                    "Add user"
                </button>
            </ActionForm>
            {move || match create.value().get() {
                Some(Ok(created)) => Some(view! {
                    <div class="notice success" role="status" id="user-created">
                        <strong>{format!("Added {}.", created.user.email)}</strong>
                        {created.generated_password.map(|p| view! {
                            <span>"Their password, shown only now: "<code class="secret">{p}</code></span>
                        })}
                    </div>
                }.into_any()),
                Some(Err(e)) => Some(view! { <ErrorNote error=e/> }.into_any()),
                None => None,
            }}
        </section>
        {move || change_error().map(|e| view! { <ErrorNote error=e/> })}
        <section class="card">
            <Transition fallback=|| view! { <p class="loading">"Loading users…"</p> }>
                {move || users.get().map(|result| match result {
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    Ok(list) => view! {
                        <table class="table" id="users-table">
                            <thead>
                                <tr><th>"Email"</th><th>"Role"</th><th>"Status"</th><th>"Added"</th><th></th></tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|u| {
                                    let is_me = me.get_untracked().is_some_and(|m| m.user_id == u.id);
                                    user_row(u, is_me, set_role, set_disabled)
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

fn user_row(
    u: UserView,
    is_me: bool,
    set_role: ServerAction<SetUserRole>,
    set_disabled: ServerAction<SetUserDisabled>,
) -> impl IntoView {
    let id = u.id;
    let select_id = format!("role-{id}");
    view! {
        <tr class:disabled=u.disabled data-email=u.email.clone()>
            <td>{u.email.clone()}{is_me.then(|| view! { <span class="muted">" (you)"</span> })}</td>
            <td>
                <label class="visually-hidden" for=select_id.clone()>{format!("Role of {}", u.email)}</label>
                <select
                    id=select_id
                    class="role-select"
                    disabled=is_me
                    on:change=move |ev| {
                        set_role.dispatch(SetUserRole { id, role: event_target_value(&ev) });
                    }
                >
                    {Role::ALL.into_iter().map(|r| view! {
                        <option value=r.as_str() selected=r == u.role>{r.label()}</option>
                    }).collect_view()}
                </select>
            </td>
            <td>
                {if u.disabled {
                    view! { <span class="badge muted">"Disabled"</span> }.into_any()
                } else {
                    view! { <span class="badge ok">"Active"</span> }.into_any()
                }}
            </td>
            <td><Time at=u.created_at/></td>
            <td class="actions">
                {(!is_me).then(|| {
                    let disabled = u.disabled;
                    view! {
                        <button
                            type="button"
                            class="btn small"
                            on:click=move |_| {
                                set_disabled.dispatch(SetUserDisabled { id, disabled: !disabled });
                            }
                        >
                            {if disabled { "Enable" } else { "Disable" }}
                        </button>
                    }
                })}
            </td>
        </tr>
    }
}

#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_tokens(),
    );
    view! {
        <PageHeader
            title="API tokens"
            subtitle="Secrets for scripts, CI and the Colab notebook. Each acts as its owner, only where its scope allows."
        />
        <section class="card">
            <h2>"Create a token"</h2>
            <ActionForm action=create attr:class="form inline-form" attr:id="create-token-form">
                <div class="field">
                    <label for="token-name">"Name"</label>
                    <input id="token-name" name="name" required maxlength="80" placeholder="e.g. nightly render script"/>
                </div>
                <div class="field">
                    <label for="token-scope">"Scope"</label>
                    <select id="token-scope" name="scope">
                        {TokenScope::ALL.into_iter().map(|s| view! {
                            <option value=s.as_str()>{format!("{} — {}", s.as_str(), s.describe())}</option>
                        }).collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="token-owner">"Owner"</label>
                    <input id="token-owner" name="owner" type="email" placeholder="you, if empty"/>
                </div>
                <button type="submit" class="btn primary" disabled=move || create.pending().get()>
                    "Create token"
                </button>
            </ActionForm>
            {move || match create.value().get() {
                Some(Ok(created)) => Some(view! {
                    <div class="notice success" role="status" id="token-created">
                        <strong>{format!("Token \"{}\" created. Copy it now: it is not shown again.", created.token.name)}</strong>
                        <code class="secret" id="token-secret">{created.secret}</code>
                    </div>
                }.into_any()),
                Some(Err(e)) => Some(view! { <ErrorNote error=e/> }.into_any()),
                None => None,
            }}
        </section>
        {move || revoke.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
        <section class="card">
            <Transition fallback=|| view! { <p class="loading">"Loading tokens…"</p> }>
                {move || tokens.get().map(|result| match result {
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <EmptyState title="No tokens yet">
                            "Create one above for a script, a CI pipeline or the Colab notebook."
                        </EmptyState>
                    }.into_any(),
                    Ok(list) => view! {
                        <table class="table" id="tokens-table">
                            <thead>
                                <tr>
                                    <th>"Name"</th><th>"Scope"</th><th>"Owner"</th><th>"Starts with"</th>
                                    <th>"Created"</th><th>"Last used"</th><th></th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|t| token_row(t, revoke)).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

fn token_row(t: TokenView, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    let id = t.id;
    let confirming = RwSignal::new(false);
    let revoked = t.revoked_at.is_some();
    view! {
        <tr class:disabled=revoked data-token=t.name.clone()>
            <td>{t.name.clone()}</td>
            <td><span class="badge">{t.scope.as_str()}</span></td>
            <td>{t.owner_email}</td>
            <td><code>{format!("{}…", t.prefix)}</code></td>
            <td><Time at=t.created_at/></td>
            <td>{match t.last_used_at {
                Some(at) => view! { <Time at/> }.into_any(),
                None => view! { <span class="muted">"never"</span> }.into_any(),
            }}</td>
            <td class="actions">
                {match t.revoked_at {
                    Some(at) => view! { <span class="badge muted">"Revoked "<Time at/></span> }.into_any(),
                    None => view! {
                        <Show
                            when=move || confirming.get()
                            fallback=move || view! {
                                <button type="button" class="btn small danger" on:click=move |_| confirming.set(true)>
                                    "Revoke"
                                </button>
                            }
                        >
                            <button
                                type="button"
                                class="btn small danger"
                                on:click=move |_| { revoke.dispatch(RevokeToken { id }); }
                            >
                                "Confirm revoke"
                            </button>
                            <button type="button" class="btn small" on:click=move |_| confirming.set(false)>
                                "Keep"
                            </button>
                        </Show>
                    }.into_any(),
                }}
            </td>
        </tr>
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.read();
        AuditQuery {
            actor: q.get("actor").filter(|s| !s.trim().is_empty()),
            action: q.get("action").filter(|s| !s.trim().is_empty()),
            before: q.get("before").and_then(|s| s.parse().ok()),
        }
    };
    let page = Resource::new(filter, |q| audit_log(q.actor, q.action, q.before));
    view! {
        <PageHeader title="Audit log" subtitle="Every change made by a person or a token, newest first."/>
        <section class="card">
            <Form method="GET" action="" attr:class="form inline-form" attr:id="audit-filter">
                <div class="field">
                    <label for="audit-actor">"Actor"</label>
                    <input id="audit-actor" name="actor" placeholder="email or token name"
                        value=move || filter().actor.unwrap_or_default()/>
                </div>
                <div class="field">
                    <label for="audit-action">"Action"</label>
                    <input id="audit-action" name="action" placeholder="e.g. user. or token.create"
                        value=move || filter().action.unwrap_or_default()/>
                </div>
                <button type="submit" class="btn">"Filter"</button>
                <A href="/admin/audit" attr:class="btn link">"Clear"</A>
            </Form>
        </section>
        <section class="card">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || page.get().map(|result| match result {
                    Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                    Ok(page) if page.entries.is_empty() => view! {
                        <EmptyState title="Nothing recorded here">
                            "No entries match these filters."
                        </EmptyState>
                    }.into_any(),
                    Ok(page) => {
                        let next = page.next_before.map(|before| {
                            let f = filter();
                            let mut href = format!("/admin/audit?before={before}");
                            if let Some(a) = f.actor { href.push_str(&format!("&actor={}", encode_query_value(&a))); }
                            if let Some(a) = f.action { href.push_str(&format!("&action={}", encode_query_value(&a))); }
                            href
                        });
                        view! {
                            <table class="table" id="audit-table">
                                <thead>
                                    <tr><th>"When"</th><th>"Who"</th><th>"Action"</th><th>"Target"</th><th>"Detail"</th><th>"From"</th></tr>
                                </thead>
                                <tbody>
                                    {page.entries.into_iter().map(|e| view! {
                                        <tr>
                                            <td><Time at=e.at/></td>
                                            <td>{e.actor}</td>
                                            <td><code>{e.action}</code></td>
                                            <td>{e.target.unwrap_or_default()}</td>
                                            <td class="detail">{e.detail}</td>
                                            <td>{e.client_addr.unwrap_or_default()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                            {next.map(|href| view! { <p class="pager"><A href=href>"Older entries →"</A></p> })}
                        }.into_any()
                    }
                })}
            </Transition>
        </section>
    }
}
