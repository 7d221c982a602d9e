//! One attempt of a stage as its executor sees it: what to run (the claim, the template
//! version, the stage) and everything an executor may record about it, so that no
//! executor writes SQL: status and progress, log lines, the last preview image, the
//! reference to its outside work (for adoption after a restart), and the archived log.

use std::time::Duration;

use app::pipelines::template::Stage;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::queue::Claim;
use super::store::{self, Stored};

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What an executor reports while the work runs, for [`Attempt::record`].
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Log {
        stream: Stream,
        line: String,
    },
    /// From 0 to 1.
    Progress(f64),
    /// What the executor calls the work it started (`pid 42`, `job …`).
    Started(String),
}

/// A claimed attempt, with the stage it runs.
pub struct Attempt {
    pub claim: Claim,
    /// The template version the run was submitted with.
    pub stored: Stored,
    pub stage: Stage,
    pool: PgPool,
}

impl Attempt {
    /// The attempt of `claim`, with its template version and stage.
    pub async fn load(pool: &PgPool, claim: Claim) -> Result<Attempt, String> {
        let (stored, stage) = store::claimed_stage(pool, &claim).await?;
        Ok(Attempt {
            claim,
            stored,
            stage,
            pool: pool.clone(),
        })
    }

    /// Says what the stage waits for or does, and how far it is when `progress` is
    /// given. Only a change is written (pages hear of it through the table's trigger).
    pub async fn status(&self, message: &str, progress: Option<f32>) {
        let _ = sqlx::query(
            "update run_stages set status_message = $2, progress = coalesce($3, progress)
             where id = $1 and state = 'running'
               and (status_message is distinct from $2 or ($3 is not null and progress is distinct from $3))",
        )
        .bind(self.claim.stage_id)
        .bind(message)
        .bind(progress)
        .execute(&self.pool)
        .await;
    }

    /// Moves the stage's bar.
    pub async fn progress(&self, fraction: f32) {
        let _ =
            sqlx::query("update run_stages set progress = $2 where id = $1 and state = 'running'")
                .bind(self.claim.stage_id)
                .bind(fraction)
                .execute(&self.pool)
                .await;
    }

    /// Keeps the stage's last image (small: previews are a few tens of kB; larger ones
    /// are not kept).
    pub async fn preview(&self, mime: &str, bytes: Vec<u8>) {
        if bytes.len() > 8 * 1024 * 1024 {
            return;
        }
        let _ = sqlx::query(
            "update run_stages set preview = $2, preview_type = $3, preview_at = now()
             where id = $1 and state = 'running'",
        )
        .bind(self.claim.stage_id)
        .bind(bytes)
        .bind(mime)
        .execute(&self.pool)
        .await;
    }

    /// Keeps the JSON the stage ended with (a LangGraph stage's final values), for the
    /// stages that refer to it (`${stages.NAME.values.FIELD}`) and for `for_each`.
    pub async fn values(&self, values: &Value) -> Result<(), String> {
        sqlx::query("update run_stages set stage_values = $2 where id = $1")
            .bind(self.claim.stage_id)
            .bind(values)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot keep the stage's values: {e}"))
    }

    /// Records what the executor calls the work it started outside Slate (a prompt, a
    /// Job), and what it sent, so that after a restart it can be found again.
    pub async fn started(&self, reference: &str, detail: Option<Value>) {
        let _ = sqlx::query(
            "update stage_attempts set executor_ref = $2, detail = coalesce($3, detail) where id = $1",
        )
        .bind(self.claim.attempt_id)
        .bind(reference)
        .bind(detail)
        .execute(&self.pool)
        .await;
    }

    /// The reference a lost earlier attempt of this stage left (one starting with
    /// `prefix` and a space, given without them), with that attempt's number: work that
    /// may still be running outside Slate, to be followed instead of started again.
    pub async fn left_behind(&self, prefix: &str) -> Option<(String, i32)> {
        let row: Option<(String, i32)> = sqlx::query_as(
            "select executor_ref, number from stage_attempts
             where stage_id = $1 and state = 'lost' and executor_ref like $2 || ' %'
             order by number desc limit 1",
        )
        .bind(self.claim.stage_id)
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten();
        let (reference, number) = row?;
        Some((
            reference.strip_prefix(prefix)?.trim_start().to_owned(),
            number,
        ))
    }

