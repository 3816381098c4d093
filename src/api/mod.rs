//! The HTTP API: admin, manager and agent routes, live state, reports, metrics, and the agent
//! page, the wallboard and the configuration tool (`/config`).
//!
//! # Layout
//!
//! - [`auth`]: who is calling ([`auth::Caller`], from a bearer token or a session cookie) and
//!   what a manager may touch ([`auth::ManagedScope`]).
//! - [`error`]: [`ApiError`], each variant with its status and the JSON body
//!   `{ "error": "...", "code": "...", "field": ... }`.
//! - [`agents`]: agents, agent groups by id, members, formal sign-in, `/api/me`.
//! - [`objects`]: the response-group collections (`/api/agent-groups`, `/api/queues`,
//!   `/api/hours`, `/api/holiday-sets`, `/api/workflows`), file- or database-owned.
//! - [`prompts`]: `/api/prompts`, prompt audio converted once at upload.
//! - [`tokens`]: issuing, listing and revoking API tokens.
//! - [`session`]: people signing in with a password: session cookie, CSRF token, sign-in rate
//!   limit; [`sign_in`]: the `/api/session` handlers.
//! - [`views`]: live state (REST and SSE), reports, audit log, health, metrics, pages.
//! - [`live`]: [`Live`], the live side: snapshots of the agent table `acd` owns, the calls in
//!   progress the call tasks report, change announcements; membership and sign-in changes are
//!   handed to `acd`'s reload from here.
//! - [`metrics`]: [`Metrics`] counters and the Prometheus text format.
//! - [`reports`]: pure report computations over call records.
//! - [`snapshot`]: the live state as plain data (REST, SSE, `/metrics`).
//! - `extract` (private): body, path and query extractors that answer malformed input with the
//!   same JSON error body as every other mistake.
//!
//! Every route is declared through `utoipa-axum`'s [`OpenApiRouter`], so the OpenAPI document
//! served at `/api/openapi.json` is generated from the same declarations as the router itself:
//! a route cannot be served without being documented.

mod agents;
mod auth;
mod error;
mod extract;
pub(crate) mod live;
mod metrics;
pub mod objects;
mod prompts;
pub mod reports;
mod session;
mod sign_in;
mod snapshot;
pub(crate) mod tokens;
mod views;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::SharedClock;
use crate::config::model::Config;
use crate::store::Store;

pub use error::ApiError;
pub use live::Live;
pub use metrics::Metrics;
pub use snapshot::{CallPhase, LiveCall};

/// The API's state, built by the daemon: the live configuration, the store, the clock, the live
/// side, revoked tokens and the configuration objects. Every handler receives a clone.
#[derive(Clone)]
pub struct Shared {
    /// The configuration in force; swapped whole on reload. Calls in progress keep the `Arc`
    /// they started with.
    pub config: Arc<ArcSwap<Config>>,
    pub store: Store,
    pub clock: SharedClock,
    /// The live side: the agent table (read; `acd` owns it), calls in progress, metrics, change
    /// events.
    pub live: Arc<Live>,
    /// Tokens revoked through the API, so the SSE streams they opened end.
    pub revocations: tokens::Revocations,
    /// The response-group collections: the change lock, the file's objects, and how an
    /// accepted change is put in force.
    pub objects: objects::Objects,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "rgsd", description = "SIP response-group server: agents, groups, sign-in, live state, reports."),
    modifiers(&BearerAuth),
    security(("bearer" = []), ("session" = [])),
)]
struct ApiDoc;

/// Declares the two ways into every `/api` route: a bearer token (scripts) or the session cookie
/// (people; changes also need the `X-CSRF-Token` header).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                session::SESSION_COOKIE,
                "set by POST /api/session; changes also need the X-CSRF-Token header",
            ))),
        );
    }
}

