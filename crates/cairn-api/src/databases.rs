//! `/v1/databases`: create, list and drop logical databases.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::flags::Flags;
use crate::AppState;

/// One database of this replica.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatabaseInfo {
    /// Database name.
    pub name: String,
    /// Size of its SQLite file on this replica, in bytes.
    pub size_bytes: u64,
}

/// The databases of this replica, with their sizes.
pub(crate) fn database_infos(state: &AppState) -> Vec<DatabaseInfo> {
    state
        .service
        .databases()
        .into_iter()
        .map(|(name, size_bytes)| DatabaseInfo { name, size_bytes })
        .collect()
}

/// Body of `GET /v1/databases`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatabaseList {
    /// Every database of this replica.
    pub databases: Vec<DatabaseInfo>,
}

/// Body of `POST /v1/databases`; other fields are ignored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateDatabase {
    /// The new database's name: 1-64 letters, digits or underscores.
    pub name: String,
}

/// Answer of `POST /v1/databases`: the database created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatabaseCreated {
    /// Its name.
    pub name: String,
}

/// Answer of a drop: what was dropped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Dropped {
    /// The name of the database (or table) dropped.
    pub dropped: String,
}

/// `GET /v1/databases`: `{"databases":[{"name","size_bytes"}]}` from this node's replica.
#[utoipa::path(get, path = "/v1/databases", tag = "databases", responses((status = 200, description = "This replica's databases", body = DatabaseList)))]
pub async fn list(State(state): State<AppState>, flags: Flags) -> Result<Response, ApiError> {
    // A user granted some databases sees those only.
    let mut databases = database_infos(&state);
    if let Some(who) = &flags.identity {
        databases.retain(|d| who.allows(cairn_auth::Perm::Query, Some(&d.name)));
    }
    let body = DatabaseList { databases };
    Ok(flags.json(StatusCode::OK, &body))
}

/// `POST /v1/databases` with `{"name": "school"}`: 201 when created, 409 when it exists.
#[utoipa::path(post, path = "/v1/databases", tag = "databases", request_body = CreateDatabase, responses((status = 201, description = "Created", body = DatabaseCreated), (status = 400, description = "Bad name", body = ErrorBody), (status = 409, description = "Exists", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    flags: Flags,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    // Read field by field, not with serde: a JSON array would deserialize into the struct.
    let req = CreateDatabase {
        name: v
            .get("name")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| ApiError::bad_request("body must be {\"name\": \"<database>\"}"))?
            .to_string(),
    };
    flags.authorize(cairn_auth::Perm::Schema, &req.name)?;
    state
        .service
        .create_database(&req.name, flags.timeout)
        .await?;
    Ok(flags.json(StatusCode::CREATED, &DatabaseCreated { name: req.name }))
}

/// `DELETE /v1/databases/{name}`: leader only; a follower answers 403 `not_leader` with the
/// leader's address (dropping a database is the leader's alone, as the seeds require).
#[utoipa::path(delete, path = "/v1/databases/{db}", tag = "databases", params(("db" = String, Path, description = "Database")), responses((status = 200, description = "Dropped", body = Dropped), (status = 403, description = "Not the leader: the body names it", body = ErrorBody), (status = 404, description = "Unknown database", body = ErrorBody)))]
pub async fn drop(
    State(state): State<AppState>,
    flags: Flags,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.service.drop_database(&name, flags.timeout).await?;
    Ok(flags.json(StatusCode::OK, &Dropped { dropped: name }))
}
