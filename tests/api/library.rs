//! The asset library's server functions: filters, keyset pages, tags, deletion and who
//! may do what; and the live change feed.

use futures::StreamExt as _;
use slate_tests::{eventually, spawn_app, ADMIN_EMAIL};

use slate_tests::tus::Tus;

async fn list(
    app: &slate_tests::TestApp,
    client: &reqwest::Client,
    form: &[(&str, &str)],
) -> serde_json::Value {
    let res = app.call(client, "/api/list_assets", form).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn names(page: &serde_json::Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_library_filters_sorts_and_pages() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    for i in 0..50 {
        tus.upload(&format!("note_{i:02}.txt"), format!("note {i}").as_bytes())
            .await;
    }
    tus.upload("hero_plate.png", b"\x89PNG\r\n\x1a\nnot really a png")
        .await;
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;

    let first = list(&app, &admin, &[("sort", "name")]).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 48);
    assert_eq!(names(&first)[0], "hero_plate.png");
    let after = first["next"].as_str().expect("a second page").to_owned();
    let second = list(&app, &admin, &[("sort", "name"), ("after", &after)]).await;
    assert_eq!(
        names(&second),
        ["note_47.txt", "note_48.txt", "note_49.txt"]
    );
    assert!(second["next"].is_null());

    let newest = list(&app, &admin, &[]).await;
    assert_eq!(
        names(&newest)[0],
        "hero_plate.png",
        "newest first by default"
    );
    let found = list(&app, &admin, &[("search", "HERO")]).await;
    assert_eq!(names(&found), ["hero_plate.png"]);
    let failed = list(&app, &admin, &[("state", "failed")]).await;
    assert_eq!(
        names(&failed),
        ["hero_plate.png"],
        "a PNG header with no image is a failed image"
    );
    let images = list(&app, &admin, &[("kind", "image")]).await;
    assert_eq!(images["items"].as_array().unwrap().len(), 1);
    let none = list(&app, &admin, &[("owner", "nobody@studio.test")]).await;
    assert!(names(&none).is_empty());
    let res = app
        .call(&admin, "/api/list_assets", &[("after", "garbage")])
        .await;
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn owners_leads_and_admins_edit_others_only_look() {
    let app = spawn_app().await;
    app.create_user("cara@studio.test", "creator").await;
    let cara_token = app.create_token("cara", "api", "cara@studio.test").await;
    let cara = Tus {
        app: &app,
        token: cara_token,
        client: app.bare_client(),
    };
    let (asset, _) = cara.upload("shot.txt", b"take one").await;

    let other = app.signed_in("omar@studio.test", "creator").await;
    let res = app.call(&other, "/api/get_asset", &[("id", &asset)]).await;
    assert_eq!(res.status(), 200);
    let detail: serde_json::Value = res.json().await.unwrap();
    assert_eq!(detail["can_edit"], false);
    assert_eq!(
        app.call(
            &other,
            "/api/set_asset_tags",
            &[("id", &asset), ("tags", "mine")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        app.call(&other, "/api/delete_asset", &[("id", &asset)])
            .await
            .status(),
        403
    );

    let owner = app.client();
    assert_eq!(
        app.login(&owner, "cara@studio.test", slate_tests::PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call(
            &owner,
            "/api/set_asset_tags",
            &[("id", &asset), ("tags", "Hero, night,hero")]
        )
        .await
        .status(),
        200
    );
    let tags: Vec<String> = sqlx::query_scalar("select unnest(tags) from assets")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(tags, ["hero", "night"]);
    let too_long = "x".repeat(41);
    assert_eq!(
        app.call(
            &owner,
            "/api/set_asset_tags",
            &[("id", &asset), ("tags", &too_long)]
        )
        .await
        .status(),
        422
    );

    let lead = app.signed_in("lee@studio.test", "lead").await;
    assert_eq!(
        app.call(&lead, "/api/delete_asset", &[("id", &asset)])
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call(&owner, "/api/get_asset", &[("id", &asset)])
            .await
            .status(),
        404
    );
    let listed = list(&app, &owner, &[]).await;
    assert!(
        names(&listed).is_empty(),
        "deleted assets leave the library"
    );
    let download = cara
        .client
        .get(app.url(&format!("/api/assets/{asset}/original")))
        .bearer_auth(&cara.token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 404);
    let kept: i64 = app.count("select count(*) from asset_versions").await;
    assert_eq!(kept, 1, "deletion is soft: the data stays");
    let audited: Vec<String> =
        sqlx::query_scalar("select action from audit_log where action like 'asset.%' order by id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, ["asset.set_tags", "asset.delete"]);
}

#[tokio::test]
async fn live_views_hear_about_changes() {
    let app = spawn_app().await;
    let tus = Tus::new(&app).await;
    let res = tus
        .client
        .get(app.url("/api/assets/events"))
        .bearer_auth(&tus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = res.bytes_stream();
    // The stream is subscribed once it answers; the server's own LISTEN starts with it.
    eventually(
        "Slate to listen for asset changes",
        std::time::Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, bool>(
                "select exists(select 1 from pg_stat_activity \
                 where datname = current_database() and query ilike 'listen%asset_changes%')",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap()
        },
    )
    .await;
    let (asset, _) = tus.upload("live.txt", b"now you see it").await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains(&asset) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: asset"), "{seen}");
}
