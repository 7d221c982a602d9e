//! Slate's events out, end to end: subscriptions made through the admin server
//! functions, a run's events delivered to a receiver on 127.0.0.1 that checks the
//! Standard Webhooks signature itself, retries with their log, resend, the URL rules and
//! the allow-list, secrets, roles, and several workers racing for the same tries.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use slate_tests::webhook_receiver::Receiver;
use slate_tests::{eventually, seen, TestApp, ADMIN_EMAIL};
use uuid::Uuid;

use crate::pipelines::{caps, save_template, submit_as_admin, template, wait_run};

/// Generous bounds: the worker looks every second, the machines are shared.
const DELIVERED: Duration = Duration::from_secs(60);

/// Retries in these tests wait this long instead of 5 s, 30 s, ...
fn fast_retries() {
    server::webhooks::deliver::set_backoff_for_tests(Duration::from_millis(200));
}

async fn admin(app: &TestApp) -> reqwest::Client {
    app.signed_in(ADMIN_EMAIL, "admin").await
}

/// Creates a subscription; its JSON (with the secret shown once).
async fn subscribe(app: &TestApp, client: &reqwest::Client, form: &[(&str, &str)]) -> Value {
    let res = app.call(client, "/api/admin/webhook_create", form).await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 200, "create a subscription: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A receiver, an app allowed to reach it, a subscription to it for `events` with the
/// receiver holding its secret.
async fn wired(events: &str) -> (Receiver, TestApp, reqwest::Client, Uuid) {
    let receiver = Receiver::start().await;
    let allow = receiver.allow();
    let app = slate_tests::spawn_app_with(|c| c.webhook_allow = allow).await;
    let client = admin(&app).await;
    let created = subscribe(
        &app,
        &client,
        &[
            ("url", &receiver.url()),
            ("events", events),
            ("description", "the test receiver"),
        ],
    )
    .await;
    receiver.set_secret(created["secret"].as_str().unwrap());
    let id = created["subscription"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (receiver, app, client, id)
}

async fn delivery_log(app: &TestApp, client: &reqwest::Client, subscription: Uuid) -> Value {
    let res = app
        .call(
            client,
            "/api/admin/webhook_deliveries",
            &[("id", &subscription.to_string())],
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_runs_events_arrive_signed_with_links_and_ids() {
    fast_retries();
    let (receiver, app, client, subscription) = wired("").await;
    save_template(&app, &template("hooked", 2, true, 1)).await;
    let run = submit_as_admin(&app, &caps(), "hooked", json!({})).await;
    assert_eq!(wait_run(&app, run).await, "succeeded");

    // An output of the run, as an executor records one: its event names the asset.
    let (owner, stage): (Uuid, Uuid) = sqlx::query_as(
        "select r.submitted_by, s.id from runs r join run_stages s on s.run_id = r.id
         where r.id = $1 and s.name = 's1'",
    )
    .bind(run)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (asset, version) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("insert into assets (id, owner_id, name, kind, state) values ($1, $2, 'proxy.mp4', 'video', 'ready')")
        .bind(asset).bind(owner).execute(&app.pool).await.unwrap();
    sqlx::query("insert into asset_versions (id, asset_id, number, state, original_name) values ($1, $2, 1, 'ready', 'proxy.mp4')")
        .bind(version).bind(asset).execute(&app.pool).await.unwrap();
    sqlx::query("insert into run_outputs (id, run_id, stage_id, asset_id, version_id, provenance) values ($1, $2, $3, $4, $5, '{}')")
        .bind(Uuid::now_v7()).bind(run).bind(stage).bind(asset).bind(version)
        .execute(&app.pool).await.unwrap();

    let want = [
        "run.queued",
        "run.started",
        "stage.started",
        "stage.succeeded",
        "run.succeeded",
        "output.created",
    ];
    let got = eventually("the run's events at the receiver", DELIVERED, || async {
        let got = receiver.received();
        let kinds: HashSet<String> = got.iter().map(|r| r.kind().to_owned()).collect();
        seen(got, |_| want.iter().all(|w| kinds.contains(*w)))
    })
    .await;
    for r in &got {
        assert!(
            r.verified,
            "every delivery is signed with the secret: {r:?}"
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json");
        assert!(r.id.starts_with("msg_"), "{}", r.id);
        assert!(
            chrono::DateTime::parse_from_rfc3339(r.body["timestamp"].as_str().unwrap()).is_ok()
        );
        assert_eq!(r.body["data"]["run_id"], run.to_string(), "{}", r.body);
        assert!(r.body["data"]["run_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/{run}")));
    }
    let ids: HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "each event is its own message");
    // Both stages started and succeeded, named.
    let stages: HashSet<(String, String)> = got
        .iter()
        .filter(|r| r.kind().starts_with("stage."))
        .map(|r| {
            (
                r.kind().to_owned(),
                r.body["data"]["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for name in ["s0", "s1"] {
        assert!(
            stages.contains(&("stage.succeeded".into(), name.into())),
            "{stages:?}"
        );
    }
    let succeeded = got.iter().find(|r| r.kind() == "run.succeeded").unwrap();
    assert_eq!(succeeded.body["data"]["pipeline"]["name"], "hooked");
    assert_eq!(succeeded.body["data"]["submitted_by"], ADMIN_EMAIL);
    let output = got.iter().find(|r| r.kind() == "output.created").unwrap();
    assert_eq!(output.body["data"]["asset_id"], asset.to_string());
    assert_eq!(output.body["data"]["name"], "proxy.mp4");
    assert_eq!(output.body["data"]["kind"], "video");
    assert_eq!(output.body["data"]["stage"], "s1");
    assert!(output.body["data"]["asset_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/assets/{asset}")));

    // The log says the same: each delivery succeeded at its first try, with the answer.
    let log = eventually("the log to show every delivery done", DELIVERED, || async {
        seen(delivery_log(&app, &client, subscription).await, |l| {
            l["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["state"] == "succeeded")
        })
    })
    .await;
    let first = &log["deliveries"][0];
    assert_eq!(first["tries"], 1);
    assert_eq!(first["attempts"][0]["status_code"], 200);
    assert!(first["attempts"][0]["excerpt"]
        .as_str()
        .unwrap()
        .starts_with("thanks for msg_"));
    assert_eq!(log["subscription"]["last"]["state"], "succeeded");
    app.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_and_a_resend_keeps_the_id() {
    fast_retries();
    let (receiver, app, client, subscription) = wired("run.succeeded").await;
    receiver.fail_next(2);
    let res = app
        .call(
            &client,
            "/api/admin/webhook_ping",
            &[("id", &subscription.to_string())],
        )
        .await;
    assert_eq!(res.status(), 200);
    let delivery: Uuid = res.json().await.unwrap();

    let log = eventually("three tries, the last one good", DELIVERED, || async {
        seen(delivery_log(&app, &client, subscription).await, |l| {
            l["deliveries"][0]["state"] == "succeeded"
        })
    })
    .await;
    let d = &log["deliveries"][0];
    assert_eq!(d["id"], delivery.to_string());
    assert_eq!(d["kind"], "ping");
    assert_eq!(d["tries"], 3);
    let codes: Vec<i64> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(
        d["attempts"][0]["excerpt"], "the receiver was told to fail",
        "the answer's body is kept"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.verified && r.id == got[0].id));
    assert_eq!(got[0].id, d["webhook_id"].as_str().unwrap());

    // A resend: one more try, now, with the same webhook id.
    let res = app
        .call(
            &client,
            "/api/admin/webhook_resend",
            &[("delivery", &delivery.to_string())],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    eventually("the resent try at the receiver", DELIVERED, || async {
        seen(receiver.received().len(), |n| *n == 4)
    })
    .await;
    let got = receiver.received();
    assert_eq!(got[3].id, got[0].id);
    assert!(got[3].verified);
    let log = eventually("the resend in the log", DELIVERED, || async {
        seen(delivery_log(&app, &client, subscription).await, |l| {
            l["deliveries"][0]["attempts"].as_array().unwrap().len() == 4
        })
    })
    .await;
    let last = &log["deliveries"][0]["attempts"][3];
    assert_eq!(last["resend"], true);
    assert_eq!(last["status_code"], 200);
    assert_eq!(log["deliveries"][0]["state"], "succeeded");
    let audited = app
        .count("select count(*) from audit_log where action in ('webhook.create', 'webhook.ping', 'webhook.resend')")
        .await;
    assert_eq!(audited, 3);
    // An unknown delivery is not found.
    let res = app
        .call(
            &client,
            "/api/admin/webhook_resend",
            &[("delivery", &Uuid::now_v7().to_string())],
        )
        .await;
    assert_eq!(res.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_given_up_after_the_stated_tries() {
    fast_retries();
    let (receiver, app, client, subscription) = wired("*").await;
    receiver.fail_next(usize::MAX);
    app.call(
        &client,
        "/api/admin/webhook_ping",
        &[("id", &subscription.to_string())],
    )
    .await;
    let log = eventually("the delivery given up", DELIVERED, || async {
        seen(delivery_log(&app, &client, subscription).await, |l| {
            l["deliveries"][0]["state"] == "failed"
        })
    })
    .await;
    assert_eq!(log["deliveries"][0]["tries"], app::webhooks::TRIES);
    assert_eq!(receiver.received().len(), app::webhooks::TRIES as usize);
    assert_eq!(log["subscription"]["failed"], 1);
    app.stop().await;
}

#[tokio::test]
async fn private_targets_are_refused_unless_on_the_allow_list() {
    let receiver = Receiver::start().await;
    let allow = receiver.allow();
    let app = slate_tests::spawn_app_with(|c| c.webhook_allow = allow).await;
    let client = admin(&app).await;
    let refused = |url: String| {
        let (app, client) = (&app, &client);
        async move {
            let res = app
                .call(client, "/api/admin/webhook_create", &[("url", &url)])
                .await;
            let status = res.status();
            (status, res.text().await.unwrap())
        }
    };
    // Loopback on another port, the metadata address, a private one, a name for loopback.
    for url in [
        "http://127.0.0.1:1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/hook".to_owned(),
        "http://[::1]:8080/hook".to_owned(),
        format!("http://localhost:{}/hook", receiver.addr.port()),
    ] {
        let (status, body) = refused(url.clone()).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.contains("not a public address"), "{url}: {body}");
        assert!(body.contains("SLATE_WEBHOOK_ALLOW"), "{url}: {body}");
    }
    for (url, why) in [
        ("ftp://example.com/hook", "only http and https"),
        ("https://user:pw@example.com/hook", "user name or password"),
        ("not a url", "not a URL"),
    ] {
        let (status, body) = refused(url.to_owned()).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.contains(why), "{url}: {body}");
    }
    // The allow-list names host and port: the receiver is accepted.
    subscribe(&app, &client, &[("url", &receiver.url())]).await;
    assert_eq!(
        app.count("select count(*) from webhook_subscriptions")
            .await,
        1
    );

    // A subscription whose address is refused at delivery time (as if its name now
    // resolved to a private address): the try is logged as refused and nothing is sent.
    let sneaky = Uuid::now_v7();
    sqlx::query(
        "insert into webhook_subscriptions (id, url, secret) values ($1, 'http://127.0.0.2:9/hook', $2)",
    )
    .bind(sneaky)
    .bind(server::webhooks::secret::Secret::generate().encode())
    .execute(&app.pool)
    .await
    .unwrap();
    app.call(
        &client,
        "/api/admin/webhook_ping",
        &[("id", &sneaky.to_string())],
    )
    .await;
    let log = eventually("the refused try in the log", DELIVERED, || async {
        seen(delivery_log(&app, &client, sneaky).await, |l| {
            !l["deliveries"][0]["attempts"]
                .as_array()
                .unwrap()
                .is_empty()
        })
    })
    .await;
    let attempt = &log["deliveries"][0]["attempts"][0];
    assert!(attempt["status_code"].is_null());
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{attempt}"
    );
    app.stop().await;
}

#[tokio::test]
async fn secrets_are_checked_made_and_shown_once() {
    let receiver = Receiver::start().await;
    let allow = receiver.allow();
    let app = slate_tests::spawn_app_with(|c| c.webhook_allow = allow).await;
    let client = admin(&app).await;
    use base64::Engine as _;
    let b64 = |n: usize| {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(vec![9u8; n])
        )
    };
    for (secret, why) in [
        (b64(16), "at least 24"),
        ("whsec_%%%".to_owned(), "not valid base64"),
        ("hunter2hunter2hunter2hunter2".to_owned(), "whsec_"),
    ] {
        let res = app
            .call(
                &client,
                "/api/admin/webhook_create",
                &[("url", &receiver.url()), ("secret", &secret)],
            )
            .await;
        assert_eq!(res.status(), 400);
        let body = res.text().await.unwrap();
        assert!(body.contains(why), "{secret}: {body}");
    }
    assert_eq!(
        app.count("select count(*) from webhook_subscriptions")
            .await,
        0
    );

    // A given secret is kept; a made one is 32 random bytes.
    let given = b64(32);
    let created = subscribe(
        &app,
        &client,
        &[("url", &receiver.url()), ("secret", &given)],
    )
    .await;
    assert_eq!(created["secret"], given.as_str());
    let made = subscribe(&app, &client, &[("url", &receiver.url())]).await;
    let made_secret = made["secret"].as_str().unwrap().to_owned();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(made_secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 32);
    // Never shown again: not in the list, not in the audit log.
    let res = app.call(&client, "/api/admin/webhook_list", &[]).await;
    let listed = res.text().await.unwrap();
    assert!(!listed.contains(&made_secret) && !listed.contains(&given));
    let audit: Vec<Value> =
        sqlx::query_scalar("select detail from audit_log where action like 'webhook.%'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|d| !d.to_string().contains("whsec_")));

    // The pages list it and show its log, without the secret.
    let page = client.get(app.url("/admin/webhooks")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("webhooks-table") && html.contains(&receiver.url()),
        "the list"
    );
    assert!(!html.contains(&made_secret));
    let id = made["subscription"]["id"].as_str().unwrap();
    let page = client
        .get(app.url(&format!("/admin/webhooks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Nothing delivered yet"), "the empty log");
    assert!(!html.contains(&made_secret));

    // Rotating makes a new one, shown once; a short one is refused there too.
    let res = app
        .call(
            &client,
            "/api/admin/webhook_rotate_secret",
            &[("id", id), ("secret", &b64(8))],
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = app
        .call(&client, "/api/admin/webhook_rotate_secret", &[("id", id)])
        .await;
    assert_eq!(res.status(), 200);
    let rotated: String = res.json().await.unwrap();
    assert_ne!(rotated, made_secret);
    let stored: String =
        sqlx::query_scalar("select secret from webhook_subscriptions where id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, rotated);
    app.stop().await;
}

#[tokio::test]
async fn only_admins_manage_subscriptions() {
    let app = slate_tests::spawn_app().await;
    let lead = app.signed_in("lead@slate.test", "lead").await;
    for (path, form) in [
        ("/api/admin/webhook_list", vec![]),
        (
            "/api/admin/webhook_create",
            vec![("url", "https://example.com/hook")],
        ),
        (
            "/api/admin/webhook_delete",
            vec![("id", "00000000-0000-0000-0000-000000000000")],
        ),
    ] {
        let res = app.call(&lead, path, &form).await;
        assert_eq!(res.status(), 403, "{path}");
    }
    for page in [
        "/admin/webhooks",
        "/admin/webhooks/00000000-0000-0000-0000-000000000000",
    ] {
        let res = lead.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{page}");
    }
    assert_eq!(
        app.count("select count(*) from webhook_subscriptions")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn disabling_and_deleting_stop_deliveries_and_are_audited() {
    fast_retries();
    let (receiver, app, client, subscription) = wired("endpoint.up,endpoint.down").await;
    let id = subscription.to_string();
    // The Colab endpoint's states become events; only the asked-for types are delivered.
    let endpoint = Uuid::now_v7();
    sqlx::query(
        "insert into colab_endpoints (id, url, source, actor_label, reported_at, state)
         values ($1, 'https://quiet-river.trycloudflare.com', 'admin', 'test', now(), 'verifying')",
    )
    .bind(endpoint)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("update colab_endpoints set state = 'healthy' where id = $1")
        .bind(endpoint)
        .execute(&app.pool)
        .await
        .unwrap();
    eventually("endpoint.up at the receiver", DELIVERED, || async {
        seen(receiver.received(), |got| {
            got.iter().any(|r| r.kind() == "endpoint.up")
        })
    })
    .await;
    let got = receiver.received();
    assert!(
        got.iter().all(|r| r.kind() != "endpoint.changed"),
        "endpoint.changed (verifying) was not asked for"
    );
    let up = got.iter().find(|r| r.kind() == "endpoint.up").unwrap();
    assert_eq!(up.body["data"]["endpoint_id"], endpoint.to_string());
    assert_eq!(up.body["data"]["previous_state"], "verifying");
    assert!(
        !up.body.to_string().contains("trycloudflare"),
        "never the tunnel URL"
    );

    // Disabled: what happens meanwhile is not delivered to it.
    let res = app
        .call(
            &client,
            "/api/admin/webhook_set_enabled",
            &[("id", &id), ("enabled", "false")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let before = receiver.received().len();
    sqlx::query(
        "insert into colab_endpoints (id, url, source, actor_label, reported_at, state)
         values ($1, 'https://other-river.trycloudflare.com', 'admin', 'test', now(), 'rejected')",
    )
    .bind(Uuid::now_v7())
    .execute(&app.pool)
    .await
    .unwrap();
    eventually("the event dispatched", DELIVERED, || async {
        app.count("select count(*) from webhook_events where dispatched_at is null")
            .await
            == 0
    })
    .await;
    assert_eq!(receiver.received().len(), before);
    let res = app
        .call(
            &client,
            "/api/admin/webhook_set_enabled",
            &[("id", &id), ("enabled", "true")],
        )
        .await;
    assert_eq!(res.status(), 200);

    let res = app
        .call(&client, "/api/admin/webhook_delete", &[("id", &id)])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.count("select count(*) from webhook_subscriptions")
            .await,
        0
    );
    assert_eq!(
        app.count("select count(*) from webhook_deliveries").await,
        0
    );
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_log where action like 'webhook.%' order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "webhook.create",
            "webhook.disable",
            "webhook.enable",
            "webhook.delete"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn two_workers_never_send_one_try_twice() {
    fast_retries();
    let (receiver, app, client, subscription) = wired("*").await;
    receiver.answer_after(Duration::from_millis(20));
    // Deliveries made while the subscription is disabled wait; enabling it lets three
    // workers (the app's and two more on the same database) race for them.
    let id = subscription.to_string();
    app.call(
        &client,
        "/api/admin/webhook_set_enabled",
        &[("id", &id), ("enabled", "false")],
    )
    .await;
    const N: usize = 60;
    for i in 0..N {
        let body =
            json!({"type": "ping", "timestamp": chrono::Utc::now().to_rfc3339(), "data": {"n": i}});
        sqlx::query(
            "insert into webhook_deliveries (id, subscription_id, type, body, state, tries_left)
             values ($1, $2, 'ping', $3, 'pending', 8)",
        )
        .bind(Uuid::now_v7())
        .bind(subscription)
        .bind(body.to_string())
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let workers: Vec<server::webhooks::Webhooks> = (0..2)
        .map(|_| server::webhooks::Webhooks::new(app.pool.clone(), &app.config))
        .collect();
    app.call(
        &client,
        "/api/admin/webhook_set_enabled",
        &[("id", &id), ("enabled", "true")],
    )
    .await;
    let race = workers.iter().map(|w| async move {
        let mut made = 0;
        loop {
            let n = w.deliver_once().await.unwrap();
            made += n;
            let left: i64 = sqlx::query_scalar(
                "select count(*) from webhook_deliveries where state = 'pending'",
            )
            .fetch_one(&w.pool)
            .await
            .unwrap();
            if left == 0 {
                return made;
            }
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let made: Vec<usize> = futures::future::join_all(race).await;
    let got = receiver.received();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *per_id.entry(r.id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), N, "every delivery arrived");
    assert!(per_id.values().all(|n| *n == 1), "none twice: {per_id:?}");
    assert_eq!(got.len(), N);
    assert_eq!(
        app.count("select count(*) from webhook_tries").await,
        N as i64
    );
    assert_eq!(
        app.count(
            "select count(*) from webhook_deliveries where tries <> 1 or state <> 'succeeded'"
        )
        .await,
        0
    );
    // The extra workers did take part (the race was real), whatever the split.
    eprintln!("tries made by the two extra workers: {made:?} of {N}");
    app.stop().await;
}
