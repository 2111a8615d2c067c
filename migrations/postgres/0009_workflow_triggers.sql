-- Webhooks and schedules may run a workflow instead of a function: `workflow_name` is set
-- and `function_name` is empty (a function name is never empty).
alter table webhooks add column workflow_name text;
alter table schedules add column workflow_name text;

-- A workflow run's state beyond its steps: what it runs and who drives it. The server
-- driving a run renews its lease; a run whose lease ran out is taken over by another server
-- (or the same one after a restart), which rebuilds the state from the stored steps.
create table workflow_runs (
    execution_id text primary key,
    tenant text not null,
    workflow_id text not null,
    version bigint not null,
    config text not null,
    trigger text not null,
    trigger_id text,
    status text not null,
    owner text,
    lease_until bigint,
    resumes bigint not null default 0,
    created_at bigint not null
);
create index workflow_runs_lease on workflow_runs (status, lease_until);
create index workflow_runs_workflow on workflow_runs (tenant, workflow_id, created_at);
