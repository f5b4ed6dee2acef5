//! The web console at `/console`: one page of plain HTML, CSS and JavaScript (no framework,
//! no build step, nothing fetched from another site) embedded in the binary from
//! `crates/cairn-api/console/`, so that every node serves it, offline too.
//!
//! The page holds no data and no secret: it is public, like a login page ([`ROUTES`] are
//! let through by the auth middleware without credentials). Everything it shows comes from
//! the public API, called from the browser on the node that served the page, with the
//! user's HTTP Basic credentials when the API answers 401 (the page asks for them itself
//! and keeps them in `sessionStorage` only). Its API calls carry [`REQUEST_HEADER`], so that
//! a 401 they get comes without `WWW-Authenticate` and the browser does not open its own
//! login dialog in front of the page's.
//!
//! Every asset is served with a strict `Content-Security-Policy` ([`CSP`]: scripts and
//! styles from this node only, no inline script, no framing), `X-Content-Type-Options:
//! nosniff`, and `Cache-Control: no-cache` with an `ETag` (the SHA-256 of its bytes): a
//! browser revalidates, and gets the new page at once after an upgrade. An unknown asset is
//! the API's JSON 404 `no_route`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::ErrorCode;

/// The console's files, read at compile time (an edited asset rebuilds the crate, and so
/// does a new one: `build.rs` watches the directory).
static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/console");

/// The routes the console is served on, as axum matches them: the auth middleware lets
/// requests to them through without credentials. `/console` redirects to `/console/`, so
/// that the page's relative asset URLs resolve under it.
pub const ROUTES: &[&str] = &["/console", "/console/", "/console/{*path}"];

/// The header every API call of the console sends (value `1`): a 401 answered to such a
/// request omits `WWW-Authenticate`, so the browser leaves the login to the page.
pub const REQUEST_HEADER: &str = "x-cairn-console";

/// The `Content-Security-Policy` of every asset: nothing but this node's own scripts,
/// styles, images and API (`connect-src 'self'`); no inline script or style attribute, no
/// `eval`, no plugins, no framing, no `<base>`, forms post nowhere else.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's routes, to merge into the public router (see [`ROUTES`]).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// The Content-Type of an asset, by its extension; `None` for a kind the console does not
/// ship (such a file is not served).
fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// One asset with its headers, `304` when the browser's copy is current, or the API's
/// JSON 404 for a path that is not an asset.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let file = ASSETS.get_file(path);
    let (Some(file), Some(ty)) = (file, content_type(path)) else {
        return ApiError::of(ErrorCode::NoRoute, format!("no such console asset: {path}"))
            .into_response();
    };
    let etag = format!("\"{}\"", hex(&Sha256::digest(file.contents())[..16]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let status = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut resp = if fresh {
        status.into_response()
    } else {
        (status, file.contents()).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the console directory is an asset the router serves with a type.
    #[test]
    fn every_shipped_file_has_a_content_type() {
        let mut files = Vec::new();
        let mut dirs = vec![&ASSETS];
        while let Some(d) = dirs.pop() {
            files.extend(d.files().map(|f| f.path().to_string_lossy().into_owned()));
            dirs.extend(d.dirs());
        }
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        for f in &files {
            assert!(content_type(f).is_some(), "{f} has no content type");
        }
    }

    #[test]
    fn the_policy_forbids_inline_script_and_other_origins() {
        assert!(CSP.starts_with("default-src 'self'"));
        assert!(!CSP.contains("unsafe"), "{CSP}");
        assert!(!CSP.contains("http"), "{CSP}");
    }
}
