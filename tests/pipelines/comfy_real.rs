//! The ComfyUI executor against the real ComfyUI (0.3.64 on CPU, the tiny SD1.5
//! checkpoint; `slate_tests::comfyui_peer`): the built-in keyframes template and img2img
//! with a real upload at 64×64 and 1–2 steps, cancel of a running and of a pending
//! prompt behind a `/queue` over 1 MiB, an interrupt pressed in ComfyUI's own page, a
//! workflow ComfyUI refuses, and ComfyUI killed mid-prompt and started again behind the
//! same URL. Slate runs in-process, its Colab endpoint pointed at the real instance.

use std::time::Duration;

use serde_json::json;
use slate_tests::comfyui_peer::{self, ComfyPeer, CHECKPOINT};
use slate_tests::{eventually, seen, spawn_app_with, TestApp};
use uuid::Uuid;

use super::{admin, caps};

/// ComfyUI on two shared cores is slow, and everything else builds beside it: a prompt
/// of a few steps at 64×64 takes 1–25 s, a start 5–30 s.
const PROMPT: Duration = Duration::from_secs(240);
const START: Duration = Duration::from_secs(180);
/// What the monitor needs to mark a dead endpoint down at one check a second.
const DOWN: Duration = Duration::from_secs(60);

/// Slate with its ComfyUI endpoint on `peer` (verified and healthy), checking its health
/// every second.
pub(super) async fn slate_on(
    peer: &ComfyPeer,
    adjust: impl FnOnce(&mut server::config::Config),
) -> TestApp {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 60;
        c.colab_check_seconds = 1;
        c.comfyui_poll_ms = 200;
        c.comfyui_prompts = 4;

        adjust(c);
    })
    .await;
    let secret = slate_tests::colab_secret(&app).await;
    slate_tests::colab_up(&app, &secret, "real-1", &peer.url()).await;
    eventually("the real ComfyUI to be verified", START, || async {
        let state: Option<String> = sqlx::query_scalar(
            "select state from colab_endpoints order by received_at desc limit 1",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        seen(state, |s| s.as_deref() == Some("healthy"))
    })
    .await;
    app
}

/// A one-stage generation with its size and steps as parameters.
fn one_stage(name: &str, workflow: &str, attempts: u32) -> String {
    format!(
        r#"name: {name}
title: {name}
parameters:
  - name: prompt
    type: text
  - name: size
    type: integer
  - name: steps
    type: integer
  - name: seed
    type: seed
stages:
  - name: keyframes
    executor: comfyui
    workflow: {workflow}
    attempts: {attempts}
    inputs:
      prompt: ${{params.prompt}}
      width: ${{params.size}}
      height: ${{params.size}}
      steps: ${{params.steps}}
      seed: ${{params.seed}}
"#
    )
}

/// Saves the one-stage template and submits it.
async fn generate(app: &TestApp, attempts: u32, size: u32, steps: u32, seed: u64) -> Uuid {
    let name = format!("gen-{attempts}");
    super::save_template(app, &one_stage(&name, "txt2img", attempts)).await;
    let params = json!({"prompt": "a lighthouse", "size": size, "steps": steps, "seed": seed});
    super::submit_as_admin(app, &caps(), &name, params).await
}

/// A seed no other run uses (an identical graph is answered from ComfyUI's cache,
/// without a new image): random, below the templates' largest seed (2^53 − 1).
pub(super) fn fresh_seed() -> u64 {
    // The low 64 bits of a v7 id are random but for the 2 variant bits.
    (Uuid::now_v7().as_u128() as u64) >> 11
}

/// The stage's state, message and bar.
async fn stage(app: &TestApp, run: Uuid) -> (String, String, Option<f32>) {
    sqlx::query_as::<_, (String, Option<String>, Option<f32>)>(
        "select state, status_message, progress from run_stages where run_id = $1 and name = 'keyframes'",
    )
    .bind(run)
    .fetch_one(&app.pool)
    .await
    .map(|(s, m, p)| (s, m.unwrap_or_default(), p))
    .unwrap()
}

/// The attempts of the stage: (state, error, the prompt id ComfyUI gave it).
async fn attempts(app: &TestApp, run: Uuid) -> Vec<(String, Option<String>, Option<String>)> {
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select a.state, a.error, a.executor_ref from stage_attempts a join run_stages s on s.id = a.stage_id
         where s.run_id = $1 and s.name = 'keyframes' order by a.number",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(state, error, reference)| {
            let prompt = reference
                .as_deref()
                .and_then(|r| r.strip_prefix("comfyui "))
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned);
            (state, error, prompt)
        })
        .collect()
}

