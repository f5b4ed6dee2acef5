//! `cairn sql` against a 3-node cluster of real processes: typed into a pseudo-terminal
//! (create, insert over two lines, select as an aligned table, dot-commands, a syntax
//! error, tab completion, then the leader killed while the shell is open), and fed a
//! script on stdin.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use cairn_testkit::{wait_for, Cluster, ProcessCluster};
use expectrl::session::OsSession;
use expectrl::{Eof, Expect, Session};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// How long one answer may take to appear: a statement right after the leader is killed
/// waits for an election and a retry, on a loaded 2-core machine with debug builds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(45);

/// How long a `cairn sql` run on a script may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Waits for `text` in the shell's output; on failure says what was expected.
#[track_caller]
fn expect(shell: &mut OsSession, text: &str) {
    if let Err(e) = shell.expect(text) {
        panic!("the shell did not print {text:?}: {e}");
    }
}

/// Types `line` and Enter once the shell shows a prompt (`/main> `, or `...> ` inside a
/// statement): input typed before rustyline puts the terminal in raw mode reaches it as
/// cooked text, which it does not take as a finished line.
#[track_caller]
fn send_line(shell: &mut OsSession, line: &str) {
    expect(shell, "> ");
    if let Err(e) = shell.send_line(line) {
        panic!("typing {line:?}: {e}");
    }
}

#[test]
fn the_shell_in_a_terminal_runs_statements_and_survives_a_leader_kill() {
    let mut cluster = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = cluster.leader().expect("a leader");
    let home = tempfile::tempdir().expect("a temporary directory");
    let history = home.path().join("history");

    // The shell talks to the leader, which the test kills later.
    let mut command = Command::new(BIN);
    command
        .arg("sql")
        .arg("--addr")
        .arg(cluster.url(leader))
        .arg("--history")
        .arg(&history)
        .env("TERM", "xterm")
        .env("HOME", home.path())
        .env_remove("RUST_BACKTRACE");
    let mut shell = Session::spawn(command).expect("cairn sql starts in a pseudo-terminal");
    shell.set_expect_timeout(Some(ANSWER_TIMEOUT));
    expect(&mut shell, "Connected to");
    expect(&mut shell, "Enter .help");

    send_line(
        &mut shell,
        "CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT, price REAL);",
    );
    expect(&mut shell, "0 rows affected");

    // One statement over two lines; the `;` inside the string does not end it.
    send_line(&mut shell, "INSERT INTO fruit(name, price)");
    send_line(&mut shell, "VALUES ('apple', 1.5), ('kiwi; green', NULL);");
    expect(&mut shell, "2 rows affected, last insert id 2");

    send_line(&mut shell, "SELECT * FROM fruit ORDER BY id;");
    for line in [
        "+----+-------------+-------+",
        "| id | name        | price |",
        "+----+-------------+-------+",
        "|  1 | apple       |   1.5 |",
        "|  2 | kiwi; green | NULL  |",
        "+----+-------------+-------+",
    ] {
        expect(&mut shell, line);
    }

    send_line(&mut shell, ".tables");
    expect(&mut shell, "| fruit |");
    send_line(&mut shell, ".schema fruit");
    expect(
        &mut shell,
        "CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT, price REAL);",
    );

    // A syntax error is one line, and the shell keeps going.
    send_line(&mut shell, "SELEC nonsense;");
    expect(&mut shell, "ERROR: sql_error: near \"SELEC\": syntax error");
    send_line(&mut shell, "SELECT 'still here' AS alive;");
    expect(&mut shell, "| still here |");

    // Tab completes a column name read from the schema: `pri` becomes `price`.
    expect(&mut shell, "> ");
    shell.send("SELECT pri").expect("typing");
    shell.send("\t").expect("pressing tab");
    shell
        .send_line(" FROM fruit WHERE id = 1;")
        .expect("typing the rest");
    expect(&mut shell, "| price |");
    expect(&mut shell, "|   1.5 |");

    // Kill the node the shell talks to: the next write finds the new leader and runs once.
    cluster.kill(leader).expect("the leader is killed");
    send_line(
        &mut shell,
        "INSERT INTO fruit(name, price) VALUES ('after the kill', 2);",
    );
    expect(&mut shell, "(now talking to");
    expect(&mut shell, "1 row affected, last insert id 3");
    send_line(&mut shell, "SELECT name FROM fruit WHERE id >= 3;");
    expect(&mut shell, "| after the kill |");
    let new_leader = cluster.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    let rows = cluster
        .query_rows(
            new_leader,
            "SELECT count(*) FROM fruit WHERE name = 'after the kill'",
            cairn_testkit::Level::Strong,
        )
        .expect("the new leader answers");
    assert_eq!(rows, serde_json::json!([[1]]), "the write ran exactly once");

    send_line(&mut shell, ".quit");
    if let Err(e) = shell.expect(Eof) {
        panic!("the shell did not exit on .quit: {e}");
    }
    let saved = std::fs::read_to_string(&history).expect("the history file was written");
    assert!(saved.contains("CREATE TABLE fruit"), "history: {saved}");
    assert!(saved.contains(".schema fruit"), "history: {saved}");
}

