-- Accounts, sessions, API tokens, the audit log and login throttling.

create table users (
    id            uuid primary key,
    email         text not null,
    role          text not null check (role in ('creator', 'lead', 'admin')),
    password_hash text not null,
    disabled_at   timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

-- tower-sessions store (schema/table names are configured in server::http::sessions).
create table sessions (
    id          text primary key not null,
    data        bytea not null,
    expiry_date timestamptz not null
);
create index sessions_expiry_date_idx on sessions (expiry_date);

create table api_tokens (
    id           uuid primary key,
    user_id      uuid not null references users (id) on delete cascade,
    name         text not null,
    scope        text not null check (scope in ('api', 'ci', 'colab')),
    -- The first characters of the secret, shown so people can tell tokens apart.
    prefix       text not null,
    -- sha256 of the whole secret; the secret itself is never stored.
    secret_hash  bytea not null unique,
    created_by   uuid references users (id) on delete set null,
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
create index api_tokens_user_id_idx on api_tokens (user_id);
create index api_tokens_created_by_idx on api_tokens (created_by);

create table audit_log (
    id             bigint generated always as identity primary key,
    at             timestamptz not null default now(),
    actor_user_id  uuid references users (id) on delete set null,
    actor_token_id uuid references api_tokens (id) on delete set null,
    -- Who it was at the time (email, token name, or "system"/"cli"), kept when the row above goes.
    actor_label    text not null,
    action         text not null,
    target         text,
    detail         jsonb not null default '{}'::jsonb,
    client_addr    text
);
create index audit_log_at_idx on audit_log (at desc, id desc);
create index audit_log_actor_user_id_idx on audit_log (actor_user_id);
create index audit_log_actor_token_id_idx on audit_log (actor_token_id);
create index audit_log_action_idx on audit_log (action);

-- One row per failed sign-in, keyed by account and by client address; old rows are swept.
create table login_failures (
    id  bigint generated always as identity primary key,
    key text not null,
    at  timestamptz not null default now()
);
create index login_failures_key_at_idx on login_failures (key, at);
