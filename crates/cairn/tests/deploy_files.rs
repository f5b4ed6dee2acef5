//! The deployment files under `deploy/` say what `cairn start` accepts: every key of the
//! per-host TOML files (the commented ones too) passes the real config loader, and the
//! StatefulSet's start script turns a pod name into the node id, advertised DNS names and
//! peers that the real binary accepts.
//!
//! Nothing here listens: each `cairn start` is given an auth file that does not exist, which
//! the binary opens right after its settings are complete and before it binds anything, so
//! an error naming that file means every setting before it was accepted. (The host files
//! form a real cluster in `netns.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A command whose environment has no `CAIRN_*` variable of the machine running the test
/// (each would be read as a flag).
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAIRN_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Asserts that `cairn start` got past its settings: it failed on the missing auth file
/// `missing`, not on anything before it.
fn assert_settings_accepted(out: &Output, missing: &Path, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: cairn start ran: {stderr}");
    let name = missing
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        stderr.contains(&name),
        "{what}: cairn start failed before it opened the auth file: {stderr}"
    );
}

/// `text` with every commented setting (`# key = value`) made active.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` reads `key = value` with a key of lower-case letters and underscores.
fn is_setting(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

#[test]
fn every_host_file_is_accepted_by_cairn_start_with_its_commented_settings_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("cluster-secret");
    std::fs::write(&secret, "s3cret\n").expect("write the secret");
    let missing = dir.path().join("no-such-users.json");
    for k in 1..=3u32 {
        let path = deploy_dir().join(format!("hosts/node{k}.toml"));
        let text = read(&path);
        for needle in [
            format!("node_id = {k}\n"),
            format!("http_addr = \"10.0.0.1{k}:4001\"\n"),
            format!("raft_addr = \"10.0.0.1{k}:4002\"\n"),
            "join = [\"http://10.0.0.11:4001\", \"http://10.0.0.12:4001\", \"http://10.0.0.13:4001\"]\n"
                .to_string(),
            "bootstrap_expect = 3\n".to_string(),
        ] {
            assert!(text.contains(&needle), "{} lacks {needle:?}", path.display());
        }
        let all = uncommented(&text);
        assert!(
            all.contains("\nhttp_adv_addr = ") && all.contains("\nnode_ca_cert = "),
            "the commented settings of {} are found",
            path.display()
        );
        for (label, body) in [("as shipped", text.clone()), ("uncommented", all)] {
            let cfg = dir.path().join(format!("node{k}-{label}.toml"));
            std::fs::write(&cfg, &body).expect("write the config");
            let out = run(clean_command(BIN)
                .arg("start")
                .arg("--config")
                .arg(&cfg)
                // Flags win over the file: the host's paths stay unused on this machine.
                .arg("--data-dir")
                .arg(dir.path().join(format!("data{k}")))
                .arg("--cluster-secret-file")
                .arg(&secret)
                .arg("--auth")
                .arg(&missing));
            assert_settings_accepted(&out, &missing, &format!("node{k}.toml {label}"));
        }
    }

    // The check can fail: a key the loader does not know is refused before the auth file.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "node_id = 1\nhttp_address = \"10.0.0.11:4001\"\n").expect("write");
    let out = run(clean_command(BIN)
        .arg("start")
        .arg("--config")
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("bad-data"))
        .arg("--auth")
        .arg(&missing));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("http_address") && !stderr.contains("no-such"),
        "{stderr}"
    );
}

