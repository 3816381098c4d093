//! [`StoreError`], and the one place where database errors become domain errors.
//!
//! A duplicate agent URI must reach the API as "conflict" (409) and an unknown id as "not found"
//! (404), never as an opaque database failure (500). [`classify`] turns sqlx's error kinds into
//! those variants; every query passes the [`Entity`] it was about, because SQLite's messages do
//! not name the foreign key that failed. [`StoreError::is_transient`] tells the record writer
//! which failures are worth retrying.

use std::path::PathBuf;

use sqlx::error::ErrorKind;

/// What a [`StoreError::Conflict`] or [`StoreError::NotFound`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Agent,
    AgentGroup,
    /// An agent's membership of a group (also the target of sign-in and sign-out).
    Membership,
    ApiToken,
    /// A person who signs in with a password.
    User,
    /// A signed-in browser.
    Session,
    CallRecord,
    AuditEntry,
    /// A response-group object stored in the database (queue, hours, workflow, ...).
    ConfigObject,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Agent => "agent",
            Self::AgentGroup => "agent group",
            Self::Membership => "group membership",
            Self::ApiToken => "API token",
            Self::User => "user",
            Self::Session => "session",
            Self::CallRecord => "call record",
            Self::AuditEntry => "audit entry",
            Self::ConfigObject => "object",
        })
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file could not be opened or created: check that its folder exists and that
    /// rgsd may write there.
    #[error("cannot open SQLite database {}", path.display())]
    OpenSqlite {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL server could not be reached, or refused the login. The URL is deliberately
    /// not part of this error: it may carry a password.
    #[error("cannot connect to PostgreSQL")]
    ConnectPostgres(#[source] sqlx::Error),
    /// Applying the schema migrations failed (for example an applied migration was edited).
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The thing already exists (a duplicate agent URI, group name or membership). HTTP 409.
    #[error("{0} already exists")]
    Conflict(Entity),
    /// No such thing (unknown id, URI or name). HTTP 404.
    #[error("{0} not found")]
    NotFound(Entity),
    /// Sign-in and sign-out apply to formal groups only; members of an informal group are always
    /// in it. HTTP 409.
    #[error("agent group {group:?} is informal: its agents cannot sign in or out")]
    InformalGroup { group: String },
    /// A value read back from the database is not one rgsd writes (a hand-edited row, or a newer
    /// rgsd's schema). The row is skipped by nobody: the operation fails.
    #[error("unexpected value {value:?} in column {column}")]
    Corrupt { column: &'static str, value: String },
    /// The operating system's random source failed, so no token could be issued.
    #[error("the operating system's random source failed")]
    Random(#[source] getrandom::Error),
    /// Any other database failure: unreachable server, locked file, I/O error. HTTP 500 or 503.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Whether trying again later may succeed: the database was unreachable, refused connections,
    /// was busy or out of resources. Errors about the data itself (constraint violations, values
    /// the database cannot take, corrupt values, unknown ids) are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::OpenSqlite { .. } | Self::ConnectPostgres(_) => true,
            Self::Database(e) => is_transient(e),
            Self::Migrate(_)
            | Self::Conflict(_)
            | Self::NotFound(_)
            | Self::InformalGroup { .. }
            | Self::Corrupt { .. }
            | Self::Random(_) => false,
        }
    }
}

/// Maps a sqlx error from a statement about `entity` to a [`StoreError`]: unique violations become
/// [`StoreError::Conflict`], foreign-key violations [`StoreError::NotFound`], everything else
/// [`StoreError::Database`]. The single place where constraint violations are interpreted.
pub(crate) fn classify(err: sqlx::Error, entity: Entity) -> StoreError {
    if let Some(db) = err.as_database_error() {
        match db.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict(entity),
            ErrorKind::ForeignKeyViolation => return StoreError::NotFound(entity),
            _ => {}
        }
    }
    StoreError::Database(err)
}

/// `.map_err(on(Entity::Agent))`: [`classify`] as a closure.
pub(crate) fn on(entity: Entity) -> impl Fn(sqlx::Error) -> StoreError {
    move |err| classify(err, entity)
}

/// Whether a sqlx error is worth retrying (see [`StoreError::is_transient`]).
///
/// Inverted on purpose: only errors about the *data* of the statement are permanent (constraint
/// violations, values the database cannot take, decoding). Everything else — I/O, pool time-outs,
/// a database that refuses connections, is shutting down, is missing or has the wrong schema —
/// is about the database's availability, will hit every record alike, and is retried: for the
/// record writer, keeping a good record and retrying costs memory, dropping it loses it.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            if !matches!(db.kind(), ErrorKind::Other) {
                // Unique, foreign-key, not-null, check, exclusion violations.
                return false;
            }
            let Some(code) = db.code() else {
                return true;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite reports extended result codes; the primary code is the low byte.
                // 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH, 25 RANGE: the data, not the database.
                !code
                    .parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
            } else {
                // PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity violation).
                !(code.starts_with("22") || code.starts_with("23"))
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Encoding, decoding, missing rows or columns, configuration: retrying gives the same.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_transient_and_bad_data_is_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(StoreError::Database(io).is_transient());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Conflict(Entity::Agent).is_transient());
        assert!(!StoreError::NotFound(Entity::Agent).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn classify_leaves_non_constraint_errors_alone() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut, Entity::Agent),
            StoreError::Database(sqlx::Error::PoolTimedOut)
        ));
    }
}
