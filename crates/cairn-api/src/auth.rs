//! Who may call which route: HTTP Basic authentication against the users of `--auth`,
//! then the route's permission, checked on the node that received the request before
//! anything is forwarded (so a follower never turns a read-only user into a writer: the
//! leader trusts the follower's node-to-node RPC, not the user).
//!
//! [`RULES`] names every route's permission and where its database comes from. The
//! middleware ([`authorize`]) decides what it can from the method, the matched route, the
//! query string and the path; routes whose database is in the JSON body (the seeds'
//! routes, `POST /v1/databases`) are checked by the handler once it knows the database,
//! through [`Flags::authorize`](crate::Flags::authorize), with the [`Identity`] the
//! middleware left in the request's extensions.
//!
//! A request carrying the cluster secret (peers joining, polling `/status` and `/readyz`)
//! is [`Identity::cluster`], which may do only that on the public port.
//!
//! With `--auth`, browsers are refused cross-site requests (`Sec-Fetch-Site` other than
//! `same-origin`/`none`, or an `Origin` that is not the node itself): a browser that cached
//! a user's Basic credentials would otherwise send them along with a form or an image
//! another site plants (`GET /dropdb?name=..` is a seed route), which is cross-site request
//! forgery. Clients other than browsers send neither header. Pages of the origins named by
//! `--cors-origins` ([`Access::with_trusted_origins`]) are let through: the operator trusts
//! those sites.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_auth::{AuthError, Credentials, Identity, Perm, Users};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::flags::Flags;
use crate::ErrorCode;

/// How many argon2 verifications run at once. Each takes tens of milliseconds and the
/// hash's memory (19 MiB with the defaults); a flood of wrong passwords waits here instead
/// of taking every core and gigabytes. Right passwords are verified once, then cached.
const ARGON2_AT_ONCE: usize = 2;

/// How long a login waits for one of the [`ARGON2_AT_ONCE`] slots before it is answered
/// 503 `unavailable` (retry): a flood of wrong passwords is turned away instead of queueing
/// without bound in front of everyone else's.
const ARGON2_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The access policy of one node's public API.
#[derive(Clone)]
pub struct Access {
    users: Option<Arc<Users>>,
    /// SHA-256 of the cluster secret: compared digest to digest, in constant time and
    /// whatever the lengths. `None` (an empty secret): no peer is recognised.
    secret_digest: Option<[u8; 32]>,
    argon2: Arc<Semaphore>,
    /// Origins allowed by `--cors-origins` (lowercase, no trailing `/`): their pages may
    /// send requests with credentials, so they pass the cross-site check. `*` is not
    /// among them: with users, every trusted site is named.
    trusted_origins: Arc<Vec<String>>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// Everyone may do everything (no `--auth`): today's behaviour.
    pub fn open() -> Access {
        Access {
            users: None,
            secret_digest: None,
            argon2: Arc::new(Semaphore::new(ARGON2_AT_ONCE)),
            trusted_origins: Arc::default(),
        }
    }

    /// Only `users` (and peers presenting `cluster_secret`) get in, each as far as their
    /// permissions go. An empty `cluster_secret` (which `cairn-server` refuses anyway)
    /// lets no peer in.
    pub fn users(users: Arc<Users>, cluster_secret: &str) -> Access {
        let secret_digest = (!cluster_secret.is_empty()).then(|| sha256(cluster_secret.as_bytes()));
        Access {
            users: Some(users),
            secret_digest,
            argon2: Arc::new(Semaphore::new(ARGON2_AT_ONCE)),
            trusted_origins: Arc::default(),
        }
    }

