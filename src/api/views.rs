//! Read-only views: live state (REST and server-sent events), reports, metrics, the audit log,
//! and the two pages served by rgsd itself (agent page, wallboard).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use super::live::Visibility as _;
use super::live::{AgentSnapshot, LiveCall, LiveSnapshot, QueueSnapshot};
use super::reports::{self, CallRow, GroupBy, SummaryRow};

/// How often the SSE stream re-sends the snapshot without a change (wait times move on).
const SSE_REFRESH: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Live

fn snapshot(shared: &Shared, caller: &Caller) -> Result<LiveSnapshot, ApiError> {
    caller.require_admin_or_manager()?;
    let config = shared.config.load();
    Ok(shared.live.snapshot(&config, &caller.scope(&config)))
}

/// Queues, agents and calls in progress, now.
#[utoipa::path(get, path = "/api/live", tag = "live",
    responses((status = 200, body = LiveSnapshot), (status = "4XX", body = ErrorBody)))]
pub(super) async fn live(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<LiveSnapshot>, ApiError> {
    Ok(Json(snapshot(&shared, &caller)?))
}

/// Queues now: waiting calls, longest wait, agents signed in, eligible and busy.
#[utoipa::path(get, path = "/api/live/queues", tag = "live",
    responses((status = 200, body = Vec<QueueSnapshot>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn live_queues(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<QueueSnapshot>>, ApiError> {
    Ok(Json(snapshot(&shared, &caller)?.queues))
}

/// Agents now: state, current call, idle since, formal groups signed in to.
#[utoipa::path(get, path = "/api/live/agents", tag = "live",
    responses((status = 200, body = Vec<AgentSnapshot>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn live_agents(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<AgentSnapshot>>, ApiError> {
    Ok(Json(snapshot(&shared, &caller)?.agents))
}

/// Calls in progress.
#[utoipa::path(get, path = "/api/live/calls", tag = "live",
    responses((status = 200, body = Vec<LiveCall>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn live_calls(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<LiveCall>>, ApiError> {
    Ok(Json(snapshot(&shared, &caller)?.calls))
}

/// One event of `/api/live/stream`, documented as OpenAPI describes server-sent events (the
/// event's fields): `event: snapshot` and, as `data`, the [`LiveSnapshot`] document as JSON text.
pub(super) struct LiveEvent;

impl utoipa::PartialSchema for LiveEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event: `snapshot`, its data the LiveSnapshot document as JSON",
            ))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["snapshot", "error"])),
            )
            .required("event")
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/json")
                    .description(Some("the LiveSnapshot document")),
            )
            .into()
    }
}

impl utoipa::ToSchema for LiveEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        // The document `data` carries, listed with the API's other schemas.
        schemas.push((
            <LiveSnapshot as utoipa::ToSchema>::name().into_owned(),
            <LiveSnapshot as utoipa::PartialSchema>::schema(),
        ));
        <LiveSnapshot as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Server-sent events: a `snapshot` event (the `/api/live` document) at once, on every change
/// and every 5 s. `EventSource` cannot send headers, so the token may come as
/// `?access_token=…`. The stream ends when its token is revoked.
#[utoipa::path(get, path = "/api/live/stream", tag = "live",
    params(("access_token" = Option<String>, Query, description = "token, for EventSource")),
    responses((status = 200, content_type = "text/event-stream", body = LiveEvent),
              (status = "4XX", body = ErrorBody)))]
pub(super) async fn live_stream(
    State(shared): State<Shared>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require_admin_or_manager()?;
    let changes = BroadcastStream::new(shared.live.subscribe()).map(|_| ());
    let mut interval = tokio::time::interval(SSE_REFRESH);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The interval's first tick is immediate: that is the initial snapshot.
    let ticks = IntervalStream::new(interval).map(|_| ());
    // Authenticated once, here: a revocation through the API ends the stream.
    let revoked = shared.revocations.revoked(caller.0.id);
    let stream = futures_util::stream::select(ticks, changes).map(move |()| {
        let config = shared.config.load();
        let snap = shared.live.snapshot(&config, &caller.scope(&config));
        let event = Event::default()
            .event("snapshot")
            .json_data(&snap)
            .unwrap_or_else(|_| Event::default().event("error"));
        Ok(event)
    });
    let stream = stream.take_until(revoked);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

// ---------------------------------------------------------------------------------------------
// Reports

/// The time range and options of a report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportQuery {
    /// Start (inclusive), RFC 3339.
    pub from: DateTime<Utc>,
    /// End (exclusive), RFC 3339.
    pub to: DateTime<Utc>,
    /// Summary: `workflow` (default), `queue` or `agent`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub by: Option<GroupBy>,
    /// Service-level threshold N in seconds (answered within N s); default 20.
    #[serde(default)]
    pub service_level_seconds: Option<u64>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
    /// Call list: most calls to return (default and maximum 100,000); a range holding more is
    /// refused with 422 rather than cut short.
    #[serde(default)]
    pub max_calls: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

impl ReportQuery {
    fn format(&self) -> Result<Format, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::InvalidField {
                field: "format",
                reason: format!("{other:?} is neither \"json\" nor \"csv\""),
            }),
        }
    }

    fn check_range(&self) -> Result<(), ApiError> {
        if self.from >= self.to {
            return Err(ApiError::InvalidField {
                field: "to",
                reason: "must be after from".into(),
            });
        }
        Ok(())
    }
}

/// The summary report document.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SummaryDoc {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub by: GroupBy,
    pub service_level_seconds: u64,
    pub rows: Vec<SummaryRow>,
}

/// Most calls the call list returns at once; a longer range is refused with a clear error
/// rather than held in memory whole.
pub(super) const MAX_CALL_ROWS: usize = 100_000;

