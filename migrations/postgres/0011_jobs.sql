-- The durable queue of deferred executions (async webhook calls, `?async=true` invokes).
-- A row is written with its execution (status `queued`) in one transaction before the 202
-- is sent, and deleted in the transaction that records the execution's end. A worker on any
-- server claims a row (`for update skip locked` on PostgreSQL), holding it under a lease it
-- renews while the execution runs; a row whose lease ran out (its server died) goes back to
-- `queued` as a new attempt (a new execution, `retry_of` the first), or fails when it has
-- no attempts left. Rows are claimed in `rank` order: a tenant's next job ranks after its
-- last one, and never before the lowest rank waiting, so tenants take turns.
create table jobs (
    id text primary key,
    tenant text not null,
    execution_id text not null,
    first_execution_id text not null,
    function_name text not null,
    trigger text not null,
    trigger_id text,
    envelope bigint not null default 0,
    priority bigint not null,
    rank bigint not null,
    status text not null,
    attempt bigint not null,
    max_attempts bigint not null,
    owner text,
    lease_until bigint,
    run_at bigint not null,
    created_at bigint not null
);
create index jobs_claim on jobs (status, rank, priority, created_at);
create index jobs_lease on jobs (status, lease_until);
create index jobs_tenant on jobs (tenant, rank);
create index jobs_depth on jobs (tenant, status);
