//! rqlite's query-string flags (<https://rqlite.io/docs/api/api/>): most are presence-only
//! (`?pretty`, and `transaction=false` still means "transaction"), a few carry values.

use std::time::Duration;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_node::Level;

use crate::error::ApiError;

/// Parsed query-string flags of one request.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Indent the JSON response.
    pub pretty: bool,
    /// Report per-statement and total times.
    pub timings: bool,
    /// Run the batch atomically; stop at the first error.
    pub transaction: bool,
    /// Rows as objects keyed by column name.
    pub associative: bool,
    /// BLOBs as byte arrays.
    pub blob_array: bool,
    /// On a follower, answer 301 to the leader instead of forwarding.
    pub redirect: bool,
    /// Queue writes and answer at once with a sequence number.
    pub queue: bool,
    /// With `queue`: wait until the queued batch is applied.
    pub wait: bool,
    /// `/readyz`: do not require a leader.
    pub noleader: bool,
    /// `/readyz`: wait until this node has applied what the leader committed.
    pub sync: bool,
    /// Read consistency level; rqlite's default is `weak`.
    pub level: Level,
    /// For `level=none`: the longest time since the node last heard from the leader.
    pub freshness: Option<Duration>,
    /// How long to wait for the leader, a queue flush or `/readyz?sync`.
    pub timeout: Duration,
    /// The database to use (`db=NAME`); `main` by default.
    pub db: String,
    /// Statements given as `q=` (GET `/db/query`).
    pub q: Vec<String>,
    /// `/db/backup` format: `sql` for a text dump.
    pub fmt: Option<String>,
    /// `/nodes?ver=2`.
    pub ver: Option<String>,
    /// `/nodes?nonvoters`: list non-voting members too (rqlite lists only voters without it).
    pub nonvoters: bool,
    /// Every decoded query-string pair, in order, flags included: the REST routes read
    /// their filters and options from it, the seed routes their fields.
    pub pairs: Vec<(String, String)>,
    /// Who sent the request, as the auth middleware found ([`cairn_auth::Identity::open`]
    /// without `--auth`; `None` only outside the router).
    pub identity: Option<cairn_auth::Identity>,
}

/// Flags are extracted from the query string of every request: a malformed query string is
/// axum's own 400 (made JSON `bad_request` by the router), a bad flag value 400
/// `bad_request` from [`Flags::parse`].
impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut flags = Flags::parse(&pairs).map_err(IntoResponse::into_response)?;
        flags.identity = parts.extensions.get::<cairn_auth::Identity>().cloned();
        Ok(flags)
    }
}

/// Default for `timeout`: rqlite uses 10 s for leader-dependent waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Flags {
    /// Parses `pairs` (the decoded query string).
    ///
    /// # Errors
    /// 400 `bad_request` for an unknown `level` or a malformed duration.
    pub fn parse(pairs: &[(String, String)]) -> Result<Flags, ApiError> {
        let mut f = Flags {
            timeout: DEFAULT_TIMEOUT,
            db: cairn_sql::DEFAULT_DATABASE.to_string(),
            ..Flags::default()
        };
        for (k, v) in pairs {
            match k.as_str() {
                "pretty" => f.pretty = true,
                "timings" => f.timings = true,
                "transaction" => f.transaction = true,
                "associative" => f.associative = true,
                "blob_array" => f.blob_array = true,
                "redirect" => f.redirect = true,
                "queue" => f.queue = true,
                "wait" => f.wait = true,
                "noleader" => f.noleader = true,
                "sync" => f.sync = true,
                "nonvoters" => f.nonvoters = true,
                "level" => {
                    f.level = v.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "unknown level {v:?}: use none, weak, linearizable, strong or auto"
                        ))
                    })?
                }
                "freshness" => f.freshness = Some(duration(k, v)?),
                "timeout" => f.timeout = duration(k, v)?,
                "db" => f.db = v.clone(),
                "q" => f.q.push(v.clone()),
                "fmt" => f.fmt = Some(v.clone()),
                "ver" => f.ver = Some(v.clone()),
                _ => {}
            }
        }
        f.pairs = pairs.to_vec();
        Ok(f)
    }

    /// A JSON response with `status`, indented when the request said `pretty`: the one place
    /// where every handler's output is formatted.
    pub fn json(&self, status: StatusCode, body: &impl serde::Serialize) -> Response {
        crate::json_response(status, body, self.pretty)
    }

    /// Whether the caller may use `perm` on database `db`: for routes whose database is in
    /// the body, which only the handler reads (see `crate::auth`). Always `Ok` without
    /// `--auth`.
    ///
    /// # Errors
    /// 401 `unauthorized` for an anonymous request, 403 `permission_denied` for a user.
    pub fn authorize(&self, perm: cairn_auth::Perm, db: &str) -> Result<(), ApiError> {
        match &self.identity {
            Some(who) => crate::auth::check(who, perm, Some(db)),
            // The middleware leaves an identity on every request it lets through, also
            // without `--auth`: none means a route outside it, so fail closed.
            None => Err(ApiError::of(
                cairn_sql::ErrorCode::Internal,
                "no identity: the route is not behind the auth middleware",
            )),
        }
    }

    /// How results are rendered.
    pub fn encoding(&self) -> cairn_sql::Encoding {
        cairn_sql::Encoding {
            associative: self.associative,
            blob_array: self.blob_array,
            timings: self.timings,
        }
    }
}

