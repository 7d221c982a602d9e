//! The dagster executor against the real Dagster (1.13.27: code server, webserver and
//! daemon; `slate_tests::dagster_peer`, the jobs of tests/peers/dagster/defs.py): a job
//! launched, followed (events and a step's stdout/stderr in the stage's log, the bar),
//! its files turned into assets and its materializations' metadata kept; a failing op
//! retried by re-executing the run from its failure; a cancel that terminates the run;
//! Slate crashing mid-run and the next Slate following the same run; a run config
//! Dagster refuses and an unknown job, neither launching anything. Slate runs in-process
//! with `SLATE_DAGSTER_URL` pointing at the peer.

use std::time::Duration;

use serde_json::{json, Value};
use server::config::Config;
use server::pipelines::Capabilities;
use slate_tests::dagster_peer::{self, DagsterPeer};
use slate_tests::{eventually, seen, TestApp};
use sqlx::PgPool;
use uuid::Uuid;

/// A run of the test jobs takes 5–20 s on two shared cores (the daemon's tick, a process
/// per step); generous, as nothing here is about speed.
const RUN: Duration = Duration::from_secs(240);
/// A lost attempt is given back by the reconciler every 5 s once its lease has lapsed.
const ADOPT: Duration = Duration::from_secs(300);

fn slate_config(peer: &DagsterPeer, c: &mut Config) {
    c.dagster_url = Some(peer.url());
    c.dagster_runs = 4;
}

async fn slate_on(peer: &DagsterPeer) -> TestApp {
    slate_tests::spawn_app_with(|c| slate_config(peer, c)).await
}

fn caps() -> Capabilities {
    Capabilities {
        dagster: true,
        ..super::caps()
    }
}

/// A one-stage template running `job`, with `inputs` (YAML lines under `inputs:`).
fn template(name: &str, job: &str, attempts: u32, inputs: &[&str]) -> String {
    let mut s = format!(
        "name: {name}\ntitle: {name}\nparameters:\n  - name: shot\n    type: text\n  - name: frames\n    type: integer\nstages:\n  - name: render\n    executor: dagster\n    location: film\n    job: {job}\n    attempts: {attempts}\n    inputs:\n"
    );
    for i in inputs {
        s.push_str(&format!("      {i}\n"));
    }
    s
}

const SHOT_INPUTS: [&str; 3] = [
    "ops.render_shot.config.shot: ${params.shot}",
    "ops.render_shot.config.frames: ${params.frames}",
    "ops.render_shot.config.seconds_per_frame: 0.2",
];

/// A shot name no other run uses.
fn shot() -> String {
    format!("sc{}", &Uuid::now_v7().simple().to_string()[24..])
}

