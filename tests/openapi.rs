//! The OpenAPI document against what the handlers send: each case here is one schemathesis
//! found (`tests/schemathesis.rs` runs it against the real binary).

use serde_json::Value;

fn doc() -> Value {
    serde_json::to_value(rgsd::api::openapi()).expect("the document serialises")
}

/// The reports answer JSON, or CSV with `?format=csv`: both are documented on the one 200
/// (two `status = 200` entries used to leave only the last, `text/csv`).
#[test]
fn the_reports_document_json_and_csv() {
    let doc = doc();
    for path in ["/api/reports/summary", "/api/reports/calls"] {
        let content = &doc["paths"][path]["get"]["responses"]["200"]["content"];
        assert!(
            content["application/json"]["schema"].is_object(),
            "{path}: {content}"
        );
        assert!(
            content["text/csv"]["schema"].is_object(),
            "{path}: {content}"
        );
    }
}

/// A server-sent event is documented by its fields (`event`, `data`), the snapshot being the
/// JSON text of `data`; the stream used to be documented as if each event were the snapshot.
#[test]
fn the_live_stream_documents_its_events() {
    let doc = doc();
    let schema = &doc["paths"]["/api/live/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["schema"];
    let name = schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_else(|| panic!("{schema}"));
    let event = &doc["components"]["schemas"][name];
    assert_eq!(event["required"], serde_json::json!(["event"]), "{event}");
    assert_eq!(
        event["properties"]["data"]["contentMediaType"], "application/json",
        "{event}"
    );
    assert!(
        event["properties"]["event"]["enum"]
            .as_array()
            .is_some_and(|e| e.contains(&"snapshot".into()))
    );
    // The snapshot itself stays described.
    assert!(doc["components"]["schemas"]["LiveSnapshot"]["properties"]["at"].is_object());
}

/// The health check, the metrics and the two pages are served to anyone: they say so, rather
/// than inheriting the document's bearer-or-session requirement.
#[test]
fn the_public_routes_need_no_credentials() {
    let doc = doc();
    assert!(doc["security"].as_array().is_some_and(|s| !s.is_empty()));
    for path in [
        "/health",
        "/metrics",
        "/agent",
        "/wallboard",
        "/config",
        "/RgsConfig",
        "/config/config.js",
        "/config/config.css",
    ] {
        assert_eq!(
            doc["paths"][path]["get"]["security"],
            serde_json::json!([{}]),
            "{path}"
        );
    }
    // An API route keeps the document's requirement.
    assert!(doc["paths"]["/api/agents"]["get"].get("security").is_none());
}
