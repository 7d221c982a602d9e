use slate_tests::spawn_app;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let c = app.bare_client();
    let health = c.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = c.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.headers()["x-request-id"].len(),
        36,
        "request id echoed"
    );

    let metrics = c.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE slate_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"slate_http_requests_total{method="GET",route="/readyz",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"slate_http_request_duration_seconds_bucket{method="GET",route="/healthz",status="200",le="+Inf"} 1"#));
}

#[tokio::test]
async fn pages_are_server_rendered_with_the_wasm_and_strict_headers() {
    let app = spawn_app().await;
    let res = app
        .bare_client()
        .get(app.url("/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(
        body.contains("<form") && body.contains("Sign in"),
        "server-rendered form"
    );
    assert!(
        body.contains("/pkg/slate.js") && body.contains("slate_bg"),
        "loads the wasm"
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("nonce in CSP");
    assert!(
        body.contains(&format!("nonce=\"{nonce}\"")),
        "hydration script carries the CSP nonce"
    );
    assert!(
        csp.contains("'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");

    let wasm = app
        .bare_client()
        .get(app.url("/pkg/slate_bg.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wasm.status(),
        200,
        "the site is served by the binary itself"
    );
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
}

#[tokio::test]
async fn unknown_pages_get_a_404_page_and_pages_need_sign_in() {
    let app = spawn_app().await;
    let anon = app.client();
    let res = anon
        .get(app.url("/admin/users?tab=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/login?next=%2Fadmin%2Fusers%3Ftab%3Dx"
    );

    let admin = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let res = admin.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_change_nothing() {
    let app = spawn_app_small().await;
    let admin = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let big = "x".repeat(8 * 1024);
    let res = app
        .call(
            &admin,
            "/api/admin/create_user",
            &[
                ("email", "big@studio.test"),
                ("role", "creator"),
                ("password", &big),
            ],
        )
        .await;
    assert_eq!(res.status(), 413);
    assert_eq!(
        app.count("select count(*) from users where email = 'big@studio.test'")
            .await,
        0
    );
}

async fn spawn_app_small() -> slate_tests::TestApp {
    slate_tests::spawn_app_with(|c| c.max_body_bytes = 4096).await
}
