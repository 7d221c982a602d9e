//! The keyframes-to-animatic template end to end: its ComfyUI stage against the fake
//! ComfyUI (waiting while no endpoint is healthy, then generating), its FFmpeg stage with
//! the real ffmpeg over the downloaded keyframes; and what the real ComfyUI will not do
//! on cue (a socket that drops, an endpoint dying at the moment of a cancel).

use std::time::Duration;

use serde_json::json;
use slate_tests::fake_comfy::{FakeComfy, Mode};
use slate_tests::{eventually, seen, spawn_app_with};
use sqlx::PgPool;

use super::{admin, caps};

#[tokio::test]
async fn keyframes_wait_for_an_endpoint_then_become_an_animatic() {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.comfyui_poll_ms = 100;
    })
    .await;
    let params =
        json!({"prompt": "a red fox at dawn, storyboard", "count": 2, "fps": 2, "seed": 424242});
    let run = super::submit_as_admin(&app, &caps(), "keyframes-to-animatic", params).await;

    // No endpoint yet: the stage waits and says why.
    let stage_status = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "select status_message from run_stages where run_id = $1 and name = 'keyframes'",
        )
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .unwrap_or_default()
    };
    let said = eventually(
        "the stage to say why it waits",
        Duration::from_secs(5),
        || async {
            seen(stage_status().await, |said| {
                said.contains("none is healthy")
            })
        },
    )
    .await;
    assert!(
        said.contains("Waiting for the ComfyUI endpoint: none is healthy"),
        "{said}"
    );

    // The notebook comes up: the prompt is queued, followed, its image downloaded.
    let secret = slate_tests::colab_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "k-1", &comfy.url()).await;
    let state = super::wait_run(&app, run).await;
    let stages: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select name, state, status_message from run_stages where run_id = $1")
            .bind(run)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "succeeded", "{stages:?}");

    // One prompt, with the parameters bound into the graph.
    let prompts = comfy.prompts();
    assert_eq!(prompts.len(), 1);
    let graph = &prompts[0].graph;
    assert_eq!(
        graph["6"]["inputs"]["text"],
        "a red fox at dawn, storyboard"
    );
    assert_eq!(graph["3"]["inputs"]["seed"], 424242);
    assert_eq!(graph["5"]["inputs"]["batch_size"], 2);

    // Outputs: the keyframe (an image) and the animatic (a video ffprobe reads), with
    // provenance down to the exact graph and seed.
    let outputs: Vec<(uuid::Uuid, String, serde_json::Value)> = sqlx::query_as(
        "select o.asset_id, a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id
         where o.run_id = $1 order by a.name <> 'animatic.mp4', a.name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let names: Vec<&str> = outputs.iter().map(|o| o.1.as_str()).collect();
    // A keyframe is named for its run, stage and node.
    let short = &run.simple().to_string()[24..];
    let keyframe = format!("{short}-keyframes-9-0001.png");
    assert_eq!(names, ["animatic.mp4", keyframe.as_str()]);
    for (asset, name, _) in &outputs {
        assert_eq!(
            slate_tests::tus::wait_processed(&app, &asset.to_string()).await,
            "ready",
            "{name}"
        );
    }
    let kinds: Vec<String> = sqlx::query_scalar(
        "select v.kind from run_outputs o join asset_versions v on v.id = o.version_id where o.run_id = $1 order by v.original_name <> 'animatic.mp4', v.original_name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(kinds, ["video", "image"]);
    let png = &outputs[1].2;
    assert_eq!(png["executor"], "comfyui");
    assert_eq!(png["seed"], 424242);
    assert_eq!(
        png["graph"]["4"]["inputs"]["ckpt_name"],
        "sd_xl_base_1.0.safetensors"
    );
    assert_eq!(outputs[0].2["program"], "ffmpeg");
    app.stop().await;
}

#[tokio::test]
async fn a_prompt_in_flight_when_slate_stops_is_followed_after_the_restart_not_run_twice() {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        // A long pause between looks, so that Slate stops while the prompt is in flight.
        c.comfyui_poll_ms = 5000;
        c.local_stages = 0;
    })
    .await;
    let secret = slate_tests::colab_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "r-1", &comfy.url()).await;
    eventually(
        "the endpoint to be healthy",
        Duration::from_secs(5),
        || async {
            let healthy = app
                .count("select count(*) from colab_endpoints where state = 'healthy'")
                .await;
            seen(healthy, |n| *n == 1)
        },
    )
    .await;
    let params = json!({"prompt": "a heron", "count": 1, "seed": 7});
    let run = super::submit_as_admin(&app, &caps(), "keyframes-to-animatic", params).await;
    eventually(
        "the prompt to reach ComfyUI",
        Duration::from_secs(5),
        || async { !comfy.prompts().is_empty() },
    )
    .await;
    assert_eq!(comfy.prompts().len(), 1, "queued on ComfyUI");

    // Slate stops mid-prompt; its lease lapses (made to lapse now, not in 30 s).
    let mut config = app.config.clone();
    app.stop().await;
    sqlx::query(
        "update run_stages set lease_until = now() - interval '1 second' where state = 'running'",
    )
    .execute(
        &PgPool::connect(&config.database_url.clone().unwrap())
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    config.comfyui_poll_ms = 100;
    config.local_stages = 2;
    let app = slate_tests::start(config).await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(state, "succeeded");
    assert_eq!(
        comfy.prompts().len(),
        1,
        "the prompt was followed again, not run twice"
    );
    let attempts: Vec<String> = sqlx::query_scalar(
        "select a.state from stage_attempts a join run_stages s on s.id = a.stage_id
         where s.run_id = $1 and s.name = 'keyframes' order by a.number",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts, ["lost", "succeeded"]);
    app.stop().await;
}

/// Submits keyframes (one image, no animatic needed beyond it) and returns the run.
async fn keyframes(app: &slate_tests::TestApp, seed: i64) -> uuid::Uuid {
    let params = json!({"prompt": "a lighthouse in fog", "count": 1, "fps": 1, "seed": seed});
    super::submit_as_admin(app, &caps(), "keyframes-to-animatic", params).await
}

async fn keyframes_stage(
    app: &slate_tests::TestApp,
    run: uuid::Uuid,
) -> (Option<f32>, String, Option<String>) {
    sqlx::query_as::<_, (Option<f32>, Option<String>, Option<String>)>(
        "select progress, status_message, preview_type from run_stages where run_id = $1 and name = 'keyframes'",
    )
    .bind(run)
    .fetch_one(&app.pool)
    .await
    .map(|(p, m, t)| (p, m.unwrap_or_default(), t))
    .unwrap()
}

#[tokio::test]
async fn steps_and_the_last_image_come_over_the_socket_and_a_dropped_socket_falls_back_to_polling()
{
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.comfyui_poll_ms = 100;
    })
    .await;
    let secret = slate_tests::colab_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "k-1", &comfy.url()).await;

    // Held before its last step: the socket's steps and preview are on the stage.
    comfy.hold();
    let run = keyframes(&app, 7).await;
    let stage = eventually(
        "step 3 and its preview",
        Duration::from_secs(10),
        || async {
            seen(keyframes_stage(&app, run).await, |stage| {
                stage.1.contains("step 3 of 4") && stage.2.is_some()
            })
        },
    )
    .await;
    assert_eq!(
        stage.1, "Generating on ComfyUI: node 3 (KSampler), step 3 of 4.",
        "the node at work, by its title: {stage:?}"
    );
    let progress = stage.0.unwrap();
    assert!((progress - 0.725).abs() < 0.01, "{progress}");
    assert_eq!(stage.2.as_deref(), Some("image/png"), "the preview frame");
    let attempt: uuid::Uuid = sqlx::query_scalar(
        "select a.id from stage_attempts a join run_stages s on s.id = a.stage_id where s.run_id = $1 and s.name = 'keyframes'",
    )
    .bind(run)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        comfy.sockets_opened().contains(&attempt.to_string()),
        "the socket was opened with the attempt as client id"
    );
    // The preview is served to people who can see the run.
    let cleo = app.signed_in("cleo@studio.test", "creator").await;
    let res = cleo
        .get(app.url(&format!("/api/runs/{run}/stages/keyframes/preview")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert!(res.bytes().await.unwrap().starts_with(b"\x89PNG"));
    comfy.release();
    assert_eq!(super::wait_run(&app, run).await, "succeeded");

    // The socket drops after two frames: the stage still ends, through the history.
    comfy.drop_sockets_after(2);
    let run = keyframes(&app, 8).await;
    assert_eq!(super::wait_run(&app, run).await, "succeeded");
    let outputs = app
        .count(&format!(
            "select count(*) from run_outputs where run_id = '{run}'"
        ))
        .await;
    assert_eq!(outputs, 2, "the keyframe and the animatic");
    app.stop().await;
}

#[tokio::test]
async fn an_img2img_stage_uploads_its_image_and_binds_the_name_comfyui_gave_it() {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.comfyui_poll_ms = 100;
    })
    .await;
    let secret = slate_tests::colab_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "k-1", &comfy.url()).await;
    // A board frame in the library.
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let board = dir.join("board.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x180",
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
  - name: prompt
    type: text
stages:
  - name: restyle
    executor: comfyui
    workflow: img2img
    attempts: 1
    inputs:
      image: ${params.board}
      prompt: ${params.prompt}
      denoise: 0.45
"#;
    super::save_template(&app, source).await;
    let (who, _) = admin(&app).await;
    // An img2img stage whose image is not an image parameter is refused, with its line.
    let wrong = source.replace("image: ${params.board}", "image: ${params.prompt}");
    let refused = server::pipelines::store::save(&app.pool, &who, &wrong, false).await;
    assert!(
        format!("{refused:?}")
            .contains("input \\\"image\\\" loads image files in node 10 (LoadImage)"),
        "{refused:?}"
    );
    let params = json!({"board": image, "prompt": "charcoal sketch"});
    let run = super::submit_as_admin(&app, &caps(), "restyle-board", params).await;
    assert_eq!(super::wait_run(&app, run).await, "succeeded");
    let uploads: Vec<serde_json::Value> = comfy
        .controls()
        .into_iter()
        .filter(|(path, _)| path == "/upload/image")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let name = uploads[0]["name"].as_str().unwrap();
    assert!(name.ends_with("board_012.png"), "{name}");
    assert!(
        uploads[0]["bytes"].as_u64().unwrap() > bytes.len() as u64,
        "the whole image went up"
    );
    let graph = &comfy.prompts()[0].graph;
    assert_eq!(graph["10"]["class_type"], "LoadImage");
    assert_eq!(graph["10"]["inputs"]["image"], name);
    assert_eq!(graph["3"]["inputs"]["denoise"], 0.45);
    assert_eq!(graph["3"]["inputs"]["latent_image"], json!(["11", 0]));
    app.stop().await;
}

