-- Stages waiting for a person (issue 15): a LangGraph graph that calls `interrupt()` asks
-- a question; the langgraph executor keeps it here, the run page shows it, a lead, an
-- admin or the run's submitter answers, and the executor resumes the thread with the
-- answer. One row per interrupt of a thread (a graph may ask several times in a row).
create table stage_questions (
    id uuid primary key,
    run_id uuid not null references runs (id),
    stage_id uuid not null references run_stages (id),
    -- The attempt that asked (a later attempt that adopts the thread after a restart
    -- goes on waiting for the same row).
    attempt_id uuid not null references stage_attempts (id),
    thread_id text not null,
    interrupt_id text not null,
    -- What the graph passed to `interrupt()`, and the thread's values when it asked.
    question jsonb not null,
    current_values jsonb,
    asked_at timestamptz not null default now(),
    answered_by uuid references users (id),
    -- Who answered as the audit log names them (an email, or a token's owner and name).
    answered_by_label text,
    -- What the thread is resumed with: {"action": "approve" | "edit" | "reject", ...}.
    answer jsonb,
    answered_at timestamptz,
    -- The LangGraph run that took the answer (set once the thread was resumed).
    resumed_run text,
    resumed_at timestamptz,
    -- Set when the question will never be answered (the stage was cancelled or ended).
    closed_at timestamptz,
    closed_reason text,
    unique (thread_id, interrupt_id),
    check ((answer is null) = (answered_at is null))
);
create index stage_questions_run on stage_questions (run_id);
create index stage_questions_stage on stage_questions (stage_id, asked_at);
create index stage_questions_attempt on stage_questions (attempt_id);
create index stage_questions_answered_by on stage_questions (answered_by) where answered_by is not null;
