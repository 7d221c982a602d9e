//! The langgraph executor against the real LangGraph server (`langgraph dev` from PyPI;
//! `slate_tests::langgraph_peer`) with the real shot planner and the test graphs of
//! tests/peers/langgraph: a run streamed (custom progress, updates in the log, values kept
//! and used by the next stage), a graph asking a person twice and answered through the
//! server functions (who may, twice, bad JSON, the audit log), the planner's review
//! (edit, then approve; reject), cancel while running and while waiting, a graph that
//! raises, an unknown assistant, a wrong token, and Slate killed mid-run (or while a
//! person is asked) and started again on the same database (the same thread and run
//! followed, the same question asked, no second run).

use std::time::Duration;

use app::accounts::Role;
use serde_json::{json, Value};
use server::pipelines::runs::{Submission, Submitter};
use server::pipelines::Capabilities;
use slate_tests::langgraph_peer::{self, LanggraphPeer, TOKEN};
use slate_tests::{eventually, seen, spawn_app_with, TestApp};
use sqlx::PgPool;
use uuid::Uuid;

use super::{admin, caps, run_reaches, save_template, stage_says, wait_run};

/// The first admin, as the submitter, read from `db`.
async fn admin_of(db: &PgPool) -> (server::audit::Who, Uuid) {
    let id: Uuid = sqlx::query_scalar("select id from users where email = $1")
        .bind(slate_tests::ADMIN_EMAIL)
        .fetch_one(db)
        .await
        .unwrap();
    let who = server::audit::Who {
        user_id: Some(id),
        token_id: None,
        label: slate_tests::ADMIN_EMAIL.into(),
        client_addr: None,
    };
    (who, id)
}

/// A graph step on these shared cores takes well under a second; a start of Slate or of
/// a run a few seconds. Nothing here measures speed.
const STEP: Duration = Duration::from_secs(60);
/// Slate killed mid-run: its lease (30 s) lapses, then the reconciler (every 5 s) gives
/// the stage back.
const ADOPTION: Duration = Duration::from_secs(120);

fn lg_caps() -> Capabilities {
    Capabilities {
        langgraph: true,
        ..caps()
    }
}

/// Slate pointed at `peer`, sending `token`.
async fn slate_on(peer: &LanggraphPeer, token: Option<&str>) -> TestApp {
    let url = peer.url();
    let token = token.map(str::to_owned);
    spawn_app_with(move |c| {
        c.langgraph_url = Some(url);
        c.langgraph_token = token;
    })
    .await
}

/// A one-stage template running `assistant` with `inputs` (YAML lines under `inputs:`).
fn one_stage(name: &str, assistant: &str, inputs: &str, attempts: u32) -> String {
    format!(
        "name: {name}\ntitle: {name}\nparameters:\n  - name: topic\n    type: string\n    required: false\nstages:\n  - name: plan\n    executor: langgraph\n    assistant: {assistant}\n    attempts: {attempts}\n    inputs:\n{inputs}"
    )
}

