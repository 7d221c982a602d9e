//! tus 1.0 over raw HTTP: every protocol rule, the bad inputs that must change nothing,
//! crash and resume, and processing with real ffmpeg.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use sha2::Digest as _;
use slate_tests::{eventually, seen, spawn_app, spawn_app_with};

use slate_tests::tus::{asset_of, b64, sha256_hex, wait_processed, Tus, OCTET};

#[tokio::test]
async fn options_advertise_the_protocol_and_extensions() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let res = tus
        .client
        .request(Method::OPTIONS, app.url("/api/uploads"))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let h = res.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-resumable"], "1.0.0");
    let ext = h["tus-extension"].to_str().unwrap();
    for e in [
        "creation",
        "creation-defer-length",
        "creation-with-upload",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e} missing from {ext}");
    }
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");
    assert!(h["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > 0);
}

#[tokio::test]
async fn chunks_resume_from_the_stored_offset_and_the_file_is_stored_by_content() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let url = tus.create(data.len() as u64, "plates.bin").await;
    assert_eq!(tus.offset(&url).await, 0);
    let res = tus.patch(&url, 0, data[..100_000].to_vec()).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["upload-offset"], "100000");
    assert_eq!(tus.offset(&url).await, 100_000);
    assert_eq!(
        tus.patch(&url, 100_000, data[100_000..].to_vec())
            .await
            .status(),
        204
    );

    let asset = asset_of(&app, &url).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
    let (sha, size, kind): (String, i64, String) =
        sqlx::query_as("select sha256, size, kind from asset_versions where asset_id = $1::uuid")
            .bind(&asset)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(sha, sha256_hex(&data));
    assert_eq!(size, data.len() as i64);
    assert_eq!(kind, "other");

    // The same bytes again: a second asset, one stored blob.
    let (again, _) = tus.upload("plates-copy.bin", &data).await;
    assert_ne!(again, asset);
    let blobs = count_files(&app.config.data_dir.join("storage/blobs"));
    assert_eq!(blobs, 1, "identical bytes are stored once");

    let original = tus
        .client
        .get(app.url(&format!("/api/assets/{asset}/original")))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert_eq!(original.headers()["etag"], format!("\"{sha}\"").as_str());
    assert!(original.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("plates.bin"));
    assert_eq!(original.bytes().await.unwrap().as_ref(), data.as_slice());
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn protocol_violations_get_their_status_and_change_nothing() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(10, "ten.bin").await;

    // Wrong or missing version: 412 with the version we speak.
    let res = tus
        .client
        .patch(app.url(&url))
        .bearer_auth(&tus.token)
        .header("upload-offset", "0")
        .header("content-type", OCTET)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    assert_eq!(res.headers()["tus-version"], "1.0.0");
    let res = tus
        .client
        .head(app.url(&url))
        .bearer_auth(&tus.token)
        .header("tus-resumable", "0.2.2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    // Wrong content type.
    let res = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "0")
        .header("content-type", "text/plain")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    // Offset mismatch.
    assert_eq!(tus.patch(&url, 3, b"abc".to_vec()).await.status(), 409);
    // Past the declared length.
    assert_eq!(tus.patch(&url, 0, vec![1u8; 11]).await.status(), 413);
    assert_eq!(tus.offset(&url).await, 0, "nothing was stored");
    // Unknown ids, malformed ids.
    assert_eq!(
        tus.req(
            Method::HEAD,
            "/api/uploads/01a21702-68c3-75a1-ba8d-78af5505ad1d"
        )
        .send()
        .await
        .unwrap()
        .status(),
        404
    );
    assert_eq!(
        tus.req(Method::HEAD, "/api/uploads/not-an-id")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Bad metadata.
    let res = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "5")
        .header("upload-metadata", "filename ***")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Neither or both lengths.
    assert_eq!(
        tus.req(Method::POST, "/api/uploads")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let both = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "5")
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    assert_eq!(
        app.count("select count(*) from uploads").await,
        1,
        "no upload was created by bad requests"
    );
    // Without credentials.
    let anon = app
        .bare_client()
        .head(app.url(&url))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}

#[tokio::test]
async fn another_users_upload_is_not_found() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(10, "mine.bin").await;
    app.create_user("other@studio.test", "admin").await;
    let other = Tus {
        app: &app,
        token: app.create_token("other", "api", "other@studio.test").await,
        client: app.bare_client(),
    };
    assert_eq!(
        other.req(Method::HEAD, &url).send().await.unwrap().status(),
        404
    );
    assert_eq!(other.patch(&url, 0, b"steal".to_vec()).await.status(), 404);
    assert_eq!(
        other
            .req(Method::DELETE, &url)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(tus.offset(&url).await, 0);
}

