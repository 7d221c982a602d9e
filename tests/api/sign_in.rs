use slate_tests::{spawn_app, TestApp, ADMIN_EMAIL, PASSWORD};

const GENERIC: &str = "Sign-in failed";

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("slate_session="))
        .map(str::to_owned)
}

#[tokio::test]
async fn sign_in_sets_a_safe_cookie_and_renews_the_session_id() {
    let app = spawn_app().await;
    let client = app.client();
    let first = app.login(&client, ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(first.status(), 200);
    let cookie = session_cookie(&first).expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http public URL: no Secure flag"
    );
    let second = app.login(&client, ADMIN_EMAIL, PASSWORD).await;
    let renewed = session_cookie(&second).expect("renewed cookie");
    assert_ne!(
        cookie.split(';').next(),
        renewed.split(';').next(),
        "new id at each sign-in"
    );

    let page = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(ADMIN_EMAIL));
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'session.sign_in'")
            .await,
        2
    );
}

#[tokio::test]
async fn secure_cookies_when_the_public_url_is_https() {
    let app = slate_tests::spawn_app_with(|c| {
        c.public_url = Some("https://slate.studio.test".parse().unwrap())
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(app.url("/api/public/login"))
        .header("origin", "https://slate.studio.test")
        .form(&[("email", ADMIN_EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(session_cookie(&res).unwrap().contains("Secure"));
}

#[tokio::test]
async fn every_failed_sign_in_gets_the_same_answer_and_no_session() {
    let app = spawn_app().await;
    app.create_user("gone@studio.test", "creator").await;
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let id: uuid::Uuid =
        sqlx::query_scalar("select id from users where email = 'gone@studio.test'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let res = app
        .call(
            &admin,
            "/api/admin/set_user_disabled",
            &[("id", &id.to_string()), ("disabled", "true")],
        )
        .await;
    assert_eq!(res.status(), 200);

    for (email, password) in [
        (ADMIN_EMAIL, "wrong password!"),
        ("nobody@studio.test", PASSWORD),
        ("gone@studio.test", PASSWORD),
        ("not an email", PASSWORD),
    ] {
        let client = app.client();
        let res = app.login(&client, email, password).await;
        assert_eq!(res.status(), 401, "{email}");
        assert!(session_cookie(&res).is_none(), "no session for {email}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["kind"], "unauthenticated");
        assert!(
            body["message"].as_str().unwrap().starts_with(GENERIC),
            "{body}"
        );
        let page = client.get(app.url("/")).send().await.unwrap();
        assert_eq!(page.status(), 303, "still signed out");
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_a_while_with_the_same_message() {
    let app = slate_tests::spawn_app_with(|c| c.login_max_failures = 3).await;
    let client = app.client();
    for _ in 0..3 {
        assert_eq!(
            app.login(&client, ADMIN_EMAIL, "wrong password!")
                .await
                .status(),
            401
        );
    }
    let res = app.login(&client, ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(
        res.status(),
        429,
        "the right password is refused while throttled"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with(GENERIC));

    // Once the failures age out of the window, the account works again.
    sqlx::query("update login_failures set at = at - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.login(&client, ADMIN_EMAIL, PASSWORD).await.status(),
        200
    );
}

/// One sign-in from a fresh client at address `from` (the app trusts X-Forwarded-For).
async fn sign_in_from(app: &TestApp, email: &str, password: &str, from: &str) -> reqwest::Response {
    app.client()
        .post(app.url("/api/public/login"))
        .header("x-forwarded-for", from)
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// Sends every `(email, password, from)` sign-in at once and returns the statuses,
/// having checked that every refusal carries the one generic message.
async fn sign_in_at_once(app: &TestApp, attempts: &[(&str, &str, &str)]) -> Vec<u16> {
    let tries = attempts.iter().map(|(email, password, from)| async move {
        let res = sign_in_from(app, email, password, from).await;
        let status = res.status().as_u16();
        if status != 200 {
            let body: serde_json::Value = res.json().await.unwrap();
            assert!(
                body["message"].as_str().unwrap().starts_with(GENERIC),
                "{status} {body}"
            );
        }
        status
    });
    futures::future::join_all(tries).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn concurrent_guesses_are_counted_before_any_password_is_checked() {
    let app = slate_tests::spawn_app_with(|c| c.trust_proxy = true).await;
    // One account, guessed at from thirty addresses at once.
    let addresses: Vec<String> = (0..30).map(|i| format!("203.0.113.{i}")).collect();
    let guesses: Vec<_> = addresses
        .iter()
        .map(|from| (ADMIN_EMAIL, "wrong password!", from.as_str()))
        .collect();
    let statuses = sign_in_at_once(&app, &guesses).await;
    assert_eq!(count(&statuses, 401), 10, "ten checked: {statuses:?}");
    assert_eq!(
        count(&statuses, 429),
        20,
        "the rest refused unchecked: {statuses:?}"
    );
    let right = sign_in_at_once(&app, &[(ADMIN_EMAIL, PASSWORD, "198.51.100.1")]).await;
    assert_eq!(
        right,
        [429],
        "the right password is refused while throttled"
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'session.sign_in'")
            .await,
        0
    );
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_throttled_and_others_are_not() {
    let app = slate_tests::spawn_app_with(|c| c.trust_proxy = true).await;
    let emails: Vec<String> = (0..30).map(|i| format!("user{i}@studio.test")).collect();
    let guesses: Vec<_> = emails
        .iter()
        .map(|email| (email.as_str(), PASSWORD, "203.0.113.7"))
        .collect();
    let statuses = sign_in_at_once(&app, &guesses).await;
    assert_eq!(count(&statuses, 401), 10, "ten checked: {statuses:?}");
    assert_eq!(count(&statuses, 429), 20, "{statuses:?}");
    let from_there = sign_in_from(&app, ADMIN_EMAIL, PASSWORD, "203.0.113.7").await;
    assert_eq!(from_there.status(), 429, "the address is throttled");
    let elsewhere = sign_in_from(&app, ADMIN_EMAIL, PASSWORD, "198.51.100.1").await;
    assert_eq!(elsewhere.status(), 200, "the account itself is not");
}

#[tokio::test]
async fn forged_and_expired_session_cookies_are_signed_out() {
    let app = spawn_app().await;
    let forged = app
        .bare_client()
        .get(app.url("/"))
        .header("cookie", "slate_session=AAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    assert_eq!(forged.headers()["location"], "/login");

    let client = app.signed_in(ADMIN_EMAIL, "admin").await;
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);
    sqlx::query("update sessions set expiry_date = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let expired = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(
        expired.status(),
        303,
        "an idle-expired session no longer signs in"
    );
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let app = spawn_app().await;
    let client = app.signed_in(ADMIN_EMAIL, "admin").await;
    let res = app.call(&client, "/api/public/logout", &[]).await;
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 303);
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'session.sign_out'")
            .await,
        1
    );
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let evil = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let res = evil
        .post(app.url("/api/public/login"))
        .header("origin", "https://evil.example")
        .form(&[("email", ADMIN_EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // A signed-in admin's cookie ridden by another site's form.
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let res = admin
        .post(app.url("/api/admin/create_user"))
        .header("origin", "https://evil.example")
        .form(&[
            ("email", "planted@evil.example"),
            ("role", "admin"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("Cross-site"));
    assert_eq!(
        app.count("select count(*) from users where email = 'planted@evil.example'")
            .await,
        0
    );
}
