//! Stages waiting for a person (a LangGraph interrupt): the `stage_questions` table. The
//! langgraph executor asks ([`ask`]), looks for the answer ([`answer_of`]), records the
//! run that took it ([`resumed`]) and closes what will never be answered ([`close`]);
//! the pages read the question and answer it through [`Questions`] (the run's submitter,
//! leads and admins; every answer audited).

use app::backend::Actor;
use app::error::AppError;
use app::pipelines::question::{Answer, QuestionsBackend, StageQuestionView};
use async_trait::async_trait;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::Who;

#[derive(Clone)]
pub struct Questions {
    pub pool: PgPool,
}

impl Questions {
    pub fn new(pool: PgPool) -> Self {
        Questions { pool }
    }
}

/// What a graph asked, as the executor records it.
pub struct Asked<'a> {
    pub run: Uuid,
    pub stage: Uuid,
    pub attempt: Uuid,
    pub thread: &'a str,
    pub interrupt: &'a str,
    pub question: &'a Value,
    pub values: Option<&'a Value>,
}

/// A question's answer, once given.
#[derive(Clone, Debug, PartialEq)]
pub struct Given {
    pub id: Uuid,
    pub answer: Value,
    pub by: String,
    /// The LangGraph run that took it, when the thread was resumed already.
    pub resumed_run: Option<String>,
}

/// Records a question (once per interrupt of a thread: asking again, as an adopting
/// attempt does, keeps the first row and its answer); returns its id.
pub async fn ask(pool: &PgPool, asked: &Asked<'_>) -> Result<Uuid, String> {
    let id: Uuid = sqlx::query_scalar(
        "insert into stage_questions (id, run_id, stage_id, attempt_id, thread_id, interrupt_id, question, current_values)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (thread_id, interrupt_id) do update set closed_at = null, closed_reason = null
         returning id",
    )
    .bind(Uuid::now_v7())
    .bind(asked.run)
    .bind(asked.stage)
    .bind(asked.attempt)
    .bind(asked.thread)
    .bind(asked.interrupt)
    .bind(asked.question)
    .bind(asked.values)
    .fetch_one(pool)
    .await
    .map_err(|e| format!("cannot keep the question: {e}"))?;
    Ok(id)
}

/// The answer to question `id`, once someone gave one.
pub async fn answer_of(pool: &PgPool, id: Uuid) -> Result<Option<Given>, String> {
    let row: Option<(Option<Value>, Option<String>, Option<String>)> = sqlx::query_as(
        "select answer, answered_by_label, resumed_run from stage_questions where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(match row {
        Some((Some(answer), by, resumed_run)) => Some(Given {
            id,
            answer,
            by: by.unwrap_or_default(),
            resumed_run,
        }),
        _ => None,
    })
}

/// Records the LangGraph run that took the answer.
pub async fn resumed(pool: &PgPool, id: Uuid, run: &str) {
    let _ = sqlx::query(
        "update stage_questions set resumed_run = $2, resumed_at = now() where id = $1",
    )
    .bind(id)
    .bind(run)
    .execute(pool)
    .await;
}

/// Closes the stage's unanswered questions (it was cancelled or ended): nobody can answer
/// them any more.
pub async fn close(pool: &PgPool, stage: Uuid, reason: &str) {
    let _ = sqlx::query(
        "update stage_questions set closed_at = now(), closed_reason = $2
         where stage_id = $1 and answered_at is null and closed_at is null",
    )
    .bind(stage)
    .bind(reason)
    .execute(pool)
    .await;
}

/// A short line of the question for the stage's status: its `question` text (or the
/// first text in it), cut at 120 characters.
pub fn short(question: &Value) -> String {
    let text = match question {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map
            .get("question")
            .and_then(Value::as_str)
            .or_else(|| map.values().find_map(Value::as_str))
            .map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| question.to_string());
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(119).collect::<String>())
    } else {
        text
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    run_id: Uuid,
    stage: String,
    question: Value,
    current_values: Option<Value>,
    asked_at: DateTime<Utc>,
    answered_by_label: Option<String>,
    answer: Option<Value>,
    answered_at: Option<DateTime<Utc>>,
    closed_reason: Option<String>,
    closed_at: Option<DateTime<Utc>>,
    submitted_by: Uuid,
}

const SELECT: &str =
    "select q.id, q.run_id, s.name as stage, q.question, q.current_values, q.asked_at,
        q.answered_by_label, q.answer, q.answered_at, q.closed_reason, q.closed_at, r.submitted_by
    from stage_questions q join run_stages s on s.id = q.stage_id join runs r on r.id = q.run_id";

