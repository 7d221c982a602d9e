//! The test library's own guarantees: `eventually` waits and then fails with what it saw,
//! and a test's configuration does not depend on the caller's environment.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use slate_tests::{eventually, in_child_process, seen, test_config};

#[tokio::test]
async fn eventually_returns_what_the_probe_found_once_it_holds() {
    let looks = AtomicU32::new(0);
    let found = eventually("the third look", Duration::from_secs(5), || async {
        seen(looks.fetch_add(1, Ordering::SeqCst) + 1, |n| *n == 3)
    })
    .await;
    assert_eq!(found, 3);
}

#[tokio::test]
#[should_panic(expected = "waiting for the impossible; last seen: 41")]
async fn eventually_names_what_it_waited_for_and_the_last_value_seen() {
    eventually("the impossible", Duration::from_millis(100), || async {
        seen(41, |n| *n == 42)
    })
    .await;
}

/// A setting for each kind of flag, in the environment of a child process: none of them
/// may reach the configuration the helpers build.
#[test]
fn test_configurations_ignore_the_callers_environment() {
    let printed = in_child_process(
        "harness::print_the_test_configuration",
        &[
            ("SLATE_LISTEN", "0.0.0.0:9"),
            ("SLATE_LOGIN_MAX_FAILURES", "1"),
            ("SLATE_STORAGE", "s3://not-this-one/"),
            ("SLATE_TRUST_PROXY", "true"),
            ("SLATE_LOG", "trace"),
            ("DATABASE_URL", "postgres://elsewhere/db"),
        ],
    );
    let theirs = printed
        .lines()
        .find_map(|l| l.split_once("config: ").map(|(_, config)| config))
        .unwrap_or_else(|| panic!("no configuration printed:\n{printed}"));
    assert_eq!(theirs, comparable_config());
}

#[test]
#[ignore = "run by test_configurations_ignore_the_callers_environment, in a child process"]
fn print_the_test_configuration() {
    println!("config: {}", comparable_config());
}

/// The test configuration for a fixed database, without its per-test data directory.
fn comparable_config() -> String {
    let mut config = test_config("postgres://127.0.0.1/test");
    config.data_dir = "fixed".into();
    format!("{config:?}")
}
