//! The store: the only code that speaks SQL (SQLite or PostgreSQL, through sqlx).
//!
//! [`Store`] is a cheap, cloneable handle (the pools are `Arc`s inside). Its methods speak the
//! domain — `create_agent`, `sign_in`, `record_call`, `authenticate` — and are grouped by
//! subject: [`agents`] (agents), [`groups`] (agent groups, members, formal sign-in, config
//! synchronisation), [`records`] (call records), [`tokens`] (API tokens), [`users`] (people's
//! passwords and sessions), [`audit`] (audit log), [`objects`] (response-group objects created
//! through the API).
//! [`writer`] holds the [`RecordWriter`], which takes call records off the routing hot path.
//! Must not use `sip`, `media`, `workflow` or `acd`; it knows `config` types only.
//!
//! # Two backends, one SQL text
//!
//! `Backend` is an enum of the two pools, and every method is one `match` on it, written with
//! the private `on_pool!` macro: the body is written once and compiled once per backend. The SQL
//! text is shared: both dialects accept `$N` placeholders, `insert … returning`, and
//! `on conflict … do update/nothing`. Besides how a writing transaction starts (`BeginWrite`:
//! `begin immediate` on SQLite), only the schema differs (`migrations/sqlite/` versus
//! `migrations/postgres/`: identity columns and `boolean`), in two folders with the same version
//! numbers. Queries are checked at run time (`query_as::<_, Row>` with `#[derive(FromRow)]`), not
//! by the `query!` macros, which check against one database at build time; the contract suite in
//! `tests/store.rs`, run on both backends, catches what the macros would have.
//!
//! # Time
//!
//! Every timestamp is stored as an integer count of **milliseconds since the Unix epoch (UTC)**
//! (`bigint` on PostgreSQL, `integer` on SQLite) and exposed as `DateTime<Utc>`. The alternative,
//! sqlx's chrono mapping, stores `timestamptz` on PostgreSQL but RFC 3339 *text* on SQLite, whose
//! ordering and range comparisons depend on the text format (fractional digits vary), so a report
//! query could behave differently on the two backends. Integers compare, index and subtract the
//! same way everywhere. The cost is millisecond precision: sub-millisecond parts are dropped.
//! Durations (alert time, wait, talk) are stored as milliseconds too.
//!
//! "Now" (for `created_at`, `changed_at`, audit times) comes from a [`Clock`](crate::clock::Clock), never from the
//! system directly, so tests can pin it.

mod agents;
mod audit;
mod error;
mod groups;
mod journal;
pub(crate) mod objects;
pub(crate) mod records;
pub(crate) mod tokens;
pub(crate) mod users;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::clock::{SharedClock, SystemClock};
use crate::config::model::DatabaseUrl;

pub use agents::{Agent, AgentFields, AgentId};
pub use audit::AuditEntry;
pub use error::{Entity, StoreError};
pub use groups::{Group, GroupId, GroupSource, SignIn, SyncReport};
pub use journal::{CallJournal, JournalError, Recovered};
pub use objects::{CONFIG_CHANNEL, ConfigEvent, ConfigListener, StoredObject, Versioned};
pub use records::{BATCH_ROWS, CallOffer, CallOutcome, CallRecord, CallRecordId, OfferResult};
pub use tokens::{IssuedToken, Role, TokenId, TokenInfo};
pub use users::{IssuedSession, PasswordHash, SessionId, SessionInfo, User, UserId};
pub use writer::{RecordWriter, SubmitError, WriterOptions, WriterStats, WriterStatus};

/// The SQLite schema, embedded at build time.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
/// The PostgreSQL schema, embedded at build time. Same versions as [`SQLITE_MIGRATOR`].
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend it is. The body is
/// written once and type-checked once per backend, which is what lets one SQL text and one
/// `FromRow` struct serve both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
use on_pool;

