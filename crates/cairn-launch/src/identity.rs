//! `node.json`: what a node records about itself in its data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file name of a node's identity inside its data directory.
pub const NODE_JSON: &str = "node.json";

/// What a node records about itself in `<data-dir>/node.json` at each start, with the
/// addresses it actually bound (or advertises): `{"node_id": 1, "http_addr":
/// "127.0.0.1:4001", "raft_addr": "127.0.0.1:4002"}`.
///
/// `cairn start` writes it once both listeners are bound, and reads it on the next start
/// (the node ID and addresses a data directory belongs to); launchers read it to learn
/// the ports the OS chose.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The Raft node ID, a positive integer.
    pub node_id: u64,
    /// Bound (or advertised) HTTP address, `HOST:PORT`.
    pub http_addr: String,
    /// Bound (or advertised) Raft address, `HOST:PORT`.
    pub raft_addr: String,
}

impl NodeIdentity {
    /// `<data_dir>/node.json`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(NODE_JSON)
    }

    /// Reads `<data_dir>/node.json`; `Ok(None)` when there is none (a new data directory).
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be read, [`Error::Identity`] when it is not
    /// a node identity.
    pub fn read(data_dir: &Path) -> Result<Option<NodeIdentity>> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Identity { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes `<data_dir>/node.json` atomically: to `node.json.tmp`, then renamed, so a
    /// reader sees the old file or the new one, never half of one.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written or renamed.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let tmp = data_dir.join("node.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Identity {
            path: tmp.clone(),
            source,
        })?;
        std::fs::write(&tmp, bytes)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        let path = Self::path(data_dir);
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("renaming {} to node.json", tmp.display()), e))
    }

    /// The HTTP and Raft addresses as socket addresses, refusing port 0 (a node that has
    /// not bound yet). `Err` says why, in words.
    pub fn bound_addrs(&self) -> std::result::Result<(SocketAddr, SocketAddr), String> {
        let parse = |key: &str, s: &str| -> std::result::Result<SocketAddr, String> {
            let a: SocketAddr = s.parse().map_err(|e| format!("bad {key} {s:?}: {e}"))?;
            if a.port() == 0 {
                return Err(format!("{key} {s} has port 0"));
            }
            Ok(a)
        };
        Ok((
            parse("http_addr", &self.http_addr)?,
            parse("raft_addr", &self.raft_addr)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_identity_reads_back() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        assert_eq!(NodeIdentity::read(dir.path())?, None);
        let id = NodeIdentity {
            node_id: 3,
            http_addr: "127.0.0.1:7001".into(),
            raft_addr: "127.0.0.1:7002".into(),
        };
        id.write(dir.path())?;
        assert_eq!(NodeIdentity::read(dir.path())?, Some(id.clone()));
        assert!(id.bound_addrs().is_ok());
        let unbound = NodeIdentity {
            http_addr: "127.0.0.1:0".into(),
            ..id
        };
        assert!(unbound.bound_addrs().is_err());
        std::fs::write(NodeIdentity::path(dir.path()), "{\"node_id\": \"x\"}")
            .map_err(|e| Error::io("write", e))?;
        assert!(matches!(
            NodeIdentity::read(dir.path()),
            Err(Error::Identity { .. })
        ));
        Ok(())
    }
}
