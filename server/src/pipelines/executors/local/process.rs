//! The local pipeline executor: runs one stage's program on Slate's own machine. It is
//! the embedded default, used when no cluster is configured, so it is also the executor
//! that runs with the server's own privileges — hence the strict rules below.
//!
//! # What may run
//!
//! Only programs an administrator allowed, by bare name (`ffmpeg` and `ffprobe` by
//! default, see [`DEFAULT_PROGRAMS`]). [`Allowed::resolve`] looks each name up on `PATH`
//! once, so a later change of `PATH` or working directory cannot swap the binary. A
//! program is started directly, never through a shell, and its arguments are an argument
//! vector: shell metacharacters reach the program literally. A program name that is not
//! a bare name (empty, or containing `/`, whitespace or NUL) and an argument containing a
//! NUL byte (which cannot be passed to `execve`) are refused before anything starts.
//!
//! # How it runs
//!
//! Each attempt gets a working directory from the caller; [`run`] creates it and its
//! `out/` subdirectory when missing. The process starts in that directory, with stdin
//! connected to `/dev/null`, an environment holding only `PATH` (the server's),
//! `HOME` (the working directory) and `LANG=C.UTF-8`, and in a process group of its own,
//! so that stopping it stops everything it started.
//!
//! # As whom it runs
//!
//! When Slate runs as root, the program runs as an unprivileged user ([`RunAs`], the
//! `SLATE_STAGE_USER` setting, `nobody` by default) with no supplementary groups. The
//! attempt's working directory is given to that user for the run and is the only place
//! in the work directory it can write (the run's inputs and the other stages' files stay
//! Slate's, readable only); once the process has ended Slate takes the directory back
//! ([`RunAs::reclaim`]): everything in it becomes Slate's and writable by nobody else,
//! and anything the program could have planted for Slate to follow (a symbolic link,
//! a hard link to a file it does not own, a pipe or a socket) is removed, so a
//! leftover process can neither change an output after it is kept nor steer Slate to
//! another file. When Slate is not root the program runs as Slate's own user.
//!
//! # What it reports
//!
//! [`run`] sends [`Event`]s while the process runs: [`Event::Started`] with the process
//! id (which is also its process group id), [`Event::Log`] for every line of stderr — and
//! of stdout, except for ffmpeg — and [`Event::Progress`] for ffmpeg. For ffmpeg the
//! executor inserts `-progress pipe:1 -nostats` before the caller's arguments and turns
//! the `key=value` blocks ffmpeg writes to stdout into a fraction between 0 and 1,
//! measured against [`Spec::expected`]; without an expectation there is no progress.
//! Progress never goes backwards, is sent at most about every 250 ms unless it moved
//! by at least one percentage point, and a successful run always ends with `1.0`.
//!
//! Sending never waits: a process must not stall because nobody reads its logs. Log
//! lines are dropped while the channel is full; progress that could not be sent is sent
//! later, and the last progress value is delivered with a waiting send once the process
//! is gone (so a consumer that neither reads nor drops its receiver holds up [`run`]).
//!
//! # How it ends
//!
//! [`run`] returns an [`Outcome`] once the process has exited: success, failure (with
//! the exit code or signal and the last 64 KiB of stderr), or, when the timeout passed
//! or the cancel signal was raised, after the whole process group was stopped —
//! `SIGTERM` first, then `SIGKILL` if it is still running five seconds later. Dropping
//! the future returned by [`run`] kills the process group with `SIGKILL`. Mistakes found
//! before starting are a [`StartError`].

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use super::output::*;
use super::programs::allowed_list;
pub use super::programs::{Allowed, RunAs, DEFAULT_PROGRAMS};
pub use crate::pipelines::attempt::Stream;

