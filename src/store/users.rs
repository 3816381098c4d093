//! People who sign in with a password, and their sessions.
//!
//! # Passwords
//!
//! A password is kept only as an Argon2id hash (RFC 9106) in PHC string form, with the `argon2`
//! crate's default parameters (19 MiB of memory, 2 passes, 1 lane: the OWASP baseline for a
//! server). The parameters and the salt travel inside the string, so parameters raised later
//! leave old hashes verifiable. Hashing and verifying take tens of milliseconds of CPU on purpose:
//! [`PasswordHash::new`] and [`PasswordHash::verify`] block, and async callers run them with
//! `tokio::task::spawn_blocking`.
//!
//! # Sessions
//!
//! A session id is 32 bytes from the operating system's random source, as hex; like an API
//! token it is shown once (in the cookie) and only its SHA-256 is stored. A session ends at its
//! absolute expiry, after an idle period without requests, when it is deleted (sign-out), when
//! its user's password changes, or when the user is disabled or removed. Expired rows are
//! deleted whenever a session is created, so the table holds live sessions plus at most the ones
//! that expired since the last sign-in.

use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::tokens::Role;
use super::{BeginWrite, Store, duration_to_ms, from_ms, from_ms_opt, on_pool};
use crate::config::model::Secret;

/// The shortest password accepted, in characters (NIST SP 800-63B asks for at least 8; rgsd
/// protects call routing for a whole organisation, so it asks for more).
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in bytes: bounds the work one sign-in attempt can cause.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;
/// How often at most a session's `last_seen_at` is written: a page polling every few seconds
/// costs one write a minute, and the idle expiry is that much coarser.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Database id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

/// Database id of a session (not secret; the session id in the cookie is a different thing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub i64);

/// A person who may sign in (never their password or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Their SIP URI.
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// When the password was last set.
    pub updated_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A live session and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub user: User,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The absolute expiry.
    pub expires_at: DateTime<Utc>,
}

/// A session just created: the only time its id is available.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub info: SessionInfo,
    /// The session id, for the cookie. Never logged.
    pub secret: Secret,
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Refused: choose a longer password.
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// Refused: choose a shorter password.
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// The operating system's random source failed, so no salt could be drawn.
    #[error("the operating system's random source failed")]
    Random(#[source] getrandom::Error),
    /// The Argon2 implementation refused its input (not expected with the fixed parameters).
    #[error("hashing the password failed")]
    Hash(#[source] argon2::password_hash::Error),
}

/// An Argon2id hash in PHC string form. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt. Slow on purpose: call off the async threads.
    ///
    /// # Errors
    /// [`PasswordError::TooShort`] / [`PasswordError::TooLong`] outside the accepted lengths,
    /// [`PasswordError::Random`] or [`PasswordError::Hash`] if the machine fails.
    pub fn new(password: &str) -> Result<Self, PasswordError> {
        check_password(password)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(PasswordError::Random)?;
        let salt = SaltString::encode_b64(&salt).map_err(PasswordError::Hash)?;
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(PasswordError::Hash)?;
        Ok(Self(hash.to_string()))
    }

    /// Whether `password` matches. A stored string that is not a PHC hash matches nothing (and
    /// is logged, without its content). Slow on purpose: call off the async threads.
    pub fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        match argon2::password_hash::PasswordHash::new(&self.0) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "a stored password hash does not parse");
                false
            }
        }
    }

    /// The PHC string, as stored.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

/// Whether `password` has an acceptable length (see [`MIN_PASSWORD_CHARS`]).
///
/// # Errors
/// [`PasswordError::TooShort`] or [`PasswordError::TooLong`].
pub(crate) fn check_password(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Whether `name` has the shape of a SIP URI (`sip:` or `sips:`, something after it, no white
/// space): the same shape the configuration and the API accept for agents and managers.
pub(crate) fn is_user_name(name: &str) -> bool {
    name.split_once(':').is_some_and(|(scheme, rest)| {
        (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
            && !rest.is_empty()
            && !rest.ends_with('@')
    }) && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn parse_role(s: &str) -> Result<Role, StoreError> {
    match s {
        "admin" => Ok(Role::Admin),
        "manager" => Ok(Role::Manager),
        "agent" => Ok(Role::Agent),
        _ => Err(StoreError::Corrupt {
            column: "app_user.role",
            value: s.to_owned(),
        }),
    }
}

#[derive(FromRow)]
struct UserRow {
    id: i64,
    name: String,
    role: String,
    created_at: i64,
    updated_at: i64,
    disabled_at: Option<i64>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: UserId(row.id),
            name: row.name,
            role: parse_role(&row.role)?,
            created_at: from_ms(row.created_at, "app_user.created_at")?,
            updated_at: from_ms(row.updated_at, "app_user.updated_at")?,
            disabled_at: from_ms_opt(row.disabled_at, "app_user.disabled_at")?,
        })
    }
}

#[derive(FromRow)]
struct CredentialRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

#[derive(FromRow)]
struct SessionRow {
    session_id: i64,
    session_created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    #[sqlx(flatten)]
    user: UserRow,
}

impl TryFrom<SessionRow> for SessionInfo {
    type Error = StoreError;
    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        Ok(SessionInfo {
            id: SessionId(row.session_id),
            user: row.user.try_into()?,
            created_at: from_ms(row.session_created_at, "user_session.created_at")?,
            last_seen_at: from_ms(row.last_seen_at, "user_session.last_seen_at")?,
            expires_at: from_ms(row.expires_at, "user_session.expires_at")?,
        })
    }
}

