-- Cancel requests for executions that run somewhere in the cluster: the server running one
-- finds its request on its next lease pass and stops it; lease recovery closes a cancelled
-- job's execution instead of queueing a new attempt. Rows are forgotten after a while.
create table cancel_requests (
    execution_id text primary key,
    tenant text not null,
    requested_at bigint not null
);
create index cancel_requests_at on cancel_requests (requested_at);
-- A job is found by its current attempt's execution (cancel, lease renewal).
create index jobs_execution on jobs (execution_id);