    /// The reference the latest earlier attempt of this stage recorded (one starting with
    /// `prefix` and a space, given without them), with that attempt's number and how it
    /// ended (`failed`, `lost`, …): for an executor that retries by continuing the earlier
    /// work (Dagster re-executes a failed run from its failure).
    pub async fn previous(&self, prefix: &str) -> Option<(String, i32, String)> {
        let row: Option<(String, i32, String)> = sqlx::query_as(
            "select executor_ref, number, state from stage_attempts
             where stage_id = $1 and id <> $2 and executor_ref like $3 || ' %'
             order by number desc limit 1",
        )
        .bind(self.claim.stage_id)
        .bind(self.claim.attempt_id)
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten();
        let (reference, number, state) = row?;
        Some((
            reference.strip_prefix(prefix)?.trim_start().to_owned(),
            number,
            state,
        ))
    }

    /// Links the archived log (`key` in storage) to the attempt, with what the executor
    /// calls the work when it has recorded no better name.
    pub async fn archived(&self, key: &str, reference: &str) {
        let _ = sqlx::query(
            "update stage_attempts set log_key = $2, executor_ref = coalesce(executor_ref, $3) where id = $1",
        )
        .bind(self.claim.attempt_id)
        .bind(key)
        .bind(reference)
        .execute(&self.pool)
        .await;
    }

    /// Where the attempt's whole log is stored.
    pub fn log_key(&self) -> String {
        format!("logs/{}/{}.log", self.claim.run_id, self.claim.attempt_id)
    }

    /// Records what an executor reports while the work runs: log lines go to
    /// `stage_logs` in batches, progress as it changes, the reference once. The task
    /// ends, giving the whole log for the archive, when every sender is dropped.
    pub fn record<E>(&self) -> (mpsc::Sender<E>, JoinHandle<String>)
    where
        E: Into<Report> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1024);
        let recording = Recording {
            pool: self.pool.clone(),
            claim: self.claim.clone(),
        };
        (tx, tokio::spawn(recording.run(rx)))
    }
}

struct Recording {
    pool: PgPool,
    claim: Claim,
}

impl Recording {
    async fn run<E: Into<Report>>(self, mut rx: mpsc::Receiver<E>) -> String {
        let mut log = String::new();
        let mut batch: Vec<(&'static str, String)> = Vec::new();
        let mut last_flush = tokio::time::Instant::now();
        loop {
            let event = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
            let done = matches!(event, Ok(None));
            match event.map(|e| e.map(Into::into)) {
                Ok(Some(Report::Log { stream, line })) => {
                    log.push_str(&line);
                    log.push('\n');
                    batch.push((stream.as_str(), line));
                }
                Ok(Some(Report::Progress(p))) => {
                    let _ = sqlx::query(
                        "update run_stages set progress = $2 where id = $1 and state = 'running'",
                    )
                    .bind(self.claim.stage_id)
                    .bind(p as f32)
                    .execute(&self.pool)
                    .await;
                }
                Ok(Some(Report::Started(reference))) => {
                    let _ =
                        sqlx::query("update stage_attempts set executor_ref = $2 where id = $1")
                            .bind(self.claim.attempt_id)
                            .bind(reference)
                            .execute(&self.pool)
                            .await;
                }
                _ => {}
            }
            if !batch.is_empty()
                && (done || batch.len() >= 200 || last_flush.elapsed() > Duration::from_millis(500))
            {
                let (streams, lines): (Vec<&str>, Vec<String>) = batch.drain(..).unzip();
                let _ = sqlx::query(
                    "insert into stage_logs (attempt_id, stream, line) select $1, * from unnest($2::text[], $3::text[])",
                )
                .bind(self.claim.attempt_id)
                .bind(&streams)
                .bind(&lines)
                .execute(&self.pool)
                .await;
                let _ = sqlx::query("select pg_notify('run_changes', $1)")
                    .bind(self.claim.run_id.to_string())
                    .execute(&self.pool)
                    .await;
                last_flush = tokio::time::Instant::now();
            }
            if done {
                return log;
            }
        }
    }
}
