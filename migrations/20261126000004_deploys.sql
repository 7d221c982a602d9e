-- Deploys: every revision of every Deployment and StatefulSet in the namespace, what CI
-- reported, and (already in deploy_events) what Slate itself did.

-- One row per revision, kept forever: the ReplicaSet (or ControllerRevision) it came
-- from may be pruned by the cluster, and a rollback then uses the stored template.
create table deploy_revisions (
    id uuid primary key,
    namespace text not null,
    kind text not null check (kind in ('Deployment', 'StatefulSet')),
    workload text not null,
    revision bigint not null check (revision > 0),
    -- The ReplicaSet's pod-template-hash, or the ControllerRevision's name suffix.
    template_hash text not null,
    -- The pod template without the pod-template-hash label.
    template jsonb not null,
    -- The ReplicaSet's own annotations: `kubectl rollout undo` copies them back.
    annotations jsonb not null default '{}'::jsonb,
    images text[] not null,
    change_cause text,
    -- Who made it, when an annotation or Slate's own action says so.
    actor text,
    source text not null check (source in ('cluster', 'ci', 'slate')),
    slate_event uuid references deploy_events (id),
    ci_run text,
    -- When the revision came into being: the ReplicaSet's creation, or when Slate first
    -- saw an old ReplicaSet take a new revision number (a rollback).
    created_at timestamptz not null,
    recorded_at timestamptz not null default now(),
    unique (namespace, kind, workload, revision)
);
create index deploy_revisions_at on deploy_revisions (created_at desc);
create index deploy_revisions_images on deploy_revisions using gin (images);
create index deploy_revisions_slate_event on deploy_revisions (slate_event);
create index deploy_revisions_ci_run on deploy_revisions (ci_run);

-- What CI reported, one row per workflow run (idempotent by run id).
create table ci_deploys (
    id uuid primary key,
    run_id text not null unique,
    sha text not null,
    branch text,
    run_url text,
    actor text not null,
    environment text not null,
    images text[] not null,
    phase text not null check (phase in ('started', 'succeeded', 'failed')),
    -- Every phase reported, in order: [{"phase": ..., "at": ...}].
    phases jsonb not null default '[]'::jsonb,
    token_owner uuid references users (id),
    token_name text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index ci_deploys_images on ci_deploys using gin (images);
create index ci_deploys_token_owner on ci_deploys (token_owner);

-- Open deploy pages hear about every change, whichever replica made it.
create function deploy_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('deploy_changes', tg_table_name);
    return null;
end;
$$;
create trigger deploy_revisions_changed after insert or update on deploy_revisions
    for each statement execute function deploy_changed();
create trigger ci_deploys_changed after insert or update on ci_deploys
    for each statement execute function deploy_changed();
create trigger deploy_events_changed after insert on deploy_events
    for each statement execute function deploy_changed();
