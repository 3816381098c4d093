//! The HTTP API: admin, manager and agent routes, reports, metrics.

use axum::Router;
use axum::routing::get;

use crate::daemon::Shared;

/// The HTTP routes served on `http_listen`.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(shared)
}

/// Liveness: 200 while the daemon runs.
async fn health() -> &'static str {
    "ok"
}
