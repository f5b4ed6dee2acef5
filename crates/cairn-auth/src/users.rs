//! The users of an auth file and who a request is.
//!
//! The file is rqlite's format (rqlite's "Securing rqlite" guide): a JSON array of
//! `{"username": .., "password": .., "perms": [..]}`. The username `*` stands for every
//! request: its permissions go to anonymous requests and to every user as well, as in
//! rqlite. Cairn adds per-database grants inside `perms`:
//!
//! ```json
//! [
//!   {"username": "admin", "password": "$argon2id$v=19$m=19456,t=2,p=1$...", "perms": ["all"]},
//!   {"username": "app", "password": "plain-secret",
//!    "perms": ["status", {"db": "school", "perms": ["query", "execute"]}]},
//!   {"username": "*", "perms": ["ready"]}
//! ]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::password::{Digester, Stored};
use crate::perm::{Perm, PermSet};

/// The username whose permissions every request has, credentials or not.
pub const ANONYMOUS: &str = "*";

/// Longest `Authorization` header value read, in bytes; longer ones are malformed.
const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// Why an auth file was refused. Nothing starts with a file that has any error.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file could not be read.
    #[error("reading the auth file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("the auth file is not valid JSON: {0}")]
    Json(serde_json::Error),
    /// The JSON does not describe users as documented; the message says where.
    #[error("the auth file is invalid: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> AuthFileError {
    AuthFileError::Invalid(msg.into())
}

/// Why a request's credentials were refused; each is answered 401 with
/// `WWW-Authenticate: Basic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, and the file has no `*` user.
    #[error("authentication required: send HTTP Basic credentials")]
    Missing,
    /// The `Authorization` header is not `Basic base64(user:password)`.
    #[error("malformed Authorization header: expected HTTP Basic credentials")]
    Malformed,
    /// No such user, or the wrong password (not told apart, on purpose).
    #[error("wrong username or password")]
    Rejected,
}

/// Credentials from an `Authorization: Basic` header (RFC 7617).
#[derive(Clone)]
pub struct Credentials {
    /// The username.
    pub username: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header value clients send: `Basic ` and base64 of
    /// `user:password` (RFC 7617), what [`Credentials::from_authorization`] parses.
    pub fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// Parses an `Authorization` header value: `Basic ` (any case) then base64 of
    /// `user:password` in UTF-8; the password may contain `:`.
    ///
    /// # Errors
    /// [`AuthError::Malformed`] for any other scheme, bad base64 or UTF-8, no `:`, or a
    /// value over 4 KiB.
    pub fn from_authorization(value: &[u8]) -> Result<Credentials, AuthError> {
        if value.len() > MAX_AUTHORIZATION_BYTES || value.len() < 6 {
            return Err(AuthError::Malformed);
        }
        let (scheme, rest) = value.split_at(6);
        if !scheme.eq_ignore_ascii_case(b"basic ") {
            return Err(AuthError::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim_ascii())
            .map_err(|_| AuthError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (user, pass) = text.split_once(':').ok_or(AuthError::Malformed)?;
        Ok(Credentials::new(user, pass))
    }
}

/// What one principal may do: node-wide permissions and per-database ones.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    global: PermSet,
    databases: BTreeMap<String, PermSet>,
}

impl Grants {
    fn extend(&mut self, other: &Grants) {
        self.global.extend(other.global);
        for (db, set) in &other.databases {
            self.databases.entry(db.clone()).or_default().extend(*set);
        }
    }
}

#[derive(Debug, Clone)]
enum Who {
    Open,
    Anonymous,
    User(Arc<str>),
    Cluster,
}

/// Who sent a request and what they may do.
#[derive(Debug, Clone)]
pub struct Identity {
    who: Who,
    grants: Arc<Grants>,
}

impl Identity {
    /// A peer node on the public port: it presented the cluster secret. It may do what
    /// peers do there (join, read `/status`, `/readyz`) and nothing else, so that a secret
    /// seen on the public side (a proxy's log) does not override every user's permissions.
    pub fn cluster() -> Identity {
        Identity {
            who: Who::Cluster,
            grants: Arc::new(Grants {
                global: [Perm::Status, Perm::Ready, Perm::Join]
                    .into_iter()
                    .collect(),
                databases: BTreeMap::new(),
            }),
        }
    }

