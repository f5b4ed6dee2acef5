//! What goes into the Raft log, and what applying it returns.
//!
//! # Format version
//! A [`Command`] is encoded (in the log, in `AppendEntries`, in a forwarded write) as a pair
//! `(version, body)`: [`COMMAND_FORMAT_VERSION`], then the command's variant and fields. A
//! node decoding a command of any other version refuses it (a logged error naming the
//! version, and a decode error) instead of reading its fields with the wrong layout: a
//! follower refuses the `AppendEntries` that carries it, and a node whose own log holds one
//! stops its Raft there (see `log_store.rs`), so nothing at or after it is applied. A new
//! layout takes a new version number; a node that knows both decodes both.

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use cairn_sql::{EntryContext, Statement, StatementResult};

/// A node's addresses, stored in the Raft membership so that every member can reach every
/// other one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The public HTTP API address, `HOST:PORT`.
    pub http_addr: String,
    /// The node-to-node RPC address, `HOST:PORT`.
    pub raft_addr: String,
}

impl NodeAddr {
    /// The public API's base URL: `http://HOST:PORT`, or `http_addr` as it is when it
    /// already names its scheme (`https://HOST:PORT`, as [`NodeAddr::with_http_scheme`]
    /// leaves it).
    pub fn http_url(&self) -> String {
        if has_scheme(&self.http_addr) {
            self.http_addr.clone()
        } else {
            Scheme::Http.url(&self.http_addr)
        }
    }

    /// This address as a node whose cluster serves its public API over `scheme` hands it
    /// out (to clients, in redirects and errors): for [`Scheme::Https`], `http_addr`
    /// becomes `https://HOST:PORT`, so that [`NodeAddr::http_url`] names the scheme. The
    /// membership keeps `HOST:PORT`; only copies given out carry the scheme.
    pub fn with_http_scheme(mut self, scheme: Scheme) -> NodeAddr {
        if scheme == Scheme::Https && !has_scheme(&self.http_addr) {
            self.http_addr = scheme.url(&self.http_addr);
        }
        self
    }
}

fn has_scheme(addr: &str) -> bool {
    addr.starts_with("http://") || addr.starts_with("https://")
}

/// How a port is spoken to: plain HTTP or HTTPS. Node-wide: a node serves each of its two
/// ports one way, and speaks to its peers' ports the same way (every node of a cluster has
/// the same setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `SCHEME://HOST:PORT` for a `HOST:PORT`.
    pub fn url(self, host_port: &str) -> String {
        format!("{}://{host_port}", self.as_str())
    }
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http={} raft={}", self.http_addr, self.raft_addr)
    }
}

/// One replicated operation. Every replica applies the same commands in log order, to the
/// same result: the statements run in the SQL sandbox with the entry's [`EntryContext`]
/// (time, random seed, work budget), assigned by the leader when it proposes the entry.
///
/// Serialized as `(COMMAND_FORMAT_VERSION, body)` (see the module docs); the derived
/// `remote = "Self"` functions below encode the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum Command {
    /// A batch of statements on one database (rqlite's execute or request).
    Execute {
        /// The database.
        db: String,
        /// The statements, in order.
        stmts: Vec<Statement>,
        /// All-or-nothing, stopping at the first error.
        transaction: bool,
        /// The entry's time, seed and budget.
        ctx: EntryContext,
        /// A client's request id (`Idempotency-Key`): a retry with the same id applies once.
        request_id: Option<String>,
    },
    /// Several queued batches (`queue` flag) in one entry; each runs as its own batch.
    Queued {
        /// `(db, statements, transaction)` per queued request.
        batches: Vec<(String, Vec<Statement>, bool)>,
        /// The entry's time, seed and budget.
        ctx: EntryContext,
    },
    /// A SQL script run in one transaction (`/db/load` of SQL text).
    Script {
        /// The database.
        db: String,
        /// The script.
        sql: String,
        /// The entry's time, seed and budget.
        ctx: EntryContext,
    },
    /// Replace a database with a SQLite file (`/db/load` of a binary file).
    Load {
        /// The database.
        db: String,
        /// The file's bytes.
        bytes: Vec<u8>,
    },
    /// A read that goes through the log (`level=strong`): run on a read-only connection
    /// when applied, by the leader that proposed it only (the others have nobody to answer),
    /// so it changes nothing.
    Query {
        /// The database.
        db: String,
        /// The statements.
        stmts: Vec<Statement>,
        /// The entry's budget applies to the read.
        ctx: EntryContext,
    },
    /// Create a database.
    CreateDatabase {
        /// Its name.
        name: String,
    },
    /// Drop a database.
    DropDatabase {
        /// Its name.
        name: String,
    },
}