/// The documented routes and the OpenAPI document generated from them (without
/// `/api/openapi.json` itself, which serves it).
pub fn documented() -> (Router<Shared>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(views::health))
        .routes(routes!(views::metrics))
        .routes(routes!(views::agent_page))
        .routes(routes!(views::wallboard_page))
        .routes(routes!(config_page))
        .routes(routes!(config_page_lync))
        .routes(routes!(config_script))
        .routes(routes!(config_style))
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(
            agents::get_agent,
            agents::update_agent,
            agents::delete_agent
        ))
        .routes(routes!(agents::list_groups, agents::create_group))
        .routes(routes!(
            agents::get_group,
            agents::update_group,
            agents::delete_group
        ))
        .routes(routes!(agents::set_members))
        .routes(routes!(agents::set_sign_in))
        .routes(routes!(agents::end_wrap_up))
        .routes(routes!(agents::me))
        .routes(routes!(
            objects::agent_groups::list,
            objects::agent_groups::create
        ))
        .routes(routes!(
            objects::agent_groups::get,
            objects::agent_groups::replace,
            objects::agent_groups::patch,
            objects::agent_groups::delete
        ))
        .routes(routes!(objects::queues::list, objects::queues::create))
        .routes(routes!(
            objects::queues::get,
            objects::queues::replace,
            objects::queues::patch,
            objects::queues::delete
        ))
        .routes(routes!(objects::hours::list, objects::hours::create))
        .routes(routes!(
            objects::hours::get,
            objects::hours::replace,
            objects::hours::patch,
            objects::hours::delete
        ))
        .routes(routes!(
            objects::holiday_sets::list,
            objects::holiday_sets::create
        ))
        .routes(routes!(
            objects::holiday_sets::get,
            objects::holiday_sets::replace,
            objects::holiday_sets::patch,
            objects::holiday_sets::delete
        ))
        .routes(routes!(
            objects::workflows::list,
            objects::workflows::create
        ))
        .routes(routes!(
            objects::workflows::get,
            objects::workflows::replace,
            objects::workflows::patch,
            objects::workflows::delete
        ))
        .routes(routes!(prompts::list, prompts::create_from_text))
        .routes(routes!(prompts::get, prompts::upload, prompts::delete))
        .routes(routes!(views::live))
        .routes(routes!(views::live_queues))
        .routes(routes!(views::live_agents))
        .routes(routes!(views::live_calls))
        .routes(routes!(views::live_stream))
        .routes(routes!(views::report_summary))
        .routes(routes!(views::report_calls))
        .routes(routes!(views::audit_log))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(
            sign_in::sign_in,
            sign_in::current,
            sign_in::sign_out
        ))
        .split_for_parts()
}

/// The Response Group configuration tool: workflows, queues, agent groups, hours, holiday sets
/// and prompts, edited in the browser over the `/api` collections (signed in with a password).
#[utoipa::path(get, path = "/config", tag = "pages", security(()),
    responses((status = 200, body = String, content_type = "text/html")))]
pub async fn config_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("assets/config.html"))
}

/// The configuration tool under the path Lync Server served it at.
#[utoipa::path(get, path = "/RgsConfig", tag = "pages", security(()),
    responses((status = 200, body = String, content_type = "text/html")))]
pub async fn config_page_lync() -> axum::response::Html<&'static str> {
    config_page().await
}

/// The configuration tool's script.
#[utoipa::path(get, path = "/config/config.js", tag = "pages", security(()),
    responses((status = 200, body = String, content_type = "text/javascript")))]
pub async fn config_script() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("assets/config.js"),
    )
}

/// The configuration tool's style sheet.
#[utoipa::path(get, path = "/config/config.css", tag = "pages", security(()),
    responses((status = 200, body = String, content_type = "text/css")))]
pub async fn config_style() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/config.css"),
    )
}

/// The OpenAPI document, as served at `/api/openapi.json` (that route included).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = documented();
    let op = utoipa::openapi::path::OperationBuilder::new()
        .summary(Some("This OpenAPI document"))
        .response(
            "200",
            utoipa::openapi::ResponseBuilder::new().description("OpenAPI 3.1 document"),
        )
        .build();
    doc.paths.add_path_operation(
        "/api/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        op,
    );
    doc
}

/// The HTTP routes served on `http_listen`, with the session policy from the environment
/// ([`session::SessionPolicy::from_env`]).
pub fn router(shared: Shared) -> Router {
    router_with(shared, session::SessionPolicy::from_env())
}

/// [`router`] with an explicit session policy (tests shorten the limits).
pub fn router_with(shared: Shared, policy: session::SessionPolicy) -> Router {
    let (router, _) = documented();
    let doc = openapi();
    router
        .route("/api/openapi.json", get(move || async move { Json(doc) }))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::Extension(std::sync::Arc::new(
            session::Sessions::new(policy),
        )))
        .with_state(shared)
}
