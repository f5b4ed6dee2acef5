//! The auth matrix at the handler level: every route of [`RULES`], called anonymously, with
//! a wrong password, with a malformed header, by a user lacking the route's permission
//! (node-wide, and on another database), by a user holding it (node-wide, and on the
//! request's database only), and with the cluster secret. Refusals are 401 (with
//! `WWW-Authenticate`) or 403 `permission_denied`, and the fake node is never asked
//! anything: a refused request changes nothing.

use std::sync::Arc;

use axum::http::StatusCode;
use cairn_auth::{Perm, Users};

use crate::auth::{Scope, RULES};
use crate::handler_tests::{call_as, leader, Answer};
use crate::Access;

const SECRET: &str = "cluster-secret";

fn basic(user: &str, pass: &str) -> String {
    cairn_auth::Credentials::new(user, pass).authorization()
}

/// The URI and body of a request to `route` that names database `school` every way a
/// route may read it (path, `db=`, body fields), and table `t`.
fn request_for(method: &str, route: &str) -> (String, String) {
    let mut uri = route
        .replace("{db}", "school")
        .replace("{table}", "t")
        .to_string();
    uri.push_str("?db=school&name=school");
    if route == "/db/query" && method == "GET" {
        uri.push_str("&q=SELECT+1");
    }
    let body = match route {
        "/db/execute" | "/db/request" => r#"["INSERT INTO t VALUES (1)"]"#.to_string(),
        "/db/query" if method == "POST" => r#"["SELECT 1"]"#.to_string(),
        "/db/load" => "CREATE TABLE x (a);".to_string(),
        "/join" => {
            r#"{"id": 9, "http_addr": "10.0.0.9:4001", "raft_addr": "10.0.0.9:4002"}"#.to_string()
        }
        "/remove" => r#"{"id": 3}"#.to_string(),
        _ => serde_json::json!({
            "name": "school", "db_name": "school", "db": "school", "table": "t",
            "table_name": "t", "data": {"a": 1}, "columns": "a INT", "condition": "a = 1",
            "where": {"a": 1}, "set": {"a": 2}, "rows": [{"a": 1}],
        })
        .to_string(),
    };
    (uri, body)
}

fn names(perms: &[Perm]) -> Vec<&'static str> {
    perms.iter().map(|p| p.name()).collect()
}

/// An auth file with the users the matrix needs for a route that takes `needed`.
fn users_for(needed: &[Perm]) -> Arc<Users> {
    let others: Vec<&str> = Perm::ALL
        .iter()
        .filter(|p| **p != Perm::All && !needed.contains(p))
        .map(|p| p.name())
        .collect();
    let per_db: Vec<&str> = names(needed)
        .into_iter()
        .filter(|n| Perm::from_name(n).is_some_and(Perm::is_per_database))
        .collect();
    let file = serde_json::json!([
        {"username": "lacking", "password": "pw", "perms": others},
        {"username": "holder", "password": "pw", "perms": names(needed)},
        {"username": "elsewhere", "password": "pw", "perms": [{"db": "other", "perms": per_db}]},
        {"username": "school_only", "password": "pw", "perms": [{"db": "school", "perms": per_db}]},
    ]);
    Arc::new(Users::from_json(&file.to_string()).expect("a valid auth file"))
}

async fn send(
    access: &Access,
    method: &str,
    route: &str,
    headers: &[(&str, &str)],
) -> (Answer, Vec<String>) {
    let fake = Arc::new(leader());
    let (uri, body) = request_for(method, route);
    let headers: Vec<(&str, &str)> = [("content-type", "application/json")]
        .into_iter()
        .chain(headers.iter().copied())
        .collect();
    let answer = call_as(fake.clone(), access.clone(), method, &uri, &body, &headers).await;
    let calls = fake.calls();
    (answer, calls)
}

fn refused(what: &str, answer: &Answer, calls: &[String], status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(answer.code(), Some(code), "{what}: {}", answer.body);
    assert!(calls.is_empty(), "{what}: the node was asked {calls:?}");
    if status == StatusCode::UNAUTHORIZED {
        let challenge = answer.www_authenticate.as_deref().unwrap_or_default();
        assert!(challenge.starts_with("Basic "), "{what}: {challenge:?}");
    }
}

fn let_through(what: &str, answer: &Answer) {
    assert!(
        answer.status != StatusCode::UNAUTHORIZED && answer.status != StatusCode::FORBIDDEN
            || answer.code() == Some("not_leader")
            || answer.code() == Some("forbidden"),
        "{what}: {} {}",
        answer.status,
        answer.body
    );
}

