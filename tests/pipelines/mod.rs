//! Pipelines: templates, submission and its refusals, and the durable queue (claims,
//! limits, retries, cancellation, two dispatchers on one database, a runner that dies),
//! and each executor: local with ffmpeg, ComfyUI and Kubernetes Jobs against fakes.

mod api;
mod comfy;
mod comfy_real;
mod comfy_video;
mod dagster;
mod fanout;
mod kube;
mod langgraph;
mod local;
mod queue;
mod realkube;
mod scripts;
mod story;
mod submit;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use app::accounts::Role;
use server::audit::Who;
use server::pipelines::runs::{Submission, Submitter};
use server::pipelines::Capabilities;
use slate_tests::{eventually, seen, TestApp};
use uuid::Uuid;

/// A template with `n` independent local stages (for queue tests), or a chain.
pub fn template(name: &str, stages: usize, chain: bool, attempts: u32) -> String {
    let mut s = format!("name: {name}\ntitle: {name}\nstages:\n");
    for i in 0..stages {
        s.push_str(&format!(
            "  - name: s{i}\n    executor: local\n    program: ffmpeg\n    attempts: {attempts}\n    args: [\"-version\"]\n"
        ));
        if chain && i > 0 {
            s.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    s
}

pub fn caps() -> Capabilities {
    Capabilities {
        programs: vec!["ffmpeg".into(), "ffprobe".into()],
        kubernetes: false,
        ..Default::default()
    }
}

/// The first admin, as the submitter of test runs.
pub async fn admin(app: &TestApp) -> (Who, Uuid) {
    let id: Uuid = sqlx::query_scalar("select id from users where email = $1")
        .bind(slate_tests::ADMIN_EMAIL)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let who = Who {
        user_id: Some(id),
        token_id: None,
        label: slate_tests::ADMIN_EMAIL.into(),
        client_addr: None,
    };
    (who, id)
}

/// Saves a template as the first admin.
pub async fn save_template(app: &TestApp, source: &str) {
    let (who, _) = admin(app).await;
    server::pipelines::store::save(&app.pool, &who, source, false)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// Submits `template` with `params` as the first admin, to executors that can do `caps`.
pub async fn submit_as_admin(
    app: &TestApp,
    caps: &Capabilities,
    template: &str,
    params: serde_json::Value,
) -> Uuid {
    let (who, id) = admin(app).await;
    let by = Submitter {
        who: &who,
        user_id: id,
        role: Role::Admin,
        token: None,
    };
    let submission = Submission {
        template: template.into(),
        params: params.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    server::pipelines::runs::submit(&app.pool, caps, &by, &submission, None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// Saves a template and submits it `runs` times; returns the run ids.
pub async fn submit_runs(app: &TestApp, source: &str, runs: usize, priority: i32) -> Vec<Uuid> {
    let (who, id) = admin(app).await;
    let (name, _, _) = server::pipelines::store::save(&app.pool, &who, source, false)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let by = Submitter {
        who: &who,
        user_id: id,
        role: Role::Admin,
        token: None,
    };
    let mut out = Vec::new();
    for _ in 0..runs {
        let submission = Submission {
            template: name.clone(),
            priority,
            ..Default::default()
        };
        out.push(
            server::pipelines::runs::submit(&app.pool, &caps(), &by, &submission, None)
                .await
                .unwrap(),
        );
    }
    out
}

/// Waits (generously: these machines are shared, and nothing here is about speed) until
/// a run has succeeded or failed; returns its state.
pub async fn wait_run(app: &TestApp, run: Uuid) -> String {
    eventually(
        &format!("run {run} to finish"),
        Duration::from_secs(180),
        || async {
            seen(run_state(app, run).await, |s| {
                s == "succeeded" || s == "failed"
            })
        },
    )
    .await
}

/// The run's state now.
pub async fn run_state(app: &TestApp, run: Uuid) -> String {
    sqlx::query_scalar("select state from runs where id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

pub type Shared<T> = Arc<std::sync::Mutex<T>>;

/// Waits up to `within` until the run's (only) stage says something containing `want`;
/// returns what it says.
pub async fn stage_says(app: &TestApp, run: Uuid, want: &str, within: Duration) -> String {
    eventually(&format!("the stage to say {want:?}"), within, || async {
        let message = sqlx::query_scalar::<_, Option<String>>(
            "select status_message from run_stages where run_id = $1",
        )
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .unwrap_or_default();
        seen(message, |m| m.contains(want))
    })
    .await
}

/// Waits up to `within` until the run is in state `want`.
pub async fn run_reaches(app: &TestApp, run: Uuid, want: &str, within: Duration) {
    eventually(&format!("run {run} to be {want}"), within, || async {
        seen(run_state(app, run).await, |s| s == want)
    })
    .await;
}
