-- Workflow runs not waited for are jobs of the queue too (`target` = 'workflow'): their
-- `workflow_runs` row is written with the job (status `queued`), and the server that claims
-- the job hands the run over to that row's lease in one transaction (deleting the job), so
-- an accepted run is never lost between the 202 and its first node.
alter table jobs add column target text not null default 'function';
