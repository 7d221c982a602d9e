//! The Colab prober against the fake ComfyUI: what each kind of answer is classed as,
//! its timeouts and size bounds, redirects and address rules, and verification.

use std::time::{Duration, Instant};

use server::comfyui::address::{AddressError, HostRules};
use server::comfyui::probe::{ProbeError, Prober};
use slate_tests::eventually;
use slate_tests::fake_comfy::{FakeComfy, Mode};

/// The test switch: http on loopback allowed (it is off in every real configuration).
fn loopback() -> Prober {
    Prober::new(HostRules::parse("", true))
}

#[tokio::test]
async fn current_and_mid_2024_builds_are_recognised() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let (stats, _) = loopback().system_stats(&comfy.url()).await.unwrap();
    assert_eq!(stats.gpu.as_deref(), Some("Tesla T4"));
    assert_eq!(stats.comfyui_version.as_deref(), Some("0.3.40"));
    assert_eq!(stats.python_version.as_deref(), Some("3.11.13"));
    comfy.set_queue(3);
    assert_eq!(loopback().queue(&comfy.url()).await.unwrap().0, Some(3));

    comfy.set_mode(Mode::Mid2024);
    let (stats, _) = loopback().system_stats(&comfy.url()).await.unwrap();
    assert_eq!(
        (stats.gpu.as_deref(), stats.comfyui_version),
        (Some("Tesla T4"), None)
    );
    assert_eq!(stats.vram_total, Some(15_835_660_288));
}

#[tokio::test]
async fn tunnel_failures_are_classified() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let p = loopback();
    for (mode, check) in [
        (Mode::Cloudflare(530), ProbeError::Gone(530)),
        (Mode::Cloudflare(502), ProbeError::Restarting),
        (Mode::Cloudflare(429), ProbeError::Busy),
        (Mode::Cloudflare(524), ProbeError::Slow),
        (Mode::Cloudflare(500), ProbeError::Status(500)),
    ] {
        comfy.set_mode(mode.clone());
        assert_eq!(
            p.system_stats(&comfy.url()).await.unwrap_err(),
            check,
            "{mode:?}"
        );
    }
    comfy.set_mode(Mode::Html);
    assert_eq!(
        p.system_stats(&comfy.url()).await.unwrap_err(),
        ProbeError::NotComfy("the answer is an HTML page, not JSON".into())
    );
    comfy.set_mode(Mode::NotComfy);
    assert!(matches!(
        p.system_stats(&comfy.url()).await.unwrap_err(),
        ProbeError::NotComfy(_)
    ));
    comfy.set_mode(Mode::DiesMidAnswer);
    let cut = p.system_stats(&comfy.url()).await.unwrap_err();
    assert!(matches!(cut, ProbeError::Connect(_)), "{cut:?}");
    assert!(cut.transient(), "a runtime dying mid-answer may come back");
    comfy.set_mode(Mode::Huge);
    assert_eq!(
        p.system_stats(&comfy.url()).await.unwrap_err(),
        ProbeError::TooLarge(server::comfyui::probe::MAX_BODY)
    );
    comfy.kill();
    eventually(
        "the killed runtime to refuse connections",
        Duration::from_secs(2),
        || async { tokio::net::TcpStream::connect(comfy.addr).await.is_err() },
    )
    .await;
    let dead = p.system_stats(&comfy.url()).await.unwrap_err();
    assert!(matches!(dead, ProbeError::Connect(_)), "{dead:?}");
    assert!(dead.transient());
}

#[tokio::test]
async fn a_slow_answer_times_out_and_the_whole_check_is_bounded() {
    let comfy = FakeComfy::start(Mode::Slow(Duration::from_secs(30))).await;
    let started = Instant::now();
    let err = loopback().system_stats(&comfy.url()).await.unwrap_err();
    assert_eq!(err, ProbeError::Timeout(10));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the total timeout"
    );
}

#[tokio::test]
async fn redirects_are_never_followed() {
    // Where a redirect would lead: a second server that must never be asked.
    let target = FakeComfy::start(Mode::Current).await;
    let comfy = FakeComfy::start(Mode::Redirect(format!(
        "http://{}/system_stats",
        target.addr
    )))
    .await;
    assert_eq!(
        loopback().system_stats(&comfy.url()).await.unwrap_err(),
        ProbeError::Redirect(302)
    );
    comfy.set_mode(Mode::Redirect(
        "http://169.254.169.254/latest/meta-data/".into(),
    ));
    assert_eq!(
        loopback().system_stats(&comfy.url()).await.unwrap_err(),
        ProbeError::Redirect(302)
    );
    assert_eq!(target.hits(), 0);
}

#[tokio::test]
async fn names_that_resolve_to_private_addresses_are_refused_before_any_request() {
    let comfy = FakeComfy::start(Mode::Current).await;
    // `localhost` on the allowlist: the URL passes the host rules, the resolved address
    // does not. Without the test switch, loopback is never fetched.
    let strict = Prober::new(HostRules::parse("localhost", false));
    let err = strict.system_stats("https://localhost").await.unwrap_err();
    assert!(
        matches!(err, ProbeError::Private(ip, "loopback") if ip.is_loopback()),
        "{err:?}"
    );
    for (url, want) in [
        (comfy.url(), ProbeError::Address(AddressError::NotHttps)),
        (
            "https://127.0.0.1".to_owned(),
            ProbeError::Address(AddressError::Private(
                "127.0.0.1".parse().unwrap(),
                "loopback",
            )),
        ),
        (
            "https://169.254.169.254".to_owned(),
            ProbeError::Address(AddressError::Private(
                "169.254.169.254".parse().unwrap(),
                "link-local",
            )),
        ),
        (
            "https://[fd00::1]".to_owned(),
            ProbeError::Address(AddressError::Private(
                "fd00::1".parse().unwrap(),
                "unique-local",
            )),
        ),
        (
            "https://comfy.internal.example".to_owned(),
            ProbeError::Address(AddressError::Host("comfy.internal.example".into())),
        ),
    ] {
        assert_eq!(strict.system_stats(&url).await.unwrap_err(), want, "{url}");
    }
    assert_eq!(comfy.hits(), 0, "nothing reached the server");
}

#[tokio::test]
async fn verification_waits_for_a_fresh_tunnel_but_not_for_a_wrong_service() {
    let comfy = FakeComfy::start(Mode::Current).await;
    // A fresh tunnel answers 530 and 502 for a while.
    comfy.warm_up(3, 530);
    let (stats, _) = loopback()
        .verify(
            &comfy.url(),
            Duration::from_secs(10),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert_eq!(stats.gpu.as_deref(), Some("Tesla T4"));
    assert_eq!(comfy.hits(), 4);
    // Something that is not ComfyUI fails at once, without retries.
    comfy.set_mode(Mode::Html);
    let before = comfy.hits();
    let err = loopback()
        .verify(
            &comfy.url(),
            Duration::from_secs(10),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::NotComfy(_)));
    assert_eq!(comfy.hits(), before + 1);
    // A tunnel that never comes up gives up when the time is over.
    comfy.set_mode(Mode::Cloudflare(530));
    let started = Instant::now();
    let err = loopback()
        .verify(
            &comfy.url(),
            Duration::from_millis(600),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert_eq!(err, ProbeError::Gone(530));
    assert!(started.elapsed() < Duration::from_secs(5));
}
