//! Waiting for something a test cannot be told about: [`eventually`] polls a probe until
//! it reports success within a bound, and otherwise fails naming what it waited for.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// The first pause between looks; it doubles up to [`SLOWEST`], so that a quick change
/// is seen at once, and a passing state (a part of an upload on the server, a step of a
/// prompt) is still caught when the wait is long.
const QUICKEST: Duration = Duration::from_millis(10);
const SLOWEST: Duration = Duration::from_millis(50);

/// What a probe reports: done (with a value), or not yet (with what it saw instead).
pub trait Probe {
    type Value;
    /// `Ok` when the wait is over; `Err` carries what was seen, for the failure message.
    fn outcome(self) -> Result<Self::Value, String>;
}

impl Probe for bool {
    type Value = ();
    fn outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_owned())
        }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_owned())
    }
}

impl<T, E: Debug> Probe for Result<T, E> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// A probe's answer when the test waits for a value to satisfy `ok`: the value itself
/// either way, so a timeout shows the last one seen.
///
/// `eventually("the run to end", secs, || async { seen(state(run).await, |s| s != "running") })`
pub fn seen<T: Debug>(value: T, ok: impl FnOnce(&T) -> bool) -> Result<T, T> {
    if ok(&value) {
        Ok(value)
    } else {
        Err(value)
    }
}

/// Polls `probe` until it reports success (`true`, `Some`, `Ok`) and returns its value;
/// panics after `within` with `what` and the last thing the probe saw.
///
/// The probe is always run at least once, and once more at the deadline, so a bound
/// shorter than the pause between looks still gets a fair last look.
pub async fn eventually<P, F>(what: &str, within: Duration, probe: impl FnMut() -> F) -> P::Value
where
    F: Future<Output = P>,
    P: Probe,
{
    match try_eventually(what, within, probe).await {
        Ok(value) => value,
        Err(timed_out) => panic!("{timed_out}"),
    }
}

/// [`eventually`] that hands the timeout back instead of panicking, for callers that
/// gather evidence first (a screenshot of the page).
pub async fn try_eventually<P, F>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> Result<P::Value, TimedOut>
where
    F: Future<Output = P>,
    P: Probe,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = QUICKEST;
    loop {
        let last = match probe().await.outcome() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                within,
                last,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(SLOWEST);
    }
}

/// A wait that ran out: what was awaited, for how long, and the last thing seen.
#[derive(Debug)]
pub struct TimedOut {
    pub what: String,
    pub within: Duration,
    pub last: String,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}; last seen: {}",
            self.within, self.what, self.last
        )
    }
}

/// [`eventually`] for code that cannot await (a probe run from a blocking thread).
pub fn eventually_blocking<P: Probe>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> P,
) -> P::Value {
    let deadline = std::time::Instant::now() + within;
    let mut pause = QUICKEST;
    loop {
        let last = match probe().outcome() {
            Ok(value) => return value,
            Err(last) => last,
        };
        let now = std::time::Instant::now();
        if now >= deadline {
            let timed_out = TimedOut {
                what: what.to_owned(),
                within,
                last,
            };
            panic!("{timed_out}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(SLOWEST);
    }
}