/// The format version of [`Command`]'s encoding that this node writes, and the only one it
/// reads.
pub const COMMAND_FORMAT_VERSION: u16 = 1;

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// The body: the derived encoding of the variant and its fields.
        struct Body<'a>(&'a Command);
        impl Serialize for Body<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                Command::serialize(self.0, s)
            }
        }
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&COMMAND_FORMAT_VERSION)?;
        t.serialize_element(&Body(self))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_tuple(2, VersionedVisitor)
    }
}

/// Reads `(version, body)`, refusing an unknown version before it reads the body.
struct VersionedVisitor;

impl<'de> Visitor<'de> for VersionedVisitor {
    type Value = Command;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a command: (format version, body)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
        /// The body of a version-1 command.
        struct BodyV1;
        impl<'de> DeserializeSeed<'de> for BodyV1 {
            type Value = Command;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Command, D::Error> {
                Command::deserialize(d)
            }
        }
        let version: u16 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if version != COMMAND_FORMAT_VERSION {
            // Logged here because some formats (postcard) drop a custom error's text.
            tracing::error!(
                version,
                supported = COMMAND_FORMAT_VERSION,
                "refusing a command of an unknown format version"
            );
            return Err(de::Error::custom(format!(
                "command format version {version} is unknown to this node (it reads version \
                 {COMMAND_FORMAT_VERSION})"
            )));
        }
        seq.next_element_seed(BodyV1)?
            .ok_or_else(|| de::Error::invalid_length(1, &self))
    }
}

impl Command {
    /// Sets the entry context of a command that runs SQL (the leader does, when it
    /// proposes it).
    pub fn stamp(&mut self, now: EntryContext) {
        match self {
            Command::Execute { ctx, .. }
            | Command::Queued { ctx, .. }
            | Command::Script { ctx, .. }
            | Command::Query { ctx, .. } => *ctx = now,
            Command::Load { .. }
            | Command::CreateDatabase { .. }
            | Command::DropDatabase { .. } => {}
        }
    }

    /// The size of this command's postcard encoding, in bytes: what one log entry holding it
    /// costs on the wire and in the log, to compare with [`crate::MAX_ENTRY_BYTES`]. Computed
    /// without allocating the encoding.
    pub fn encoded_size(&self) -> usize {
        // Serializing into a size counter fails only for types postcard cannot represent,
        // which a Command never holds; report it as too large rather than panic.
        postcard::serialize_with_flavor::<_, _, usize>(self, postcard::ser_flavors::Size::default())
            .unwrap_or(usize::MAX)
    }

    /// Bytes a [`Command::Queued`] entry needs besides its requests: the format version and
    /// the variant tag, the length of the list (a varint) and the entry's context (three
    /// varints).
    pub const QUEUED_OVERHEAD: usize = 64;

    /// The encoded size, in bytes, of one queued request `(db, stmts, transaction)` inside a
    /// [`Command::Queued`] entry: a queued batch of requests whose sizes add up to at most
    /// `MAX_ENTRY_BYTES - QUEUED_OVERHEAD` fits in one entry.
    pub fn queued_request_size(db: &str, stmts: &[Statement], transaction: bool) -> usize {
        // postcard encodes `&str`/`String` and slices/`Vec` alike.
        postcard::serialize_with_flavor::<_, _, usize>(
            &(db, stmts, transaction),
            postcard::ser_flavors::Size::default(),
        )
        .unwrap_or(usize::MAX)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Execute { db, stmts, .. } => write!(f, "execute({db}, {} stmts)", stmts.len()),
            Command::Queued { batches, .. } => write!(f, "queued({} batches)", batches.len()),
            Command::Script { db, .. } => write!(f, "script({db})"),
            Command::Load { db, bytes } => write!(f, "load({db}, {} bytes)", bytes.len()),
            Command::Query { db, stmts, .. } => write!(f, "query({db}, {} stmts)", stmts.len()),
            Command::CreateDatabase { name } => write!(f, "create_database({name})"),
            Command::DropDatabase { name } => write!(f, "drop_database({name})"),
        }
    }
}

