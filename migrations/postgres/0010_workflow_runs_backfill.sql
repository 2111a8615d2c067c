-- Workflow runs started before 0009 have no run record: give them one so the workflow's
-- run views still list them. They are never taken over (no lease): one that was still
-- running is closed by the stale sweeper as before.
insert into workflow_runs (execution_id, tenant, workflow_id, version, config, trigger, trigger_id, status,
                           owner, lease_until, resumes, created_at)
select e.id, e.tenant, e.trigger_id, e.function_version, '{}', 'workflow', e.trigger_id, e.status,
       null, null, 0, e.started_at
from executions e
where e.trigger = 'workflow' and e.trigger_id is not null
  and not exists (select 1 from workflow_runs r where r.execution_id = e.id);
