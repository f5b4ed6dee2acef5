//! Users and permissions for Cairn's public API.
//!
//! A node started with `--auth FILE` loads [`Users`] from an rqlite-format auth file
//! (plain or argon2id passwords, rqlite's permission names, plus `schema` and
//! per-database grants), authenticates each request's HTTP Basic credentials to an
//! [`Identity`], and lets the route through only when the identity holds the route's
//! [`Perm`]. [`hash_password`] makes the argon2id PHC strings `cairn passwd` prints.

mod password;
mod perm;
mod users;

pub use password::{hash_password, HashError};
pub use perm::{Perm, PermSet};
pub use users::{AuthError, AuthFileError, Credentials, Grants, Identity, Users, ANONYMOUS};