    /// Every request on a node without `--auth`: every permission.
    pub fn open() -> Identity {
        Identity {
            who: Who::Open,
            grants: Arc::new(Grants {
                global: [Perm::All].into_iter().collect(),
                databases: BTreeMap::new(),
            }),
        }
    }

    /// Whether this is [`Identity::open`]: the node runs without `--auth`.
    pub fn is_open(&self) -> bool {
        matches!(self.who, Who::Open)
    }

    /// The name to show in errors and logs: the username, `*` for an anonymous request,
    /// `cluster` for a peer node, `open` without `--auth`.
    pub fn name(&self) -> &str {
        match &self.who {
            Who::Open => "open",
            Who::Anonymous => ANONYMOUS,
            Who::User(n) => n,
            Who::Cluster => "cluster",
        }
    }

    /// Whether this is an anonymous request (no credentials, `*`'s permissions).
    pub fn is_anonymous(&self) -> bool {
        matches!(self.who, Who::Anonymous)
    }

    /// Whether it holds `perm` node-wide, or on `db` through a per-database grant (only
    /// for [`Perm::is_per_database`] permissions).
    pub fn allows(&self, perm: Perm, db: Option<&str>) -> bool {
        if self.grants.global.allows(perm) {
            return true;
        }
        match db {
            Some(db) if perm.is_per_database() => self
                .grants
                .databases
                .get(db)
                .is_some_and(|set| set.allows(perm)),
            _ => false,
        }
    }

    /// Whether it holds `perm` node-wide, or on at least one database.
    pub fn allows_somewhere(&self, perm: Perm) -> bool {
        self.grants.global.allows(perm)
            || (perm.is_per_database() && self.grants.databases.values().any(|s| s.allows(perm)))
    }

    /// Whether it holds `perm` node-wide, so that which database a request names does not
    /// matter.
    pub fn allows_everywhere(&self, perm: Perm) -> bool {
        self.grants.global.allows(perm)
    }
}

struct User {
    name: Arc<str>,
    stored: Stored,
    grants: Arc<Grants>,
}

/// The users of an auth file, and a cache of credentials already verified.
///
/// Verifying an argon2id hash costs tens of milliseconds; once a user's password has been
/// verified, a salted SHA-256 digest of it is cached (one per user, so the cache is bounded
/// by the file), and later requests with the same password are checked against the digest.
/// A changed or wrong password misses the cache and is verified in full.
pub struct Users {
    users: HashMap<String, User>,
    anonymous: Option<Arc<Grants>>,
    /// Verified for unknown usernames, so that they cost what a wrong password costs and
    /// the time of an answer does not tell which usernames exist: of the kind and cost of
    /// one of the file's own passwords (a hash if there is one).
    decoy: Stored,
    digester: Digester,
    cache: Mutex<HashMap<Arc<str>, [u8; 32]>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("Users")
            .field("users", &names)
            .field("anonymous", &self.anonymous.is_some())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Reads and checks an auth file. Warns when the file holds plain passwords and other
    /// users of the machine may read it.
    ///
    /// # Errors
    /// [`AuthFileError`] naming the problem: unreadable file, bad JSON, a user without a
    /// name or a password, a duplicate username, an unknown permission, a cluster
    /// permission inside a per-database grant, a `$argon2…` password that is not a valid
    /// argon2id hash.
    pub fn load(path: &Path) -> Result<Users, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let users = Users::from_json(&text)?;
        warn_if_readable(path, &users);
        Ok(users)
    }

