//! Submission: parameters checked against the template, assets against the library,
//! executors against what this Slate can run; nothing written when refused.

use app::accounts::Role;
use serde_json::json;
use server::pipelines::runs::{submit, Submission, Submitter};
use slate_tests::spawn_app_with;

use super::{admin, caps};

#[tokio::test]
async fn bad_submissions_are_refused_and_write_nothing() {
    // No dispatcher: stages stay as submission left them.
    let app = spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await;
    server::pipelines::store::seed_builtins(&app.pool)
        .await
        .unwrap();
    let (who, id) = admin(&app).await;
    let by = Submitter {
        who: &who,
        user_id: id,
        role: Role::Creator,
        token: None,
    };
    let mut cases = Vec::new();
    let animatic = |params: serde_json::Value| Submission {
        template: "keyframes-to-animatic".into(),
        params: params.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    cases.push((
        animatic(json!({"prompt": "a fox", "count": 65})),
        "Keyframes must be from 1 to 64",
    ));
    cases.push((
        animatic(json!({"prompt": "a fox", "count": "eight"})),
        "Keyframes must be a whole number",
    ));
    cases.push((
        animatic(json!({"prompt": "a fox", "colour": "red"})),
        "\"colour\" is not a parameter",
    ));
    cases.push((animatic(json!({"count": 4})), "Prompt is required"));
    cases.push((
        animatic(json!({"prompt": "a fox", "seed": -3})),
        "Seed must be a whole number",
    ));
    let transcode = |source: &str| Submission {
        template: "transcode-and-proxies".into(),
        params: json!({"source": source}).as_object().cloned().unwrap(),
        ..Default::default()
    };
    cases.push((
        transcode("not-an-id"),
        "Video must be an asset from the library",
    ));
    cases.push((
        transcode("0193a0b2-7c4e-7d21-9a3b-5f1e2d3c4b5a"),
        "there is no asset 0193a0b2-7c4e-7d21-9a3b-5f1e2d3c4b5a",
    ));
    cases.push((
        Submission {
            template: "blender-render".into(),
            ..Default::default()
        },
        "Slate is not connected to a cluster",
    ));
    cases.push((
        Submission {
            template: "no-such-thing".into(),
            ..Default::default()
        },
        "There is no template \"no-such-thing\"",
    ));
    cases.push((
        Submission {
            priority: 50,
            ..animatic(json!({"prompt": "a fox"}))
        },
        "Only leads and admins may raise",
    ));
    for (submission, expected) in cases {
        let err = submit(&app.pool, &caps(), &by, &submission, None)
            .await
            .expect_err(expected);
        assert!(
            err.to_string().contains(expected),
            "{err} should say {expected}"
        );
    }
    // An asset of the wrong kind.
    let image: uuid::Uuid = sqlx::query_scalar(
        "insert into assets (id, owner_id, name, kind, state) values (gen_random_uuid(), $1, 'still.png', 'image', 'ready') returning id",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let err = submit(
        &app.pool,
        &caps(),
        &by,
        &transcode(&image.to_string()),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be video assets; \"still.png\" is image"),
        "{err}"
    );
    assert_eq!(app.count("select count(*) from runs").await, 0);
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'run.submit'")
            .await,
        0
    );

    // A good one: defaults filled in, the seed drawn and kept, the first stage queued.
    let run = submit(
        &app.pool,
        &caps(),
        &by,
        &animatic(json!({"prompt": "a fox at dawn"})),
        None,
    )
    .await
    .unwrap();
    let params: serde_json::Value = sqlx::query_scalar("select params from runs where id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(params["count"], 8);
    assert!(params["seed"].as_i64().is_some());
    let stages: Vec<(String, String)> =
        sqlx::query_as("select name, state from run_stages where run_id = $1 order by name desc")
            .bind(run)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        stages,
        [
            ("keyframes".into(), "queued".into()),
            ("animatic".into(), "waiting".into())
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn templates_are_versioned_and_a_cyclic_one_is_refused() {
    // No dispatcher: stages stay as submission left them.
    let app = spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await;
    let (who, _) = admin(&app).await;
    for _ in 0..2 {
        server::comfyui::workflows::store::seed_bundled(&app.pool)
            .await
            .unwrap();
        server::pipelines::store::seed_builtins(&app.pool)
            .await
            .unwrap();
    }
    // The built-in templates, and the template of each bundled workflow.
    let builtin = app::pipelines::template::BUILT_IN.len() + app::comfyui::workflow::BUNDLED.len();
    assert_eq!(
        app.count("select count(*) from pipelines").await,
        builtin as i64,
        "seeding twice adds nothing"
    );
    assert_eq!(
        app.count("select count(*) from workflows").await,
        app::comfyui::workflow::BUNDLED.len() as i64,
        "nor a workflow version"
    );
    let source = super::template("mine", 2, true, 1);
    let (_, v1, made) = server::pipelines::store::save(&app.pool, &who, &source, false)
        .await
        .unwrap();
    assert_eq!((v1, made), (1, true));
    let edited = source.replace("attempts: 1", "attempts: 2");
    let (_, v2, _) = server::pipelines::store::save(&app.pool, &who, &edited, false)
        .await
        .unwrap();
    assert_eq!(v2, 2);
    let cyclic = edited.replace("  - name: s0\n", "  - name: s0\n    needs: [s1]\n");
    let Err(server::pipelines::store::SaveError::Invalid(problems)) =
        server::pipelines::store::save(&app.pool, &who, &cyclic, false).await
    else {
        panic!("a cycle is refused")
    };
    assert!(problems[0].to_string().contains("cycle"), "{problems:?}");
    assert_eq!(
        app.count("select count(*) from pipelines where name = 'mine'")
            .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn admins_edit_templates_as_new_versions_and_see_the_differences() {
    let app = spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await;
    let admin = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let lead = app.signed_in("lead@studio.test", "lead").await;
    let source: serde_json::Value = app
        .call(
            &admin,
            "/api/admin/pipeline_source",
            &[("name", "transcode-and-proxies")],
        )
        .await
        .json()
        .await
        .unwrap();
    let text = source["source"].as_str().unwrap().to_owned();
    assert_eq!(source["version"], 1);

    // A lead may not; a cycle is refused with its line; the same text changes nothing.
    let edited = text.replace("default: 18", "default: 20");
    let res = app
        .call(&lead, "/api/admin/save_pipeline", &[("source", &edited)])
        .await;
    assert_eq!(res.status(), 403);
    let cyclic = edited.replace("  - name: proxy\n", "  - name: proxy\n    needs: [proxy]\n");
    let res = app
        .call(&admin, "/api/admin/save_pipeline", &[("source", &cyclic)])
        .await;
    assert_eq!(res.status(), 422);
    let said = res.text().await.unwrap();
    assert!(said.contains("line ") && said.contains("cycle"), "{said}");
    let res = app
        .call(&admin, "/api/admin/save_pipeline", &[("source", &text)])
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        app.count("select count(*) from pipelines where name = 'transcode-and-proxies'")
            .await,
        1
    );

    // A real change: version 2, audited, and its diff against version 1 is that line.
    let res = app
        .call(&admin, "/api/admin/save_pipeline", &[("source", &edited)])
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let v2: serde_json::Value = app
        .call(
            &admin,
            "/api/admin/pipeline_source",
            &[("name", "transcode-and-proxies")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["against"], 1);
    let changed: Vec<&serde_json::Value> = v2["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["change"] != "Same")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0]["right"][1]
        .as_str()
        .unwrap()
        .contains("default: 20"));
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'pipeline.save' and actor_label = 'admin@studio.test'").await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_runs_list_filters_by_day_and_refuses_a_date_it_cannot_read() {
    let app = spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await;
    let runs = super::submit_runs(&app, &super::template("dated", 1, false, 1), 2, 0).await;
    // One of them was submitted a week ago.
    sqlx::query("update runs set created_at = created_at - interval '7 days' where id = $1")
        .bind(runs[0])
        .execute(&app.pool)
        .await
        .unwrap();
    let client = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let listed = |from: String, to: String| {
        let (app, client) = (&app, &client);
        async move {
            let res = app
                .call(
                    client,
                    "/api/runs_view",
                    &[
                        ("filter[state]", ""),
                        ("filter[template]", ""),
                        ("filter[submitter]", ""),
                        ("filter[from]", &from),
                        ("filter[to]", &to),
                    ],
                )
                .await;
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    let today = chrono::Utc::now().date_naive();
    let week_ago = today - chrono::Duration::days(7);
    let (status, body) = listed(today.to_string(), today.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&runs[1].to_string()) && !body.contains(&runs[0].to_string()));
    let (_, body) = listed(week_ago.to_string(), week_ago.to_string()).await;
    assert!(body.contains(&runs[0].to_string()) && !body.contains(&runs[1].to_string()));
    let (_, body) = listed(String::new(), String::new()).await;
    assert!(body.contains(&runs[0].to_string()) && body.contains(&runs[1].to_string()));
    let (status, body) = listed("26/11/2026".into(), String::new()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("is not a date"), "{body}");
    let (status, body) = listed(today.to_string(), week_ago.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("is before"), "{body}");
    // The form to edit and run again starts from a run of that template only.
    server::pipelines::store::seed_builtins(&app.pool)
        .await
        .unwrap();
    let run = runs[0].to_string();
    for (name, want) in [("dated", 200), ("transcode-and-proxies", 404)] {
        let res = app
            .call(
                &client,
                "/api/template_form",
                &[("name", name), ("from", &run)],
            )
            .await;
        assert_eq!(res.status().as_u16(), want, "{name}");
    }
    app.stop().await;
}