#[tokio::test]
async fn checksums_are_verified_and_bad_chunks_discarded() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(8, "sum.bin").await;
    let good = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"abcd"));
    let res = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "0")
        .header("content-type", OCTET)
        .header("upload-checksum", format!("sha1 {good}"))
        .body("abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let wrong = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"nope"));
    let res = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "4")
        .header("content-type", OCTET)
        .header("upload-checksum", format!("sha256 {wrong}"))
        .body("efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 460);
    assert_eq!(tus.offset(&url).await, 4, "the bad chunk was discarded");
    let res = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "4")
        .header("content-type", OCTET)
        .header("upload-checksum", "md5 AAAA")
        .body("efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let right = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"efgh"));
    let res = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "4")
        .header("content-type", OCTET)
        .header("upload-checksum", format!("sha256 {right}"))
        .body("efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["upload-offset"], "8");
}

#[tokio::test]
async fn creation_with_upload_deferred_length_and_method_override() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let res = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-defer-length", "1")
        .header("content-type", OCTET)
        .body("hello ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["upload-offset"], "6");
    let url = res.headers()["location"].to_str().unwrap().to_owned();
    let head = tus.req(Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.headers()["upload-defer-length"], "1");
    let res = tus
        .req(Method::POST, &url)
        .header("x-http-method-override", "PATCH")
        .header("upload-offset", "6")
        .header("upload-length", "11")
        .header("content-type", OCTET)
        .body("world")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let head = tus.req(Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.headers()["upload-length"], "11");
    assert_eq!(head.headers()["upload-offset"], "11");
    let asset = asset_of(&app, &url).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
}

#[tokio::test]
async fn termination_and_expiry_remove_the_data() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(100, "drop.bin").await;
    assert_eq!(tus.patch(&url, 0, vec![7u8; 40]).await.status(), 204);
    assert_eq!(tus.terminate(&url).await, 204);
    assert_eq!(
        tus.req(Method::HEAD, &url).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        app.count("select count(*) from assets").await,
        0,
        "the placeholder asset went too"
    );
    assert_eq!(count_files(&app.config.data_dir.join("uploads")), 0);

    let url = tus.create(100, "late.bin").await;
    assert_eq!(tus.patch(&url, 0, vec![7u8; 40]).await.status(), 204);
    sqlx::query("update uploads set expires_at = now() - interval '1 minute'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        tus.req(Method::HEAD, &url).send().await.unwrap().status(),
        410
    );
    assert_eq!(tus.patch(&url, 40, vec![7u8; 60]).await.status(), 410);
}

#[tokio::test]
async fn partial_uploads_concatenate_into_one_asset() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let mut parts = Vec::new();
    let chunks: [&[u8]; 3] = [b"first-", b"second-", b"third"];
    for chunk in chunks {
        let res = tus
            .req(Method::POST, "/api/uploads")
            .header("upload-concat", "partial")
            .header("upload-length", chunk.len().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let url = res.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(tus.patch(&url, 0, chunk.to_vec()).await.status(), 204);
        parts.push(app.url(&url));
    }
    assert_eq!(
        app.count("select count(*) from assets").await,
        0,
        "partials are not assets"
    );
    let res = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-concat", format!("final;{}", parts.join(" ")))
        .header("upload-metadata", format!("filename {}", b64("joined.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let url = res.headers()["location"].to_str().unwrap().to_owned();
    let head = tus.req(Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.headers()["upload-concat"], "final");
    assert_eq!(head.headers()["upload-offset"], "18");
    let asset = asset_of(&app, &url).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
    let sha: String =
        sqlx::query_scalar("select sha256 from asset_versions where asset_id = $1::uuid")
            .bind(&asset)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(sha, sha256_hex(b"first-second-third"));
}

/// Slate with this maximum upload size and per-person quota, in bytes.
async fn spawn_limited(max: u64, quota: u64) -> slate_tests::TestApp {
    spawn_app_with(|c| {
        c.upload_max_bytes = max;
        c.upload_quota_bytes = quota;
    })
    .await
}

#[tokio::test]
async fn limits_on_size_and_quota_are_413_with_a_message() {
    let app = spawn_limited(1000, 1500).await;
    let tus = Tus::new(&app).await;
    let res = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "1001")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(res.text().await.unwrap().contains("maximum upload size"));
    tus.create(900, "a.bin").await;
    let res = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "900")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(res.text().await.unwrap().contains("quota"));
    assert_eq!(app.count("select count(*) from uploads").await, 1);
}

#[tokio::test]
async fn two_writers_on_one_upload_cannot_corrupt_it() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(20, "race.bin").await;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let first = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "0")
        .header("content-type", OCTET)
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let first = tokio::spawn(first);
    tx.unbounded_send(Ok(b"aaaaaaaaaa".to_vec())).unwrap();
    // Wait until the first writer holds the upload.
    eventually(
        "the first writer to hold the upload",
        Duration::from_secs(2),
        || async {
            sqlx::query_scalar::<_, bool>("select lease_until is not null from uploads")
                .fetch_one(&app.pool)
                .await
                .unwrap()
        },
    )
    .await;
    let second = tus.patch(&url, 0, b"bbbbbbbbbbbbbbbbbbbb".to_vec()).await;
    assert!(
        matches!(second.status().as_u16(), 409 | 423),
        "second writer refused: {}",
        second.status()
    );
    tx.unbounded_send(Ok(b"aaaaaaaaaa".to_vec())).unwrap();
    drop(tx);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 204);
    let asset = asset_of(&app, &url).await;
    wait_processed(&app, &asset).await;
    let sha: String = sqlx::query_scalar("select sha256 from asset_versions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(sha, sha256_hex(&[b'a'; 20]));
}

