//! Crash windows: a node started with `CAIRN_CRASH_AT=<point>` aborts at that named durable
//! step (see `cairn_sql::crash` for the list and for how the test build gets them). Restarted
//! without it, the node must rejoin, hold every acknowledged write, end identical to the other
//! replicas, and read its log back.
//!
//! Points covered: appending to and fsyncing the Raft log, saving a vote, truncating a
//! conflicting suffix and purging the log, committing an applied entry and saving the
//! applied state, each step of installing a snapshot and of a `/db/load`.

use std::time::Duration;

use std::collections::BTreeSet;

use cairn_testkit::{
    assert_replicas_identical, wait_for, Cluster, ClusterOptions, ProcessCluster, CATCH_UP_TIMEOUT,
    LEADER_TIMEOUT,
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

const THRESHOLD: u64 = 20;
/// Entries written while a follower is down: enough for the leader to snapshot and purge
/// past it several times.
const ROWS: u64 = 50;

/// How long a node started with a crash point may take to reach it and exit.
const CRASH_TIMEOUT: Duration = CATCH_UP_TIMEOUT;

/// Waits for node `f`, started with `CAIRN_CRASH_AT=point`, to exit; fails at once when
/// it applies `target` without having crashed (the point was never reached).
fn wait_crash(c: &mut ProcessCluster, f: usize, point: &str, target: u64) {
    let status = c
        .wait_exit(f, CRASH_TIMEOUT, |c| {
            c.raft_status(f)
                .ok()
                .filter(|s| s.applied_index >= target)
                .map(|s| {
                    format!(
                        "it applied index {} (>= {target}) without crashing at {point}",
                        s.applied_index
                    )
                })
        })
        .unwrap_or_else(|e| panic!("node {} exits at crash point {point}: {e:#}", c.id(f)));
    assert!(
        !status.success(),
        "a crash point aborts the process, it does not exit cleanly: {status}"
    );
}

fn row_count(all: &[cairn_testkit::ReplicaContents]) -> usize {
    all[0].tables["t"]["rows"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_crash_at_each_step_of_a_snapshot_install_recovers_to_a_committed_index() {
    let mut c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            nodes: 3,
            snapshot_threshold: Some(THRESHOLD),
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster with a small snapshot threshold starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .expect("create");
    c.wait_all_applied().expect("every node applies");
    let f = c.followers().expect("followers")[0];
    let mut written = 0u64;

    for point in ["snapshot.unpacked", "snapshot.swapped", "snapshot.recorded"] {
        let stopped_at = c.raft_status(f).expect("status").applied_index;
        c.stop(f).expect("the follower exits on SIGTERM");
        for k in 0..ROWS {
            c.execute_ok(
                l,
                &json!([["INSERT INTO t(v) VALUES (?)", format!("{point} {k}")]]),
            )
            .expect("a write with one node down");
            written += 1;
        }
        // The leader snapshotted and purged past the stopped follower, so the follower
        // can only catch up by installing a snapshot.
        wait_for(CATCH_UP_TIMEOUT, "the leader to snapshot and purge", || {
            let s = c.raft_status(l).map_err(|e| format!("{e:#}"))?;
            if s.purged_index.is_some_and(|x| x > stopped_at) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        })
        .expect("the leader compacts its log past the stopped follower");
        let target = c.raft_status(l).expect("status").commit_index;

        c.restart_with_env(f, &[("CAIRN_CRASH_AT", point)])
            .expect("restart the follower with a crash point");
        wait_crash(&mut c, f, point, target);

        c.restart(f)
            .expect("restart the follower without the crash point");
        c.wait_ready(f)
            .unwrap_or_else(|e| panic!("the node starts after crashing at {point}: {e:#}"));
        let all = assert_replicas_identical(&c, "main");
        assert_eq!(
            row_count(&all),
            usize::try_from(written).expect("small"),
            "after a crash at {point}, every row is on every node"
        );
    }
}

#[test]
fn a_crash_at_each_step_of_a_load_recovers_to_a_committed_index() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!([
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            "INSERT INTO t(v) VALUES ('a')",
            "INSERT INTO t(v) VALUES ('b')"
        ]),
    )
    .expect("setup");
    c.wait_all_applied().expect("every node applies");
    let (status, backup) = c.get_bytes(l, "/db/backup", &[]).expect("GET /db/backup");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&backup));
    assert!(
        backup.starts_with(b"SQLite format 3\0"),
        "the backup is a SQLite file"
    );
    let f = c.followers().expect("followers")[0];

    for point in ["load.written", "load.swapped"] {
        // A write after the backup, so that loading it changes the data.
        c.execute_ok(
            l,
            &json!([[
                "INSERT INTO t(v) VALUES (?)",
                format!("before load at {point}")
            ]]),
        )
        .expect("a write after the backup");
        c.stop(f).expect("the follower exits on SIGTERM");
        c.restart_with_env(f, &[("CAIRN_CRASH_AT", point)])
            .expect("restart the follower with a crash point");
        c.wait_ready(f).expect("the follower serves until the load");
        c.wait_all_applied().expect("every node applies");

        let r = c
            .post_bytes(
                l,
                "/db/load",
                &[],
                "application/octet-stream",
                backup.clone(),
            )
            .expect("POST /db/load");
        assert!(r.is_clean(), "the load is applied: {r}");
        let target = c.raft_status(l).expect("status").commit_index;
        wait_crash(&mut c, f, point, target);

        c.restart(f)
            .expect("restart the follower without the crash point");
        c.wait_ready(f)
            .unwrap_or_else(|e| panic!("the node starts after crashing at {point}: {e:#}"));
        let all = assert_replicas_identical(&c, "main");
        assert_eq!(
            all[0].tables["t"]["rows"],
            json!([[1, "a"], [2, "b"]]),
            "after a crash at {point}, every node holds exactly the loaded data"
        );
    }
}

