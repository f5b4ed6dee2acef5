//! A real full disk: the whole cluster (three nodes sharing one disk) runs on a small tmpfs
//! that the test fills. Needs permission to mount (root); without it the test prints why
//! and passes without checking anything. `full_disk.rs` covers the same promises with an
//! injected `ENOSPC` that always runs.
//!
//! What a full disk does today: the first durable write to fail is usually the Raft log's
//! append; openraft treats a log I/O error as fatal, so that node's Raft stops (fail-stop:
//! nothing is written half, nothing applied out of order) and the node needs a restart
//! once space returns. The test checks what users rely on: writes fail with a stable code
//! whose outcome is honest, nodes stay up and answer, no acknowledged write is lost, and
//! after space returns and the nodes restart, writes succeed and the replicas are identical.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_testkit::{assert_replicas_identical, Cluster, ProcessCluster, LEADER_TIMEOUT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// Size of the tmpfs, in MiB: room for three nodes' files, small enough to fill fast.
const SIZE_MIB: u32 = 48;

/// Codes a write may fail with on a full disk: the outcome is unknown when the entry may
/// be in a log, and "changed nothing" when no leader took it.
const FULL_DISK_CODES: [&str; 4] = ["outcome_unknown", "no_leader", "not_applied", "timeout"];

/// A tmpfs mounted by the test; unmounted (lazily, so that a leftover open file cannot
/// block it) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `SIZE_MIB` on a new directory, or says why it cannot.
    fn mount() -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("cairn-full-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={SIZE_MIB}m"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(Tmpfs(dir)),
            Ok(o) => {
                let _ = std::fs::remove_dir(&dir);
                Err(format!(
                    "mount -t tmpfs failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(format!("cannot run mount: {e}"))
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` with one file, until a write fails; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
    path
}

#[test]
fn a_real_full_disk_fails_writes_honestly_and_loses_nothing() {
    if !cfg!(target_os = "linux") {
        println!("skipping: tmpfs mounts are Linux-only");
        return;
    }
    let tmpfs = match Tmpfs::mount() {
        Ok(t) => t,
        Err(why) => {
            println!("skipping the real full-disk test: {why}");
            return;
        }
    };
    // The cluster's directory (every node's data) goes on the tmpfs. The only test in this
    // binary, so no other test reads TMPDIR meanwhile.
    std::env::set_var("TMPDIR", &tmpfs.0);
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster on the tmpfs starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, pad BLOB)"]),
    )
    .expect("create");
    let mut acked = Vec::new();
    for k in 0..5 {
        let v = format!("before {k}");
        c.execute_ok(l, &json!([["INSERT INTO t(v) VALUES (?)", &v]]))
            .expect("a write before the disk fills");
        acked.push(v);
    }
    c.wait_all_applied().expect("every node applies");

    let filler = fill(&tmpfs.0);
    let mut failures = Vec::new();
    for k in 0..20 {
        let v = format!("full {k}");
        let r = c
            .execute_with(
                l,
                &[("timeout", "2s")],
                &json!([["INSERT INTO t(v, pad) VALUES (?, randomblob(100000))", &v]]),
            )
            .expect("the node answers with a full disk");
        if r.is_clean() {
            acked.push(v);
            continue;
        }
        let code = r.code().unwrap_or_default().to_string();
        assert!(
            FULL_DISK_CODES.contains(&code.as_str()),
            "a write on a full disk fails with a stable code: {r}"
        );
        failures.push(code);
        if failures.len() >= 3 {
            break;
        }
    }
    assert!(!failures.is_empty(), "writes fail once the disk is full");
    println!("writes on the full disk failed with: {failures:?}");
    for i in 0..3 {
        c.get(i, "/status", &[])
            .unwrap_or_else(|e| panic!("node {} still answers on a full disk: {e:#}", c.id(i)));
    }

    // Space returns; a node whose Raft stopped on the log error needs a restart.
    std::fs::remove_file(&filler).expect("free the space");
    for i in 0..3 {
        c.stop(i).expect("a node exits on SIGTERM");
    }
    for i in 0..3 {
        c.restart(i).expect("restart");
    }
    for i in 0..3 {
        c.wait_ready(i)
            .expect("the node starts on its data after the full disk");
    }
    let l = c.leader_within(LEADER_TIMEOUT).expect("a leader");
    c.execute_ok(l, &json!([["INSERT INTO t(v) VALUES (?)", "after"]]))
        .expect("writes succeed once space returns");
    acked.push("after".to_string());
    let all = assert_replicas_identical(&c, "main");
    let rows = all[0].tables["t"]["rows"].to_string();
    for v in &acked {
        assert!(
            rows.contains(v.as_str()),
            "acknowledged write {v:?} is present"
        );
    }
    drop(c);
}
