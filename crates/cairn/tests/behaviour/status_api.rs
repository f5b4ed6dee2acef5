//! Observability endpoints: /status, /nodes, /leader and /readyz describe the cluster the
//! way operators and rqlite clients read them.

use cairn_testkit::{wait_for, Cluster, Level, RaftStatus, TestCluster, CATCH_UP_TIMEOUT};
use serde_json::{json, Value};

/// Checks one entry of `/nodes` against what the harness knows of node `i`.
fn check_node_entry(c: &TestCluster, i: usize, leader: usize, entry: &Value) {
    let id = c.id(i);
    assert_eq!(entry["id"], Value::from(id.to_string()), "{entry}");
    assert_eq!(entry["api_addr"], Value::from(c.url(i)), "{entry}");
    assert_eq!(
        entry["addr"],
        Value::from(c.raft_addr(i).to_string()),
        "{entry}"
    );
    assert_eq!(entry["voter"], true, "{entry}");
    assert_eq!(entry["reachable"], true, "{entry}");
    assert_eq!(entry["leader"], i == leader, "{entry}");
}

#[test]
fn status_nodes_leader_and_readyz_describe_the_cluster() {
    let mut c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    c.wait_all_applied().expect("every node catches up");

    // /status: the node itself and its view of Raft.
    for i in c.running() {
        let s = c.status(i).expect("/status");
        assert_eq!(s["node"]["id"], c.id(i), "{s}");
        assert_eq!(
            s["node"]["http_addr"],
            Value::from(c.http_addr(i).to_string()),
            "{s}"
        );
        assert_eq!(
            s["node"]["raft_addr"],
            Value::from(c.raft_addr(i).to_string()),
            "{s}"
        );
        assert!(s["store"].is_object(), "a store section: {s}");
        let raft = RaftStatus::from_status(&s).expect("the raft section parses");
        let want_state = if i == leader { "Leader" } else { "Follower" };
        assert_eq!(raft.state, want_state, "node {}: {raft:?}", c.id(i));
        assert_eq!(raft.leader_id, Some(c.id(leader)), "{raft:?}");
        assert_eq!(raft.voters, vec![1, 2, 3], "{raft:?}");
        assert!(raft.learners.is_empty(), "{raft:?}");
        assert!(raft.term >= 1, "{raft:?}");
        assert!(raft.applied_index <= raft.commit_index, "{raft:?}");
        assert!(raft.commit_index <= raft.last_log_index, "{raft:?}");
        assert!(
            raft.commit_index >= 1,
            "formation committed entries: {raft:?}"
        );
    }

    // /nodes, legacy map form and ?ver=2 list form, on the leader and on a follower.
    let f = c.followers().expect("followers")[0];
    for i in [leader, f] {
        // Reachability is probed; wait until every node has been seen.
        let nodes = wait_for(CATCH_UP_TIMEOUT, "every node reachable in /nodes", || {
            let r = c.get(i, "/nodes", &[]).map_err(|e| format!("{e:#}"))?;
            let all = r
                .body
                .as_object()
                .is_some_and(|m| m.len() == 3 && m.values().all(|n| n["reachable"] == true));
            if r.status == 200 && all {
                Ok(r.body)
            } else {
                Err(r.to_string())
            }
        })
        .expect("/nodes lists three reachable nodes");
        for k in 0..3 {
            let entry = &nodes[c.id(k).to_string()];
            check_node_entry(&c, k, leader, entry);
        }

        let r = c.get(i, "/nodes", &[("ver", "2")]).expect("/nodes?ver=2");
        assert_eq!(r.status, 200, "{r}");
        let list = r.body["nodes"].as_array().expect("a nodes array");
        assert_eq!(list.len(), 3, "{r}");
        for k in 0..3 {
            let id = c.id(k).to_string();
            let entry = list
                .iter()
                .find(|n| n["id"] == id.as_str())
                .expect("every node is listed");
            check_node_entry(&c, k, leader, entry);
        }
    }

    // /leader, from every node.
    for i in c.running() {
        let r = c.get(i, "/leader", &[]).expect("/leader");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(
            r.body["leader"],
            json!({
                "id": c.id(leader).to_string(),
                "api_addr": c.url(leader),
                "addr": c.raft_addr(leader).to_string(),
            }),
            "{r}"
        );
    }

    // /readyz, from every node.
    for i in c.running() {
        let r = c.get(i, "/readyz", &[]).expect("/readyz");
        assert_eq!(r.status, 200, "{r}");
        for line in ["[+]node ok", "[+]leader ok", "[+]store ok"] {
            assert!(r.text.contains(line), "node {}: {r}", c.id(i));
        }
    }

    // /readyz?sync returns once the node has applied what the leader committed, so a
    // local read right after it sees a write just acknowledged by the leader.
    c.execute_ok(
        leader,
        &json!(["CREATE TABLE t (x)", "INSERT INTO t VALUES(42)"]),
    )
    .expect("a write");
    for i in c.followers().expect("followers") {
        let r = c.get(i, "/readyz", &[("sync", "")]).expect("/readyz?sync");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(
            c.query_rows(i, "SELECT x FROM t", Level::None)
                .expect("local read"),
            json!([[42]]),
            "node {} applied the write before /readyz?sync answered",
            c.id(i)
        );
    }

    // A stopped node is reported unreachable by the leader.
    c.stop(f).expect("stop a follower");
    let fid = c.id(f).to_string();
    wait_for(
        CATCH_UP_TIMEOUT,
        "the stopped node to be unreachable",
        || {
            let r = c.get(leader, "/nodes", &[]).map_err(|e| format!("{e:#}"))?;
            if r.status == 200 && r.body[&fid]["reachable"] == false {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    )
    .expect("/nodes reports the stopped node unreachable");
}