#[tokio::test]
async fn every_route_refuses_whoever_lacks_its_permission_and_changes_nothing() {
    let mut checked = 0;
    for &(method, route, need) in RULES {
        let access = Access::users(users_for(need.perms), SECRET);
        let case = |who: &str| format!("{method} {route} as {who}");
        let lacking = basic("lacking", "pw");
        let holder = basic("holder", "pw");
        let wrong = basic("holder", "wrong");
        let unknown = basic("nobody", "pw");

        let (a, c) = send(&access, method, route, &[]).await;
        refused(
            &case("anonymous"),
            &a,
            &c,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        for (who, header) in [("a wrong password", &wrong), ("an unknown user", &unknown)] {
            let (a, c) = send(&access, method, route, &[("authorization", header)]).await;
            refused(&case(who), &a, &c, StatusCode::UNAUTHORIZED, "unauthorized");
        }
        let (a, c) = send(&access, method, route, &[("authorization", "Bearer x")]).await;
        refused(
            &case("a bearer token"),
            &a,
            &c,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let (a, c) = send(&access, method, route, &[("x-cairn-secret", "wrong")]).await;
        refused(
            &case("a wrong secret"),
            &a,
            &c,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let (a, c) = send(&access, method, route, &[("authorization", &lacking)]).await;
        refused(
            &case("lacking"),
            &a,
            &c,
            StatusCode::FORBIDDEN,
            "permission_denied",
        );

        let (a, _) = send(&access, method, route, &[("authorization", &holder)]).await;
        let_through(&case("holder"), &a);
        if method == "GET" {
            let (a, c) = send(&access, "HEAD", route, &[]).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{}",
                case("HEAD, anonymous")
            );
            assert!(c.is_empty(), "{}: {c:?}", case("HEAD, anonymous"));
            let (a, c) = send(&access, "HEAD", route, &[("authorization", &lacking)]).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", case("HEAD, lacking"));
            assert!(c.is_empty(), "{}: {c:?}", case("HEAD, lacking"));
            checked += 2;
        }
        // The cluster secret opens what peers need on the public port, nothing more.
        let (a, c) = send(
            &access,
            method,
            route,
            &[(cairn_node::SECRET_HEADER, SECRET)],
        )
        .await;
        let peer_route = need.scope == Scope::Node
            && need
                .perms
                .iter()
                .all(|p| matches!(p, Perm::Status | Perm::Ready | Perm::Join));
        if peer_route {
            let_through(&case("the cluster secret"), &a);
        } else {
            refused(
                &case("the cluster secret"),
                &a,
                &c,
                StatusCode::FORBIDDEN,
                "permission_denied",
            );
        }
        checked += 7;

        let per_db = need.perms.iter().all(|p| p.is_per_database());
        match need.scope {
            Scope::QueryDb | Scope::PathDb | Scope::Handler if per_db => {
                let elsewhere = basic("elsewhere", "pw");
                let (a, c) = send(&access, method, route, &[("authorization", &elsewhere)]).await;
                refused(
                    &case("a user of another database"),
                    &a,
                    &c,
                    StatusCode::FORBIDDEN,
                    "permission_denied",
                );
                let school = basic("school_only", "pw");
                let (a, calls) = send(&access, method, route, &[("authorization", &school)]).await;
                let_through(&case("a user of this database"), &a);
                only_on_school(&case("a user of this database"), &calls);
                // The database named in one place and another elsewhere: whichever the
                // handler acts on, it must be one the user holds.
                for split in [Split::QueryOther, Split::BodyOther] {
                    let (_, calls) = send_split(&access, method, route, split, &school).await;
                    only_on_school(
                        &case(&format!("a user of this database, {split:?}")),
                        &calls,
                    );
                }
                checked += 4;
            }
            Scope::AnyDb => {
                let elsewhere = basic("elsewhere", "pw");
                let (a, _) = send(&access, method, route, &[("authorization", &elsewhere)]).await;
                let_through(&case("a user of some database"), &a);
                checked += 1;
            }
            _ => {}
        }
    }
    println!(
        "auth matrix: {checked} cases over {} route rules",
        RULES.len()
    );
    assert!(checked > 350, "{checked} cases");
}

/// Where `send_split` names database `other` instead of `school`.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// `db=other&name=other` in the query (and `other` in the path), `school` in the body.
    QueryOther,
    /// `school` in the query and the path, `other` in every body field.
    BodyOther,
}

async fn send_split(
    access: &Access,
    method: &str,
    route: &str,
    split: Split,
    authorization: &str,
) -> (Answer, Vec<String>) {
    let (uri, body) = request_for(method, route);
    let (uri, body) = match split {
        Split::QueryOther => (uri.replace("school", "other"), body),
        Split::BodyOther => (uri, body.replace("school", "other")),
    };
    let fake = Arc::new(leader());
    let headers = [
        ("content-type", "application/json"),
        ("authorization", authorization),
    ];
    let answer = call_as(fake.clone(), access.clone(), method, &uri, &body, &headers).await;
    let calls = fake.calls();
    (answer, calls)
}

/// Every call the fake node recorded names database `school` (calls name their database
/// right after the operation: `execute school [...]`).
fn only_on_school(what: &str, calls: &[String]) {
    for call in calls {
        let db = call.split_whitespace().nth(1).unwrap_or_default();
        let names_db = !call.starts_with("join")
            && !call.starts_with("remove")
            && !call.starts_with("wait_queue");
        assert!(
            !names_db || db == "school",
            "{what}: the node was asked {call:?}"
        );
    }
}

#[tokio::test]
async fn cross_site_browser_requests_are_refused() {
    let file = r#"[{"username": "admin", "password": "pw", "perms": ["all"]}]"#;
    let access = Access::users(Arc::new(Users::from_json(file).expect("valid")), SECRET);
    let admin = basic("admin", "pw");
    for headers in [
        vec![
            ("authorization", admin.as_str()),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![
            ("authorization", admin.as_str()),
            ("sec-fetch-site", "same-site"),
        ],
        vec![
            ("authorization", admin.as_str()),
            ("origin", "https://evil.example"),
        ],
    ] {
        let (a, c) = send(&access, "GET", "/dropdb", &headers).await;
        refused(
            &format!("{headers:?}"),
            &a,
            &c,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    let same = [
        ("authorization", admin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let (a, c) = send(&access, "GET", "/dropdb", &same).await;
    let_through("same-origin", &a);
    assert_eq!(c, ["drop_database school"]);
}

#[tokio::test]
async fn without_auth_every_route_is_open_as_before() {
    for &(method, route, _) in RULES {
        let (a, _) = send(&Access::open(), method, route, &[]).await;
        let_through(&format!("{method} {route} without --auth"), &a);
    }
}

#[tokio::test]
async fn a_star_user_opens_routes_to_anonymous_requests() {
    let file = r#"[{"username": "*", "perms": ["ready", "status"]},
                   {"username": "reader", "password": "pw", "perms": ["query"]}]"#;
    let access = Access::users(Arc::new(Users::from_json(file).expect("valid")), SECRET);
    let (a, _) = send(&access, "GET", "/readyz", &[]).await;
    let_through("anonymous /readyz", &a);
    let (a, c) = send(&access, "POST", "/db/execute", &[]).await;
    refused(
        "anonymous /db/execute",
        &a,
        &c,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // `*`'s permissions are everyone's, and a user's own add to them.
    let reader = basic("reader", "pw");
    let (a, _) = send(&access, "GET", "/status", &[("authorization", &reader)]).await;
    let_through("reader /status", &a);
    let (a, c) = send(
        &access,
        "POST",
        "/db/execute",
        &[("authorization", &reader)],
    )
    .await;
    refused(
        "reader /db/execute",
        &a,
        &c,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
}

#[tokio::test]
async fn hashed_passwords_are_verified_and_then_cached() {
    let phc = cairn_auth::hash_password("s3cret").expect("hash");
    let file = serde_json::json!([{"username": "h", "password": phc, "perms": ["query"]}]);
    let access = Access::users(
        Arc::new(Users::from_json(&file.to_string()).expect("valid")),
        SECRET,
    );
    let good = basic("h", "s3cret");
    for _ in 0..3 {
        let (a, _) = send(&access, "GET", "/db/query", &[("authorization", &good)]).await;
        let_through("h with the right password", &a);
    }
    let bad = basic("h", "s3cret!");
    let (a, c) = send(&access, "GET", "/db/query", &[("authorization", &bad)]).await;
    refused(
        "h with a wrong password",
        &a,
        &c,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

/// `/db/request` needs both `query` and `execute` (rqlite's rule): a reader alone cannot
/// slip a write through it.
#[tokio::test]
async fn the_unified_endpoint_needs_query_and_execute() {
    let file = r#"[{"username": "r", "password": "pw", "perms": ["query"]},
                   {"username": "rw", "password": "pw", "perms": ["query", "execute"]}]"#;
    let access = Access::users(Arc::new(Users::from_json(file).expect("valid")), SECRET);
    let (a, c) = send(
        &access,
        "POST",
        "/db/request",
        &[("authorization", &basic("r", "pw"))],
    )
    .await;
    refused(
        "reader /db/request",
        &a,
        &c,
        StatusCode::FORBIDDEN,
        "permission_denied",
    );
    let (a, c) = send(
        &access,
        "POST",
        "/db/request",
        &[("authorization", &basic("rw", "pw"))],
    )
    .await;
    let_through("writer /db/request", &a);
    assert_eq!(c.len(), 1, "{c:?}");
}
