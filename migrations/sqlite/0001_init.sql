-- rgsd schema, SQLite dialect. The PostgreSQL twin is migrations/postgres/0001_init.sql: keep the
-- two in step (same version numbers, same tables, same columns, same meaning).
--
-- Never edit a migration once it has been applied anywhere; add a new numbered file instead.
--
-- Conventions, shared by both dialects so that one SQL text serves both backends:
--   * table names are singular;
--   * every timestamp is an integer count of milliseconds since the Unix epoch, UTC
--     (src/store/mod.rs says why); `created_at`/`updated_at` on the tables that change;
--   * enumerations are lower-case text guarded by a `check`;
--   * ids are 64-bit integers (`integer primary key` is SQLite's rowid alias).

-- A SIP endpoint that takes calls. Agents are created by the API or, implicitly, when a group
-- (from the config file or the API) lists a URI not seen before.
create table agent
(
    id           integer primary key,
    -- As written in the config or the API, e.g. `sip:alice@127.0.0.1:5071`. Compared exactly.
    sip_uri      text    not null unique,
    display_name text,
    created_at   integer not null,
    updated_at   integer not null
);

-- An agent group: who gets offered calls, and how.
create table agent_group
(
    id            integer primary key,
    name          text    not null unique,
    description   text,
    participation text    not null check (participation in ('informal', 'formal')),
    routing       text    not null check (routing in ('longest_idle', 'parallel', 'round_robin', 'serial', 'attendant')),
    alert_time_ms integer not null check (alert_time_ms > 0),
    -- 'config': declared in the TOML file and rewritten from it at start and on reload.
    -- 'api': created through the HTTP API; config synchronisation never touches it.
    -- 'retired': was declared in the TOML file, no longer is. Kept (with its members and their
    --   sign-in state) so that putting it back restores it; the API may delete it.
    source        text    not null check (source in ('config', 'api', 'retired')),
    created_at    integer not null,
    updated_at    integer not null
);

-- Group membership, ordered: serial and round-robin routing follow `position` (0 first).
create table agent_group_member
(
    group_id integer not null references agent_group (id) on delete cascade,
    agent_id integer not null references agent (id) on delete cascade,
    position integer not null,
    primary key (group_id, agent_id)
);

-- Formal sign-in state of a member. A row exists once the agent has signed in or out at least
-- once; no row means "signed out". It references the membership, so leaving a group (or the group
-- or agent being deleted) drops the state with it.
create table agent_sign_in
(
    group_id   integer not null,
    agent_id   integer not null,
    signed_in  integer not null check (signed_in in (0, 1)),
    changed_at integer not null,
    primary key (group_id, agent_id),
    foreign key (group_id, agent_id) references agent_group_member (group_id, agent_id) on delete cascade
);

-- One row per call that reached a workflow, written when the call ends. Names (workflow, queue,
-- group) and URIs are copied as text, not referenced: the record is history and must survive the
-- deletion or renaming of what it mentions.
create table call_record
(
    id               integer primary key,
    -- The SIP Call-ID of the caller's leg.
    call_id          text    not null,
    workflow         text    not null,
    workflow_uri     text    not null,
    -- The caller's address as received (From URI).
    caller           text    not null,
    arrived_at       integer not null,
    welcome_ended_at integer,
    -- The last queue the call waited in.
    queue            text,
    queued_at        integer,
    answered_at      integer,
    ended_at         integer not null,
    outcome          text    not null check (outcome in ('answered', 'abandoned', 'queue_timed_out', 'overflowed',
                                                         'out_of_hours', 'holiday', 'forwarded', 'disconnected',
                                                         'rejected', 'failed')),
    -- The agent who answered, and the group through which the call reached them.
    agent            text,
    agent_group      text,
    -- Where a time-out, overflow or IVR action sent the call (a SIP URI or a queue name).
    transferred_to   text,
    -- The final SIP status of the caller's leg, when rgsd sent one.
    sip_code         integer,
    -- Time spent waiting in queues, and talking to the agent.
    wait_ms          integer,
    talk_ms          integer,
    -- When the row was written (the record writer may write it late, after an outage).
    created_at       integer not null,
    -- Writing a record twice (a retry after a lost acknowledgement) must not duplicate it.
    unique (call_id, arrived_at)
);

create index call_record_arrived_at_idx on call_record (arrived_at);

-- Each time a call was offered to (rung at) an agent.
create table call_offer
(
    id             integer primary key,
    call_record_id integer not null references call_record (id) on delete cascade,
    agent          text    not null,
    agent_group    text,
    offered_at     integer not null,
    result         text    not null check (result in ('answered', 'declined', 'no_answer', 'cancelled', 'failed')),
    -- The agent's final SIP status, when one came back.
    sip_code       integer
);

create index call_offer_call_record_id_idx on call_offer (call_record_id);

-- Bearer tokens of the HTTP API. The token itself is never stored: only the hex SHA-256 of it.
-- A token is random (256 bits), so a plain hash is enough; no salt or slow hash is needed.
create table api_token
(
    id         integer primary key,
    token_hash text    not null unique,
    role       text    not null check (role in ('admin', 'manager', 'agent')),
    -- Whom the token speaks for: an agent's or manager's SIP URI, an administrator's name.
    subject    text    not null,
    created_at integer not null,
    revoked_at integer
);

-- Who changed what through the API. Append-only.
create table audit_log
(
    id     integer primary key,
    at     integer not null,
    actor  text    not null,
    action text    not null,
    target text    not null,
    -- A JSON document with the details of the change.
    detail text    not null
);

create index audit_log_at_idx on audit_log (at);
