//! The built-in transcode template end to end with the local executor and real ffmpeg:
//! an uploaded clip goes in, two MP4s come out as assets that ffprobe reads, with their
//! provenance, the logs kept, and the run settled.

use serde_json::json;
use slate_tests::spawn_app;
use slate_tests::tus::Tus;

use super::caps;

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
    let run = super::submit_as_admin(&app, &caps(), "transcode-and-proxies", params).await;
    let state = super::wait_run(&app, run).await;
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
    super::save_template(&app, &source).await;
    let stored = stored_file(&app, &video).await;
    // Several runs, so that the four stages race for the input more than once.
    for _ in 0..3 {
        let params = json!({ "source": video });
        let run = super::submit_as_admin(&app, &caps(), "probe-four-ways", params).await;
        let state = super::wait_run(&app, run).await;
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

/// Where the local store keeps an asset's current file.
async fn stored_file(app: &slate_tests::TestApp, asset: &str) -> std::path::PathBuf {
    let key: String = sqlx::query_scalar(
        "select v.blob_key from assets a join asset_versions v on v.id = a.current_version_id where a.id = $1::uuid",
    )
    .bind(asset)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.config.data_dir.join("storage").join(&key)
}

/// The states and messages of a run's stages, for a failing assertion to show.
async fn stage_messages(
    app: &slate_tests::TestApp,
    run: uuid::Uuid,
) -> Vec<(String, Option<String>)> {
    sqlx::query_as("select name, status_message from run_stages where run_id = $1")
        .bind(run)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The duration ffprobe reads in every output of a run, by asset name.
async fn output_durations(app: &slate_tests::TestApp, run: uuid::Uuid) -> Vec<(String, f64)> {
    let outputs: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select o.asset_id, a.name from run_outputs o join assets a on a.id = o.asset_id
         where o.run_id = $1 order by a.name",
    )
    .bind(run)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut durations = Vec::new();
    for (asset, name) in outputs {
        assert_eq!(
            slate_tests::tus::wait_processed(app, &asset.to_string()).await,
            "ready",
            "{name}"
        );
        let probe: serde_json::Value =
            sqlx::query_scalar("select v.probe from asset_versions v where v.asset_id = $1")
                .bind(asset)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        durations.push((name, probe["duration_seconds"].as_f64().unwrap_or(0.0)));
    }
    durations
}

/// An asset's name is never a path: an upload named to climb out of the work directory
/// leaves nothing outside it, and one named after an existing file on the host is still
/// read as the uploaded bytes (ffmpeg never opens the host's file).
#[tokio::test]
async fn an_asset_named_like_a_host_path_is_read_from_its_upload_and_writes_nothing_outside() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    // Three seconds uploaded; the host's file (named by the second upload) is one.
    let uploaded = std::fs::read(slate_tests::test_clip(&app, "three.mov", 3)).unwrap();
    let host_file = std::env::temp_dir().join(format!("slate-host-{}.mov", uuid::Uuid::now_v7()));
    std::fs::copy(slate_tests::test_clip(&app, "one.mov", 1), &host_file).unwrap();
    let escape = format!("slate-pwn-{}", uuid::Uuid::now_v7());
    let climbing = format!("{}tmp/{escape}", "../".repeat(16));
    let planted = std::path::Path::new("/tmp").join(&escape);

    for name in [climbing.as_str(), host_file.to_str().unwrap()] {
        let (video, state) = tus.upload(name, &uploaded).await;
        assert_eq!(state, "ready", "{name}");
        let params = json!({"source": video, "crf": 35, "preset": "veryfast"});
        let run = super::submit_as_admin(&app, &caps(), "transcode-and-proxies", params).await;
        let state = super::wait_run(&app, run).await;
        assert_eq!(
            state,
            "succeeded",
            "{name}: {:?}",
            stage_messages(&app, run).await
        );
        assert!(
            !planted.exists(),
            "{name}: the upload was placed outside the work directory"
        );
        let durations = output_durations(&app, run).await;
        assert_eq!(durations.len(), 2, "{durations:?}");
        for (output, duration) in &durations {
            assert!(
                (2.5..3.5).contains(duration),
                "{name}: {output} lasts {duration} s, so ffmpeg read something other than the upload"
            );
        }
    }
    let _ = std::fs::remove_file(&planted);
    let _ = std::fs::remove_file(&host_file);
    app.stop().await;
}

