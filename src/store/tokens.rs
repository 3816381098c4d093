//! API bearer tokens: issue, authenticate, revoke.
//!
//! A token is `rgsd_` followed by 64 letters and digits from the operating system's random
//! source (`util::try_random_token`, about 381 bits; tokens issued before were 64 hex digits and
//! still work: only the hash is looked up). The prefix lets secret scanners and humans recognise one. Only the SHA-256 of the
//! whole token is stored; the token is shown once, when issued, and is never logged (it travels
//! inside a [`Secret`]). A token is random and long, so a plain fast hash is enough: there is
//! nothing to guess that a salt or a slow hash would protect. Authentication looks the hash up
//! by an index, so no comparison of secret bytes happens in rgsd's code.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::error::{Entity, StoreError, on};
use super::{Store, from_ms, from_ms_opt, on_pool};
use crate::config::model::Secret;

/// Database id of a token (what an administrator revokes; not secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub i64);

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    /// Manages the workflows whose `managers` list its subject.
    Manager,
    /// Signs its subject in and out of formal groups.
    Agent,
}

impl Role {
    /// `"admin"`, `"manager"` or `"agent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Agent => "agent",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "admin" => Ok(Self::Admin),
            "manager" => Ok(Self::Manager),
            "agent" => Ok(Self::Agent),
            _ => Err(StoreError::Corrupt {
                column: "api_token.role",
                value: s.to_owned(),
            }),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = StoreError;

    /// `"admin"`, `"manager"` or `"agent"`.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Self::parse(s)
    }
}

/// What the store knows about a token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: TokenId,
    pub role: Role,
    /// Whom it speaks for: an agent's or manager's SIP URI, an administrator's name.
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just issued: the only time the token itself is available.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub info: TokenInfo,
    /// Give it to its holder; it cannot be recovered later.
    pub token: Secret,
}

#[derive(FromRow)]
struct TokenRow {
    id: i64,
    role: String,
    subject: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for TokenInfo {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenInfo {
            id: TokenId(row.id),
            role: Role::parse(&row.role)?,
            subject: row.subject,
            created_at: from_ms(row.created_at, "api_token.created_at")?,
            revoked_at: from_ms_opt(row.revoked_at, "api_token.revoked_at")?,
        })
    }
}

/// The prefix every token starts with.
const TOKEN_PREFIX: &str = "rgsd_";

/// Characters after the prefix: 64 × log2(62) ≈ 381 bits.
const TOKEN_CHARS: usize = 64;

fn new_token() -> Result<String, StoreError> {
    let random = crate::util::try_random_token(TOKEN_CHARS).map_err(StoreError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{random}"))
}

/// Hex SHA-256 of the token: what `api_token.token_hash` holds.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Issues a new token for `subject` with `role`, storing only its hash.
    ///
    /// # Errors
    /// [`StoreError::Random`], [`StoreError::Database`].
    pub async fn create_token(&self, role: Role, subject: &str) -> Result<IssuedToken, StoreError> {
        let token = new_token()?;
        let now = self.now_ms();
        let row = on_pool!(self, pool => sqlx::query_as::<_, TokenRow>(
            "insert into api_token (token_hash, role, subject, created_at)
             values ($1, $2, $3, $4)
             returning id, role, subject, created_at, revoked_at",
        )
        .bind(token_hash(&token))
        .bind(role.as_str())
        .bind(subject)
        .bind(now)
        .fetch_one(pool)
        .await)
        .map_err(on(Entity::ApiToken))?;
        Ok(IssuedToken {
            info: row.try_into()?,
            token: Secret::new(token),
        })
    }

    /// The live token matching `token`, or `None` for an unknown or revoked one.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = on_pool!(self, pool => sqlx::query_as::<_, TokenRow>(
            "select id, role, subject, created_at, revoked_at
             from api_token where token_hash = $1 and revoked_at is null",
        )
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await)
        .map_err(on(Entity::ApiToken))?;
        row.map(TokenInfo::try_from).transpose()
    }

    /// Revokes a token. Revoking a revoked token keeps its first revocation time.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    pub async fn revoke_token(&self, id: TokenId) -> Result<(), StoreError> {
        let now = self.now_ms();
        let found = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "update api_token set revoked_at = coalesce(revoked_at, $2) where id = $1 returning id",
        )
        .bind(id.0)
        .bind(now)
        .fetch_optional(pool)
        .await)
        .map_err(on(Entity::ApiToken))?;
        found
            .map(|_| ())
            .ok_or(StoreError::NotFound(Entity::ApiToken))
    }

    /// Every token, revoked ones included, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, TokenRow>(
            "select id, role, subject, created_at, revoked_at from api_token order by id",
        )
        .fetch_all(pool)
        .await)
        .map_err(on(Entity::ApiToken))?;
        rows.into_iter().map(TokenInfo::try_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + TOKEN_CHARS);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert!(
            a[TOKEN_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric())
        );
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
