//! API errors: an HTTP status, a stable machine-readable `code`, and a human message,
//! rendered as `{"error": "...", "code": "..."}` (plus `"leader"` when the request must go
//! to the leader).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_node::NodeError;

/// The JSON body of every error, as documented in the OpenAPI description.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// A stable code to match on, e.g. `database_not_found`.
    pub code: String,
    /// The leader's HTTP URL, when the request must go there.
    pub leader: Option<String>,
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code clients can match on, e.g. `database_not_found`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The leader's HTTP URL, when the request must be sent there.
    pub leader: Option<String>,
}

impl ApiError {
    /// A 400 `bad_request`.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", msg)
    }

    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: msg.into(),
            leader: None,
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        use cairn_node::CommandError as C;
        let msg = e.to_string();
        let (status, code) = match &e {
            NodeError::NotLeader { leader } => {
                return ApiError {
                    status: StatusCode::FORBIDDEN,
                    code: "not_leader",
                    message: msg,
                    leader: leader.as_ref().map(|l| l.http_url()),
                }
            }
            NodeError::NoLeader => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            NodeError::StaleRead { .. } => (StatusCode::SERVICE_UNAVAILABLE, "stale_read"),
            NodeError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            NodeError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            NodeError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            NodeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            NodeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            NodeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            NodeError::NotApplied(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_applied"),
            NodeError::OutcomeUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
            NodeError::EntryTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "entry_too_large"),
            NodeError::Command(c) => match c {
                C::NoSuchDatabase(_) => (StatusCode::NOT_FOUND, "database_not_found"),
                C::DatabaseExists(_) => (StatusCode::CONFLICT, "database_exists"),
                C::BadIdentifier(_) => (StatusCode::BAD_REQUEST, "bad_identifier"),
                C::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                C::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                C::Sql(_) => (StatusCode::BAD_REQUEST, "sql_error"),
                C::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
        };
        ApiError::new(status, code, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": self.message, "code": self.code});
        if let Some(l) = self.leader {
            body["leader"] = l.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}
