//! [`ApiError`]: every way a request can fail, each with its HTTP status and a JSON body
//! `{ "error": "...", ... }`.
//!
//! A caller's mistake (bad JSON, unknown id, wrong role) is always a precise 4xx; only a failure
//! inside rgsd (database down, corrupt row) is a 5xx, and its detail goes to the log, never to
//! the client.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// What went wrong, in a sentence.
    pub error: String,
    /// A stable machine-readable code (`unauthenticated`, `forbidden`, `not_found`, `conflict`,
    /// `bad_request`, `invalid_field`, `config_managed`, `unavailable`, `internal`).
    pub code: &'static str,
    /// The request field concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer …` header and no session cookie, or a token that is unknown or
    /// revoked, or a session that ended. HTTP 401.
    #[error("missing, unknown or revoked bearer token, or no live session: sign in")]
    Unauthenticated,
    /// The token's role may not do this (or not on this object). HTTP 403.
    #[error("{0}")]
    Forbidden(Refusal),
    /// An id, URI or name in the request names nothing. HTTP 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request body is not JSON of the expected shape, or the query/path does not parse.
    /// HTTP 400; the message is the parser's.
    #[error("{0}")]
    Malformed(String),
    /// A field parsed but its value is not acceptable. HTTP 422.
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The field lives in the TOML configuration file, not in the database: edit the file and
    /// reload (SIGHUP). HTTP 409.
    #[error("{0} is set in the configuration file: edit the file and reload")]
    ConfigManaged(&'static str),
    /// Encoding a CSV export failed (in memory: not expected). HTTP 500.
    #[error("CSV export failed")]
    Export(#[from] super::reports::CsvError),
    /// A store error (mapped to 404, 409, 503 or 500 by [`ApiError::status`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a role was refused: one variant per rule of `docs/behaviour.md` (Roles) that the API
/// enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only an administrator may do this.
    #[error("only an administrator may do this")]
    AdminOnly,
    /// A manager may act only on the agent groups of queues of workflows that list them.
    #[error("this agent group is not used by a workflow you manage")]
    NotYourGroup,
    /// A manager may not rename a group or change its participation (queues refer to it).
    #[error("managers may change a group's members, alert time, routing and description only")]
    ManagerGroupField,
    /// A change made with the session cookie must carry the session's CSRF token.
    #[error("signed in by cookie: send the X-CSRF-Token header (from sign-in or GET /api/session)")]
    CsrfToken,
    /// Signing in from a page of another site.
    #[error("sign-in from another site is refused")]
    CrossSite,
    /// A manager acts on the objects their workflows use and the objects they created.
    #[error("this object is not used by a workflow you manage and was not created by you")]
    NotYours,
    /// Managers never change a workflow's URI or kind; an administrator does.
    #[error("managers may not change a workflow's URI or kind; ask an administrator")]
    ManagerMayNotChangeUriOrKind,
    /// Managers never change a workflow's trunk number (`line_uri`); an administrator does.
    #[error(
        "managers may not change a workflow's line_uri (its trunk number); ask an administrator"
    )]
    ManagerMayNotChangeLineUri,
    /// Managers never change a workflow's SRTP policy (`srtp`): transport security is an
    /// administrator's choice.
    #[error("managers may not change a workflow's srtp (media encryption); ask an administrator")]
    ManagerMayNotChangeSrtp,
    /// Managers add managers to their workflows; only an administrator removes one.
    #[error("managers may add managers to a workflow but not remove one; ask an administrator")]
    ManagerMayNotRemoveManagers,
    /// An agent token acts on its own subject only.
    #[error("an agent token may only act on its own sign-in and state")]
    AgentSelfOnly,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ConfigManaged(_) => StatusCode::CONFLICT,
            Self::Export(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(e) => match e {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Conflict(_) | StoreError::InformalGroup { .. } => StatusCode::CONFLICT,
                e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn body(&self) -> ErrorBody {
        let (code, field) = match self {
            Self::Unauthenticated => ("unauthenticated", None),
            Self::Forbidden(_) => ("forbidden", None),
            Self::NotFound(_) => ("not_found", None),
            Self::Malformed(_) => ("bad_request", None),
            Self::InvalidField { field, .. } => ("invalid_field", Some(*field)),
            Self::ConfigManaged(field) => ("config_managed", Some(*field)),
            Self::Export(_) => ("internal", None),
            Self::Store(StoreError::NotFound(_)) => ("not_found", None),
            Self::Store(StoreError::Conflict(_) | StoreError::InformalGroup { .. }) => {
                ("conflict", None)
            }
            Self::Store(e) if e.is_transient() => ("unavailable", None),
            Self::Store(_) => ("internal", None),
        };
        let error = match (self, code) {
            // Internal detail stays in the log.
            (_, "internal") => "internal error".to_owned(),
            (_, "unavailable") => "the database is unavailable; try again".to_owned(),
            _ => self.to_string(),
        };
        ErrorBody { error, code, field }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "API request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::Malformed(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::Malformed(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::Malformed(r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entity;

    #[test]
    fn store_errors_map_to_precise_statuses() {
        let cases = [
            (
                ApiError::Store(StoreError::NotFound(Entity::Agent)),
                404,
                "not_found",
            ),
            (
                ApiError::Store(StoreError::Conflict(Entity::AgentGroup)),
                409,
                "conflict",
            ),
            (
                ApiError::Store(StoreError::InformalGroup { group: "g".into() }),
                409,
                "conflict",
            ),
            (
                ApiError::Store(StoreError::Corrupt {
                    column: "c",
                    value: "v".into(),
                }),
                500,
                "internal",
            ),
            (ApiError::Forbidden(Refusal::AdminOnly), 403, "forbidden"),
            (ApiError::ConfigManaged("hours"), 409, "config_managed"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            let body = err.body();
            assert_eq!(body.code, code);
            if code == "internal" {
                assert_eq!(body.error, "internal error", "detail must not leak");
            }
        }
    }
}
