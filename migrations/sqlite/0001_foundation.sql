-- Functions, their immutable versions, executions and steps. Every row carries its tenant.
-- Times are unix milliseconds; JSON is stored as text (the same schema serves SQLite and PostgreSQL).
create table functions (
    id text primary key,
    tenant text not null,
    name text not null,
    current_version bigint not null,
    latest_version bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    unique (tenant, name)
);

create table function_versions (
    function_id text not null references functions (id) on delete cascade,
    tenant text not null,
    version bigint not null,
    description text not null,
    code text not null,
    code_sha256 text not null,
    input_schema text,
    output_schema text,
    settings text not null,
    note text,
    created_by text not null,
    created_at bigint not null,
    primary key (function_id, version)
);

create table executions (
    id text primary key,
    tenant text not null,
    function_name text not null,
    function_version bigint not null,
    trigger text not null,
    status text not null,
    input text not null,
    output text,
    error text,
    fuel_used bigint not null default 0,
    duration_ms double precision,
    started_at bigint not null,
    finished_at bigint,
    deadline_at bigint not null
);
create index executions_tenant_started on executions (tenant, started_at);
create index executions_running on executions (status, deadline_at);

create table steps (
    id text primary key,
    tenant text not null,
    execution_id text not null references executions (id) on delete cascade,
    parent_id text,
    seq bigint not null,
    depth integer not null,
    function_name text not null,
    function_version bigint,
    status text not null,
    input text not null,
    output text,
    error text,
    stdout text not null default '',
    stderr text not null default '',
    fuel_used bigint not null default 0,
    duration_ms double precision,
    started_at bigint not null,
    finished_at bigint
);
create index steps_execution on steps (execution_id, seq);