/// Submits `template` as `email` (a `role`), to a Slate that can run langgraph stages.
async fn submit_as(db: &PgPool, email: &str, role: Role, template: &str, params: Value) -> Uuid {
    let id: Uuid = sqlx::query_scalar("select id from users where email = $1")
        .bind(email)
        .fetch_one(db)
        .await
        .unwrap();
    let who = server::audit::Who {
        user_id: Some(id),
        token_id: None,
        label: email.into(),
        client_addr: None,
    };
    let by = Submitter {
        who: &who,
        user_id: id,
        role,
        token: None,
    };
    let submission = Submission {
        template: template.into(),
        params: params.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    server::pipelines::runs::submit(db, &lg_caps(), &by, &submission, None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

async fn submit_as_admin(db: &PgPool, template: &str, params: Value) -> Uuid {
    submit_as(db, slate_tests::ADMIN_EMAIL, Role::Admin, template, params).await
}

/// The stage's row: (state, status message, attempt, stage values).
async fn stage(db: &PgPool, run: Uuid, name: &str) -> (String, String, i32, Option<Value>) {
    let (state, message, attempt, values): (String, Option<String>, i32, Option<Value>) =
        sqlx::query_as(
            "select state, status_message, attempt, stage_values from run_stages where run_id = $1 and name = $2",
        )
        .bind(run)
        .bind(name)
        .fetch_one(db)
        .await
        .unwrap();
    (state, message.unwrap_or_default(), attempt, values)
}

/// Every log line of the run's stage `name`, in order.
async fn log_lines(db: &PgPool, run: Uuid, name: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select l.line from stage_logs l join stage_attempts a on a.id = l.attempt_id
         join run_stages s on s.id = a.stage_id where s.run_id = $1 and s.name = $2 order by l.id",
    )
    .bind(run)
    .bind(name)
    .fetch_all(db)
    .await
    .unwrap()
}

/// The references the stage's attempts recorded, with their states, in order.
async fn attempts(db: &PgPool, run: Uuid) -> Vec<(String, Option<String>, Uuid)> {
    sqlx::query_as(
        "select a.state, a.executor_ref, a.id from stage_attempts a join run_stages s on s.id = a.stage_id
         where s.run_id = $1 and s.name = 'plan' order by a.number",
    )
    .bind(run)
    .fetch_all(db)
    .await
    .unwrap()
}

/// The thread the stage's first attempt named.
async fn thread_of(db: &PgPool, run: Uuid) -> String {
    let all = attempts(db, run).await;
    all[0].2.to_string()
}

/// Waits until the stage `plan` has stopped, cancelled (the run says cancelled at once).
async fn stage_cancelled(db: &PgPool, run: Uuid) {
    eventually("the stage to be cancelled", STEP, || async {
        seen(stage(db, run, "plan").await.0, |s| s == "cancelled")
    })
    .await;
}

/// The pending question of the run's stage `plan`, read through the server function
/// as `client` sees it.
async fn question(app: &TestApp, client: &reqwest::Client, run: Uuid) -> Value {
    let res = app
        .call(
            client,
            "/api/stage_question",
            &[("run", &run.to_string()), ("stage", "plan")],
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits until the stage asks a question whose text contains `want`; returns it.
async fn asked(app: &TestApp, client: &reqwest::Client, run: Uuid, want: &str) -> Value {
    stage_says(app, run, "Waiting for a person", STEP).await;
    eventually(&format!("the question {want:?}"), STEP, || async {
        let q = question(app, client, run).await;
        let pending = q["answer"].is_null() && q["closed"].is_null();
        seen(q, |q| {
            pending
                && q["question"]["question"]
                    .as_str()
                    .is_some_and(|t| t.contains(want))
        })
    })
    .await
}

async fn answer(
    app: &TestApp,
    client: &reqwest::Client,
    question: &Value,
    form: &[(&str, &str)],
) -> (u16, String) {
    let id = question["id"].as_str().unwrap().to_owned();
    let mut all = vec![("question", id.as_str())];
    all.extend_from_slice(form);
    let res = app.call(client, "/api/answer_question", &all).await;
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_langgraph_run_streams_its_progress_and_updates_and_its_values_feed_the_next_stage() {
    let peer = langgraph_peer::shared().await;
    let app = slate_on(peer, Some(TOKEN)).await;
    save_template(
        &app,
        r#"name: plan-then-use
title: Plan then use
parameters:
  - name: story
    type: text
stages:
  - name: plan
    executor: langgraph
    assistant: shot_planner
    inputs:
      story: ${params.story}
      shots: 2
      style: pencil storyboard
  - name: use
    executor: local
    program: ffmpeg
    needs: [plan]
    args: ["-hide_banner", "-f", "lavfi", "-i", "anullsrc", "-t", "0.1",
           "-metadata", "title=${stages.plan.values.shots.1.prompt}", "-f", "ffmetadata", "${output}/meta.txt"]
"#,
    )
    .await;
    let story = "A fox runs through the snow. It stops at the frozen lake! The moon rises.";
    let run = submit_as_admin(&app.pool, "plan-then-use", json!({"story": story})).await;
    assert_eq!(
        wait_run(&app, run).await,
        "succeeded",
        "{:?}",
        stage(&app.pool, run, "plan").await
    );
    // The planner's values: three sentences in two shots, deterministically.
    let (_, _, _, values) = stage(&app.pool, run, "plan").await;
    assert_eq!(
        values,
        Some(json!({"shots": [
            {"shot": "sh010", "prompt": "A fox runs through the snow. It stops at the frozen lake, pencil storyboard", "seconds": 5},
            {"shot": "sh020", "prompt": "The moon rises, pencil storyboard", "seconds": 2}
        ]}))
    );
    // The custom events moved the bar and said what the graph did; updates are log lines.
    let lines = log_lines(&app.pool, run, "plan").await;
    for want in [
        "[custom] Splitting the story into shots",
        "[custom] Planned sh020 (2 of 2)",
        "[plan] {\"shots\":[{",
        "[custom] 2 shots planned",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "no {want:?} in {lines:#?}"
        );
    }
    let progress: Option<f32> =
        sqlx::query_scalar("select progress from run_stages where run_id = $1 and name = 'plan'")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(progress, Some(1.0));
    // The next stage got the second shot's prompt.
    let meta = std::fs::read_to_string(
        app.config
            .work()
            .join(run.to_string())
            .join("use/out/meta.txt"),
    )
    .unwrap();
    assert!(
        meta.contains("title=The moon rises, pencil storyboard"),
        "{meta}"
    );
    // values.json is among the outputs, with its provenance.
    let kept: Vec<(String, Value)> = sqlx::query_as(
        "select a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id where o.run_id = $1 order by a.name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let values_json = kept.iter().find(|(n, _)| n.ends_with("values.json"));
    let (_, how) = values_json.unwrap_or_else(|| panic!("no values.json in {kept:?}"));
    assert_eq!(how["executor"], "langgraph");
    assert_eq!(how["assistant"], "shot_planner");
    // The thread is named by the attempt and tagged with the run, stage and attempt.
    let thread = thread_of(&app.pool, run).await;
    let t = peer.thread(&thread).await;
    assert_eq!(t["status"], "idle");
    assert_eq!(t["metadata"]["slate_run"], run.to_string());
    assert_eq!(t["metadata"]["slate_stage"], "plan");
    assert_eq!(t["metadata"]["slate_attempt"], thread);
    let runs = peer.runs(&thread).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let (state, reference, _) = &attempts(&app.pool, run).await[0];
    assert_eq!(state, "succeeded");
    let run_id = runs[0]["run_id"].as_str().unwrap();
    assert!(
        reference
            .as_deref()
            .is_some_and(|r| r.starts_with(&format!("langgraph {thread} {run_id}"))),
        "{reference:?}"
    );
}

#[tokio::test]
async fn a_langgraph_graph_asking_twice_waits_for_a_person_and_resumes_with_each_answer() {
    let peer = langgraph_peer::shared().await;
    let app = slate_on(peer, Some(TOKEN)).await;
    save_template(
        &app,
        &one_stage("ask", "ask", "      topic: ${params.topic}\n", 1),
    )
    .await;
    let submitter = app.signed_in("maker@studio.test", "creator").await;
    let other = app.signed_in("other@studio.test", "creator").await;
    let lead = app.signed_in("lead@studio.test", "lead").await;
    let run = submit_as(
        &app.pool,
        "maker@studio.test",
        Role::Creator,
        "ask",
        json!({"topic": "the fox"}),
    )
    .await;
    let first = asked(&app, &other, run, "Is the outline for the fox right?").await;
    let (_, message, ..) = stage(&app.pool, run, "plan").await;
    assert_eq!(
        message,
        "Waiting for a person: Is the outline for the fox right?"
    );
    // Another creator sees the question and may not answer it.
    assert_eq!(first["may_answer"], false);
    assert_eq!(first["question"]["step"], 1);
    let (status, body) = answer(&app, &other, &first, &[("action", "approve")]).await;
    assert_eq!(status, 403, "{body}");
    // A lead approves; a second answer to the same question is refused, saying why.
    let (status, body) = answer(&app, &lead, &first, &[("action", "approve")]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = answer(&app, &lead, &first, &[("action", "approve")]).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("answered already, by lead@studio.test"),
        "{body}"
    );
    // The second question; the submitter answers with an edit, bad JSON first.
    let second = asked(&app, &submitter, run, "And the final wording?").await;
    assert_eq!(second["may_answer"], true);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["question"]["so_far"], json!([{"action": "approve"}]));
    let (status, body) = answer(
        &app,
        &submitter,
        &second,
        &[("action", "edit"), ("values", "{\"title\": ")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");
    let (status, body) = answer(
        &app,
        &submitter,
        &second,
        &[
            ("action", "edit"),
            ("values", r#"{"title": "The fox, at night"}"#),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_run(&app, run).await, "succeeded");
    // The graph got exactly what was answered, in order.
    let (_, _, _, values) = stage(&app.pool, run, "plan").await;
    assert_eq!(
        values.unwrap()["answers"],
        json!([{"action": "approve"}, {"action": "edit", "values": {"title": "The fox, at night"}}])
    );
    // One run, then one resume per answer, all on the attempt's thread.
    let thread = thread_of(&app.pool, run).await;
    assert_eq!(peer.runs(&thread).await.len(), 3);
    assert_eq!(peer.thread(&thread).await["status"], "idle");
    // Both answers are in the audit log, by who gave them.
    let audited: Vec<(String, Value)> = sqlx::query_as(
        "select actor_label, detail from audit_log where action = 'stage.answer' order by at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!(audited[0].0, "lead@studio.test");
    assert_eq!(audited[0].1["action"], "approve");
    assert_eq!(audited[1].0, "maker@studio.test");
    assert_eq!(audited[1].1["action"], "edit");
    let lines = log_lines(&app.pool, run, "plan").await;
    assert!(
        lines
            .iter()
            .any(|l| l == "[answer] lead@studio.test answered approve."),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn the_langgraph_shot_planner_review_takes_an_edit_then_an_approval_and_a_rejection_fails_for_good(
) {
    let peer = langgraph_peer::shared().await;
    let app = slate_on(peer, Some(TOKEN)).await;
    save_template(
        &app,
        &one_stage(
            "review",
            "shot_planner",
            "      story: One sentence. Two sentences. Three.\n      review: true\n",
            3,
        ),
    )
    .await;
    let lead = app.signed_in("lead@studio.test", "lead").await;
    let run = submit_as_admin(&app.pool, "review", json!({})).await;
    let proposed = asked(&app, &lead, run, "Review the shot plan").await;
    assert_eq!(proposed["question"]["shots"].as_array().unwrap().len(), 3);
    assert_eq!(
        proposed["current_values"]["shots"],
        proposed["question"]["shots"]
    );
    // Not a plan: asked again, naming the problem.
    let (status, body) = answer(
        &app,
        &lead,
        &proposed,
        &[
            ("action", "edit"),
            ("values", r#"{"shots": [{"shot": "sh010"}]}"#),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let again = eventually("the planner to ask again", STEP, || async {
        let q = question(&app, &lead, run).await;
        seen(q, |q| q["id"] != proposed["id"] && q["answer"].is_null())
    })
    .await;
    assert_eq!(
        again["question"]["problem"],
        "The edit was not used: shot sh010 has no prompt."
    );
    // A real edit, shown again for approval, then approved.
    let edited = json!({"shots": [{"shot": "sh010", "prompt": "one wide shot", "seconds": 5}]});
    let (status, body) = answer(
        &app,
        &lead,
        &again,
        &[("action", "edit"), ("values", &edited.to_string())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let confirm = eventually("the planner to show the edit", STEP, || async {
        let q = question(&app, &lead, run).await;
        seen(q, |q| q["id"] != again["id"] && q["answer"].is_null())
    })
    .await;
    assert_eq!(confirm["question"]["shots"], edited["shots"]);
    let (status, body) = answer(&app, &lead, &confirm, &[("action", "approve")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_run(&app, run).await, "succeeded");
    assert_eq!(stage(&app.pool, run, "plan").await.3, Some(edited));

    // Rejected: the stage fails with the reason, and is not tried again.
    let run = submit_as_admin(&app.pool, "review", json!({})).await;
    let proposed = asked(&app, &lead, run, "Review the shot plan").await;
    let (status, body) = answer(
        &app,
        &lead,
        &proposed,
        &[("action", "reject"), ("reason", " ")],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = answer(
        &app,
        &lead,
        &proposed,
        &[("action", "reject"), ("reason", "three shots is too many")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_run(&app, run).await, "failed");
    let (state, message, attempt, _) = stage(&app.pool, run, "plan").await;
    assert_eq!((state.as_str(), attempt), ("failed", 1));
    assert!(
        message.contains("PlanRejected: the shot plan was rejected: three shots is too many"),
        "{message}"
    );
}

#[tokio::test]
async fn a_langgraph_run_is_cancelled_while_it_runs_and_while_it_waits_for_a_person() {
    let peer = langgraph_peer::shared().await;
    let app = slate_on(peer, Some(TOKEN)).await;
    let (who, id) = admin(&app).await;
    let by = Submitter {
        who: &who,
        user_id: id,
        role: Role::Admin,
        token: None,
    };
    save_template(
        &app,
        &one_stage("slow", "slow", "      steps: 400\n      delay: 0.5\n", 1),
    )
    .await;
    let run = submit_as_admin(&app.pool, "slow", json!({})).await;
    stage_says(&app, run, "step 2 of 400", STEP).await;
    server::pipelines::runs::cancel(&app.pool, run, &by)
        .await
        .unwrap();
    run_reaches(&app, run, "cancelled", STEP).await;
    let thread = thread_of(&app.pool, run).await;
    // LangGraph stopped the run (its status follows the cancel by a moment).
    eventually("LangGraph to stop the run", STEP, || async {
        let runs = peer.runs(&thread).await;
        seen(runs, |r| r.len() == 1 && r[0]["status"] == "interrupted")
    })
    .await;
    stage_cancelled(&app.pool, run).await;

    // Waiting for a person: the wait ends, and the question can no longer be answered.
    save_template(&app, &one_stage("ask", "ask", "      topic: x\n", 1)).await;
    let lead = app.signed_in("lead@studio.test", "lead").await;
    let run = submit_as_admin(&app.pool, "ask", json!({})).await;
    let q = asked(&app, &lead, run, "Is the outline for x right?").await;
    server::pipelines::runs::cancel(&app.pool, run, &by)
        .await
        .unwrap();
    run_reaches(&app, run, "cancelled", STEP).await;
    // Refused at once (the stage is being cancelled), and once it has stopped.
    let (status, body) = answer(&app, &lead, &q, &[("action", "approve")]).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no longer waiting"), "{body}");
    stage_cancelled(&app.pool, run).await;
    let closed = question(&app, &lead, run).await;
    assert_eq!(closed["closed"], "the run was cancelled");
    let (status, body) = answer(&app, &lead, &q, &[("action", "approve")]).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("no longer waiting for an answer: the run was cancelled"),
        "{body}"
    );
    assert_eq!(peer.runs(&thread_of(&app.pool, run).await).await.len(), 1);
}

#[tokio::test]
async fn a_langgraph_graph_that_raises_an_unknown_assistant_and_a_wrong_token_fail_the_stage_in_words(
) {
    let peer = langgraph_peer::shared().await;
    let app = slate_on(peer, Some(TOKEN)).await;
    save_template(
        &app,
        &one_stage("fail", "fail", "      story: twelve shots\n", 1),
    )
    .await;
    let run = submit_as_admin(&app.pool, "fail", json!({})).await;
    assert_eq!(wait_run(&app, run).await, "failed");
    let (_, message, ..) = stage(&app.pool, run, "plan").await;
    assert!(
        message.contains(
            "LangGraph: ValueError: the budget allows 3 shots, the story needs 12 (twelve shots)"
        ),
        "{message}"
    );
    let lines = log_lines(&app.pool, run, "plan").await;
    assert!(
        lines.iter().any(|l| l == "[custom] about to fail"),
        "{lines:#?}"
    );

    save_template(
        &app,
        &one_stage("nobody", "no_such_graph", "      topic: x\n", 3),
    )
    .await;
    let run = submit_as_admin(&app.pool, "nobody", json!({})).await;
    assert_eq!(wait_run(&app, run).await, "failed");
    let (_, message, attempt, _) = stage(&app.pool, run, "plan").await;
    assert_eq!(attempt, 1, "a refusal is not retried");
    assert!(
        message.contains("LangGraph has no assistant \"no_such_graph\"")
            && message.contains("shot_planner"),
        "{message}"
    );

    // Slate with the wrong token, and with none: refused, said so, the token never shown.
    for token in [Some("not-the-token"), None] {
        let app = slate_on(peer, token).await;
        save_template(
            &app,
            &one_stage("planner", "shot_planner", "      story: A fox.\n", 3),
        )
        .await;
        let run = submit_as_admin(&app.pool, "planner", json!({})).await;
        assert_eq!(wait_run(&app, run).await, "failed");
        let (_, message, attempt, _) = stage(&app.pool, run, "plan").await;
        assert_eq!(attempt, 1, "{token:?}: a refused token is not retried");
        assert!(
            message.contains("LangGraph refused Slate's token (HTTP 401")
                && message.contains("SLATE_LANGGRAPH_TOKEN"),
            "{token:?}: {message}"
        );
        assert!(!message.contains("not-the-token"), "{message}");
    }
}

/// A Slate that can crash for real: it runs on a runtime of its own, which `crash` ends
/// with every task on it (its dispatchers and the attempts they follow), as a killed
/// process would be (`TestApp::kill` alone leaves the background tasks running on the
/// test's runtime).
struct Apart {
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Apart {
    async fn start(config: server::config::Config) -> Apart {
        let (ready, started) = tokio::sync::oneshot::channel();
        let (crash, crashed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(async move {
                let app = slate_tests::start(config).await;
                let _ = ready.send(());
                let _ = crashed.await;
                let _ = app.kill();
            });
            runtime.shutdown_background();
        });
        started.await.expect("Slate started on its own runtime");
        Apart {
            crash: Some(crash),
            thread: Some(thread),
        }
    }

    async fn crash(mut self) {
        self.crash.take();
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("joined")
                .expect("the crashed Slate's thread ended");
        }
    }
}

#[tokio::test]
async fn a_langgraph_run_is_followed_again_after_slate_restarts_and_never_started_twice() {
    let peer = langgraph_peer::shared().await;
    let url = slate_tests::fresh_database().await;
    let mut config = slate_tests::test_config(&url);
    config.langgraph_url = Some(peer.url());
    config.langgraph_token = Some(TOKEN.into());
    let first = Apart::start(config.clone()).await;
    let db = PgPool::connect(&url).await.unwrap();
    // Longer than the lease and the reconciler take to give the stage back.
    let (who, _) = admin_of(&db).await;
    server::pipelines::store::save(
        &db,
        &who,
        &one_stage("slow", "slow", "      steps: 100\n      delay: 0.5\n", 1),
        false,
    )
    .await
    .unwrap();
    let run = submit_as_admin(&db, "slow", json!({})).await;
    eventually(
        "the run to be at step 3 with its id recorded",
        STEP,
        || async {
            let (_, message, ..) = stage(&db, run, "plan").await;
            let all = attempts(&db, run).await;
            let recorded = all.first().and_then(|a| a.1.clone()).unwrap_or_default();
            seen((message, recorded), |(m, r)| {
                m.starts_with("step ")
                    && !m.starts_with("step 1 ")
                    && !m.starts_with("step 2 ")
                    && r.split_whitespace().count() >= 3
                    && !r.ends_with(" -")
            })
        },
    )
    .await;
    let thread = thread_of(&db, run).await;
    first.crash().await;
    let app = slate_tests::start(config).await;
    eventually("another attempt to follow the thread", ADOPTION, || async {
        let all = attempts(&app.pool, run).await;
        seen(all, |a| a.len() == 2 && a[0].0 == "lost")
    })
    .await;
    assert_eq!(wait_run(&app, run).await, "succeeded");
    let all = attempts(&app.pool, run).await;
    assert_eq!(all[1].0, "succeeded");
    let runs = peer.runs(&thread).await;
    assert_eq!(runs.len(), 1, "one run on the thread: {runs:#?}");
    let run_id = runs[0]["run_id"].as_str().unwrap();
    for (state, reference, _) in &all {
        assert!(
            reference
                .as_deref()
                .is_some_and(|r| r.starts_with(&format!("langgraph {thread} {run_id}"))),
            "{state}: {reference:?}"
        );
    }
    let lines = log_lines(&app.pool, run, "plan").await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Slate restarted: following LangGraph run")),
        "{lines:#?}"
    );
    // The adopting attempt joined after the events seen: the last step was heard once.
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "[custom] step 100 of 100")
            .count(),
        1,
        "{lines:#?}"
    );
    assert_eq!(
        stage(&app.pool, run, "plan").await.3,
        Some(json!({"steps": 100, "delay": 0.5, "done": 100}))
    );
}

#[tokio::test]
async fn a_langgraph_stage_waiting_for_a_person_when_slate_restarts_waits_for_the_same_question() {
    let peer = langgraph_peer::shared().await;
    let url = slate_tests::fresh_database().await;
    let mut config = slate_tests::test_config(&url);
    config.langgraph_url = Some(peer.url());
    config.langgraph_token = Some(TOKEN.into());
    let first = Apart::start(config.clone()).await;
    let db = PgPool::connect(&url).await.unwrap();
    let (who, _) = admin_of(&db).await;
    server::pipelines::store::save(
        &db,
        &who,
        &one_stage("ask", "ask", "      topic: the lake\n", 1),
        false,
    )
    .await
    .unwrap();
    let run = submit_as_admin(&db, "ask", json!({})).await;
    eventually("the stage to wait for a person", STEP, || async {
        seen(stage(&db, run, "plan").await.1, |m| {
            m.starts_with("Waiting for a person")
        })
    })
    .await;
    let thread = thread_of(&db, run).await;
    first.crash().await;
    let app = slate_tests::start(config).await;
    eventually(
        "another attempt to wait for the same person",
        ADOPTION,
        || async {
            let all = attempts(&app.pool, run).await;
            let (_, message, ..) = stage(&app.pool, run, "plan").await;
            seen((all.len(), message), |(n, m)| {
                *n == 2 && m.starts_with("Waiting for a person")
            })
        },
    )
    .await;
    // One question so far (the adopting attempt asks the same one), answered once.
    assert_eq!(app.count("select count(*) from stage_questions").await, 1);
    let lead = app.signed_in("lead@studio.test", "lead").await;
    let q = asked(&app, &lead, run, "Is the outline for the lake right?").await;
    let (status, body) = answer(&app, &lead, &q, &[("action", "approve")]).await;
    assert_eq!(status, 200, "{body}");
    let second = asked(&app, &lead, run, "And the final wording?").await;
    let (status, body) = answer(&app, &lead, &second, &[("action", "approve")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_run(&app, run).await, "succeeded");
    assert_eq!(
        stage(&app.pool, run, "plan").await.3.unwrap()["answers"],
        json!([{"action": "approve"}, {"action": "approve"}])
    );
    // The first run and one resume per answer: nothing was started twice.
    assert_eq!(peer.runs(&thread).await.len(), 3);
}
