//! Cairn's public HTTP API (axum): the rqlite-compatible `/db/*` routes, cluster routes
//! (`/status`, `/nodes`, `/readyz`, `/leader`, `/remove`, `/join`), `/v1/databases` with
//! REST tables and rows, and the seed documents' routes.
//!
//! Handlers see the node only through [`Service`] (implemented for [`cairn_node::Node`]);
//! they take their query-string options as the [`Flags`] extractor and answer typed
//! [`bodies`] or an [`ApiError`] with a stable [`ErrorCode`].

mod auth;
#[cfg(test)]
mod auth_tests;
mod cluster;
pub mod console;
mod databases;
mod error;
mod flags;
#[cfg(test)]
mod handler_tests;
mod rest;
mod rqlite;
mod seeds;
mod service;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_node::Node;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The request and response bodies of every route, as `/v1/openapi.json` describes them.
/// Some request types only document a body that its handler reads field by field (the seed
/// routes also take fields from the query string, and keep their own error messages).
pub mod bodies {
    pub use crate::cluster::{
        Empty, LeaderBody, NodeIdInput, NodesBody, NodesList, PeerInfo, RemoveNode,
    };
    pub use crate::databases::{
        CreateDatabase, DatabaseCreated, DatabaseInfo, DatabaseList, Dropped,
    };
    pub use crate::rest::{
        AggregateRows, AlterTable, ColumnInfo, ColumnItem, ColumnsInput, CreateTable,
        DatabaseDetail, Deleted, Inserted, RenameColumn, RowsInput, RowsPage, TableCreated,
        TableInfo, TableList, TableSummary, UpdateRows, Updated,
    };
    pub use crate::rqlite::{Queued, Results, StatementInput, StatementOutcome};
    pub use crate::seeds::{
        CreateTable001, CreateTable002, CreateTable004, DbName, Health, MapReduceCount, Metadata,
        Ping, Routing, SecretCheck, SecurityCheck, SeedDatabase, SeedDeleted, SeedInsert,
        SeedInserted, SeedRows, SeedSelected, SeedTable, SeedTarget, SeedUpdated, ShardCount,
        TableCreated001, TableTarget004,
    };
}

pub use auth::{rule, Access, Need, Scope, RULES};
pub use cairn_auth::{Identity, Perm, Users};
pub use cairn_sql::ErrorCode;
pub use error::{ApiError, ErrorBody};
pub use flags::Flags;
pub use service::{BoxFuture, Service};

/// Largest request body accepted, in bytes (a `/db/load` file included): twice
/// [`cairn_raft::MAX_ENTRY_BYTES`] (32 MiB), because JSON spells values in up to about twice
/// their encoded size (hex BLOBs, numbers). A larger body could not become one log entry and
/// is refused unread with 413 `payload_too_large`; a smaller one whose command still does not
/// fit is refused at proposal with 413 `entry_too_large`. Both change nothing.
pub const MAX_BODY_BYTES: usize = 2 * cairn_raft::MAX_ENTRY_BYTES;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The node this API serves, behind the [`Service`] boundary.
    pub service: Arc<dyn Service>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Cairn", description = "Cairn's HTTP API: rqlite-compatible /db/*, REST /v1/*, cluster routes and the original documents' routes."),
    tags(
        (name = "rqlite", description = "rqlite-compatible data API"),
        (name = "cluster", description = "Membership, leadership and health"),
        (name = "databases", description = "Logical databases"),
        (name = "tables", description = "Tables with typed columns"),
        (name = "rows", description = "Rows and aggregates, without SQL"),
        (name = "seeds", description = "The original requirement documents' routes"),
    )
)]
struct ApiDoc;

/// Every documented route with its OpenAPI description, built from the handlers'
/// annotations: a route cannot be served without being described.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(rqlite::execute))
        .routes(routes!(rqlite::query))
        .routes(routes!(rqlite::request))
        .routes(routes!(rqlite::backup))
        .routes(routes!(rqlite::load))
        .routes(routes!(cluster::status))
        .routes(routes!(cluster::nodes))
        .routes(routes!(cluster::readyz))
        .routes(routes!(cluster::metrics))
        .routes(routes!(cluster::leader, cluster::step_down))
        .routes(routes!(cluster::remove))
        .routes(routes!(cluster::join))
        .routes(routes!(databases::list, databases::create))
        .routes(routes!(rest::get_database, databases::drop))
        .routes(routes!(rest::create_table, rest::list_tables))
        .routes(routes!(
            rest::get_table,
            rest::drop_table,
            rest::alter_table
        ))
        .routes(routes!(
            rest::insert,
            rest::search,
            rest::update,
            rest::delete
        ))
        .routes(routes!(rest::aggregate))
        .routes(routes!(seeds::create_table_001))
        .routes(routes!(seeds::insert))
        .routes(routes!(seeds::search_001))
        .routes(routes!(seeds::ping))
        .routes(routes!(seeds::createdb))
        .routes(routes!(seeds::dropdb))
        .routes(routes!(seeds::createtable))
        .routes(routes!(seeds::select))
        .routes(routes!(seeds::update))
        .routes(routes!(seeds::delete))
        .routes(routes!(seeds::create_db_004))
        .routes(routes!(seeds::drop_db_004))
        .routes(routes!(seeds::create_table_004))
        .routes(routes!(seeds::delete_table_004))
        .routes(routes!(seeds::metadata))
        .routes(routes!(seeds::health))
        .routes(routes!(seeds::map_reduce_count))
        .routes(routes!(seeds::security_check))
}

/// The OpenAPI 3 description of every route, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// The complete public router, serving `node` to whom `access` lets in.
pub fn router(node: Arc<Node>, access: Access) -> Router {
    router_for(node, access)
}