/// The one program whose progress the executor understands.
pub(super) const FFMPEG: &str = "ffmpeg";
/// Makes ffmpeg write machine-readable progress to stdout instead of its human status
/// line to stderr.
const FFMPEG_PROGRESS_ARGS: &[&str] = &["-progress", "pipe:1", "-nostats"];
/// How long a process may take to exit after `SIGTERM` before it gets `SIGKILL`.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long the output pipes may stay open after the program exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Why a program was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "{name:?} is not a program name: it must be a bare name such as \"ffmpeg\", \
         not empty and without '/', whitespace or NUL"
    )]
    InvalidProgramName { name: String },
    #[error(
        "the program {name:?} is not allowed to run on this machine (allowed: {}); an \
         administrator can add it to the allowed programs",
        allowed_list(.allowed)
    )]
    NotAllowed { name: String, allowed: Vec<String> },
    #[error(
        "the program {name:?} is allowed but was not found on PATH when the allowed \
         programs were loaded; install it and restart Slate"
    )]
    NotFound { name: String },
    #[error("argument {index} contains a NUL byte, which cannot be passed to a program")]
    BadArgument { index: usize },
    #[error("cannot create the working directory {}: {source}", path.display())]
    Workdir { path: PathBuf, source: io::Error },
    #[error("cannot start {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },
    #[error("{0}")]
    StageUser(String),
    #[error(
        "the stage user {user:?} cannot reach the working directory {}: every directory \
         above it must be searchable by that user (chmod o+x), or set SLATE_WORK_DIR to one \
         that is",
        dir.display()
    )]
    Unreachable { user: String, dir: PathBuf },
    #[error("cannot give the working directory {} to the stage user: {source}", path.display())]
    GiveWorkdir { path: PathBuf, source: io::Error },
}

/// One attempt at running a stage's program.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// A bare program name, looked up in [`Allowed`].
    pub program: String,
    /// The arguments, passed as they are. For ffmpeg, stdout is reserved for progress.
    pub args: Vec<String>,
    /// The attempt's working directory; created (with `out/`) when missing.
    pub workdir: PathBuf,
    /// How long the program may run before its process group is stopped.
    pub timeout: Duration,
    /// What ffmpeg's progress is measured against; ignored for other programs.
    pub expected: Option<Expected>,
    /// Whom the program runs as.
    pub run_as: RunAs,
}

/// How much work an ffmpeg run is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Output duration in microseconds, compared with ffmpeg's `out_time_us`.
    DurationMicros(u64),
    /// Number of output frames, compared with ffmpeg's `frame`.
    Frames(u64),
}

/// What happens while a program runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The program started; `pid` is also its process group id.
    Started { pid: u32 },
    /// Fraction of the expected work done, `0.0..=1.0`, never decreasing.
    Progress(f64),
    /// One line of output, lossily decoded as UTF-8 and cut at 4 KiB.
    Log { stream: Stream, line: String },
}

/// How a program that started ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The program exited unsuccessfully: with `exit_code`, or killed by `signal`.
    /// `stderr_tail` is the end (at most 64 KiB) of what it wrote to stderr.
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
        stderr_tail: String,
    },
    /// The timeout passed and the process group was stopped.
    TimedOut,
    /// The cancel signal was raised and the process group was stopped.
    Cancelled,
}

/// Runs `spec` and waits for it to end, sending [`Event`]s to `events` on the way.
///
/// Raising `cancel` (sending `true`) stops the program; dropping its sender means the
/// run is never cancelled. A cancel raised before the start returns
/// [`Outcome::Cancelled`] without starting anything.
pub async fn run(
    allowed: &Allowed,
    spec: &Spec,
    events: mpsc::Sender<Event>,
    mut cancel: watch::Receiver<bool>,
) -> Result<Outcome, StartError> {
    let program = allowed.program_for(&spec.program)?;
    check_args(&spec.args)?;
    if let RunAs::Refused(why) = &spec.run_as {
        return Err(StartError::StageUser(why.clone()));
    }
    if *cancel.borrow_and_update() {
        return Ok(Outcome::Cancelled);
    }
    let workdir = prepare_workdir(&spec.workdir).await?;
    // Declared first, so dropped last: the directory is taken back after the process
    // group is gone, even when this future is dropped or the start fails.
    let reclaim = Reclaim {
        run_as: &spec.run_as,
        workdir: &workdir,
        armed: true,
    };
    spec.run_as.give(&workdir)?;
    let is_ffmpeg = spec.program == FFMPEG;
    let mut child = command(program, spec, &workdir, is_ffmpeg)
        .spawn()
        .map_err(|source| StartError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    // Declared after `child` so that, if this future is dropped, the group is killed
    // while the leader is still unreaped and its id cannot have been reused.
    let group = Group::of(&child);
    if let Some(pid) = child.id() {
        let _ = events.try_send(Event::Started { pid });
    }
    let outcome = watch_process(&mut child, &group, spec, &events, &mut cancel, is_ffmpeg).await;
    match reclaim.finish() {
        Ok(()) => Ok(outcome),
        Err(e) => Ok(Outcome::Failed {
            exit_code: None,
            signal: None,
            stderr_tail: format!("cannot take the working directory back from the stage user: {e}"),
        }),
    }
}

/// Takes the working directory back from the stage user (see [`RunAs::reclaim`]):
/// with [`Reclaim::finish`], or when dropped.
struct Reclaim<'a> {
    run_as: &'a RunAs,
    workdir: &'a Path,
    armed: bool,
}

