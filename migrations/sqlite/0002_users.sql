-- People who sign in to the web pages with a password, and their sessions. SQLite dialect; the
-- PostgreSQL twin is migrations/postgres/0002_users.sql (keep the two in step).
--
-- API tokens (`api_token`) stay for scripts; a user and a token with the same name and role are
-- allowed the same things.

-- A person. `name` is their SIP URI, as agents and managers are identified everywhere else.
create table app_user
(
    id            integer primary key,
    name          text    not null unique,
    role          text    not null check (role in ('admin', 'manager', 'agent')),
    -- Argon2id, as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`): the parameters travel
    -- with the hash, so raising them later leaves old hashes verifiable.
    password_hash text    not null,
    created_at    integer not null,
    -- When the password was last set.
    updated_at    integer not null,
    -- A disabled user cannot sign in; their sessions stop working at once.
    disabled_at   integer
);

-- A signed-in browser. The session id (in the cookie) is never stored: only its hex SHA-256, as
-- for API tokens. Expired rows are deleted when new sessions are created.
create table user_session
(
    id           integer primary key,
    session_hash text    not null unique,
    user_id      integer not null references app_user (id) on delete cascade,
    created_at   integer not null,
    -- Last request seen (updated at most once a minute): the idle expiry counts from here.
    last_seen_at integer not null,
    -- The absolute expiry: the session ends then however active it is.
    expires_at   integer not null
);

create index user_session_user_id_idx on user_session (user_id);
