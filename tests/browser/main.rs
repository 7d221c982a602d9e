//! Browser end-to-end tests: the user journeys in headless Chromium (Debian's chromium
//! and chromium-driver), against the real Slate with the built wasm.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use slate_tests::wait::{try_eventually, Probe};
use slate_tests::{eventually, seen, spawn_app, TestApp, ADMIN_EMAIL, PASSWORD};
use tokio::sync::Semaphore;

/// One browser at a time: these machines have two cores.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // ChromeDriver and the Chromium it started share a process group: end them all,
        // also when a test fails half-way.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            if pid > 1 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

async fn browser() -> Browser {
    assert!(
        slate_tests::site_dir().join("pkg/slate_bg.wasm").exists(),
        "target/site/pkg is missing: run scripts/build-site dev (scripts/test does)"
    );
    let driver_path = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
        .expect("chromedriver not found: apt-get install chromium chromium-driver (scripts/setup test does)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new(driver_path)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile =
        std::env::temp_dir().join(format!("slate-chromium-{}", uuid::Uuid::now_v7().simple()));
    let mut options = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", "--window-size=1280,860",
            format!("--user-data-dir={}", profile.display()),
        ]
    });
    if let Some(binary) = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
        options["binary"] = json!(binary);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let webdriver = format!("http://127.0.0.1:{port}");
    let client = eventually("a Chromium session", Duration::from_secs(10), || async {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
            .map_err(|err| err.to_string())
    })
    .await;
    Browser {
        client,
        driver,
        profile,
    }
}

const WAIT: Duration = Duration::from_secs(20);

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => {
            // Leave a picture of the page for whoever reads the failure.
            screenshot(c, "failure").await;
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            panic!("{css} never appeared on {url}: {e} (see target/screenshots/failure.png)")
        }
    }
}

/// Waits for the wasm to hydrate the page (the app marks <body> when it has).
async fn wait_hydrated(c: &Client) {
    wait_for(c, "body[data-hydrated=true]").await;
}

async fn click(c: &Client, css: &str) {
    wait_for(c, css).await.click().await.unwrap();
}

/// Waits until nothing matches `css` any more.
async fn wait_gone(c: &Client, css: &str) {
    on_page(
        c,
        &format!("{css} to go"),
        Duration::from_secs(10),
        || async { c.find(Locator::Css(css)).await.is_err() },
    )
    .await;
}

