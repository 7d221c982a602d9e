-- Pipelines: versioned templates, runs, their stages (the durable queue), attempts and
-- logs, and the outputs that became assets.

-- One row per version of a template; a run refers to the exact version it ran.
create table pipelines (
    id uuid primary key,
    name text not null,
    version integer not null check (version > 0),
    title text not null,
    -- The YAML as written, and the parsed template.
    source text not null,
    definition jsonb not null,
    builtin boolean not null default false,
    created_by uuid references users (id),
    created_at timestamptz not null default now(),
    unique (name, version)
);
create index pipelines_created_by on pipelines (created_by);

create table runs (
    id uuid primary key,
    pipeline_id uuid not null references pipelines (id),
    -- Parameter values as run (a seed left empty is drawn and stored here).
    params jsonb not null,
    priority integer not null default 0 check (priority between -100 and 100),
    state text not null check (state in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    submitted_by uuid not null references users (id),
    -- The token's name when a script submitted it.
    submitted_via text,
    resubmitted_from uuid references runs (id),
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);
create index runs_pipeline_id on runs (pipeline_id);
create index runs_submitted_by on runs (submitted_by);
create index runs_resubmitted_from on runs (resubmitted_from);
create index runs_listing on runs (created_at desc, id desc);

-- The queue: a stage is `waiting` for its upstream stages, `queued` when it may run
-- (not before `ready_at`), `running` under a lease its runner keeps renewing.
create table run_stages (
    id uuid primary key,
    run_id uuid not null references runs (id),
    name text not null,
    executor text not null,
    needs text[] not null default '{}',
    state text not null check (state in
        ('waiting', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    priority integer not null,
    attempts_max integer not null check (attempts_max > 0),
    attempt integer not null default 0,
    ready_at timestamptz not null default now(),
    progress real check (progress between 0 and 1),
    -- Why it waits or what it does, in plain words.
    status_message text,
    cancel_requested boolean not null default false,
    lease_owner uuid,
    lease_until timestamptz,
    queued_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    unique (run_id, name)
);
create index run_stages_queue on run_stages (executor, priority desc, queued_at) where state = 'queued';
create index run_stages_leases on run_stages (lease_until) where state = 'running';

create table stage_attempts (
    id uuid primary key,
    stage_id uuid not null references run_stages (id),
    number integer not null,
    state text not null check (state in ('running', 'succeeded', 'failed', 'cancelled', 'lost')),
    -- What the executor calls it: a process id, a Job's name, a ComfyUI prompt id.
    executor_ref text,
    runner uuid,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    error text,
    detail jsonb not null default '{}'::jsonb,
    -- Where the whole log went when the attempt ended.
    log_key text,
    unique (stage_id, number)
);

-- The live tail of an attempt's log (the whole log is archived to storage at the end).
create table stage_logs (
    id bigserial primary key,
    attempt_id uuid not null references stage_attempts (id),
    at timestamptz not null default now(),
    stream text not null check (stream in ('stdout', 'stderr', 'slate')),
    line text not null
);
create index stage_logs_attempt on stage_logs (attempt_id, id);

-- What a run produced, with where it came from.
create table run_outputs (
    id uuid primary key,
    run_id uuid not null references runs (id),
    stage_id uuid not null references run_stages (id),
    asset_id uuid not null references assets (id),
    version_id uuid not null references asset_versions (id),
    provenance jsonb not null,
    created_at timestamptz not null default now()
);
create index run_outputs_run_id on run_outputs (run_id);
create index run_outputs_stage_id on run_outputs (stage_id);
create index run_outputs_asset_id on run_outputs (asset_id);
create index run_outputs_version_id on run_outputs (version_id);

-- Dispatchers wake when work is queued, pages when anything changes.
create function run_stage_changed() returns trigger language plpgsql as $$
begin
    if new.state = 'queued' then
        perform pg_notify('stage_queued', new.executor);
    end if;
    perform pg_notify('run_changes', new.run_id::text);
    return null;
end;
$$;
create trigger run_stages_changed after insert or update on run_stages
    for each row execute function run_stage_changed();
