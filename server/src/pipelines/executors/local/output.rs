//! What a local stage's program writes: lines cut to a bounded length, stderr's tail for
//! the failure message, and ffmpeg's `-progress` blocks turned into throttled progress.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;

use super::process::{Event, Expected};
use crate::pipelines::attempt::Stream;

/// Longest log line sent, in bytes; a program printing without newlines must not make
/// the executor buffer without limit.
pub(super) const LINE_MAX: usize = 4 * 1024;
/// How much of stderr is kept for the failure message.
pub(super) const TAIL_MAX: usize = 64 * 1024;
/// Progress is not sent more often than this unless it moved by [`PROGRESS_STEP`].
pub(super) const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
pub(super) const PROGRESS_STEP: f64 = 0.01;
/// Read buffer size for the output pipes.
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// Feeds everything read from `reader` to `on_chunk` until end of file. A read error
/// ends the stream too: there is nothing better to do with a broken pipe.
pub(super) async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, mut on_chunk: impl FnMut(&[u8])) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0; READ_CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => on_chunk(&buf[..n]),
        }
    }
}

/// Sends a log line unless the channel is full: logs must not hold up the program.
pub(super) fn send_log(events: &mpsc::Sender<Event>, stream: Stream, line: String) {
    let _ = events.try_send(Event::Log { stream, line });
}

/// Where stderr goes: log lines, and the tail kept for the failure message.
pub(super) struct StderrSink<'a> {
    pub(super) lines: LineSplitter,
    pub(super) tail: Tail,
    pub(super) events: &'a mpsc::Sender<Event>,
}

impl<'a> StderrSink<'a> {
    pub(super) fn new(events: &'a mpsc::Sender<Event>) -> Self {
        StderrSink {
            lines: LineSplitter::default(),
            tail: Tail::default(),
            events,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.tail.push(chunk);
        let events = self.events;
        self.lines
            .push(chunk, |line| send_log(events, Stream::Stderr, line));
    }

    pub(super) fn finish(&mut self) {
        let events = self.events;
        self.lines
            .finish(|line| send_log(events, Stream::Stderr, line));
    }
}

/// What stdout is for: ffmpeg's progress reports, or log lines for any other program.
pub(super) enum StdoutUse {
    Log,
    /// ffmpeg with an expectation to measure against.
    Progress(Box<ProgressReporter>),
    /// ffmpeg without an expectation: its reports cannot become a fraction.
    Ignore,
}

pub(super) struct StdoutSink<'a> {
    lines: LineSplitter,
    usage: StdoutUse,
    events: &'a mpsc::Sender<Event>,
}

impl<'a> StdoutSink<'a> {
    pub(super) fn new(
        is_ffmpeg: bool,
        expected: Option<Expected>,
        events: &'a mpsc::Sender<Event>,
    ) -> Self {
        let usage = match (is_ffmpeg, expected) {
            (false, _) => StdoutUse::Log,
            (true, Some(expected)) => {
                StdoutUse::Progress(Box::new(ProgressReporter::new(expected)))
            }
            (true, None) => StdoutUse::Ignore,
        };
        StdoutSink {
            lines: LineSplitter::default(),
            usage,
            events,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        let (usage, events) = (&mut self.usage, self.events);
        self.lines
            .push(chunk, |line| use_stdout_line(usage, events, line));
    }

    pub(super) fn finish(&mut self) {
        let (usage, events) = (&mut self.usage, self.events);
        self.lines
            .finish(|line| use_stdout_line(usage, events, line));
    }

    /// The progress value still owed to the consumer once the program is gone.
    pub(super) fn final_progress(&self, succeeded: bool) -> Option<f64> {
        match &self.usage {
            StdoutUse::Progress(reporter) => reporter.throttle.last_value(succeeded),
            StdoutUse::Log | StdoutUse::Ignore => None,
        }
    }
}

pub(super) fn use_stdout_line(usage: &mut StdoutUse, events: &mpsc::Sender<Event>, line: String) {
    match usage {
        StdoutUse::Log => send_log(events, Stream::Stdout, line),
        StdoutUse::Progress(reporter) => reporter.line(&line, events),
        StdoutUse::Ignore => {}
    }
}

/// Turns ffmpeg's progress lines into throttled [`Event::Progress`] events.
pub(super) struct ProgressReporter {
    parser: ProgressParser,
    throttle: Throttle,
}

impl ProgressReporter {
    pub(super) fn new(expected: Expected) -> Self {
        ProgressReporter {
            parser: ProgressParser::new(expected),
            throttle: Throttle::default(),
        }
    }

