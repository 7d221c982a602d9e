-- The last image a running ComfyUI stage produced (a preview frame from its socket, or
-- the latest image it saved), shown on the run's page while it runs.
alter table run_stages
    add column preview bytea,
    add column preview_type text,
    add column preview_at timestamptz;
