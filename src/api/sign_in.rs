//! The sign-in handlers: `POST /api/session` signs in, `GET /api/session` says who is signed
//! in, `DELETE /api/session` signs out. Sessions, cookies, CSRF and the failed sign-in limiter
//! are in [`super::session`]; this module sits above [`super::auth`] (it takes the [`Caller`]),
//! which itself reads sessions.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Extension, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::{Caller, Credential};
use super::error::{ApiError, ErrorBody, Refusal};
use super::session::{
    SessionPolicy, Sessions, audit_name, cookie, csrf_token, dummy_hash, limiter_key, over_tls,
    same_origin, session_cookie, stream_key,
};
use super::tokens::RoleDoc;
use crate::api::Shared;
use crate::store::users::MAX_PASSWORD_BYTES;

// ---------------------------------------------------------------------------------------------
// Handlers

/// Signing in: a user name (SIP URI) and password, as JSON or as an HTML form.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Who is signed in, and the CSRF token to send with changes.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionDoc {
    /// The user's SIP URI.
    pub user: String,
    pub role: RoleDoc,
    /// Send as `X-CSRF-Token` with every request that changes something.
    pub csrf_token: String,
    pub signed_in_at: DateTime<Utc>,
    /// The absolute expiry.
    pub expires_at: DateTime<Utc>,
    /// The session also ends after this many seconds without a request.
    pub idle_timeout_seconds: u64,
}

fn session_doc(
    info: &crate::store::SessionInfo,
    secret: &str,
    policy: &SessionPolicy,
) -> SessionDoc {
    SessionDoc {
        user: info.user.name.clone(),
        role: info.user.role.into(),
        csrf_token: csrf_token(secret),
        signed_in_at: info.created_at,
        expires_at: info.expires_at,
        idle_timeout_seconds: policy.idle.as_secs(),
    }
}

/// The one answer to every failed password check: which part was wrong is not said.
fn wrong_credentials() -> Response {
    let body = ErrorBody {
        error: "unknown user name or wrong password".into(),
        code: "unauthenticated",
        field: None,
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn too_many(retry_after: u64) -> Response {
    let body = ErrorBody {
        error: format!("too many failed sign-ins; try again in {retry_after} s"),
        code: "rate_limited",
        field: None,
    };
    let mut res = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

async fn parse_sign_in(req: Request) -> Result<Credentials, ApiError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        axum::Form::<Credentials>::from_request(req, &())
            .await
            .map(|f| f.0)
            .map_err(|e| ApiError::Malformed(e.body_text()))
    } else {
        Json::<Credentials>::from_request(req, &())
            .await
            .map(|j| j.0)
            .map_err(ApiError::from)
    }
}

/// Signs in with a user name and password: sets the session cookie and returns the CSRF token.
/// Wrong password and unknown user get the same 401; too many failures get 429.
#[utoipa::path(post, path = "/api/session", tag = "session", security(()),
    request_body(content(
        (Credentials = "application/json"),
        (Credentials = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, body = SessionDoc, headers(("set-cookie" = String, description = "the session cookie"))),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody,
            headers(("retry-after" = u64, description = "seconds"))),
        (status = "4XX", body = ErrorBody)))]
pub(super) async fn sign_in(
    State(shared): State<Shared>,
    Extension(sessions): Extension<Arc<Sessions>>,
    req: Request,
) -> Response {
    match sign_in_inner(&shared, &sessions, req).await {
        Ok(res) | Err(res) => res,
    }
}

async fn sign_in_inner(
    shared: &Shared,
    sessions: &Sessions,
    req: Request,
) -> Result<Response, Response> {
    let headers = req.headers().clone();
    if !same_origin(&headers) {
        return Err(ApiError::Forbidden(Refusal::CrossSite).into_response());
    }
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let body = parse_sign_in(req)
        .await
        .map_err(IntoResponse::into_response)?;
    let user = body.user.trim().to_owned();
    let now = shared.clock.now_utc().timestamp_millis();
    let key = limiter_key(&user);
    let admitted = sessions.limiter().begin(key, address.as_deref(), now);
    if let Err(retry) = admitted {
        tracing::warn!(user = %audit_name(&user), address = ?address, "sign-in refused: too many failures");
        return Err(too_many(retry));
    }
    let found = shared
        .store
        .user_credentials(&user)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let (candidate, hash) = match &found {
        Some((u, h)) => (Some(u.clone()), Some(h.clone())),
        None => (None, dummy_hash().cloned()),
    };
    let password = body.password;
    let matched = if password.len() > MAX_PASSWORD_BYTES {
        false
    } else {
        let _permit = sessions.checks.acquire().await;
        tokio::task::spawn_blocking(move || hash.is_some_and(|h| h.verify(&password)))
            .await
            .unwrap_or(false)
    };
    let signed_in = match candidate {
        Some(u) if matched && u.disabled_at.is_none() => u,
        other => {
            let reason = match other {
                None => "unknown user",
                Some(u) if u.disabled_at.is_some() => "user disabled",
                Some(_) => "wrong password",
            };
            tracing::info!(user = %audit_name(&user), address = ?address, reason, "sign-in failed");
            audit(
                shared,
                &audit_name(&user),
                "session.sign_in_failed",
                json!({ "address": address, "reason": reason }),
            )
            .await;
            return Err(wrong_credentials());
        }
    };
    sessions.limiter().succeeded(key, address.as_deref());
    let issued = shared
        .store
        .create_session(signed_in.id, sessions.policy.absolute, sessions.policy.idle)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    tracing::info!(user = %signed_in.name, address = ?address, "signed in");
    audit(
        shared,
        &signed_in.name,
        "session.sign_in",
        json!({ "address": address, "session": issued.info.id.0 }),
    )
    .await;
    let doc = session_doc(&issued.info, issued.secret.expose(), &sessions.policy);
    let secure = sessions.policy.always_secure || over_tls(&headers);
    let mut res = (StatusCode::CREATED, Json(doc)).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie(
            issued.secret.expose(),
            sessions.policy.absolute.as_secs(),
            secure,
        ),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Appends an audit entry; a failure to write it is logged, and does not undo a sign-in.
async fn audit(shared: &Shared, actor: &str, action: &str, detail: serde_json::Value) {
    if let Err(e) = shared.store.audit(actor, action, actor, &detail).await {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}

/// Who is signed in through the session cookie, and the CSRF token. 401 without a live session.
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses((status = 200, body = SessionDoc), (status = "4XX", body = ErrorBody)))]
pub(super) async fn current(
    State(shared): State<Shared>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = session_cookie(&headers).ok_or(ApiError::Unauthenticated)?;
    let info = shared
        .store
        .session(&secret, sessions.policy.idle)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let mut res = Json(session_doc(&info, &secret, &sessions.policy)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Signs out: ends the session (its server-sent event streams too) and clears the cookie. Needs
/// the CSRF token. With a bearer token there is nothing to end.
#[utoipa::path(delete, path = "/api/session", tag = "session",
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub(super) async fn sign_out(
    State(shared): State<Shared>,
    Extension(sessions): Extension<Arc<Sessions>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Credential::Session(id) = caller.1 {
        if let Some(secret) = session_cookie(&headers) {
            shared.store.delete_session(&secret).await?;
        }
        shared.revocations.revoke(stream_key(id));
        tracing::info!(user = %caller.subject(), "signed out");
        audit(
            &shared,
            caller.subject(),
            "session.sign_out",
            json!({ "session": id.0 }),
        )
        .await;
    }
    let secure = sessions.policy.always_secure || over_tls(&headers);
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, secure));
    Ok(res)
}
