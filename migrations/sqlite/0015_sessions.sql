-- Sessions (`POST /api/v1/sessions`): a kept interpreter lives in one server's memory; this
-- row says which server holds it (`node_id`), so another replica can name the owner (409)
-- or say that the session ended (410), and caps on live sessions count across the cluster.
create table sessions (
    id text primary key,
    tenant text not null,
    node_id text not null,
    status text not null,
    end_reason text,
    error text,
    timeout_ms integer,
    memory_mb bigint not null,
    fuel bigint,
    idle_ttl_seconds bigint not null,
    execution_count bigint not null default 0,
    created_at bigint not null,
    last_used_at bigint not null,
    expires_at bigint not null,
    ended_at bigint
);
create index sessions_by_tenant on sessions (tenant, status, created_at);