/// The lines between `# cairn-wrapper: begin` and `# cairn-wrapper: end` of the manifest,
/// without their YAML indentation.
fn start_script(manifest: &str) -> String {
    let begin = manifest
        .find("# cairn-wrapper: begin")
        .expect("the manifest marks its start script");
    let end = manifest[begin..]
        .find("# cairn-wrapper: end")
        .map(|e| begin + e)
        .expect("the start script's end marker");
    let block = &manifest[begin..end];
    let indent = manifest[..begin]
        .rsplit('\n')
        .next()
        .map_or(0, |prefix| prefix.len());
    block
        .lines()
        .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the start script as the pod `pod` would, with `bin` first on `PATH` (where `cairn`
/// is found) and `env` added.
fn run_script(script: &str, pod: &str, bin: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = clean_command("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("POD_NAME", pod)
        .env("POD_NAMESPACE", "db")
        .env("INITIAL_MEMBERS", "3")
        .env("PEER_SERVICE", "cairn-peers")
        .env("CLUSTER_DOMAIN", "cluster.local");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn the_statefulset_start_script_derives_the_node_from_the_pod_name() {
    let manifest = read(&deploy_dir().join("kubernetes/cairn.yaml"));
    let script = start_script(&manifest);
    // Every variable the script reads is set by the manifest.
    for var in [
        "POD_NAME",
        "POD_NAMESPACE",
        "INITIAL_MEMBERS",
        "PEER_SERVICE",
        "CLUSTER_DOMAIN",
    ] {
        assert!(
            script.contains(&format!("${var}")),
            "the script reads {var}"
        );
        assert!(
            manifest.contains(&format!("- name: {var}\n")),
            "the manifest sets {var}"
        );
    }

    // A stand-in `cairn` that prints its arguments, one per line.
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("fake");
    std::fs::create_dir(&fake).expect("mkdir");
    std::fs::write(
        fake.join("cairn"),
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    )
    .expect("write the stand-in");
    make_executable(&fake.join("cairn"));
    let out = run_script(&script, "cairn-2", &fake, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let domain = "cairn-peers.db.svc.cluster.local";
    let join = format!(
        "http://cairn-0.{domain}:4001,http://cairn-1.{domain}:4001,http://cairn-2.{domain}:4001"
    );
    let want = [
        "start",
        "--node-id",
        "3",
        "--http-adv-addr",
        &format!("cairn-2.{domain}:4001"),
        "--raft-adv-addr",
        &format!("cairn-2.{domain}:4002"),
        "--join",
        &join,
        "--bootstrap-expect",
        "3",
    ];
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    let first = run_script(&script, "cairn-0", &fake, &[]);
    let first = String::from_utf8_lossy(&first.stdout);
    assert_eq!(
        first.lines().nth(2),
        Some("1"),
        "cairn-0 is node 1: {first}"
    );
    // A pod added by scaling up joins through the initial members.
    let added = run_script(&script, "cairn-4", &fake, &[]);
    let added = String::from_utf8_lossy(&added.stdout);
    assert_eq!(added.lines().nth(2), Some("5"), "{added}");
    assert_eq!(added.lines().nth(8), Some(join.as_str()), "{added}");

    for bad in ["cairn", "cairn-x", "cairn-"] {
        let out = run_script(&script, bad, &fake, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bad}: {stderr}");
        assert!(stderr.contains("cannot take a node id"), "{bad}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad}: cairn was not started");
    }

    // The real binary accepts that command line, with the manifest's CAIRN_* variables.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink(BIN, real.join("cairn")).expect("symlink the binary");
    let secret = dir.path().join("cluster-secret");
    std::fs::write(&secret, "s3cret\n").expect("write the secret");
    let missing = dir.path().join("no-such-users.json");
    let data = dir.path().join("data").display().to_string();
    let env = manifest_cairn_env(&manifest);
    let mut env: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, _)| !matches!(*k, "CAIRN_DATA_DIR" | "CAIRN_CLUSTER_SECRET_FILE"))
        .collect();
    assert!(
        env.iter().any(|(k, _)| *k == "CAIRN_HTTP_ADDR"),
        "the manifest's CAIRN_* variables are found: {env:?}"
    );
    let secret = secret.display().to_string();
    let missing_s = missing.display().to_string();
    env.extend([
        ("CAIRN_DATA_DIR", data.as_str()),
        ("CAIRN_CLUSTER_SECRET_FILE", secret.as_str()),
        ("CAIRN_AUTH", missing_s.as_str()),
    ]);
    let out = run_script(&script, "cairn-1", &real, &env);
    assert_settings_accepted(&out, &missing, "the start script's command line");
}

/// The `CAIRN_*` variables the manifest sets with a literal `value:`, as (name, value).
fn manifest_cairn_env(manifest: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = manifest.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].trim().strip_prefix("- name: CAIRN_")?;
            let value = w[1].trim().strip_prefix("value: ")?;
            Some((format!("CAIRN_{name}"), value.trim_matches('"').to_string()))
        })
        .collect()
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