/// Starting a transaction that will write: the one statement where the dialects differ outside
/// the schema. SQLite's default `begin` is deferred: a transaction that reads first and writes
/// later fails at once with `SQLITE_BUSY` if another connection wrote in between (the busy
/// timeout does not apply to that upgrade). `begin immediate` takes the write lock up front and
/// waits for it under the busy timeout instead. PostgreSQL's row locks need no such care.
trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, StoreError>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.begin_with("begin immediate")
            .await
            .map_err(StoreError::Database)
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.begin().await.map_err(StoreError::Database)
    }
}

/// Pool settings. [`Default`] is what `serve` uses.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Most connections the pool opens (SQLite serialises writers anyway; readers run in
    /// parallel under WAL).
    pub max_connections: u32,
    /// How long a query waits for a free or new connection before failing. Short, so that a
    /// database outage surfaces as an error (the record writer then buffers and retries) rather
    /// than as a stuck request.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a statement waits for another connection's write lock.
    pub busy_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The two database backends. Each `Store` method is one `match` on this (see `on_pool!`).
#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle to the database. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Source of "now" for `created_at`, `updated_at`, `changed_at` and audit times.
    clock: SharedClock,
}

impl std::fmt::Debug for Store {
    // By hand: the pool's own `Debug` would print its connect options, password included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database with [`ConnectOptions::default`] and the system clock. A SQLite file is
    /// created if missing (its folder must exist). Does not migrate: call [`Store::migrate`].
    ///
    /// # Errors
    /// [`StoreError::OpenSqlite`] or [`StoreError::ConnectPostgres`].
    pub async fn connect(url: &DatabaseUrl) -> Result<Store, StoreError> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// [`Store::connect`] with explicit pool settings.
    ///
    /// # Errors
    /// [`StoreError::OpenSqlite`] or [`StoreError::ConnectPostgres`].
    pub async fn connect_with(
        url: &DatabaseUrl,
        options: &ConnectOptions,
    ) -> Result<Store, StoreError> {
        let backend = match url {
            DatabaseUrl::Sqlite(path) => Backend::Sqlite(open_sqlite(path, options).await?),
            DatabaseUrl::Postgres(secret) => {
                // The URL is used here and nowhere else; neither it nor the parsed options (whose
                // `Debug` shows the password) are ever logged.
                let connect = PgConnectOptions::from_str(secret.expose())
                    .map_err(StoreError::ConnectPostgres)?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(StoreError::ConnectPostgres)?;
                Backend::Postgres(pool)
            }
        };
        tracing::debug!(backend = %url_kind(url), "database connected");
        Ok(Store {
            backend,
            clock: Arc::new(SystemClock),
        })
    }

    /// Replaces the clock the store reads "now" from (tests pass a `ManualClock`).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Store {
        self.clock = clock;
        self
    }

    /// Applies the schema migrations that are not applied yet. Running it again is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Migrate`].
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
            Backend::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// Checks that the database answers (for health checks).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("select 1").execute(pool).await.map(|_| ()))
            .map_err(StoreError::Database)
    }

    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool: waits for connections in use to be returned, then closes them all.
    /// Later calls on any clone of this store fail.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        to_ms(self.clock.now_utc())
    }
}

async fn open_sqlite(path: &Path, options: &ConnectOptions) -> Result<SqlitePool, StoreError> {
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // WAL: readers do not block the writer, nor the writer readers.
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable across application crashes under WAL; only a power cut may lose the
        // last transactions.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    SqlitePoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|source| StoreError::OpenSqlite {
            path: path.to_owned(),
            source,
        })
}

fn url_kind(url: &DatabaseUrl) -> &'static str {
    match url {
        DatabaseUrl::Sqlite(_) => "sqlite",
        DatabaseUrl::Postgres(_) => "postgres",
    }
}

/// A wall-clock time as stored: milliseconds since the Unix epoch.
fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A stored time back to `DateTime<Utc>`. `column` names it in the error.
fn from_ms(ms: i64, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        column,
        value: ms.to_string(),
    })
}

