//! Fan-out: a stage with `for_each` runs once per item of an upstream stage's values,
//! each instance with its own item, attempts, outputs and place in the queue's limits,
//! and a downstream stage gathers them in item order. The upstream stage is a LangGraph
//! stage played by a stand-in executor (the real one is tested in `langgraph`): it ends
//! with the values the run's `plan` parameter holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use app::accounts::Role;
use async_trait::async_trait;
use serde_json::{json, Value};
use server::pipelines::attempt::Attempt;
use server::pipelines::queue::Outcome;
use server::pipelines::runs::Submitter;
use server::pipelines::{Capabilities, Dispatcher, Executor, Queue};
use slate_tests::{spawn_app_with, TestApp};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::{admin, wait_run, Shared};

/// Plays the `langgraph` queue: the `plan` stage ends with the JSON of the run's `plan`
/// parameter as its values; an instance records its index and item, holds for `hold`,
/// and fails for good on its first attempt when its index is `fail_index`.
#[derive(Default)]
struct StandIn {
    seen: Shared<Vec<(i32, Value, i32)>>,
    now: AtomicUsize,
    most: AtomicUsize,
    hold: Duration,
    fail_index: Option<i32>,
}

#[async_trait]
impl Executor for StandIn {
    fn queues(&self) -> Vec<Queue> {
        Vec::new()
    }

    async fn run(
        &self,
        attempt: &Attempt,
        _cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let claim = &attempt.claim;
        let Some((index, item)) = claim.item.clone() else {
            let plan = claim.params["plan"].as_str().unwrap_or("null");
            let values: Value = serde_json::from_str(plan).map_err(|e| e.to_string())?;
            attempt.values(&values).await?;
            return Ok(Outcome::Succeeded);
        };
        assert_eq!(claim.name, format!("{}.{index}", claim.stage));
        self.seen.lock().unwrap().push((index, item, claim.attempt));
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.hold).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        if self.fail_index == Some(index) && claim.attempt == 1 {
            return Ok(Outcome::FailedForGood("this instance fails once".into()));
        }
        Ok(Outcome::Succeeded)
    }
}

fn caps() -> Capabilities {
    Capabilities {
        programs: vec!["ffmpeg".into(), "ffprobe".into()],
        langgraph: true,
        ..Default::default()
    }
}

async fn app_with(stand_in: Arc<StandIn>, capacity: i64) -> (TestApp, tokio::task::JoinHandle<()>) {
    let app = spawn_app_with(|c| c.comfyui_prompts = 0).await;
    let dispatcher = Arc::new(Dispatcher {
        pool: app.pool.clone(),
        queue: "langgraph".into(),
        capacity,
        executor: stand_in,
        runner: Uuid::now_v7(),
        wake: Arc::new(Notify::new()),
    });
    let task = tokio::spawn(async move {
        let _ = dispatcher.run().await;
    });
    (app, task)
}

async fn submit(app: &TestApp, source: &str, plan: Value) -> Uuid {
    let (who, _) = admin(app).await;
    let (name, _, _) = server::pipelines::store::save(&app.pool, &who, source, false)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    super::submit_as_admin(app, &caps(), &name, json!({"plan": plan.to_string()})).await
}

