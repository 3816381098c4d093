-- A call in progress when rgsd stopped without ending it (a crash, kill -9), recorded at the next
-- start from the call journal (docs/architecture.md, Call journal). The SQLite twin is
-- migrations/sqlite/0007_restarted.sql.
alter table call_record
    drop constraint call_record_outcome_check;
alter table call_record
    add constraint call_record_outcome_check
        check (outcome in ('answered', 'abandoned', 'queue_timed_out', 'overflowed', 'out_of_hours', 'holiday',
                           'forwarded', 'disconnected', 'rejected', 'failed', 'session_expired', 'restarted'));
