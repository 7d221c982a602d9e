//! The built-in template "story to animatic" end to end against the real peers: the real
//! shot planner on a real LangGraph server plans the shots, the real ComfyUI draws one
//! small keyframe per shot (fan-out: one stage instance each), and FFmpeg assembles them
//! in shot order.

use serde_json::{json, Value};
use server::pipelines::Capabilities;
use slate_tests::{comfyui_peer, langgraph_peer};

use super::comfy_real::{fresh_seed, slate_on};

#[tokio::test]
async fn comfy_real_langgraph_story_to_animatic_plans_draws_one_keyframe_per_shot_and_assembles_them(
) {
    let comfy = comfyui_peer::shared().await;
    let planner = langgraph_peer::shared().await;
    let app = slate_on(comfy, |c| {
        c.langgraph_url = Some(planner.url());
        c.langgraph_token = Some(langgraph_peer::TOKEN.into());
    })
    .await;
    let caps = Capabilities {
        programs: vec!["ffmpeg".into(), "ffprobe".into()],
        langgraph: true,
        ..Default::default()
    };
    let story = "A lighthouse keeper climbs the stairs at dusk. \
                 The lamp will not light. \
                 A storm rolls in over the black sea.";
    let params = json!({"story": story, "shots": 8, "style": "pencil storyboard",
        "seed": fresh_seed(), "width": 64, "height": 64, "steps": 1, "seconds": 1});
    let run = super::submit_as_admin(&app, &caps, "story-to-animatic", params).await;
    let state = super::wait_run(&app, run).await;
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select name, state, status_message from run_stages where run_id = $1 order by name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(state, "succeeded", "{rows:#?}\n{}", comfy.log_tail());

    // The planner made three shots, one per sentence, and kept them as the plan's values.
    let values: Value = sqlx::query_scalar(
        "select stage_values from run_stages where run_id = $1 and name = 'plan'",
    )
    .bind(run)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let shots = values["shots"].as_array().expect("a list of shots").clone();
    let names: Vec<&str> = shots.iter().map(|s| s["shot"].as_str().unwrap()).collect();
    assert_eq!(names, ["sh010", "sh020", "sh030"], "{values}");
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "animatic",
            "keyframes",
            "keyframes.0",
            "keyframes.1",
            "keyframes.2",
            "plan"
        ]
    );

    // Each instance drew its own shot's prompt, and its keyframe is an asset of its own.
    let keyframes: Vec<(String, Value)> = sqlx::query_as(
        "select s.name, o.provenance from run_outputs o join run_stages s on s.id = o.stage_id
         where o.run_id = $1 and s.fan_of = 'keyframes' order by s.item_index",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(keyframes.len(), 3, "{keyframes:?}");
    for ((stage, provenance), shot) in keyframes.iter().zip(&shots) {
        assert_eq!(
            provenance["graph"]["6"]["inputs"]["text"], shot["prompt"],
            "{stage} drew its shot"
        );
        assert_eq!(provenance["graph"]["5"]["inputs"]["width"], 64);
    }

    // The animatic holds each of the three keyframes for a second.
    let animatic = app
        .config
        .work()
        .join(run.to_string())
        .join("animatic/out/animatic.mp4");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&animatic)
        .output()
        .unwrap();
    let seconds: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!((2.5..=3.5).contains(&seconds), "{seconds} s");
    let gathered = std::fs::read_dir(
        app.config
            .work()
            .join(run.to_string())
            .join("keyframes/out"),
    )
    .unwrap()
    .flatten()
    .map(|f| f.file_name().to_string_lossy().into_owned())
    .filter(|n| n.ends_with(".png"))
    .count();
    assert_eq!(gathered, 3);
    app.stop().await;
}