/// Runs `cairn ARGS` with `stdin` as its input (not a terminal), bounded by
/// [`RUN_TIMEOUT`]; returns its exit status, stdout and stderr.
fn run_cairn(args: &[&str], stdin: &str) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn starts");
    let mut input = child.stdin.take().expect("stdin");
    let script = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(script.as_bytes());
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let status = wait_for(RUN_TIMEOUT, "cairn to exit", || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".to_string()),
        Err(e) => Err(e.to_string()),
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}");
        }
    };
    let _ = writer.join();
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    (status, stdout, stderr)
}

#[test]
fn a_script_on_stdin_runs_statement_by_statement_and_fails_at_the_end() {
    let cluster = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let follower = cluster.followers().expect("followers")[0];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let included = dir.path().join("more.sql");
    std::fs::write(&included, "INSERT INTO log(msg) VALUES ('from .read');\n")
        .expect("writing the included file");
    let script = format!(
        "-- a comment before anything\n\
         CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT);\n\
         CREATE TABLE counter (n INTEGER);\n\
         INSERT INTO counter VALUES (0);\n\
         CREATE TRIGGER count_logs AFTER INSERT ON log BEGIN\n\
           UPDATE counter SET n = n + 1;\n\
         END;\n\
         INSERT INTO log(msg) VALUES ('one; with a semicolon'), ('two');\n\
         SELECT nope FROM log;\n\
         .read {}\n\
         .mode csv\n\
         SELECT id, msg FROM log ORDER BY id;\n\
         SELECT n FROM counter",
        included.display()
    );
    // Through a follower: the writes are forwarded to the leader.
    let (status, stdout, stderr) = run_cairn(
        &["sql", "--addr", &cluster.url(follower), "--no-history"],
        &script,
    );
    assert!(
        !status.success(),
        "a failed statement fails the run: {stderr}"
    );
    assert_eq!(
        stdout,
        "0 rows affected\n\
         0 rows affected\n\
         1 row affected, last insert id 1\n\
         0 rows affected\n\
         2 rows affected, last insert id 2\n\
         1 row affected, last insert id 3\n\
         id,msg\n\
         1,one; with a semicolon\n\
         2,two\n\
         3,from .read\n\
         n\n\
         3\n",
        "stderr: {stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR:")).collect();
    assert_eq!(
        errors,
        ["ERROR: sql_error: no such column: nope"],
        "one error line per failed statement: {stderr}"
    );

    // A clean script exits 0; `--bail` stops at the first error.
    let (status, stdout, _) = run_cairn(
        &[
            "sql",
            "--addr",
            &cluster.url(follower),
            "--no-history",
            "--mode",
            "line",
        ],
        "SELECT count(*) AS rows_now FROM log;",
    );
    assert!(status.success());
    assert_eq!(stdout, "rows_now = 3\n\n");
    let (status, stdout, stderr) = run_cairn(
        &[
            "sql",
            "--addr",
            &cluster.url(follower),
            "--no-history",
            "--bail",
        ],
        "SELECT x;\nINSERT INTO log(msg) VALUES ('never');\n",
    );
    assert!(!status.success());
    assert_eq!(stdout, "", "nothing ran after the error: {stderr}");
    let (_, stdout, _) = run_cairn(
        &["sql", "--addr", &cluster.url(follower), "--no-history"],
        ".mode json\nSELECT count(*) AS n FROM log WHERE msg = 'never';",
    );
    assert_eq!(stdout, "[{\"n\":0}]\n");

    // Dot-commands about the cluster and the data, through a follower.
    let (status, stdout, stderr) = run_cairn(
        &["sql", "--addr", &cluster.url(follower), "--no-history"],
        ".nodes\n.leader\n.dump\n.consistency linearizable\n.consistency\n",
    );
    assert!(status.success(), "{stderr}");
    for i in 0..3 {
        assert!(
            stdout.contains(&format!("| {} ", cluster.url(i))),
            "{stdout}"
        );
    }
    let leader = cluster.leader().expect("a leader");
    assert!(
        stdout.contains(&format!(
            "leader: node {} at {}",
            cluster.id(leader),
            cluster.url(leader)
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT);"),
        "{stdout}"
    );
    assert!(
        stdout.contains("INSERT INTO \"log\" VALUES(3,'from .read');"),
        "{stdout}"
    );
    assert!(stdout.ends_with("linearizable\n"), "{stdout}");

    // An unclosed string at the end is reported, not sent.
    let (status, _, stderr) = run_cairn(
        &["sql", "--addr", &cluster.url(follower), "--no-history"],
        "SELECT 'open",
    );
    assert!(!status.success());
    assert!(stderr.contains("ERROR: incomplete_input"), "{stderr}");
}
