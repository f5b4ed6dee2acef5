//! Every stable error code Cairn answers, in one enum: the codes of a statement's slot in
//! `results` and the codes of whole-request errors (`{"error": ..., "code": ...}`).
//!
//! It lives here, in the lowest crate, because statement results carry it through the Raft
//! log's responses; `cairn-raft`, `cairn-node` and `cairn-api` re-use it. README.md's
//! "Error codes" table lists the same codes (a test in `cairn-api` compares the two).

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code, serialized as its `snake_case` name
/// (`ErrorCode::DatabaseNotFound` is `"database_not_found"`).
///
/// # Compatibility
/// Statement results (and so the first seven variants) cross the wire between nodes in
/// postcard, which numbers variants: new variants go last, and none is reordered. Results
/// remembered for an `Idempotency-Key` are stored as JSON and may have been written with the
/// variants' former names (`"SqlError"`); each statement code accepts that name as an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// SQLite's own error for a statement (syntax, constraint, no such table, value too
    /// big...), in its slot of `results` (HTTP 200 on `/db/*`). The REST routes answer a
    /// finer code when SQLite's result code gives one ([`crate::StatementError::api_code`]).
    /// The statement changed nothing.
    #[serde(alias = "SqlError")]
    SqlError,
    /// The sandbox refused the statement (ATTACH, TEMP objects, a PRAGMA that is not
    /// allowed, Cairn's own tables...). The statement changed nothing.
    #[serde(alias = "NotAuthorized")]
    NotAuthorized,
    /// A statement on the apply path exceeded the deterministic work budget, on every
    /// replica alike. The statement changed nothing.
    #[serde(alias = "BudgetExceeded")]
    BudgetExceeded,
    /// A read exceeded its deadline (the `timeout` flag). Changed nothing.
    #[serde(alias = "QueryTimeout")]
    QueryTimeout,
    /// A read's rows exceed the response size limit (`MAX_RESULT_BYTES`). Changed nothing.
    #[serde(alias = "ResultTooLarge")]
    ResultTooLarge,
    /// One string held several statements; send them as separate statements. Changed
    /// nothing.
    #[serde(alias = "MultipleStatements")]
    MultipleStatements,
    /// A parameter that does not match the statement's placeholders. Changed nothing.
    #[serde(alias = "BadParameter")]
    BadParameter,
    // Whole-request codes. New variants go last (see # Compatibility).
    /// A malformed request: bad JSON, a bad flag value, an unknown consistency level, a
    /// negative limit, an empty batch; also axum's own 4xx rejections (which keep their
    /// status). Nothing changed.
    BadRequest,
    /// A database, table or column name that is not letters, digits and underscores.
    /// Nothing changed.
    BadIdentifier,
    /// A seed-004 `condition` that does not parse or uses something outside the allowed
    /// subset (columns, literals, comparisons, AND/OR/NOT, IN, LIKE, BETWEEN, IS NULL).
    /// Nothing changed.
    BadCondition,
    /// A required field of a seed route's body (or query string) is missing. Nothing changed.
    MissingField,
    /// An UPDATE or DELETE without a filter (or condition), and without `all=true`. Nothing
    /// changed.
    FilterRequired,
    /// No credentials where the node requires them (`--auth`, and no `*` user), wrong or
    /// malformed credentials, or a missing or wrong cluster secret. The answer carries
    /// `WWW-Authenticate: Basic`. Nothing changed.
    Unauthorized,
    /// The operation is not allowed (e.g. dropping `main`). Nothing changed.
    Forbidden,
    /// The authenticated user lacks the permission the route needs (on the database it
    /// names, for per-database grants). Checked on the node that received the request,
    /// before anything was forwarded. Nothing changed.
    PermissionDenied,
    /// The operation is the leader's alone and this node is not the leader; the body's
    /// `leader` names it when known. Nothing was forwarded or changed.
    NotLeader,
    /// No route has this path. Nothing changed.
    NoRoute,
    /// Something the request named does not exist (e.g. a node id). Nothing changed.
    NotFound,
    /// The database does not exist. Nothing changed (also for `?queue`: checked before
    /// queuing).
    DatabaseNotFound,
    /// A REST or seed route named a table that does not exist. Nothing changed.
    TableNotFound,
    /// A REST or seed route named a column that does not exist. Nothing changed.
    ColumnNotFound,
    /// The route exists, the method does not. Nothing changed.
    MethodNotAllowed,
    /// `POST /v1/databases` (or a seed's create) of a database that exists. Nothing changed.
    DatabaseExists,
    /// A REST or seed create of a table (or column, index) that exists. Nothing changed.
    AlreadyExists,
    /// A REST or seed write broke a constraint (UNIQUE, NOT NULL, CHECK, PRIMARY KEY,
    /// FOREIGN KEY); its batch was rolled back whole. Nothing changed.
    ConstraintViolation,
    /// The body is over `cairn_api::MAX_BODY_BYTES` (32 MiB) and was refused unread.
    /// Nothing changed.
    PayloadTooLarge,
    /// The write encodes to more than one log entry may hold (16 MiB); refused before
    /// proposing. Nothing changed.
    EntryTooLarge,
    /// axum refused the request's content type. Nothing changed.
    UnsupportedMediaType,
    /// A failure inside the node (I/O, a bug), or axum's own 5xx rejection. A write may or
    /// may not have been applied.
    Internal,
    /// No leader is known (an election is under way, or there is no quorum). A write was
    /// certainly not applied; retry as is.
    NoLeader,
    /// A `level=none` read with `freshness` on a node that has not heard from the leader
    /// recently enough. A read: nothing changed.
    StaleRead,
    /// A peer could not be reached for a read or a status request. Nothing changed.
    Unavailable,
    /// A write that no leader took (connection refused, or the leader answered that it no
    /// longer leads before proposing). Certainly not applied; retry as is.
    NotApplied,
    /// A write reached the leader (or was proposed) and the answer was lost. It may have
    /// been applied, or may still be: retry with the same `Idempotency-Key`, or read.
    OutcomeUnknown,
    /// The operation did not finish within its `timeout` (waiting for a queued write, for
    /// `/readyz?sync`, for a leadership transfer). What it waited for may still happen.
    Timeout,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::SqlError,
        ErrorCode::NotAuthorized,
        ErrorCode::BudgetExceeded,
        ErrorCode::QueryTimeout,
        ErrorCode::ResultTooLarge,
        ErrorCode::MultipleStatements,
        ErrorCode::BadParameter,
        ErrorCode::BadRequest,
        ErrorCode::BadIdentifier,
        ErrorCode::BadCondition,
        ErrorCode::MissingField,
        ErrorCode::FilterRequired,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::PermissionDenied,
        ErrorCode::NotLeader,
        ErrorCode::NoRoute,
        ErrorCode::NotFound,
        ErrorCode::DatabaseNotFound,
        ErrorCode::TableNotFound,
        ErrorCode::ColumnNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::DatabaseExists,
        ErrorCode::AlreadyExists,
        ErrorCode::ConstraintViolation,
        ErrorCode::PayloadTooLarge,
        ErrorCode::EntryTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Internal,
        ErrorCode::NoLeader,
        ErrorCode::StaleRead,
        ErrorCode::Unavailable,
        ErrorCode::NotApplied,
        ErrorCode::OutcomeUnknown,
        ErrorCode::Timeout,
    ];

    /// The code's wire name, e.g. `not_authorized` (the same string serde writes).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SqlError => "sql_error",
            ErrorCode::NotAuthorized => "not_authorized",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::QueryTimeout => "query_timeout",
            ErrorCode::ResultTooLarge => "result_too_large",
            ErrorCode::MultipleStatements => "multiple_statements",
            ErrorCode::BadParameter => "bad_parameter",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadIdentifier => "bad_identifier",
            ErrorCode::BadCondition => "bad_condition",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::FilterRequired => "filter_required",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::NotFound => "not_found",
            ErrorCode::DatabaseNotFound => "database_not_found",
            ErrorCode::TableNotFound => "table_not_found",
            ErrorCode::ColumnNotFound => "column_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::DatabaseExists => "database_exists",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::ConstraintViolation => "constraint_violation",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::EntryTooLarge => "entry_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Internal => "internal",
            ErrorCode::NoLeader => "no_leader",
            ErrorCode::StaleRead => "stale_read",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotApplied => "not_applied",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::Timeout => "timeout",
        }
    }

    /// The HTTP status a whole-request error with this code is answered with. A statement
    /// code in a `/db/*` result slot comes with HTTP 200; the REST and seed routes answer it
    /// with this status. `bad_request` and `internal` made from axum's own rejections keep
    /// the rejection's status (another 4xx, or 5xx).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::SqlError
            | ErrorCode::BudgetExceeded
            | ErrorCode::MultipleStatements
            | ErrorCode::BadParameter
            | ErrorCode::BadRequest
            | ErrorCode::BadIdentifier
            | ErrorCode::BadCondition
            | ErrorCode::MissingField
            | ErrorCode::FilterRequired => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotAuthorized
            | ErrorCode::Forbidden
            | ErrorCode::PermissionDenied
            | ErrorCode::NotLeader => 403,
            ErrorCode::NoRoute
            | ErrorCode::NotFound
            | ErrorCode::DatabaseNotFound
            | ErrorCode::TableNotFound
            | ErrorCode::ColumnNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::DatabaseExists
            | ErrorCode::AlreadyExists
            | ErrorCode::ConstraintViolation => 409,
            ErrorCode::ResultTooLarge | ErrorCode::PayloadTooLarge | ErrorCode::EntryTooLarge => {
                413
            }
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal => 500,
            ErrorCode::NoLeader
            | ErrorCode::StaleRead
            | ErrorCode::Unavailable
            | ErrorCode::NotApplied
            | ErrorCode::OutcomeUnknown => 503,
            ErrorCode::QueryTimeout | ErrorCode::Timeout => 504,
        }
    }

    /// Whether a request answered with this code certainly changed nothing (see each
    /// variant). `false` for `outcome_unknown`, `timeout` and `internal`.
    pub fn certainly_changed_nothing(self) -> bool {
        !matches!(
            self,
            ErrorCode::OutcomeUnknown | ErrorCode::Timeout | ErrorCode::Internal
        )
    }

    /// The finer code of an SQLite statement error, from SQLite's extended result code
    /// (`sqlite3_extended_errcode`) and, only where that cannot tell, its message.
    ///
    /// A violated declared constraint (`SQLITE_CONSTRAINT` itself and its `_UNIQUE`,
    /// `_PRIMARYKEY`, `_NOTNULL`, `_CHECK`, `_FOREIGNKEY` and `_ROWID` extended codes, the
    /// errors SQLite words "... constraint failed") is [`ErrorCode::ConstraintViolation`].
    /// The other `SQLITE_CONSTRAINT_*` codes stay `sql_error`, as they always answered: a
    /// trigger's `RAISE` (`_TRIGGER`), a STRICT table's type check (`_DATATYPE`), and
    /// `_FUNCTION`, `_VTAB`, `_COMMITHOOK`, `_PINNED`.
    ///
    /// "no such table", "no such column", "table ... has no column named" and "... already
    /// exists" are raised while the statement compiles, and SQLite reports all of them with
    /// plain `SQLITE_ERROR` (1), with no extended code to tell them apart: for that code
    /// alone the message (SQLite's own, stable for decades) is inspected, as a last resort.
    /// A result without a code (recorded by an older node, replayed for an idempotency key
    /// or forwarded from one) is read by its message alone, as older nodes did, so its
    /// answer does not change. Anything else is [`ErrorCode::SqlError`].
    pub fn from_sqlite(extended_code: Option<i32>, message: &str) -> ErrorCode {
        /// `SQLITE_ERROR`, the primary result code of every compile-time error.
        const SQLITE_ERROR: i32 = 1;
        /// `SQLITE_CONSTRAINT` and the extended codes of declared constraints: `_CHECK`,
        /// `_FOREIGNKEY`, `_NOTNULL`, `_PRIMARYKEY`, `_UNIQUE`, `_ROWID` (sqlite3.h).
        const DECLARED_CONSTRAINTS: [i32; 7] = [19, 275, 787, 1299, 1555, 2067, 2579];
        if extended_code.is_some_and(|c| DECLARED_CONSTRAINTS.contains(&c)) {
            return ErrorCode::ConstraintViolation;
        }
        match extended_code {
            Some(SQLITE_ERROR) if message.starts_with("no such table") => ErrorCode::TableNotFound,
            Some(SQLITE_ERROR)
                if message.contains("no such column")
                    || message.contains("has no column named") =>
            {
                ErrorCode::ColumnNotFound
            }
            Some(SQLITE_ERROR) if message.contains("already exists") => ErrorCode::AlreadyExists,
            None if message.starts_with("no such table") => ErrorCode::TableNotFound,
            None if message.contains("no such column")
                || message.contains("has no column named") =>
            {
                ErrorCode::ColumnNotFound
            }
            None if message.contains("already exists") => ErrorCode::AlreadyExists,
            None if message.contains("constraint failed") => ErrorCode::ConstraintViolation,
            _ => ErrorCode::SqlError,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_is_as_str_and_all_is_complete() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let json = serde_json::to_value(c).expect("serializes");
            assert_eq!(json, serde_json::Value::from(c.as_str()));
            let back: ErrorCode = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, *c);
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
        // The last variant's postcard index is the count minus one: nothing is missing
        // from ALL (a variant left out would leave a gap in the numbering).
        assert_eq!(ErrorCode::Timeout as usize + 1, ErrorCode::ALL.len());
    }

    #[test]
    fn former_names_of_statement_codes_still_read() {
        let c: ErrorCode = serde_json::from_str("\"SqlError\"").expect("alias");
        assert_eq!(c, ErrorCode::SqlError);
        let c: ErrorCode = serde_json::from_str("\"NotAuthorized\"").expect("alias");
        assert_eq!(c, ErrorCode::NotAuthorized);
    }

    #[test]
    fn sqlite_codes_refine_sql_errors() {
        // SQLITE_CONSTRAINT_UNIQUE, _NOTNULL, _PRIMARYKEY, _CHECK, _FOREIGNKEY
        for ext in [2067, 1299, 1555, 275, 787] {
            assert_eq!(
                ErrorCode::from_sqlite(Some(ext), "whatever"),
                ErrorCode::ConstraintViolation
            );
        }
        // A trigger's RAISE and a STRICT type check were never constraint_violation.
        for ext in [1811, 3091] {
            assert_eq!(
                ErrorCode::from_sqlite(Some(ext), "whatever"),
                ErrorCode::SqlError
            );
        }
        assert_eq!(
            ErrorCode::from_sqlite(Some(1), "no such table: t"),
            ErrorCode::TableNotFound
        );
        assert_eq!(
            ErrorCode::from_sqlite(Some(1), "table t has no column named x"),
            ErrorCode::ColumnNotFound
        );
        assert_eq!(
            ErrorCode::from_sqlite(Some(1), "table t already exists"),
            ErrorCode::AlreadyExists
        );
        // The message alone decides nothing: another result code keeps sql_error.
        assert_eq!(
            ErrorCode::from_sqlite(Some(18), "no such table: t"),
            ErrorCode::SqlError
        );
        // A result without a code (from an older node) is read by its message, as
        // older nodes read it.
        assert_eq!(
            ErrorCode::from_sqlite(None, "UNIQUE constraint failed: t.x"),
            ErrorCode::ConstraintViolation
        );
        assert_eq!(
            ErrorCode::from_sqlite(None, "no such table: t"),
            ErrorCode::TableNotFound
        );
        assert_eq!(
            ErrorCode::from_sqlite(None, "near \"x\": syntax error"),
            ErrorCode::SqlError
        );
    }
}