/// Feeds every record of the range the caller may see to `each`, a page at a time: memory is
/// bounded by a page whatever the range. Fails once more than `cap` records were fed.
async fn for_each_record(
    shared: &Shared,
    caller: &Caller,
    q: &ReportQuery,
    cap: Option<usize>,
    mut each: impl FnMut(crate::store::CallRecord),
) -> Result<(), ApiError> {
    caller.require_admin_or_manager()?;
    q.check_range()?;
    let scope = caller.scope(&shared.config.load());
    let mut after = None;
    let mut fed = 0usize;
    loop {
        let (page, next) = shared
            .store
            .call_records_page(q.from, q.to, after, crate::store::records::PAGE_ROWS)
            .await?;
        for r in page.into_iter().filter(|r| scope.workflow(&r.workflow)) {
            fed += 1;
            if cap.is_some_and(|cap| fed > cap) {
                return Err(ApiError::InvalidField {
                    field: "to",
                    reason: format!(
                        "the range holds more than {} calls; narrow it (or raise max_calls, up to {MAX_CALL_ROWS})",
                        cap.unwrap_or_default()
                    ),
                });
            }
            each(r);
        }
        match next {
            Some(cursor) => after = Some(cursor),
            None => return Ok(()),
        }
    }
}

fn csv_response(body: String, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// Received, offered, answered, abandoned %, average wait and talk, time-outs, overflows and
/// service level per workflow, queue or agent (a manager sees their workflows' calls).
#[utoipa::path(get, path = "/api/reports/summary", tag = "reports", params(ReportQuery),
    responses((status = 200, content((SummaryDoc = "application/json"), (String = "text/csv"))),
              (status = "4XX", body = ErrorBody)))]
pub(super) async fn report_summary(
    State(shared): State<Shared>,
    caller: Caller,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format()?;
    let by = q.by.unwrap_or(GroupBy::Workflow);
    let n = q.service_level_seconds.unwrap_or(20);
    let mut summary = reports::Summary::new(by, Duration::from_secs(n));
    for_each_record(&shared, &caller, &q, None, |r| summary.add(&r)).await?;
    let rows = summary.rows();
    Ok(match format {
        Format::Json => Json(SummaryDoc {
            from: q.from,
            to: q.to,
            by,
            service_level_seconds: n,
            rows,
        })
        .into_response(),
        Format::Csv => csv_response(reports::summary_csv(&rows)?, "summary.csv"),
    })
}

/// The call list: caller, workflow, start, end, SIP code, outcome.
#[utoipa::path(get, path = "/api/reports/calls", tag = "reports", params(ReportQuery),
    responses((status = 200, content((Vec<CallRow> = "application/json"), (String = "text/csv"))),
              (status = "4XX", body = ErrorBody)))]
pub(super) async fn report_calls(
    State(shared): State<Shared>,
    caller: Caller,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format()?;
    let mut rows = Vec::new();
    let cap = q.max_calls.unwrap_or(MAX_CALL_ROWS).min(MAX_CALL_ROWS);
    for_each_record(&shared, &caller, &q, Some(cap), |r| {
        rows.extend(reports::call_list(std::slice::from_ref(&r)));
    })
    .await?;
    Ok(match format {
        Format::Json => Json(rows).into_response(),
        Format::Csv => csv_response(reports::calls_csv(&rows)?, "calls.csv"),
    })
}

// ---------------------------------------------------------------------------------------------
// Audit

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditDoc {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Which audit entries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Entries at or after this time (RFC 3339); default: all.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The audit log: who changed what, when (administrators).
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditDoc>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn audit_log(
    State(shared): State<Shared>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditDoc>>, ApiError> {
    caller.require_admin()?;
    let since = q.since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let limit = q.limit.unwrap_or(100).min(1000);
    let entries = shared.store.list_audit(since, limit).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditDoc {
                id: e.id,
                at: e.at,
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Health, metrics, pages

/// Liveness: 200 while the daemon runs (calls are taken): `ok`, or `degraded: …` while call
/// records cannot be written (the database is unreachable; they are kept and retried), so a
/// load balancer keeps sending calls and a monitor can alert.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, body = String, content_type = "text/plain")))]
pub(super) async fn health(State(shared): State<Shared>) -> String {
    match shared.live.metrics.writer_health() {
        Some((crate::store::WriterStatus::Retrying { failures }, pending)) => format!(
            "degraded: the database is unreachable; {pending} call records kept and retried ({failures} failed attempts)"
        ),
        _ => "ok".to_owned(),
    }
}

/// Prometheus metrics (text exposition format), families `rgsd_…`. Unauthenticated, like most
/// exporters: bind `http_listen` where only the scraper reaches it.
#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
pub(super) async fn metrics(State(shared): State<Shared>) -> Response {
    let config = shared.config.load();
    let live = shared.live.snapshot(&config, &super::auth::Scope::All);
    let body = super::metrics::render(&shared.live.metrics, &live, shared.store.backend_name());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The agent page: sign in with a token, see your groups with sign-in switches and your state.
#[utoipa::path(get, path = "/agent", tag = "pages", security(()),
    responses((status = 200, body = String, content_type = "text/html")))]
pub(super) async fn agent_page() -> Html<&'static str> {
    Html(include_str!("assets/agent.html"))
}

/// The wallboard: every queue live (server-sent events).
#[utoipa::path(get, path = "/wallboard", tag = "pages", security(()),
    responses((status = 200, body = String, content_type = "text/html")))]
pub(super) async fn wallboard_page() -> Html<&'static str> {
    Html(include_str!("assets/wallboard.html"))
}
