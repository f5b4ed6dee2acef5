//! Membership: clusters formed by --bootstrap-expect, nodes joining through any member,
//! nodes removed.

use cairn_testkit::{
    wait_for, Cluster, ClusterOptions, Formation, Level, TestCluster, LEADER_TIMEOUT,
};
use serde_json::json;

#[test]
fn bootstrap_expect_forms_one_cluster_from_nodes_started_together() {
    let c = TestCluster::start_with(ClusterOptions {
        nodes: 3,
        formation: Formation::BootstrapExpect,
        ..ClusterOptions::default()
    })
    .expect("three nodes started with --bootstrap-expect 3 form a cluster");
    let leader = c.leader().expect("a leader is elected");
    let leader_id = c.id(leader);

    // One cluster: every node knows the same leader and the same three voters.
    wait_for(LEADER_TIMEOUT, "every node to agree on the leader", || {
        for i in c.running() {
            let s = c.raft_status(i).map_err(|e| format!("{e:#}"))?;
            if s.leader_id != Some(leader_id) || s.voters != vec![1, 2, 3] {
                return Err(format!("node {}: {s:?}", c.id(i)));
            }
        }
        Ok(())
    })
    .expect("all nodes agree");
    let leaders = c
        .running()
        .into_iter()
        .filter(|&i| c.raft_status(i).is_ok_and(|s| s.state == "Leader"))
        .count();
    assert_eq!(leaders, 1, "exactly one leader");

    let f = c.followers().expect("followers")[0];
    c.execute_ok(f, &json!(["CREATE TABLE t (x)", "INSERT INTO t VALUES(1)"]))
        .expect("a write through a follower");
    for i in c.running() {
        c.wait_rows(i, "SELECT x FROM t", &json!([[1]]))
            .expect("every node has the row");
    }
}

#[test]
fn a_node_joins_through_a_follower_and_can_be_removed() {
    let mut c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    c.execute_ok(
        leader,
        &json!([
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
            ["INSERT INTO t(v) VALUES(?)", "a"],
            ["INSERT INTO t(v) VALUES(?)", "b"],
        ]),
    )
    .expect("setup writes");
    let f = c.followers().expect("followers")[0];

    // A new node joins by naming a follower, becomes a voter and gets the data.
    let new = c.add_node(f).expect("node 4 joins through a follower");
    c.wait_voters(&[1, 2, 3, 4]).expect("four voters");
    let sql = "SELECT id, v FROM t ORDER BY id";
    c.wait_rows(new, sql, &json!([[1, "a"], [2, "b"]]))
        .expect("the new node has the existing rows");
    c.execute_ok(new, &json!([["INSERT INTO t(v) VALUES(?)", "c"]]))
        .expect("a write through the new node");
    let three = json!([[1, "a"], [2, "b"], [3, "c"]]);
    for i in c.running() {
        c.wait_rows(i, sql, &three).expect("every node has the row");
    }

    // Removed, it is no longer a voter nor listed, and the others carry on.
    let new_id = c.id(new).to_string();
    let r = c
        .delete(leader, "/remove", Some(&json!({"id": new_id})))
        .expect("DELETE /remove");
    assert_eq!(r.status, 200, "{r}");
    c.wait_voters(&[1, 2, 3]).expect("three voters again");
    let r = c.get(leader, "/nodes", &[]).expect("/nodes");
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.get(&new_id).is_none(), "node 4 is not listed: {r}");
    assert!(r.body.get("1").is_some(), "{r}");
    c.stop(new).expect("stop the removed node");

    c.execute_ok(leader, &json!([["INSERT INTO t(v) VALUES(?)", "d"]]))
        .expect("the cluster still takes writes");
    assert_eq!(
        c.query_rows(f, "SELECT COUNT(*) FROM t", Level::Linearizable)
            .expect("count"),
        json!([[4]])
    );
}

/// A join that names a member's address under a new id is refused: Raft's messages name no
/// target id, so the member would answer for both ids and vote twice.
#[test]
fn a_join_reusing_a_members_address_is_refused() {
    let c = TestCluster::start(3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let f = c.followers().expect("followers")[0];
    let client = cairn_testkit::HttpClient::new().expect("a client");
    let r = client
        .post_with_headers(
            &c.url(leader),
            "/join",
            &[(cairn_node::SECRET_HEADER, c.secret())],
            &json!({"id": 9, "http_addr": "127.0.0.1:1", "raft_addr": c.raft_addr(f).to_string()}),
        )
        .expect("answered");
    assert_eq!(r.status, 400, "{r}");
    assert!(r.text.contains("already a member"), "{r}");
    let s = c.raft_status(leader).expect("status");
    assert_eq!(s.voters, vec![1, 2, 3], "{s:?}");
    assert!(s.learners.is_empty(), "{s:?}");
}