/// [`from_ms`] for a nullable column.
fn from_ms_opt(ms: Option<i64>, column: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(|ms| from_ms(ms, column)).transpose()
}

/// A duration as stored: milliseconds, saturating (no rgsd duration comes near 292 million years).
fn duration_to_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored duration back; negative values are corrupt.
fn duration_from_ms(ms: i64, column: &'static str) -> Result<Duration, StoreError> {
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| StoreError::Corrupt {
            column,
            value: ms.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(m: &Migrator) -> Vec<(i64, String)> {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect()
    }

    #[test]
    fn both_migration_folders_list_the_same_versions() {
        let sqlite = versions(&SQLITE_MIGRATOR);
        let postgres = versions(&POSTGRES_MIGRATOR);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let at = DateTime::from_timestamp_millis(1_795_000_000_123).unwrap();
        assert_eq!(from_ms(to_ms(at), "t").unwrap(), at);
        assert!(matches!(
            from_ms(i64::MAX, "t"),
            Err(StoreError::Corrupt { column: "t", .. })
        ));
        assert_eq!(
            duration_from_ms(duration_to_ms(Duration::from_millis(20_000)), "d").unwrap(),
            Duration::from_millis(20_000)
        );
        assert!(duration_from_ms(-1, "d").is_err());
        assert_eq!(duration_to_ms(Duration::MAX), i64::MAX);
    }

    #[tokio::test]
    async fn sqlite_is_created_if_missing_in_wal_mode_with_foreign_keys_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let store = Store::connect(&DatabaseUrl::Sqlite(path.clone()))
            .await
            .unwrap();
        assert!(path.exists());
        assert_eq!(store.backend_name(), "sqlite");
        let Backend::Sqlite(pool) = &store.backend else {
            panic!("not sqlite")
        };
        let mode: String = sqlx::query_scalar("pragma journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("pragma foreign_keys")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        store.close().await;
    }

    #[tokio::test]
    async fn a_sqlite_file_in_a_missing_folder_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-folder").join("rgsd.db");
        let err = Store::connect(&DatabaseUrl::Sqlite(path.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::OpenSqlite { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("no-such-folder"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_postgres_connect_does_not_reveal_the_password() {
        let url = DatabaseUrl::Postgres(crate::config::model::Secret::new(
            "postgres://rgsd:hunter2@127.0.0.1:1/rgsd".into(),
        ));
        let options = ConnectOptions {
            acquire_timeout: Duration::from_millis(300),
            ..ConnectOptions::default()
        };
        let err = Store::connect_with(&url, &options).await.unwrap_err();
        assert!(matches!(err, StoreError::ConnectPostgres(_)), "{err:?}");
        let mut chain = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        assert!(!chain.contains("hunter2"), "{chain}");
    }

    /// Compile-time check: every `Store` future can cross threads (axum handlers and spawned tasks
    /// need `Send`). Never called.
    #[allow(dead_code)] // only its type-checking matters
    fn store_futures_are_send(
        store: &Store,
        g: &crate::config::model::AgentGroup,
        u: &crate::config::model::SipUri,
        r: &CallRecord,
    ) {
        fn send<T: Send>(_: T) {}
        send(store.create_group(g));
        send(store.update_group(GroupId(1), g));
        send(store.set_group_members(GroupId(1), &[]));
        send(store.get_group_by_name("x"));
        send(store.list_groups());
        send(store.sync_config_groups(std::slice::from_ref(g)));
        send(store.sign_in(u, "x"));
        send(store.record_call(r));
        send(
            store.call_records_between(chrono::DateTime::UNIX_EPOCH, chrono::DateTime::UNIX_EPOCH),
        );
        send(store.create_token(Role::Agent, "x"));
        send(store.list_audit(chrono::DateTime::UNIX_EPOCH, 1));
    }
}