/// A snapshot threshold that makes a follower snapshot, save its applied state and purge
/// its log every few writes.
const SMALL_THRESHOLD: u64 = 10;

/// Most writes [`write_until_crash`] sends before it gives up on the crash point.
const MAX_WRITES: u32 = 300;

/// Starts a 3-node cluster with table `t (id, v)`; returns it and the leader's index.
fn cluster_with_table(snapshot_threshold: Option<u64>) -> (ProcessCluster, usize) {
    let c = ProcessCluster::start_with(
        BIN,
        ClusterOptions {
            nodes: 3,
            snapshot_threshold,
            ..ClusterOptions::default()
        },
    )
    .expect("a 3-node cluster starts");
    let l = c.leader().expect("a leader");
    c.execute_ok(
        l,
        &json!(["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .expect("create");
    c.wait_all_applied().expect("every node applies");
    (c, l)
}

/// Writes the row `v` through node `i`; `true` when the write was acknowledged.
fn insert(c: &ProcessCluster, i: usize, v: &str) -> bool {
    c.execute(i, &json!([["INSERT INTO t(v) VALUES (?)", v]]))
        .is_ok_and(|r| r.is_clean())
}

/// Restarts follower `f` with `CAIRN_CRASH_AT=point` and writes rows through the leader `l`,
/// one per poll, until `f` exits; the acknowledged rows' values are added to `acked`.
fn write_until_crash(
    c: &mut ProcessCluster,
    l: usize,
    f: usize,
    point: &str,
    acked: &mut Vec<String>,
) {
    c.restart_with_env(f, &[("CAIRN_CRASH_AT", point)])
        .expect("restart the follower with a crash point");
    let mut k = 0u32;
    let status = c
        .wait_exit(f, CRASH_TIMEOUT, |c| {
            if k >= MAX_WRITES {
                return Some(format!(
                    "{k} writes went through without a crash at {point}"
                ));
            }
            let v = format!("{point} {k}");
            k += 1;
            if insert(c, l, &v) {
                acked.push(v);
            }
            None
        })
        .unwrap_or_else(|e| panic!("node {} exits at crash point {point}: {e:#}", c.id(f)));
    assert!(
        !status.success(),
        "a crash point aborts the process, it does not exit cleanly: {status}"
    );
}

/// Restarts node `i` normally after its crash at `point` and checks what users rely on: it
/// starts and rejoins, every replica holds the same data, every acknowledged row is there,
/// and the node reads its log (it reports a last log index and applies up to the commit).
fn recover_and_check(c: &mut ProcessCluster, i: usize, point: &str, acked: &[String]) {
    c.restart(i).expect("restart without the crash point");
    c.wait_ready(i)
        .unwrap_or_else(|e| panic!("the node starts after crashing at {point}: {e:#}"));
    let all = assert_replicas_identical(c, "main");
    assert_eq!(
        all.len(),
        c.running().len(),
        "every running node was compared"
    );
    let present: BTreeSet<String> = all[0].tables["t"]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&String> = acked.iter().filter(|v| !present.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "after a crash at {point}, acknowledged writes are missing: {missing:?}"
    );
    let s = c.raft_status(i).expect("status");
    assert!(
        s.last_log_index >= s.commit_index
            && s.commit_index >= s.applied_index
            && s.applied_index > 0,
        "after a crash at {point}, node {} reads its log and applies it: {s:?}",
        c.id(i)
    );
}

#[test]
fn a_follower_crashing_at_each_step_of_appending_and_applying_recovers() {
    let (mut c, l) = cluster_with_table(None);
    let f = c.followers().expect("followers")[0];
    let mut acked = Vec::new();
    for point in [
        "log.append.before",
        "log.append.after",
        "log.flush.before",
        "log.flush.after",
        "sm.commit.before",
        "sm.commit.after",
    ] {
        c.stop(f).expect("the follower exits on SIGTERM");
        write_until_crash(&mut c, l, f, point, &mut acked);
        recover_and_check(&mut c, f, point, &acked);
    }
}

#[test]
fn a_follower_crashing_while_saving_its_applied_state_or_purging_its_log_recovers() {
    let (mut c, l) = cluster_with_table(Some(SMALL_THRESHOLD));
    let f = c.followers().expect("followers")[0];
    let mut acked = Vec::new();
    // Every SMALL_THRESHOLD entries the follower snapshots (saving its applied state) and then
    // purges the log the snapshot covers.
    for point in [
        "sm.applied.before",
        "sm.applied.after",
        "log.purge.before",
        "log.purge.after",
    ] {
        c.stop(f).expect("the follower exits on SIGTERM");
        write_until_crash(&mut c, l, f, point, &mut acked);
        recover_and_check(&mut c, f, point, &acked);
    }
}

#[test]
fn a_node_crashing_while_saving_its_vote_recovers() {
    let (mut c, _) = cluster_with_table(None);
    let mut acked = Vec::new();
    for point in ["vote.save.before", "vote.save.after"] {
        let l = c.leader_within(LEADER_TIMEOUT).expect("a leader");
        for k in 0..5 {
            let v = format!("before {point} {k}");
            c.execute_ok(l, &json!([["INSERT INTO t(v) VALUES (?)", &v]]))
                .expect("a write");
            acked.push(v);
        }
        let f = c.followers().expect("followers")[0];
        c.stop(f).expect("the follower exits on SIGTERM");
        c.restart_with_env(f, &[("CAIRN_CRASH_AT", point)])
            .expect("restart the follower with a crash point");
        // Once it is back (unless it already crashed saving a vote on the way), the leader
        // dies: the follower must vote, for itself or for the other follower.
        let killed = c.wait_ready(f).is_ok();
        if killed {
            c.kill(l).expect("kill the leader");
        }
        let status = c
            .wait_exit(f, CRASH_TIMEOUT, |_| None)
            .unwrap_or_else(|e| panic!("node {} exits at crash point {point}: {e:#}", c.id(f)));
        assert!(!status.success(), "the crash point aborts: {status}");
        recover_and_check(&mut c, f, point, &acked);
        if killed {
            c.restart(l).expect("restart the old leader");
            c.wait_ready(l).expect("the old leader starts");
        }
        let nl = c
            .leader_within(LEADER_TIMEOUT)
            .expect("a leader after the crash");
        let v = format!("after {point}");
        c.execute_ok(nl, &json!([["INSERT INTO t(v) VALUES (?)", &v]]))
            .expect("writes go on after the crash");
        acked.push(v);
        let all = assert_replicas_identical(&c, "main");
        assert_eq!(all.len(), 3, "every node holds the same data after {point}");
    }
}

#[test]
fn a_former_leader_crashing_while_truncating_its_unreplicated_entries_recovers() {
    let (mut c, _) = cluster_with_table(None);
    let mut acked = Vec::new();
    for point in ["log.truncate.before", "log.truncate.after"] {
        let l = c.leader_within(LEADER_TIMEOUT).expect("a leader");
        let v = format!("before {point}");
        c.execute_ok(l, &json!([["INSERT INTO t(v) VALUES (?)", &v]]))
            .expect("a write");
        acked.push(v);
        c.wait_all_applied().expect("every node applies");
        let followers = c.followers().expect("followers");
        // Both followers freeze at once (SIGSTOP; stopping them in turn takes a second or
        // more on a loaded machine): the leader's lease, renewed by their acks, lasts only
        // `election_timeout_max`, and once it has run out openraft refuses writes before
        // appending them (`ForwardReason::LeaseExpired`), so there would be nothing to
        // truncate.
        for &f in &followers {
            let pid = cairn_testkit::node_pid(&c, f).expect("the follower's pid");
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)
                .expect("SIGSTOP a follower");
        }
        // Alone, the leader appends these to its log but cannot commit them: they are never
        // acknowledged, and the next leader's entries replace them. Writes go on (at most
        // 20) until its log shows entries past its commit index: a write refused before it
        // was appended (the lease ran out) is not acknowledged either.
        let mut lost: Vec<String> = Vec::new();
        let mut answers: Vec<String> = Vec::new();
        for k in 0..20 {
            let v = format!("lost {point} {k}");
            let r = c
                .execute_with(
                    l,
                    &[("timeout", "500ms")],
                    &json!([["INSERT INTO t(v) VALUES (?)", &v]]),
                )
                .expect("the lone leader answers");
            assert!(
                !r.is_clean(),
                "a write without a quorum is not acknowledged: {r}"
            );
            lost.push(v);
            answers.push(format!("{} {}", r.status, r.text.trim()));
            let s = c.raft_status(l).expect("status");
            if lost.len() >= 3 && s.last_log_index > s.commit_index {
                break;
            }
        }
        let s = c.raft_status(l).expect("status");
        assert!(
            s.last_log_index > s.commit_index,
            "the lone leader holds uncommitted entries after {} writes: {s:?}; answers: {answers:#?}",
            lost.len()
        );
        c.stop(l).expect("the old leader exits on SIGTERM");
        for &f in &followers {
            // SIGKILL ends a stopped process too.
            c.kill(f).expect("kill a frozen follower");
            c.restart(f).expect("restart a follower");
        }
        let nl = c
            .leader_within(LEADER_TIMEOUT)
            .expect("the two followers elect a leader");
        let v = format!("new leader {point}");
        c.execute_ok(nl, &json!([["INSERT INTO t(v) VALUES (?)", &v]]))
            .expect("a write on the new leader");
        acked.push(v);
        let target = c.raft_status(nl).expect("status").commit_index;

        c.restart_with_env(l, &[("CAIRN_CRASH_AT", point)])
            .expect("restart the old leader with a crash point");
        wait_crash(&mut c, l, point, target);
        recover_and_check(&mut c, l, point, &acked);
        let all = assert_replicas_identical(&c, "main");
        let rows = all[0].tables["t"]["rows"].to_string();
        for v in &lost {
            assert!(
                !rows.contains(v.as_str()),
                "the unreplicated write {v:?} was truncated away after a crash at {point}: {rows}"
            );
        }
    }
}