/// [`eventually`] on the page: a timeout leaves a screenshot for whoever reads it.
async fn on_page<P, F>(
    c: &Client,
    what: &str,
    within: Duration,
    probe: impl FnMut() -> F,
) -> P::Value
where
    F: std::future::Future<Output = P>,
    P: Probe,
{
    match try_eventually(what, within, probe).await {
        Ok(value) => value,
        Err(timed_out) => {
            screenshot(c, "failure").await;
            panic!("{timed_out} (see target/screenshots/failure.png)");
        }
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    wait_for(c, css).await.text().await.unwrap()
}

async fn path(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn wait_path(c: &Client, want: &str) {
    eventually(
        &format!("the page {want}"),
        Duration::from_secs(20),
        || async { seen(path(c).await, |at| at == want) },
    )
    .await;
}

async fn sign_in(c: &Client, app: &TestApp, email: &str) {
    c.goto(&app.url("/login")).await.unwrap();
    wait_hydrated(c).await;
    submit_login(c, email).await;
}

async fn submit_login(c: &Client, email: &str) {
    wait_for(c, "#login-email")
        .await
        .send_keys(email)
        .await
        .unwrap();
    wait_for(c, "#login-password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(c, "#login-form button[type=submit]").await;
}

/// Screenshots land in target/screenshots for people to look at.
async fn screenshot(c: &Client, name: &str) {
    let dir = slate_tests::root().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A screenshot of the whole page, however long, for the pages people scroll.
async fn screenshot_page(c: &Client, name: &str) {
    let height = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .ok()
        .and_then(|h| h.as_u64())
        .unwrap_or(860)
        .clamp(860, 4000) as u32;
    let _ = c.set_window_size(1280, height).await;
    screenshot(c, name).await;
    let _ = c.set_window_size(1280, 860).await;
}

async fn set_marker(c: &Client) {
    c.execute("window.__slateMarker = 'still here'; return true;", vec![])
        .await
        .unwrap();
}

async fn marker_survived(c: &Client) -> bool {
    c.execute("return window.__slateMarker === 'still here';", vec![])
        .await
        .unwrap()
        == json!(true)
}

#[tokio::test]
async fn an_admin_signs_in_sees_the_dashboard_and_signs_out() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    let b = browser().await;
    let c = &b.client;

    c.goto(&app.url("/")).await.unwrap();
    wait_path(c, "/login").await;
    screenshot(c, "sign-in").await;
    wait_hydrated(c).await;
    submit_login(c, ADMIN_EMAIL).await;
    assert_eq!(text_of(c, "#signed-in-as").await, ADMIN_EMAIL);
    wait_path(c, "/").await;
    assert_eq!(text_of(c, ".page-header h1").await, "Dashboard");
    let nav = text_of(c, "nav.nav").await;
    assert!(
        nav.contains("Users") && nav.contains("Tokens") && nav.contains("Audit log"),
        "{nav}"
    );
    wait_for(c, ".stat-card").await;
    screenshot(c, "dashboard").await;

    click(c, "form.signout button").await;
    wait_path(c, "/login").await;
    c.goto(&app.url("/")).await.unwrap();
    wait_path(c, "/login").await;
    let _ = b.client.clone().close().await;
}

#[tokio::test]
async fn a_deep_link_comes_back_after_sign_in_and_a_wrong_password_is_explained() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    let b = browser().await;
    let c = &b.client;

    c.goto(&app.url("/admin/tokens")).await.unwrap();
    wait_path(c, "/login?next=%2Fadmin%2Ftokens").await;
    wait_hydrated(c).await;
    wait_for(c, "#login-email")
        .await
        .send_keys(ADMIN_EMAIL)
        .await
        .unwrap();
    wait_for(c, "#login-password")
        .await
        .send_keys("not the password")
        .await
        .unwrap();
    click(c, "#login-form button[type=submit]").await;
    let error = text_of(c, "#login-form .notice.error").await;
    assert!(error.contains("Sign-in failed"), "{error}");

    wait_for(c, "#login-password").await.clear().await.unwrap();
    wait_for(c, "#login-password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(c, "#login-form button[type=submit]").await;
    wait_path(c, "/admin/tokens").await;
    assert_eq!(text_of(c, ".page-header h1").await, "API tokens");
    let _ = b.client.clone().close().await;
}

#[tokio::test]
async fn a_creator_is_refused_the_admin_pages() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    app.create_user("cara@studio.test", "creator").await;
    let b = browser().await;
    let c = &b.client;

    sign_in(c, &app, "cara@studio.test").await;
    assert_eq!(text_of(c, "#signed-in-as").await, "cara@studio.test");
    let nav = text_of(c, "nav.nav").await;
    assert!(
        !nav.contains("Users") && !nav.contains("Tokens"),
        "admin links hidden: {nav}"
    );

    c.goto(&app.url("/admin/users")).await.unwrap();
    assert_eq!(text_of(c, "h1").await, "Not allowed");
    assert!(text_of(c, ".status-code").await.contains("403"));
    screenshot(c, "forbidden").await;
    let _ = b.client.clone().close().await;
}

#[tokio::test]
async fn an_admin_creates_a_user_and_a_token_without_a_page_reload() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    let b = browser().await;
    let c = &b.client;

    sign_in(c, &app, ADMIN_EMAIL).await;
    wait_path(c, "/").await;
    click(c, "a.nav-link[href='/admin/users']").await;
    wait_path(c, "/admin/users").await;
    wait_for(c, "#users-table").await;
    set_marker(c).await;

    wait_for(c, "#new-user-email")
        .await
        .send_keys("lee@studio.test")
        .await
        .unwrap();
    wait_for(c, "#new-user-role")
        .await
        .select_by_value("lead")
        .await
        .unwrap();
    click(c, "#create-user-form button[type=submit]").await;
    let created = text_of(c, "#user-created").await;
    assert!(created.contains("Added lee@studio.test"), "{created}");
    assert!(
        created.contains("shown only now"),
        "generated password shown: {created}"
    );
    wait_for(c, "#users-table tr[data-email='lee@studio.test']").await;
    assert!(
        marker_survived(c).await,
        "the page was not reloaded: hydration works"
    );
    screenshot(c, "users").await;

    click(c, "a.nav-link[href='/admin/tokens']").await;
    wait_path(c, "/admin/tokens").await;
    wait_for(c, "#token-name")
        .await
        .send_keys("nightly renders")
        .await
        .unwrap();
    wait_for(c, "#token-scope")
        .await
        .select_by_value("api")
        .await
        .unwrap();
    wait_for(c, "#token-owner")
        .await
        .send_keys("lee@studio.test")
        .await
        .unwrap();
    click(c, "#create-token-form button[type=submit]").await;
    let secret = text_of(c, "#token-secret").await;
    wait_for(c, "#tokens-table tr[data-token='nightly renders']").await;
    assert!(marker_survived(c).await, "still no reload");
    screenshot(c, "tokens").await;

    // The secret shown works for a script, as lee.
    let res = app
        .bare_client()
        .post(app.url("/api/dashboard"))
        .bearer_auth(secret.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    click(c, "a.nav-link[href='/admin/audit']").await;
    wait_path(c, "/admin/audit").await;
    let log = text_of(c, "#audit-table").await;
    assert!(
        log.contains("user.create") && log.contains("token.create"),
        "{log}"
    );
    screenshot(c, "audit").await;
    let _ = b.client.clone().close().await;
}

#[tokio::test]
async fn a_creator_drops_two_files_watches_them_upload_and_plays_the_proxy() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    app.create_user("cara@studio.test", "creator").await;
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("shot_020.mp4");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=3:size=640x360:rate=24",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=3",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        clip.to_str().unwrap(),
    ]);
    let still = dir.join("plate.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x480",
        "-frames:v",
        "1",
        still.to_str().unwrap(),
    ]);

    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, "cara@studio.test").await;
    click(c, "a.nav-link[href='/assets']").await;
    wait_path(c, "/assets").await;
    assert!(
        text_of(c, ".empty-state").await.contains("Drop files"),
        "a useful empty library"
    );
    set_marker(c).await;

    // Drag and drop: the files come from a file input WebDriver can fill, then travel in
    // a real DragEvent's DataTransfer to the drop zone.
    c.execute(
        "const i = document.createElement('input'); i.type = 'file'; i.multiple = true; i.id = 'e2e-files'; document.body.appendChild(i); return true;",
        vec![],
    )
    .await
    .unwrap();
    let paths = format!("{}\n{}", clip.display(), still.display());
    wait_for(c, "#e2e-files")
        .await
        .send_keys(&paths)
        .await
        .unwrap();
    c.execute(
        "const dt = new DataTransfer(); for (const f of document.getElementById('e2e-files').files) dt.items.add(f);
         document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
         return dt.files.length;",
        vec![],
    )
    .await
    .unwrap();
    wait_for(c, "#upload-queue li[data-name='shot_020.mp4'] progress").await;
    wait_for(
        c,
        "#upload-queue li[data-name='shot_020.mp4'][data-status=done]",
    )
    .await;
    wait_for(
        c,
        "#upload-queue li[data-name='plate.png'][data-status=done]",
    )
    .await;
    let value = wait_for(c, "#upload-queue li[data-name='plate.png'] progress")
        .await
        .attr("value")
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("100.0"));

    // Processing finishes on the server; the grid follows by server push, no reload.
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(
            ".asset-tile[data-name='shot_020.mp4'] .thumb img",
        ))
        .await
        .expect("the video's thumbnail appears");
    wait_for(c, ".asset-tile[data-name='plate.png'] .thumb img").await;
    assert!(
        marker_survived(c).await,
        "the library updated without a reload"
    );
    screenshot(c, "assets").await;

    click(c, ".asset-tile[data-name='shot_020.mp4']").await;
    let facts = text_of(c, "#asset-facts").await;
    assert!(
        facts.contains("640 × 360") && facts.contains("0:03"),
        "{facts}"
    );
    wait_for(c, "video.preview").await;
    let played = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; const v = document.querySelector('video.preview'); v.muted = true;
             v.play().then(() => setTimeout(() => done({ time: v.currentTime, duration: v.duration }), 1500))
              .catch(e => done({ error: String(e) }));",
            vec![],
        )
        .await
        .unwrap();
    assert!(played["error"].is_null(), "the proxy plays: {played}");
    assert!(
        played["time"].as_f64().unwrap() > 0.2,
        "playback advanced: {played}"
    );
    assert!(
        (played["duration"].as_f64().unwrap() - 3.0).abs() < 0.3,
        "{played}"
    );
    screenshot(c, "asset").await;
    let _ = b.client.clone().close().await;
}