/// The columns of [`UserRow`]. Macros rather than constants so that `concat!` builds each query
/// as one `&'static str` (sqlx takes only static SQL text without an audit marker).
macro_rules! user_columns {
    () => {
        "id, name, role, created_at, updated_at, disabled_at"
    };
}

/// The columns of [`SessionRow`], over `user_session s join app_user u`.
macro_rules! session_select {
    () => {
        "select s.id as session_id, s.created_at as session_created_at,
            s.last_seen_at, s.expires_at,
            u.id, u.name, u.role, u.created_at, u.updated_at, u.disabled_at
         from user_session s join app_user u on u.id = s.user_id"
    };
}

fn new_session_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(StoreError::Random)?;
    Ok(hex::encode(bytes))
}

/// Hex SHA-256 of a session id: what `user_session.session_hash` holds.
fn session_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Adds a user.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the name is taken, [`StoreError::Database`].
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password: &PasswordHash,
    ) -> Result<User, StoreError> {
        let now = self.now_ms();
        let sql = concat!(
            "insert into app_user (name, role, password_hash, created_at, updated_at)
             values ($1, $2, $3, $4, $4) returning ",
            user_columns!()
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sql)
            .bind(name)
            .bind(role.as_str())
            .bind(password.as_phc())
            .bind(now)
            .fetch_one(pool)
            .await)
        .map_err(on(Entity::User))?;
        row.try_into()
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = concat!("select ", user_columns!(), " from app_user order by name");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sql)
            .fetch_all(pool)
            .await)
        .map_err(on(Entity::User))?;
        rows.into_iter().map(User::try_from).collect()
    }

    /// The user called `name` and their password hash, disabled or not; `None` if there is none.
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn user_credentials(
        &self,
        name: &str,
    ) -> Result<Option<(User, PasswordHash)>, StoreError> {
        let sql = concat!(
            "select ",
            user_columns!(),
            ", password_hash from app_user where name = $1"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, CredentialRow>(sql)
            .bind(name)
            .fetch_optional(pool)
            .await)
        .map_err(on(Entity::User))?;
        row.map(|r| Ok((r.user.try_into()?, PasswordHash(r.password_hash))))
            .transpose()
    }

    /// Replaces a user's password and ends all their sessions.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown name, [`StoreError::Database`].
    pub async fn set_password(
        &self,
        name: &str,
        password: &PasswordHash,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let id = sqlx::query_scalar::<_, i64>(
                "update app_user set password_hash = $2, updated_at = $3 where name = $1
                 returning id",
            )
            .bind(name)
            .bind(password.as_phc())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(on(Entity::User))?
            .ok_or(StoreError::NotFound(Entity::User))?;
            sqlx::query("delete from user_session where user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(on(Entity::Session))?;
            tx.commit().await.map_err(StoreError::Database)
        }.await)
    }

    /// Disables (`true`) or re-enables a user. A disabled user's sessions stop working at once
    /// (and are deleted); disabling twice keeps the first time.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown name, [`StoreError::Database`].
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<User, StoreError> {
        let now = self.now_ms();
        let sql = concat!(
            "update app_user
             set disabled_at = case when $2 then coalesce(disabled_at, $3) else null end
             where name = $1 returning ",
            user_columns!()
        );
        let row = on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query_as::<_, UserRow>(sql)
                .bind(name)
                .bind(disabled)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(on(Entity::User))?
                .ok_or(StoreError::NotFound(Entity::User))?;
            if disabled {
                sqlx::query("delete from user_session where user_id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(on(Entity::Session))?;
            }
            tx.commit().await.map_err(StoreError::Database)?;
            Ok::<_, StoreError>(row)
        }.await)?;
        row.try_into()
    }

    /// Removes a user and their sessions.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown name, [`StoreError::Database`].
    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let found = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "delete from app_user where name = $1 returning id",
        )
        .bind(name)
        .fetch_optional(pool)
        .await)
        .map_err(on(Entity::User))?;
        found.map(|_| ()).ok_or(StoreError::NotFound(Entity::User))
    }

    /// Starts a session for `user` that ends `absolute` from now at the latest, and deletes the
    /// sessions that have expired (absolutely, or after `idle` without a request).
    ///
    /// # Errors
    /// [`StoreError::Random`], [`StoreError::NotFound`] if the user is gone,
    /// [`StoreError::Database`].
    pub async fn create_session(
        &self,
        user: UserId,
        absolute: Duration,
        idle: Duration,
    ) -> Result<IssuedSession, StoreError> {
        let secret = new_session_secret()?;
        let now = self.now_ms();
        let expires = now.saturating_add(duration_to_ms(absolute));
        let idle_cutoff = now.saturating_sub(duration_to_ms(idle));
        let id = on_pool!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query("delete from user_session where expires_at <= $1 or last_seen_at <= $2")
                .bind(now)
                .bind(idle_cutoff)
                .execute(&mut *tx)
                .await
                .map_err(on(Entity::Session))?;
            let id = sqlx::query_scalar::<_, i64>(
                "insert into user_session (session_hash, user_id, created_at, last_seen_at,
                                           expires_at)
                 values ($1, $2, $3, $3, $4) returning id",
            )
            .bind(session_hash(&secret))
            .bind(user.0)
            .bind(now)
            .bind(expires)
            .fetch_one(&mut *tx)
            .await
            .map_err(on(Entity::User))?;
            tx.commit().await.map_err(StoreError::Database)?;
            Ok::<_, StoreError>(id)
        }.await)?;
        let sql = concat!(session_select!(), " where s.id = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(sql)
            .bind(id)
            .fetch_one(pool)
            .await)
        .map_err(on(Entity::Session))?;
        Ok(IssuedSession {
            info: row.try_into()?,
            secret: Secret::new(secret),
        })
    }

    /// The live session whose id is `secret`: not past its absolute expiry, used within `idle`,
    /// and its user not disabled. Records the use (at most once per minute).
    ///
    /// # Errors
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn session(
        &self,
        secret: &str,
        idle: Duration,
    ) -> Result<Option<SessionInfo>, StoreError> {
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let now = self.now_ms();
        let sql = concat!(
            session_select!(),
            " where s.session_hash = $1 and s.expires_at > $2 and s.last_seen_at > $3
               and u.disabled_at is null"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(sql)
            .bind(session_hash(secret))
            .bind(now)
            .bind(now.saturating_sub(duration_to_ms(idle)))
            .fetch_optional(pool)
            .await)
        .map_err(on(Entity::Session))?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        if row.last_seen_at <= now.saturating_sub(duration_to_ms(TOUCH_EVERY)) {
            on_pool!(self, pool => sqlx::query(
                "update user_session set last_seen_at = $2 where id = $1",
            )
            .bind(row.session_id)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))
            .map_err(on(Entity::Session))?;
            row.last_seen_at = now;
        }
        row.try_into().map(Some)
    }

    /// Ends the session whose id is `secret`; `false` if there was none.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn delete_session(&self, secret: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query(
            "delete from user_session where session_hash = $1",
        )
        .bind(session_hash(secret))
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(on(Entity::Session))?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let a = PasswordHash::new("correct horse battery").unwrap();
        let b = PasswordHash::new("correct horse battery").unwrap();
        assert!(
            a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{a:?}"
        );
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.verify("correct horse battery"));
        assert!(b.verify("correct horse battery"));
        assert!(!a.verify("correct horse battery "));
        assert!(!a.verify(""));
        assert!(!PasswordHash("not a hash".into()).verify("correct horse battery"));
        assert!(!format!("{a:?}").contains("argon2"));
    }

    #[test]
    fn passwords_outside_the_accepted_lengths_are_refused() {
        assert!(matches!(
            PasswordHash::new(""),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            PasswordHash::new("elevenchars"),
            Err(PasswordError::TooShort)
        ));
        // Characters, not bytes: twelve accented letters pass.
        assert!(check_password("éééééééééééé").is_ok());
        assert!(matches!(
            check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::TooLong)
        ));
    }

    #[test]
    fn user_names_are_sip_uris() {
        assert!(is_user_name("sip:alice@example.com"));
        assert!(is_user_name("sips:bob@example.com:5061"));
        assert!(!is_user_name("alice"));
        assert!(!is_user_name("sip:"));
        assert!(!is_user_name("sip:alice@"));
        assert!(!is_user_name("sip:al ice@example.com"));
        assert!(!is_user_name("http://example.com"));
    }

    #[test]
    fn session_ids_are_random_hex_and_stored_hashed() {
        let a = new_session_secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_session_secret().unwrap());
        assert_eq!(session_hash(&a).len(), 64);
        assert_ne!(session_hash(&a), a);
    }
}
