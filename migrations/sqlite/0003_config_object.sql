-- Response-group objects created through the API (agent groups, queues, business hours, holiday
-- sets, workflows). The PostgreSQL twin is migrations/postgres/0003_config_object.sql.
--
-- `body` is the object's table exactly as the TOML configuration contract writes it, as JSON
-- text (same keys, same value shapes; `name` included). The configuration compiler checks it
-- together with the file, so the database holds only objects that compiled. `version` starts at
-- 1 and grows by one on every change: it is the object's ETag.
create table config_object
(
    id         integer primary key,
    kind       text    not null check (kind in ('agent_group', 'queue', 'hours', 'holiday_set', 'workflow')),
    name       text    not null,
    body       text    not null,
    version    integer not null check (version > 0),
    created_by text    not null,
    created_at integer not null,
    updated_by text    not null,
    updated_at integer not null,
    unique (kind, name)
);