#[tokio::test]
async fn a_crash_mid_patch_keeps_what_arrived_and_the_upload_resumes() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let url = tus.create(data.len() as u64, "crash.bin").await;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let patch = tus
        .req(Method::PATCH, &url)
        .header("upload-offset", "0")
        .header("content-type", OCTET)
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let pending = tokio::spawn(patch);
    tx.unbounded_send(Ok(data[..70_000].to_vec())).unwrap();
    // The writer buffers what it receives, so the file shows nothing yet: wait for the
    // request to hold the upload, the sign that it is being received.
    eventually(
        "the PATCH to hold the upload",
        Duration::from_secs(4),
        || async {
            sqlx::query_scalar::<_, bool>("select lease_until is not null from uploads")
                .fetch_one(&app.pool)
                .await
                .unwrap()
        },
    )
    .await;
    let token = tus.token.clone();
    let config = app.kill();
    drop(tx);
    let _ = pending.await;

    let app = slate_tests::start(config).await;
    let tus = Tus {
        app: &app,
        token,
        client: app.bare_client(),
    };
    let stored = tus.offset(&url).await;
    assert_eq!(stored, 70_000, "HEAD reports the bytes actually stored");
    // The crashed request's hold on the upload lapses; clients retry until it does.
    let status = eventually(
        "the crashed request's hold to lapse",
        Duration::from_secs(30),
        || async {
            let res = tus
                .patch(&url, stored, data[stored as usize..].to_vec())
                .await;
            seen(res.status(), |s| *s != StatusCode::LOCKED)
        },
    )
    .await;
    assert_eq!(status, 204);
    let asset = asset_of(&app, &url).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
    let sha: String = sqlx::query_scalar("select sha256 from asset_versions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(sha, sha256_hex(&data));
}

#[tokio::test]
async fn video_and_images_get_media_facts_thumbnails_and_proxies() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("clip.mov");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=4:size=1280x720:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=4",
        "-c:v",
        "mpeg4",
        "-c:a",
        "pcm_s16le",
        "-shortest",
        clip.to_str().unwrap(),
    ]);
    let still = dir.join("still.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=800x600",
        "-frames:v",
        "1",
        still.to_str().unwrap(),
    ]);

    let (video, state) = tus
        .upload("shot_010.mov", &std::fs::read(&clip).unwrap())
        .await;
    assert_eq!(state, "ready");
    let (kind, probe): (String, serde_json::Value) =
        sqlx::query_as("select kind, probe from asset_versions where asset_id = $1::uuid")
            .bind(&video)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(kind, "video");
    assert_eq!(probe["width"], 1280);
    assert_eq!(probe["frame_rate"], 25.0);
    assert_eq!(probe["audio_channels"], 1);
    assert!(
        (probe["duration_seconds"].as_f64().unwrap() - 4.0).abs() < 0.2,
        "{probe}"
    );

    let thumb = tus
        .client
        .get(app.url(&format!("/api/assets/{video}/thumbnail")))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    assert!(thumb.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]));

    let proxy = tus
        .client
        .get(app.url(&format!("/api/assets/{video}/proxy")))
        .bearer_auth(&tus.token)
        .header("range", "bytes=0-1023")
        .send()
        .await
        .unwrap();
    assert_eq!(proxy.status(), 206);
    let total: u64 = proxy.headers()["content-range"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let etag = proxy.headers()["etag"].clone();
    let head = proxy.bytes().await.unwrap();
    assert_eq!(head.len(), 1024);
    assert_eq!(&head[4..8], b"ftyp", "an MP4");
    // faststart: the moov atom comes before the media data.
    let all = tus
        .client
        .get(app.url(&format!("/api/assets/{video}/proxy")))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(all.len() as u64, total);
    let moov = all.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = all.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "moov before mdat");
    let cached = tus
        .client
        .get(app.url(&format!("/api/assets/{video}/proxy")))
        .bearer_auth(&tus.token)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let beyond = tus
        .client
        .get(app.url(&format!("/api/assets/{video}/proxy")))
        .bearer_auth(&tus.token)
        .header("range", format!("bytes={total}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    let (image, state) = tus
        .upload("plate.png", &std::fs::read(&still).unwrap())
        .await;
    assert_eq!(state, "ready");
    let (kind, proxy_key): (String, Option<String>) =
        sqlx::query_as("select kind, proxy_key from asset_versions where asset_id = $1::uuid")
            .bind(&image)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(kind, "image");
    assert!(proxy_key.is_none(), "images need no proxy");
    let thumb = tus
        .client
        .get(app.url(&format!("/api/assets/{image}/thumbnail")))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);

    let anon = app
        .bare_client()
        .get(app.url(&format!("/api/assets/{image}/thumbnail")))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401, "previews only for signed-in people");
}

