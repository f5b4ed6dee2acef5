//! `/v1/databases`: create, list and drop logical databases.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::error::ApiError;
use crate::flags::Flags;
use crate::AppState;

/// `GET /v1/databases`: `{"databases":[{"name","size_bytes"}]}` from this node's replica.
#[utoipa::path(get, path = "/v1/databases", tag = "databases", responses((status = 200, description = "{\"databases\": [{\"name\",\"size_bytes\"}]}", body = serde_json::Value)))]
pub async fn list(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    let dbs: Vec<_> = state
        .service
        .databases()
        .into_iter()
        .map(|(name, size)| serde_json::json!({"name": name, "size_bytes": size}))
        .collect();
    Ok(flags.json(StatusCode::OK, &serde_json::json!({ "databases": dbs })))
}

/// `POST /v1/databases` with `{"name": "school"}`: 201 when created, 409 when it exists.
#[utoipa::path(post, path = "/v1/databases", tag = "databases", request_body(content = serde_json::Value, description = "{\"name\": \"school\"}"), responses((status = 201, description = "Created", body = serde_json::Value), (status = 400, description = "Bad name", body = crate::error::ErrorBody), (status = 409, description = "Exists", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let name = v["name"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("body must be {\"name\": \"<database>\"}"))?;
    state.service.create_database(name, flags.timeout).await?;
    Ok(flags.json(StatusCode::CREATED, &serde_json::json!({ "name": name })))
}

/// `DELETE /v1/databases/{name}`: leader only; a follower answers 403 `not_leader` with the
/// leader's address (dropping a database is the leader's alone, as the seeds require).
#[utoipa::path(delete, path = "/v1/databases/{db}", tag = "databases", params(("db" = String, Path, description = "Database")), responses((status = 200, description = "Dropped", body = serde_json::Value), (status = 403, description = "Not the leader: the body names it", body = crate::error::ErrorBody), (status = 404, description = "Unknown database", body = crate::error::ErrorBody)))]
pub async fn drop(
    State(state): State<AppState>,
    flags: Flags,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.service.drop_database(&name, flags.timeout).await?;
    Ok(flags.json(StatusCode::OK, &serde_json::json!({ "dropped": name })))
}