/// The complete public router over any [`Service`] (a node, or a fake in tests).
pub fn router_for(service: Arc<dyn Service>, access: Access) -> Router {
    let (routes, api) = documented_routes().split_for_parts();
    let api = Arc::new(api);
    routes
        .merge(console::router())
        .route(
            "/v1/openapi.json",
            get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        // Per route (so the matched route is known), before any handler runs.
        .layer(axum::middleware::from_fn_with_state(
            access,
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(json_rejections))
        .layer(axum::middleware::map_response(version_header))
        // Outermost, so that it counts what the client got (rejections, 401s included).
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            observe_request,
        ))
        .with_state(AppState { service })
}

/// Counts the request in the node's metrics: by matched route (`unmatched` for a path no
/// route serves, so that hostile paths do not grow the label set), method and status, with
/// its duration to the response head; an error answer also by its stable code.
async fn observe_request(
    State(service): State<Arc<dyn Service>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(telemetry) = service.telemetry().cloned() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = match *req.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS => req.method().as_str().to_string(),
        _ => "other".to_string(),
    };
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    telemetry.observe_http(&route, &method, resp.status().as_u16(), started.elapsed());
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        telemetry.observe_error(code.as_str());
    }
    resp
}

/// Every response carries the node's version under rqlite's header name
/// ([`cairn_node::VERSION_HEADER`]), as rqlite's `http/service.go` does; `/nodes` and
/// rqlite's CLI read it.
async fn version_header(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        cairn_node::VERSION_HEADER,
        header::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    resp
}

async fn not_found() -> ApiError {
    ApiError::of(ErrorCode::NoRoute, "no such route")
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
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::NOT_FOUND => ErrorCode::NoRoute,
        s if s.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
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

/// A JSON response, indented when `pretty` (handlers call it through [`Flags::json`]).
pub fn json_response(status: StatusCode, body: &impl serde::Serialize, pretty: bool) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(body)
    } else {
        serde_json::to_string(body)
    }
    .unwrap_or_else(|_| "{}".into());
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once() {
        let api = openapi();
        let paths: Vec<&String> = api.paths.paths.keys().collect();
        for p in [
            "/db/execute",
            "/db/query",
            "/v1/databases/{db}/tables/{table}/rows",
            "/v1/databases/{db}/tables/{table}/aggregate",
            "/create_table",
            "/map-reduce-count",
            "/security-check",
        ] {
            assert!(
                paths.iter().any(|x| x.as_str() == p),
                "{p} is missing from {paths:?}"
            );
        }
        assert!(paths.len() >= 35, "{} paths", paths.len());
    }

    /// Every documented route and method has a permission rule, and every rule names a
    /// documented route: a new route cannot be served without deciding who may call it.
    #[test]
    fn every_route_has_a_permission_rule() {
        let api = serde_json::to_value(openapi()).expect("serializes");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in api["paths"].as_object().into_iter().flatten() {
            for method in ops.as_object().into_iter().flatten().map(|(m, _)| m) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.push(("GET".into(), "/v1/openapi.json".into()));
        let missing: Vec<_> = documented
            .iter()
            .filter(|(m, p)| {
                let method = axum::http::Method::from_bytes(m.as_bytes()).expect("method");
                rule(&method, p).is_none()
            })
            .collect();
        assert!(missing.is_empty(), "routes without a rule: {missing:?}");
        let stray: Vec<_> = RULES
            .iter()
            .filter(|(m, p, _)| !documented.contains(&(m.to_string(), p.to_string())))
            .collect();
        assert!(stray.is_empty(), "rules without a route: {stray:?}");
    }

    /// README.md's "Error codes" table lists exactly the codes of [`ErrorCode`], each with
    /// the status [`ErrorCode::http_status`] gives.
    #[test]
    fn readme_lists_every_error_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md is readable");
        let section = readme
            .split("\n### Error codes\n")
            .nth(1)
            .expect("README.md has a ### Error codes section");
        let section = section.split("\n#").next().unwrap_or(section);
        let mut listed: Vec<(String, u16)> = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells[1].trim_matches('`').to_string();
            let status: u16 = cells[2]
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status in {line:?}"));
            listed.push((code, status));
        }
        let mut expected: Vec<(String, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), c.http_status()))
            .collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
    }

    /// The OpenAPI document shows the error code as an enum of every code.
    #[test]
    fn openapi_error_code_is_an_enum() {
        let api = serde_json::to_value(openapi()).expect("serializes");
        let values = api["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(values.len(), ErrorCode::ALL.len(), "{values:?}");
        assert!(values.contains(&serde_json::json!("constraint_violation")));
    }

    /// Every JSON request and response body in the OpenAPI document is a named schema (or
    /// an array of one), not a free-form object.
    #[test]
    fn every_json_body_has_a_named_schema() {
        let api = serde_json::to_value(openapi()).expect("serializes");
        let named = |schema: &serde_json::Value| {
            schema.get("$ref").is_some() || schema["items"].get("$ref").is_some()
        };
        let mut free = Vec::new();
        for (path, ops) in api["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let mut bodies = vec![("request".to_string(), &op["requestBody"])];
                for (status, r) in op["responses"].as_object().into_iter().flatten() {
                    bodies.push((status.clone(), r));
                }
                for (what, b) in bodies {
                    if let Some(json) = b["content"].get("application/json") {
                        if !named(&json["schema"]) {
                            free.push(format!("{method} {path} {what}: {}", json["schema"]));
                        }
                    }
                }
            }
        }
        assert!(free.is_empty(), "free-form bodies:\n{}", free.join("\n"));
    }
}
