//! A stage waiting for a person: the question a LangGraph graph asked (an interrupt),
//! shown on the run's page, and the answer a lead, an admin or the run's submitter gives.
//! Here: the shared types, the [`QuestionsBackend`] the server implements, the server
//! functions (`/api/stage_question`, `/api/answer_question`) and the [`StageQuestion`]
//! component the run page places under a stage.
//!
//! The answer is what the graph's `interrupt()` returns, as JSON: `{"action": "approve"}`,
//! `{"action": "edit", "values": {...}}` or `{"action": "reject", "reason": "..."}`.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::components::{follow_events, ErrorNote, Time};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

/// The most an edit's values may weigh (the text of the JSON), and a reason's length.
pub const VALUES_MAX_BYTES: usize = 1024 * 1024;
pub const REASON_MAX_CHARS: usize = 2000;

/// A question a stage asked, as the run page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageQuestionView {
    pub id: Uuid,
    pub run_id: Uuid,
    pub stage: String,
    /// What the graph passed to `interrupt()`.
    pub question: Value,
    /// The thread's values when it asked.
    pub current_values: Option<Value>,
    pub asked_at: DateTime<Utc>,
    /// Who answered, and what, once someone has.
    pub answered_by: Option<String>,
    pub answer: Option<Value>,
    pub answered_at: Option<DateTime<Utc>>,
    /// Why it will never be answered (the stage was cancelled or ended).
    pub closed: Option<String>,
    /// Whether the caller may answer it (a lead, an admin, or the run's submitter).
    pub may_answer: bool,
}

impl StageQuestionView {
    pub fn pending(&self) -> bool {
        self.answer.is_none() && self.closed.is_none()
    }
}

/// A person's answer, as the graph receives it (`Command(resume=...)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Answer {
    Approve,
    Edit { values: Value },
    Reject { reason: String },
}

impl Answer {
    /// The answer from the form's fields: `action` one of approve, edit (with `values`,
    /// the JSON text of the new values: an object) or reject (with a `reason`).
    pub fn parse(
        action: &str,
        values: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Answer, AppError> {
        match action.trim() {
            "approve" => Ok(Answer::Approve),
            "edit" => {
                let text = values.unwrap_or_default().trim();
                if text.is_empty() {
                    return Err(AppError::BadRequest(
                        "An edit needs the new values, as JSON.".into(),
                    ));
                }
                if text.len() > VALUES_MAX_BYTES {
                    return Err(AppError::TooLarge(format!(
                        "The edited values are {} bytes; at most {VALUES_MAX_BYTES} are taken.",
                        text.len()
                    )));
                }
                let values: Value = serde_json::from_str(text).map_err(|e| {
                    AppError::BadRequest(format!("The edited values are not JSON: {e}."))
                })?;
                if !values.is_object() {
                    return Err(AppError::BadRequest(
                        "The edited values must be a JSON object (as the current values are)."
                            .into(),
                    ));
                }
                Ok(Answer::Edit { values })
            }
            "reject" => {
                let reason = reason.unwrap_or_default().trim();
                if reason.is_empty() {
                    return Err(AppError::invalid("Say why you reject it."));
                }
                if reason.chars().count() > REASON_MAX_CHARS {
                    return Err(AppError::TooLarge(format!(
                        "The reason is longer than {REASON_MAX_CHARS} characters."
                    )));
                }
                Ok(Answer::Reject {
                    reason: reason.to_owned(),
                })
            }
            other => Err(AppError::BadRequest(format!(
                "\"{other}\" is not an answer: approve, edit or reject."
            ))),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn action(&self) -> &'static str {
        match self {
            Answer::Approve => "approve",
            Answer::Edit { .. } => "edit",
            Answer::Reject { .. } => "reject",
        }
    }
}

#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait QuestionsBackend: Send + Sync + 'static {
    /// The latest question stage `stage` of run `run` asked (pending or not); `None` when
    /// it never asked one.
    async fn question(
        &self,
        actor: &crate::backend::Actor,
        run: Uuid,
        stage: &str,
    ) -> Result<Option<StageQuestionView>, AppError>;
    /// Answers a pending question: a lead, an admin or the run's submitter (403 for
    /// anyone else); 409 when it is no longer pending. Audited.
    async fn answer(
        &self,
        actor: &crate::backend::Actor,
        question: Uuid,
        answer: Answer,
    ) -> Result<(), AppError>;
}

/// The latest question of a run's stage (everyone signed in may read it).
#[server(prefix = "/api", endpoint = "stage_question")]
pub async fn get_stage_question(
    run: Uuid,
    stage: String,
) -> Result<Option<StageQuestionView>, AppError> {
    answer(
        async {
            let actor = caller::<GetStageQuestion>()?;
            services()?.questions.question(&actor, run, &stage).await
        }
        .await,
    )
}

/// Answers a question: `action` is approve, edit (with `values`, JSON text) or reject
/// (with a `reason`). Who may is checked by the service (the run's submitter, leads and
/// admins), hence the plain `/api` prefix.
#[server(prefix = "/api", endpoint = "answer_question")]
pub async fn answer_question(
    question: Uuid,
    action: String,
    #[server(default)] values: Option<String>,
    #[server(default)] reason: Option<String>,
) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<AnswerQuestion>()?;
            let given = Answer::parse(&action, values.as_deref(), reason.as_deref())?;
            services()?.questions.answer(&actor, question, given).await
        }
        .await,
    )
}