#[tokio::test]
async fn a_corrupt_video_fails_with_ffprobes_reason_and_nothing_else_breaks() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let mut corrupt = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec();
    corrupt.extend((0..50_000u32).map(|i| (i * 31 % 251) as u8));
    let (asset, state) = tus.upload("broken.mp4", &corrupt).await;
    assert_eq!(state, "failed");
    let failure: String = sqlx::query_scalar("select failure from assets where id = $1::uuid")
        .bind(&asset)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(failure.starts_with("ffprobe:"), "{failure}");
    assert!(
        !failure.contains(app.config.data_dir.to_str().unwrap()),
        "no server paths in messages: {failure}"
    );
    // A text file named like a video is what its bytes say.
    let (_, state) = tus
        .upload("notes.mp4", b"these are notes, not a video")
        .await;
    assert_eq!(state, "ready");
    let kinds: Vec<String> = sqlx::query_scalar("select kind from assets order by created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(kinds, ["video", "other"]);
}

/// tus-js-client, unmodified, under Node: an interrupted upload resumed from the stored
/// offset, and a parallel (concatenated) upload.
#[tokio::test]
async fn the_tus_js_client_uploads_resumes_and_uploads_in_parallel() {
    let clients = slate_tests::root().join("tests/clients");
    assert!(
        clients.join("node_modules/tus-js-client").exists(),
        "tus-js-client is not installed: npm ci --prefix tests/clients (scripts/setup test does)"
    );
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plate_v003.exr");
    let data: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();

    for mode in ["interrupt", "parallel"] {
        let out = tokio::process::Command::new("node")
            .arg(clients.join("tus-upload.mjs"))
            .arg(app.url("/api/uploads"))
            .arg(&tus.token)
            .arg(&file)
            .arg(mode)
            .output()
            .await
            .expect("node runs");
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let url = report["url"].as_str().unwrap();
        if mode == "interrupt" {
            let from = report["resumedFrom"].as_u64().unwrap();
            assert!(
                from > 0 && from < data.len() as u64,
                "resumed part-way, from {from}"
            );
        }
        let path = url::Url::parse(url).unwrap().path().to_owned();
        let asset = asset_of(&app, &path).await;
        assert_eq!(wait_processed(&app, &asset).await, "ready", "{mode}");
        let sha: String =
            sqlx::query_scalar("select sha256 from asset_versions where asset_id = $1::uuid")
                .bind(&asset)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(
            sha,
            sha256_hex(&data),
            "{mode}: the stored file is the one sent"
        );
    }
}

#[tokio::test]
async fn hostile_file_names_are_stored_safely() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let long = "x".repeat(4096);
    for name in [
        "../../etc/passwd",
        "nul\0byte\u{7}bell.txt",
        long.as_str(),
        "<script>alert(1)</script>.png",
    ] {
        let (asset, state) = tus.upload(name, b"harmless bytes").await;
        assert_eq!(state, "ready", "{name:?}");
        let stored: String = sqlx::query_scalar("select name from assets where id = $1::uuid")
            .bind(&asset)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert!(!stored.chars().any(char::is_control), "{stored:?}");
        assert!(stored.chars().count() <= 255);
        let res = tus
            .client
            .get(app.url(&format!("/api/assets/{asset}/original")))
            .bearer_auth(&tus.token)
            .send()
            .await
            .unwrap();
        let disposition = res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            !disposition.contains('/') || disposition.contains("%2F"),
            "no paths in {disposition}"
        );
    }
    // Nothing was written outside the data directory's own folders.
    assert!(!app.config.data_dir.join("etc").exists());
}

#[tokio::test]
async fn only_the_configured_kinds_are_accepted() {
    let app = spawn_app_with(|c| c.upload_kinds = "image,video".into()).await;
    let tus = Tus::new(&app).await;
    let (asset, state) = tus
        .upload(
            "weights.safetensors",
            b"\x10\0\0\0\0\0\0\0{\"a\":{\"dtype\":1}}",
        )
        .await;
    assert_eq!(state, "failed");
    let failure: String = sqlx::query_scalar("select failure from assets where id = $1::uuid")
        .bind(&asset)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(failure, "model files are not accepted here");
}