/// A one-stage, one-attempt generation (so a failure is final at once).
const ONE_SHOT: &str = r#"name: one-shot
title: One shot
parameters:
  - name: prompt
    type: text
stages:
  - name: keyframes
    executor: comfyui
    workflow: txt2img
    attempts: 1
    inputs:
      prompt: ${params.prompt}
"#;

async fn one_shot(app: &slate_tests::TestApp, prompt: &str) -> uuid::Uuid {
    super::save_template(app, ONE_SHOT).await;
    super::submit_as_admin(app, &caps(), "one-shot", json!({ "prompt": prompt })).await
}

#[tokio::test]
async fn a_comfyui_error_fails_the_stage_with_its_message_and_an_endpoint_that_dies_mid_run_is_waited_out(
) {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.comfyui_poll_ms = 100;
    })
    .await;
    let secret = slate_tests::colab_secret(&app).await;
    let first = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "k-1", &first.url()).await;

    // ComfyUI's execution_error (a node out of GPU memory): the stage fails, saying so.
    let run = one_shot(&app, "Broken").await;
    assert_eq!(super::wait_run(&app, run).await, "failed");
    let (_, message, _) = keyframes_stage(&app, run).await;
    assert!(message.contains("CUDA out of memory"), "{message}");

    // The runtime dies mid-prompt: the stage waits, saying why, then a new endpoint comes
    // up and the prompt is queued there and finishes.
    first.hold();
    let run = one_shot(&app, "a harbour at night").await;
    eventually(
        "step 3 on the first runtime",
        Duration::from_secs(10),
        || async {
            seen(keyframes_stage(&app, run).await.1, |said| {
                said.contains("step 3 of 4")
            })
        },
    )
    .await;
    first.kill();
    let said = eventually(
        "the stage to wait for an endpoint",
        Duration::from_secs(10),
        || async {
            seen(keyframes_stage(&app, run).await.1, |said| {
                said.contains("Waiting for the ComfyUI endpoint")
            })
        },
    )
    .await;
    assert!(said.contains("Waiting for the ComfyUI endpoint"), "{said}");
    let second = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "k-2", &second.url()).await;
    assert_eq!(super::wait_run(&app, run).await, "succeeded");
    assert_eq!(
        second.prompts().len(),
        1,
        "queued again on the new endpoint"
    );
    assert_eq!(
        first.prompts().len(),
        2,
        "the first held the failed and the lost one"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_that_does_not_reach_comfyui_is_reported_not_dropped() {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.comfyui_poll_ms = 100;
    })
    .await;
    let secret = slate_tests::colab_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    slate_tests::colab_up(&app, &secret, "k-1", &comfy.url()).await;
    comfy.hold();
    let run = keyframes(&app, 11).await;
    eventually("step 3", Duration::from_secs(10), || async {
        seen(keyframes_stage(&app, run).await.1, |said| {
            said.contains("step 3 of 4")
        })
    })
    .await;
    // The tunnel dies just as the run is cancelled: ComfyUI cannot be told.
    comfy.set_mode(Mode::Cloudflare(530));
    let (who, id) = admin(&app).await;
    let by = server::pipelines::runs::Submitter {
        who: &who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    };
    server::pipelines::runs::cancel(&app.pool, run, &by)
        .await
        .unwrap();
    let (state, message): (String, String) = eventually(
        "the stage to stop",
        Duration::from_secs(30),
        || async {
            let row: (String, Option<String>) = sqlx::query_as(
                "select state, status_message from run_stages where run_id = $1 and name = 'keyframes'",
            )
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
            seen((row.0, row.1.unwrap_or_default()), |r| r.0 != "running")
        },
    )
    .await;
    assert_eq!(state, "failed", "{message}");
    assert!(
        message.contains("Cancelled in Slate, but the cancel did not reach ComfyUI")
            && message.contains("tunnel is gone")
            && message.contains("may still be running"),
        "{message}"
    );
    assert_eq!(super::run_state(&app, run).await, "cancelled");
    comfy.release();
    app.stop().await;
}
