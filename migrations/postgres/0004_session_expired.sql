-- A call ended by rgsd because a leg's RFC 4028 session timer ran out (the peer stopped
-- refreshing, or rgsd's own refresh failed). The SQLite twin is
-- migrations/sqlite/0004_session_expired.sql.
alter table call_record
    drop constraint call_record_outcome_check;
alter table call_record
    add constraint call_record_outcome_check
        check (outcome in ('answered', 'abandoned', 'queue_timed_out', 'overflowed', 'out_of_hours', 'holiday',
                           'forwarded', 'disconnected', 'rejected', 'failed', 'session_expired'));