#[tokio::test]
async fn a_new_version_replaces_the_current_one_when_it_is_ready() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let (asset, _) = tus.upload("comp_v001.txt", b"first version").await;
    let res = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "14")
        .header(
            "upload-metadata",
            format!("filename {},asset {}", b64("comp_v002.txt"), b64(&asset)),
        )
        .header("content-type", OCTET)
        .body("second version")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    eventually(
        "both versions to be ready",
        Duration::from_secs(10),
        || async {
            let ready = app
                .count("select count(*) from asset_versions where state = 'ready'")
                .await;
            seen(ready, |n| *n == 2)
        },
    )
    .await;
    let (number, name): (i32, String) = sqlx::query_as(
        "select v.number, v.original_name from assets a join asset_versions v on v.id = a.current_version_id where a.id = $1::uuid",
    )
    .bind(&asset)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((number, name.as_str()), (2, "comp_v002.txt"));
    assert_eq!(
        app.count("select count(*) from assets").await,
        1,
        "a version, not a new asset"
    );
    let bad = tus
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "3")
        .header("upload-metadata", format!("asset {}", b64("not-an-id")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    app.create_user("omar@studio.test", "creator").await;
    let omar = Tus {
        app: &app,
        token: app.create_token("omar", "api", "omar@studio.test").await,
        client: app.bare_client(),
    };
    let refused = omar
        .req(Method::POST, "/api/uploads")
        .header("upload-length", "3")
        .header("upload-metadata", format!("asset {}", b64(&asset)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        403,
        "another creator cannot version someone's asset"
    );
    assert_eq!(app.count("select count(*) from asset_versions").await, 2);
}

fn mount(args: &[&str]) {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .expect("mount runs");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The partial uploads live on a 1 MiB filesystem that fills up mid-PATCH, then grows.
#[tokio::test]
#[ignore = "mounts a small tmpfs, so it needs root; scripts/test runs it when it is root (as CI is)"]
async fn a_full_disk_is_a_clear_error_and_the_upload_resumes_when_space_returns() {
    let mut config = slate_tests::test_config(&slate_tests::fresh_database().await);
    let uploads = config.data_dir.join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        uploads.to_str().unwrap(),
    ]);
    config.upload_max_bytes = 10 * 1024 * 1024;
    let app = slate_tests::start(config).await;
    let tus = Tus::new(&app).await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let url = tus.create(data.len() as u64, "too_big_for_now.bin").await;

    let res = tus.patch(&url, 0, data.clone()).await;
    assert_eq!(res.status().as_u16(), 507);
    assert!(res.text().await.unwrap().contains("out of disk space"));
    let kept = tus.offset(&url).await;
    assert!(
        kept > 0 && kept < data.len() as u64,
        "what fitted is kept: {kept}"
    );

    mount(&["-o", "remount,size=16m", uploads.to_str().unwrap()]);
    let res = tus.patch(&url, kept, data[kept as usize..].to_vec()).await;
    assert_eq!(res.status(), 204);
    let asset = asset_of(&app, &url).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
    let sha: String = sqlx::query_scalar("select sha256 from asset_versions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        sha,
        sha256_hex(&data),
        "nothing was corrupted by the failure"
    );
    app.stop().await;
    let _ = std::process::Command::new("umount").arg(&uploads).status();
}

#[tokio::test]
async fn processing_left_undone_by_a_stopped_server_is_done_by_the_next() {
    let app = spawn_app_with(|c| c.processing_workers = 0).await;
    let tus = Tus::new(&app).await;
    let url = tus.create(5, "later.txt").await;
    assert_eq!(tus.patch(&url, 0, b"later".to_vec()).await.status(), 204);
    let asset = asset_of(&app, &url).await;
    // Time a worker would need to pick it up, to show that none does (there are none).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state: String = sqlx::query_scalar("select state from assets where id = $1::uuid")
        .bind(&asset)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "processing", "nobody has processed it yet");

    let mut config = app.kill();
    config.processing_workers = 2;
    let app = slate_tests::start(config).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
}

