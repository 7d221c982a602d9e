//! The document shell, the router, the signed-in layout with its navigation and the
//! upload tray, the dashboard and the not-found page.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Outlet, ParentRoute, Route, Router, Routes, A};
use leptos_router::hooks::use_location;
use leptos_router::path;

use crate::accounts::{
    get_dashboard, AuditPage, Dashboard, Login, LoginPage, Logout, Principal, Role, TokensPage,
    UsersPage,
};
use crate::architecture::ArchitecturePage;
use crate::assets::{provide_uploads, AssetPage, AssetsPage, UploadTray};
use crate::colab::ColabPage;
use crate::comfyui::pages::{WorkflowPage, WorkflowsPage};
use crate::components::{EmptyState, ErrorNote, PageHeader, RoleBadge, Time};
use crate::deploys::pages::DeploysPage;
use crate::error::AppError;
use crate::pipelines::pages::{NewRunPage, RunPage, RunsPage, TemplatesPage};
use crate::webhooks::pages::{WebhookPage, WebhooksPage};

/// The HTML document. On the server it also sets the Content-Security-Policy with a
/// fresh nonce for the hydration script.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    set_content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/pkg/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[cfg(feature = "ssr")]
fn set_content_security_policy() {
    use leptos::nonce::{provide_nonce, use_nonce};
    provide_nonce();
    let Some(nonce) = use_nonce() else { return };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    if let (Some(opts), Ok(value)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(&policy),
    ) {
        opts.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The signed-in state, shared by the whole app. It is refetched after every sign-in
/// and sign-out so the navigation follows without a reload.
#[derive(Clone, Copy)]
pub struct Auth {
    pub login: ServerAction<Login>,
    pub logout: ServerAction<Logout>,
    pub user: Resource<Result<Option<Principal>, AppError>>,
}

impl Auth {
    /// The signed-in principal, once loaded.
    pub fn me(self) -> Signal<Option<Principal>> {
        Signal::derive(move || self.user.get().and_then(Result::ok).flatten())
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let login = ServerAction::<Login>::new();
    let logout = ServerAction::<Logout>::new();
    let user = Resource::new_blocking(
        move || (login.version().get(), logout.version().get()),
        |_| crate::accounts::current_user(),
    );
    provide_context(Auth {
        login,
        logout,
        user,
    });
    // Uploads belong to the app, not to the page they started on: navigating disposes
    // a page's signals, and an upload must go on (the tray shows it everywhere).
    provide_uploads();
    // Effects run only in the browser, after hydration: mark the page so tests (and
    // curious people) can tell a live page from a dead one.
    #[cfg(feature = "hydrate")]
    Effect::new(|_| {
        if let Some(body) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.body())
        {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="slate" href="/pkg/slate.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Slate".to_owned() } else { format!("{page} · Slate") }/>
        <Router>
            <Routes fallback=|| view! { <NotFoundPage/> }>
                <Route path=path!("/login") view=LoginPage/>
                <ParentRoute path=path!("") view=Layout>
                    <Route path=path!("") view=DashboardPage/>
                    <Route path=path!("assets") view=AssetsPage/>
                    <Route path=path!("assets/:id") view=AssetPage/>
                    <Route path=path!("architecture") view=ArchitecturePage/>
                    <Route path=path!("deploys") view=DeploysPage/>
                    <Route path=path!("runs") view=RunsPage/>
                    <Route path=path!("runs/new") view=NewRunPage/>
                    <Route path=path!("runs/:id") view=RunPage/>
                    <Route path=path!("workflows") view=WorkflowsPage/>
                    <Route path=path!("workflows/:name") view=WorkflowPage/>
                    <Route path=path!("admin/colab") view=ColabPage/>
                    <Route path=path!("admin/pipelines") view=TemplatesPage/>
                    <Route path=path!("admin/users") view=UsersPage/>
                    <Route path=path!("admin/tokens") view=TokensPage/>
                    <Route path=path!("admin/audit") view=AuditPage/>
                    <Route path=path!("admin/webhooks") view=WebhooksPage/>
                    <Route path=path!("admin/webhooks/:id") view=WebhookPage/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Navigation entries: label, path, the role needed to see them.
const NAV: &[(&str, &str, Role)] = &[
    ("Dashboard", "/", Role::Creator),
    ("Assets", "/assets", Role::Creator),
    ("Runs", "/runs", Role::Creator),
    ("Workflows", "/workflows", Role::Creator),
    ("Architecture", "/architecture", Role::Lead),
    ("Deploys", "/deploys", Role::Lead),
    ("Colab", "/admin/colab", Role::Admin),
    ("Templates", "/admin/pipelines", Role::Admin),
    ("Users", "/admin/users", Role::Admin),
    ("Tokens", "/admin/tokens", Role::Admin),
    ("Webhooks", "/admin/webhooks", Role::Admin),
    ("Audit log", "/admin/audit", Role::Admin),
];

/// The entries a role sees (the server enforces the same rule on every request).
pub fn nav_for(role: Role) -> impl Iterator<Item = &'static (&'static str, &'static str, Role)> {
    NAV.iter().filter(move |(_, _, needed)| role >= *needed)
}

#[component]
fn Layout() -> impl IntoView {
    let auth = expect_context::<Auth>();
    let location = use_location();
    view! {
        <div class="layout">
            <header class="topbar">
                <A href="/" attr:class="brand">"Slate"</A>
                <Transition fallback=|| ()>
                    {move || auth.me().get().map(|me| {
                        let role = me.role;
                        view! {
                            <nav class="nav" aria-label="Main">
                                {nav_for(role).map(|(label, href, _)| {
                                    let current = move || {
                                        let path = location.pathname.get();
                                        if *href == "/" { path == "/" } else { path.starts_with(href) }
                                    };
                                    view! {
                                        <A href=*href attr:class=move || if current() { "nav-link current" } else { "nav-link" }>
                                            {*label}
                                        </A>
                                    }
                                }).collect_view()}
                            </nav>
                            <div class="account">
                                <span class="who" id="signed-in-as">{me.email.clone()}</span>
                                <RoleBadge role/>
                                <ActionForm action=auth.logout attr:class="signout">
                                    <button type="submit" class="btn small">"Sign out"</button>
                                </ActionForm>
                            </div>
                        }
                    })}
                </Transition>
            </header>
            <main class="content">
                <Outlet/>
            </main>
            <UploadTray/>
        </div>
    }
}

#[component]
fn DashboardPage() -> impl IntoView {
    let dashboard = Resource::new(|| (), |_| get_dashboard());
    view! {
        <PageHeader title="Dashboard"/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || dashboard.get().map(|r| match r {
                Ok(d) => dashboard_view(d).into_any(),
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
            })}
        </Transition>
    }
}

fn dashboard_view(d: Dashboard) -> impl IntoView {
    let Dashboard {
        server,
        my_recent,
        admin,
    } = d;
    view! {
        <div class="grid">
            {admin.map(|c| view! {
                <section class="card stat-card">
                    <h2>"People"</h2>
                    <p class="stat"><span class="stat-value">{c.active_users}</span>" active users"</p>
                    <p class="muted">{format!("{} disabled", c.disabled_users)}</p>
                    <A href="/admin/users">"Manage users"</A>
                </section>
                <section class="card stat-card">
                    <h2>"API tokens"</h2>
                    <p class="stat"><span class="stat-value">{c.active_tokens}</span>" active"</p>
                    <A href="/admin/tokens">"Manage tokens"</A>
                </section>
                <section class="card stat-card">
                    <h2>"Changes, last 24 h"</h2>
                    <p class="stat"><span class="stat-value">{c.audit_last_day}</span>" audit entries"</p>
                    <A href="/admin/audit">"Open the audit log"</A>
                </section>
            })}
            <section class="card stat-card">
                <h2>"This Slate"</h2>
                <dl class="facts">
                    <dt>"Version"</dt><dd>{server.version}</dd>
                    <dt>"Database"</dt><dd>{server.database}</dd>
                    <dt>"Running since"</dt><dd><Time at=server.started_at/></dd>
                </dl>
            </section>
        </div>
        <section class="card">
            <h2>"Your recent activity"</h2>
            {if my_recent.is_empty() {
                view! {
                    <EmptyState title="Nothing yet">"Changes you make in Slate will be listed here."</EmptyState>
                }.into_any()
            } else {
                view! {
                    <ul class="activity">
                        {my_recent.into_iter().map(|e| view! {
                            <li><Time at=e.at/>" "<code>{e.action}</code>" "{e.target.unwrap_or_default()}</li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
    }
}

#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
        opts.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <div class="auth-page">
            <div class="card auth-card">
                <div class="brand-large">"Slate"</div>
                <h1>"Page not found"</h1>
                <p>"There is nothing at this address. It may have moved, or the link may be mistyped."</p>
                <a class="btn primary" href="/">"Go to the dashboard"</a>
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creators_see_only_the_dashboard_and_admins_see_everything() {
        let creator: Vec<_> = nav_for(Role::Creator).map(|(l, _, _)| *l).collect();
        assert_eq!(creator, ["Dashboard", "Assets", "Runs", "Workflows"]);
        let lead: Vec<_> = nav_for(Role::Lead).map(|(l, _, _)| *l).collect();
        assert_eq!(
            lead,
            [
                "Dashboard",
                "Assets",
                "Runs",
                "Workflows",
                "Architecture",
                "Deploys"
            ]
        );
        assert_eq!(nav_for(Role::Admin).count(), NAV.len());
        let admin: Vec<_> = nav_for(Role::Admin).map(|(_, p, _)| *p).collect();
        assert!(admin.contains(&"/admin/webhooks"));
        // Every admin entry is under /admin, which the access policy keeps for admins.
        for (label, path, role) in NAV {
            if *role == Role::Admin {
                assert!(path.starts_with("/admin/"), "{label}");
            }
        }
    }
}
