-- Cron schedules and their runs.
create table schedules (
    id text primary key,
    tenant text not null,
    name text not null,
    function_name text not null,
    cron_expression text not null,
    timezone text not null,
    input_data text not null,
    enabled bigint not null default 1,
    max_retries bigint not null default 0,
    retry_delay_seconds double precision not null default 60,
    backoff_factor double precision not null default 2,
    max_retry_delay_seconds double precision not null default 3600,
    overlap_policy text not null default 'skip',
    catchup_window_seconds double precision not null default 300,
    -- The next tick (unix ms); null while paused. Replicas claim a tick by moving this
    -- forward with a compare-and-set, so each tick is taken by exactly one of them.
    next_run_at bigint,
    last_run_at bigint,
    last_status text,
    last_execution_id text,
    created_by text not null,
    created_at bigint not null,
    updated_at bigint not null,
    unique (tenant, name)
);
create index schedules_due on schedules (next_run_at);
create index schedules_function on schedules (tenant, function_name);

-- One row per tick and attempt. The unique key is a second guard against a double fire.
create table schedule_runs (
    id text primary key,
    tenant text not null,
    schedule_id text not null references schedules (id) on delete cascade,
    fire_at bigint not null,
    attempt bigint not null,
    status text not null,
    reason text,
    due_at bigint not null,
    execution_id text,
    retry_of text,
    missed bigint not null default 0,
    created_at bigint not null,
    finished_at bigint,
    unique (schedule_id, fire_at, attempt)
);
create index schedule_runs_status on schedule_runs (status, due_at);
create index schedule_runs_schedule on schedule_runs (schedule_id, created_at);

-- Retries of a scheduled run: which attempt, and the execution of the first one.
alter table executions add column attempt bigint;
alter table executions add column retry_of text;

-- Webhooks that accept only timestamped signatures (so a captured request cannot be replayed).
alter table webhooks add column require_timestamp bigint not null default 0;