    pub(super) fn line(&mut self, line: &str, events: &mpsc::Sender<Event>) {
        let Some(fraction) = self.parser.line(line) else {
            return;
        };
        let now = Instant::now();
        if let Some(value) = self.throttle.observe(fraction, now) {
            if events.try_send(Event::Progress(value)).is_ok() {
                self.throttle.sent(value, now);
            }
        }
    }
}

/// Reads ffmpeg's `-progress` output: blocks of `key=value` lines, each ended by
/// `progress=continue` or `progress=end`.
pub(super) struct ProgressParser {
    expected: Expected,
    out_time_us: Option<u64>,
    frame: Option<u64>,
}

impl ProgressParser {
    pub(super) fn new(expected: Expected) -> Self {
        ProgressParser {
            expected,
            out_time_us: None,
            frame: None,
        }
    }

    /// Takes one line; at the end of a block, returns the fraction done so far, if it
    /// can be known.
    pub(super) fn line(&mut self, line: &str) -> Option<f64> {
        let (key, value) = line.split_once('=')?;
        match key.trim() {
            // `out_time_ms` is in microseconds too, despite its name.
            "out_time_us" | "out_time_ms" => {
                self.out_time_us = parse_count(value).or(self.out_time_us);
            }
            "frame" => self.frame = parse_count(value).or(self.frame),
            "progress" => return self.fraction(),
            _ => {}
        }
        None
    }

    pub(super) fn fraction(&self) -> Option<f64> {
        let (done, total) = match self.expected {
            Expected::DurationMicros(total) => (self.out_time_us?, total),
            Expected::Frames(total) => (self.frame?, total),
        };
        if total == 0 {
            return None;
        }
        Some((done as f64 / total as f64).min(1.0))
    }
}

/// A count from ffmpeg; `N/A` is unknown, and negative (before the first frame's
/// timestamp) is nothing done yet.
pub(super) fn parse_count(value: &str) -> Option<u64> {
    let count: i64 = value.trim().parse().ok()?;
    Some(u64::try_from(count).unwrap_or(0))
}

/// Decides which progress values are worth sending.
#[derive(Default)]
pub(super) struct Throttle {
    /// The highest value seen.
    latest: Option<f64>,
    /// The last value sent, and when.
    sent: Option<(f64, Instant)>,
}

impl Throttle {
    /// Records `value`; returns the value to send now, if one is due.
    pub(super) fn observe(&mut self, value: f64, now: Instant) -> Option<f64> {
        let value = value.clamp(0.0, 1.0);
        let latest = self.latest.map_or(value, |latest| latest.max(value));
        self.latest = Some(latest);
        let due = match self.sent {
            None => true,
            Some((sent, at)) => {
                latest - sent >= PROGRESS_STEP
                    || (latest > sent && now.duration_since(at) >= PROGRESS_INTERVAL)
            }
        };
        due.then_some(latest)
    }

    pub(super) fn sent(&mut self, value: f64, now: Instant) {
        self.sent = Some((value, now));
    }

    /// The value to deliver at the end: 1.0 after success, otherwise the latest seen;
    /// nothing if that was already sent.
    pub(super) fn last_value(&self, succeeded: bool) -> Option<f64> {
        let last = if succeeded { Some(1.0) } else { self.latest }?;
        match self.sent {
            Some((sent, _)) if sent >= last => None,
            _ => Some(last),
        }
    }
}

/// Cuts a byte stream into lines, keeping at most [`LINE_MAX`] bytes of each.
#[derive(Default)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub(super) fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(String)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            emit(self.take_line());
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    /// Emits the last line if the stream did not end with a newline.
    pub(super) fn finish(&mut self, mut emit: impl FnMut(String)) {
        if !self.partial.is_empty() {
            emit(self.take_line());
        }
    }

    /// Keeps one byte beyond the limit so that a `\r` ending an over-long line can
    /// still be recognised and removed.
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        let room = (LINE_MAX + 1).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub(super) fn take_line(&mut self) -> String {
        let raw = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
        let mut line = String::from_utf8_lossy(raw).into_owned();
        line.truncate(line.floor_char_boundary(LINE_MAX));
        self.partial.clear();
        line
    }
}

/// The last [`TAIL_MAX`] bytes of a stream.
#[derive(Default)]
pub(super) struct Tail {
    bytes: VecDeque<u8>,
    cut: bool,
}

impl Tail {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        if self.bytes.len() > TAIL_MAX {
            let excess = self.bytes.len() - TAIL_MAX;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    /// The kept text; when the start was cut off, from the first whole line on.
    pub(super) fn text(&mut self) -> String {
        let bytes = self.bytes.make_contiguous();
        let start = if self.cut {
            bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(0, |end| end + 1)
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..])
            .trim_end()
            .to_owned()
    }
}
