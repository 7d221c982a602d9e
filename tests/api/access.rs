//! The access policy against every spelling of every path: pages and server functions ×
//! encoded and doubled separators, dot segments, case, signed out and as each role,
//! sent as raw bytes (an HTTP client library would tidy the paths up first). And every
//! server function judging its caller itself, as pages call them in process.

use std::net::SocketAddr;

use slate_tests::{spawn_app, TestApp, ADMIN_EMAIL, PASSWORD};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CANARY_EMAIL: &str = "canary-person@studio.test";
const CANARY_TOKEN: &str = "canary-token-7f3";

/// One request written byte for byte; answers the status and the body.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    origin: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nOrigin: {origin}\r\n");
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n");
        head.push_str("Accept: application/json\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("read");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {path}: {reply:.200}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Signs in over HTTP and returns the session cookie (`name=value`).
async fn session_cookie(app: &TestApp, email: &str) -> String {
    let res = app
        .bare_client()
        .post(app.url("/api/public/login"))
        .header("origin", &app.base)
        .header("accept", "application/json")
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert!(res.status().is_success() || res.status().is_redirection());
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("slate_session="))
        .expect("a session cookie");
    cookie.split(';').next().unwrap_or_default().to_owned()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Nobody,
    Creator,
    Lead,
    Admin,
}

/// Every way we know of to write `path` so that something might read it differently.
fn spellings(path: &str) -> Vec<(String, bool)> {
    let rest = &path[1..];
    let mut all = vec![
        (path.to_owned(), true),
        (format!("/login/%2e%2e{path}"), false),
        (format!("/login/%2E%2E{path}"), false),
        (format!("/login/.%2e{path}"), false),
        (format!("/login/..{path}"), false),
        (format!("/login/./..{path}"), false),
        (format!("/pkg/%2e%2e{path}"), false),
        (format!("/api/public/%2e%2e/%2e%2e{path}"), false),
        (format!("/pkg/..%2f..%2f{rest}"), false),
        (format!("/pkg/..%2F{rest}"), false),
        (format!("//{rest}"), false),
        (format!("/login\\..\\{rest}"), false),
        (format!("/login%5c..%5c{rest}"), false),
    ];
    if !rest.is_empty() {
        all.push((format!("{path}/"), true));
        if let Some((first, second)) = rest.split_once('/') {
            all.push((format!("/{first}//{second}"), false));
        }
        let first = rest.as_bytes()[0];
        all.push((format!("/%{first:02x}{}", &rest[1..]), false));
        all.push((path.to_ascii_uppercase(), true));
    }
    all.dedup();
    all
}

struct Page {
    path: &'static str,
    needs: Who,
    /// Text only someone allowed to see the page's data would find in it.
    canary: Option<&'static str>,
}