/// Longest duration any flag may ask for (`timeout`, `freshness`, `/readyz?sync`): longer
/// values are capped to it, so that `Instant::now() + timeout` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Parses a Go-style duration (`1s`, `500ms`, `2m`), or a bare number of seconds (`1.5`,
/// `1e3`), capped at [`MAX_DURATION`].
///
/// # Errors
/// 400 `bad_request` for text that is neither, and for negative, infinite or NaN numbers.
fn duration(k: &str, v: &str) -> Result<Duration, ApiError> {
    let bad = |why: &dyn std::fmt::Display| {
        ApiError::bad_request(format!("{k}={v:?} is not a duration: {why}"))
    };
    let d = match v.trim().parse::<f64>() {
        Ok(secs) if secs.is_nan() || secs < 0.0 || secs.is_infinite() => {
            return Err(bad(
                &"give a finite, non-negative number of seconds or e.g. 5s",
            ))
        }
        // Capped before the conversion: `Duration::from_secs_f64` panics above u64::MAX s.
        Ok(secs) => Duration::try_from_secs_f64(secs.min(MAX_DURATION.as_secs_f64()))
            .map_err(|e| bad(&e))?,
        Err(_) => humantime::parse_duration(v).map_err(|e| bad(&e))?,
    };
    Ok(d.min(MAX_DURATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[(&str, &str)]) -> Result<Flags, ApiError> {
        let pairs: Vec<(String, String)> = s
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Flags::parse(&pairs)
    }

    #[test]
    fn presence_only_flags() {
        let f = p(&[("transaction", "false"), ("pretty", "")]).expect("valid");
        assert!(f.transaction && f.pretty && !f.timings);
        assert_eq!(f.db, "main");
        assert_eq!(f.level, Level::Weak);
    }

    #[test]
    fn valued_flags() {
        let f = p(&[
            ("level", "LINEARIZABLE"),
            ("freshness", "1s"),
            ("timeout", "250ms"),
        ])
        .expect("valid");
        assert_eq!(f.level, Level::Linearizable);
        assert_eq!(f.freshness, Some(Duration::from_secs(1)));
        assert_eq!(f.timeout, Duration::from_millis(250));
        assert!(p(&[("level", "eventual")]).is_err());
        assert!(p(&[("freshness", "soon")]).is_err());
    }

    /// Regression (issue 7, item 10): `timeout=1e19` panicked in `Duration::from_secs_f64`.
    #[test]
    fn huge_durations_are_capped_and_garbage_refused() {
        for v in [
            "1e19",
            "1e30",
            "1e308",
            "18446744073709551616",
            "99999999999999h",
        ] {
            for k in ["timeout", "freshness"] {
                let f = p(&[(k, v)]).unwrap_or_else(|e| panic!("{k}={v}: {}", e.message));
                let d = if k == "timeout" {
                    f.timeout
                } else {
                    f.freshness.unwrap_or_default()
                };
                assert_eq!(d, MAX_DURATION, "{k}={v}");
            }
        }
        for v in [
            "-1",
            "-0.5",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "",
            "1e",
            "5 parsecs",
            "-5s",
        ] {
            let e = p(&[("timeout", v)]).expect_err(v);
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, cairn_sql::ErrorCode::BadRequest),
                "timeout={v}"
            );
        }
        assert_eq!(
            p(&[("timeout", "0.25")]).expect("valid").timeout,
            Duration::from_millis(250)
        );
        assert_eq!(
            p(&[("timeout", "2m")]).expect("valid").timeout,
            Duration::from_secs(120)
        );
    }
}