/// The step a stage's message names ("Generating on ComfyUI: step 3 of 100.").
fn step_of(message: &str) -> Option<u32> {
    message
        .split("step ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Waits until the stage's current attempt has queued its prompt and the sampler has
/// made `step` steps; returns the prompt id, and every bar position seen on the way.
async fn at_step(app: &TestApp, run: Uuid, step: u32) -> (String, Vec<f32>) {
    let bars = std::cell::RefCell::new(Vec::<f32>::new());
    eventually(&format!("step {step} of run {run}"), PROMPT, || async {
        let (state, message, bar) = stage(app, run).await;
        if let Some(bar) = bar {
            let mut bars = bars.borrow_mut();
            if bars.last() != Some(&bar) {
                bars.push(bar);
            }
        }
        seen((state, message), |(_, m)| {
            step_of(m).is_some_and(|n| n >= step)
        })
    })
    .await;
    let prompt = attempts(app, run)
        .await
        .last()
        .and_then(|a| a.2.clone())
        .expect("the attempt recorded its prompt");
    (prompt, bars.into_inner())
}

async fn cancel(app: &TestApp, run: Uuid) {
    let (who, id) = admin(app).await;
    let by = server::pipelines::runs::Submitter {
        who: &who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    };
    server::pipelines::runs::cancel(&app.pool, run, &by)
        .await
        .unwrap();
}

/// Waits until the stage no longer runs (a cancel is asked for, then carried out);
/// returns how it ended.
async fn stopped(app: &TestApp, run: Uuid) -> (String, String, Option<f32>) {
    eventually(
        &format!("the stage of run {run} to stop"),
        PROMPT,
        || async { seen(stage(app, run).await, |s| s.0 != "running") },
    )
    .await
}

/// A PNG's width and height, from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (word(16), word(20))
}

/// The files of a run's outputs, by asset name: (name, its bytes, its provenance).
async fn outputs(app: &TestApp, run: Uuid) -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let rows: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "select o.asset_id, a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id
         where o.run_id = $1 order by a.name <> 'animatic.mp4', a.name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let client = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let mut out = Vec::new();
    for (asset, name, provenance) in rows {
        let res = client
            .get(app.url(&format!("/api/assets/{asset}/original")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{name}");
        out.push((name, res.bytes().await.unwrap().to_vec(), provenance));
    }
    out
}

#[tokio::test]
async fn comfy_real_the_keyframes_template_renders_small_keyframes_and_an_animatic() {
    let peer = comfyui_peer::shared().await;
    let app = slate_on(peer, |_| {}).await;
    let seed = fresh_seed();
    let params = json!({"prompt": "a red fox at dawn", "count": 2, "fps": 2, "seed": seed,
        "width": 64, "height": 64, "steps": 2});
    let run = super::submit_as_admin(&app, &caps(), "keyframes-to-animatic", params).await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(
        state,
        "succeeded",
        "{:?}\n{}",
        stage(&app, run).await,
        peer.log_tail()
    );

    let outputs = outputs(&app, run).await;
    let names: Vec<&str> = outputs.iter().map(|o| o.0.as_str()).collect();
    let short = &run.simple().to_string()[24..];
    let keyframes = [1, 2].map(|n| format!("{short}-keyframes-9-000{n}.png"));
    assert_eq!(
        names,
        ["animatic.mp4", keyframes[0].as_str(), keyframes[1].as_str()]
    );
    for (name, bytes, provenance) in &outputs[1..] {
        assert_eq!(
            png_size(bytes),
            (64, 64),
            "{name}: the size the run asked for"
        );
        assert_eq!(provenance["graph"]["3"]["inputs"]["steps"], 2, "{name}");
        assert_eq!(provenance["graph"]["4"]["inputs"]["ckpt_name"], CHECKPOINT);
        assert_eq!(provenance["seed"], seed);
    }
    assert_ne!(
        outputs[1].1, outputs[2].1,
        "two keyframes of one batch differ"
    );
    assert!(outputs[0].1.len() > 100, "the animatic has frames");
    // ComfyUI wrote them under the stage's prefix.
    let prefix = outputs[1].2["graph"]["9"]["inputs"]["filename_prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    let written = std::fs::read_dir(peer.state().join("output"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with(&prefix))
        .count();
    assert_eq!(written, 2, "{prefix}");
    let (_, _, bar) = stage(&app, run).await;
    assert_eq!(bar, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_img2img_uploads_a_real_image_and_restyles_it() {
    let peer = comfyui_peer::shared().await;
    let app = slate_on(peer, |_| {}).await;
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let board = dir.join("board.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64",
        "-frames:v",
        "1",
        board.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&board).unwrap();
    let (image, state) = slate_tests::tus::Tus::new(&app)
        .await
        .upload("board_012.png", &bytes)
        .await;
    assert_eq!(state, "ready");
    let source = r#"name: restyle-board
title: Restyle a board
parameters:
  - name: board
    type: asset
    kind: image
  - name: seed
    type: seed
stages:
  - name: keyframes
    executor: comfyui
    workflow: img2img
    attempts: 1
    inputs:
      image: ${params.board}
      prompt: charcoal sketch
      steps: 2
      seed: ${params.seed}
      denoise: 0.5
"#;
    super::save_template(&app, source).await;
    let run = super::submit_as_admin(
        &app,
        &caps(),
        "restyle-board",
        json!({"board": image, "seed": fresh_seed()}),
    )
    .await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(
        state,
        "succeeded",
        "{:?}\n{}",
        stage(&app, run).await,
        peer.log_tail()
    );

    // The board went up whole, under the name the graph's LoadImage read.
    let outputs = outputs(&app, run).await;
    assert_eq!(outputs.len(), 1);
    let graph = &outputs[0].2["graph"];
    let name = graph["10"]["inputs"]["image"].as_str().unwrap().to_owned();
    assert!(name.ends_with("board_012.png"), "{name}");
    let uploaded = std::fs::read(peer.state().join("input").join(&name)).unwrap();
    assert_eq!(uploaded, bytes, "ComfyUI holds the exact image");
    assert_eq!(
        png_size(&outputs[0].1),
        (64, 64),
        "encoded from the 64×64 board"
    );
    assert_eq!(graph["3"]["inputs"]["denoise"], 0.5);
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_a_refused_workflow_fails_at_once_with_comfyuis_own_words() {
    let peer = comfyui_peer::shared().await;
    let app = slate_on(peer, |_| {}).await;
    // Every node and model is there (pre-flight passes), but nothing saves: ComfyUI
    // answers 400 prompt_no_outputs.
    let graph = json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}}
    });
    let (who, _) = super::admin(&app).await;
    let bindings: Vec<app::comfyui::workflow::Binding> = serde_json::from_value(json!([
        {"name": "prompt", "node": "6", "input": "text", "type": "text"}
    ]))
    .unwrap();
    server::comfyui::workflows::store::save(
        &app.pool,
        &who,
        server::comfyui::workflows::store::New {
            name: "no-outputs",
            title: "No outputs",
            description: None,
            graph: graph.as_object().unwrap(),
            bindings: &bindings,
            origin: "json",
        },
    )
    .await
    .unwrap();
    super::save_template(
        &app,
        "name: refused\ntitle: refused\nparameters:\n  - {name: prompt, type: text}\nstages:\n  - name: keyframes\n    executor: comfyui\n    workflow: no-outputs\n    inputs:\n      prompt: ${params.prompt}\n",
    )
    .await;
    let run = super::submit_as_admin(&app, &caps(), "refused", json!({"prompt": "x"})).await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(state, "failed");
    let (_, message, _) = stage(&app, run).await;
    assert!(
        message.contains("Prompt has no outputs"),
        "ComfyUI's words: {message}"
    );
    let tried = attempts(&app, run).await;
    assert_eq!(tried.len(), 1, "a refusal is final, not retried: {tried:?}");
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_cancel_stops_a_pending_prompt_behind_a_large_queue_and_a_running_one() {
    let peer = comfyui_peer::shared().await;
    let app = slate_on(peer, |_| {}).await;
    // A long prompt (100 steps) runs; the bar moves with its steps, only forward.
    let long = generate(&app, 1, 64, 100, fresh_seed()).await;
    let (running, bars) = at_step(&app, long, 2).await;
    assert!(
        bars.windows(2).all(|w| w[0] <= w[1]),
        "the bar only moves forward: {bars:?}"
    );

    // Another client queues five 250 KB graphs behind it: /queue is now over 1 MiB.
    let mut heavy = Vec::new();
    for color in 0..5 {
        heavy.push(peer.submit(comfyui_peer::heavy_graph(250_000, color)).await);
    }
    let queue_bytes = peer.get("/queue").await.len();
    assert!(queue_bytes > 1024 * 1024, "/queue is {queue_bytes} bytes");
    eprintln!("the real /queue with five 250 KB graphs queued: {queue_bytes} bytes");

    // A second run's prompt waits behind them; the stage says so (it reads the queue).
    let pending_run = generate(&app, 1, 64, 1, fresh_seed()).await;
    let said = eventually("the second prompt to be queued", PROMPT, || async {
        seen(stage(&app, pending_run).await.1, |m| {
            m == "Queued on ComfyUI."
        })
    })
    .await;
    assert_eq!(said, "Queued on ComfyUI.");
    let pending = attempts(&app, pending_run).await[0].2.clone().unwrap();
    assert!(
        peer.queue().await.1.contains(&pending),
        "pending on ComfyUI"
    );

    // Cancelled: it leaves ComfyUI's queue and never runs.
    cancel(&app, pending_run).await;
    let (state, message, _) = stopped(&app, pending_run).await;
    assert_eq!(state, "cancelled", "{message}");
    let (queue_running, queue_pending) = peer.queue().await;
    assert!(
        !queue_pending.contains(&pending) && !queue_running.contains(&pending),
        "the prompt left ComfyUI's queue: {pending} in {queue_running:?} {queue_pending:?}; {:?}",
        attempts(&app, pending_run).await
    );

    // The running one: interrupted on ComfyUI, the stage cancelled.
    cancel(&app, long).await;
    let (state, message, _) = stopped(&app, long).await;
    assert_eq!(state, "cancelled", "{message}");
    let history = eventually("the interrupt in ComfyUI's history", PROMPT, || async {
        seen(peer.history(&running).await, |h| h.get(&running).is_some())
    })
    .await;
    let messages = history[&running]["status"]["messages"].to_string();
    assert!(messages.contains("execution_interrupted"), "{messages}");
    assert!(
        history[&running]["outputs"]
            .as_object()
            .is_none_or(|o| o.is_empty()),
        "stopped before it wrote an image"
    );
    // The pending one never ran.
    assert_eq!(peer.history(&pending).await, json!({}));

    peer.post("/queue", &json!({"delete": heavy})).await;
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_an_interrupt_from_comfyuis_own_page_ends_the_stage_saying_so_without_a_retry() {
    let peer = comfyui_peer::shared().await;
    let app = slate_on(peer, |_| {}).await;
    let run = generate(&app, 3, 64, 100, fresh_seed()).await;
    let (prompt, _) = at_step(&app, run, 2).await;
    // The Cancel button of ComfyUI's page: POST /interrupt from another client.
    peer.post("/interrupt", &json!({ "prompt_id": prompt }))
        .await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(state, "failed");
    let (_, message, _) = stage(&app, run).await;
    assert!(
        message.contains("Interrupted in ComfyUI, not by Slate")
            && message.contains("node 3 (KSampler)"),
        "the stage says who stopped it: {message}"
    );
    let tried = attempts(&app, run).await;
    assert_eq!(tried.len(), 1, "no automatic retry: {tried:?}");
    let (running, pending) = peer.queue().await;
    assert!(
        running.iter().chain(&pending).all(|p| *p != prompt),
        "nothing of it is on ComfyUI any more"
    );
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_comfyui_killed_mid_prompt_and_started_again_behind_the_same_url_runs_it_again()
{
    let peer = comfyui_peer::private().await;
    let app = slate_on(&peer, |_| {}).await;
    let run = generate(&app, 1, 64, 20, fresh_seed()).await;
    let (first, _) = at_step(&app, run, 2).await;

    // Killed as the OOM killer does: the monitor marks it down, the stage waits.
    peer.kill().await;
    eventually("the endpoint to be marked down", DOWN, || async {
        let down = app
            .count("select count(*) from colab_endpoints where state = 'down'")
            .await;
        seen(down, |n| *n == 1)
    })
    .await;
    let said = eventually("the stage to wait for the endpoint", DOWN, || async {
        seen(stage(&app, run).await.1, |m| {
            m.contains("Waiting for the ComfyUI endpoint")
        })
    })
    .await;
    assert!(said.contains("Waiting for the ComfyUI endpoint"), "{said}");

    // Started again behind the same URL: the endpoint comes back, the prompt is queued
    // again there (ComfyUI forgot it) and finishes, in the same attempt.
    peer.start().await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(
        state,
        "succeeded",
        "{:?}\n{}",
        stage(&app, run).await,
        peer.log_tail()
    );
    let tried = attempts(&app, run).await;
    assert_eq!(tried.len(), 1, "{tried:?}");
    let second = tried[0].2.clone().unwrap();
    assert_ne!(second, first, "a new prompt on the restarted ComfyUI");
    assert!(peer.history(&second).await.get(&second).is_some());
    let urls: Vec<(String, String)> =
        sqlx::query_as("select url, state from colab_endpoints order by received_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        urls,
        [(peer.url(), "down".into()), (peer.url(), "healthy".into())],
        "the same URL came back"
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.endpoint_back'")
            .await,
        1
    );
    app.stop().await;
}
