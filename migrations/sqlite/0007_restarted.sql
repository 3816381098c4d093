-- no-transaction
-- A call in progress when rgsd stopped without ending it (a crash, kill -9), recorded at the next
-- start from the call journal (docs/architecture.md, Call journal). The PostgreSQL twin is
-- migrations/postgres/0007_restarted.sql.
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt as in
-- 0004_session_expired.sql (foreign keys off so that dropping the old table neither cascades to
-- call_offer nor fails; that pragma has no effect inside a transaction, hence no-transaction).
pragma foreign_keys = off;

begin;

create table call_record_new
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
                                                         'rejected', 'failed', 'session_expired', 'restarted')),
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
    -- Announcements the caller heard (position and wait, periodic prompts).
    announcements    integer not null default 0 check (announcements >= 0),
    -- The wrap-up the answering agent went into after the call, as set; null: none.
    wrap_up_ms       integer check (wrap_up_ms >= 0),
    -- Writing a record twice (a retry after a lost acknowledgement) must not duplicate it.
    unique (call_id, arrived_at)
);

insert into call_record_new (id, call_id, workflow, workflow_uri, caller, arrived_at, welcome_ended_at, queue,
                             queued_at, answered_at, ended_at, outcome, agent, agent_group, transferred_to,
                             sip_code, wait_ms, talk_ms, created_at, announcements, wrap_up_ms)
select id, call_id, workflow, workflow_uri, caller, arrived_at, welcome_ended_at, queue,
       queued_at, answered_at, ended_at, outcome, agent, agent_group, transferred_to,
       sip_code, wait_ms, talk_ms, created_at, announcements, wrap_up_ms
from call_record;

drop table call_record;

alter table call_record_new
    rename to call_record;

create index call_record_arrived_at_idx on call_record (arrived_at);

commit;

pragma foreign_keys = on;