fn view(row: Row, actor: &Actor) -> StageQuestionView {
    let p = &actor.principal;
    StageQuestionView {
        id: row.id,
        run_id: row.run_id,
        stage: row.stage,
        question: row.question,
        current_values: row.current_values,
        asked_at: row.asked_at,
        answered_by: row.answered_by_label,
        answer: row.answer,
        answered_at: row.answered_at,
        closed: row
            .closed_at
            .map(|_| row.closed_reason.unwrap_or_else(|| "closed".into())),
        may_answer: super::runs::may_change(row.submitted_by, p.user_id, p.role),
    }
}

#[async_trait]
impl QuestionsBackend for Questions {
    async fn question(
        &self,
        actor: &Actor,
        run: Uuid,
        stage: &str,
    ) -> Result<Option<StageQuestionView>, AppError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "{SELECT} where q.run_id = $1 and s.name = $2 order by q.asked_at desc, q.id desc limit 1"
        ))
        .bind(run)
        .bind(stage)
        .fetch_optional(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        Ok(row.map(|r| view(r, actor)))
    }

    async fn answer(&self, actor: &Actor, question: Uuid, answer: Answer) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await.map_err(crate::db::app_error)?;
        let row: Option<Row> = sqlx::query_as(&format!("{SELECT} where q.id = $1 for update of q"))
            .bind(question)
            .fetch_optional(&mut *tx)
            .await
            .map_err(crate::db::app_error)?;
        let Some(row) = row else {
            return Err(AppError::NotFound(format!(
                "There is no question {question}."
            )));
        };
        let p = &actor.principal;
        if !super::runs::may_change(row.submitted_by, p.user_id, p.role) {
            return Err(AppError::Forbidden(
                "Only the person who submitted this run, leads and admins may answer its questions."
                    .into(),
            ));
        }
        if let (Some(at), by) = (row.answered_at, &row.answered_by_label) {
            return Err(AppError::Conflict(format!(
                "This question was answered already, by {} at {}.",
                by.as_deref().unwrap_or("someone"),
                at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        if row.closed_at.is_some() {
            return Err(AppError::Conflict(format!(
                "This question is no longer waiting for an answer: {}.",
                row.closed_reason.as_deref().unwrap_or("it was closed")
            )));
        }
        // The stage must still be there to take it (a run cancelled meanwhile is not).
        let stage_running: bool = sqlx::query_scalar(
            "select s.state = 'running' and not s.cancel_requested
             from stage_questions q join run_stages s on s.id = q.stage_id where q.id = $1",
        )
        .bind(question)
        .fetch_one(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
        if !stage_running {
            return Err(AppError::Conflict(
                "This question is no longer waiting for an answer: its stage is not running any more."
                    .into(),
            ));
        }
        let who = Who::principal(p, actor.client_addr);
        let json = answer.to_json();
        sqlx::query(
            "update stage_questions set answer = $2, answered_by = $3, answered_by_label = $4, answered_at = now()
             where id = $1",
        )
        .bind(question)
        .bind(&json)
        .bind(p.user_id)
        .bind(&who.label)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
        // The answer itself is kept on the question; the audit entry says what kind and
        // the reason, not a whole edited plan.
        let mut detail = json!({"run": row.run_id, "stage": row.stage, "action": answer.action()});
        if let Answer::Reject { reason } = &answer {
            detail["reason"] = json!(reason);
        }
        crate::audit::record(
            &mut *tx,
            &who,
            "stage.answer",
            Some(format!("question {question}")),
            detail,
        )
        .await
        .map_err(crate::db::app_error)?;
        // The run page hears of it (the stage's status changes when the executor resumes).
        sqlx::query("select pg_notify('run_changes', $1)")
            .bind(row.run_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(crate::db::app_error)?;
        tx.commit().await.map_err(crate::db::app_error)
    }
}

/// The routes for answering questions: none of their own (the pages' server functions
/// `/api/stage_question` and `/api/answer_question` are the way in).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_takes_the_question_text_short() {
        assert_eq!(
            short(&json!({"shots": [1], "question": "Approve\n the plan?"})),
            "Approve the plan?"
        );
        assert_eq!(short(&json!("Go on?")), "Go on?");
        assert_eq!(short(&json!({"n": 1, "ask": "Which?"})), "Which?");
        assert_eq!(short(&json!([1, 2])), "[1,2]");
        let long = short(&json!("x".repeat(300)));
        assert_eq!(long.chars().count(), 120);
        assert!(long.ends_with('…'));
    }
}
