-- What a caller heard while waiting and what followed the call (docs/behaviour.md,
-- Announcements and Wrap-up), for the reports. The SQLite twin is
-- migrations/sqlite/0006_call_record_waiting.sql.

-- Announcements the caller heard (position and wait, periodic prompts); 0 for older records.
alter table call_record
    add column announcements bigint not null default 0 check (announcements >= 0);

-- The wrap-up the answering agent went into after the call, as set; null: none.
alter table call_record
    add column wrap_up_ms bigint check (wrap_up_ms >= 0);