    /// Parses an auth file's contents (see the module docs for the format).
    ///
    /// # Errors
    /// As [`Users::load`], without the file errors.
    pub fn from_json(text: &str) -> Result<Users, AuthFileError> {
        let value: Value = serde_json::from_str(text).map_err(AuthFileError::Json)?;
        let Value::Array(entries) = value else {
            return Err(invalid("the file must be a JSON array of users"));
        };
        let digester = Digester::new();
        let mut parsed: Vec<(String, Option<Stored>, Grants)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            parsed.push(parse_entry(i, entry, &digester)?);
        }
        let mut anonymous: Option<Grants> = None;
        let mut users = HashMap::new();
        for (name, stored, grants) in parsed {
            if name == ANONYMOUS {
                anonymous
                    .get_or_insert_with(Grants::default)
                    .extend(&grants);
                continue;
            }
            if users.contains_key(&name) {
                return Err(invalid(format!("user {name:?} is listed twice")));
            }
            let stored = stored.ok_or_else(|| invalid(format!("user {name:?} has no password")))?;
            users.insert(name.clone(), (stored, grants));
        }
        // A hash in the file, if there is one, sets the decoy's kind and cost.
        let decoy = users
            .values()
            .map(|(stored, _)| stored)
            .find(|s| s.is_slow())
            .or_else(|| users.values().map(|(stored, _)| stored).next())
            .map(|s| s.decoy(&digester))
            .unwrap_or_else(|| Stored::Plain(digester.digest(&[b"no users"])));
        let users = users
            .into_iter()
            .map(|(name, (stored, mut grants))| {
                if let Some(anon) = &anonymous {
                    grants.extend(anon);
                }
                let user = User {
                    name: Arc::from(name.as_str()),
                    stored,
                    grants: Arc::new(grants),
                };
                (name, user)
            })
            .collect();
        Ok(Users {
            users,
            anonymous: anonymous.map(Arc::new),
            decoy,
            digester,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// How many users the file names (`*` not counted).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file names no user but `*`.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The identity of a request without credentials.
    ///
    /// # Errors
    /// [`AuthError::Missing`] when the file has no `*` user.
    pub fn anonymous(&self) -> Result<Identity, AuthError> {
        self.anonymous
            .as_ref()
            .map(|g| Identity {
                who: Who::Anonymous,
                grants: g.clone(),
            })
            .ok_or(AuthError::Missing)
    }

    /// Checks `creds` when that is cheap: a plain password, or one whose digest is cached.
    /// `None` means it takes an argon2 verification: call [`Users::authenticate`] on a
    /// blocking thread.
    pub fn authenticate_fast(&self, creds: &Credentials) -> Option<Result<Identity, AuthError>> {
        let Some(user) = self.users.get(&creds.username) else {
            if self.decoy.is_slow() {
                return None;
            }
            self.decoy.verify(&creds.password, &self.digester);
            return Some(Err(AuthError::Rejected));
        };
        if !user.stored.is_slow() {
            let ok = user.stored.verify(&creds.password, &self.digester);
            return Some(self.outcome(user, ok));
        }
        let digest = self.digest(&creds.username, &creds.password);
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match cache.get(&user.name) {
            Some(known) if bool::from(known.ct_eq(&digest)) => Some(self.outcome(user, true)),
            _ => None,
        }
    }

    /// Checks `creds`, running argon2 when the cache cannot decide (tens of milliseconds:
    /// call it on a blocking thread, and bound how many run at once).
    ///
    /// # Errors
    /// [`AuthError::Rejected`] for an unknown username or a wrong password.
    pub fn authenticate(&self, creds: &Credentials) -> Result<Identity, AuthError> {
        if let Some(outcome) = self.authenticate_fast(creds) {
            return outcome;
        }
        let Some(user) = self.users.get(&creds.username) else {
            self.decoy.verify(&creds.password, &self.digester);
            return Err(AuthError::Rejected);
        };
        let ok = user.stored.verify(&creds.password, &self.digester);
        if ok {
            let digest = self.digest(&creds.username, &creds.password);
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(user.name.clone(), digest);
        }
        self.outcome(user, ok)
    }

    fn outcome(&self, user: &User, ok: bool) -> Result<Identity, AuthError> {
        if !ok {
            return Err(AuthError::Rejected);
        }
        Ok(Identity {
            who: Who::User(user.name.clone()),
            grants: user.grants.clone(),
        })
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        self.digester
            .digest(&[user.as_bytes(), password.as_bytes()])
    }
}

fn parse_entry(
    i: usize,
    entry: &Value,
    digester: &Digester,
) -> Result<(String, Option<Stored>, Grants), AuthFileError> {
    let Value::Object(fields) = entry else {
        return Err(invalid(format!("entry {i} is not an object")));
    };
    for key in fields.keys() {
        if !matches!(key.as_str(), "username" | "password" | "perms") {
            return Err(invalid(format!("entry {i}: unknown field {key:?}")));
        }
    }
    let name = match fields.get("username") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(invalid(format!(
                "entry {i}: \"username\" must be a non-empty string"
            )))
        }
    };
    if name.contains(':') {
        return Err(invalid(format!(
            "user {name:?}: a username cannot contain ':' (HTTP Basic splits on it)"
        )));
    }
    let stored = match fields.get("password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if name == ANONYMOUS => {
            let _ = p;
            return Err(invalid(
                "the user \"*\" stands for everyone and takes no password",
            ));
        }
        Some(Value::String(p)) => Some(
            Stored::parse(p, digester)
                .map_err(|e| invalid(format!("user {name:?}: password: {e}")))?,
        ),
        Some(_) => {
            return Err(invalid(format!(
                "user {name:?}: \"password\" must be a string"
            )))
        }
    };
    let mut grants = Grants::default();
    let perms = match fields.get("perms") {
        None => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(invalid(format!(
                "user {name:?}: \"perms\" must be an array"
            )))
        }
    };
    for (k, p) in perms.iter().enumerate() {
        match p {
            Value::String(s) => grants.global.insert(perm(&name, k, s)?),
            Value::Object(g) => {
                for key in g.keys() {
                    if !matches!(key.as_str(), "db" | "perms") {
                        return Err(invalid(format!(
                            "user {name:?}: perms[{k}]: unknown field {key:?}"
                        )));
                    }
                }
                let db = match g.get("db") {
                    Some(Value::String(d)) if !d.is_empty() => d.clone(),
                    _ => {
                        return Err(invalid(format!(
                            "user {name:?}: perms[{k}]: \"db\" must be a database name"
                        )))
                    }
                };
                let Some(Value::Array(list)) = g.get("perms") else {
                    return Err(invalid(format!(
                        "user {name:?}: perms[{k}]: \"perms\" must be an array of names"
                    )));
                };
                let set = grants.databases.entry(db.clone()).or_default();
                for v in list {
                    let Value::String(s) = v else {
                        return Err(invalid(format!(
                            "user {name:?}: perms[{k}]: permissions are strings"
                        )));
                    };
                    let p = perm(&name, k, s)?;
                    if !p.is_per_database() {
                        return Err(invalid(format!(
                            "user {name:?}: perms[{k}]: {s:?} is node-wide and cannot be granted on one database (per-database: all, execute, query, load, backup, schema)"
                        )));
                    }
                    set.insert(p);
                }
            }
            _ => {
                return Err(invalid(format!(
                    "user {name:?}: perms[{k}] must be a permission name or {{\"db\": .., \"perms\": [..]}}"
                )))
            }
        }
    }
    Ok((name, stored, grants))
}