/// A text value is someone's too: one that names a file on the host (or climbs with
/// `..`) fails the stage with the reason, and the program never starts on it.
#[tokio::test]
async fn a_parameter_value_naming_a_host_file_fails_the_stage_with_the_reason() {
    let app = spawn_app().await;
    let host_file = std::env::temp_dir().join(format!("slate-host-{}.mov", uuid::Uuid::now_v7()));
    std::fs::copy(slate_tests::test_clip(&app, "host.mov", 1), &host_file).unwrap();
    super::save_template(
        &app,
        "name: probe-named\ntitle: Probe named\nparameters:\n  - name: file\n    type: string\nstages:\n  - name: probe\n    executor: local\n    program: ffprobe\n    attempts: 1\n    args: [\"-v\", \"error\", \"-show_format\", \"${params.file}\"]\n",
    )
    .await;
    let named = host_file.display().to_string();
    for (value, why) in [
        (named.as_str(), "names an absolute path on the host"),
        (
            "../../../../../../../../tmp/x.mov",
            "climbs out of its directory",
        ),
    ] {
        let run =
            super::submit_as_admin(&app, &caps(), "probe-named", json!({ "file": value })).await;
        assert_eq!(super::wait_run(&app, run).await, "failed", "{value}");
        let messages = stage_messages(&app, run).await;
        let message = messages[0].1.clone().unwrap_or_default();
        assert!(
            message.contains(&format!("the value of file, \"{value}\", {why}")),
            "{value}: {messages:?}"
        );
        let started: i64 = sqlx::query_scalar(
            "select count(*) from stage_logs l join stage_attempts a on a.id = l.attempt_id
             join run_stages s on s.id = a.stage_id where s.run_id = $1",
        )
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(started, 0, "{value}: ffprobe ran");
    }
    let _ = std::fs::remove_file(&host_file);
    app.stop().await;
}

