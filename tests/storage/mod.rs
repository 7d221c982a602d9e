//! Object storage behind a bucket URL. A test binary of its own: it sets the provider's
//! environment variables, which no other test may be reading at the same time.

use slate_tests::spawn_app_with;
use slate_tests::tus::{sha256_hex, Tus};

/// `SLATE_STORAGE=s3://…` against an S3-compatible server (moto) on loopback.
#[tokio::test]
async fn files_go_to_s3_when_the_storage_is_a_bucket_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut moto = tokio::process::Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if http
            .put(format!("{endpoint}/studio-assets"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the S3 server did not start");
    // The provider's own variables configure the store, as in production. Only this test
    // sets them, and only a bucket URL reads them.
    for (key, value) in [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(key, value);
    }
    let app = spawn_app_with(|c| c.storage = Some("s3://studio-assets/slate".into())).await;
    let tus = Tus::new(&app).await;
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let still = dir.join("still.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240",
        "-frames:v",
        "1",
        still.to_str().unwrap(),
    ]);
    let png = std::fs::read(&still).unwrap();
    let (asset, state) = tus.upload("still.png", &png).await;
    assert_eq!(state, "ready");

    let listing = http
        .get(format!("{endpoint}/studio-assets?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(&format!(
            "slate/blobs/{}/{}",
            &sha256_hex(&png)[..2],
            sha256_hex(&png)
        )),
        "{listing}"
    );
    assert!(listing.contains("/thumb.jpg</Key>"), "{listing}");
    assert!(
        !app.config.data_dir.join("storage").exists(),
        "nothing stored locally"
    );

    let whole = tus
        .client
        .get(app.url(&format!("/api/assets/{asset}/original")))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.bytes().await.unwrap().as_ref(), png.as_slice());
    let part = tus
        .client
        .get(app.url(&format!("/api/assets/{asset}/original")))
        .bearer_auth(&tus.token)
        .header("range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), b"PNG");
    let _ = moto.kill().await;
}