/// The question's fields that are text, to be read as sentences (`question`, `problem`,
/// …), and the rest as one JSON object (shown formatted).
pub fn split_question(question: &Value) -> (Vec<(String, String)>, Option<Value>) {
    match question {
        Value::String(s) => (vec![("question".into(), s.clone())], None),
        Value::Object(map) => {
            let mut texts = Vec::new();
            let mut rest = serde_json::Map::new();
            for (k, v) in map {
                match v {
                    Value::String(s) => texts.push((k.clone(), s.clone())),
                    other => {
                        rest.insert(k.clone(), other.clone());
                    }
                }
            }
            // The question itself first, then the other texts as they come.
            texts.sort_by_key(|(k, _)| k != "question");
            (texts, (!rest.is_empty()).then_some(Value::Object(rest)))
        }
        other => (Vec::new(), Some(other.clone())),
    }
}

/// JSON as people read it: indented.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A field name as a label: `so_far` → "So far".
fn label(key: &str) -> String {
    let words = key.replace(['_', '-'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The question a stage of a run is waiting on, with the thread's current values and the
/// answer buttons (Approve; Edit, with the values as JSON to change; Reject, with a
/// reason) for those who may answer; once answered, who answered and what. Nothing when
/// the stage never asked. It follows the run's events, so it appears, and goes, live.
#[component]
pub fn StageQuestion(run: Uuid, #[prop(into)] stage: String) -> impl IntoView {
    let refresh = RwSignal::new(0u64);
    follow_events(
        crate::pipelines::pages::EVENTS_URL,
        "run",
        |_| true,
        refresh,
    );
    let reply = ServerAction::<AnswerQuestion>::new();
    let stage_for_fetch = stage.clone();
    let question = Resource::new(
        move || (refresh.get(), reply.version().get()),
        move |_| get_stage_question(run, stage_for_fetch.clone()),
    );
    view! {
        <Transition fallback=|| ()>
            {move || question.get().map(|q| match q {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(None) => ().into_any(),
                Ok(Some(q)) => question_view(q, reply).into_any(),
            })}
        </Transition>
        {move || reply.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNote error=e/> })}
    }
}

fn question_view(q: StageQuestionView, reply: ServerAction<AnswerQuestion>) -> impl IntoView {
    let (texts, rest) = split_question(&q.question);
    let pending = q.pending();
    let id = q.id.to_string();
    let values_text = q.current_values.as_ref().map(pretty).unwrap_or_default();
    let texts = texts
        .into_iter()
        .map(|(k, v)| {
            if k == "question" {
                view! { <p class="question-text"><strong>{v}</strong></p> }.into_any()
            } else {
                view! { <p class="question-field"><span class="muted">{label(&k)}": "</span>{v}</p> }
                    .into_any()
            }
        })
        .collect_view();
    let state = if pending {
        view! { <span class="pill pill-running">"Waiting for a person"</span> }.into_any()
    } else if let Some(why) = q.closed.clone() {
        view! { <span class="pill">{format!("Closed: {why}")}</span> }.into_any()
    } else {
        view! {
            <span class="muted">
                {format!("Answered by {} · ", q.answered_by.clone().unwrap_or_default())}
                {q.answered_at.map(|at| view! { <Time at=at/> })}
            </span>
        }
        .into_any()
    };
    let answered = q.answer.as_ref().map(|a| {
        view! {
            <details class="question-answer"><summary>"The answer"</summary><pre>{pretty(a)}</pre></details>
        }
    });
    let buttons = (pending && q.may_answer).then(|| {
        let (a, e, r) = (id.clone(), id.clone(), id.clone());
        view! {
            <div class="question-actions">
                <ActionForm action=reply attr:class="inline">
                    <input type="hidden" name="question" value=a/>
                    <input type="hidden" name="action" value="approve"/>
                    <button type="submit" class="btn primary">"Approve"</button>
                </ActionForm>
                <details class="question-edit">
                    <summary class="btn">"Edit"</summary>
                    <ActionForm action=reply attr:class="form">
                        <input type="hidden" name="question" value=e/>
                        <input type="hidden" name="action" value="edit"/>
                        <label>"The values, as JSON"
                            <textarea name="values" rows="12" spellcheck="false" class="mono">{values_text.clone()}</textarea>
                        </label>
                        <button type="submit" class="btn">"Send the edit"</button>
                    </ActionForm>
                </details>
                <details class="question-reject">
                    <summary class="btn danger">"Reject"</summary>
                    <ActionForm action=reply attr:class="form">
                        <input type="hidden" name="question" value=r/>
                        <input type="hidden" name="action" value="reject"/>
                        <label>"Why"<input type="text" name="reason" required maxlength="2000"/></label>
                        <button type="submit" class="btn danger">"Reject"</button>
                    </ActionForm>
                </details>
            </div>
        }
    });
    let not_yours = (pending && !q.may_answer).then(|| {
        view! { <p class="muted">"Only the person who submitted this run, leads and admins may answer."</p> }
    });
    view! {
        <section class="stage-question" data-question=q.id.to_string() aria-label=format!("The question of stage {}", q.stage)>
            <div class="stage-head"><strong>{format!("{} asks", q.stage)}</strong>{state}</div>
            {texts}
            {rest.map(|r| view! { <pre class="question-detail">{pretty(&r)}</pre> })}
            {q.current_values.as_ref().map(|v| view! {
                <details class="question-values"><summary>"Current values"</summary><pre>{pretty(v)}</pre></details>
            })}
            {answered}
            {buttons}
            {not_yours}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_parse_from_the_form_and_become_the_resume_json() {
        assert_eq!(
            Answer::parse("approve", None, None).unwrap().to_json(),
            json!({"action": "approve"})
        );
        assert_eq!(
            Answer::parse("edit", Some(r#"{"shots": [1]}"#), None)
                .unwrap()
                .to_json(),
            json!({"action": "edit", "values": {"shots": [1]}})
        );
        assert_eq!(
            Answer::parse("reject", None, Some("  too long "))
                .unwrap()
                .to_json(),
            json!({"action": "reject", "reason": "too long"})
        );
    }

    #[test]
    fn bad_answers_are_refused_with_the_reason() {
        let bad_json = Answer::parse("edit", Some("{\"shots\": ["), None).unwrap_err();
        assert!(
            matches!(&bad_json, AppError::BadRequest(m) if m.contains("not JSON")),
            "{bad_json:?}"
        );
        assert!(matches!(
            Answer::parse("edit", Some("[1, 2]"), None),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            Answer::parse("edit", None, None),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            Answer::parse("reject", None, Some("  ")),
            Err(AppError::Invalid(_))
        ));
        assert!(matches!(
            Answer::parse("maybe", None, None),
            Err(AppError::BadRequest(_))
        ));
    }

    #[test]
    fn a_question_reads_as_its_texts_then_the_rest_as_json() {
        let (texts, rest) = split_question(&json!({
            "shots": [{"shot": "sh010"}], "problem": "no prompt", "question": "Approve?"
        }));
        assert_eq!(
            texts,
            vec![
                ("question".to_owned(), "Approve?".to_owned()),
                ("problem".to_owned(), "no prompt".to_owned())
            ]
        );
        assert_eq!(rest, Some(json!({"shots": [{"shot": "sh010"}]})));
        assert_eq!(split_question(&json!("Go on?")).0[0].1, "Go on?");
        assert_eq!(label("so_far"), "So far");
    }
}