/// Why a command failed as a whole (a statement's own SQL error is a result, not this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// The command named a database that does not exist.
    #[error("database not found: {0}")]
    NoSuchDatabase(String),
    /// The database to create exists already.
    #[error("database already exists: {0}")]
    DatabaseExists(String),
    /// A name that is not a valid identifier.
    #[error("invalid identifier {0:?}: use 1-64 letters, digits or underscores, not starting with a digit")]
    BadIdentifier(String),
    /// An operation that is never allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Malformed input (e.g. a `/db/load` file that is not a database).
    #[error("{0}")]
    BadRequest(String),
    /// SQLite failed the command (a script statement, the transaction itself).
    #[error("{0}")]
    Sql(String),
    /// The node could not apply the command (I/O).
    #[error("{0}")]
    Internal(String),
}

impl From<cairn_sql::Error> for CommandError {
    fn from(e: cairn_sql::Error) -> Self {
        use cairn_sql::Error as E;
        match e {
            E::NoSuchDatabase(n) => CommandError::NoSuchDatabase(n),
            E::DatabaseExists(n) => CommandError::DatabaseExists(n),
            E::BadIdentifier(n) => CommandError::BadIdentifier(n),
            E::Forbidden(m) => CommandError::Forbidden(m),
            E::BadRequest(m) | E::BadParameter(m) => CommandError::BadRequest(m),
            E::MultipleStatements(m) | E::ResultTooLarge(m) => CommandError::BadRequest(m),
            E::Sqlite(s) => CommandError::Sql(s.to_string()),
            E::Io(e) => CommandError::Internal(e.to_string()),
            E::Local(m) => CommandError::Internal(m),
        }
    }
}

/// What applying one command produced on the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Response {
    /// Per-statement results for `Execute`; all queued batches' results in order for
    /// `Queued`; empty otherwise.
    pub results: Vec<StatementResult>,
    /// Set when the command failed as a whole.
    pub error: Option<CommandError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_sql::Params;

    fn commands() -> Vec<Command> {
        let ctx = EntryContext {
            time_ms: 1_700_000_000_123,
            seed: 42,
            step_budget: 7,
        };
        vec![
            Command::Execute {
                db: "main".into(),
                stmts: vec![
                    Statement::new("CREATE TABLE t (v)"),
                    Statement {
                        sql: "INSERT INTO t VALUES (?)".into(),
                        params: Params::Positional(vec![cairn_sql::Value::Integer(5)]),
                    },
                ],
                transaction: true,
                ctx,
                request_id: Some("key-1".into()),
            },
            Command::Queued {
                batches: vec![("main".into(), vec![Statement::new("SELECT 1")], false)],
                ctx,
            },
            Command::Load {
                db: "main".into(),
                bytes: vec![0, 1, 2, 255],
            },
            Command::DropDatabase { name: "x".into() },
        ]
    }

    #[test]
    fn a_command_round_trips_with_its_format_version_first() {
        for cmd in commands() {
            let bytes = postcard::to_allocvec(&cmd).expect("encode");
            assert_eq!(
                bytes.first(),
                Some(&1u8),
                "the version (a postcard varint) leads"
            );
            assert_eq!(
                bytes.len(),
                cmd.encoded_size(),
                "encoded_size counts the envelope"
            );
            let back: Command = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, cmd);
            let json = serde_json::to_value(&cmd).expect("json");
            assert_eq!(json[0], 1, "the version leads in JSON too: {json}");
            let back: Command = serde_json::from_value(json).expect("decode json");
            assert_eq!(back, cmd);
        }
    }

    #[test]
    fn a_command_of_an_unknown_format_version_is_refused() {
        for cmd in commands() {
            let mut bytes = postcard::to_allocvec(&cmd).expect("encode");
            // Version 2 with the very same body: it must not be read as version 1.
            bytes[0] = 2;
            assert!(postcard::from_bytes::<Command>(&bytes).is_err());
            let mut json = serde_json::to_value(&cmd).expect("json");
            json[0] = serde_json::json!(2);
            let err = serde_json::from_value::<Command>(json).expect_err("version 2 is refused");
            assert!(
                err.to_string()
                    .contains("command format version 2 is unknown"),
                "the error names the version: {err}"
            );
        }
    }

    #[test]
    fn a_truncated_command_is_refused() {
        for cmd in commands() {
            let bytes = postcard::to_allocvec(&cmd).expect("encode");
            for len in 0..bytes.len() {
                assert!(
                    postcard::from_bytes::<Command>(&bytes[..len]).is_err(),
                    "{cmd}: the first {len} of {} bytes do not decode",
                    bytes.len()
                );
            }
        }
    }
}