/// Fails with every wrong case listed, after checking that the table was not thin.
fn all_right(failures: &[String], checked: usize) {
    assert!(checked > 500, "only {checked} cases");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A Slate with the canaries in place, and a session cookie for each role (none for
/// `Nobody`).
async fn cast() -> (TestApp, [(Who, Option<String>); 4]) {
    let app = spawn_app().await;
    app.create_user(CANARY_EMAIL, "creator").await;
    app.create_token(CANARY_TOKEN, "api", ADMIN_EMAIL).await;
    app.create_user("cleo@studio.test", "creator").await;
    app.create_user("lena@studio.test", "lead").await;
    let cookies = [
        (Who::Nobody, None),
        (
            Who::Creator,
            Some(session_cookie(&app, "cleo@studio.test").await),
        ),
        (
            Who::Lead,
            Some(session_cookie(&app, "lena@studio.test").await),
        ),
        (Who::Admin, Some(session_cookie(&app, ADMIN_EMAIL).await)),
    ];
    (app, cookies)
}

#[tokio::test]
async fn every_page_is_judged_on_the_path_the_router_serves() {
    let (app, cookies) = cast().await;
    let pages = [
        Page {
            path: "/",
            needs: Who::Creator,
            canary: None,
        },
        Page {
            path: "/assets",
            needs: Who::Creator,
            canary: None,
        },
        Page {
            path: "/runs",
            needs: Who::Creator,
            canary: None,
        },
        Page {
            path: "/runs/new",
            needs: Who::Creator,
            canary: None,
        },
        Page {
            path: "/architecture",
            needs: Who::Lead,
            canary: None,
        },
        Page {
            path: "/deploys",
            needs: Who::Lead,
            canary: None,
        },
        Page {
            path: "/admin/colab",
            needs: Who::Admin,
            canary: None,
        },
        Page {
            path: "/admin/pipelines",
            needs: Who::Admin,
            canary: None,
        },
        Page {
            path: "/admin/users",
            needs: Who::Admin,
            canary: Some(CANARY_EMAIL),
        },
        Page {
            path: "/admin/tokens",
            needs: Who::Admin,
            canary: Some(CANARY_TOKEN),
        },
        Page {
            path: "/admin/audit",
            needs: Who::Admin,
            canary: Some(CANARY_TOKEN),
        },
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for page in &pages {
        for (spelling, canonical) in spellings(page.path) {
            let exact = spelling == page.path;
            for (who, cookie) in &cookies {
                let (status, body) =
                    raw(app.addr, "GET", &spelling, cookie.as_deref(), &app.base).await;
                checked += 1;
                let allowed = *who >= page.needs;
                let mut wrong =
                    |why: &str| failures.push(format!("{who:?} GET {spelling}: {status}, {why}"));
                if let Some(canary) = page.canary {
                    let shows = body.contains(canary);
                    if shows && !allowed {
                        wrong("shows the page's data");
                    }
                    if !shows && allowed && exact {
                        wrong("lacks the page's data (the canary is wrong)");
                    }
                }
                if !canonical {
                    if status != 400 {
                        wrong("expected 400 for a non-canonical path");
                    }
                } else if exact {
                    let expected = match (who, allowed) {
                        (Who::Nobody, _) => 303,
                        (_, true) => 200,
                        (_, false) => 403,
                    };
                    if status != expected {
                        wrong(&format!("expected {expected}"));
                    }
                } else if status == 200 && !allowed {
                    wrong("another spelling answered 200 to someone not allowed");
                }
            }
        }
    }
    all_right(&failures, checked);
}

#[tokio::test]
async fn every_server_function_is_judged_on_the_path_it_is_called_at() {
    let (app, cookies) = cast().await;
    let functions: Vec<&'static str> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path)
        .filter(|path| !path.starts_with("/api/public/"))
        .collect();
    assert!(functions.len() > 30, "{functions:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &functions {
        let needs = if path.starts_with("/api/admin/") {
            Who::Admin
        } else if path.starts_with("/api/lead/") {
            Who::Lead
        } else {
            Who::Creator
        };
        let rest = &path["/api/".len()..];
        let spellings = [
            (path.to_string(), true),
            (format!("/api/public/%2e%2e/{rest}"), false),
            (format!("/api/public/../{rest}"), false),
            (format!("/api/public/..%2f{rest}"), false),
            (format!("/api//{rest}"), false),
            (
                format!("/api/%{:02x}{}", rest.as_bytes()[0], &rest[1..]),
                false,
            ),
            (path.to_ascii_uppercase(), true),
        ];
        for (spelling, canonical) in spellings {
            for (who, cookie) in &cookies {
                let (status, body) =
                    raw(app.addr, "POST", &spelling, cookie.as_deref(), &app.base).await;
                checked += 1;
                let allowed = *who >= needs;
                let exact = spelling == *path;
                let mut wrong =
                    |why: &str| failures.push(format!("{who:?} POST {spelling}: {status}, {why}"));
                if (body.contains(CANARY_EMAIL) || body.contains(CANARY_TOKEN))
                    && !(allowed && exact)
                {
                    wrong("answered with data");
                }
                if !canonical {
                    if status != 400 {
                        wrong("expected 400 for a non-canonical path");
                    }
                } else if exact {
                    let refused = matches!(status, 401 | 403);
                    if refused == allowed {
                        wrong(if allowed {
                            "refused someone allowed"
                        } else {
                            "not refused"
                        });
                    }
                } else if status == 200 && !allowed {
                    wrong("another spelling answered 200 to someone not allowed");
                }
            }
        }
    }
    all_right(&failures, checked);
}

/// A session that is never used: the calls below are refused or fail before they would
/// sign anyone in or out.
struct NoSession;

#[async_trait::async_trait]
impl app::backend::SessionControl for NoSession {
    async fn sign_in(&self, _: uuid::Uuid) -> Result<(), app::error::AppError> {
        unreachable!("no call signs in")
    }
    async fn sign_out(&self) -> Result<(), app::error::AppError> {
        unreachable!("no call signs out")
    }
}

type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), app::error::AppError>>>>;

/// Every server function that is not public, called as a page calls it while rendering:
/// in process, past the middleware.
fn every_protected_call() -> Vec<(&'static str, Call)> {
    use app::architecture::api as architecture;
    use app::comfyui::api as workflows;
    use app::deploys::api as deploys;
    use app::pipelines::api as pipelines;
    use app::pipelines::question as questions;
    use app::webhooks::api as webhooks;
    use app::{accounts, assets, colab};
    use leptos::server_fn::ServerFn;
    use uuid::Uuid;
    let id = Uuid::nil;
    let s = |v: &str| v.to_owned();
    macro_rules! calls {
        ($($ty:ty => $call:expr),* $(,)?) => {
            vec![$((
                <$ty as ServerFn>::PATH,
                Box::pin(async move { $call.await.map(|_| ()) }) as Call,
            )),*]
        };
    }
    calls![
        accounts::GetDashboard => accounts::get_dashboard(),
        accounts::ListUsers => accounts::list_users(),
        accounts::CreateUser => accounts::create_user(s("x@studio.test"), s("admin"), None),
        accounts::SetUserRole => accounts::set_user_role(id(), s("admin")),
        accounts::SetUserDisabled => accounts::set_user_disabled(id(), true),
        accounts::ListTokens => accounts::list_tokens(),
        accounts::CreateToken => accounts::create_token(s("t"), s("api"), None),
        accounts::RevokeToken => accounts::revoke_token(id()),
        accounts::AuditLog => accounts::audit_log(None, None, None),
        architecture::GetTopology => architecture::get_topology(),
        architecture::GetNodeDetail => architecture::get_node_detail(s("Deployment/slate")),
        assets::ListAssets => assets::list_assets(None, None, None, None, None, None, None),
        assets::GetAsset => assets::get_asset(id()),
        assets::SetAssetTags => assets::set_asset_tags(id(), s("a")),
        assets::DeleteAsset => assets::delete_asset(id()),
        colab::GetColabOverview => colab::get_colab_overview(),
        colab::RevealEndpoint => colab::reveal_endpoint(id()),
        colab::SetEndpoint => colab::set_endpoint(s("https://x.trycloudflare.com")),
        colab::SetFallback => colab::set_fallback(s("")),
        colab::Reverify => colab::reverify(),
        colab::RotateSecret => colab::rotate_secret(),
        colab::RefreshInventory => colab::refresh_inventory(id()),
        workflows::ListWorkflows => workflows::list_workflows(),
        workflows::ShowWorkflow => workflows::show_workflow(s("txt2img"), None),
        workflows::AddWorkflow => workflows::add_workflow(s("x"), s("x"), None, s("{}")),
        workflows::BindWorkflow => workflows::bind_workflow(s("x"), Vec::new()),
        deploys::GetDeploys => deploys::get_deploys(Default::default()),
        deploys::GetDiff => deploys::get_diff(s("Deployment"), s("slate"), 1, None),
        deploys::Restart => deploys::restart(s("Deployment"), s("slate"), s("why")),
        deploys::PreviewRollback => deploys::preview_rollback(s("slate"), 1),
        deploys::Rollback => deploys::rollback(s("slate"), 1, s("why")),
        pipelines::GetRuns => pipelines::get_runs(Default::default()),
        pipelines::GetRun => pipelines::get_run(id()),
        pipelines::GetTemplateForm => pipelines::get_template_form(s("transcode"), None),
        pipelines::SubmitRun => pipelines::submit_run(s("transcode"), Default::default(), Default::default(), 0),
        pipelines::CancelRun => pipelines::cancel_run(id()),
        pipelines::RetryStage => pipelines::retry_stage(id(), s("a")),
        pipelines::ResubmitRun => pipelines::resubmit_run(id()),
        pipelines::GetTemplateVersions => pipelines::get_template_versions(),
        pipelines::GetTemplateSource => pipelines::get_template_source(s("transcode"), None, None),
        pipelines::SaveTemplate => pipelines::save_template(s("name: x")),
        questions::GetStageQuestion => questions::get_stage_question(id(), s("plan")),
        questions::AnswerQuestion => questions::answer_question(id(), s("approve"), None, None),
        webhooks::ListWebhooks => webhooks::list_webhooks(),
        webhooks::CreateWebhook => webhooks::create_webhook(s("https://example.com/h"), s(""), None, None),
        webhooks::SetWebhookEnabled => webhooks::set_webhook_enabled(id(), true),
        webhooks::DeleteWebhook => webhooks::delete_webhook(id()),
        webhooks::RotateWebhookSecret => webhooks::rotate_webhook_secret(id(), None),
        webhooks::WebhookDeliveries => webhooks::webhook_deliveries(id(), None),
        webhooks::ResendWebhook => webhooks::resend_webhook(id()),
        webhooks::PingWebhook => webhooks::ping_webhook(id()),
    ]
}

#[tokio::test]
async fn server_functions_judge_their_caller_themselves_when_called_in_process() {
    use app::accounts::{Principal, Role};
    use app::error::AppError;
    use leptos::prelude::{provide_context, Owner};
    use leptos::reactive::computed::ScopedFuture;

    let registered: std::collections::BTreeSet<&str> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path)
        .filter(|path| !path.starts_with("/api/public/"))
        .collect();
    let tabled: std::collections::BTreeSet<&str> = every_protected_call()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        registered, tabled,
        "every protected server function is in the table"
    );

    let someone = |role| Principal {
        user_id: uuid::Uuid::now_v7(),
        email: "someone@studio.test".into(),
        role,
        token: None,
    };
    let mut checked = 0;
    for principal in [
        None,
        Some(someone(Role::Creator)),
        Some(someone(Role::Lead)),
        Some(someone(Role::Admin)),
    ] {
        let owner = Owner::new();
        let mut parts = axum::http::Request::new(()).into_parts().0;
        parts.extensions.insert(app::backend::RequestAuth {
            principal: principal.clone(),
            client_addr: None,
            session: std::sync::Arc::new(NoSession),
        });
        owner.with(|| provide_context(parts));
        for (path, call) in every_protected_call() {
            // No services are provided: a call that gets past its own check fails with an
            // internal error instead of doing anything.
            let result = owner.with(|| ScopedFuture::new(call)).await;
            let expected = app::access::allowed(path, principal.as_ref());
            match (&expected, &result) {
                (Err(want), Err(got)) => assert_eq!(want, got, "{path} as {principal:?}"),
                (Ok(()), Err(AppError::Unauthenticated(_) | AppError::Forbidden(_))) => {
                    panic!("{path} refused {principal:?}: {result:?}")
                }
                (Ok(()), _) => {}
                (Err(_), Ok(())) => panic!("{path} let {principal:?} through"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * tabled.len());
}