#[tokio::test]
async fn an_upload_cut_off_by_a_reload_says_so_and_continues_when_the_file_is_chosen_again() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let dir = std::env::temp_dir().join(format!("slate-reload-{}", uuid::Uuid::now_v7().simple()));
    let (big, want) = big_file(&dir, "plate_4k.exr", 96);
    let other = dir.join("plate_4k_other.exr");
    std::fs::write(&other, b"not the same file").unwrap();
    let app = spawn_app().await;

    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, ADMIN_EMAIL).await;
    wait_path(c, "/").await;
    c.goto(&app.url("/assets")).await.unwrap();
    wait_hydrated(c).await;
    wait_for(c, "#dropzone input[type=file]")
        .await
        .send_keys(&big.display().to_string())
        .await
        .unwrap();
    // Reload as soon as part of the file is on the server.
    wait_part_received(&app).await;
    c.refresh().await.unwrap();
    wait_hydrated(c).await;
    assert_eq!(
        app.count("select count(*) from uploads where state = 'complete'")
            .await,
        0,
        "cut off before the end"
    );

    // The library says what happened and how to go on.
    let tile = ".asset-tile[data-name='plate_4k.exr']";
    wait_text(
        c,
        &format!("{tile} .interrupted"),
        "choose the same file again to resume",
    )
    .await;
    assert!(text_of(c, &format!("{tile} .interrupted"))
        .await
        .starts_with("Upload interrupted at "));
    c.execute(
        "document.querySelector(arguments[0]).scrollIntoView({ block: 'center' }); return true;",
        vec![json!(tile)],
    )
    .await
    .unwrap();
    screenshot(c, "upload-interrupted-library").await;
    // So does the asset's page, with how far it got once the cut-off request has ended.
    // The cut-off request lets go of the upload when the server sees the connection
    // end, or its 15 s lease runs out; either way its bytes are counted by then.
    eventually(
        "the cut-off request to end or lose its lease",
        Duration::from_secs(30),
        || async {
            let held = app
                .count("select count(*) from uploads where lease_until > now()")
                .await;
            seen(held, |n| *n == 0)
        },
    )
    .await;
    let (received, length): (i64, i64) =
        sqlx::query_as("select received, length from uploads where state = 'receiving'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let percent = received * 100 / length;
    assert!((1..100).contains(&percent), "{received} of {length}");
    click(c, &format!("{tile} a.tile-link")).await;
    wait_text(
        c,
        ".interrupted",
        &format!("Upload interrupted at {percent} % — choose the same file again to resume"),
    )
    .await;
    set_marker(c).await;
    screenshot(c, "upload-interrupted-asset").await;

    // Another file is refused, with the reason.
    wait_for(c, ".interrupted input[type=file]")
        .await
        .send_keys(&other.display().to_string())
        .await
        .unwrap();
    wait_text(
        c,
        ".interrupted .interrupted-error",
        "choose plate_4k.exr (96.0 MiB)",
    )
    .await;
    assert_eq!(
        app.count("select count(*) from uploads").await,
        1,
        "nothing started"
    );

    // The same file continues the same upload, from where the server stopped.
    wait_for(c, ".interrupted input[type=file]")
        .await
        .send_keys(&big.display().to_string())
        .await
        .unwrap();
    let row = "#upload-queue li[data-name='plate_4k.exr']";
    wait_text(c, &format!("{row} .upload-detail"), "resumed at").await;
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css(&format!("{row}[data-status=done]")))
        .await
        .expect("the upload finishes");
    assert_eq!(
        app.count("select count(*) from uploads where state <> 'terminated'")
            .await,
        1,
        "the same upload, continued"
    );
    let stored_sha = eventually(
        "the stored file's digest",
        Duration::from_secs(60),
        || async {
            sqlx::query_scalar::<_, Option<String>>("select sha256 from asset_versions")
                .fetch_one(&app.pool)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(stored_sha, want, "the stored file is intact");
    // The page follows: no more note.
    wait_gone(c, ".interrupted").await;
    assert!(marker_survived(c).await, "continued without a reload");
    let _ = b.client.clone().close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The health of a box as the page shows it (read from the live DOM).
async fn box_health(c: &Client, id: &str) -> Option<String> {
    let v = c
        .execute(
            "const g = document.querySelector(`#diagram g[data-node=\"${arguments[0]}\"]`); return g ? g.getAttribute('data-health') : null;",
            vec![json!(id)],
        )
        .await
        .unwrap();
    v.as_str().map(str::to_owned)
}

async fn wait_box_health(c: &Client, id: &str, want: &str) {
    on_page(
        c,
        &format!("{id} to be {want}"),
        Duration::from_secs(10),
        || async {
            seen(box_health(c, id).await, |health| {
                health.as_deref() == Some(want)
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_lead_watches_a_deployment_degrade_and_recover_without_a_reload() {
    use slate_tests::kube_fixtures::*;
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let fake = slate_tests::fake_kube::FakeKube::start().await;
    apply_settled_base(&fake);
    let kubeconfig = std::env::temp_dir().join(format!(
        "slate-browser-kubeconfig-{}",
        uuid::Uuid::now_v7().simple()
    ));
    fake.write_kubeconfig(&kubeconfig);
    let app = slate_tests::spawn_app_with(|config| {
        config.kube = server::config::KubeMode::Auto;
        config.kubeconfig = Some(kubeconfig.display().to_string());
    })
    .await;
    app.create_user("lead@studio.test", "lead").await;
    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, "lead@studio.test").await;
    click(c, "a.nav-link[href='/architecture']").await;
    wait_for(c, "#diagram svg").await;
    wait_hydrated(c).await;
    wait_box_health(c, "Deployment/slate", "healthy").await;
    assert!(text_of(c, "#cluster-status")
        .await
        .contains("Live from the cluster"));
    set_marker(c).await;

    // The rollout stalls in the cluster: the box turns degraded, with the reason.
    set_deployment_stalled(&fake, "slate", true);
    wait_box_health(c, "Deployment/slate", "degraded").await;
    let title = c
        .execute(
            "return document.querySelector('#diagram g[data-node=\"Deployment/slate\"] title').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        title.as_str().unwrap().contains("timed out progressing"),
        "{title}"
    );
    screenshot(c, "architecture-degraded").await;

    // Open its panel from the keyboard.
    c.execute(
        "document.querySelector('#diagram g[data-node=\"Deployment/slate\"]').focus(); return true;",
        vec![],
    )
    .await
    .unwrap();
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    let panel = text_of(c, "#node-panel").await;
    assert!(panel.contains("Deployment/slate"), "{panel}");
    wait_for(c, "#node-panel table").await;
    assert!(text_of(c, "#node-panel")
        .await
        .contains("ProgressDeadlineExceeded"));
    screenshot(c, "architecture-panel").await;

    // It recovers, and the page follows.
    set_deployment_stalled(&fake, "slate", false);
    wait_box_health(c, "Deployment/slate", "healthy").await;

    // The API server goes away: the page says so and keeps the picture.
    fake.stop().await;
    wait_text_for(
        c,
        "#cluster-status",
        "Cluster unreachable since",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        box_health(c, "Deployment/slate").await.as_deref(),
        Some("healthy")
    );
    fake.restart().await;
    wait_text_for(
        c,
        "#cluster-status",
        "Live from the cluster",
        Duration::from_secs(10),
    )
    .await;
    assert!(marker_survived(c).await, "all of it without a reload");
    drop(b);
    app.stop().await;
    let _ = std::fs::remove_file(kubeconfig);
}

async fn wait_text(c: &Client, css: &str, want: &str) {
    wait_text_for(c, css, want, Duration::from_secs(15)).await
}

/// [`wait_text`] for work that takes a while (a transcode on a busy machine).
async fn wait_text_for(c: &Client, css: &str, want: &str, at_most: Duration) {
    on_page(c, &format!("{css} to say {want:?}"), at_most, || async {
        match c.find(Locator::Css(css)).await {
            Ok(e) => seen(e.text().await.unwrap_or_default(), |t| t.contains(want)),
            Err(_) => Err(format!("no {css}")),
        }
    })
    .await;
}

#[tokio::test]
async fn an_admin_sees_the_colab_endpoint_go_down_and_come_back_without_a_reload() {
    use slate_tests::fake_comfy::{FakeComfy, Mode};
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = slate_tests::spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.colab_check_seconds = 1;
    })
    .await;
    let comfy = FakeComfy::start(Mode::Current).await;
    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, ADMIN_EMAIL).await;
    click(c, "a.nav-link[href='/admin/colab']").await;
    wait_for(c, "#colab-current").await;
    wait_hydrated(c).await;
    assert!(text_of(c, "#colab-current").await.contains("No endpoint"));
    set_marker(c).await;

    // Set by hand from the page: verified, then healthy with its GPU.
    wait_for(c, "#endpoint-input")
        .await
        .send_keys(&comfy.url())
        .await
        .unwrap();
    click(c, "#set-endpoint-form button[type=submit]").await;
    wait_text(c, "#colab-current", "Healthy").await;
    wait_text(c, "#endpoint-gpu", "Tesla T4").await;
    screenshot(c, "colab-healthy").await;

    // The tunnel dies: three failed checks later the page says so by itself.
    comfy.set_mode(Mode::Cloudflare(530));
    wait_text(c, "#colab-current", "No endpoint").await;
    wait_text(c, "#colab-history", "3 checks failed in a row").await;
    screenshot(c, "colab-down").await;

    // The notebook comes back with a new `up`: the page follows.
    comfy.set_mode(Mode::Current);
    let colab = server::colab::Colab::new(
        app.pool.clone(),
        server::comfyui::address::HostRules::parse("", true),
        Duration::from_secs(2),
    );
    let secret = colab
        .rotate_secret(&server::audit::Who::cli())
        .await
        .unwrap();
    let body = json!({"event": "up", "event_id": "again", "notebook_id": "nb", "url": comfy.url()})
        .to_string();
    let t = chrono::Utc::now().timestamp();
    let res = app
        .bare_client()
        .post(app.url("/api/colab/endpoint"))
        .header(
            "x-slate-signature",
            server::colab::signature::sign(secret.as_bytes(), t, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    wait_text(c, "#colab-current", "Healthy").await;
    assert!(marker_survived(c).await, "all of it without a reload");
    drop(b);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_sees_a_new_revision_live_opens_its_diff_and_rolls_back() {
    use slate_tests::kube_fixtures::*;
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let fake = slate_tests::fake_kube::FakeKube::start().await;
    fake.enable_deployment_controller();
    apply_settled_base(&fake);
    let kubeconfig = std::env::temp_dir().join(format!(
        "slate-browser-deploys-{}",
        uuid::Uuid::now_v7().simple()
    ));
    fake.write_kubeconfig(&kubeconfig);
    let app = slate_tests::spawn_app_with(|config| {
        config.kube = server::config::KubeMode::Auto;
        config.kubeconfig = Some(kubeconfig.display().to_string());
    })
    .await;
    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, ADMIN_EMAIL).await;
    click(c, "a.nav-link[href='/deploys']").await;
    wait_for(c, "#rollout-deployment-blender").await;
    wait_hydrated(c).await;
    wait_text(c, "#timeline", "Deployment/blender · Revision 1").await;
    set_marker(c).await;

    // Someone sets a new image by hand: the revision appears without a reload.
    let mut blender = fake
        .get("apps/v1", "Deployment", "ai-film", "blender")
        .unwrap();
    blender["metadata"]["annotations"]["kubernetes.io/change-cause"] =
        json!("kubectl set image blender=blender:4.3.0");
    blender["spec"]["template"]["spec"]["containers"][0]["image"] = json!("blender:4.3.0");
    fake.apply(blender);
    wait_text(c, "#timeline", "Deployment/blender · Revision 2").await;
    wait_text(c, "#rollout-deployment-blender", "blender:4.3.0").await;
    // And a stalled rollout elsewhere says why, live.
    set_deployment_stalled(&fake, "slate", true);
    wait_text(c, "#rollout-deployment-slate", "progress deadline exceeded").await;
    assert!(marker_survived(c).await, "the page was not reloaded");

    // Open revision 2's diff: the image line changed.
    let entry = wait_for(c, "#timeline li.entry-revision:first-child a.btn").await;
    entry.click().await.unwrap();
    wait_for(c, "#template-diff tr.changed").await;
    let changed = text_of(c, "#template-diff tr.changed").await;
    assert!(
        changed.contains("blender:4.3.0") && changed.contains("image"),
        "{changed}"
    );
    wait_text(c, "#diff-summary", "between revision 1 and revision 2").await;
    screenshot(c, "deploys-diff").await;
    screenshot_page(c, "deploys-page").await;

    // Roll back to revision 1 from its own entry, after reading the confirmation.
    let first = c
        .find(Locator::XPath(
            "//ol[@id='timeline']/li[contains(., 'Deployment/blender · Revision 1')]//a[contains(@class, 'btn')]",
        ))
        .await
        .unwrap();
    first.click().await.unwrap();
    wait_text(c, "#diff-title", "revision 1").await;
    click(c, "#rollback-open").await;
    wait_text(c, "#rollback-confirm", "running now").await;
    wait_for(c, "#rollback-confirm #template-diff tr.changed").await;
    wait_for(c, "#rollback-reason")
        .await
        .send_keys("4.3.0 crashes on GPU nodes")
        .await
        .unwrap();
    screenshot(c, "deploys-rollback-confirm").await;
    click(c, "#rollback-confirm-button").await;
    wait_text(
        c,
        "#deploy-message",
        "Rolled Deployment/blender back to revision 1",
    )
    .await;
    wait_text(c, "#timeline", "Deployment/blender · Revision 3").await;
    wait_text(c, "#timeline", "4.3.0 crashes on GPU nodes").await;
    let image = fake
        .get("apps/v1", "Deployment", "ai-film", "blender")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .clone();
    assert_ne!(image, json!("blender:4.3.0"));
    assert!(marker_survived(c).await, "the page was not reloaded");
    screenshot(c, "deploys").await;
    // The template editor, for a look.
    c.goto(&app.url("/admin/pipelines?name=keyframes-to-animatic&version=1"))
        .await
        .unwrap();
    wait_for(c, "#template-source").await;
    screenshot_page(c, "templates").await;
    drop(b);
    app.stop().await;
    let _ = std::fs::remove_file(kubeconfig);
}

#[tokio::test]
async fn a_creator_submits_a_transcode_from_the_form_watches_it_and_opens_the_output() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    app.create_user("cleo@studio.test", "creator").await;
    // A clip in the library to transcode.
    let clip = slate_tests::test_clip(&app, "clip.mov", 3);
    let tus = slate_tests::tus::Tus::new(&app).await;
    let (_, state) = tus
        .upload("shot_030.mov", &std::fs::read(&clip).unwrap())
        .await;
    assert_eq!(state, "ready");

    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, "cleo@studio.test").await;
    click(c, "a.nav-link[href='/runs']").await;
    wait_for(c, "#new-run").await;
    wait_hydrated(c).await;
    click(c, "#new-run").await;
    click(c, "a.template-card[href*='transcode-and-proxies']").await;
    wait_for(c, "#run-form").await;
    screenshot(c, "run-form").await;
    // The browser checks the form first: out of range is stopped before any request.
    let crf = wait_for(c, "#param-crf").await;
    crf.clear().await.unwrap();
    crf.send_keys("99").await.unwrap();
    let valid = c
        .execute(
            "return document.querySelector('#run-form').checkValidity();",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        valid,
        json!(false),
        "crf 99 is out of range in the browser too"
    );
    crf.clear().await.unwrap();
    crf.send_keys("30").await.unwrap();
    c.execute(
        "const s = document.querySelector('#param-source'); s.selectedIndex = 1; s.dispatchEvent(new Event('change')); return true;",
        vec![],
    )
    .await
    .unwrap();
    click(c, "#run-submit").await;
    // The run's page, followed live to the end.
    wait_for(c, "#run-stages").await;
    assert!(path(c).await.starts_with("/runs/"));
    set_marker(c).await;
    let run_path = path(c).await;
    wait_text_for(c, "#run-head", "succeeded", Duration::from_secs(120)).await;
    wait_for(c, "#run-outputs a.asset-tile[data-name='proxy-540p.mp4']").await;
    assert!(marker_survived(c).await, "followed without a reload");
    wait_text(c, "#run-log", "Output #0").await;
    // Each attempt's whole log, archived when it ended.
    let whole = wait_for(c, "#run-attempts a[href$='/log']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    screenshot_page(c, "run").await;
    click(c, "#run-outputs a.asset-tile[data-name='mezzanine.mp4']").await;
    wait_for(c, "video").await;
    c.goto(&app.url(&whole)).await.unwrap();
    wait_text(c, "pre, body", "$ ffmpeg").await;
    // Edit and run again: the form comes filled with this run's values.
    c.goto(&app.url(&run_path)).await.unwrap();
    wait_hydrated(c).await;
    click(c, "#run-edit").await;
    wait_for(c, "#run-form").await;
    let filled = c
        .execute(
            "return [document.querySelector('#param-crf').value, document.querySelector('#param-source').selectedOptions[0].textContent];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        filled,
        json!(["30", "shot_030.mov"]),
        "the run's quality and its clip"
    );
    // The list: the run with its state, filterable by day.
    c.goto(&app.url("/runs")).await.unwrap();
    wait_text(c, "#runs", "Transcode and proxies").await;
    wait_for(c, "#r-from").await;
    screenshot_page(c, "runs").await;
    drop(b);
    app.stop().await;
}

/// How much of a bar is drawn, 0–1: in a screenshot of the bar, the share of its middle
/// row that is not the bar's own background (the track). This is what a person sees,
/// whatever draws the fill (a style refused by the CSP draws it full).
async fn drawn_fraction(c: &Client, css: &str) -> f64 {
    use base64::Engine as _;
    let png = wait_for(c, css).await.screenshot().await.unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    let measured = c
        .execute_async(
            "const [css, data, done] = arguments;
             const track = getComputedStyle(document.querySelector(css)).backgroundColor.match(/[\\d.]+/g).map(Number);
             const img = new Image();
             img.onerror = () => done({ error: 'the screenshot is unreadable' });
             img.onload = () => {
                 const canvas = document.createElement('canvas');
                 canvas.width = img.width; canvas.height = img.height;
                 const g = canvas.getContext('2d');
                 g.drawImage(img, 0, 0);
                 const row = g.getImageData(0, Math.floor(img.height / 2), img.width, 1).data;
                 let filled = 0;
                 for (let x = 0; x < img.width; x++) {
                     const d = Math.abs(row[4 * x] - track[0]) + Math.abs(row[4 * x + 1] - track[1]) + Math.abs(row[4 * x + 2] - track[2]);
                     if (d > 100) filled++;
                 }
                 done({ filled, width: img.width });
             };
             img.src = 'data:image/png;base64,' + data;",
            vec![json!(css), json!(data)],
        )
        .await
        .unwrap();
    assert!(measured["error"].is_null(), "{css}: {measured}");
    let width = measured["width"].as_f64().unwrap();
    assert!(width > 20.0, "{css} is drawn {width} px wide");
    measured["filled"].as_f64().unwrap() / width
}

/// Waits until the bar at `css` is drawn at `want` (within two hundredths and a pixel or
/// two), as the page follows the server.
async fn wait_drawn(c: &Client, css: &str, want: f64) {
    on_page(
        c,
        &format!("{css} to be drawn at {:.1} %", want * 100.0),
        Duration::from_secs(15),
        || async {
            let drawn = drawn_fraction(c, css).await;
            if (drawn - want).abs() <= 0.025 {
                Ok(())
            } else {
                Err(format!("{:.1} %", drawn * 100.0))
            }
        },
    )
    .await;
}

/// Keeps what the page's code reports as going wrong (panics reach console.error through
/// the panic hook; a trapped wasm raises an error event) for [`page_errors`].
async fn collect_page_errors(c: &Client) {
    c.execute(
        "window.__slateErrors = [];
         const keep = console.error;
         console.error = (...a) => { window.__slateErrors.push(a.map(String).join(' ')); keep.apply(console, a); };
         window.addEventListener('error', e => window.__slateErrors.push('uncaught: ' + e.message));
         window.addEventListener('unhandledrejection', e => window.__slateErrors.push('unhandled: ' + String(e.reason)));
         return true;",
        vec![],
    )
    .await
    .unwrap();
}

async fn page_errors(c: &Client) -> Vec<String> {
    let errors = c
        .execute("return window.__slateErrors || ['the error collector is gone (the page was reloaded)'];", vec![])
        .await
        .unwrap();
    serde_json::from_value(errors).unwrap()
}

/// Whether leaving the page now would be stopped to ask first (a beforeunload listener
/// cancels the event).
async fn leaving_asks(c: &Client) -> bool {
    c.execute(
        "const e = new Event('beforeunload', { cancelable: true }); window.dispatchEvent(e); return e.defaultPrevented;",
        vec![],
    )
    .await
    .unwrap()
        == json!(true)
}

/// A file of `mib` MiB that compresses badly, and its SHA-256.
fn big_file(dir: &std::path::Path, name: &str, mib: u32) -> (PathBuf, String) {
    use sha2::Digest as _;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let data: Vec<u8> = (0..mib * 1024 * 1024 / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    std::fs::write(&path, &data).unwrap();
    let sha = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (path, sha)
}

/// Waits until part of an upload is on the server, and returns how much.
async fn wait_part_received(app: &TestApp) -> i64 {
    eventually(
        "a part of the file to arrive",
        Duration::from_secs(10),
        || async {
            let stored: i64 = sqlx::query_scalar("select coalesce(max(received), 0) from uploads")
                .fetch_one(&app.pool)
                .await
                .unwrap();
            seen(stored, |n| *n > 0)
        },
    )
    .await
}

async fn wait_asset_state(app: &TestApp, name: &str, want: &str) {
    eventually(
        &format!("{name} to be {want}"),
        Duration::from_secs(60),
        || async {
            let state = sqlx::query_scalar::<_, String>(
                "select state from assets where name = $1 and deleted_at is null",
            )
            .bind(name)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
            seen(state, |s| s.as_deref() == Some(want))
        },
    )
    .await;
}

#[tokio::test]
async fn an_upload_goes_on_in_the_tray_while_its_uploader_moves_around_the_app() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let dir = std::env::temp_dir().join(format!("slate-tray-{}", uuid::Uuid::now_v7().simple()));
    let (big, sha) = big_file(&dir, "take_07.bin", 64);
    let app = spawn_app().await;
    app.create_user("cara@studio.test", "creator").await;
    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, "cara@studio.test").await;
    click(c, "a.nav-link[href='/assets']").await;
    wait_path(c, "/assets").await;
    wait_hydrated(c).await;
    set_marker(c).await;
    collect_page_errors(c).await;
    assert!(!leaving_asks(c).await, "nothing to lose yet");

    wait_for(c, "#dropzone input[type=file]")
        .await
        .send_keys(&big.display().to_string())
        .await
        .unwrap();
    let row = "#upload-tray li[data-name='take_07.bin']";
    wait_part_received(&app).await;
    // Paused, so that it is still unfinished whatever the machine's speed.
    c.find(Locator::XPath(
        "//ul[@id='upload-queue']/li[@data-name='take_07.bin']//button[normalize-space()='Pause']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(
        c,
        "#upload-queue li[data-name='take_07.bin'][data-status=paused]",
    )
    .await;

    // Away from the Assets page, in the app: the tray is still there with the upload.
    click(c, "a.nav-link[href='/runs']").await;
    wait_path(c, "/runs").await;
    wait_for(c, "#new-run").await;
    wait_for(c, &format!("{row}[data-status=paused]")).await;
    let detail = text_of(c, &format!("{row} .upload-detail")).await;
    assert!(detail.starts_with("Paused at "), "{detail}");
    assert!(
        text_of(c, "#upload-tray .tray-toggle")
            .await
            .contains("1 file paused"),
        "the tray says what goes on"
    );
    assert!(
        leaving_asks(c).await,
        "a paused upload would be dropped by a reload: the page asks"
    );
    // The tray's bar is drawn at the fraction it states.
    let value: f64 = wait_for(c, &format!("{row} progress"))
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(value > 0.0 && value < 100.0, "{value}");
    wait_drawn(c, &format!("{row} progress"), value / 100.0).await;
    screenshot(c, "upload-tray").await;

    // Collapsed from the keyboard and opened again.
    wait_for(c, "#upload-tray-toggle")
        .await
        .send_keys("\u{E007}")
        .await
        .unwrap();
    wait_for(c, "#upload-tray.collapsed").await;
    assert_eq!(
        wait_for(c, "#upload-tray-toggle")
            .await
            .attr("aria-expanded")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    screenshot(c, "upload-tray-collapsed").await;
    wait_for(c, "#upload-tray-toggle")
        .await
        .send_keys("\u{E007}")
        .await
        .unwrap();
    wait_for(c, "#upload-tray:not(.collapsed)").await;

    // On a small screen the tray takes the width at the bottom.
    c.set_window_size(390, 800).await.unwrap();
    screenshot(c, "upload-tray-narrow").await;
    c.set_window_size(1280, 860).await.unwrap();

    // Resumed, and the uploader moves on again while it runs.
    click(c, &format!("{row} button[aria-label='Resume take_07.bin']")).await;
    click(c, "a.nav-link[href='/']").await;
    wait_path(c, "/").await;
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css(&format!("{row}[data-status=done]")))
        .await
        .expect("the upload finishes on another page");
    assert!(!leaving_asks(c).await, "nothing left to lose");
    wait_asset_state(&app, "take_07.bin", "ready").await;
    let stored: Option<String> = sqlx::query_scalar(
        "select v.sha256 from asset_versions v join assets a on a.id = v.asset_id where a.name = 'take_07.bin'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(sha.as_str()),
        "the file arrived whole"
    );

    // Back in the library (in the app) the asset is ready, and the tray clears.
    click(c, "a.nav-link[href='/assets']").await;
    wait_for(c, ".asset-tile[data-name='take_07.bin']").await;
    wait_text(
        c,
        ".asset-tile[data-name='take_07.bin'] .tile-meta",
        "64.0 MiB",
    )
    .await;
    assert!(
        c.find(Locator::Css(
            ".asset-tile[data-name='take_07.bin'] .state-badge"
        ))
        .await
        .is_err(),
        "ready: no state badge"
    );
    click(c, "#upload-clear").await;
    // An empty tray goes away.
    wait_gone(c, "#upload-tray").await;
    assert!(marker_survived(c).await, "all of it without a reload");
    assert_eq!(
        page_errors(c).await,
        Vec::<String>::new(),
        "no errors in the page"
    );
    let _ = b.client.clone().close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn progress_bars_are_drawn_at_their_fraction_after_in_app_navigation_and_live_updates() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = spawn_app().await;
    // A run held at a known point: its transcode a quarter done, the proxy waiting for it.
    let run = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into runs (id, pipeline_id, params, state, submitted_by, started_at)
         select $1, p.id, '{}'::jsonb, 'running', u.id, now() from pipelines p, users u
         where p.name = 'transcode-and-proxies' and u.email = $2 order by p.version desc limit 1",
    )
    .bind(run)
    .bind(ADMIN_EMAIL)
    .execute(&app.pool)
    .await
    .unwrap();
    for (name, state, needs, progress) in [
        ("mezzanine", "running", vec![], Some(0.25f32)),
        ("proxy", "waiting", vec!["mezzanine".to_owned()], None),
    ] {
        sqlx::query(
            "insert into run_stages (id, run_id, name, executor, needs, state, priority, attempts_max,
                                     attempt, progress, lease_owner, lease_until, queued_at, started_at)
             values ($1, $2, $3, 'local', $4, $5, 0, 1, 1, $6, $7, now() + interval '1 hour', now(), now())",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(run)
        .bind(name)
        .bind(needs)
        .bind(state)
        .bind(progress)
        .bind(uuid::Uuid::now_v7())
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, ADMIN_EMAIL).await;
    wait_path(c, "/").await;
    wait_hydrated(c).await;
    set_marker(c).await;
    collect_page_errors(c).await;

    // The runs list, reached in the app: the run is an eighth done (a quarter of one of two).
    click(c, "a.nav-link[href='/runs']").await;
    // `.progress` is whatever draws a bar.
    let listed = format!("#runs tr[data-run='{run}'] .progress");
    wait_drawn(c, &listed, 0.125).await;

    // Its page: each stage's bar at its own fraction, the run's at the average.
    click(c, &format!("#runs tr[data-run='{run}'] a")).await;
    let encode = "li.stage[data-stage='mezzanine'] .progress";
    let proxy = "li.stage[data-stage='proxy'] .progress";
    wait_drawn(c, encode, 0.25).await;
    wait_drawn(c, proxy, 0.0).await;
    wait_drawn(c, "#run-head .progress", 0.125).await;

    // The stage moves on: the page follows by server push and redraws the bars.
    sqlx::query("update run_stages set progress = 0.6 where run_id = $1 and name = 'mezzanine'")
        .bind(run)
        .execute(&app.pool)
        .await
        .unwrap();
    wait_drawn(c, encode, 0.6).await;
    wait_drawn(c, "#run-head .progress", 0.3).await;
    wait_drawn(c, proxy, 0.0).await;
    screenshot(c, "run-progress").await;

    // And back in the list, in the app.
    click(c, "a.nav-link[href='/runs']").await;
    wait_drawn(c, &listed, 0.3).await;
    assert!(marker_survived(c).await, "all of it without a reload");
    assert_eq!(
        page_errors(c).await,
        Vec::<String>::new(),
        "no errors in the page"
    );
    drop(b);
    app.stop().await;
}

/// Sets a form control's value as a paste would, for long texts that typing key by key
/// would make slow.
async fn paste(c: &Client, css: &str, text: &str) {
    wait_for(c, css).await;
    c.execute(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true})); return true;",
        vec![json!(css), json!(text)],
    )
    .await
    .unwrap();
}

