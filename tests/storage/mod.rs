//! Object storage behind a bucket URL, against an S3-compatible server (moto) on
//! loopback; run in a child process, which alone has the provider's variables set.

use std::time::Duration;

use slate_tests::tus::{sha256_hex, Tus};
use slate_tests::{eventually, in_child_process, spawn_app_with};

/// `SLATE_STORAGE=s3://…`. The store takes its settings only from the provider's own
/// variables (AWS_*), as in production; setting them in this process would change them
/// under every other test, so the test proper runs in a child that has them.
#[test]
fn files_go_to_s3_when_the_storage_is_a_bucket_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    in_child_process(
        "storage::s3_with_the_providers_variables",
        &[
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
}

#[tokio::test]
#[ignore = "run by files_go_to_s3_when_the_storage_is_a_bucket_url, with AWS_* set"]
async fn s3_with_the_providers_variables() {
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT is set by the parent");
    let port = url::Url::parse(&endpoint)
        .unwrap()
        .port()
        .expect("a port in AWS_ENDPOINT");
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
    let http = reqwest::Client::new();
    eventually(
        "the S3 server to start (and make the bucket)",
        Duration::from_secs(10),
        || async {
            http.put(format!("{endpoint}/studio-assets"))
                .send()
                .await
                .map(|r| r.status())
                .map_err(|e| e.to_string())
                .and_then(|status| {
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("status {status}"))
                    }
                })
        },
    )
    .await;
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