impl Reclaim<'_> {
    fn finish(mut self) -> io::Result<()> {
        self.armed = false;
        self.run_as.reclaim(self.workdir)
    }
}

impl Drop for Reclaim<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.run_as.reclaim(self.workdir);
        }
    }
}

fn check_args(args: &[String]) -> Result<(), StartError> {
    match args.iter().position(|arg| arg.contains('\0')) {
        Some(index) => Err(StartError::BadArgument { index }),
        None => Ok(()),
    }
}

/// Creates the working directory and `out/`, and returns the directory's absolute
/// path, so that `HOME` means the same wherever it is used.
async fn prepare_workdir(dir: &Path) -> Result<PathBuf, StartError> {
    let failed = |source| StartError::Workdir {
        path: dir.to_owned(),
        source,
    };
    tokio::fs::create_dir_all(dir.join("out"))
        .await
        .map_err(failed)?;
    tokio::fs::canonicalize(dir).await.map_err(failed)
}

fn command(program: &Path, spec: &Spec, workdir: &Path, is_ffmpeg: bool) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg0(&spec.program);
    if is_ffmpeg {
        cmd.args(FFMPEG_PROGRESS_ARGS);
    }
    if let RunAs::User { uid, gid, .. } = &spec.run_as {
        // With a uid set, the standard library also clears the supplementary groups
        // (setgroups with none) before setuid when it may.
        cmd.uid(*uid).gid(*gid);
    }
    cmd.args(&spec.args)
        .current_dir(workdir)
        .env_clear()
        .env("HOME", workdir)
        .env("LANG", "C.UTF-8")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// The process group of a started program, killed with `SIGKILL` when dropped while
/// still armed (that is, while the leader has not been reaped).
struct Group {
    id: Option<Pid>,
    armed: AtomicBool,
}

impl Group {
    fn of(child: &Child) -> Group {
        let id = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        Group {
            id,
            armed: AtomicBool::new(true),
        }
    }

