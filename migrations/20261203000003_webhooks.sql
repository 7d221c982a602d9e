-- Slate's events out (issue 15): webhook subscriptions, the outbox of events the database
-- fills itself (so no event is lost by a crash and no other module writes here), the
-- deliveries made from it for each subscription, and every try of each delivery.

create table webhook_subscriptions (
    id uuid primary key,
    url text not null,
    -- The event types delivered; null means every type.
    events text[],
    -- `whsec_<base64>`: a shared secret (Slate signs with it), so it is kept as given.
    secret text not null,
    enabled boolean not null default true,
    description text not null default '',
    created_by uuid references users (id) on delete set null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index webhook_subscriptions_created_by on webhook_subscriptions (created_by);

-- The outbox: one row per event, written by the triggers below in the same transaction
-- as the change itself. A worker turns each into deliveries and marks it dispatched.
create table webhook_events (
    id bigserial primary key,
    type text not null,
    data jsonb not null,
    occurred_at timestamptz not null default now(),
    dispatched_at timestamptz
);
create index webhook_events_pending on webhook_events (id) where dispatched_at is null;
create index webhook_events_dispatched_at on webhook_events (dispatched_at) where dispatched_at is not null;

-- One message to one subscription. Its id is the `webhook-id` header (stable across
-- tries); its body is fixed when it is made, so every try signs the same bytes.
create table webhook_deliveries (
    id uuid primary key,
    subscription_id uuid not null references webhook_subscriptions (id) on delete cascade,
    event_id bigint references webhook_events (id) on delete set null,
    type text not null,
    body text not null,
    state text not null check (state in ('pending', 'succeeded', 'failed')),
    -- Tries made, and tries still allowed before it is given up (a resend adds one).
    tries integer not null default 0,
    tries_left integer not null check (tries_left >= 0),
    next_try_at timestamptz not null default now(),
    -- A worker holding a try: its claim, until when (a crashed worker's claim expires).
    claim uuid,
    lease_until timestamptz,
    -- An admin asked for one more try (the next try is logged as a resend).
    resend_requested boolean not null default false,
    last_status integer,
    last_error text,
    created_at timestamptz not null default now(),
    finished_at timestamptz
);
create index webhook_deliveries_subscription on webhook_deliveries (subscription_id, created_at desc);
create index webhook_deliveries_event_id on webhook_deliveries (event_id);
create index webhook_deliveries_due on webhook_deliveries (next_try_at) where state = 'pending';

-- Every try, with what the receiver answered. `(delivery_id, number)` is unique: one try
-- is recorded once whatever number of workers raced for it.
create table webhook_tries (
    id bigserial primary key,
    delivery_id uuid not null references webhook_deliveries (id) on delete cascade,
    number integer not null check (number > 0),
    started_at timestamptz not null,
    duration_ms integer not null,
    status_code integer,
    -- The start of the response body (bounded), for the log.
    response_excerpt text,
    error text,
    resend boolean not null default false,
    unique (delivery_id, number)
);

-- Runs: every state a run enters (its submission included).
create function webhook_run_event() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' or new.state is distinct from old.state then
        insert into webhook_events (type, data) values (
            case new.state when 'running' then 'run.started' else 'run.' || new.state end,
            jsonb_build_object(
                'run_id', new.id,
                'state', new.state,
                'pipeline', (select jsonb_build_object('id', p.id, 'name', p.name,
                    'version', p.version, 'title', p.title) from pipelines p where p.id = new.pipeline_id),
                'priority', new.priority,
                'submitted_by', (select email from users where id = new.submitted_by),
                'created_at', new.created_at,
                'started_at', new.started_at,
                'finished_at', new.finished_at));
    end if;
    return null;
end;
$$;
create trigger runs_webhook_events after insert or update of state on runs
    for each row execute function webhook_run_event();

-- Stages: started (each attempt), ended, and waiting for a person (what the questions
-- service says in `status_message`).
create function webhook_stage_event() returns trigger language plpgsql as $$
declare
    kind text;
    was_waiting boolean;
    now_waiting boolean;
begin
    if tg_op = 'INSERT' or new.state is distinct from old.state then
        kind := case new.state
            when 'running' then 'stage.started'
            when 'succeeded' then 'stage.succeeded'
            when 'failed' then 'stage.failed'
            when 'cancelled' then 'stage.cancelled'
        end;
    end if;
    now_waiting := coalesce(new.status_message like 'Waiting for a person%', false);
    was_waiting := tg_op = 'UPDATE' and coalesce(old.status_message like 'Waiting for a person%', false);
    if kind is null and now_waiting and not was_waiting then
        kind := 'stage.waiting';
    end if;
    if kind is not null then
        insert into webhook_events (type, data) values (kind, jsonb_build_object(
            'run_id', new.run_id,
            'stage_id', new.id,
            'stage', new.name,
            'executor', new.executor,
            'state', new.state,
            'attempt', new.attempt,
            'attempts_max', new.attempts_max,
            'status_message', new.status_message,
            'fan_of', new.fan_of,
            'item_index', new.item_index));
    end if;
    return null;
end;
$$;
create trigger run_stages_webhook_events after insert or update of state, status_message on run_stages
    for each row execute function webhook_stage_event();

-- Outputs: an asset a run made.
create function webhook_output_event() returns trigger language plpgsql as $$
begin
    insert into webhook_events (type, data) values ('output.created', jsonb_build_object(
        'run_id', new.run_id,
        'stage_id', new.stage_id,
        'stage', (select name from run_stages where id = new.stage_id),
        'asset_id', new.asset_id,
        'version_id', new.version_id,
        'name', (select name from assets where id = new.asset_id),
        'kind', (select kind from assets where id = new.asset_id)));
    return null;
end;
$$;
create trigger run_outputs_webhook_events after insert on run_outputs
    for each row execute function webhook_output_event();

-- The Colab endpoint: up when healthy, down when it went down or was rejected, changed
-- otherwise (verifying, replaced). Never its URL: the tunnel URL is a credential.
create function webhook_endpoint_event() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' or new.state is distinct from old.state then
        insert into webhook_events (type, data) values (
            case new.state
                when 'healthy' then 'endpoint.up'
                when 'down' then 'endpoint.down'
                when 'rejected' then 'endpoint.down'
                else 'endpoint.changed'
            end,
            jsonb_build_object(
                'endpoint_id', new.id,
                'kind', 'colab',
                'state', new.state,
                'previous_state', case when tg_op = 'UPDATE' then old.state end,
                'source', new.source,
                'end_reason', new.end_reason));
    end if;
    return null;
end;
$$;
create trigger colab_endpoints_webhook_events after insert or update of state on colab_endpoints
    for each row execute function webhook_endpoint_event();
