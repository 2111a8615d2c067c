-- Keyset pages: each listing's index ends in the row id, so "just past (time, id)" is one
-- index range however deep the page.
create index executions_tenant_started_id on executions (tenant, started_at, id);
drop index executions_tenant_started;
create index workflow_runs_keyset on workflow_runs (tenant, workflow_id, created_at, execution_id);
drop index workflow_runs_workflow;
create index schedule_runs_keyset on schedule_runs (schedule_id, created_at, id);
drop index schedule_runs_schedule;
