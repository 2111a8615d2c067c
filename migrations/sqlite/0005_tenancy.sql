-- Subtenants (workspaces an admin creates), who may act in them, and the audit trail.
create table subtenants (
    id text primary key,
    description text not null default '',
    -- Per-subtenant quota overrides (JSON object); missing keys use the server defaults.
    quotas text not null default '{}',
    created_by text not null,
    created_at bigint not null,
    updated_at bigint not null
);

create table grants (
    subtenant_id text not null references subtenants (id) on delete cascade,
    user_email text not null,
    role text not null,
    granted_by text not null,
    created_at bigint not null,
    primary key (subtenant_id, user_email)
);
create index grants_email on grants (user_email);

create table audit_log (
    id text primary key,
    tenant text not null,
    actor text not null,
    action text not null,
    target text not null,
    detail text,
    at bigint not null
);
create index audit_log_at on audit_log (at);
create index audit_log_tenant on audit_log (tenant, at);
