-- Webhooks: a public path that runs a function of the owning tenant. Paths are global (the
-- handler URL carries no tenant), so they are unique across tenants.
create table webhooks (
    id text primary key,
    tenant text not null,
    path text not null unique,
    function_name text not null,
    http_method text not null,
    requires_auth bigint not null default 0,
    secret text not null,
    description text not null default '',
    enabled bigint not null default 1,
    async_mode bigint not null default 0,
    input_mode text not null default 'request',
    max_concurrency bigint,
    created_by text not null,
    created_at bigint not null,
    updated_at bigint not null
);
create index webhooks_tenant on webhooks (tenant, path);
create index webhooks_function on webhooks (tenant, function_name);

-- What started an execution beyond its kind: the webhook (or, later, schedule) id.
alter table executions add column trigger_id text;
