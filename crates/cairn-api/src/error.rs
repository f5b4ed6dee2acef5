//! API errors: an HTTP status, a stable machine-readable [`ErrorCode`], and a human message,
//! rendered as `{"error": "...", "code": "..."}` (plus `"leader"` when the request must go
//! to the leader).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_node::NodeError;
use cairn_sql::ErrorCode;

/// The JSON body of every error, as documented in the OpenAPI description.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// A stable code to match on, e.g. `database_not_found`.
    pub code: ErrorCode,
    /// The leader's HTTP URL, when the request must go there; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leader: Option<String>,
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status; [`ErrorCode::http_status`] except for axum's own rejections.
    pub status: StatusCode,
    /// A stable code clients can match on, e.g. `database_not_found`.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The leader's HTTP URL, when the request must be sent there.
    pub leader: Option<String>,
}

impl ApiError {
    /// A 400 `bad_request`.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::of(ErrorCode::BadRequest, msg)
    }

    /// An error with `code` and the status it maps to ([`ErrorCode::http_status`]).
    pub fn of(code: ErrorCode, msg: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, code, msg)
    }

    /// An error with any status and code (axum's rejections keep their own status).
    pub fn new(status: StatusCode, code: ErrorCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: msg.into(),
            leader: None,
        }
    }

    /// A 500 `internal`.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::of(ErrorCode::Internal, msg.to_string())
    }
}

/// The code of a node error.
fn node_code(e: &NodeError) -> ErrorCode {
    use cairn_node::CommandError as C;
    match e {
        NodeError::NotLeader { .. } => ErrorCode::NotLeader,
        NodeError::NoLeader => ErrorCode::NoLeader,
        NodeError::StaleRead { .. } => ErrorCode::StaleRead,
        NodeError::Timeout(_) => ErrorCode::Timeout,
        NodeError::Unavailable(_) => ErrorCode::Unavailable,
        NodeError::Unauthorized => ErrorCode::Unauthorized,
        NodeError::BadRequest(_) => ErrorCode::BadRequest,
        NodeError::NotFound(_) => ErrorCode::NotFound,
        NodeError::Internal(_) => ErrorCode::Internal,
        NodeError::NotApplied(_) => ErrorCode::NotApplied,
        NodeError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
        NodeError::EntryTooLarge { .. } => ErrorCode::EntryTooLarge,
        NodeError::Command(c) => match c {
            C::NoSuchDatabase(_) => ErrorCode::DatabaseNotFound,
            C::DatabaseExists(_) => ErrorCode::DatabaseExists,
            C::BadIdentifier(_) => ErrorCode::BadIdentifier,
            C::Forbidden(_) => ErrorCode::Forbidden,
            C::BadRequest(_) => ErrorCode::BadRequest,
            C::Sql(_) => ErrorCode::SqlError,
            C::Internal(_) => ErrorCode::Internal,
        },
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let mut err = ApiError::of(node_code(&e), e.to_string());
        if let NodeError::NotLeader { leader } = &e {
            err.leader = leader.as_ref().map(|l| l.http_url());
        }
        err
    }
}

impl From<cairn_sql::Error> for ApiError {
    fn from(e: cairn_sql::Error) -> Self {
        ApiError::from(NodeError::from(e))
    }
}

impl From<&cairn_sql::StatementError> for ApiError {
    /// A statement's error answered as a whole request's (REST and seed routes): the finer
    /// code SQLite's result code gives ([`cairn_sql::StatementError::api_code`]).
    fn from(e: &cairn_sql::StatementError) -> Self {
        ApiError::of(e.api_code(), e.message.clone())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code,
            leader: self.leader,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        // For `cairn_errors_total`: the metrics layer reads the code back.
        resp.extensions_mut().insert(self.code);
        // RFC 7235 §3.1: a 401 names the scheme to authenticate with; rqlite's clients
        // and browsers then send HTTP Basic credentials.
        if self.code == ErrorCode::Unauthorized {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"cairn\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}
