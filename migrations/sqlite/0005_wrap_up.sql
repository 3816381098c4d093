-- Wrap-up (docs/behaviour.md, Wrap-up): after a call answered through a group, its agent is
-- offered nothing from any group for the group's wrap-up time, or the agent's own where set.
-- The PostgreSQL twin is migrations/postgres/0005_wrap_up.sql.

-- 0: no wrap-up (the default, and what every group had before).
alter table agent_group
    add column wrap_up_ms integer not null default 0 check (wrap_up_ms >= 0);

-- The agent's own wrap-up time, overriding its groups'; null: its groups' apply.
alter table agent
    add column wrap_up_ms integer check (wrap_up_ms >= 0);
