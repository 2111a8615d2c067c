-- Function capabilities: encrypted secrets, egress policies, and what each call did with them.
create table secrets (
    tenant text not null,
    name text not null,
    -- ChaCha20-Poly1305 with the server's key; the tenant and name are authenticated data.
    nonce blob not null,
    ciphertext blob not null,
    created_by text not null,
    created_at bigint not null,
    updated_at bigint not null,
    primary key (tenant, name)
);

create table egress_policies (
    tenant text primary key,
    policy text not null,
    updated_by text not null,
    updated_at bigint not null
);

-- JSON array: outbound requests (method, host, path, status, bytes, duration) and secret
-- reads (by name) made by the call. Never headers, bodies or secret values.
alter table steps add column activity text;
alter table executions add column activity text;
