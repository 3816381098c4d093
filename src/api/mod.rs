//! The HTTP API: admin, manager and agent routes, reports, metrics.