    /// Lets browsers on `origins` (the `--cors-origins` list) past the cross-site check
    /// (see the module docs): a request whose `Origin` is one of them is authenticated and
    /// authorized like any other. `*` trusts no site here: with users, a site must be named
    /// to send credentialed requests.
    #[must_use]
    pub fn with_trusted_origins(mut self, origins: &[String]) -> Access {
        self.trusted_origins = Arc::new(
            origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty() && o != "*")
                .collect(),
        );
        self
    }

    /// Whether requests are authenticated.
    pub fn is_enabled(&self) -> bool {
        self.users.is_some()
    }

    /// Who sent a request with these headers.
    ///
    /// # Errors
    /// 401 `unauthorized` (the response adds `WWW-Authenticate`): a wrong cluster secret,
    /// malformed or wrong credentials, or none where `*` is not a user.
    pub async fn identify(&self, headers: &header::HeaderMap) -> Result<Identity, ApiError> {
        let Some(users) = &self.users else {
            return Ok(open().clone());
        };
        if let Some(given) = headers.get(cairn_node::SECRET_HEADER) {
            let ok = self
                .secret_digest
                .is_some_and(|d| bool::from(sha256(given.as_bytes()).ct_eq(&d)));
            return if ok {
                Ok(Identity::cluster())
            } else {
                Err(ApiError::of(
                    ErrorCode::Unauthorized,
                    "missing or wrong cluster secret",
                ))
            };
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return users.anonymous().map_err(unauthorized);
        };
        let creds = Credentials::from_authorization(value.as_bytes()).map_err(unauthorized)?;
        if let Some(outcome) = users.authenticate_fast(&creds) {
            return outcome.map_err(unauthorized);
        }
        let busy = || {
            ApiError::of(
                ErrorCode::Unavailable,
                "too many logins are being verified; retry in a moment",
            )
        };
        let permit = tokio::time::timeout(ARGON2_QUEUE_WAIT, self.argon2.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let users = users.clone();
        // The permit moves into the blocking task: a client that disconnects drops this
        // future, but the slot stays taken until argon2 has finished.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            users.authenticate(&creds)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(unauthorized)
    }
}

/// The identity of every request on a node without `--auth`.
fn open() -> &'static Identity {
    static OPEN: OnceLock<Identity> = OnceLock::new();
    OPEN.get_or_init(Identity::open)
}

fn unauthorized(e: AuthError) -> ApiError {
    ApiError::of(ErrorCode::Unauthorized, e.to_string())
}

/// Where a route's database comes from, for per-database grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A node-wide permission (cluster routes).
    Node,
    /// The `db` query parameter, `main` without one (rqlite's `/db/*`, seed 001).
    QueryDb,
    /// The `{db}` path segment (REST).
    PathDb,
    /// Any database the user holds the permission on (listing databases).
    AnyDb,
    /// The JSON body names it: the middleware lets through users who hold the
    /// permission on some database, and the handler checks the database it uses.
    Handler,
}

/// What a route needs: every permission of `perms`, on the database `scope` finds.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// All are needed (`/db/request` takes `query` and `execute`, as in rqlite).
    pub perms: &'static [Perm],
    /// Where the database comes from.
    pub scope: Scope,
}

const fn need(perms: &'static [Perm], scope: Scope) -> Need {
    Need { perms, scope }
}

use Perm::{Backup, Execute, LeaderOps, Load, Query, Ready, Remove, Schema, Status, Ui};
use Scope::{AnyDb, Handler, Node, PathDb, QueryDb};

