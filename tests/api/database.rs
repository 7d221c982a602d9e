use std::time::Duration;

use slate_tests::{eventually, start, test_config};

#[tokio::test]
async fn a_database_that_is_down_at_start_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = test_config(&format!(
        "postgres://slate:hunter2secret@127.0.0.1:{port}/slate"
    ));
    config.db_wait_seconds = 1;
    let err = match server::startup::Application::build(&config).await {
        Ok(_) => panic!("started without a database"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("cannot reach PostgreSQL at 127.0.0.1"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2secret"),
        "no password in messages: {err}"
    );
}

/// Runs Slate on its own embedded PostgreSQL, stops that database under it, and starts
/// it again: pages and /readyz answer 503 meanwhile, and Slate recovers by itself.
#[tokio::test]
async fn slate_answers_503_while_the_database_is_down_and_recovers() {
    let dir = std::env::temp_dir().join(format!("slate-dbdown-{}", uuid::Uuid::now_v7().simple()));
    let mut config = test_config("postgres://unused");
    config.database_url = None;
    config.data_dir = dir.clone();
    let pg = server::embedded_pg::EmbeddedPostgres::start(&config)
        .await
        .expect("embedded postgres");
    let url = pg.url();
    // Create the database the URL names.
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let mut conn = sqlx::ConnectOptions::connect(&options.database("postgres"))
        .await
        .unwrap();
    sqlx::query("create database slate")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let app = start(test_config(&url)).await;
    let client = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);
    app.pool.close().await;

    pg.stop().await.expect("stop postgres");
    let ready = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let page = wait_for_status(&client, &app.url("/"), 503).await;
    assert!(page.contains("Temporarily unavailable"), "{page}");

    let pg = server::embedded_pg::EmbeddedPostgres::start(&config)
        .await
        .expect("restart postgres");
    assert_eq!(pg.url(), url, "same port after a restart");
    wait_for_status(&client, &app.url("/readyz"), 200).await;
    wait_for_status(&client, &app.url("/"), 200).await;
    app.stop().await;
    pg.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

async fn wait_for_status(client: &reqwest::Client, url: &str, want: u16) -> String {
    eventually(
        &format!("{url} to answer {want}"),
        Duration::from_secs(20),
        || async {
            let res = client.get(url).send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            if status == want {
                Ok(body)
            } else {
                Err(format!("{status}: {body}"))
            }
        },
    )
    .await
}