async fn admin(pool: &PgPool) -> (server::audit::Who, Uuid) {
    let id: Uuid = sqlx::query_scalar("select id from users where email = $1")
        .bind(slate_tests::ADMIN_EMAIL)
        .fetch_one(pool)
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

/// Saves `source` and submits it as the first admin (through the pool alone, so that a
/// Slate that is about to crash can be the one running it).
async fn submit(pool: &PgPool, source: &str, params: Value) -> Uuid {
    let (who, id) = admin(pool).await;
    let (name, _, _) = server::pipelines::store::save(pool, &who, source, false)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let by = server::pipelines::runs::Submitter {
        who: &who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    };
    let submission = server::pipelines::runs::Submission {
        template: name,
        params: params.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    server::pipelines::runs::submit(pool, &caps(), &by, &submission, None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

async fn run_state(pool: &PgPool, run: Uuid) -> String {
    sqlx::query_scalar("select state from runs where id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_run(pool: &PgPool, run: Uuid) -> String {
    eventually(&format!("run {run} to finish"), RUN, || async {
        seen(run_state(pool, run).await, |s| {
            matches!(s.as_str(), "succeeded" | "failed" | "cancelled")
        })
    })
    .await
}

/// The stage: (id, state, message, bar).
async fn stage(pool: &PgPool, run: Uuid) -> (Uuid, String, String, Option<f32>) {
    let (id, state, message, bar): (Uuid, String, Option<String>, Option<f32>) = sqlx::query_as(
        "select id, state, status_message, progress from run_stages where run_id = $1 and name = 'render'",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap();
    (id, state, message.unwrap_or_default(), bar)
}

/// The stage's attempts: (id, state, error, executor_ref, detail).
async fn attempts(
    pool: &PgPool,
    run: Uuid,
) -> Vec<(Uuid, String, Option<String>, Option<String>, Value)> {
    sqlx::query_as(
        "select a.id, a.state, a.error, a.executor_ref, a.detail from stage_attempts a
         join run_stages s on s.id = a.stage_id where s.run_id = $1 order by a.number",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Every log line of the stage's attempts: (stream, line).
async fn logs(pool: &PgPool, run: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "select l.stream, l.line from stage_logs l join stage_attempts a on a.id = l.attempt_id
         join run_stages s on s.id = a.stage_id where s.run_id = $1 order by l.id",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The run's output assets: (name, provenance), by name.
async fn outputs(pool: &PgPool, run: Uuid) -> Vec<(String, Value)> {
    sqlx::query_as(
        "select a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id
         where o.run_id = $1 order by a.name",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn dagster_run_of(reference: &Option<String>) -> String {
    reference
        .as_deref()
        .and_then(|r| r.strip_prefix("dagster "))
        .unwrap_or_else(|| panic!("a dagster reference: {reference:?}"))
        .to_owned()
}

async fn cancel(pool: &PgPool, run: Uuid) {
    let (who, id) = admin(pool).await;
    let by = server::pipelines::runs::Submitter {
        who: &who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    };
    server::pipelines::runs::cancel(pool, run, &by)
        .await
        .unwrap();
}

/// Waits until the stage's log has a line containing `want`.
async fn logged(pool: &PgPool, run: Uuid, want: &str) {
    eventually(&format!("the log to say {want:?}"), RUN, || async {
        logs(pool, run).await.iter().any(|(_, l)| l.contains(want))
    })
    .await;
}

#[tokio::test]
async fn dagster_a_job_runs_and_its_log_files_and_materializations_reach_the_stage() {
    let peer = dagster_peer::shared().await;
    assert_eq!(peer.server_info().await["dagster_version"], "1.13.27");
    let app = slate_on(peer).await;
    let shot = shot();
    let run = submit(
        &app.pool,
        &template("one-shot", "shot_job", 1, &SHOT_INPUTS),
        json!({"shot": shot, "frames": 3}),
    )
    .await;
    let state = wait_run(&app.pool, run).await;
    let (stage_id, _, message, bar) = stage(&app.pool, run).await;
    assert_eq!(
        state,
        "succeeded",
        "{message}\n{}",
        peer.log_tail("code-server")
    );
    assert_eq!(bar, Some(1.0));

    // The one attempt, its Dagster run tagged with Slate's ids.
    let tried = attempts(&app.pool, run).await;
    assert_eq!(tried.len(), 1);
    let (attempt_id, _, _, reference, detail) = &tried[0];
    let dagster_run = dagster_run_of(reference);
    let tagged = peer.runs_tagged("slate/stage", &stage_id.to_string()).await;
    assert_eq!(tagged.len(), 1, "one Dagster run for the stage: {tagged:?}");
    let (id, status, tags) = &tagged[0];
    assert_eq!((id, status.as_str()), (&dagster_run, "SUCCESS"));
    assert_eq!(tags["slate/run"], run.to_string());
    assert_eq!(tags["slate/attempt"], attempt_id.to_string());
    let out = tags["slate/output"].as_str().unwrap();
    assert!(out.ends_with(&format!("/{run}/render/1/out")), "{out}");

    // Events, an info line from the op, and its stdout and stderr.
    let lines = logs(&app.pool, run).await;
    let has = |stream: &str, text: &str| lines.iter().any(|(s, l)| s == stream && l.contains(text));
    assert!(has("stdout", "[run] RUN_START"), "{lines:#?}");
    assert!(
        has(
            "stdout",
            &format!("[render_shot] INFO rendering {shot}: 3 frames")
        ),
        "{lines:#?}"
    );
    assert!(
        has("stdout", &format!("[render_shot] wrote frame 1 of {shot}")),
        "{lines:#?}"
    );
    assert!(
        has(
            "stderr",
            &format!("[render_shot] {shot}: 3 frames on stderr too")
        ),
        "{lines:#?}"
    );
    assert!(has("stdout", "[check_shot] STEP_SUCCESS"), "{lines:#?}");

    // The files the ops wrote, as assets with where they came from.
    let outputs = outputs(&app.pool, run).await;
    let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
    let frames: Vec<String> = (1..=3).map(|n| format!("{shot}_000{n}.txt")).collect();
    assert_eq!(names, ["check.json", &frames[0], &frames[1], &frames[2]]);
    assert_eq!(outputs[1].1["executor"], "dagster");
    assert_eq!(outputs[1].1["dagster_run"], dagster_run.as_str());
    assert_eq!(outputs[1].1["job"], "shot_job");

    // The materialization and its metadata, typed, on the attempt.
    assert_eq!(detail["run_id"], dagster_run.as_str());
    let m = &detail["materializations"];
    assert_eq!(m.as_array().map(Vec::len), Some(1), "{detail}");
    assert_eq!(m[0]["asset_key"], format!("shots/{shot}"));
    assert_eq!(m[0]["step"], "render_shot");
    assert_eq!(m[0]["metadata"]["frames"], 3);
    assert_eq!(m[0]["metadata"]["shot"], shot.as_str());
    assert_eq!(m[0]["metadata"]["path"], out);
    assert_eq!(m[0]["metadata"]["files"]["names"][2], frames[2].as_str());
    assert_eq!(m[0]["metadata"]["docs"], "https://docs.dagster.io/");
    assert!((m[0]["metadata"]["seconds"].as_f64().unwrap() - 0.6).abs() < 1e-9);
    assert_eq!(
        detail["run_config"]["ops"]["render_shot"]["config"]["frames"],
        3
    );
    app.stop().await;
}

#[tokio::test]
async fn dagster_a_failing_op_is_retried_by_re_executing_the_run_from_its_failure() {
    let peer = dagster_peer::shared().await;
    let app = slate_on(peer).await;
    let shot = shot();
    let mut inputs = SHOT_INPUTS.to_vec();
    inputs.push("ops.check_once.config.fail_first: true");
    let run = submit(
        &app.pool,
        &template("flaky-shot", "flaky_job", 2, &inputs),
        json!({"shot": shot, "frames": 2}),
    )
    .await;
    let state = wait_run(&app.pool, run).await;
    let (stage_id, _, message, _) = stage(&app.pool, run).await;
    assert_eq!(state, "succeeded", "{message}");
    let tried = attempts(&app.pool, run).await;
    let states: Vec<&str> = tried.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(states, ["failed", "succeeded"]);
    let error = tried[0].2.clone().unwrap_or_default();
    assert!(
        error.contains("step check_once failed: Failure: check_once looked at 2 frames and wants a second look"),
        "Dagster's words: {error}"
    );
    let (first, second) = (dagster_run_of(&tried[0].3), dagster_run_of(&tried[1].3));
    assert_ne!(first, second);
    assert_eq!(tried[1].4["parent_run_id"], first.as_str());

    // Dagster ran the failed step again, not the whole job, as a child of the first run.
    let tagged = peer.runs_tagged("slate/stage", &stage_id.to_string()).await;
    assert_eq!(tagged.len(), 2, "{tagged:?}");
    let child = tagged
        .iter()
        .find(|r| r.0 == second)
        .expect("the second run");
    assert_eq!(child.2["dagster/parent_run_id"], first.as_str());
    assert_eq!(child.2["slate/attempt"], tried[1].0.to_string());
    let steps = peer.run(&second).await["stepStats"].clone();
    assert_eq!(
        steps,
        json!([{"stepKey": "check_once", "status": "SUCCESS"}])
    );
    assert_eq!(peer.run(&first).await["status"], "FAILURE");

    // The frames the first run rendered came along; the check the second wrote too.
    let outputs = outputs(&app.pool, run).await;
    let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
    let f1 = format!("{shot}_0001.txt");
    let f2 = format!("{shot}_0002.txt");
    assert_eq!(names, ["check.json", f1.as_str(), f2.as_str()]);
    app.stop().await;
}

#[tokio::test]
async fn dagster_cancelling_the_slate_run_terminates_the_dagster_run() {
    let peer = dagster_peer::shared().await;
    let app = slate_on(peer).await;
    let shot = shot();
    let inputs = [
        "ops.render_shot.config.shot: ${params.shot}",
        "ops.render_shot.config.frames: ${params.frames}",
        "ops.render_shot.config.seconds_per_frame: 1",
    ];
    let run = submit(
        &app.pool,
        &template("long-shot", "shot_job", 1, &inputs),
        json!({"shot": shot, "frames": 300}),
    )
    .await;
    logged(&app.pool, run, &format!("wrote frame 2 of {shot}")).await;
    let tried = attempts(&app.pool, run).await;
    let dagster_run = dagster_run_of(&tried[0].3);
    cancel(&app.pool, run).await;
    assert_eq!(wait_run(&app.pool, run).await, "cancelled");
    // The run says so at once; its stage once the executor has stopped the work.
    let (_, state, _, _) = eventually("the stage to stop", RUN, || async {
        seen(stage(&app.pool, run).await, |s| s.1 != "running")
    })
    .await;
    assert_eq!(state, "cancelled");
    // Dagster stopped it (it was asked first, so it is CANCELED by the time Slate let go).
    let dagster = peer.run(&dagster_run).await;
    assert_eq!(dagster["status"], "CANCELED", "{dagster}");
    assert_eq!(
        dagster["stepStats"][0]["status"], "FAILURE",
        "the interrupted step"
    );
    let lines = logs(&app.pool, run).await;
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.contains("RUN_CANCELED") || l.contains("RUN_CANCELING")),
        "{lines:#?}"
    );
    assert_eq!(
        outputs(&app.pool, run).await.len(),
        0,
        "a cancelled stage keeps nothing"
    );
    app.stop().await;
}

/// A Slate whose crash is real: it runs on a runtime of its own, which [`Crashing::crash`]
/// drops with every task on it (the dispatchers and the attempts they run), as a killed
/// process would be; `TestApp::kill` alone ends the server but leaves its background
/// tasks running on the test's runtime.
struct Crashing {
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashing {
    async fn start(config: Config) -> Crashing {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(async move {
                let app = slate_tests::start(config).await;
                let _ = ready_tx.send(());
                let _ = crash_rx.await;
                let _ = app.kill();
            });
            runtime.shutdown_background();
        });
        ready_rx.await.expect("the crashing Slate started");
        Crashing {
            crash: Some(crash_tx),
            thread: Some(thread),
        }
    }

    async fn crash(mut self) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("joined")
                .expect("the crashed Slate's thread ended");
        }
    }
}

#[tokio::test]
async fn dagster_a_run_launched_before_slate_crashed_is_followed_by_the_next_slate_not_launched_again(
) {
    let peer = dagster_peer::shared().await;
    let url = slate_tests::fresh_database().await;
    let mut config = slate_tests::test_config(&url);
    slate_config(peer, &mut config);
    let first = Crashing::start(config.clone()).await;
    let pool = PgPool::connect(&url).await.unwrap();
    let shot = shot();
    let inputs = [
        "ops.render_shot.config.shot: ${params.shot}",
        "ops.render_shot.config.frames: ${params.frames}",
        "ops.render_shot.config.seconds_per_frame: 1",
    ];
    let run = submit(
        &pool,
        &template("crash-shot", "shot_job", 3, &inputs),
        json!({"shot": shot, "frames": 12}),
    )
    .await;
    logged(&pool, run, &format!("wrote frame 1 of {shot}")).await;
    let launched = dagster_run_of(&attempts(&pool, run).await[0].3);
    first.crash().await;
    // The dead runner's lease lapses (made to lapse now rather than in 30 s).
    sqlx::query(
        "update run_stages set lease_until = now() - interval '1 second' where state = 'running'",
    )
    .execute(&pool)
    .await
    .unwrap();

    let app = slate_tests::start(config).await;
    let state = eventually("the run to finish after the restart", ADOPT, || async {
        seen(run_state(&pool, run).await, |s| {
            s != "running" && s != "queued"
        })
    })
    .await;
    let (stage_id, _, message, _) = stage(&pool, run).await;
    assert_eq!(state, "succeeded", "{message}");
    let tried = attempts(&pool, run).await;
    let states: Vec<&str> = tried.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(states, ["lost", "succeeded"]);
    assert_eq!(
        dagster_run_of(&tried[1].3),
        launched,
        "the same Dagster run"
    );
    assert_eq!(tried[1].4["adopted"], true);
    let tagged = peer.runs_tagged("slate/stage", &stage_id.to_string()).await;
    assert_eq!(tagged.len(), 1, "launched once: {tagged:?}");
    assert_eq!(tagged[0].1, "SUCCESS");
    // The second attempt's log has the whole run, replayed from Dagster's event log.
    let second_log: Vec<String> =
        sqlx::query_scalar("select line from stage_logs where attempt_id = $1 order by id")
            .bind(tried[1].0)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        second_log.iter().any(|l| l.contains("[run] RUN_START")),
        "{second_log:#?}"
    );
    assert!(second_log
        .iter()
        .any(|l| l.contains(&format!("wrote frame 12 of {shot}"))));
    // Every frame, once (the files are the run's, in the lost attempt's directory).
    let outputs = outputs(&pool, run).await;
    assert_eq!(outputs.len(), 13, "12 frames and the check");
    assert!(tagged[0].2["slate/output"]
        .as_str()
        .unwrap()
        .ends_with("/render/1/out"));
    app.stop().await;
}

#[tokio::test]
async fn dagster_a_run_config_dagster_refuses_fails_the_stage_by_field_and_launches_nothing() {
    let peer = dagster_peer::shared().await;
    let app = slate_on(peer).await;
    let inputs = [
        "ops.render_shot.config.shot: ${params.shot}",
        "ops.render_shot.config.frames: five",
        "ops.render_shot.config.bogus: 1",
    ];
    let run = submit(
        &app.pool,
        &template("bad-config", "shot_job", 3, &inputs),
        json!({"shot": shot(), "frames": 1}),
    )
    .await;
    assert_eq!(wait_run(&app.pool, run).await, "failed");
    let (stage_id, _, message, _) = stage(&app.pool, run).await;
    assert!(
        message.contains("Dagster refused the run config of job shot_job"),
        "{message}"
    );
    assert!(
        message.contains("Invalid scalar at path root:ops:render_shot:config:frames"),
        "the field, in Dagster's words: {message}"
    );
    assert!(message.contains("\"bogus\""), "{message}");
    assert_eq!(
        attempts(&app.pool, run).await.len(),
        1,
        "a refusal is not retried"
    );
    let tagged = peer.runs_tagged("slate/stage", &stage_id.to_string()).await;
    assert!(tagged.is_empty(), "nothing launched: {tagged:?}");

    // The same check without launching anything, by field, as submission can make it.
    let stage = app::pipelines::template::DagsterStage {
        location: "film".into(),
        repository: "__repository__".into(),
        job: "shot_job".into(),
    };
    let bound = json!({"ops.render_shot.config.frames": "five"});
    let problems = server::pipelines::executors::dagster::check(
        &peer.url(),
        &stage,
        bound.as_object().unwrap(),
    )
    .await
    .unwrap();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.contains(&"ops.render_shot.config.frames"),
        "{problems:?}"
    );
    assert!(
        fields.contains(&"ops.render_shot.config"),
        "the missing shot: {problems:?}"
    );
    let good = json!({"ops.render_shot.config.shot": "sc01", "ops.render_shot.config.frames": 2});
    let none = server::pipelines::executors::dagster::check(
        &peer.url(),
        &stage,
        good.as_object().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(none, []);
    app.stop().await;
}

#[tokio::test]
async fn dagster_an_unknown_job_fails_the_stage_in_dagsters_words() {
    let peer = dagster_peer::shared().await;
    let app = slate_on(peer).await;
    let run = submit(
        &app.pool,
        &template("no-such-job", "nowhere_job", 3, &SHOT_INPUTS),
        json!({"shot": shot(), "frames": 1}),
    )
    .await;
    assert_eq!(wait_run(&app.pool, run).await, "failed");
    let (stage_id, _, message, _) = stage(&app.pool, run).await;
    assert!(
        message.contains("Dagster has no job nowhere_job in location film"),
        "{message}"
    );
    assert!(
        message.contains("Could not find Pipeline film.__repository__.nowhere_job"),
        "Dagster's words: {message}"
    );
    assert_eq!(attempts(&app.pool, run).await.len(), 1);
    assert!(peer
        .runs_tagged("slate/stage", &stage_id.to_string())
        .await
        .is_empty());
    let stage = app::pipelines::template::DagsterStage {
        location: "nowhere".into(),
        repository: "__repository__".into(),
        job: "shot_job".into(),
    };
    let problems =
        server::pipelines::executors::dagster::check(&peer.url(), &stage, &serde_json::Map::new())
            .await
            .unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "job");
    assert!(problems[0]
        .message
        .contains("Dagster has no job shot_job in location nowhere"));
    app.stop().await;
}

#[tokio::test]
async fn dagster_submission_refuses_a_run_config_dagster_would_refuse_naming_the_field() {
    let peer = dagster_peer::shared().await;
    let app = slate_on(peer).await;
    let (who, id) = admin(&app.pool).await;
    let inputs = [
        "ops.render_shot.config.shot: ${params.shot}",
        "ops.render_shot.config.frames: five",
    ];
    let (name, _, _) = server::pipelines::store::save(
        &app.pool,
        &who,
        &template("checked-config", "shot_job", 3, &inputs),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    let by = server::pipelines::runs::Submitter {
        who: &who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    };
    let submission = server::pipelines::runs::Submission {
        template: name,
        params: json!({"shot": shot(), "frames": 1})
            .as_object()
            .cloned()
            .unwrap(),
        ..Default::default()
    };
    // What a Slate configured with this Dagster can run (as `registry` builds it).
    let caps = Capabilities {
        dagster_url: Some(peer.url()),
        ..caps()
    };
    let before = app.count("select count(*) from runs").await;
    let refused = server::pipelines::runs::submit(&app.pool, &caps, &by, &submission, None)
        .await
        .expect_err("Dagster refuses this config");
    assert_eq!(refused.status(), 422, "{refused}");
    let said = refused.to_string();
    assert!(said.contains("Dagster refuses the run config"), "{said}");
    assert!(
        said.contains("stage \"render\": ops.render_shot.config.frames:"),
        "the field: {said}"
    );
    assert_eq!(
        app.count("select count(*) from runs").await,
        before,
        "nothing written"
    );
    app.stop().await;
}
