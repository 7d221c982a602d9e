-- What each ComfyUI endpoint has (decision 0014): its node classes from /object_info
-- (each with its typed inputs and its pack), its model files by folder from /models,
-- and ComfyUI's version. Fetched at verification and on demand; one row per endpoint.
-- A failed fetch sets `error` and `attempted_at` and keeps the last good inventory;
-- `nodes` is null until one fetch has succeeded.
create table endpoint_inventories (
    endpoint_id uuid primary key references colab_endpoints (id) on delete cascade,
    attempted_at timestamptz not null default now(),
    fetched_at timestamptz,
    comfyui_version text,
    nodes jsonb,
    models jsonb,
    -- What went wrong the last time: the whole fetch, or the folders that failed.
    error text,
    check ((nodes is null) = (fetched_at is null))
);
