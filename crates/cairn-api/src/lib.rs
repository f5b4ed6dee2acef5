//! Cairn's public HTTP API (axum): the rqlite-compatible `/db/*` routes, cluster routes
//! (`/status`, `/nodes`, `/readyz`, `/leader`, `/remove`, `/join`) and `/v1/databases`.

mod cluster;
mod databases;
mod error;
mod flags;
mod rqlite;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use cairn_node::Node;

pub use error::ApiError;
pub use flags::Flags;

/// Largest request body accepted, in bytes (a `/db/load` file included).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The node this API serves.
    pub node: Arc<Node>,
}

/// The complete public router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/db/execute", post(rqlite::execute))
        .route("/db/query", get(rqlite::query).post(rqlite::query))
        .route("/db/request", post(rqlite::request))
        .route("/db/backup", get(rqlite::backup))
        .route("/db/load", post(rqlite::load))
        .route("/status", get(cluster::status))
        .route("/nodes", get(cluster::nodes))
        .route("/readyz", get(cluster::readyz))
        .route("/leader", get(cluster::leader).post(cluster::step_down))
        .route("/remove", delete(cluster::remove))
        .route("/join", post(cluster::join))
        .route(
            "/v1/databases",
            get(databases::list).post(databases::create),
        )
        .route("/v1/databases/{name}", delete(databases::drop))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(json_rejections))
        .with_state(AppState { node })
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route")
}

/// axum's own rejections (oversized body, bad query string, wrong method) are plain text;
/// turn them into the same JSON error shape as ours, with stable codes.
async fn json_rejections(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success()
        || status.is_redirection()
        || is_json
        || status == StatusCode::SERVICE_UNAVAILABLE
    {
        return resp;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "no_route",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&body).trim().to_string();
    let msg = if msg.is_empty() {
        status.to_string()
    } else {
        msg
    };
    ApiError::new(status, code, msg).into_response()
}

/// A JSON response, indented when `pretty`.
pub fn json_response(status: StatusCode, body: &serde_json::Value, pretty: bool) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(body)
    } else {
        serde_json::to_string(body)
    }
    .unwrap_or_else(|_| "{}".into());
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}
