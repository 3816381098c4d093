//! API tokens, for administrators: issue (the token is in the reply, once), list, revoke.
//! `rgsd token create` does the same from the command line (the first administrator token).
//!
//! A revoked token stops authenticating at once (every request looks it up). A server-sent
//! events stream, though, is authenticated once, when it opens; [`Revocations`] tells the
//! streams a token opened that it was revoked, so they end too.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::Shared;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{Body, Params};
use crate::store::{Role, TokenId, TokenInfo};

/// The tokens revoked through this process's API, announced to the open SSE streams.
///
/// A `watch` of the whole set rather than a `broadcast` of ids: a stream cannot miss a
/// revocation by lagging, and one that subscribes after the revocation still sees it. The set
/// only grows, by one id per revocation, which administrators do by hand.
#[derive(Debug, Clone)]
pub struct Revocations {
    revoked: Arc<watch::Sender<BTreeSet<TokenId>>>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            revoked: Arc::new(watch::Sender::new(BTreeSet::new())),
        }
    }
}

impl Revocations {
    /// Records that `id` was revoked (after the store has revoked it) and wakes the streams.
    pub fn revoke(&self, id: TokenId) {
        self.revoked.send_if_modified(|set| set.insert(id));
    }

    /// Resolves once `id` is revoked, at once if it already is. Subscribes when called, not
    /// when first polled, so a revocation between the two is not missed.
    pub fn revoked(&self, id: TokenId) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.revoked.subscribe();
        async move {
            // An error means the sender is gone: the server is shutting down, so ending the
            // stream is right too.
            let _ = rx.wait_for(|set| set.contains(&id)).await;
        }
    }
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleDoc {
    Admin,
    Manager,
    Agent,
}

impl From<RoleDoc> for Role {
    fn from(r: RoleDoc) -> Self {
        match r {
            RoleDoc::Admin => Self::Admin,
            RoleDoc::Manager => Self::Manager,
            RoleDoc::Agent => Self::Agent,
        }
    }
}

impl From<Role> for RoleDoc {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => Self::Admin,
            Role::Manager => Self::Manager,
            Role::Agent => Self::Agent,
        }
    }
}

/// A token as listed (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenDoc {
    pub id: i64,
    pub role: RoleDoc,
    pub subject: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<TokenInfo> for TokenDoc {
    fn from(t: TokenInfo) -> Self {
        Self {
            id: t.id.0,
            role: t.role.into(),
            subject: t.subject,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Issuing a token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    pub role: RoleDoc,
    /// An agent's or manager's SIP URI; an administrator's name.
    pub subject: String,
}

/// A token just issued: `token` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IssuedDoc {
    #[serde(flatten)]
    pub info: TokenDoc,
    pub token: String,
}

/// Every token, revoked ones included (administrators).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenDoc>), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn list_tokens(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<TokenDoc>>, ApiError> {
    caller.require_admin()?;
    let tokens = shared.store.list_tokens().await?;
    Ok(Json(tokens.into_iter().map(TokenDoc::from).collect()))
}

/// Issues a token (administrators). Agents' and managers' subjects must be SIP URIs.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = TokenBody,
    responses((status = 201, body = IssuedDoc), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn create_token(
    State(shared): State<Shared>,
    caller: Caller,
    Body(body): Body<TokenBody>,
) -> Result<(StatusCode, Json<IssuedDoc>), ApiError> {
    caller.require_admin()?;
    let role: Role = body.role.into();
    let subject = body.subject.trim();
    if subject.is_empty() {
        return Err(ApiError::InvalidField {
            field: "subject",
            reason: "must not be empty".into(),
        });
    }
    if role != Role::Admin {
        super::agents::parse_uri("subject", subject)?;
    }
    let issued = shared.store.create_token(role, subject).await?;
    shared
        .store
        .audit(
            caller.subject(),
            "token.create",
            subject,
            &json!({ "id": issued.info.id.0, "role": role.as_str() }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedDoc {
            token: issued.token.expose().to_owned(),
            info: issued.info.into(),
        }),
    ))
}

/// Revokes a token (administrators); it stops working at once, and the server-sent events
/// streams it opened end.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn revoke_token(
    State(shared): State<Shared>,
    caller: Caller,
    Params(id): Params<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    shared.store.revoke_token(TokenId(id)).await?;
    shared.revocations.revoke(TokenId(id));
    shared
        .store
        .audit(
            caller.subject(),
            "token.revoke",
            &id.to_string(),
            &json!({ "id": id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
