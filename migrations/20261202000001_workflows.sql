-- ComfyUI workflows as data (decision 0014): one row per version, each immutable. A
-- version is the API-format graph as given and its bindings (which literal inputs a
-- person fills in, as template parameters).
create table workflows (
    id uuid primary key,
    name text not null,
    version integer not null check (version > 0),
    title text not null,
    description text,
    graph jsonb not null,
    bindings jsonb not null default '[]'::jsonb,
    -- How the graph came: pasted or uploaded JSON, an image with the graph in it, or
    -- bundled with Slate.
    origin text not null check (origin in ('json', 'image', 'bundled')),
    created_by uuid references users (id) on delete set null,
    created_at timestamptz not null default now(),
    unique (name, version)
);
create index workflows_created_by on workflows (created_by);

-- The workflow version a ComfyUI stage runs, fixed when the run is submitted.
alter table run_stages add column workflow_id uuid references workflows (id);
create index run_stages_workflow_id on run_stages (workflow_id);
