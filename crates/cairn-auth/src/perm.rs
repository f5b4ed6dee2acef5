//! Permissions: rqlite's names (rqlite's `auth` package and its "Securing rqlite" guide),
//! plus Cairn's `schema`, as a small bit set.

use std::fmt;

/// One permission, spelled in an auth file as its [`Perm::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Perm {
    /// Every permission.
    All,
    /// Write statements: `/db/execute`, REST row writes, the seeds' inserts, updates and
    /// deletes.
    Execute,
    /// Read statements: `/db/query`, REST reads, the seeds' selects and counts.
    Query,
    /// Replace a database: `/db/load`.
    Load,
    /// Download a database: `/db/backup`.
    Backup,
    /// Cluster and node state: `/status`, `/nodes`, `GET /leader`, `/metadata`.
    Status,
    /// Health checks: `/readyz`, `/health`, `/ping`.
    Ready,
    /// Add a node: `POST /join` (which also needs the cluster secret).
    Join,
    /// Add a read-only node. Cairn has no read-only (learner) joins yet, so this grants
    /// nothing today; accepted so that rqlite auth files load.
    JoinReadOnly,
    /// Remove a node: `DELETE /remove`.
    Remove,
    /// Move leadership: `POST /leader`.
    LeaderOps,
    /// Trigger a snapshot. Cairn has no such route yet; accepted for rqlite files.
    Snapshot,
    /// The API description (`/v1/openapi.json`) and, later, the web console.
    Ui,
    /// Cairn's own: create and drop databases and tables, alter tables.
    Schema,
}

impl Perm {
    /// Every permission, in declaration order.
    pub const ALL: [Perm; 14] = [
        Perm::All,
        Perm::Execute,
        Perm::Query,
        Perm::Load,
        Perm::Backup,
        Perm::Status,
        Perm::Ready,
        Perm::Join,
        Perm::JoinReadOnly,
        Perm::Remove,
        Perm::LeaderOps,
        Perm::Snapshot,
        Perm::Ui,
        Perm::Schema,
    ];

    /// The name used in auth files, e.g. `leader-ops`.
    pub fn name(self) -> &'static str {
        match self {
            Perm::All => "all",
            Perm::Execute => "execute",
            Perm::Query => "query",
            Perm::Load => "load",
            Perm::Backup => "backup",
            Perm::Status => "status",
            Perm::Ready => "ready",
            Perm::Join => "join",
            Perm::JoinReadOnly => "join-read-only",
            Perm::Remove => "remove",
            Perm::LeaderOps => "leader-ops",
            Perm::Snapshot => "snapshot",
            Perm::Ui => "ui",
            Perm::Schema => "schema",
        }
    }

    /// The permission named `name`, if any.
    pub fn from_name(name: &str) -> Option<Perm> {
        Perm::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether a grant can be limited to one database (`{"db": .., "perms": [..]}`): the
    /// permissions on data and schema. Cluster permissions are node-wide.
    pub fn is_per_database(self) -> bool {
        matches!(
            self,
            Perm::All | Perm::Execute | Perm::Query | Perm::Load | Perm::Backup | Perm::Schema
        )
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of permissions. Holding [`Perm::All`] means holding every permission (within a
/// per-database grant: every per-database permission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermSet(u16);

impl PermSet {
    /// No permission.
    pub const EMPTY: PermSet = PermSet(0);

    /// Adds `perm`.
    pub fn insert(&mut self, perm: Perm) {
        self.0 |= perm.bit();
    }

    /// Adds every permission of `other`.
    pub fn extend(&mut self, other: PermSet) {
        self.0 |= other.0;
    }

    /// Whether the set grants `perm` (directly or through `all`).
    pub fn allows(self, perm: Perm) -> bool {
        self.0 & (perm.bit() | Perm::All.bit()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Perm> for PermSet {
    fn from_iter<I: IntoIterator<Item = Perm>>(iter: I) -> Self {
        let mut set = PermSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_all_implies_everything() {
        for p in Perm::ALL {
            assert_eq!(Perm::from_name(p.name()), Some(p));
        }
        assert_eq!(Perm::from_name("leader_ops"), None);
        let all: PermSet = [Perm::All].into_iter().collect();
        assert!(Perm::ALL.iter().all(|&p| all.allows(p)));
        let q: PermSet = [Perm::Query].into_iter().collect();
        assert!(q.allows(Perm::Query));
        assert!(!q.allows(Perm::Execute));
        assert!(!PermSet::EMPTY.allows(Perm::Query));
    }
}