/// Every route's need: `(method, route as axum matches it, need)`. A `HEAD` takes its
/// `GET`'s rule. A test checks that every documented route is listed here.
pub const RULES: &[(&str, &str, Need)] = &[
    // rqlite's data API.
    ("POST", "/db/execute", need(&[Execute], QueryDb)),
    ("GET", "/db/query", need(&[Query], QueryDb)),
    ("POST", "/db/query", need(&[Query], QueryDb)),
    ("POST", "/db/request", need(&[Query, Execute], QueryDb)),
    ("GET", "/db/backup", need(&[Backup], QueryDb)),
    ("POST", "/db/load", need(&[Load], QueryDb)),
    // Cluster routes.
    ("GET", "/status", need(&[Status], Node)),
    ("GET", "/nodes", need(&[Status], Node)),
    ("GET", "/readyz", need(&[Ready], Node)),
    ("GET", "/metrics", need(&[Status], Node)),
    ("GET", "/leader", need(&[Status], Node)),
    ("POST", "/leader", need(&[LeaderOps], Node)),
    ("DELETE", "/remove", need(&[Remove], Node)),
    ("POST", "/join", need(&[Perm::Join], Node)),
    ("GET", "/v1/openapi.json", need(&[Ui], Node)),
    // Databases, tables and rows.
    ("GET", "/v1/databases", need(&[Query], AnyDb)),
    ("POST", "/v1/databases", need(&[Schema], Handler)),
    ("GET", "/v1/databases/{db}", need(&[Query], PathDb)),
    ("DELETE", "/v1/databases/{db}", need(&[Schema], PathDb)),
    ("POST", "/v1/databases/{db}/tables", need(&[Schema], PathDb)),
    ("GET", "/v1/databases/{db}/tables", need(&[Query], PathDb)),
    (
        "GET",
        "/v1/databases/{db}/tables/{table}",
        need(&[Query], PathDb),
    ),
    (
        "DELETE",
        "/v1/databases/{db}/tables/{table}",
        need(&[Schema], PathDb),
    ),
    (
        "PATCH",
        "/v1/databases/{db}/tables/{table}",
        need(&[Schema], PathDb),
    ),
    (
        "POST",
        "/v1/databases/{db}/tables/{table}/rows",
        need(&[Execute], PathDb),
    ),
    (
        "GET",
        "/v1/databases/{db}/tables/{table}/rows",
        need(&[Query], PathDb),
    ),
    (
        "PATCH",
        "/v1/databases/{db}/tables/{table}/rows",
        need(&[Execute], PathDb),
    ),
    (
        "DELETE",
        "/v1/databases/{db}/tables/{table}/rows",
        need(&[Execute], PathDb),
    ),
    (
        "GET",
        "/v1/databases/{db}/tables/{table}/aggregate",
        need(&[Query], PathDb),
    ),
    // The seeds' routes.
    ("POST", "/create_table", need(&[Schema], QueryDb)),
    ("POST", "/insert", need(&[Execute], Handler)),
    ("GET", "/search", need(&[Query], QueryDb)),
    ("GET", "/ping", need(&[Ready], Node)),
    ("GET", "/createdb", need(&[Schema], Handler)),
    ("POST", "/createdb", need(&[Schema], Handler)),
    ("GET", "/dropdb", need(&[Schema], Handler)),
    ("POST", "/dropdb", need(&[Schema], Handler)),
    ("POST", "/createtable", need(&[Schema], Handler)),
    ("GET", "/select", need(&[Query], Handler)),
    ("POST", "/select", need(&[Query], Handler)),
    ("POST", "/update", need(&[Execute], Handler)),
    ("POST", "/delete", need(&[Execute], Handler)),
    ("POST", "/create-db", need(&[Schema], Handler)),
    ("POST", "/drop-db", need(&[Schema], Handler)),
    ("POST", "/create-table", need(&[Schema], Handler)),
    ("POST", "/delete-table", need(&[Schema], Handler)),
    ("GET", "/metadata", need(&[Status], Node)),
    ("GET", "/health", need(&[Ready], Node)),
    ("POST", "/map-reduce-count", need(&[Query], Handler)),
    ("POST", "/security-check", need(&[Status], Node)),
];

/// The rule for `method` on `route`, if any.
pub fn rule(method: &Method, route: &str) -> Option<Need> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    RULES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, n)| *n)
}

/// Whether `who` may do what `perm` allows on `db`, as an API error when not: 401 for an
/// anonymous request (credentials might help), 403 `permission_denied` for a user.
pub fn check(who: &Identity, perm: Perm, db: Option<&str>) -> Result<(), ApiError> {
    if who.allows(perm, db) {
        return Ok(());
    }
    Err(denied(who, perm, db))
}

