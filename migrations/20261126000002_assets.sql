-- Assets, their versions, and tus uploads.

create table assets (
    id                 uuid primary key,
    owner_id           uuid not null references users (id),
    name               text not null,
    kind               text not null default 'other',
    state              text not null check (state in ('uploading', 'processing', 'ready', 'failed')),
    failure            text,
    tags               text[] not null default '{}',
    current_version_id uuid,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    deleted_at         timestamptz
);
create index assets_owner_id_idx on assets (owner_id);
create index assets_listing_idx on assets (created_at desc, id desc) where deleted_at is null;
create index assets_tags_idx on assets using gin (tags);
create index assets_name_idx on assets (lower(name));

create table asset_versions (
    id               uuid primary key,
    asset_id         uuid not null references assets (id),
    number           integer not null,
    state            text not null check (state in ('uploading', 'processing', 'ready', 'failed')),
    failure          text,
    original_name    text not null,
    size             bigint,
    sha256           text,
    blob_key         text,
    mime             text,
    kind             text,
    probe            jsonb,
    thumbnail_key    text,
    proxy_key        text,
    attempts         integer not null default 0,
    lease_until      timestamptz,
    created_by       uuid references users (id),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    unique (asset_id, number)
);
create index asset_versions_created_by_idx on asset_versions (created_by);
create index asset_versions_processing_idx on asset_versions (created_at) where state = 'processing';
create index asset_versions_sha256_idx on asset_versions (sha256);
alter table assets add constraint assets_current_version_fk
    foreign key (current_version_id) references asset_versions (id);
create index assets_current_version_id_idx on assets (current_version_id);

create table uploads (
    id            uuid primary key,
    owner_id      uuid not null references users (id),
    -- Null while the client defers the length (Upload-Defer-Length: 1).
    length        bigint,
    -- Bytes stored; the partial file's size is the source of truth after a crash.
    received      bigint not null default 0,
    metadata      jsonb not null default '{}'::jsonb,
    metadata_raw  text,
    concat        text not null default 'none' check (concat in ('none', 'partial', 'final')),
    state         text not null check (state in ('receiving', 'complete', 'terminated', 'expired')),
    version_id    uuid references asset_versions (id),
    expires_at    timestamptz not null,
    -- The PATCH writing to the upload holds it: a token and an expiry it keeps renewing.
    lease_token   uuid,
    lease_until   timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    completed_at  timestamptz
);
create index uploads_owner_id_idx on uploads (owner_id);
create index uploads_version_id_idx on uploads (version_id);
create index uploads_expiry_idx on uploads (expires_at) where state = 'receiving';
