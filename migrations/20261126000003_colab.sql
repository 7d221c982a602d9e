-- The Colab ComfyUI endpoint: the webhook's secrets, the events it has seen, every URL
-- Slate was told about, and every check of one.

create table colab_webhook_secrets (
    id bigint generated always as identity primary key,
    -- The HMAC key itself: verifying a signature needs it, so it cannot be hashed.
    secret text not null,
    created_at timestamptz not null default now(),
    created_by uuid references users (id) on delete set null,
    -- A rotated-out secret keeps working until then, so the notebook can be updated.
    retires_at timestamptz
);
create index colab_webhook_secrets_created_by on colab_webhook_secrets (created_by);

create table colab_webhook_events (
    event_id text primary key,
    signed_at timestamptz not null,
    received_at timestamptz not null default now(),
    event text not null,
    notebook_id text not null,
    outcome text not null
);
create index colab_webhook_events_received_at on colab_webhook_events (received_at);

create table colab_endpoints (
    id uuid primary key,
    url text not null,
    source text not null check (source in ('webhook', 'admin', 'fallback')),
    notebook_id text,
    actor_user_id uuid references users (id) on delete set null,
    actor_token_id uuid references api_tokens (id) on delete set null,
    actor_label text not null,
    -- When the source says it came up (the signed time for the webhook).
    reported_at timestamptz not null,
    received_at timestamptz not null default now(),
    state text not null check (state in ('verifying', 'healthy', 'rejected', 'down', 'replaced')),
    verification jsonb,
    verified_at timestamptz,
    last_heartbeat_at timestamptz,
    ended_at timestamptz,
    end_reason text,
    -- Written into the cluster (Secret or ConfigMap, consumers restarted), or why not.
    published_at timestamptz,
    publication jsonb
);
create index colab_endpoints_received_at on colab_endpoints (received_at desc);
create index colab_endpoints_actor_user_id on colab_endpoints (actor_user_id);
create index colab_endpoints_actor_token_id on colab_endpoints (actor_token_id);
-- At most one endpoint is current (verifying or healthy) at a time.
create unique index colab_endpoints_one_current on colab_endpoints ((true))
    where state in ('verifying', 'healthy');

create table endpoint_checks (
    id bigint generated always as identity primary key,
    endpoint_id uuid not null references colab_endpoints (id) on delete cascade,
    at timestamptz not null default now(),
    kind text not null check (kind in ('verify', 'health')),
    ok boolean not null,
    class text,
    detail text,
    latency_ms integer,
    queue_remaining integer
);
create index endpoint_checks_endpoint_id_at on endpoint_checks (endpoint_id, at desc);

-- Settings an admin changes: the fallback endpoint used when the current one fails.
create table colab_settings (
    id boolean primary key default true check (id),
    fallback_url text,
    updated_at timestamptz not null default now(),
    updated_by uuid references users (id) on delete set null
);
create index colab_settings_updated_by on colab_settings (updated_by);

-- Deploy events: what changed in the cluster and who did it. Slate's own actions (the
-- Colab endpoint's publication and the restarts it causes) are written here now; the
-- deploys issue adds cluster revisions and CI reports to the same history.
create table deploy_events (
    id uuid primary key,
    at timestamptz not null default now(),
    source text not null check (source in ('slate', 'ci', 'cluster')),
    actor_label text not null,
    action text not null,
    namespace text not null,
    kind text not null,
    name text not null,
    outcome text not null check (outcome in ('done', 'refused', 'failed')),
    reason text,
    detail jsonb not null default '{}'::jsonb
);
create index deploy_events_at on deploy_events (at desc);
create index deploy_events_object on deploy_events (namespace, kind, name, at desc);
