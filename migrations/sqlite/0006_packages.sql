-- Per-tenant Python packages (pure-Python wheels) and the install jobs that add them.
-- The wheel itself is kept here, so every server can unpack the same files.
create table packages (
    tenant text not null,
    -- Canonical (PEP 503) name.
    name text not null,
    version text not null,
    filename text not null,
    sha256 text not null,
    size_bytes bigint not null,
    unpacked_bytes bigint not null,
    -- JSON array of the canonical names it depends on.
    requires text not null default '[]',
    -- 'pip' or 'upload'.
    source text not null,
    -- The package whose install pulled this one in; null when asked for directly.
    dependency_of text,
    installed_by text not null,
    installed_at bigint not null,
    wheel blob not null,
    primary key (tenant, name)
);

create table package_jobs (
    id text primary key,
    tenant text not null,
    requirement text not null,
    status text not null,
    -- JSON: {code, message, package} when failed; the installed packages when done.
    error text,
    result text,
    created_by text not null,
    created_at bigint not null,
    finished_at bigint
);
create index package_jobs_tenant on package_jobs (tenant, created_at);
