-- Live servers: each one's lease pass records a heartbeat, so `/cluster` can list the
-- replicas and the jobs each holds.
create table nodes (
    id text primary key,
    started_at bigint not null,
    heartbeat_at bigint not null
);