/// Sends a PATCH with an extra header (`Upload-Length`, or a method override).
async fn patch_declaring(
    tus: &Tus<'_>,
    url: &str,
    offset: u64,
    length: u64,
    body: &[u8],
) -> reqwest::Response {
    tus.req(Method::PATCH, url)
        .header("upload-offset", offset.to_string())
        .header("upload-length", length.to_string())
        .header("content-type", OCTET)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn refusal(res: reqwest::Response) -> (StatusCode, String) {
    (res.status(), res.text().await.unwrap())
}

async fn is_deferred(tus: &Tus<'_>, url: &str) -> bool {
    let head = tus.req(Method::HEAD, url).send().await.unwrap();
    head.headers().contains_key("upload-defer-length")
        && !head.headers().contains_key("upload-length")
}

#[tokio::test]
async fn deferred_length_uploads_stop_at_the_maximum_and_the_quota() {
    let app = spawn_limited(1000, 2500).await;
    let tus = Tus::new(&app).await;

    // The maximum, whatever the request looks like; what was stored before stays.
    let url = tus.create_deferred("growing.bin").await;
    assert_eq!(tus.patch(&url, 0, vec![1u8; 600]).await.status(), 204);
    let (status, text) = refusal(tus.patch(&url, 600, vec![2u8; 600]).await).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("maximum upload size"), "{text}");
    assert!(text.contains("600 bytes stored before it are"), "{text}");
    let streamed = tus.patch_streamed(&url, 600, vec![2u8; 600]).await;
    assert_eq!(streamed.status(), 413, "a body of unknown size stops too");
    let overridden = tus
        .req(Method::POST, &url)
        .header("x-http-method-override", "PATCH")
        .header("upload-offset", "600")
        .header("content-type", OCTET)
        .body(vec![2u8; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), 413, "X-HTTP-Method-Override: PATCH");
    assert_eq!(tus.offset(&url).await, 600, "what was stored is kept");
    let (status, text) = refusal(patch_declaring(&tus, &url, 600, 1001, b"").await).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("maximum upload size"), "{text}");
    assert!(
        is_deferred(&tus, &url).await,
        "a refused length changes nothing"
    );

    // Creation with upload, a plain one and a partial one, over the maximum: refused,
    // and nothing is left behind.
    for concat in [None, Some("partial")] {
        let mut req = tus
            .req(Method::POST, "/api/uploads")
            .header("upload-defer-length", "1")
            .header("content-type", OCTET)
            .body(vec![3u8; 1001]);
        if let Some(concat) = concat {
            req = req.header("upload-concat", concat);
        }
        let (status, text) = refusal(req.send().await.unwrap()).await;
        assert_eq!(status, 413, "{concat:?}: {text}");
    }
    assert_eq!(
        app.count("select count(*) from uploads where state = 'receiving'")
            .await,
        1
    );

    // The quota: 600 held by the first upload, 1000 declared by a second.
    tus.create(1000, "declared.bin").await;
    let partial = tus
        .created(&[("upload-concat", "partial"), ("upload-defer-length", "1")])
        .await;
    let (status, text) = refusal(tus.patch(&partial, 0, vec![4u8; 901]).await).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("quota"), "{text}");
    assert_eq!(
        tus.patch_streamed(&partial, 0, vec![4u8; 901])
            .await
            .status(),
        413
    );
    assert_eq!(tus.offset(&partial).await, 0);
    assert_eq!(
        tus.patch(&partial, 0, vec![4u8; 900]).await.status(),
        204,
        "up to the quota exactly"
    );
    // Declaring 1000 for the first would need 2900 in all.
    let (status, text) = refusal(patch_declaring(&tus, &url, 600, 1000, b"").await).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("quota"), "{text}");
    assert!(is_deferred(&tus, &url).await);
    assert_eq!(tus.offset(&url).await, 600);
    // What fits is still accepted: the first upload ends at its 600 bytes.
    assert_eq!(
        patch_declaring(&tus, &url, 600, 600, b"").await.status(),
        204
    );
    let asset = asset_of(&app, &url).await;
    assert_eq!(wait_processed(&app, &asset).await, "ready");
}

#[tokio::test]
async fn deferred_length_patches_sent_at_once_stay_within_the_quota() {
    let app = spawn_app_with(|c| {
        c.upload_max_bytes = 2000;
        c.upload_quota_bytes = 3000;
        c.upload_max_pending = 0;
    })
    .await;
    let tus = Tus::new(&app).await;
    let mut urls = Vec::new();
    for i in 0..20 {
        urls.push(tus.create_deferred(&format!("at-once-{i}.bin")).await);
    }
    // Half with a Content-Length, half streamed: all at once.
    let tus = &tus;
    let sent = futures::future::join_all(urls.iter().enumerate().map(|(i, url)| async move {
        if i % 2 == 0 {
            tus.patch(url, 0, vec![5u8; 1000]).await.status()
        } else {
            tus.patch_streamed(url, 0, vec![5u8; 1000]).await.status()
        }
    }))
    .await;
    assert!(sent.iter().all(|s| *s == 204 || *s == 413), "{sent:?}");
    assert!(sent.contains(&StatusCode::NO_CONTENT), "{sent:?}");
    let mut stored = 0;
    for url in &urls {
        stored += tus.offset(url).await;
    }
    assert!(
        stored <= 3000,
        "{stored} bytes stored past a 3000-byte quota: {sent:?}"
    );
    let accepted = sent.iter().filter(|s| **s == 204).count() as u64;
    assert_eq!(
        stored,
        accepted * 1000,
        "a refused PATCH keeps none of its bytes"
    );
}

