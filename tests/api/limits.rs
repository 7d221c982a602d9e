//! Limits that hold on every way in: one body limit for every JSON and form route, bad
//! characters refused as bad input (never a server error), a deadline for reading headers,
//! and a cap on the live event streams one session holds.

use std::time::Duration;

use slate_tests::{eventually, seen, spawn_app, ADMIN_EMAIL};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::access::raw;

#[tokio::test]
async fn json_and_form_bodies_over_the_limit_are_refused_on_every_route() {
    let app = spawn_app().await;
    let token = app.create_token("script", "api", ADMIN_EMAIL).await;
    let big = "x".repeat(app.config.max_body_bytes + 1);
    let script = app.bare_client();
    let before = app.count("select count(*) from runs").await;

    // The runs API (its own router), with and without a declared length.
    let res = script
        .post(app.url("/api/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "template": "transcode", "params": { "note": big } }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        413,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let chunks = futures::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 8192]))),
    );
    let res = script
        .post(app.url("/api/runs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Labelled as something else, the same body is still held to the limit.
    let res = script
        .post(app.url("/api/runs"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(format!(
            r#"{{"template":"transcode","params":{{"note":"{big}"}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(app.count("select count(*) from runs").await, before);

    // CI's deploy reports (JSON) and a server function (form) answer the same.
    let ci = app.create_token("ci", "ci", ADMIN_EMAIL).await;
    let res = script
        .post(app.url("/api/deploys"))
        .bearer_auth(&ci)
        .json(&serde_json::json!({ "note": big }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let res = app
        .call(&admin, "/api/admin/audit_log", &[("actor", big.as_str())])
        .await;
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn nul_characters_and_undecodable_arguments_are_bad_requests() {
    let app = spawn_app().await;
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let token = app.create_token("script", "api", ADMIN_EMAIL).await;
    let audit_before = app.count("select count(*) from audit_log").await;

    for (path, form) in [
        ("/api/list_assets", vec![("search", "a\0b")]),
        ("/api/list_assets", vec![("tag", "\0")]),
        (
            "/api/runs_view",
            vec![
                ("filter[state]", "fai\0led"),
                ("filter[template]", ""),
                ("filter[submitter]", ""),
            ],
        ),
        ("/api/admin/audit_log", vec![("actor", "adm\0in")]),
        ("/api/get_asset", vec![("id", "not-a-uuid")]),
        ("/api/run_detail", vec![("id", "\0")]),
    ] {
        let res = app.call(&admin, path, &form).await;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert_eq!(status, 400, "{path} {form:?}: {body}");
        assert!(body.contains("bad_request"), "{path}: {body}");
    }

    // In the address: a stage name, a page's query.
    let run = uuid::Uuid::now_v7();
    let (status, _) = raw(
        app.addr,
        "GET",
        &format!("/api/runs/{run}/stages/a%00b/preview"),
        None,
        &app.base,
    )
    .await;
    assert_eq!(status, 400);
    let res = admin
        .get(app.url("/assets?search=%00"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // In a JSON body.
    let res = app
        .bare_client()
        .post(app.url("/api/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "template": "trans\u{0}code" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    for (path, body) in [
        ("/api/runs", r#"{"template":"trans\u0000code"}"#),
        ("/api/list_assets", "search=%00"),
    ] {
        let res = app
            .bare_client()
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path} labelled text/plain");
    }
    assert_eq!(app.count("select count(*) from runs").await, 0);
    assert_eq!(
        app.count("select count(*) from audit_log").await,
        audit_before
    );
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", app.addr).as_bytes())
        .await
        .unwrap();
    // Thirty seconds of one header line a second, unless the server hangs up first.
    let mut cut_off_after = None;
    for line in 0..30 {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off_after = Some(line);
                break;
            }
            Ok(Ok(_)) => {
                // A 408 answer is fine too; the connection must end after it.
                continue;
            }
            Err(_elapsed) => {}
        }
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            cut_off_after = Some(line);
            break;
        }
    }
    let lines = cut_off_after.expect("the server still listened after 30 s of headers");
    assert!(
        lines < 20,
        "the server waited {lines} header lines, longer than its header deadline"
    );
}

#[tokio::test]
async fn one_session_holds_a_bounded_number_of_event_streams() {
    let app = spawn_app().await;
    let client = app.signed_in("cleo@studio.test", "creator").await;
    let max = server::http::streams::MAX_STREAMS_PER_SESSION;
    let mut open = Vec::new();
    for _ in 0..max {
        let res = client
            .get(app.url("/api/runs/events"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        open.push(res);
    }
    let res = client
        .get(app.url("/api/assets/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.text().await.unwrap().contains("live views"));

    // Another person is not affected, and closing a stream gives its place back.
    let other = app.signed_in("lena@studio.test", "lead").await;
    let res = other.get(app.url("/api/runs/events")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    drop(open.pop());
    eventually(
        "a closed stream's place to be given back",
        Duration::from_secs(5),
        || async {
            let res = client
                .get(app.url("/api/runs/events"))
                .send()
                .await
                .unwrap();
            seen(res.status(), |s| *s == 200)
        },
    )
    .await;
}