fn denied(who: &Identity, perm: Perm, db: Option<&str>) -> ApiError {
    let on = db
        .filter(|_| perm.is_per_database())
        .map(|d| format!(" on database {d:?}"))
        .unwrap_or_default();
    if who.is_anonymous() {
        return ApiError::of(
            ErrorCode::Unauthorized,
            format!(
                "authentication required: anonymous requests lack the {perm:?} permission{on}",
                perm = perm.name()
            ),
        );
    }
    ApiError::of(
        ErrorCode::PermissionDenied,
        format!(
            "user {:?} lacks the {:?} permission{on}",
            who.name(),
            perm.name()
        ),
    )
}

/// The middleware: identifies the caller, checks the route's [`Need`] as far as the
/// request's head tells, and leaves the [`Identity`] in the extensions for handlers.
/// Without `--auth` it changes nothing.
///
/// The web console's assets ([`console::ROUTES`](crate::console::ROUTES)) need nothing:
/// they hold no data, like a login page. A 401 answered to one of the console's own API
/// calls ([`console::REQUEST_HEADER`](crate::console::REQUEST_HEADER)) has no
/// `WWW-Authenticate`, so the browser leaves asking for credentials to the page.
pub async fn authorize(State(access): State<Access>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>();
    if route.is_some_and(|r| crate::console::ROUTES.contains(&r.as_str())) {
        return next.run(request).await;
    }
    let from_console = request
        .headers()
        .contains_key(crate::console::REQUEST_HEADER);
    let mut resp = authorize_route(access, request, next).await;
    if from_console {
        resp.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    resp
}

async fn authorize_route(access: Access, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if !access.is_enabled() {
        parts.extensions.insert(open().clone());
        return next.run(Request::from_parts(parts, body)).await;
    }
    if let Err(e) = same_origin(&parts.headers, &access.trusted_origins) {
        return e.into_response();
    }
    let who = match access.identify(&parts.headers).await {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    if let Some(route) = route {
        match rule(&parts.method, &route) {
            Some(need) => {
                if let Err(e) = check_need(&who, need, &mut parts).await {
                    return e.into_response();
                }
            }
            // Another method of a known route: the answer is 405.
            None if RULES.iter().any(|(_, r, _)| *r == route) => {}
            // A route served without a rule: fail closed.
            None => {
                return ApiError::of(
                    ErrorCode::Internal,
                    format!("{route} has no permission rule"),
                )
                .into_response()
            }
        }
    }
    // No matched route: the answer is 404 and no handler runs.
    parts.extensions.insert(who);
    next.run(Request::from_parts(parts, body)).await
}

/// Refuses what a browser sends on another site's behalf (see the module docs), unless the
/// request's `Origin` is one of `trusted` (`--cors-origins`).
fn same_origin(headers: &header::HeaderMap, trusted: &[String]) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if trusted.iter().any(|t| t.eq_ignore_ascii_case(origin)) {
            return Ok(());
        }
    }
    let cross = |what: String| {
        ApiError::of(
            ErrorCode::Forbidden,
            format!("cross-site browser requests are refused while --auth is on ({what})"),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Err(cross(format!("Sec-Fetch-Site: {site}")));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(cross(format!("Origin: {origin}")));
        }
    }
    Ok(())
}

async fn check_need(
    who: &Identity,
    need: Need,
    parts: &mut axum::http::request::Parts,
) -> Result<(), ApiError> {
    for &perm in need.perms {
        if who.allows_everywhere(perm) {
            continue;
        }
        match need.scope {
            Scope::Node => check(who, perm, None)?,
            Scope::AnyDb | Scope::Handler => {
                if !who.allows_somewhere(perm) {
                    return Err(denied(who, perm, None));
                }
            }
            Scope::QueryDb => {
                // The same parser the handler uses, so both see the same database.
                let flags = Flags::from_request_parts(parts, &())
                    .await
                    .map_err(|_| ApiError::bad_request("malformed query string"))?;
                check(who, perm, Some(&flags.db))?;
            }
            Scope::PathDb => {
                let Path(params) =
                    Path::<std::collections::HashMap<String, String>>::from_request_parts(
                        parts,
                        &(),
                    )
                    .await
                    .map_err(|_| ApiError::bad_request("malformed path"))?;
                let db = params.get("db").map(String::as_str);
                check(who, perm, db)?;
            }
        }
    }
    Ok(())
}