/// A local stage's program runs as the stage user when Slate is root (as itself
/// otherwise), can write only in its attempt's directory (not beside it, not in the
/// run's inputs, not the stored file an input links to), and what it leaves there is
/// Slate's once it has ended.
#[tokio::test]
async fn a_local_stage_runs_unprivileged_and_writes_only_in_its_attempt_directory() {
    use std::os::unix::fs::MetadataExt as _;

    let app = slate_tests::spawn_app_with(|c| c.local_programs = "ffmpeg,ffprobe,sh".into()).await;
    let tus = Tus::new(&app).await;
    let original = std::fs::read(slate_tests::test_clip(&app, "clip.mov", 1)).unwrap();
    let (video, state) = tus.upload("plate.mov", &original).await;
    assert_eq!(state, "ready");
    // Each write outside the attempt's directory is tried; `|| true` so that a refused
    // write does not fail the stage.
    let script = [
        "id -u > ${output}/uid.txt",
        "id -G > ${output}/groups.txt",
        "touch \\\"$(dirname \\\"$PWD\\\")/escaped\\\" || true",
        "touch \\\"$(dirname \\\"$(dirname \\\"$PWD\\\")\\\")/escaped\\\" || true",
        "touch ${params.source}.escaped || true",
        "echo tampered >> ${params.source} || true",
        "echo written > ${output}/out.txt",
    ]
    .join("; ");
    let source = format!(
        "name: who-runs\ntitle: Who runs\nparameters:\n  - name: source\n    type: asset\n    kind: video\nstages:\n  - name: probe\n    executor: local\n    program: sh\n    attempts: 1\n    args: [\"-c\", \"{script}\"]\n"
    );
    super::save_template(&app, &source).await;
    let mut caps = caps();
    caps.programs.push("sh".into());
    let run = super::submit_as_admin(&app, &caps, "who-runs", json!({ "source": video })).await;
    let state = super::wait_run(&app, run).await;
    assert_eq!(state, "succeeded", "{:?}", stage_messages(&app, run).await);

    let run_dir = app.config.work().join(run.to_string());
    let out = run_dir.join("probe").join("out");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let me = nix::unistd::geteuid();
    let expected_uid = if me.is_root() {
        nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("the default stage user exists")
            .uid
    } else {
        me
    };
    assert_eq!(read("uid.txt").trim(), expected_uid.to_string());
    if me.is_root() {
        assert_ne!(read("uid.txt").trim(), "0");
        let groups = read("groups.txt");
        assert!(
            !groups.split_whitespace().any(|g| g == "0"),
            "the stage kept root's group: {groups}"
        );
    }
    assert!(
        !run_dir.join("probe").join("escaped").exists(),
        "wrote beside its attempt"
    );
    assert!(
        !run_dir.join("escaped").exists(),
        "wrote in the run's directory"
    );
    let inputs = run_dir.join("inputs");
    let written: Vec<String> = walk(&inputs)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".escaped"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(written.is_empty(), "wrote in the inputs: {written:?}");
    let stored = stored_file(&app, &video).await;
    assert!(
        std::fs::read(&stored).unwrap() == original,
        "the stage changed the stored file its input links to"
    );
    // What the stage left is Slate's now: a program still running as the stage user
    // cannot change an output after Slate kept it.
    for name in ["uid.txt", "out.txt"] {
        let meta = std::fs::metadata(out.join(name)).unwrap();
        assert_eq!(meta.uid(), me.as_raw(), "{name}");
        assert_eq!(meta.mode() & 0o022, 0, "{name} is writable by others");
    }
    app.stop().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut left = vec![dir.to_owned()];
    while let Some(dir) = left.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                left.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

/// A stage's outputs are held to the submitter's quota like an upload: a transcode whose
/// output would take them past it fails with the reason and stores nothing.
#[tokio::test]
async fn an_output_past_the_submitters_quota_fails_the_stage_and_stores_nothing() {
    // The clip is made first so that the quota can leave room for it and no more.
    let clip = std::env::temp_dir().join(format!("slate-quota-{}.mov", uuid::Uuid::now_v7()));
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=320x180:rate=25",
        "-c:v",
        "mpeg4",
        clip.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&clip).unwrap();
    let _ = std::fs::remove_file(&clip);
    let quota = bytes.len() as u64 + 1;
    let app = slate_tests::spawn_app_with(|c| c.upload_quota_bytes = quota).await;
    let tus = Tus::new(&app).await;
    let (video, state) = tus.upload("shot_030.mov", &bytes).await;
    assert_eq!(state, "ready");

    let params = json!({"source": video, "crf": 35, "preset": "veryfast"});
    let run = super::submit_as_admin(&app, &caps(), "transcode-and-proxies", params).await;
    assert_eq!(super::wait_run(&app, run).await, "failed");
    let messages = stage_messages(&app, run).await;
    let reason = format!(
        "the outputs would take {} past their quota of {quota} bytes",
        slate_tests::ADMIN_EMAIL
    );
    assert!(
        messages
            .iter()
            .any(|(_, m)| m.as_deref().is_some_and(|m| m.contains(&reason))),
        "{messages:?}"
    );
    let outputs = format!("select count(*) from run_outputs where run_id = '{run}'");
    assert_eq!(app.count(&outputs).await, 0);
    assert_eq!(app.count("select count(*) from assets").await, 1);
    app.stop().await;
}
