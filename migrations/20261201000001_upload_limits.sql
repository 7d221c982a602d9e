-- Upload limits that hold under concurrency (issue 11): bytes a deferred-length PATCH was
-- granted before writing them, and the final upload a finished partial is being joined into.

-- Counted toward the quota while the length is unknown (with the bytes received), so
-- writers running at once cannot together pass it. Reset when the PATCH ends.
alter table uploads add column reserved bigint not null default 0 check (reserved >= 0);

-- Set while a final upload copies this partial: a partial is joined into one final only.
alter table uploads add column final_id uuid references uploads (id);
create index uploads_final_id_idx on uploads (final_id);