/// (name, state, status, item) of every stage row of the run.
async fn rows(app: &TestApp, run: Uuid) -> Vec<(String, String, Option<String>, Option<Value>)> {
    sqlx::query_as(
        "select name, state, status_message, item from run_stages where run_id = $1
         order by fan_of nulls first, item_index, name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

const FRAMES: &str = r#"name: fan-frames
title: One frame per shot
parameters:
  - {name: plan, type: text}
stages:
  - name: plan
    executor: langgraph
    assistant: shot_planner
  - name: frames
    executor: local
    program: ffmpeg
    for_each: ${stages.plan.values.shots}
    args: ["-v", "error", "-f", "lavfi", "-i", "color=c=${item.color}:s=64x36", "-frames:v", "1", "${output}/frame.png"]
  - name: reel
    executor: local
    program: ffmpeg
    args: ["-v", "error", "-framerate", "1", "-i", "${stages.frames.outputs}/%05d-frame.png", "-c:v", "mpeg4", "-q:v", "2", "${output}/reel.mp4"]
"#;

#[tokio::test]
async fn a_stage_runs_once_per_item_and_the_next_one_gathers_them_in_order() {
    let (app, task) = app_with(Arc::new(StandIn::default()), 1).await;
    let plan = json!({"shots": [
        {"shot": "sh010", "color": "red"},
        {"shot": "sh020", "color": "lime"},
        {"shot": "sh030", "color": "blue"},
    ]});
    let run = submit(&app, FRAMES, plan).await;
    let state = wait_run(&app, run).await;
    let rows = rows(&app, run).await;
    assert_eq!(state, "succeeded", "{rows:#?}");
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        ["frames", "plan", "reel", "frames.0", "frames.1", "frames.2"]
    );
    assert!(rows.iter().all(|r| r.1 == "succeeded"), "{rows:#?}");
    assert_eq!(
        rows[4].3,
        Some(json!({"shot": "sh020", "color": "lime"})),
        "each instance keeps its item"
    );
    let fanned: Option<i32> =
        sqlx::query_scalar("select fanned from run_stages where run_id = $1 and name = 'frames'")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(fanned, Some(3));
    // Every instance's frame is an output of its own, and the reel is one more.
    let outputs: Vec<String> = sqlx::query_scalar(
        "select s.name from run_outputs o join run_stages s on s.id = o.stage_id
         where o.run_id = $1 order by s.name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(outputs, ["frames.0", "frames.1", "frames.2", "reel"]);

    // The reel has the three frames in item order: red, then green, then blue.
    let reel = app
        .config
        .work()
        .join(run.to_string())
        .join("reel/out/reel.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&reel)
        .args([
            "-vf",
            "scale=1:1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pixels: Vec<usize> = out
        .stdout
        .chunks(3)
        .map(|rgb| (0..3).max_by_key(|&c| rgb[c]).unwrap())
        .collect();
    assert_eq!(pixels, [0, 1, 2], "the strongest channel of each frame");
    task.abort();
    app.stop().await;
}

const WIDE: &str = r#"name: fan-wide
title: Many instances
parameters:
  - {name: plan, type: text}
stages:
  - name: plan
    executor: langgraph
    assistant: shot_planner
  - name: shots
    executor: langgraph
    assistant: keyframe
    attempts: 1
    for_each: ${stages.plan.values.shots}
    inputs:
      prompt: ${item.prompt}
"#;

#[tokio::test]
async fn instances_share_their_executors_limit_and_a_failed_one_is_retried_alone() {
    let stand_in = Arc::new(StandIn {
        hold: Duration::from_millis(300),
        fail_index: Some(4),
        ..Default::default()
    });
    let (app, task) = app_with(stand_in.clone(), 2).await;
    let shots: Vec<Value> = (0..6)
        .map(|i| json!({"prompt": format!("shot {i}")}))
        .collect();
    let run = submit(&app, WIDE, json!({"shots": shots})).await;
    assert_eq!(wait_run(&app, run).await, "failed");
    assert!(
        stand_in.most.load(Ordering::SeqCst) <= 2,
        "the limit of two holds across instances"
    );
    let rows = rows(&app, run).await;
    let group = rows.iter().find(|r| r.0 == "shots").unwrap();
    assert_eq!(group.1, "failed", "{rows:#?}");
    let failed = rows.iter().find(|r| r.0 == "shots.4").unwrap();
    assert_eq!(failed.1, "failed");

    // Retrying the stage runs again what did not succeed, and only that.
    let (who, id) = admin(&app).await;
    let by = Submitter {
        who: &who,
        user_id: id,
        role: Role::Admin,
        token: None,
    };
    server::pipelines::runs::retry_stage(&app.pool, run, "shots", &by)
        .await
        .unwrap();
    assert_eq!(
        wait_run(&app, run).await,
        "succeeded",
        "{:#?}",
        self::rows(&app, run).await
    );
    let seen = stand_in.seen.lock().unwrap().clone();
    let mut per_index: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (index, item, attempt) in &seen {
        assert_eq!(item["prompt"], json!(format!("shot {index}")));
        per_index.entry(*index).or_default().push(*attempt);
    }
    assert_eq!(per_index.len(), 6, "{seen:?}");
    assert_eq!(per_index[&4], [1, 2], "the failed instance ran again");
    let succeeded_first: Vec<i32> = per_index
        .iter()
        .filter(|(i, _)| **i != 4)
        .filter(|(_, attempts)| attempts.len() == 1)
        .map(|(i, _)| *i)
        .collect();
    // Those that had succeeded before the failure were not run again.
    let group_progress: f32 =
        sqlx::query_scalar("select progress from run_stages where run_id = $1 and name = 'shots'")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(group_progress, 1.0);
    assert!(!succeeded_first.is_empty(), "{per_index:?}");
    task.abort();
    app.stop().await;
}

#[tokio::test]
async fn a_for_each_over_no_list_or_too_long_a_list_fails_its_stage_and_makes_no_instance() {
    let (app, task) = app_with(Arc::new(StandIn::default()), 1).await;
    let too_many: Vec<Value> = (0..10_001).map(|i| json!(i)).collect();
    for (plan, says) in [
        (
            json!({"shots": "one long shot"}),
            "is not a list; it is a text",
        ),
        (json!({"scenes": []}), "ended without that field"),
        (
            json!({ "shots": too_many }),
            "has 10001 items; at most 10000 instances may run",
        ),
    ] {
        let run = submit(&app, WIDE, plan).await;
        assert_eq!(wait_run(&app, run).await, "failed");
        let rows = rows(&app, run).await;
        assert_eq!(rows.len(), 2, "no instance was made: {rows:?}");
        let group = rows.iter().find(|r| r.0 == "shots").unwrap();
        assert_eq!(group.1, "failed");
        let message = group.2.clone().unwrap_or_default();
        assert!(message.contains(says), "{message}");
    }
    // An empty list runs nothing, and the run goes on.
    let run = submit(&app, WIDE, json!({"shots": []})).await;
    assert_eq!(wait_run(&app, run).await, "succeeded");
    let rows = rows(&app, run).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].2.as_deref(), Some("No items: nothing to run."));
    task.abort();
    app.stop().await;
}
