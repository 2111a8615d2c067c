-- Workflows: DAGs of functions, versioned like functions.
create table workflows (
    id text primary key,
    tenant text not null,
    name text not null,
    current_version bigint not null,
    created_by text not null,
    created_at bigint not null,
    updated_at bigint not null,
    unique (tenant, name)
);

create table workflow_versions (
    workflow_id text not null,
    tenant text not null,
    version bigint not null,
    -- The checked definition (nodes, edges, config, concurrency) as JSON.
    definition text not null,
    created_by text not null,
    created_at bigint not null,
    primary key (workflow_id, version)
);