/// A screenshot of the whole page at a phone's width, then back to the desktop size.
async fn screenshot_narrow(c: &Client, name: &str) {
    let _ = c.set_window_size(390, 860).await;
    let height = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .ok()
        .and_then(|h| h.as_u64())
        .unwrap_or(860)
        .clamp(860, 6000) as u32;
    let _ = c.set_window_size(390, height).await;
    screenshot(c, name).await;
    let _ = c.set_window_size(1280, 860).await;
}

#[tokio::test]
async fn a_lead_adds_a_workflow_binds_two_inputs_and_runs_it_from_the_generated_form() {
    use slate_tests::fake_comfy::{FakeComfy, Mode, DEFAULT_CHECKPOINT};
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let app = slate_tests::spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.comfyui_poll_ms = 100;
    })
    .await;
    app.create_user("lena@studio.test", "lead").await;
    // The fake ComfyUI is the GPU endpoint, as the notebook reports it.
    let comfy = FakeComfy::start(Mode::Current).await;
    let secret = slate_tests::colab_secret(&app).await;
    slate_tests::colab_up(&app, &secret, "wf-1", &comfy.url()).await;
    eventually(
        "the endpoint to be healthy",
        Duration::from_secs(10),
        || async {
            let healthy = app
                .count("select count(*) from colab_endpoints where state = 'healthy'")
                .await;
            seen(healthy, |n| *n == 1)
        },
    )
    .await;
    // The bundled text-to-image graph, as ComfyUI's "Export (API)" writes one, with the
    // checkpoint the endpoint has.
    let bundle: serde_json::Value =
        serde_json::from_str(include_str!("../../app/src/comfyui/builtin/txt2img.json")).unwrap();
    let mut graph = bundle["graph"].clone();
    graph["4"]["inputs"]["ckpt_name"] = json!(DEFAULT_CHECKPOINT);

    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, "lena@studio.test").await;
    click(c, "a.nav-link[href='/workflows']").await;
    wait_text(c, "#workflows", "txt2img").await;
    wait_hydrated(c).await;
    collect_page_errors(c).await;
    screenshot_page(c, "workflows").await;
    screenshot_narrow(c, "workflows-narrow").await;

    // The editor's format is refused, saying how to export the API one.
    wait_for(c, "#wf-name")
        .await
        .send_keys("storyboard")
        .await
        .unwrap();
    wait_for(c, "#wf-title")
        .await
        .send_keys("Storyboard frames")
        .await
        .unwrap();
    let ui = json!({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler", "widgets_values": [0, "fixed", 20]}],
        "links": [[1, 4, 0, 3, 0, "MODEL"]], "version": 0.4});
    paste(c, "#wf-json", &ui.to_string()).await;
    click(c, "#workflow-add-submit").await;
    wait_text(c, "#workflow-add-error", "Export (API)").await;
    assert_eq!(
        path(c).await,
        "/workflows",
        "nothing stored, still on the list"
    );
    // The same refusal for the file, beside the file form.
    let dir = std::env::temp_dir().join(format!("slate-wf-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ui_file = dir.join("editor-format.json");
    std::fs::write(&ui_file, ui.to_string()).unwrap();
    wait_for(c, "#wf-file-name")
        .await
        .send_keys("from-a-file")
        .await
        .unwrap();
    wait_for(c, "#wf-file-title")
        .await
        .send_keys("From a file")
        .await
        .unwrap();
    wait_for(c, "#wf-file")
        .await
        .send_keys(&ui_file.display().to_string())
        .await
        .unwrap();
    click(c, "#workflow-import-submit").await;
    wait_text(c, "#workflow-import-error", "Export (API)").await;
    assert_eq!(path(c).await, "/workflows");
    let _ = std::fs::remove_dir_all(&dir);

    // The API format is taken: its page, with every literal input in the editor.
    paste(c, "#wf-json", &graph.to_string()).await;
    click(c, "#workflow-add-submit").await;
    wait_path(c, "/workflows/storyboard?version=1").await;
    wait_for(c, "#binding-editor").await;
    wait_text(c, "#workflow-changes", "First version").await;
    wait_text(c, "#workflow-no-template", "Save its bindings").await;
    wait_text(c, "#nodes", "CheckpointLoaderSimple").await;
    screenshot_page(c, "workflow").await;
    screenshot_narrow(c, "workflow-narrow").await;

    // Bind the prompt and the steps only (Slate proposed more), and save.
    let ticked = c
        .execute(
            "const keep = (n, i) => (n === '6' && i === 'text') || (n === '3' && i === 'steps');
             for (const tr of document.querySelectorAll('#binding-editor tbody tr')) {
               const box = tr.querySelector('input.bind-toggle');
               if (box.checked !== keep(tr.dataset.node, tr.dataset.input)) box.click();
             }
             return [...document.querySelectorAll('#binding-editor input.bind-toggle:checked')]
               .map(b => b.closest('tr').dataset.node + '.' + b.closest('tr').dataset.input);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ticked, json!(["3.steps", "6.text"]));
    wait_text(c, "#binding-count", "2 bound").await;
    let names = c
        .execute(
            "return [...document.querySelectorAll('#binding-editor tr.bound input.b-name')].map(i => i.value);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(names, json!(["steps", "prompt"]), "Slate's names for them");
    click(c, "#bindings-save").await;
    wait_path(c, "/workflows/storyboard?version=2").await;
    wait_text(c, "#bindings-saved", "version 2").await;
    wait_text(c, "#workflow-changes", "+ binding prompt").await;
    let line = wait_for(c, "#workflow-snippet")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("workflow: storyboard@2"));

    // The version before stays readable, and the new one a click away.
    click(c, "#workflow-versions a[href$='version=1']").await;
    wait_path(c, "/workflows/storyboard?version=1").await;
    wait_text(c, "#workflow-changes", "First version").await;
    click(c, "#workflow-versions a[href$='version=2']").await;
    wait_path(c, "/workflows/storyboard?version=2").await;
    wait_text(c, "#workflow-changes", "+ binding steps").await;

    // Run it from the generated form: two fields, the prompt and the steps.
    click(c, "#workflow-run").await;
    wait_path(c, "/runs/new?template=workflow-storyboard").await;
    wait_for(c, "#run-form").await;
    let fields = c
        .execute(
            "return [...document.querySelectorAll('#run-form [id^=param-]')].map(e => e.id);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fields,
        json!(["param-steps", "param-prompt"]),
        "in the graph's node order"
    );
    wait_for(c, "#param-prompt")
        .await
        .send_keys("a lighthouse at dusk, storyboard")
        .await
        .unwrap();
    let steps = wait_for(c, "#param-steps").await;
    steps.clear().await.unwrap();
    steps.send_keys("3").await.unwrap();
    click(c, "#run-submit").await;
    wait_for(c, "#run-stages").await;
    wait_text_for(c, "#run-head", "succeeded", Duration::from_secs(60)).await;
    let tile = wait_for(c, "#run-outputs a.asset-tile[data-name$='.png']").await;
    let name = tile.attr("data-name").await.unwrap().unwrap_or_default();
    assert!(
        name.contains("-render-9-"),
        "named for the run, stage and node: {name}"
    );
    screenshot_page(c, "workflow-run").await;

    // What ComfyUI was sent: the two values bound into the graph, the rest as pasted.
    let prompts = comfy.prompts();
    assert_eq!(prompts.len(), 1);
    let sent = &prompts[0].graph;
    assert_eq!(
        sent["6"]["inputs"]["text"],
        "a lighthouse at dusk, storyboard"
    );
    assert_eq!(sent["3"]["inputs"]["steps"], 3);
    assert_eq!(sent["3"]["inputs"]["cfg"], 7.0);
    assert_eq!(sent["4"]["inputs"]["ckpt_name"], DEFAULT_CHECKPOINT);
    assert_eq!(
        page_errors(c).await,
        Vec::<String>::new(),
        "no errors in the page"
    );
    drop(b);
    app.stop().await;
}

/// A planner that asks before it is final, then one frame per planned shot.
const REVIEWED_PLAN: &str = r#"name: reviewed-plan
title: Reviewed plan
parameters:
  - {name: story, type: text}
stages:
  - name: plan
    executor: langgraph
    assistant: shot_planner
    inputs:
      story: ${params.story}
      review: true
  - name: frames
    executor: local
    program: ffmpeg
    for_each: ${stages.plan.values.shots}
    args: ["-v", "error", "-f", "lavfi", "-i", "color=c=0x2b4a6f:s=96x54", "-frames:v", "1", "${output}/${item.shot}.png"]
"#;

#[tokio::test]
async fn langgraph_a_lead_approves_the_planners_question_and_watches_one_stage_per_shot() {
    use app::accounts::Role;
    use server::pipelines::runs::{Submission, Submitter};
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let planner = slate_tests::langgraph_peer::shared().await;
    let app = slate_tests::spawn_app_with(|c| {
        c.langgraph_url = Some(planner.url());
        c.langgraph_token = Some(slate_tests::langgraph_peer::TOKEN.into());
    })
    .await;
    app.create_user("lena@studio.test", "lead").await;
    // The admin submits; a lead answers.
    let admin: uuid::Uuid = sqlx::query_scalar("select id from users where email = $1")
        .bind(ADMIN_EMAIL)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let who = server::audit::Who {
        user_id: Some(admin),
        token_id: None,
        label: ADMIN_EMAIL.into(),
        client_addr: None,
    };
    server::pipelines::store::save(&app.pool, &who, REVIEWED_PLAN, false)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let caps = server::pipelines::Capabilities {
        programs: vec!["ffmpeg".into()],
        langgraph: true,
        ..Default::default()
    };
    let by = Submitter {
        who: &who,
        user_id: admin,
        role: Role::Admin,
        token: None,
    };
    let story = "Rain on the studio roof. A door opens. Someone runs for the last train.";
    let submission = Submission {
        template: "reviewed-plan".into(),
        params: json!({ "story": story }).as_object().cloned().unwrap(),
        ..Default::default()
    };
    let run = server::pipelines::runs::submit(&app.pool, &caps, &by, &submission, None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));

    let b = browser().await;
    let c = &b.client;
    sign_in(c, &app, "lena@studio.test").await;
    wait_for(c, "a.nav-link[href='/runs']").await;
    c.goto(&app.url(&format!("/runs/{run}"))).await.unwrap();
    wait_hydrated(c).await;
    // The planner's question, on the stage that asks it, with the shots it proposes.
    let question = "li[data-stage='plan'] .stage-question";
    wait_for(c, &format!("{question} .question-actions button")).await;
    wait_text(c, question, "sh010").await;
    screenshot_page(c, "run-question").await;
    set_marker(c).await;
    click(c, &format!("{question} .question-actions button.primary")).await;
    // The answer resumes the thread; the plan ends and one instance per shot runs.
    wait_text_for(c, "#run-head", "succeeded", Duration::from_secs(90)).await;
    wait_for(
        c,
        "li[data-stage='frames'] .instance-grid li[data-stage='frames.2']",
    )
    .await;
    let instances = c
        .find_all(Locator::Css("li[data-stage='frames'] .instance-grid li"))
        .await
        .unwrap()
        .len();
    assert_eq!(instances, 3, "one instance per sentence");
    wait_text(c, "li[data-stage='frames'] .instance-grid", "sh030").await;
    assert!(marker_survived(c).await, "followed without a reload");
    for shot in ["sh010", "sh020", "sh030"] {
        wait_for(
            c,
            &format!("#run-outputs a.asset-tile[data-name$='{shot}.png']"),
        )
        .await;
    }
    let answered: Option<String> = sqlx::query_scalar(
        "select actor_label from audit_log where action = 'stage.answer' order by at desc limit 1",
    )
    .fetch_optional(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        answered.as_deref(),
        Some("lena@studio.test"),
        "the answer is audited"
    );
    screenshot_page(c, "run-fan-out").await;
    drop(b);
    app.stop().await;
}