fn perm(user: &str, k: usize, name: &str) -> Result<Perm, AuthFileError> {
    Perm::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Perm::ALL.iter().map(|p| p.name()).collect();
        invalid(format!(
            "user {user:?}: perms[{k}]: unknown permission {name:?} (known: {})",
            known.join(", ")
        ))
    })
}

#[cfg(unix)]
fn warn_if_readable(path: &Path, users: &Users) {
    use std::os::unix::fs::PermissionsExt;
    let plain = users.users.values().any(|u| !u.stored.is_slow());
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if plain && meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "the auth file holds plain-text passwords and other users of this machine can read it: chmod 600 it, or store argon2id hashes (`cairn passwd`)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable(_: &Path, _: &Users) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(json: &str) -> Users {
        Users::from_json(json).expect("valid auth file")
    }

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        Credentials::new(user, pass).authorization().into_bytes()
    }

    #[test]
    fn rqlite_files_load_and_star_applies_to_everyone() {
        let u = users(
            r#"[{"username": "bob", "password": "secret1", "perms": ["all"]},
                {"username": "mary", "password": "secret2", "perms": ["query", "backup", "join"]},
                {"username": "*", "perms": ["status", "ready"]}]"#,
        );
        assert_eq!(u.len(), 2);
        let anon = u.anonymous().expect("a * user");
        assert!(anon.is_anonymous());
        assert!(anon.allows(Perm::Status, None));
        assert!(!anon.allows(Perm::Query, Some("main")));
        let mary = u
            .authenticate(&Credentials::new("mary", "secret2"))
            .expect("mary");
        assert_eq!(mary.name(), "mary");
        assert!(mary.allows(Perm::Query, Some("any")));
        assert!(mary.allows(Perm::Ready, None), "* perms apply to users too");
        assert!(!mary.allows(Perm::Execute, Some("main")));
        assert_eq!(
            u.authenticate(&Credentials::new("mary", "secret1")).err(),
            Some(AuthError::Rejected)
        );
        assert_eq!(
            u.authenticate(&Credentials::new("nobody", "x")).err(),
            Some(AuthError::Rejected)
        );
        let bob = u
            .authenticate(&Credentials::new("bob", "secret1"))
            .expect("bob");
        assert!(Perm::ALL.iter().all(|&p| bob.allows(p, Some("x"))));
    }

    #[test]
    fn without_star_anonymous_requests_are_refused() {
        let u = users(r#"[{"username": "a", "password": "b", "perms": ["query"]}]"#);
        assert_eq!(u.anonymous().err(), Some(AuthError::Missing));
    }

    #[test]
    fn per_database_grants_stay_on_their_database() {
        let u = users(
            r#"[{"username": "app", "password": "pw",
                 "perms": ["status", {"db": "school", "perms": ["query", "execute"]}]}]"#,
        );
        let app = u.authenticate(&Credentials::new("app", "pw")).expect("app");
        assert!(app.allows(Perm::Query, Some("school")));
        assert!(app.allows(Perm::Execute, Some("school")));
        assert!(!app.allows(Perm::Query, Some("main")));
        assert!(!app.allows(Perm::Query, None));
        assert!(!app.allows(Perm::Schema, Some("school")));
        assert!(app.allows_somewhere(Perm::Query));
        assert!(!app.allows_everywhere(Perm::Query));
        assert!(app.allows(Perm::Status, None));
    }

    #[test]
    fn hashed_passwords_verify_once_then_hit_the_cache() {
        let phc = crate::hash_password("pw").expect("hash");
        let u = users(&format!(
            r#"[{{"username": "h", "password": "{phc}", "perms": ["query"]}}]"#
        ));
        let creds = Credentials::new("h", "pw");
        assert!(u.authenticate_fast(&creds).is_none(), "first time: argon2");
        assert!(u.authenticate(&creds).is_ok());
        assert!(matches!(u.authenticate_fast(&creds), Some(Ok(_))), "cached");
        let wrong = Credentials::new("h", "pw2");
        assert!(
            u.authenticate_fast(&wrong).is_none(),
            "a wrong password is not cached"
        );
        assert_eq!(u.authenticate(&wrong).err(), Some(AuthError::Rejected));
        assert!(matches!(u.authenticate_fast(&creds), Some(Ok(_))));
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (json, says) in [
            ("{}", "array"),
            (r#"[{"username": "a", "perms": []}]"#, "no password"),
            (r#"[{"username": "", "password": "x"}]"#, "username"),
            (r#"[{"username": "a:b", "password": "x"}]"#, "':'"),
            (
                r#"[{"username": "a", "password": "x"}, {"username": "a", "password": "y"}]"#,
                "twice",
            ),
            (
                r#"[{"username": "a", "password": "x", "perms": ["exec"]}]"#,
                "unknown permission",
            ),
            (
                r#"[{"username": "a", "password": "x", "perms": [{"db": "d", "perms": ["remove"]}]}]"#,
                "node-wide",
            ),
            (
                r#"[{"username": "a", "password": "x", "role": "admin"}]"#,
                "unknown field",
            ),
            (r#"[{"username": "*", "password": "x"}]"#, "no password"),
            (
                r#"[{"username": "a", "password": "$argon2id$nope"}]"#,
                "PHC",
            ),
        ] {
            let err = Users::from_json(json).expect_err(json).to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn basic_headers_parse_strictly() {
        let c = Credentials::from_authorization(&basic("u", "p:w")).expect("parses");
        assert_eq!(c.username, "u");
        assert_eq!(c.password, "p:w");
        let lower = Credentials::from_authorization(b"basic dTpw").expect("any case");
        assert_eq!(lower.username, "u");
        for bad in [
            &b"Bearer abc"[..],
            b"Basic !!!",
            b"Basic dXNlcg==",
            b"",
            b"Basic",
        ] {
            assert_eq!(
                Credentials::from_authorization(bad).err(),
                Some(AuthError::Malformed),
                "{bad:?}"
            );
        }
        assert!(
            !format!("{c:?}").contains("p:w"),
            "Debug hides the password"
        );
    }
}