    /// Signals every process in the group. Failure means the group is already gone.
    fn signal(&self, signal: Signal) {
        if let Some(id) = self.id {
            let _ = killpg(id, signal);
        }
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.armed.load(Ordering::Relaxed) {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// How the group's leader ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
    /// Waiting for the process failed, which only happens if something else reaped it.
    Lost(io::Error),
}

/// Reads the program's output while waiting for it to end, then turns what was seen
/// into the outcome.
async fn watch_process(
    child: &mut Child,
    group: &Group,
    spec: &Spec,
    events: &mpsc::Sender<Event>,
    cancel: &mut watch::Receiver<bool>,
    is_ffmpeg: bool,
) -> Outcome {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out_sink = StdoutSink::new(is_ffmpeg, spec.expected, events);
    let mut err_sink = StderrSink::new(events);
    let (ending, drained) = {
        let readers = async {
            tokio::join!(
                pump(stdout, |chunk| out_sink.push(chunk)),
                pump(stderr, |chunk| err_sink.push(chunk)),
            )
        };
        tokio::pin!(readers);
        let supervision = supervise(child, group, spec.timeout, cancel);
        tokio::pin!(supervision);
        let mut drained = false;
        let ending = loop {
            tokio::select! {
                ending = &mut supervision => break ending,
                _ = &mut readers, if !drained => drained = true,
            }
        };
        group.disarm();
        let drained = drained || drain_after_exit(readers, group).await;
        (ending, drained)
    };
    if drained {
        out_sink.finish();
        err_sink.finish();
    }
    let outcome = outcome_of(ending, err_sink.tail.text());
    if let Some(last) = out_sink.final_progress(outcome == Outcome::Succeeded) {
        let _ = events.send(Event::Progress(last)).await;
    }
    outcome
}

/// Waits for the leader to exit, stopping the group when the timeout passes or the
/// cancel signal is raised.
async fn supervise(
    child: &mut Child,
    group: &Group,
    timeout: Duration,
    cancel: &mut watch::Receiver<bool>,
) -> Ending {
    let ending = tokio::select! {
        status = child.wait() => return status.map_or_else(Ending::Lost, Ending::Exited),
        () = tokio::time::sleep(timeout) => Ending::TimedOut,
        () = cancelled(cancel) => Ending::Cancelled,
    };
    stop(child, group).await;
    ending
}

/// Resolves once `cancel` is `true`; never, if its sender is gone without raising it.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|&raised| raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Asks the group to terminate, and kills it if the leader is still there after the
/// grace period. The leader is not reaped before signalling, so the group id still
/// belongs to this attempt.
async fn stop(child: &mut Child, group: &Group) {
    group.signal(Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok() {
        return;
    }
    group.signal(Signal::SIGKILL);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Waits for the output pipes to close after the leader exited. Whatever still holds
/// them open is a leftover of the attempt; as a member of the group it keeps the
/// group id from being reused, so it can be killed safely. Returns whether the pipes
/// closed; if they did not, reading is abandoned.
async fn drain_after_exit(mut readers: Pin<&mut impl Future>, group: &Group) -> bool {
    if tokio::time::timeout(PIPE_GRACE, &mut readers).await.is_ok() {
        return true;
    }
    group.signal(Signal::SIGKILL);
    tokio::time::timeout(PIPE_GRACE, readers).await.is_ok()
}

fn outcome_of(ending: Ending, stderr_tail: String) -> Outcome {
    match ending {
        Ending::Exited(status) if status.success() => Outcome::Succeeded,
        Ending::Exited(status) => Outcome::Failed {
            exit_code: status.code(),
            signal: status.signal(),
            stderr_tail,
        },
        Ending::TimedOut => Outcome::TimedOut,
        Ending::Cancelled => Outcome::Cancelled,
        Ending::Lost(err) => Outcome::Failed {
            exit_code: None,
            signal: None,
            stderr_tail: format!("{stderr_tail}\nSlate lost track of the process: {err}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::*;
    use super::*;
    use std::ffi::OsStr;
    use std::time::Instant;

    use nix::errno::Errno;
    use nix::sys::signal::kill;

    const ENCODE_TIMEOUT: Duration = Duration::from_secs(120);
    /// Generous: the test machine is busy, but a stopped ffmpeg exits in well under this.
    const STOP_LIMIT: Duration = Duration::from_secs(15);

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn ffmpeg_allowed() -> Allowed {
        Allowed::resolve(&names(DEFAULT_PROGRAMS))
    }

    /// A fresh directory path under the system temp dir; not created, `run` does that.
    fn scratch(test: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        std::env::temp_dir().join(format!("slate-local-{test}-{}-{nanos}", std::process::id()))
    }

    fn spec(program: &str, args: &[&str], workdir: &Path, expected: Option<Expected>) -> Spec {
        Spec {
            program: program.to_owned(),
            args: names(args),
            workdir: workdir.to_owned(),
            timeout: ENCODE_TIMEOUT,
            expected,
            run_as: RunAs::Current,
        }
    }

    /// A cancel receiver whose sender is gone: never cancelled.
    fn never_cancelled() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    /// Runs `spec` while collecting every event.
    async fn run_collecting(
        allowed: &Allowed,
        spec: &Spec,
        cancel: watch::Receiver<bool>,
    ) -> (Result<Outcome, StartError>, Vec<Event>) {
        let (tx, mut rx) = mpsc::channel(4096);
        let collector = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(event) = rx.recv().await {
                events.push(event);
            }
            events
        });
        let result = run(allowed, spec, tx, cancel).await;
        let events = collector.await.expect("collector task");
        (result, events)
    }

    fn progress_of(events: &[Event]) -> Vec<f64> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::Progress(value) => Some(*value),
                _ => None,
            })
            .collect()
    }

    fn lines_of(events: &[Event], wanted: Stream) -> Vec<String> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::Log { stream, line } if *stream == wanted => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    fn started_pid(events: &[Event]) -> u32 {
        match events.first() {
            Some(Event::Started { pid }) => *pid,
            other => panic!("first event should be Started, got {other:?}"),
        }
    }

    /// Neither the leader nor any member of its group exists any more.
    fn assert_group_gone(pid: u32) {
        let id = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still exists"
        );
        assert_eq!(kill(id, None), Err(Errno::ESRCH));
        assert_eq!(killpg(id, None), Err(Errno::ESRCH));
    }

    fn cleanup(dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn encode_reports_rising_progress_ending_at_one_and_writes_output() {
        let dir = scratch("encode");
        let spec = spec(
            "ffmpeg",
            &[
                // Real time, so that ffmpeg reports progress several times.
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=3:size=320x240:rate=25",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "out/a.mp4",
            ],
            &dir,
            Some(Expected::DurationMicros(3_000_000)),
        );

        let (result, events) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;

        assert_eq!(result.expect("started"), Outcome::Succeeded);
        started_pid(&events);
        let progress = progress_of(&events);
        assert!(progress.len() >= 3, "too few progress events: {progress:?}");
        assert!(progress[0] < 0.9, "first progress {progress:?}");
        assert!(
            progress.windows(2).all(|w| w[0] < w[1]),
            "not rising: {progress:?}"
        );
        assert!(
            progress.iter().all(|p| (0.0..=1.0).contains(p)),
            "{progress:?}"
        );
        assert_eq!(progress.last(), Some(&1.0));
        let stderr = lines_of(&events, Stream::Stderr);
        assert!(
            stderr
                .iter()
                .any(|line| line.starts_with("Output #0, mp4, to 'out/a.mp4'")),
            "{stderr:?}"
        );
        assert_eq!(lines_of(&events, Stream::Stdout), Vec::<String>::new());
        let size = std::fs::metadata(dir.join("out/a.mp4"))
            .expect("output")
            .len();
        assert!(size > 1000, "output is only {size} bytes");
        cleanup(&dir);
    }

    #[tokio::test]
    async fn failing_ffmpeg_reports_exit_code_and_stderr_tail() {
        let dir = scratch("fail");
        let spec = spec(
            "ffmpeg",
            &["-i", "missing-input.mp4", "-f", "null", "-"],
            &dir,
            Some(Expected::DurationMicros(3_000_000)),
        );

        let (result, events) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;

        match result.expect("started") {
            Outcome::Failed {
                exit_code,
                signal,
                stderr_tail,
            } => {
                assert_eq!(exit_code, Some(1));
                assert_eq!(signal, None);
                assert!(
                    stderr_tail.contains("missing-input.mp4: No such file or directory"),
                    "{stderr_tail}"
                );
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(progress_of(&events), Vec::<f64>::new());
        assert!(dir.join("out").is_dir());
        cleanup(&dir);
    }

    #[tokio::test]
    async fn programs_not_allowed_or_not_bare_are_refused_before_start() {
        let dir = scratch("refused");
        let allowed = ffmpeg_allowed();

        let (result, events) = run_collecting(
            &allowed,
            &spec("sh", &["-c", "true"], &dir, None),
            never_cancelled(),
        )
        .await;
        let err = result.expect_err("sh is not allowed");
        assert!(
            matches!(&err, StartError::NotAllowed { name, .. } if name == "sh"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the program \"sh\" is not allowed to run on this machine (allowed: ffmpeg, \
             ffprobe); an administrator can add it to the allowed programs"
        );
        assert_eq!(events, Vec::new());

        for name in ["/bin/sh", "/usr/bin/ffmpeg", "ffmpeg -y", "", "ff\tmpeg"] {
            let (result, _) =
                run_collecting(&allowed, &spec(name, &[], &dir, None), never_cancelled()).await;
            assert!(
                matches!(&result, Err(StartError::InvalidProgramName { name: n }) if n == name),
                "{name:?}: {result:?}"
            );
        }
        assert!(
            !dir.exists(),
            "a refused run must not create the working directory"
        );
    }

    #[tokio::test]
    async fn allowed_program_missing_from_path_is_not_found() {
        let dir = scratch("notfound");
        let allowed = Allowed::resolve(&names(&["slate-no-such-program", "/bin/sh", "ffmpeg"]));
        assert_eq!(allowed.names(), vec!["ffmpeg".to_owned()]);
        assert_eq!(allowed.missing(), ["slate-no-such-program", "/bin/sh"]);
        assert_eq!(allowed.get("slate-no-such-program"), None);
        let ffmpeg = allowed.get("ffmpeg").expect("ffmpeg on PATH");
        assert!(
            ffmpeg.is_absolute() && ffmpeg.ends_with("ffmpeg"),
            "{ffmpeg:?}"
        );

        let (result, _) = run_collecting(
            &allowed,
            &spec("slate-no-such-program", &[], &dir, None),
            never_cancelled(),
        )
        .await;
        assert!(
            matches!(&result, Err(StartError::NotFound { name }) if name == "slate-no-such-program"),
            "{result:?}"
        );
        assert!(!dir.exists());
    }

    #[test]
    fn relative_path_entries_are_not_searched() {
        let allowed = Allowed::resolve_in(&names(&["ffmpeg"]), OsStr::new(".:usr/bin:/usr/bin"));
        assert_eq!(allowed.get("ffmpeg"), Some(Path::new("/usr/bin/ffmpeg")));
        let allowed = Allowed::resolve_in(&names(&["ffmpeg"]), OsStr::new("usr/bin"));
        assert_eq!(allowed.get("ffmpeg"), None);
    }

    #[tokio::test]
    async fn argument_with_nul_is_refused_before_start() {
        let dir = scratch("nul");
        let spec = spec("ffprobe", &["-i", "a\0b"], &dir, None);

        let (result, events) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;

        assert!(
            matches!(result, Err(StartError::BadArgument { index: 1 })),
            "{result:?}"
        );
        assert_eq!(events, Vec::new());
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn shell_metacharacters_reach_the_program_literally() {
        let dir = scratch("literal");
        let input = "$(touch pwned); touch pwned2 | touch pwned3 `touch pwned4` && rm -rf out";
        let spec = spec("ffprobe", &[input], &dir, None);

        let (result, _) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;

        match result.expect("started") {
            Outcome::Failed {
                exit_code,
                stderr_tail,
                ..
            } => {
                assert_eq!(exit_code, Some(1));
                assert!(
                    stderr_tail.contains(&format!("{input}: No such file or directory")),
                    "{stderr_tail}"
                );
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        let mut entries: Vec<String> = std::fs::read_dir(&dir)
            .expect("workdir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        entries.sort();
        assert_eq!(entries, ["out"], "something interpreted the argument");
        cleanup(&dir);
    }

    #[tokio::test]
    async fn other_programs_log_stdout_and_get_no_progress_arguments() {
        let dir = scratch("ffprobe");
        let spec = spec("ffprobe", &["-version"], &dir, Some(Expected::Frames(10)));

        let (result, events) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;

        assert_eq!(result.expect("started"), Outcome::Succeeded);
        let stdout = lines_of(&events, Stream::Stdout);
        assert!(stdout[0].starts_with("ffprobe version "), "{stdout:?}");
        assert_eq!(progress_of(&events), Vec::<f64>::new());
        cleanup(&dir);
    }

    #[tokio::test]
    async fn environment_is_cleared_and_directory_is_the_workdir() {
        let dir = scratch("env");
        let allowed = Allowed::resolve(&names(&["env", "pwd"]));

        let (result, events) =
            run_collecting(&allowed, &spec("env", &[], &dir, None), never_cancelled()).await;
        assert_eq!(result.expect("started"), Outcome::Succeeded);
        let workdir = std::fs::canonicalize(&dir).expect("workdir created");
        let mut env = lines_of(&events, Stream::Stdout);
        env.sort();
        let path = std::env::var("PATH").expect("PATH set");
        assert_eq!(
            env,
            [
                format!("HOME={}", workdir.display()),
                "LANG=C.UTF-8".to_owned(),
                format!("PATH={path}"),
            ]
        );

        let (result, events) =
            run_collecting(&allowed, &spec("pwd", &[], &dir, None), never_cancelled()).await;
        assert_eq!(result.expect("started"), Outcome::Succeeded);
        assert_eq!(
            lines_of(&events, Stream::Stdout),
            [workdir.display().to_string()]
        );
        assert!(dir.join("out").is_dir());
        cleanup(&dir);
    }

    #[tokio::test]
    async fn as_root_the_program_runs_as_the_stage_user_who_writes_only_in_the_workdir() {
        use std::os::unix::fs::MetadataExt as _;
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(RunAs::for_setting("nobody"), RunAs::Current);
            return;
        }
        let RunAs::User { uid, .. } = RunAs::for_setting("nobody") else {
            panic!("nobody is an unprivileged user here");
        };
        assert!(matches!(RunAs::named("root"), RunAs::Refused(why) if why.contains("root")));
        assert!(matches!(
            RunAs::named("slate-no-such-user"),
            RunAs::Refused(_)
        ));
        let parent = scratch("stage-user");
        std::fs::create_dir_all(&parent).expect("parent");
        let dir = parent.join("attempt");
        let script = "id -u; id -G; touch ../escaped || true; echo kept > out/kept.txt; \
                      ln -s /etc/passwd out/link.txt; mkfifo out/pipe; mkdir out/sub; \
                      chmod 777 out out/sub";
        let mut spec = spec("sh", &["-c", script], &dir, None);
        spec.run_as = RunAs::named("nobody");
        let allowed = Allowed::resolve(&names(&["sh"]));

        let (result, events) = run_collecting(&allowed, &spec, never_cancelled()).await;

        assert_eq!(result.expect("started"), Outcome::Succeeded);
        let stdout = lines_of(&events, Stream::Stdout);
        assert_eq!(stdout[0], uid.to_string());
        assert!(!stdout[1].split(' ').any(|g| g == "0"), "{stdout:?}");
        assert!(!parent.join("escaped").exists(), "wrote beside its workdir");
        let out = dir.join("out");
        assert_eq!(
            std::fs::read_to_string(out.join("kept.txt")).unwrap(),
            "kept\n"
        );
        for path in [&dir, &out, &out.join("kept.txt"), &out.join("sub")] {
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert_eq!(meta.uid(), 0, "{path:?} was not taken back");
            assert_eq!(meta.mode() & 0o022, 0, "{path:?} is writable by others");
        }
        for planted in ["link.txt", "pipe"] {
            assert!(
                std::fs::symlink_metadata(out.join(planted)).is_err(),
                "{planted} was left for Slate to follow"
            );
        }
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[tokio::test]
    async fn a_stage_user_that_cannot_be_used_starts_nothing() {
        let dir = scratch("refused-user");
        let mut spec = spec("ffprobe", &["-version"], &dir, None);
        spec.run_as = RunAs::Refused("no stage user".into());
        let (result, events) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;
        assert!(
            matches!(&result, Err(StartError::StageUser(why)) if why == "no stage user"),
            "{result:?}"
        );
        assert_eq!(events, Vec::new());
        assert!(!dir.exists());
    }

    /// ffmpeg producing ten minutes of video in real time: runs until stopped.
    fn endless(dir: &Path, timeout: Duration) -> Spec {
        let mut spec = spec(
            "ffmpeg",
            &[
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc=rate=25",
                "-t",
                "600",
                "-f",
                "null",
                "-",
            ],
            dir,
            Some(Expected::DurationMicros(600_000_000)),
        );
        spec.timeout = timeout;
        spec
    }

    #[tokio::test]
    async fn timeout_stops_the_process_group() {
        let dir = scratch("timeout");
        let spec = endless(&dir, Duration::from_secs(1));

        let started = Instant::now();
        let (result, events) = run_collecting(&ffmpeg_allowed(), &spec, never_cancelled()).await;
        let took = started.elapsed();

        assert_eq!(result.expect("started"), Outcome::TimedOut);
        assert!(
            took >= Duration::from_secs(1),
            "stopped after only {took:?}"
        );
        assert!(took < STOP_LIMIT, "took {took:?}");
        assert_group_gone(started_pid(&events));
        cleanup(&dir);
    }

    #[tokio::test]
    async fn a_program_ignoring_sigterm_is_killed_after_the_grace_period() {
        let dir = scratch("sigkill");
        // coreutils `env` sets SIGTERM to ignored, then execs `sleep` (found on PATH).
        let allowed = Allowed::resolve(&names(&["env"]));
        let mut spec = spec("env", &["--ignore-signal=TERM", "sleep", "600"], &dir, None);
        spec.timeout = Duration::from_millis(500);

        let started = Instant::now();
        let (result, events) = run_collecting(&allowed, &spec, never_cancelled()).await;
        let took = started.elapsed();

        assert_eq!(result.expect("started"), Outcome::TimedOut);
        assert!(took >= KILL_GRACE, "killed after only {took:?}");
        assert!(took < KILL_GRACE + STOP_LIMIT, "took {took:?}");
        assert_group_gone(started_pid(&events));
        cleanup(&dir);
    }

    #[tokio::test]
    async fn cancel_stops_the_process_group() {
        let dir = scratch("cancel");
        let spec = endless(&dir, ENCODE_TIMEOUT);
        let (raise, cancel) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel(4096);

        let started = Instant::now();
        // Spawned, which also checks that the future can move between threads.
        let attempt = tokio::spawn(async move { run(&ffmpeg_allowed(), &spec, tx, cancel).await });
        let pid = match rx.recv().await {
            Some(Event::Started { pid }) => pid,
            other => panic!("expected Started, got {other:?}"),
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        raise.send(true).expect("run is listening");
        let result = attempt.await.expect("run task");
        let took = started.elapsed();

        assert_eq!(result.expect("started"), Outcome::Cancelled);
        assert!(took < STOP_LIMIT, "took {took:?}");
        assert_group_gone(pid);
        cleanup(&dir);
    }

    #[tokio::test]
    async fn cancel_raised_before_start_starts_nothing() {
        let dir = scratch("precancel");
        let (_raise, cancel) = watch::channel(true);

        let (result, events) =
            run_collecting(&ffmpeg_allowed(), &endless(&dir, ENCODE_TIMEOUT), cancel).await;

        assert_eq!(result.expect("no start error"), Outcome::Cancelled);
        assert_eq!(events, Vec::new());
        assert!(!dir.exists());
    }

    #[test]
    fn long_lines_are_cut_at_4_kib_on_a_character_boundary() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let long = "é".repeat(3000); // 6000 bytes of two-byte characters
        splitter.push(format!("{long}\r\nshort\r\n").as_bytes(), |l| lines.push(l));
        splitter.push(b"par", |l| lines.push(l));
        splitter.push(b"tial", |l| lines.push(l));
        splitter.finish(|l| lines.push(l));

        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "é".repeat(2048));
        assert_eq!(lines[0].len(), LINE_MAX);
        assert_eq!(lines[1], "short");
        assert_eq!(lines[2], "partial");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        splitter.push(b"bad \xff byte\n", |l| lines.push(l));
        assert_eq!(lines, ["bad \u{fffd} byte"]);
    }

    #[test]
    fn tail_keeps_the_last_64_kib_from_a_line_start() {
        let mut tail = Tail::default();
        for i in 0..10_000 {
            tail.push(format!("stderr line {i:05}\n").as_bytes()); // 18 bytes each
        }
        let text = tail.text();
        assert!(text.len() <= TAIL_MAX, "{}", text.len());
        assert!(text.len() > TAIL_MAX - 18, "{}", text.len());
        assert!(text.starts_with("stderr line "), "{}", &text[..30]);
        assert!(text.ends_with("stderr line 09999"));
    }

    #[test]
    fn parser_reads_ffmpeg_blocks() {
        let mut parser = ProgressParser::new(Expected::DurationMicros(3_000_000));
        let block = [
            "frame=10",
            "out_time_us=N/A",
            "out_time_ms=750000",
            "out_time=00:00:00.750000",
        ];
        for line in block {
            assert_eq!(parser.line(line), None);
        }
        assert_eq!(parser.line("progress=continue"), Some(0.25));
        assert_eq!(parser.line("out_time_us=-23000"), None);
        assert_eq!(parser.line("progress=continue"), Some(0.0));
        assert_eq!(parser.line("out_time_us=3040000"), None);
        assert_eq!(parser.line("progress=end"), Some(1.0));

        let mut frames = ProgressParser::new(Expected::Frames(40));
        frames.line("frame=10");
        assert_eq!(frames.line("progress=continue"), Some(0.25));
        let mut nothing = ProgressParser::new(Expected::Frames(0));
        nothing.line("frame=10");
        assert_eq!(nothing.line("progress=continue"), None);
    }

    #[test]
    fn throttle_sends_on_a_step_or_after_the_interval_and_never_backwards() {
        let start = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.observe(0.1, start), Some(0.1));
        throttle.sent(0.1, start);
        // Too small a step, too soon.
        assert_eq!(
            throttle.observe(0.105, start + Duration::from_millis(100)),
            None
        );
        // A whole percentage point: sent at once.
        assert_eq!(
            throttle.observe(0.12, start + Duration::from_millis(120)),
            Some(0.12)
        );
        throttle.sent(0.12, start + Duration::from_millis(120));
        // Going backwards is ignored, even after the interval.
        assert_eq!(throttle.observe(0.05, start + Duration::from_secs(1)), None);
        // A small step is sent once the interval has passed.
        assert_eq!(
            throttle.observe(0.121, start + Duration::from_millis(400)),
            Some(0.121)
        );
        throttle.sent(0.121, start + Duration::from_millis(400));
        assert_eq!(
            throttle.observe(2.0, start + Duration::from_millis(410)),
            Some(1.0)
        );

        assert_eq!(throttle.last_value(true), Some(1.0));
        assert_eq!(throttle.last_value(false), Some(1.0));
        throttle.sent(1.0, start + Duration::from_millis(420));
        assert_eq!(throttle.last_value(true), None);
        assert_eq!(Throttle::default().last_value(false), None);
    }
}