#[tokio::test]
async fn concatenation_refuses_repeated_parts_and_checks_the_final_size() {
    let app = spawn_limited(1000, 2500).await;
    let cara = Tus::as_new_user(&app, "cara@studio.test", "creator").await;
    let final_of = |parts: &[&str]| {
        let list: Vec<String> = parts.iter().map(|p| app.url(p)).collect();
        cara.req(Method::POST, "/api/uploads")
            .header("upload-concat", format!("final;{}", list.join(" ")))
            .header("upload-metadata", format!("filename {}", b64("joined.bin")))
    };

    let one = cara.partial(&[6u8; 400]).await;
    let (status, text) = refusal(final_of(&[one.as_str(); 10]).send().await.unwrap()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("more than once"), "{text}");
    let two = cara.partial(&[7u8; 400]).await;
    let three = cara.partial(&[8u8; 400]).await;
    let (status, text) = refusal(
        final_of(&[one.as_str(), two.as_str(), three.as_str()])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("maximum upload size"), "{text}");
    assert_eq!(
        app.count("select count(*) from uploads where concat = 'final'")
            .await,
        0
    );
    assert_eq!(app.count("select count(*) from assets").await, 0);

    // Finished partials hold their bytes until joined: 1200 held, and 1000 + 400 more
    // would pass 2500.
    cara.create(1000, "big.bin").await;
    let res = cara
        .post(&[("upload-concat", "partial"), ("upload-length", "400")])
        .await;
    assert_eq!(
        res.status(),
        413,
        "finished partials count toward the quota"
    );

    // Two finals of the same parts at once: one joins them, the other is refused.
    let pair = [one.as_str(), two.as_str()];
    let (a, b) = tokio::join!(final_of(&pair).send(), final_of(&pair).send());
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    // The loser is refused while the parts are being joined (409) or after (gone: 404).
    assert!(matches!(statuses, [201, 404 | 409]), "{statuses:?}");
    assert_eq!(
        app.count("select count(*) from assets").await,
        2,
        "big.bin and one joined file"
    );
    let size: i64 = app
        .count("select coalesce(sum(length), 0)::bigint from uploads where concat = 'final'")
        .await;
    assert_eq!(size, 800);

    // An admin's new version of cara's asset counts as hers: she then holds 3200 (big.bin,
    // the joined file, the new version, the last part), so joining that part is refused.
    let (joined_asset, _) = {
        let url: String =
            sqlx::query_scalar("select '/api/uploads/' || id from uploads where concat = 'final'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        let asset = asset_of(&app, &url).await;
        (asset.clone(), wait_processed(&app, &asset).await)
    };
    let admin = Tus::new(&app).await;
    let metadata = format!("filename {},asset {}", b64("v2.bin"), b64(&joined_asset));
    let v2 = admin
        .created(&[("upload-length", "1000"), ("upload-metadata", &metadata)])
        .await;
    assert_eq!(admin.patch(&v2, 0, vec![9u8; 1000]).await.status(), 204);
    let (status, text) = refusal(final_of(&[three.as_str()]).send().await.unwrap()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("quota"), "{text}");
    assert_eq!(cara.offset(&three).await, 400, "the refused part is kept");
}

#[tokio::test]
async fn pending_uploads_count_toward_the_quota_and_are_capped() {
    let app = spawn_app_with(|c| {
        c.upload_max_pending = 5;
        c.upload_quota_bytes = 2500;
    })
    .await;
    let tus = Tus::new(&app).await;
    // Thirty creations at once: five get through.
    let created =
        futures::future::join_all((0..30).map(|_| tus.post(&[("upload-defer-length", "1")]))).await;
    let mut urls = Vec::new();
    let mut refused = 0;
    for res in created {
        match res.status().as_u16() {
            201 => urls.push(res.headers()["location"].to_str().unwrap().to_owned()),
            429 => {
                assert!(res.text().await.unwrap().contains("unfinished uploads"));
                refused += 1;
            }
            other => panic!("creation answered {other}"),
        }
    }
    assert_eq!((urls.len(), refused), (5, 25));
    assert_eq!(app.count("select count(*) from uploads").await, 5);
    assert_eq!(app.count("select count(*) from assets").await, 5);
    // Cancelling one frees its place.
    assert_eq!(tus.terminate(&urls[0]).await, 204);
    tus.create(100, "next.bin").await;
    assert_eq!(tus.post(&[("upload-length", "100")]).await.status(), 429);

    // Bytes received by a deferred upload count, and so do lengths declared at once.
    assert_eq!(tus.patch(&urls[1], 0, vec![1u8; 1000]).await.status(), 204);
    assert_eq!(tus.terminate(&urls[2]).await, 204);
    assert_eq!(
        tus.post(&[("upload-length", "1401")]).await.status(),
        413,
        "1000 received + 100 declared + 1401 > 2500"
    );
    for url in &urls[3..] {
        assert_eq!(tus.terminate(url).await, 204);
    }
    let at_once =
        futures::future::join_all((0..10).map(|_| tus.post(&[("upload-length", "600")]))).await;
    let accepted = at_once.iter().filter(|r| r.status() == 201).count();
    assert_eq!(
        accepted, 2,
        "1100 held: room for two 600-byte uploads, sent at once"
    );
}

#[tokio::test]
async fn placeholders_stay_out_of_other_peoples_library() {
    let app = spawn_app().await;
    let cara = Tus::as_new_user(&app, "cara@studio.test", "creator").await;
    let url = cara.create_deferred("in-progress.mov").await;
    let asset = asset_of(&app, &url).await;
    let owner = app.client();
    let signed = app
        .login(&owner, "cara@studio.test", slate_tests::PASSWORD)
        .await;
    assert_eq!(signed.status(), 200);
    let other = app.signed_in("omar@studio.test", "creator").await;
    let admin = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let listed = |client: reqwest::Client| {
        let app = &app;
        async move {
            let res = app.call(&client, "/api/list_assets", &[]).await;
            assert_eq!(res.status(), 200);
            let page: serde_json::Value = res.json().await.unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let opened = |client: reqwest::Client| {
        let (app, asset) = (&app, &asset);
        async move {
            app.call(&client, "/api/get_asset", &[("id", asset)])
                .await
                .status()
        }
    };

    for step in ["no bytes yet", "some bytes"] {
        assert_eq!(
            listed(owner.clone()).await,
            std::slice::from_ref(&asset),
            "{step}: the owner sees it"
        );
        assert_eq!(opened(owner.clone()).await, 200);
        for client in [&other, &admin] {
            assert!(
                listed(client.clone()).await.is_empty(),
                "{step}: others do not"
            );
            assert_eq!(opened(client.clone()).await, 404, "{step}");
            let tagged = app
                .call(
                    client,
                    "/api/set_asset_tags",
                    &[("id", &asset), ("tags", "x")],
                )
                .await;
            assert_eq!(tagged.status(), 404, "{step}");
        }
        if step == "no bytes yet" {
            assert_eq!(cara.patch(&url, 0, b"frames".to_vec()).await.status(), 204);
        }
    }
    // Once the upload completes it is everyone's.
    assert_eq!(patch_declaring(&cara, &url, 6, 6, b"").await.status(), 204);
    wait_processed(&app, &asset).await;
    assert_eq!(listed(other.clone()).await, std::slice::from_ref(&asset));
    assert_eq!(opened(other).await, 200);
}

/// Starts a new version of `asset` (deferred length) and returns the creation's answer.
async fn new_version(tus: &Tus<'_>, asset: &str, name: &str) -> reqwest::Response {
    let metadata = format!("filename {},asset {}", b64(name), b64(asset));
    tus.post(&[("upload-defer-length", "1"), ("upload-metadata", &metadata)])
        .await
}

#[tokio::test]
async fn new_versions_by_the_owner_and_a_lead_at_once_get_distinct_numbers() {
    let app = spawn_app().await;
    let cara = Tus::as_new_user(&app, "cara@studio.test", "creator").await;
    let lead = Tus::as_new_user(&app, "lena@studio.test", "lead").await;
    let (asset, _) = cara.upload("shot.bin", b"first").await;
    let created = futures::future::join_all((0..16).map(|i| {
        let who = if i % 2 == 0 { &cara } else { &lead };
        new_version(who, &asset, "next.bin")
    }))
    .await;
    let statuses: Vec<u16> = created.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let numbers: Vec<i32> = sqlx::query_scalar(
        "select number from asset_versions where asset_id = $1::uuid order by number",
    )
    .bind(&asset)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(numbers, (1..=17).collect::<Vec<i32>>());
}

#[tokio::test]
async fn unfinished_new_versions_are_shown_to_their_uploader_only() {
    let app = spawn_app().await;
    let cara = Tus::as_new_user(&app, "cara@studio.test", "creator").await;
    let (asset, _) = cara.upload("shot.bin", b"first").await;
    wait_processed(&app, &asset).await;
    assert_eq!(
        new_version(&cara, &asset, "secret_v2.bin").await.status(),
        201
    );
    let owner = app.client();
    let signed = app
        .login(&owner, "cara@studio.test", slate_tests::PASSWORD)
        .await;
    assert_eq!(signed.status(), 200);
    let other = app.signed_in("omar@studio.test", "creator").await;
    let lead = app.signed_in("lee@studio.test", "lead").await;
    let detail = |client: reqwest::Client| {
        let (app, asset) = (&app, &asset);
        async move {
            let res = app.call(&client, "/api/get_asset", &[("id", asset)]).await;
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let listed = |client: reqwest::Client| {
        let app = &app;
        async move {
            let res = app.call(&client, "/api/list_assets", &[]).await;
            assert_eq!(res.status(), 200);
            let page: serde_json::Value = res.json().await.unwrap();
            page["items"][0]["pending_upload"].clone()
        }
    };
    let mine = detail(owner.clone()).await;
    assert_eq!(mine["versions"].as_array().unwrap().len(), 2);
    for client in [other, lead] {
        let seen = detail(client.clone()).await;
        assert!(seen["card"]["pending_upload"].is_null(), "{seen}");
        let versions = seen["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1, "{seen}");
        assert!(!seen.to_string().contains("secret_v2"), "{seen}");
        assert!(listed(client).await.is_null());
    }
}

#[tokio::test]
async fn termination_refuses_a_finished_upload_and_one_being_written() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let url = tus.create(9, "kept.bin").await;
    assert_eq!(
        tus.patch(&url, 0, b"all of it".to_vec()).await.status(),
        204
    );
    wait_processed(&app, &asset_of(&app, &url).await).await;
    assert_eq!(tus.terminate(&url).await, 409);
    assert_eq!(tus.offset(&url).await, 9);
    assert_eq!(
        app.count("select count(*) from asset_versions where state = 'ready'")
            .await,
        1,
        "the asset stays"
    );

    // A PATCH holds the lease: the upload is not removed under it.
    let url = tus.create(100, "busy.bin").await;
    assert_eq!(tus.patch(&url, 0, vec![1u8; 40]).await.status(), 204);
    sqlx::query("update uploads set lease_until = now() + interval '1 hour', lease_token = gen_random_uuid() where id = $1::uuid")
        .bind(url.rsplit('/').next().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(tus.terminate(&url).await, 423);
    assert_eq!(tus.offset(&url).await, 40);
    assert_eq!(app.count("select count(*) from assets").await, 2);
}
