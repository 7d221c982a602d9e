//! The built-in transcode template end to end with the local executor and real ffmpeg:
//! an uploaded clip goes in, two MP4s come out as assets that ffprobe reads, with their
//! provenance, the logs kept, and the run settled.

use serde_json::json;
use slate_tests::spawn_app;
use slate_tests::tus::Tus;

use crate::caps;

#[tokio::test]
async fn transcode_and_proxies_runs_with_ffmpeg_and_its_outputs_become_assets() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    // With a tone too: the transcode carries audio across.
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("clip.mov");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=3:size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-c:v",
        "mpeg4",
        "-c:a",
        "pcm_s16le",
        "-shortest",
        clip.to_str().unwrap(),
    ]);
    let (video, state) = tus
        .upload("shot_020.mov", &std::fs::read(&clip).unwrap())
        .await;
    assert_eq!(state, "ready");

    let params = json!({"source": video, "crf": 30, "preset": "veryfast"});
    let run = crate::submit_as_admin(&app, &caps(), "transcode-and-proxies", params).await;
    let state = crate::wait_run(&app, run).await;
    let messages: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select name, state, status_message from run_stages where run_id = $1")
            .bind(run)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "succeeded", "{messages:?}");

    // Two outputs, processed like uploads: real MP4s ffprobe reads, with provenance.
    let outputs: Vec<(uuid::Uuid, String, serde_json::Value)> = sqlx::query_as(
        "select o.asset_id, a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id
         where o.run_id = $1 order by a.name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let names: Vec<&str> = outputs.iter().map(|o| o.1.as_str()).collect();
    assert_eq!(names, ["mezzanine.mp4", "proxy-540p.mp4"]);
    for (asset, name, provenance) in &outputs {
        assert_eq!(
            slate_tests::tus::wait_processed(&app, &asset.to_string()).await,
            "ready",
            "{name}"
        );
        let (kind, probe): (String, serde_json::Value) =
            sqlx::query_as("select v.kind, v.probe from asset_versions v where v.asset_id = $1")
                .bind(asset)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(kind, "video", "{name}");
        let duration = probe["duration_seconds"].as_f64().unwrap();
        assert!((2.5..3.5).contains(&duration), "{name}: {duration}");
        assert_eq!(provenance["template"], "transcode-and-proxies");
        assert_eq!(provenance["template_version"], 1);
        assert_eq!(provenance["params"]["crf"], 30);
        assert_eq!(provenance["inputs"][0]["asset"], video);
        assert_eq!(provenance["program"], "ffmpeg");
        assert!(provenance["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "veryfast"));
    }
    // Progress reached the end, the log was kept (tail in the database, all in storage).
    let progress: Vec<Option<f32>> =
        sqlx::query_scalar("select progress from run_stages where run_id = $1")
            .bind(run)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(progress.iter().all(|p| *p == Some(1.0)), "{progress:?}");
    let logged: i64 = app
        .count("select count(*) from stage_logs where line like 'Output #0, mp4%'")
        .await;
    assert_eq!(logged, 2);
    let keys: Vec<Option<String>> = sqlx::query_scalar(
        "select a.log_key from stage_attempts a join run_stages s on s.id = a.stage_id where s.run_id = $1",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        keys.iter()
            .all(|k| k.as_deref().is_some_and(|k| k.starts_with("logs/"))),
        "{keys:?}"
    );
    app.stop().await;
}

/// Stages of one run that read the same asset at the same moment each get the input,
/// and the stored file they were given never changes (a fetch that wrote onto a hard
/// link of the stored blob once emptied it).
#[tokio::test]
async fn stages_reading_one_input_at_once_leave_the_stored_file_untouched() {
    let app = slate_tests::spawn_app_with(|c| c.local_stages = 4).await;
    let tus = Tus::new(&app).await;
    let clip = slate_tests::test_clip(&app, "clip.mov", 1);
    let original = std::fs::read(&clip).unwrap();
    let (video, state) = tus.upload("plate.mov", &original).await;
    assert_eq!(state, "ready");
    let mut source = String::from(
        "name: probe-four-ways\ntitle: Probe four ways\nparameters:\n  - name: source\n    type: asset\n    kind: video\nstages:\n",
    );
    for i in 0..4 {
        source.push_str(&format!(
            "  - name: p{i}\n    executor: local\n    program: ffprobe\n    attempts: 1\n    args: [\"-v\", \"error\", \"-show_format\", \"${{params.source}}\"]\n"
        ));
    }
    crate::save_template(&app, &source).await;
    let key: String = sqlx::query_scalar(
        "select v.blob_key from assets a join asset_versions v on v.id = a.current_version_id where a.id = $1::uuid",
    )
    .bind(&video)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let stored = app.config.data_dir.join("storage").join(&key);
    // Several runs, so that the four stages race for the input more than once.
    for _ in 0..3 {
        let params = json!({ "source": video });
        let run = crate::submit_as_admin(&app, &caps(), "probe-four-ways", params).await;
        let state = crate::wait_run(&app, run).await;
        let messages: Vec<(String, Option<String>)> =
            sqlx::query_as("select name, status_message from run_stages where run_id = $1")
                .bind(run)
                .fetch_all(&app.pool)
                .await
                .unwrap();
        assert_eq!(state, "succeeded", "{messages:?}");
        assert!(
            std::fs::read(&stored).unwrap() == original,
            "the stored file is byte for byte what was uploaded"
        );
    }
    app.stop().await;
}
